"""Loops as nodes: a ``loop`` node owns its body, nested in the same graph.

A loop is built like TF1's while context, in the graph the user builds into: the body's
*loop variables* are ``placeholder`` nodes made for the loop (the carried state at the start of
an iteration, the element ``t`` of each sequence, the counter ``t``), and the body is every
node that depends on them and that the loop's outputs need. What the body reads but does not
compute (weights, a variable created by a cell on its first call, anything built from them
alone) is *captured*: computed once before the loop and passed in as an invariant input. So
work that does not depend on the loop variables is hoisted out of the loop by construction.

The ``loop`` node (``ir/ops/loop.py``) has no value of its own; ``loop_output`` nodes read
its results, by role:
- ``("carried", k)``: the carried value k after the last iteration (its initial value when
  no iteration runs);
- ``("stacked", k)``: the values of body node ``stacked[k]`` of every iteration, stacked along
  a new axis 0 of length ``length`` (row t holds iteration t's value; rows of iterations that
  did not run are zero);
- ``("count", 0)``: how many iterations ran (int32).

Trip count: ``length`` bounds the iterations (a static int, or None: the sequences' leading
dim once the step is specialized). A ``cond`` (bool scalar, computed in the body from the
*next* state) stops the loop early, with ``cond0`` (the same predicate of the initial state,
an input) deciding whether the first iteration runs; a ``count`` input (int32) runs that many
iterations at most. ``reverse`` visits t = n-1 ... 0 (n the iterations that run).

Inputs of the node, in order: [count] [cond0] init... sequences... captured...

The adjoint of a loop is a loop (``loop_vjp``): the forward loop stacks exactly the values
the backward body reads (one ``stacked`` output per saved value, added to the forward body on
demand), and the backward loop runs the iterations in reverse, carrying the cotangent of the
state and accumulating the gradients of captured inputs (the shared weights of BPTT).
"""
from graphc.errors import GradientError, GraphError

from .ops import loop as loop_op
from .ops.loop import split_inputs, trip_bound
from .shapes import format_shape


class LoopBody:
    """The nested graph of one loop (see module docstring).

    Attributes:
        carried: placeholder nodes: the state at the start of an iteration.
        sliced: placeholder nodes: element t of each sequence input.
        counter: an int32 scalar placeholder (t), or None.
        next: body nodes: the state after the iteration (one per carried, same type).
        stacked: body nodes whose value is stacked over the iterations (grows when a
            gradient needs saved values: ``save``).
        cond: a bool scalar body node (whether another iteration runs), or None.
        captured: outer nodes the body reads (the loop node's last inputs).
        name: the loop's name scope.
    """

    def __init__(self, carried, sliced, counter, next, stacked, cond, captured, name):
        self.carried, self.sliced, self.counter = list(carried), list(sliced), counter
        self.next, self.stacked, self.cond = list(next), list(stacked), cond
        self.captured, self.name = list(captured), name
        self.projections = {}  # (role, k) -> loop_output node (one per role)
        self._programs = {}

    @property
    def vars(self):
        return self.carried + self.sliced + ([self.counter] if self.counter is not None else [])

    @property
    def outputs(self):
        return self.next + self.stacked + ([self.cond] if self.cond is not None else [])

    def save(self, node):
        """The index of ``node`` among the stacked outputs (added when new)."""
        for k, s in enumerate(self.stacked):
            if s is node:
                return k
        self.stacked.append(node)
        self._programs.clear()
        return len(self.stacked) - 1

    def nodes(self):
        """The body's own nodes (dependent on the loop variables), in creation order."""
        return body_nodes(self.vars, self.outputs)

    def __repr__(self):
        return (f"<loop body '{self.name}': {len(self.carried)} carried, {len(self.sliced)} "
                f"sliced, {len(self.stacked)} stacked>")


