"""Scheduling: a topological order that keeps the peak of live temporaries low.

The order respects data dependencies, the in-place constraints (``program.constraints``: every
other reader of a value runs before the node that overwrites it) and the state rule (every read
of a variable's old value, also through a view, runs before the node that writes the
variable's buffer), and the failure rule (every node that may fail at run time runs before
every write into a variable's buffer that it does not depend on, ``ir.rollback``: a failed
step then changes no variable). Among the nodes ready to run, it picks the one that grows live memory
least: bytes it allocates minus bytes of inputs whose last reader it is (ties keep the original
order, so the result is deterministic). Updates are thereby applied as soon as their gradient
exists, and a gradient buffer dies right after its update.

Then each elementwise node whose first successor is an elementwise reader of the same shape
sinks to just before that reader, when the move grows no live buffer (``_sink_into_readers``):
a backend can then run producer and readers as one loop. Clipping by the global norm is the
case in point: ``g * scale`` needs every gradient's norm, so all scalings are ready at once
and the greedy order runs them together, each a pass of its own before the optimizer's loop
that reads ``g`` again; sunk next to that loop, the LLVM backend reads ``g`` once.
"""
import heapq

from graphc.errors import CompileError

from ..rollback import declared_failures, failure_edges, planned_writers
from .common import nbytes, positions, users, value_inputs
from .memory import RootCache, ensure_plan, live_peak, owns_buffer
from .old_values import keep_old_values


def _variable_edges(nodes, plan):
    """Reader -> writer edges: reads of a variable's old value before it is overwritten."""
    uses = users(nodes, values_only=True)
    children = {}
    for n in nodes:
        if n in plan.views:
            children.setdefault(id(plan.views[n]), []).append(n)
    edges = []
    for a in nodes:
        if a.op_name != "assign":
            continue
        var, value = a.inputs
        writer = value if plan.inplace.get(value) is var else a
        stack, cls = [var], []
        while stack:
            m = stack.pop()
            cls.append(m)
            stack.extend(children.get(id(m), []))
        for m in cls:
            for u in uses.get(m, []):
                if u is not writer and u is not a and not any(u is c for c in cls):
                    edges.append((u, writer))
    return edges


class _Dag:
    """The ordering DAG as plain dicts: successors in the order edges arrive, no parallel
    edges (what the scheduler reads of a ``networkx.DiGraph``, several times cheaper)."""

    def __init__(self, nodes):
        self.succ = {n: {} for n in nodes}
        self.indeg = dict.fromkeys(nodes, 0)

    def add_edge(self, u, v):
        targets = self.succ.setdefault(u, {})
        if v not in targets:
            targets[v] = None
            self.indeg[v] = self.indeg.get(v, 0) + 1
            self.succ.setdefault(v, {})

    def successors(self, n):
        return self.succ[n]

    def in_degree(self, n):
        return self.indeg[n]

    def edges(self):
        return [(u, v) for u, targets in self.succ.items() for v in targets]

    def number_of_nodes(self):
        return len(self.succ)


def _dag(program, plan):
    """Data edges, the in-place constraints, the state rule's and the failure rule's edges
    (whether they form a cycle shows when ``_greedy_order`` cannot order every node)."""
    nodes = program.nodes
    order = list(getattr(program, "constraints", [])) + _variable_edges(nodes, plan)
    pred = {n: set(n.inputs) for n in nodes}
    for r, w in order:
        pred.setdefault(w, set()).add(r)
    failures = failure_edges(pred, declared_failures(nodes), planned_writers(program))
    dag = _Dag(nodes)
    for n in nodes:
        for x in n.inputs:
            dag.add_edge(x, n)
    for u, v in order + failures:
        dag.add_edge(u, v)
    dag.failure_edges = len(failures)
    return dag


def _check_acyclic(dag, order):
    """Raise when ``order`` (Kahn's algorithm over ``dag``) stopped short: a cycle."""
    if len(order) < dag.number_of_nodes():
        import networkx as nx  # (only to name the cycle: a compile imports none of it)
        cycle = nx.find_cycle(nx.DiGraph(dag.edges()))
        raise CompileError("schedule: the ordering constraints form a cycle",
                           [" -> ".join(f"'{a.node_name}'" for a, _ in cycle)])


