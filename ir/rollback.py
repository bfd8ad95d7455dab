"""A step that fails changes nothing: ordering and snapshots for run-time failures.

A node whose op is declared ``may_fail`` (an index check, a host call, ``check_numerics``) can
stop a step. TF1 checks before it writes, so a failed step leaves every variable, optimizer
slot and ``global_step`` as it was; graphc keeps that promise in two ways:

- ordering (``failure_edges``): the schedulers run every may-fail node before every node that
  writes a variable's buffer (an assign that copies, or an update computed in place into the
  variable), whenever no data path leads from that writer to the may-fail node;
- a snapshot (``snapshot_variables``): where the order is impossible (a check reads an updated
  value) or the pipeline did not schedule for it, the program records the variables written
  before its last possible failure, ``program.snapshot``. Both runtimes copy just those before
  the call and copy them back when the step raises.

Debug checks that watch every node (``checks`` "numerics", "writes") make every node a
possible failure; they rely on the snapshot alone.
"""


def declared_failures(nodes):
    """The nodes whose op may stop the step at run time, in order."""
    return [n for n in nodes if n.opdef.may_fail]


def planned_writers(program):
    """[(node, variable)]: nodes that write into a variable's buffer under ``program.plan``
    (after in-place analysis, or ``ensure_plan``), in schedule order."""
    plan = program.plan
    out = []
    for n in program.nodes:
        if n.opdef.leaf or n.dtype is None and n.op_name != "assign":
            continue
        if n.op_name == "assign":
            if not plan.update_in_place.get(n, False):
                out.append((n, n.inputs[0]))
            continue
        if n in plan.views or n not in plan.inplace:
            continue
        root = plan.root(n)
        if root is not n and root.op_name == "variable":
            out.append((n, root))
    return out


def update_kernels(nodes):
    """[(node, variable)]: each assign and the node computing its value (past views): what
    may write the variable when no plan says which (a backend may compute in place)."""
    out = []
    for a in nodes:
        if a.op_name != "assign":
            continue
        var, value = a.inputs
        while value.opdef.aliases_input and value.inputs:
            value = value.inputs[0]
        if not value.opdef.leaf and value.op_name != "assign":
            out.append((value, var))
        out.append((a, var))
    return out


def failure_edges(pred, failing, writers):
    """Add (may-fail node -> writer) orderings wherever no path leads from the writer to the
    may-fail node (so no cycle can form); returns the edges added, in order.

    Args:
        pred: {node: set of the nodes that must run before it}, updated here.
        failing: the may-fail nodes (``declared_failures``).
        writers: [(node, variable)] (``update_kernels``, ``planned_writers``).

    Each may-fail node's ancestors are found once and kept current as edges are added (an
    edge m -> w makes m and its ancestors ancestors of whatever w reaches), so the cost does
    not grow as the number of writers times the graph (one search of descendants per writer).
    """
    added = []
    if not failing:
        return added
    ancestors = {m: reachable(pred, m) for m in failing}
    seen = set()
    for w, _ in writers:
        if w in seen:
            continue
        seen.add(w)
        for m in failing:  # (w reaches m exactly when w is among m's ancestors)
            if m is w or w in ancestors[m] or m in pred[w]:
                continue
            pred[w].add(m)
            added.append((m, w))
            for f in failing:
                if f is w or w in ancestors[f]:
                    ancestors[f] |= ancestors[m]
                    ancestors[f].add(m)
    return added


def reachable(adjacency, start):
    """The set of nodes reachable from ``start`` along ``adjacency`` ({node: iterable of
    nodes}), ``start`` left out: its ancestors over predecessor sets, its descendants over
    successor lists."""
    seen, stack = set(), [start]
    while stack:
        for m in adjacency[stack.pop()]:
            if m not in seen:
                seen.add(m)
                stack.append(m)
    return seen


def snapshot_variables(program, writers, checks=()):
    """The variables written before the step's last possible failure, in
    ``program.variables`` order (recorded as ``program.snapshot``).

    Args:
        program: the scheduled program.
        writers: [(node, variable)] from ``planned_writers`` or the backend's own list.
        checks: debug checks compiled in: "numerics" checks each float node after it is
            computed, "writes" checks each node; both can fail after any write.
    """
    pos = {id(n): i for i, n in enumerate(program.nodes)}
    last = -1.0
    for n in program.nodes:
        if n.opdef.may_fail:  # checks its inputs before it writes anything
            last = max(last, pos[id(n)] - 0.5)
        if n.opdef.leaf:
            continue
        if "writes" in checks or ("numerics" in checks and n.dtype is not None
                                  and n.dtype.is_floating):
            last = max(last, pos[id(n)] + 0.5)  # checked after it is computed
    written = {id(v) for n, v in writers if pos.get(id(n), len(pos)) < last}
    snap = [v for v in program.variables if id(v) in written]
    program.snapshot = snap
    return snap


__all__ = ["declared_failures", "planned_writers", "update_kernels", "failure_edges", "reachable",
           "snapshot_variables"]