def dependent_nodes(vars, graph):
    """Nodes of ``graph`` that depend on any of ``vars`` (vars included)."""
    dep = set(vars)
    if not dep:
        return dep
    first = min(v.id for v in vars)
    for n in graph.nodes[first:]:
        if n not in dep and any(x in dep for x in n.inputs):
            dep.add(n)
    return dep


def body_nodes(vars, outputs):
    """The nodes computing ``outputs`` from ``vars`` (both ends included), creation order."""
    if not outputs:
        return []
    dep = dependent_nodes(vars, outputs[0].graph)
    return sorted(set(body_nodes_from(dep, outputs)) | (set(vars) & dep), key=lambda n: n.id)


def captured_inputs(vars, outputs):
    """Outer nodes the body reads: inputs of body nodes that do not depend on the loop
    variables, and outputs that do not (an invariant output), in creation order."""
    nodes = body_nodes(vars, outputs)
    inside = set(nodes)
    out = {}
    for n in nodes:
        for x in n.inputs:
            if x not in inside and x.dtype is not None:
                out[x] = True
    for o in outputs:
        if o not in inside:
            out[o] = True
    return sorted(out, key=lambda n: n.id), nodes


def _refuse_effects(nodes, name):
    for n in nodes:
        if n.opdef.impure:
            raise GraphError(
                f"loop '{name}': {n.describe()} inside the loop body depends on the loop "
                "variables; graphc loops do not run effects or random draws per iteration",
                loc=n.loc, hint="draw random values (a dropout mask) before the loop and pass "
                "them in as a sequence; update variables from the loop's results after it")


def make_loop(carried, init, sliced, sequences, counter, next, stacked=(), cond=None,
              cond0=None, count=None, length=None, reverse=False, name="while", hoist=True):
    """Create a ``loop`` node and its body (see module docstring).

    Args:
        carried, sliced, counter: the loop variables (placeholders made for this loop; see
            ``loop_var``).
        init: the initial carried values (outer nodes, one per carried).
        sequences: outer nodes whose element t (along axis 0) each ``sliced`` variable is.
        next: body nodes: the carried values after one iteration.
        stacked: body nodes to stack over the iterations.
        cond, cond0: the continuation predicate of the next state (body) and of the initial
            state (outer), or None for a loop of fixed length.
        count: an outer int32 scalar: run at most this many iterations.
        length: the bound on iterations (None: the sequences' leading dim).
        reverse: visit the elements from the last one.
        hoist: compute per-element work before the loop (``hoist_per_element``).
    Returns:
        The loop node (value-less); ``outputs(loop, role, k)`` reads its results.
    Raises:
        GraphError: a next value of another type than its carried value, effects inside
            the body, no bound on the iterations.
    """
    for c, x, nx in zip(carried, init, next):
        if nx.dtype != c.dtype or (nx.shape is not None and c.shape is not None and any(
                a is not None and b is not None and a != b for a, b in zip(nx.shape, c.shape))
                                    or (nx.shape is not None and c.shape is not None
                                        and len(nx.shape) != len(c.shape))):
            raise GraphError(
                f"loop '{name}': the body returns {nx.type_str()} for loop variable "
                f"'{x.node_name}' of type {c.type_str()}", loc=nx.loc,
                hint="a loop variable keeps its dtype and shape across iterations")
    if length is None and not sequences and cond is None:
        raise GraphError(f"loop '{name}': no bound on the number of iterations",
                         hint="give maximum_iterations, or a sequence to iterate over")
    if length is None and not sequences and stacked:
        raise GraphError(f"loop '{name}': values stacked over an unbounded number of "
                         "iterations", hint="give maximum_iterations: stacks are sized by it")
    if hoist and sliced:
        sliced, sequences, next, stacked, cond = hoist_per_element(
            carried, sliced, counter, sequences, next, stacked, cond, name)
    vars_ = list(carried) + list(sliced) + ([counter] if counter is not None else [])
    outs = list(next) + list(stacked) + ([cond] if cond is not None else [])
    captured, nodes = captured_inputs(vars_, outs)
    _refuse_effects(nodes, name)
    body = LoopBody(carried, sliced, counter, next, stacked, cond, captured, name)
    body.loop_attrs = {"has_count": count is not None}
    inputs = ([count] if count is not None else []) + ([cond0] if cond is not None else []) \
        + list(init) + list(sequences) + captured
    attrs = {"body": body, "length": length, "reverse": bool(reverse),
             "has_count": count is not None, "n_carried": len(carried),
             "n_sequences": len(sequences)}
    from .ops.registry import apply
    return apply("loop", inputs, attrs, name=name)