def _reads(nodes, plan):
    """{id(node): the distinct storage roots it reads}, computed once per pass."""
    return {id(n): list({id(r): r for r in map(plan.root, value_inputs(n))}.values())
            for n in nodes}


def _greedy_order(program, plan, dag, roots):
    # (dicts keyed by the nodes themselves: they hash by identity, and this runs a few
    # lookups per edge)
    nodes = program.nodes
    pos = {n: i for i, n in enumerate(nodes)}
    fetched_roots = {plan.root(f) for f in program.fetches if f is not None}
    # ``roots``: per node, the distinct roots it reads (``_reads``)
    reads = {n: roots[id(n)] for n in nodes}
    remaining, readers = {}, {}
    for n in nodes:
        for r in reads[n]:
            remaining[r] = remaining.get(r, 0) + 1
            readers.setdefault(r, []).append(n)
    sizes = {}

    def size(m):
        """The arena bytes ``m`` takes (0 when it owns no buffer)."""
        got = sizes.get(m)
        if got is None:
            got = sizes[m] = nbytes(m) if owns_buffer(m, plan) else 0
        return got

    def key(n):
        """Bytes running ``n`` now adds to live memory (its buffer less the inputs it is
        the last reader of), then its original position: the smallest runs first."""
        freed = 0
        own = plan.root(n)
        for r in reads[n]:
            if remaining.get(r) == 1 and r is not own and r not in fetched_roots:
                freed += size(r)
        return (size(n) - freed, pos[n])

    # A key only falls (an input's last reader frees it), so a heap of the ready nodes with
    # an entry pushed again on every change (the old one skipped as stale) pops exactly the
    # node a scan of all ready nodes would choose.
    indeg = {n: dag.in_degree(n) for n in nodes}
    current, ready = {}, []
    for n in nodes:
        if indeg[n] == 0:
            current[n] = k = key(n)
            heapq.heappush(ready, (*k, n))
    done, order = set(), []
    while ready:
        *k, best = heapq.heappop(ready)
        if best in done or current[best] != tuple(k):
            continue
        done.add(best)
        order.append(best)
        for r in reads[best]:
            remaining[r] -= 1
            if remaining[r] == 1:
                for m in readers[r]:
                    if m in current and m not in done:
                        current[m] = k = key(m)
                        heapq.heappush(ready, (*k, m))
        for s in dag.successors(best):
            indeg[s] -= 1
            if indeg[s] == 0:
                current[s] = k = key(s)
                heapq.heappush(ready, (*k, s))
    return order


def _loop_like(n):
    """Elementwise (a loop over its own shape, also fused without a reduction)."""
    if n.dtype is None or n.shape is None:
        return False
    if n.op_name == "fused":
        return n.attrs.get("reduce") is None
    return n.opdef.is_elementwise


def _grows_memory(n, label, readers, plan, fetched_roots):
    """Whether running ``n`` later keeps more bytes live meanwhile: it frees (as the last
    reader) more input bytes than its own buffer takes."""
    alloc = nbytes(n) if owns_buffer(n, plan) else 0
    own, freed = plan.root(n), 0
    for r in {id(plan.root(x)): plan.root(x) for x in value_inputs(n)}.values():
        last = max(label[id(m)] for m in readers[id(r)])
        if r is not own and last == label[id(n)] and owns_buffer(r, plan) \
                and id(r) not in fetched_roots:
            freed += nbytes(r)
    return freed > alloc


class _Order:
    """A schedule being edited: a linked list (a node moves in O(1)) with integer labels that
    compare as positions do (a moved node takes the midpoint of its new neighbours' labels;
    when no integer is left between them, every node is labelled again)."""

    GAP = 1 << 20

    def __init__(self, nodes):
        self.first = nodes[0] if nodes else None
        self.prev = {id(b): a for a, b in zip(nodes, nodes[1:])}
        self.next = {id(a): b for a, b in zip(nodes, nodes[1:])}
        self.label = {id(n): i * self.GAP for i, n in enumerate(nodes)}

    def __iter__(self):
        n = self.first
        while n is not None:
            yield n
            n = self.next.get(id(n))

    def move_before(self, n, target):
        p, q = self.prev.pop(id(n), None), self.next.pop(id(n), None)
        if p is not None:
            self.next[id(p)] = q
        if q is not None:
            self.prev[id(q)] = p
        if self.first is n:
            self.first = q
        before = self.prev.get(id(target))
        self.prev[id(target)], self.next[id(n)] = n, target
        if before is None:
            self.first = n
        else:
            self.next[id(before)], self.prev[id(n)] = n, before
        low = self.label[id(before)] if before is not None else self.label[id(target)] - 2 * self.GAP
        if self.label[id(target)] - low < 2:
            self.label = {id(m): i * self.GAP for i, m in enumerate(self)}
        else:
            self.label[id(n)] = (low + self.label[id(target)]) // 2


