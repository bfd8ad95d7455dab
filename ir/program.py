"""Program: a specialized, scheduled step — what a backend needs, nothing more.

``specialize`` copies the part of a user graph that the fetches need into a private graph,
with every placeholder given its concrete feed shape and every shape re-inferred, so passes can
rewrite freely without touching the user's graph. ``Program`` then holds the schedule, the
feeds, variables, fetches and variable updates, and (after planning) the buffer assignment.

What a backend may rely on after ``ir.passes.run_pipeline`` (the optimized program)
---------------------------------------------------------------------------------
- ``program.nodes`` is the final schedule: execute nodes in this order. It is topological, every
  read of a variable's old value (also through a view) precedes the node that overwrites the
  variable's buffer, and every read of a buffer precedes the node that writes over it in place.
  Every node whose op may fail at run time (``OpDef.may_fail``) precedes every write into a
  variable's buffer that does not feed it; ``program.snapshot`` (set by the backend) lists
  the variables written before a possible failure anyway, which the step saves and restores.
- ``fused`` nodes (``node.op_name == "fused"``): ``attrs["body"]`` is an ``ir.scalar.Expr`` over
  ``arg(i)`` for ``node.inputs[i]`` (arg dtypes are the inputs' dtypes; splat constants are
  inlined as ``const`` leaves). The body is evaluated at every index of ``attrs["shape"]``, the
  elementwise shape; each input broadcasts to it NumPy-style (right-aligned). When
  ``attrs["reduce"]`` is not None it is ``(kind, axes, keepdims)`` with kind one of "sum",
  "mean", "max", "min": the elementwise result is reduced over ``axes`` (of the elementwise
  shape) as ``reduce_<kind>`` would, and ``node.shape`` is the reduced shape. Without a
  reduction ``node.shape == attrs["shape"]``. ``attrs["ops"]`` names the fused ops (for dumps).
- ``program.plan`` is a ``MemoryPlan`` (below) after planning, None for ``optimize=False``.

Storage of each value node ``n`` under a plan (``plan.storage(n)`` answers it):
- placeholders: the caller's array (read only); variables: the variable's own buffer;
  constants: their value array (read only);
- ``n in plan.views``: a reshape-like view (same bytes, C order) of ``plan.views[n]``'s storage
  (``reshape``, ``expand_dims``, ``squeeze``, ``reshape_like``, and ``check_numerics``, which
  is its input unchanged once the backend has checked it for NaN and Inf);
- ``n in plan.inplace``: the storage of ``plan.inplace[n]`` (an input of ``n``, or for a variable
  update the variable node): ``n`` writes its result over that buffer;
- ``n in plan.offsets``: bytes ``[offsets[n], offsets[n] + nbytes[n])`` of the arena, C order;
- anything else (value-less ``group``) has no storage.
``assign`` nodes: ``plan.inplace[assign] is variable`` always; when ``plan.storage`` of the
assigned value is already the variable (``plan.update_in_place[assign]``) nothing is copied,
otherwise the backend copies the value into the variable's buffer at the assign's position.
The new variable values are then simply the variables' buffers at the end of the step.
"""
import heapq
from operator import attrgetter

import numpy as np

from graphc.errors import CompileError, FeedError, GraphError, InvalidArgumentError, ShapeError

from .graph import Graph
from .ops.state import CONST, PLACEHOLDER
from .rollback import declared_failures, failure_edges, reachable, update_kernels
from .shapes import RuleError, format_shape
from .static import resolve_pending


class Program:
    """A step ready for a backend.

    Attributes:
        graph: the private, specialized graph the nodes belong to.
        nodes: the schedule (topological; reads of a variable precede its assign).
        feeds: placeholder nodes, in the order the step function takes them.
        variables: variable nodes (read or assigned), in a stable order.
        fetches: one node per fetch (None for value-less fetches such as a train op).
        updates: (variable node, node whose value becomes the variable's) pairs.
        origin: maps each private feed/variable node to the user's node.
        plan: the memory plan (``ir.passes`` fills it) or None for the unplanned reference.
        stats: pass statistics.
        snapshot: the variables whose buffers the step may write before it fails, which the
            runtime saves before a call and restores when the call raises (``ir.rollback``;
            set by the backend once the schedule and storage are final).
    """

    def __init__(self, graph, nodes, feeds, variables, fetches, updates, origin):
        self.graph, self.nodes, self.feeds, self.variables = graph, nodes, feeds, variables
        self.fetches, self.updates, self.origin = fetches, updates, origin
        self.plan = None
        self.stats = {}
        self.constraints = []  # (reader, writer) orderings from in-place analysis
        self.stages, self.records = [], []  # text IR after each pass, per-pass records
        self.snapshot = []  # variables a failing step restores (``ir.rollback``)
        self.placed_at = 0  # where ``passes.common.new_node`` last placed a node (a hint)
        self.name = "step"

    def users(self):
        """Node -> list of users among the scheduled nodes."""
        out = {n: [] for n in self.nodes}
        for n in self.nodes:
            for i in n.inputs:
                out.setdefault(i, []).append(n)
        return out

    def text(self):
        from .printer import program_text
        return program_text(self)