# -- hoisting per-element work out of the loop ---------------------------------------------------
# Work that reads the elements of the sequences but not the carried state (an RNN's input
# projection x_t Wx) is the same computation for every t: it runs before the loop on the whole
# sequences at once (one GEMM over [T, B, D] instead of T small ones), and the body reads
# element t of the result. The ops batched so are those whose inputs broadcast over leading
# axes (``OpDef.broadcast_core``: elementwise ops, matmul): the op itself, on inputs with a
# leading T axis, computes every element at once. A matmul of a concat mixing elements and
# state by an invariant kernel (TF1 cells: concat([x, h], 1) @ kernel) is split first:
# x @ kernel[:D] + h @ kernel[D:]. A matmul reading an invariant operand transposed
# (a backward body's dh = dz @ W^T) reads W^T computed once before the loop instead.


def hoist_per_element(carried, sliced, counter, sequences, next, stacked, cond, name):
    """(sliced, sequences, next, stacked, cond) with per-element work hoisted (see above)."""
    from .ops.registry import apply
    graph = sliced[0].graph
    state = dependent_nodes(list(carried) + ([counter] if counter is not None else []), graph)
    outs = list(next) + list(stacked) + ([cond] if cond is not None else [])
    body = body_nodes(list(carried) + list(sliced) + ([counter] if counter is not None else []),
                      outs)
    per_element = {n for n in body if n not in state}  # sliced vars included
    seq_of = dict(zip(sliced, sequences))
    batched, mapping = {}, {}
    new_sliced, new_seqs = list(sliced), list(sequences)

    def batch(n):
        """``n``'s values for every t stacked on a new axis 0 (an outer node), or None."""
        if n not in batched:
            if n in seq_of:
                batched[n] = seq_of[n]
            elif n not in per_element or n.shape is None or n.opdef.broadcast_core is None \
                    or n.opdef.impure:
                batched[n] = None
            else:
                batched[n] = _batched_op(n, [batch(x) if x in per_element else (x, False)
                                             for x in n.inputs])
        return batched[n]

    def sliced_var(seq, like):
        """A new sliced variable reading element t of outer ``seq``."""
        with graph.name_scope(f"{name}_hoisted"):
            v = loop_var(graph, like.dtype, like.shape, "element")
        new_sliced.append(v)
        new_seqs.append(seq)
        return v

    def element(n):
        """What the body reads for per-element value ``n`` (hoisted when it can be)."""
        if n in sliced:
            return n
        if n not in mapping:
            b = batch(n)
            mapping[n] = n if b is None else sliced_var(b, n)
        return mapping[n]

    def read(x):
        return element(x) if x in per_element else mapping.get(x, x)

    def split(n):
        """``concat([x, h], -1) @ K`` (K invariant) as ``x @ K[:dx] + h @ K[dx:]``, the
        per-element products hoisted; None when ``n`` is not such a product."""
        if n.op_name != "matmul" or n.attrs.get("transpose_a") or n.attrs.get("transpose_b"):
            return None
        c, k = n.inputs
        if c.op_name != "concat" or k in state or k in per_element or c.shape is None \
                or len(c.shape) != 2 or c.attrs["axis"] not in (1, -1):
            return None
        parts = list(c.inputs)
        if all(p in per_element for p in parts) or not any(
                p in per_element and batch(p) is not None for p in parts) \
                or any(p.shape is None or p.shape[1] is None for p in parts):
            return None
        total, off = None, 0
        with graph.name_scope(f"{name}_split"):
            for p in parts:
                d = p.shape[1]
                rows = apply("strided_slice", [k], {"spec": (("s", off, off + d, None),)},
                             name="kernel_rows")
                off += d
                if p in per_element and batch(p) is not None:
                    prod = apply("matmul", [batch(p), rows], {}, name="hoisted_product")
                    prod = sliced_var(prod, apply("matmul", [p, rows], {}, name="part"))
                else:
                    prod = apply("matmul", [read(p), rows], {}, name="part")
                total = prod if total is None else apply("add", [total, prod], {}, name="sum")
        return total

    def untransposed(n):
        """``matmul(a, b^T)`` with ``b`` invariant as ``matmul(a, c)``, ``c = b^T`` computed
        once before the loop (a kernel would transpose ``b`` at every iteration); None when
        ``n`` has no invariant transposed operand."""
        if n.op_name != "matmul":
            return None
        attrs, ins = dict(n.attrs), [read(x) for x in n.inputs]
        done = False
        for i, flag in enumerate(("transpose_a", "transpose_b")):
            x = n.inputs[i]
            if attrs.get(flag) and x not in state and x not in per_element \
                    and x.shape is not None and len(x.shape) == 2:
                ins[i] = apply("transpose", [x], {"perm": (1, 0)}, name="hoisted_transpose")
                attrs[flag], done = False, True
        return apply("matmul", ins, attrs, name=n.node_name.split("/")[-1]) if done else None

    changed = False
    for n in body:
        if n not in state or n in carried or n is counter:
            continue
        whole = split(n)
        if whole is None:
            whole = untransposed(n)
        if whole is not None:
            mapping[n], changed = whole, True
            continue
        ins = [read(x) for x in n.inputs]
        if any(a is not b for a, b in zip(ins, n.inputs)):
            m = graph.add_node(n.opdef, ins, n.attrs, n.dtype, n.shape, loc=n.loc)
            m.node_name, m.is_grad = graph.unique_name(n.node_name.split("/")[-1]), n.is_grad
            graph.node_changed(m)
            mapping[n], changed = m, True
    if not changed:
        return sliced, sequences, next, stacked, cond
    return (new_sliced, new_seqs, [read(o) for o in next], [read(o) for o in stacked],
            None if cond is None else read(cond))


