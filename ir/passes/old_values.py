"""Reads of a variable's old value that cannot run before the variable is written.

``a = assign(w, w * 0.5); y = a * w`` reads the new value (through ``a``) and the old one
(``w``) in one expression: the reader depends on the write, so no schedule can put it before
the write (through data, or through an in-place decision that orders it after a value computed
from the write), yet the reference gives it the old value. Such readers get a copy of the old value
taken before the write (a ``copy`` node, never a view). The schedule pass does this before
ordering the step, and the memory plan does it when no schedule pass ran (the unoptimized
pipeline with debugging checks, which plans buffers in the reference's order).
"""
from .common import new_node, users


def _successors(program):
    """{id(node): nodes that must run after it}: data edges and the in-place orderings."""
    succ = {}
    for n in program.nodes:
        for x in n.inputs:
            succ.setdefault(id(x), []).append(n)
    for r, w in getattr(program, "constraints", []):
        succ.setdefault(id(r), []).append(w)
    return succ


def _ranks(program, succ):
    """{id(node): position in a topological order of ``succ``}, or None when its edges form
    a cycle (the schedule pass then reports it)."""
    indeg = {id(n): 0 for n in program.nodes}
    for targets in succ.values():
        for m in targets:
            indeg[id(m)] = indeg.get(id(m), 0) + 1
    ready = [n for n in program.nodes if indeg[id(n)] == 0]
    rank = {}
    while ready:
        n = ready.pop()
        rank[id(n)] = len(rank)
        for m in succ.get(id(n), ()):
            indeg[id(m)] -= 1
            if indeg[id(m)] == 0:
                ready.append(m)
    return rank if len(rank) == len(indeg) else None


def _reaches(succ, rank, starts, targets):
    """The ids of ``targets`` reachable from ``starts`` (a search that never passes the
    targets' highest rank: a path only climbs in a topological order)."""
    if rank is not None:
        starts = [s for s in starts if id(s) in rank]
        low = min(rank[id(s)] for s in starts)
        targets = [t for t in targets if rank[id(t)] >= low]
        if not targets:
            return set()
        limit = max(rank[id(t)] for t in targets)
    want = {id(t) for t in targets}
    seen = {id(s) for s in starts}
    stack, found = list(starts), want & seen
    while stack and len(found) < len(want):
        for m in succ.get(id(stack.pop()), ()):
            if id(m) not in seen and (rank is None or rank[id(m)] <= limit):
                seen.add(id(m))
                stack.append(m)
                if id(m) in want:
                    found.add(id(m))
    return found


def keep_old_values(program, plan):
    """Rewire every such reader to a copy of the old value; returns the copies made. Runs
    once per program (the schedule pass, else the memory plan): later calls return 0."""
    if getattr(program, "old_values_kept", False):
        return 0
    program.old_values_kept = True
    succ = rank = None  # built when some variable has a reader outside its class
    children = {}
    for n in program.nodes:
        if n in plan.views:
            children.setdefault(id(plan.views[n]), []).append(n)
    uses = users(program.nodes, values_only=True)
    made = 0
    for a in [n for n in program.nodes if n.op_name == "assign"]:
        var, value = a.inputs
        writer = value if plan.inplace.get(value) is var else a
        cls, stack = [], [var]
        while stack:
            m = stack.pop()
            cls.append(m)
            stack.extend(children.get(id(m), []))
        in_cls = {id(m) for m in cls}
        readers = [(m, u) for m in cls for u in uses.get(m, [])
                   if u is not writer and u is not a and id(u) not in in_cls]
        if not readers:
            continue
        if succ is None:
            succ = _successors(program)
            rank = _ranks(program, succ)
        # readers that run after the write: the writer's and the assign's descendants
        later = _reaches(succ, rank, [writer, a], [u for _, u in readers])
        copies = {}
        for m, u in readers:
            if id(u) in later:
                if id(m) not in copies:
                    copies[id(m)] = new_node(program, m, "copy", [m], {}, before=writer)
                    made += 1
                u.inputs = [copies[id(m)] if x is m else x for x in u.inputs]
    return made