class MemoryPlan:
    """Where every value of a step lives: one arena for temporaries, plus aliases.

    Attributes:
        offsets: {node: byte offset in the arena} for nodes stored in the arena.
        nbytes: {node: bytes} of each arena buffer (size * itemsize, before alignment).
        arena_bytes: size of the arena (every offset is ``alignment``-aligned).
        peak_bytes: the planned peak of temporaries (the arena size).
        naive_bytes: one buffer per value node (what the unplanned step allocates).
        inplace: {node: node whose buffer it writes over}: an input of the node, or for a
            variable update (the assigned value, and the assign itself) the variable node.
        views: {node: base node} for reshape-like views sharing the base's bytes.
        update_in_place: {assign node: True when its value was computed directly into the
            variable's buffer (no copy), False when the backend copies it at the assign}.
        intervals: {node: (first, last)} schedule positions during which each arena buffer
            holds a live value (the planner's liveness; two arena buffers whose intervals
            intersect never overlap in bytes).
        notes: {node: text} explaining in-place decisions taken and refused (for dumps).
        alignment: byte alignment of every arena offset.
    """

    def __init__(self):
        self.offsets, self.nbytes, self.inplace, self.views = {}, {}, {}, {}
        self.update_in_place, self.intervals, self.notes = {}, {}, {}
        self.arena_bytes = self.peak_bytes = self.naive_bytes = self.live_peak = 0
        self.alignment = 64
        self.planned = False  # True once plan_memory assigned the offsets

    def root(self, node):
        """The node that owns ``node``'s storage (following views and in-place writes)."""
        seen = 0
        while True:
            nxt = self.views.get(node)
            if nxt is None:
                nxt = self.inplace.get(node)
            if nxt is None or nxt is node:
                return node
            node = nxt
            seen += 1
            if seen > 100000:
                raise CompileError(f"memory plan: alias cycle at '{node.node_name}'")

    def storage(self, node):
        """("arena", offset) | ("variable", v) | ("feed", p) | ("const", c) | (None, node)."""
        r = self.root(node)
        if r in self.offsets:
            return ("arena", self.offsets[r])
        if not r.opdef.leaf:
            return (None, r)
        return ("feed" if r.op_name == "placeholder" else r.op_name, r)


def needed_nodes(fetches, fed=(), user=False):
    """All ancestors of the fetches (fetches included), in creation order.

    Args:
        fetches: user nodes (all of one graph).
        fed: nodes whose value is given for the step (fed tensors): they are leaves, so what
            only they need is not needed (a placeholder reached only through one need not be
            fed).
        user: refuse a node its graph no longer holds (``_refuse_dropped``).
    Example:
        >>> needed_nodes([loss], fed={h})     # h's upstream only if something else reads it
    """
    fed = set(fed)  # (nodes hash by identity: a set never calls the == that builds a node)
    seen = set()
    stack = list(fetches)
    pop, push, add = stack.pop, stack.extend, seen.add  # (bound once: mlp10k 2.6 -> 2.2 ms)
    while stack:  # one search from every fetch at once, over the edges only
        n = pop()
        if n not in seen:
            add(n)
            if n not in fed:
                push(n.inputs)
    if seen:  # (most of the graph, a step's usual case: in its order, a filter beats a sort)
        nodes = next(iter(seen)).graph.nodes  # (mlp10k: 0.45 ms, where sorting took 1.0)
        if len(nodes) <= 2 * len(seen):
            found = list(filter(seen.__contains__, nodes))
            if len(found) == len(seen):  # (none dropped from the graph since, or of another)
                return found  # (a graph's nodes are in creation order: ``Graph.add_node``)
    ordered = sorted(seen, key=attrgetter("id"))
    if user:
        _refuse_dropped(ordered)
    return ordered