def _batched_op(n, inputs):
    """Node ``n``'s op on batched inputs (an outer node with a leading T axis, or
    ``(node, False)`` for an invariant input); None when it cannot be batched."""
    from .ops.registry import apply
    if any(x is None for x in inputs):
        return None
    ins = [x if isinstance(x, tuple) else (x, True) for x in inputs]
    rank, core = len(n.shape), n.opdef.broadcast_core
    if any(x.shape is None or len(x.shape) < core for x, _ in ins):
        return None
    nodes = []
    for (x, b), orig in zip(ins, n.inputs):
        if b and orig.shape is not None and len(orig.shape) < rank:
            for _ in range(rank - len(orig.shape)):  # [T, ...] right-aligned as the element
                x = apply("expand_dims", [x], {"axis": 1})
        nodes.append(x)
    return apply(n.opdef, nodes, dict(n.attrs), name=n.node_name.split("/")[-1])


def loop_var(graph, dtype, shape, name):
    """A loop variable: a placeholder of ``graph`` made for a loop (no feed reaches it)."""
    from .ops.state import PLACEHOLDER
    shape = None if shape is None else tuple(shape)
    return graph.add_node(PLACEHOLDER, [], {"shape": shape, "dtype": dtype}, dtype, shape,
                          name)


# -- the loop node's inputs, by role (declared with the op: ``ir/ops/loop.py``) -------------------
def static_trip_count(carried, init, next, cond, cond0, cap=1 << 20):
    """The number of iterations of a while loop when it is known before the step runs (its
    condition reads only values computable from constants and static shapes: ``i < 10``),
    found by evaluating the condition iteration by iteration; None otherwise or past ``cap``.
    """
    from .static import StaticValues
    first = StaticValues().value(cond0)
    if not hasattr(first, "shape"):
        return None
    if not bool(first):
        return 0
    state = [StaticValues().value(x) for x in init]
    for n in range(1, cap + 1):
        ev = StaticValues()
        for v, value in zip(carried, state):
            ev.memo[v] = value if hasattr(value, "shape") else (v, "a run-time value")
        go = ev.value(cond)
        if not hasattr(go, "shape"):
            return None
        if not bool(go):
            return n
        state = [ev.value(x) for x in next]
    return None


