"""Scale folding: move an SGD learning rate into the loss gradient's seed.

The backward pass is linear in its seed. When every gradient that flows from a scaled seed
``S = k * X`` (k a constant, X independent of the seed) ends in an update ``W - c * g`` with
one and the same constant ``c``, the step may instead scale the seed by ``k * c`` and update
with ``W - g``: each weight update loses a multiply over the whole weight (what a hand-written
step does by folding the learning rate into the loss gradient).

The rewrite fires only when it is exact in real arithmetic, checked node by node: every node
depending on the seed must be linear in it (add/subtract of two such nodes, multiply or divide
by an independent value, matmul with one dependent operand, sums, means, reshapes, transposes,
broadcasts, slices, gathers, ``where(c, g, 0)``), and its only users are other such nodes or
the updates' multiplies. A fetched gradient, a gradient norm (clipping), Adam or momentum
(``m + (1 - b) g`` is affine, not linear) all stop it. Floating-point results differ from the
reference by rounding only (``(k c) x`` against ``c (k x)``).
"""
import heapq

from .common import (live_nodes, make_const, positions, replace_uses, set_inputs, splat,
                     splat_array, tracked_uses, users)



def _update_sites(program):
    """[(multiply node, gradient node, lr value)] of updates ``assign(W, W - g * c)``."""
    sites = []
    for a in program.nodes:
        if a.op_name != "assign":
            continue
        var, v = a.inputs
        if v.op_name != "subtract" or v.inputs[0] is not var:
            continue
        m = v.inputs[1]
        if m.op_name != "multiply":
            continue
        for g, c in ((m.inputs[0], m.inputs[1]), (m.inputs[1], m.inputs[0])):
            s = splat(c)
            if s is not None and not isinstance(s, bool) and c.size == 1 and g.is_grad:
                sites.append((m, g, s))
                break
    return sites


def _linear(n, dep):
    """Whether ``n`` (which depends on the seed) is linear in it, given the dependent set."""
    d = [id(x) in dep for x in n.inputs]
    op, linear = n.op_name, n.opdef.linear  # which inputs may carry the seed
    if linear == "all":
        return all(d)
    if linear == "each":
        return sum(d) == 1
    if linear == "first":
        return d[0] and not any(d[1:])
    if op == "where":
        zero_b = splat(n.inputs[2]) == 0 and not d[0] and d[1] and not d[2]
        return zero_b or (not d[0] and d[1] and d[2])
    if op == "fused":
        return False  # runs before fusion; bodies are not analysed
    return False


def _try_seed(seed, sites, users_of, fetched, pos):
    """The sites whose multiply can be dropped by scaling ``seed``, or None."""
    site_mults = {id(m) for m, _, _ in sites}
    dep, order = {id(seed): seed}, [seed]
    ahead, node_at = [], {}  # positions of the seed's descendants, visited in schedule order

    def push(n):
        for u in users_of.get(n, []):
            if id(u) not in dep and id(u) not in site_mults:
                node_at[pos[id(u)]] = u
                heapq.heappush(ahead, pos[id(u)])
    push(seed)
    while ahead:
        n = node_at[heapq.heappop(ahead)]
        if id(n) in dep:
            continue
        dep[id(n)] = n
        order.append(n)
        if not _linear(n, dep):  # (its dependent inputs, all earlier, are in dep already)
            return None
        push(n)
    if any(id(f) in dep for f in fetched):
        return None
    mults = {id(m): (m, g, c) for m, g, c in sites if id(g) in dep}
    for n in order:
        for u in users_of.get(n, []):
            if id(u) not in dep and id(u) not in mults:
                return None
    lrs = {c for _, _, c in mults.values()}
    if len(lrs) != 1 or not mults:
        return None
    return list(mults.values())


def fold_update_scale(program):
    """Fold a shared SGD learning rate into the gradient seed (see module docstring).

    Args:
        program: an ``ir.program.Program`` (before fusion).
    Returns:
        {"updates_rescaled": multiplies removed (0 when the conditions do not hold)}.
    Example:
        >>> fold_update_scale(program)    # SGD on an MLP: one multiply less per variable
        {'updates_rescaled': 6}
    """
    sites = _update_sites(program)
    if not sites:
        return {"updates_rescaled": 0}
    users_of = users(program.nodes)
    pos = positions(program.nodes)
    fetched = [f for f in program.fetches if f is not None]
    for seed in program.nodes:
        if seed.op_name != "multiply" or not seed.is_grad:
            continue
        k_pos = [i for i, x in enumerate(seed.inputs) if splat(x) is not None]
        if len(k_pos) != 1:
            continue
        chosen = _try_seed(seed, sites, users_of, fetched, pos)
        if chosen is None:
            continue
        k = seed.inputs[k_pos[0]]
        c = chosen[0][2]
        value = (k.attrs["value"].reshape(-1)[0] * k.dtype.np.type(c)).astype(k.dtype.np)
        with tracked_uses(program) as uses:
            scaled = make_const(program, k, splat_array(value, k.dtype.np, k.shape),
                                before=seed)
            set_inputs(seed, [scaled if i == k_pos[0] else x
                              for i, x in enumerate(seed.inputs)], uses)
            for m, g, _ in chosen:
                replace_uses(program, m, g)
        program.nodes = live_nodes(program)
        return {"updates_rescaled": len(chosen)}
    return {"updates_rescaled": 0}