def _refuse_dropped(nodes):
    """Raise for a node its user graph no longer holds: ``while_loop`` drops the nodes of a
    body it built once and then unrolled (the body needed build-time values), and a tensor
    the body function kept outside the loop is one of them. Its id is reused by later nodes,
    so ordering by ids would be wrong too. Names the last one made (nearest the fetches)."""
    for n in reversed(nodes):
        held = n.graph.nodes
        if not (0 <= n.id < len(held) and held[n.id] is n):
            raise GraphError(
                f"'{n.node_name}' is not in the graph any more: it was made by a first build "
                f"of a while_loop body that was dropped when the loop was unrolled", loc=n.loc,
                hint="a tensor made inside a loop body can be used outside it only through "
                     "the loop's outputs")


def user_needed_nodes(fetches, fed=()):
    """``needed_nodes`` of a user graph, remembered by the graph for these fetches and fed
    nodes: a user graph's edges never change once its nodes are built (passes rewrite private
    copies), so a step's compile and its compile-cache key search once between them.

    Fed nodes without inputs (placeholders, variables) change nothing of the search and are
    not part of what is remembered: a step fed placeholders finds what a search with no fed
    node found. Returns a new list.
    """
    fed = [n for n in fed if n.inputs]
    memo = getattr(fetches[0].graph, "needed_memo", None) if fetches else None
    if memo is None:
        return needed_nodes(fetches, fed, user=True)
    key = (tuple(map(id, fetches)), frozenset(map(id, fed)))
    found = memo.get(key)
    if found is None:
        if len(memo) >= 16:  # (a few fetch lists per graph)
            memo.clear()
        # (the nodes keep their ids unique while the key names them)
        found = memo[key] = (needed_nodes(fetches, fed, user=True), tuple(fetches),
                             tuple(fed))
    return list(found[0])


def specialize(fetches, feed_shapes):
    """Copy what ``fetches`` need into a new graph with concrete placeholder shapes.

    A fed node that is not a placeholder (an intermediate tensor, a Variable) becomes a
    placeholder of its dtype and fed shape, so every pass and backend sees an ordinary feed;
    its upstream is copied only when something else needs it. A fed Variable that an
    ``assign`` of the step targets also keeps a variable node, the assign's target: reads see
    the fed value, the assign still writes the variable's stored value (TF1's semantics). An
    assign whose value reads the fed variable is refused: TF1's ``assign_add`` and optimizer
    updates start from the stored value, graphc's read the variable, which the feed replaces.

    Args:
        fetches: user nodes (all of one graph).
        feed_shapes: {user node fed: concrete shape tuple}: every placeholder the fetches need
            and any other fed node.
    Returns:
        (new graph, {user node: private node}); a fed node maps to its placeholder.
    Raises:
        ShapeError: when the concrete shapes break an op's rule (naming the op and line).
        FeedError: a fed Variable that an assign of the step updates from its own value.
    """
    fed = {n for n in feed_shapes if n.op_name != "placeholder"}
    new = Graph()
    new.digest_node = new.key_hash = None  # (private: no key reads its nodes)
    mapping, targets = {}, {}
    for n in needed_nodes(fetches, fed):
        if n in fed:
            leaf = {"shape": tuple(feed_shapes[n]), "dtype": n.dtype}
            mapping[n] = _copy_node(new, n, [], leaf, PLACEHOLDER)
            continue
        attrs = dict(n.attrs)
        inputs = [mapping[i] for i in n.inputs]
        if n.op_name == "assign" and n.inputs[0] in fed:  # the target is not a read
            var = n.inputs[0]
            _check_fed_target(n, fed)
            if var not in targets:
                targets[var] = _copy_node(new, var, [], dict(var.attrs))
            inputs[0] = targets[var]
        if n.op_name == "placeholder":
            attrs["shape"] = tuple(feed_shapes[n])
        mapping[n] = _copy_node(new, n, inputs, attrs)
    return new, mapping


def _check_fed_target(assign, fed):
    """Refuse an update of a fed Variable computed from the variable's (fed) value."""
    var = assign.inputs[0]
    if var in needed_nodes([assign.inputs[1]], fed):
        raise FeedError(
            f"cannot feed {var.describe()}: {assign.describe()} in the same step updates it "
            "from its value", [f"the update is at {assign.loc.short}"], var.loc,
            "run the update in a step that does not feed the variable (TF1 would start it "
            "from the stored value, graphc from the fed one)")