def outputs(loop, role, k=0):
    """The ``loop_output`` node of ``loop`` for ``(role, k)`` (made on first use)."""
    body = loop.attrs["body"]
    key = (loop, role, k)
    node = body.projections.get(key)
    if node is None:
        from .ops.registry import apply
        label = {"carried": "exit", "stacked": "stack", "count": "count"}[role]
        node = apply("loop_output", [loop], {"role": role, "index": k},
                     name=f"{body.name}/{label}_{k}" if role != "count" else
                     f"{body.name}/count")
        body.projections[key] = node
    return node


# -- the body as a program ---------------------------------------------------------------------
def body_feed_shapes(loop):
    """{body node fed: concrete shape} for the body program of a specialized loop node."""
    body, ins = loop.attrs["body"], split_inputs(loop)
    shapes = {}
    for v, x in zip(body.carried, ins["init"]):
        shapes[v] = tuple(x.shape)
    for v, x in zip(body.sliced, ins["sequences"]):
        shapes[v] = tuple(x.shape[1:])
    if body.counter is not None:
        shapes[body.counter] = ()
    for v, x in zip(body.captured, ins["captured"]):
        if v.op_name != "const":  # constants stay in the body, where folding sees them
            shapes[v] = tuple(x.shape)
    return shapes


def body_types(body, inputs):
    """[(dtype, shape)] of the body's next values when the loop's inputs are ``inputs``
    (concrete shapes): the types the specialized body computes."""
    from .program import specialize
    if not body.next:
        return []
    a = body.loop_attrs
    k = (1 if a["has_count"] else 0) + (1 if body.cond is not None else 0)
    nc, ns = len(body.carried), len(body.sliced)
    init, seqs, caps = inputs[k:k + nc], inputs[k + nc:k + nc + ns], inputs[k + nc + ns:]
    shapes = {v: tuple(x.shape) for v, x in zip(body.carried, init)}
    shapes.update({v: tuple(x.shape[1:]) for v, x in zip(body.sliced, seqs)})
    if body.counter is not None:
        shapes[body.counter] = ()
    shapes.update({v: tuple(x.shape) for v, x in zip(body.captured, caps)
                   if v.op_name != "const"})
    _, mapping = specialize(body.next, shapes)
    return [(mapping[n].dtype, mapping[n].shape) for n in body.next]


def body_program(loop):
    """The unoptimized ``Program`` of a specialized loop's body (memoized per shapes).

    Its fetches are ``body.outputs`` (next, stacked, cond); its feeds are the loop variables
    and captured nodes the body reads, whose user nodes ``program.origin`` names.
    """
    from .program import build_program
    body = loop.attrs["body"]
    shapes = body_feed_shapes(loop)
    key = (tuple(sorted((v.id, s) for v, s in shapes.items())), len(body.stacked))
    prog = body._programs.get(key)
    if prog is None:
        prog = build_program(body.outputs, shapes)
        prog.name = f"body_{_ident(body.name)}"
        body._programs[key] = prog
    return prog


def _ident(name):
    return "".join(c if c.isalnum() else "_" for c in name)


