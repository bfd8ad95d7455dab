"""In-place safety analysis: which nodes may write their result over an input's buffer.

A node ``n`` may overwrite input ``x`` when (each refusal is recorded with its reason):
- ``n``'s kernel can: elementwise and fused nodes (any input of ``n``'s own shape and dtype),
  a ``fused_matmul``'s body operands (not its product's factors), and the row-wise softmax
  kernels on their logits (a row is read before it is written);
- ``x``'s storage is an arena temporary: never a feed, a constant or a variable (a variable is
  only overwritten by its own update, below), and no view of it or of its base is fetched;
- nobody else destroys the same value (one writer per value), and every other reader of the
  value (also through reshape views) can be scheduled before ``n`` without a cycle. Those
  orderings become constraints (``program.constraints``) that scheduling must respect.

Variable updates come first: for ``assign(W, v)`` the value ``v`` is computed straight into
``W``'s buffer when every other read of ``W``'s old value can be scheduled before ``v`` and
``v`` reads ``W`` only elementwise (so ``W -= lr * g`` needs no copy). Otherwise the assign
copies ``v`` into ``W`` after the last read of the old value. A variable that the step both
fetches (or fetches a view of) and assigns is first snapshotted by a copy node, so the fetch
returns the old value.
"""
from .. import scalar as S
from ..program import MemoryPlan
from .common import index_of, new_node, users
from .fuse import FUSED
from .reachability import OrderedDag


def inplace_inputs(n):
    """Indices of the inputs ``n``'s kernel may overwrite (same shape and dtype only)."""
    if n.dtype is None or n.opdef.leaf or n.opdef.view:
        return ()
    if n.op_name == "fused":
        if n.attrs.get("reduce") is not None:
            return ()
        idx = range(len(n.inputs))
    elif n.opdef.is_elementwise:
        idx = range(len(n.inputs))
    else:  # non-elementwise kernels declare what they overwrite
        idx = n.opdef.destroys
        if n.opdef.destroys_from is not None:
            idx = tuple(idx) + tuple(range(n.opdef.destroys_from, len(n.inputs)))
    return tuple(i for i in idx if n.inputs[i].dtype == n.dtype
                 and tuple(n.inputs[i].shape) == tuple(n.shape))


class _State:
    """The dependency DAG (data edges + constraints) and view bookkeeping of one analysis."""

    def __init__(self, program, plan):
        self.program, self.plan = program, plan
        self.users = users(program.nodes, values_only=True)
        self.fetched = {id(f) for f in program.fetches if f is not None}
        self.order = OrderedDag.of_inputs(program.nodes)  # has_path without whole searches
        self.children = {}  # id(base) -> views of it
        for n in program.nodes:
            if n in plan.views:
                self.children.setdefault(id(plan.views[n]), []).append(n)
        self.destroyed = {}  # id(base value) -> node that overwrites it
        self.constraints = []

    def base(self, x):
        while x in self.plan.views:
            x = self.plan.views[x]
        return x

    def value_class(self, x):
        """The base value of ``x`` and every view of it (transitively), in schedule order."""
        out, stack = [], [self.base(x)]
        while stack:
            m = stack.pop()
            out.append(m)
            stack.extend(self.children.get(id(m), []))
        return out

    def readers(self, x, exclude=()):
        """The readers of ``x``'s value outside its value class and ``exclude`` (each once,
        in use order; a set of ids, not a scan of those found: a weight read by every step
        of an unrolled RNN made that quadratic)."""
        cls = self.value_class(x)
        skip = {id(m) for m in cls} | {id(e) for e in exclude}
        out = []
        for m in cls:
            for u in self.users.get(m, []):
                if id(u) not in skip:
                    skip.add(id(u))
                    out.append(u)
        return out, cls

    def order_before(self, readers, writer):
        """Add reader -> writer edges if no cycle results; True when all were added."""
        for r in readers:
            if self.order.has_path(writer, r):
                return False, r
        for r in readers:
            if not self.order.has_edge(r, writer):
                self.order.add_edge(r, writer)
                self.constraints.append((r, writer))
        return True, None


def _snapshot_fetched_variables(program):
    """Fetch a copy of each variable the step also assigns (the fetch means the old value),
    and of each view of one (a reshaped variable is the same bytes)."""
    assigned = {id(v) for v, _ in program.updates}
    made = 0
    for i, f in enumerate(program.fetches):
        if f is None:
            continue
        base = f
        while base.opdef.view:
            base = base.inputs[0]
        if base.op_name == "variable" and id(base) in assigned:
            copy = new_node(program, f, FUSED, [f],
                            {"body": S.arg(0, f.dtype), "shape": tuple(f.shape),
                             "reduce": None, "ops": ("copy",)})
            del program.nodes[index_of(program.nodes, copy)]  # goes right after the fetch
            program.nodes.insert(index_of(program.nodes, f) + 1, copy)
            copy.meta["note"] = "snapshot: the fetch of a variable the step assigns"
            program.fetches[i] = copy
            made += 1
    return made