def _copy_node(new, n, inputs, attrs, opdef=None):
    """A node of the private graph standing for user node ``n`` (same name and line), its
    type re-inferred from ``inputs`` (or ``opdef``'s leaf attrs).

    Attributes known only when the step is specialized (``ir.static.Pending``) take their
    values here, and their inputs go: the private node is what a Python value would have
    built. A node left without inputs that is no leaf and not random (``range``) becomes
    the constant it evaluates to.
    """
    opdef = opdef or n.opdef
    try:
        inputs, attrs = resolve_pending(opdef, inputs, attrs)
        if opdef.static_args and not inputs and not (opdef.leaf or opdef.random):
            opdef, attrs = CONST, {"value": _frozen(opdef.evaluate([], attrs))}
        dtype, shape = opdef.infer(inputs, **attrs)
    except RuleError as e:
        cls = InvalidArgumentError if e.kind == "argument" else ShapeError
        raise cls(f"{n.describe()}: {e.message} (with the fed shapes)", e.details,
                  n.loc, e.hint) from None
    m = new.add_node(opdef, inputs, attrs, dtype, shape, loc=n.loc)
    m.node_name, m.is_grad = n.node_name, n.is_grad
    return m


def _frozen(value):
    """A read-only array, as constants hold."""
    arr = np.array(value)
    arr.setflags(write=False)
    return arr


def schedule_nodes(nodes):
    """A topological order in which every read of a variable precedes its assign, and every
    node that may fail at run time precedes the updates it does not depend on.

    Among the nodes ready to run, the first created runs first (the lexicographic
    topological order by creation: ``networkx.lexicographical_topological_sort`` with that
    key gives the same order; this one walks plain successor lists).

    Raises:
        CompileError: a variable assigned twice in one step.
    """
    succ = {n: [] for n in nodes}  # (edges may repeat: counted alike in degrees and lists)
    for n in nodes:
        for i in n.inputs:
            succ[i].append(n)
    extra = []  # reader -> assign edges (what rollback searches besides the data)
    assigned = {}
    for n in nodes:
        if n.op_name == "assign":
            var = n.inputs[0]
            if var in assigned:
                raise CompileError(
                    f"variable '{var.node_name}' is assigned twice in one step",
                    [f"by {assigned[var].describe()} and {n.describe()}"], n.loc,
                    "chain the updates (assign the result of the first) or run them apart")
            assigned[var] = n
            later = None  # n's descendants, found once (edges into n leave them as they are)
            for reader in list(dict.fromkeys(succ[var])):
                if reader is n:
                    continue
                if later is None:
                    later = reachable(succ, n)
                if reader not in later and n not in succ[reader]:
                    succ[reader].append(n)
                    extra.append((reader, n))
    failing = declared_failures(nodes)
    if failing:
        pred = {n: set(n.inputs) for n in nodes}
        for r, n in extra:
            pred[n].add(r)
        for m, w in failure_edges(pred, failing, update_kernels(nodes)):
            succ[m].append(w)
    return _first_created_order(nodes, succ)


def _first_created_order(nodes, succ):
    """Kahn's algorithm over ``succ``, always taking the ready node earliest in ``nodes``."""
    rank = {n: i for i, n in enumerate(nodes)}
    indeg = dict.fromkeys(nodes, 0)
    for targets in succ.values():
        for m in targets:
            indeg[m] += 1
    ready = [rank[n] for n in nodes if indeg[n] == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        n = nodes[heapq.heappop(ready)]
        order.append(n)
        for m in succ[n]:
            indeg[m] -= 1
            if indeg[m] == 0:
                heapq.heappush(ready, rank[m])
    if len(order) < len(nodes):
        raise CompileError("schedule: the step's ordering constraints form a cycle")
    return order


def build_program(fetches, feed_shapes):
    """Specialize and schedule: the unoptimized Program (the reference the passes start from).

    Args:
        fetches: list of user nodes.
        feed_shapes: {user node: shape} for every placeholder the fetches need (through no
            fed node) and every other fed node (see ``specialize``).
    """
    graph, mapping = specialize(fetches, feed_shapes)
    nodes = schedule_nodes(graph.nodes)
    origin = {m: n for n, m in mapping.items() if n.opdef.external
              or m.op_name == "placeholder"}
    for n, m in mapping.items():  # a fed Variable that is assigned keeps its variable target
        if n.op_name == "assign" and m.op_name == "assign":  # (a fed assign: its value only)
            origin.setdefault(m.inputs[0], n.inputs[0])
    feeds = [mapping[n] for n in sorted(feed_shapes, key=lambda n: n.id) if n in mapping]
    variables = [m for m in nodes if m.op_name == "variable"]
    updates = [(n.inputs[0], n) for n in nodes if n.op_name == "assign"]
    prog = Program(graph, nodes, feeds, variables, [mapping[f] for f in fetches], updates,
                   origin)
    return prog


__all__ = ["Program", "MemoryPlan", "build_program", "specialize", "schedule_nodes",
           "format_shape"]