def feed_roles(program, loop):
    """Per feed of the body ``program``: ("carried"|"sliced"|"counter"|"captured", k)."""
    body = loop.attrs["body"]
    where = {}
    for k, v in enumerate(body.carried):
        where[v] = ("carried", k)
    for k, v in enumerate(body.sliced):
        where[v] = ("sliced", k)
    if body.counter is not None:
        where[body.counter] = ("counter", 0)
    for k, v in enumerate(body.captured):
        where.setdefault(v, ("captured", k))
    return [where[program.origin[f]] for f in program.feeds]


def check_trip(loop):
    """The concrete trip bound of a specialized loop; GraphError when sequences disagree."""
    ins = split_inputs(loop)
    dims = [s.shape[0] for s in ins["sequences"]]
    if len(set(dims)) > 1:
        raise GraphError(f"{loop.describe()}: sequences of different lengths "
                         f"{', '.join(format_shape(s.shape) for s in ins['sequences'])}",
                         loc=loop.loc, hint="iterate over tensors with the same leading dim")
    bound = trip_bound(loop)
    if dims and bound is not None and dims[0] < bound:
        raise GraphError(f"{loop.describe()}: {bound} iterations over a sequence of "
                         f"{dims[0]}", loc=loop.loc)
    return bound


def stacked_type(loop, k):
    """(dtype, shape) of the ``("stacked", k)`` output (concrete once specialized)."""
    body = loop.attrs["body"]
    node = body.stacked[k]
    shape = node.shape
    concrete = all(x.shape is not None and None not in x.shape for x in loop.inputs)
    if concrete and (shape is None or None in shape):
        prog = body_program(loop)
        shape = prog.fetches[len(body.next) + k].shape
    bound = trip_bound(loop)
    return node.dtype, None if shape is None else (bound,) + tuple(shape)


__all__ = ["LoopBody", "make_loop", "loop_var", "outputs", "split_inputs", "body_program",
           "feed_roles", "trip_bound", "stacked_type", "check_trip", "body_nodes",
           "dependent_nodes", "captured_inputs"]


