"""Reads of a variable's old value that cannot run before the variable is written.

``a = assign(w, w * 0.5); y = a * w`` reads the new value (through ``a``) and the old one
(``w``) in one expression: the reader depends on the write, so no schedule can put it before
the write (through data, or through an in-place decision that orders it after a value computed
from the write), yet the reference gives it the old value. Such readers get a copy of the old value
taken before the write (a ``copy`` node, never a view). The schedule pass does this before
ordering the step, and the memory plan does it when no schedule pass ran (the unoptimized
pipeline with debugging checks, which plans buffers in the reference's order).
"""
import networkx as nx

from .common import new_node, users


def keep_old_values(program, plan):
    """Rewire every such reader to a copy of the old value; returns the copies made. Runs
    once per program (the schedule pass, else the memory plan): later calls return 0."""
    if getattr(program, "old_values_kept", False):
        return 0
    program.old_values_kept = True
    data = nx.DiGraph()  # data edges and the in-place orderings: both put a node after another
    for n in program.nodes:
        data.add_node(n)
        data.add_edges_from((x, n) for x in n.inputs)
    data.add_edges_from(getattr(program, "constraints", []))
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
        later = nx.descendants(data, writer) | nx.descendants(data, a) | {writer, a}
        copies = {}
        for m in cls:
            for u in list(uses.get(m, [])):
                if u in later and u is not writer and u is not a and not any(u is c for c in cls):
                    if id(m) not in copies:
                        copies[id(m)] = new_node(program, m, "copy", [m], {}, before=writer)
                        made += 1
                    u.inputs = [copies[id(m)] if x is m else x for x in u.inputs]
    return made