def _try_update(st, assign):
    """Decide whether ``assign``'s value is computed directly into the variable's buffer."""
    plan, var, v = st.plan, assign.inputs[0], assign.inputs[1]
    plan.inplace[assign] = var
    why = None
    if v.opdef.leaf or v in plan.views or v in plan.inplace or v.dtype is None:
        why = f"'{v.node_name}' is not computed into a buffer of its own"
    elif any(id(m) in st.fetched for m in st.value_class(var)):
        why = f"'{var.node_name}' is fetched"
    else:
        ok_idx = inplace_inputs(v)
        for i, x in enumerate(v.inputs):
            if st.base(x) is var and not (i in ok_idx and x is var):
                why = f"'{v.node_name}' reads '{var.node_name}' other than elementwise"
    if why is None:
        readers, _ = st.readers(var, exclude=(v, assign))
        ok, blocker = st.order_before(readers, v)
        if not ok:
            why = f"'{blocker.node_name}' reads the old value after '{v.node_name}'"
    if why is None:
        plan.inplace[v] = var
        plan.update_in_place[assign] = True
        st.destroyed[id(var)] = v
        plan.notes[v] = f"computed in place into variable '{var.node_name}' (its update)"
        return True
    readers, _ = st.readers(var, exclude=(assign,))
    st.order_before(readers, assign)
    plan.update_in_place[assign] = False
    plan.notes[assign] = f"copies into '{var.node_name}' after its last read: {why}"
    return False


def _reads_whole(n, destroyable, cls):
    """Whether ``n`` also reads a value of ``cls`` (one value and its views) at an input
    position it may not overwrite, which its kernel reads other than at each output
    element's own index (a GEMM's operands): it may not write over that value."""
    return any(y is m for j, y in enumerate(n.inputs) if j not in destroyable for m in cls)


def _try_inplace(st, n):
    """Pick the first input ``n`` may overwrite; record the decision or the refusals."""
    plan = st.plan
    reasons = []
    destroyable = inplace_inputs(n)
    for i in destroyable:
        x = n.inputs[i]
        root = plan.root(x)
        cls = st.value_class(x)
        if root.opdef.leaf:
            reasons.append(f"'{x.node_name}' is a {root.op_name}")
            continue
        if _reads_whole(n, destroyable, cls):
            reasons.append(f"'{n.node_name}' also reads '{x.node_name}' other than "
                           "elementwise")
            continue
        if root.dtype is None:
            continue
        if any(id(m) in st.fetched for m in cls):
            reasons.append(f"'{x.node_name}' is fetched")
            continue
        if id(st.base(x)) in st.destroyed:
            reasons.append(f"'{x.node_name}' is already overwritten by "
                           f"'{st.destroyed[id(st.base(x))].node_name}'")
            continue
        readers, _ = st.readers(x, exclude=(n,))
        ok, blocker = st.order_before(readers, n)
        if not ok:
            reasons.append(f"'{x.node_name}' is still read by '{blocker.node_name}'")
            continue
        plan.inplace[n] = x
        st.destroyed[id(st.base(x))] = n
        plan.notes[n] = f"in place over '{x.node_name}' (its last reader)"
        return True
    if reasons:
        plan.notes[n] = "not in place: " + "; ".join(reasons)
    return False


def analyze_inplace(program):
    """Decide in-place writes and variable updates; start ``program.plan``.

    Args:
        program: an ``ir.program.Program``; gets ``plan`` (a ``MemoryPlan`` with ``views``,
            ``inplace``, ``update_in_place`` and ``notes``) and ``constraints`` (reader ->
            writer orderings the schedule must keep).
    Returns:
        {"inplace": in-place sites, "updates_in_place": variable updates without a copy,
        "update_copies": updates that copy, "snapshots": fetched variables copied}.
    Example:
        >>> analyze_inplace(program)
        {'inplace': 5, 'updates_in_place': 6, 'update_copies': 0, 'snapshots': 0}
    """
    snapshots = _snapshot_fetched_variables(program)
    plan = MemoryPlan()
    program.plan = plan
    for n in program.nodes:
        if n.opdef.view:
            plan.views[n] = n.inputs[0]
    st = _State(program, plan)
    in_place = copies = 0
    for n in program.nodes:
        if n.op_name == "assign":
            if _try_update(st, n):
                in_place += 1
            else:
                copies += 1
    sites = 0
    for n in program.nodes:
        if n in plan.inplace or n.op_name == "assign":
            continue
        sites += _try_inplace(st, n)
    program.constraints = st.constraints
    return {"inplace": sites, "updates_in_place": in_place, "update_copies": copies,
            "snapshots": snapshots}