# -- the adjoint loop ----------------------------------------------------------------------------
def loop_vjp(cotangents, loop):
    """Gradients of the inputs of ``loop`` given {loop_output node: cotangent}: a backward loop
    (see module docstring). Returns one gradient (or None) per input of ``loop``."""
    from .autodiff import gradients
    from .ops.registry import F
    body, ins, graph = loop.attrs["body"], split_inputs(loop), loop.graph
    g_final, g_stack = {}, {}
    for proj, g in cotangents.items():
        role, k = proj.attrs["role"], proj.attrs["index"]
        if proj.attrs.get("row") is not None:  # (made after the gradients: ir.passes.split)
            raise GradientError(f"{proj.describe()}: no gradient through one row of a loop's "
                                "stacked result", loc=proj.loc)
        (g_final if role == "carried" else g_stack)[k] = g
    floating = [k for k, c in enumerate(body.carried) if c.dtype.is_floating]
    name = f"{body.name}_grad"
    if loop.attrs["length"] is None and not ins["sequences"]:
        raise GradientError(
            f"{loop.describe()}: gradients through a while_loop whose number of iterations "
            "depends on data need maximum_iterations", loc=loop.loc,
            hint="pass maximum_iterations=N to while_loop: the values the backward loop reads "
                 "are saved in stacks of N rows")
    with graph.name_scope(name):
        # 1. the body's VJP, built beside the forward body (so it reads the forward values)
        gc_vars = [loop_var(graph, body.carried[k].dtype, body.carried[k].shape, "dstate")
                   for k in floating]
        stack_ks = sorted(k for k in g_stack if body.stacked[k].dtype.is_floating)
        gs_vars = [loop_var(graph, body.stacked[k].dtype, body.stacked[k].shape, "dstack")
                   for k in stack_ks]
        xs_c = [body.carried[k] for k in floating]
        xs_s = [v for v in body.sliced if v.dtype.is_floating]
        xs_v = [v for v in body.captured if v.dtype.is_floating]
        first = len(graph.nodes)
        dxs = gradients([body.next[k] for k in floating] + [body.stacked[k] for k in stack_ks],
                        xs_c + xs_s + xs_v, gc_vars + gs_vars, unconnected_gradients="none",
                        stop_gradients=body.captured)
        made = set(graph.nodes[first:])
        # 2. the backward body: the VJP's nodes, reading saved forward values as sequences
        fwd = set(body.nodes())
        bw_sliced, bw_seqs, mapping = [], [], {}
        for v, g in zip(gs_vars, stack_ks):
            bw_sliced.append(v)
            bw_seqs.append(g_stack[g])
        counter = loop_var(graph, body.counter.dtype, (), "t") \
            if body.counter is not None else None

        def saved(x):
            """The backward loop variable standing for forward body value ``x``."""
            if x not in mapping:
                if x is body.counter:
                    mapping[x] = counter
                    return counter
                if x in body.sliced:
                    seq = ins["sequences"][body.sliced.index(x)]
                else:
                    seq = outputs(loop, "stacked", body.save(x))
                v = loop_var(graph, x.dtype, x.shape, "saved")
                bw_sliced.append(v)
                bw_seqs.append(seq)
                mapping[x] = v
            return mapping[x]

        needed = body_nodes_from(made, [d for d in dxs if d is not None])
        for n in needed:
            if n.opdef.projects and n.inputs[0] in fwd:
                # a result of a loop nested in the body, read by its own adjoint: a forward
                # value like any other (saved), not a node of the backward body
                mapping[n] = saved(n)
                continue
            inputs = [mapping[x] if x in mapping else
                      saved(x) if x in fwd else x for x in n.inputs]
            m = graph.add_node(n.opdef, inputs, n.attrs, n.dtype, n.shape, loc=n.loc)
            m.node_name, m.is_grad = graph.unique_name(n.node_name.split("/")[-1]), True
            graph.node_changed(m)
            mapping[n] = m
        back = [None if d is None else mapping.get(d, saved(d) if d in fwd else d)
                for d in dxs]
        dc, ds, dv = (back[:len(xs_c)], back[len(xs_c):len(xs_c) + len(xs_s)],
                      back[len(xs_c) + len(xs_s):])
        # 3. the backward loop: carried cotangents and accumulated invariant gradients
        acc_vars, acc_next, acc_init, acc_of = [], [], [], []
        ds_nodes = [x for x in ds if x is not None]  # stacked anyway: sequences' gradients
        after = []  # (captured var, how: "gemm" | "sum", [(var or stacked node)...], node)
        extra = []  # body nodes the backward loop stacks for gradients summed after it
        for v, d in zip(xs_v, dv):
            if d is None:
                continue
            plan = _sum_after_loop(d, bw_sliced)
            if plan is not None:
                for x in plan[1]:
                    if x not in bw_sliced and x not in extra and not any(
                            x is e for e in ds_nodes):
                        extra.append(x)
                after.append((v,) + plan)
                continue
            a = loop_var(graph, v.dtype, v.shape, "dacc")
            acc_vars.append(a)
            acc_next.append(F.add(a, d))
            acc_init.append(F.zeros_like(ins["captured"][body.captured.index(v)]))
            acc_of.append(v)
        dc = [d if d is not None else F.zeros_like(v) for d, v in zip(dc, gc_vars)]
        init = [g_final[k] if k in g_final else F.zeros_like(ins["init"][k])
                for k in floating]
        ds_stack = [(k, d) for k, d in zip([i for i, v in enumerate(body.sliced)
                                            if v.dtype.is_floating], ds) if d is not None]
        count = outputs(loop, "count") if (body.cond is not None or loop.attrs["has_count"]) \
            else None
        length = loop.attrs["length"]
        if length is None and not bw_seqs:  # iterate over the forward's sequence, unread
            x = ins["sequences"][0]
            bw_sliced.append(loop_var(graph, x.dtype, None if x.shape is None else x.shape[1:],
                                      "unused"))
            bw_seqs.append(x)
        back_loop = make_loop(gc_vars + acc_vars, init + acc_init, bw_sliced, bw_seqs, counter,
                              dc + acc_next, [d for _, d in ds_stack] + extra, count=count,
                              length=length, reverse=not loop.attrs["reverse"], name=name)
        result = {}
        stacked_at = {id(d): j for j, (_, d) in enumerate(ds_stack)}
        stacked_at.update({id(x): len(ds_stack) + j for j, x in enumerate(extra)})
        for v, how, factors, d in after:  # one GEMM (or sum) over all t, after the loop
            stacks = [bw_seqs[bw_sliced.index(x)] if x in bw_sliced else
                      outputs(back_loop, "stacked", stacked_at[id(x)]) for x in factors]
            result[("captured", body.captured.index(v))] = _summed(how, stacks, d)
    for j, k in enumerate(floating):
        result[("init", k)] = outputs(back_loop, "carried", j)
    for j, v in enumerate(acc_of):
        result[("captured", body.captured.index(v))] = \
            outputs(back_loop, "carried", len(floating) + j)
    for j, (k, _) in enumerate(ds_stack):
        result[("sequences", k)] = outputs(back_loop, "stacked", j)
    grads = [None] * len(loop.inputs)
    base = (1 if loop.attrs["has_count"] else 0) + (1 if body.cond is not None else 0)
    nc, ns = loop.attrs["n_carried"], loop.attrs["n_sequences"]
    for (role, k), g in result.items():
        pos = base + {"init": 0, "sequences": nc, "captured": nc + ns}[role] + k
        grads[pos] = g
    return grads