PEAK_CHECKS = 64  # moves that may raise the live peak, checked by a whole walk of the order


def _sink_into_readers(order, dag, plan, fetches, peak):
    """Move each elementwise node down to just before its first successor when that is an
    elementwise reader of the same shape (last nodes first, so chains sink together).

    A move that keeps freed inputs alive longer than the node's own buffer would have been
    (``_grows_memory``) is kept only when the live peak stays where it was; that check walks
    the whole order, so only the first ``PEAK_CHECKS`` such moves are tried (the others are
    refused): the pass stays linear in the nodes.
    """
    fetched_roots = {id(plan.root(f)) for f in fetches if f is not None}
    readers = {}  # id(root buffer) -> nodes reading it
    for m in order:
        for x in value_inputs(m):
            readers.setdefault(id(plan.root(x)), []).append(m)
    edit = _Order(list(order))  # (``peak``: the live peak of ``order``)
    sunk, checks = 0, PEAK_CHECKS
    for n in reversed(list(order)):
        succ = list(dag.successors(n)) if _loop_like(n) else ()
        if not succ:
            continue
        first = min(succ, key=lambda s: edit.label[id(s)])
        if edit.prev.get(id(first)) is n or not _loop_like(first) \
                or tuple(first.shape) != tuple(n.shape) \
                or not any(x is n for x in value_inputs(first)):
            continue
        if _grows_memory(n, edit.label, readers, plan, fetched_roots):
            if checks == 0:
                continue
            checks -= 1
            moved = [m for m in edit if m is not n]
            moved.insert(next(i for i, m in enumerate(moved) if m is first), n)
            if live_peak(moved, plan, fetches) > peak:
                continue
        edit.move_before(n, first)
        sunk += 1
    return list(edit), sunk


def schedule_for_memory(program):
    """Reorder ``program.nodes`` to keep peak memory low under all ordering constraints.

    Args:
        program: an ``ir.program.Program`` (after in-place analysis, or without it).
    Returns:
        {"moved": nodes whose position changed, "sunk": elementwise nodes moved next to
        their reader, "failure_edges": may-fail -> variable-write orderings added (see
        ``ir.rollback``), "old_value_copies": copies of a variable's old value made for
        readers that also depend on its update, "live_peak_before", "live_peak_after"}.
    Raises:
        CompileError: the constraints contradict each other (a pass bug; names the cycle).
    Example:
        >>> changes = schedule_for_memory(program)
        >>> changes["live_peak_after"] <= changes["live_peak_before"]
        True
    """
    plan = ensure_plan(program)
    kept = keep_old_values(program, plan)
    dag = _dag(program, plan)
    plan = RootCache(plan)  # (no aliasing changes from here on)
    reads = _reads(program.nodes, plan)
    before = live_peak(program.nodes, plan, program.fetches, reads)
    order = _greedy_order(program, plan, dag, reads)
    _check_acyclic(dag, order)
    after = live_peak(order, plan, program.fetches, reads)
    old = program.nodes
    if after > before:
        # The greedy choice is a heuristic; keep the original order when it did worse, after
        # checking that order respects the constraints too.
        pos = positions(old)
        if all(pos[id(a)] < pos[id(b)] for a, b in dag.edges()):
            order, after = list(old), before
    sunk_order, sunk = _sink_into_readers(order, dag, plan, program.fetches, after)
    if sunk:
        sunk_after = live_peak(sunk_order, plan, program.fetches, reads)
        if sunk_after <= after:  # a safeguard: each move kept the peak
            order, after = sunk_order, sunk_after
        else:
            sunk = 0
    moved = sum(1 for a, b in zip(old, order) if a is not b)
    program.nodes = order
    return {"moved": moved, "sunk": sunk, "failure_edges": dag.failure_edges,
            "old_value_copies": kept, "live_peak_before": before, "live_peak_after": after}