def _sum_after_loop(d, bw_sliced):
    """How a captured input's per-iteration gradient ``d`` (a backward body node) sums over
    the iterations after the loop instead of in a carried accumulator: ("gemm", [p, q], d)
    for ``d = p^T q`` (the weight gradient of ``x W``: one GEMM over the stacked p and q, of
    [T*B, ...] rows), ("sum", [q], d) for ``d = reduce_sum(q, axes)`` (a bias); else None."""
    if d.op_name == "matmul" and d.attrs.get("transpose_a") and \
            not d.attrs.get("transpose_b"):
        p, q = d.inputs
        if all(x.shape is not None and len(x.shape) == 2 and x.shape[1] is not None
               for x in (p, q)):
            return "gemm", [p, q], d
    if d.op_name == "reduce_sum" and not d.attrs.get("keepdims") and d.inputs[0].shape \
            is not None and d.attrs.get("axis") is not None:
        return "sum", [d.inputs[0]], d
    return None


def _summed(how, stacks, d):
    """The sum over the loop's iterations of ``d``, from the stacks of its factors."""
    from .ops.registry import F
    if how == "gemm":
        p, q = (F.reshape(s, shape=(-1, s.shape[-1])) for s in stacks)
        return F.matmul(p, q, transpose_a=True)
    (q,) = stacks
    rank = len(d.inputs[0].shape)
    axes = d.attrs["axis"]
    axes = (axes,) if isinstance(axes, int) else tuple(axes)
    return F.reduce_sum(q, axis=(0,) + tuple((a % rank) + 1 for a in axes))


def body_nodes_from(made, roots):
    """Nodes of ``made`` that ``roots`` need (and the roots), in creation order."""
    seen, stack = set(), [r for r in roots if r in made]
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        stack.extend(x for x in n.inputs if x in made and x not in seen)
    return sorted(seen, key=lambda n: n.id)


loop_op.STRUCTURE.update(body_types=body_types, stacked_type=stacked_type, vjp=loop_vjp)
