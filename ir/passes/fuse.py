"""Elementwise fusion: chains and DAGs of elementwise ops become one ``fused`` node.

A group grows from a root (processed in reverse schedule order) by absorbing producers that are
elementwise (or ``broadcast_to``) and whose every user is already in the group. That rule
keeps each group convex (no path leaves it and comes back, so no cycle can form) and means
fusion never duplicates work: a value needed outside the group stays materialized. Splat
constants become ``const`` leaves of the body. A float reduction (sum, mean, max, min) whose
input is an elementwise root used by nothing else is fused as the group's epilogue, so
``reduce_sum(x * x)`` or the bias gradient of ``mean((a - b)^2)`` needs no temporary.

The fused node's body is an ``ir.scalar.Expr`` over ``arg(i)``; see ``ir/program.py`` for the
contract backends rely on. Groups of one plain op without constants are left as they are.

Before the elementwise groups, two kernel fusions: a softmax cross-entropy and its gradient of
the same logits become one node (``fuse_xent``), and an update ``w - a @ b`` whose product
nothing else reads one ``subtract_matmul`` (``fuse_gemm``).
"""
import heapq

import numpy as np

from .. import scalar as S
from ..ops.reduce import reduce_reference
from ..ops.registry import ZERO, REGISTRY, defop
from ..shapes import RuleError, normalize_axes
from .fuse_gemm import fuse_matmul_epilogues, fuse_subtract_matmul
from .fuse_xent import fuse_softmax_xent
from .common import (live_nodes, new_node, placed_before, positions, replace_uses, splat,
                     tracked_uses, users)

_NP_REDUCE = {"sum": np.sum, "mean": np.mean, "max": np.max, "min": np.min}


def reduced_shape(shape, reduce):
    """The shape after the epilogue ``reduce`` = (kind, axes, keepdims), or ``shape``."""
    if reduce is None:
        return tuple(shape)
    _, axes, keepdims = reduce
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def _fused_infer(nodes, body, shape, reduce=None, ops=()):
    shape = tuple(shape)
    for i, x in enumerate(nodes):
        if tuple(x.shape) == shape:
            continue  # (most inputs: no broadcast to check)
        try:
            ok = np.broadcast_shapes(tuple(x.shape), tuple(shape)) == tuple(shape)
        except ValueError:
            ok = False
        if not ok:
            raise RuleError(f"input {i} {x.type_str()} does not broadcast to {list(shape)}")
    return body.dtype, reduced_shape(shape, reduce)


def fused_impl(*inputs, body, shape, reduce=None, ops=()):
    """Reference semantics of a fused node (constant folding, tests)."""
    value = np.broadcast_to(S.evaluate(body, list(inputs)), tuple(shape))
    value = value.astype(body.dtype.np)
    if reduce is None:
        return value.copy()
    kind, axes, keepdims = reduce
    return np.asarray(reduce_reference(kind, _NP_REDUCE[kind], value, axes, keepdims))


FUSED = REGISTRY.get("fused") or defop(
    "fused", _fused_infer, ZERO, impl=fused_impl, family="fused",
    doc="a fused elementwise group: attrs body (scalar Expr over inputs), shape, reduce")


def fusable(n):
    """Whether ``n`` can be part of a fused body."""
    if n.dtype is None or n.shape is None:
        return False
    if n.op_name == "fused":
        return n.attrs.get("reduce") is None
    return n.opdef.is_elementwise or n.op_name == "broadcast_to"


_BODIES = {}  # (id(op), input dtype names) -> the formula of an op without attributes


def _member_body(m):
    if m.op_name == "fused":
        return m.attrs["body"]
    if m.op_name == "broadcast_to":
        return S.arg(0, m.inputs[0].dtype)
    dtypes = [x.dtype for x in m.inputs]
    if m.attrs:
        return m.opdef.scalar_body(dtypes, m.attrs)
    # Exprs are interned: building the formula again would give this very object
    key = (id(m.opdef), tuple(d.name for d in dtypes))
    body = _BODIES.get(key)
    if body is None:
        body = _BODIES[key] = m.opdef.scalar_body(dtypes, m.attrs)
    return body


def _grow(root, seed, users_of, pos, fetched, taken):
    """Members of the group rooted at ``root``, growing from ``seed`` (schedule order)."""
    members = {id(seed): seed}
    if root is not seed:
        members[id(root)] = root
    pending, node_at = [], {}  # a heap of -positions: the latest producer is looked at first

    def push(n):
        for x in n.inputs:
            if id(x) not in members:
                node_at[pos[id(x)]] = x
                heapq.heappush(pending, -pos[id(x)])
    push(seed)
    while pending:
        at = -heapq.heappop(pending)
        while pending and pending[0] == -at:  # pushed by several members: look once
            heapq.heappop(pending)
        p = node_at[at]
        if id(p) in members or not fusable(p) or id(p) in taken or id(p) in fetched:
            continue
        if all(id(u) in members for u in users_of[p]):
            members[id(p)] = p
            push(p)
    return sorted(members.values(), key=lambda x: pos[id(x)])


def _body_and_inputs(members, root):
    """Compose the members' formulas into one Expr; returns (body, external inputs)."""
    ids = {id(m) for m in members}
    inputs, expr_of, arg_of = [], {}, {}
    for m in members:
        if m is root and m.opdef.reduce:
            continue
        args = []
        for x in m.inputs:
            if id(x) in ids:
                args.append(expr_of[id(x)])
                continue
            s = splat(x)
            if s is not None:
                args.append(S.const(s, x.dtype))
                continue
            k = arg_of.get(id(x))
            if k is None:
                inputs.append(x)
                k = arg_of[id(x)] = len(inputs) - 1
            args.append(S.arg(k, x.dtype))
        expr_of[id(m)] = S.substitute(_member_body(m), args)
    last = root.inputs[0] if root.opdef.reduce else members[-1]
    return expr_of[id(last)], inputs


def _worth_fusing(members, root):
    if len(members) > 1:
        return True
    return root.op_name != "fused" and any(splat(x) is not None for x in root.inputs) \
        and root.op_name != "broadcast_to"


def _make_fused(program, members, root):
    body, inputs = _body_and_inputs(members, root)
    reduce = None
    shape = tuple(root.shape)
    if root.opdef.reduce:
        src = root.inputs[0]
        shape = tuple(src.shape)
        reduce = (root.opdef.reduce, normalize_axes(root.attrs.get("axis"), src.rank),
                  bool(root.attrs.get("keepdims", False)))
    ops = []
    for m in members:
        ops.extend(m.attrs["ops"] if m.op_name == "fused" else [m.op_name])
    fused = new_node(program, root, FUSED, inputs,
                     {"body": body, "shape": shape, "reduce": reduce, "ops": tuple(ops)},
                     schedule=False)  # placed by fuse_elementwise, right before root
    fused.meta["members"] = [(m.op_name, m.node_name, m.loc.short if m.loc else "", m.is_grad)
                             for m in members]
    replace_uses(program, root, fused)
    return fused


def _epilogue_seed(n, users_of, fetched):
    """For a float reduction whose input only it uses: that input (the group's seed)."""
    if not n.opdef.reduce or not n.dtype.is_floating:
        return None
    src = n.inputs[0]
    if fusable(src) and id(src) not in fetched and len(users_of[src]) == 1:
        return src
    return None


def fuse_elementwise(program):
    """Fuse elementwise groups (with broadcasts and reduction epilogues) into ``fused`` nodes.

    Args:
        program: an ``ir.program.Program`` (rewritten in place).
    Returns:
        {"groups": fused nodes made, "ops_fused": ops they replace, "epilogues": reductions
        fused as epilogues, "xent": loss and gradient pairs made one kernel (``fuse_xent``),
        "gemm_updates": ``w - a @ b`` made one node (``fuse_gemm``), "gemm_epilogues":
        products whose elementwise reader became one ``fused_matmul`` with them (LLVM only),
        "removed": nodes gone}.
    Example:
        >>> fuse_elementwise(program)     # relu(x @ W + b): add and relu in one node
        {'groups': 1, 'ops_fused': 2, 'epilogues': 0, 'xent': 0, 'gemm_updates': 0,
         'gemm_epilogues': 0, 'removed': 1}
    """
    before = len(program.nodes)
    with tracked_uses(program):
        xent = fuse_softmax_xent(program)
        updates = fuse_subtract_matmul(program)
    if xent or updates:
        program.nodes = live_nodes(program)
    nodes = program.nodes
    pos = positions(nodes)
    users_of = users(nodes)
    fetched = {id(f) for f in program.fetches if f is not None}
    taken = {}
    groups = []
    for n in reversed(nodes):
        if id(n) in taken:
            continue
        seed = _epilogue_seed(n, users_of, fetched)
        if seed is None and not fusable(n):
            continue
        members = _grow(n, n if seed is None else seed, users_of, pos, fetched, taken)
        for m in members:
            taken[id(m)] = m
        if _worth_fusing(members, n):
            groups.append((members, n))
    stats = {"groups": 0, "ops_fused": 0, "epilogues": 0, "xent": xent,
             "gemm_updates": updates}
    placed = {}  # id(root) -> its fused node, scheduled right before it
    with tracked_uses(program):
        for members, root in reversed(groups):
            placed[id(root)] = _make_fused(program, members, root)
            stats["groups"] += 1
            stats["ops_fused"] += len(members)
            stats["epilogues"] += bool(root.opdef.reduce)
    program.nodes = placed_before(nodes, placed)
    program.nodes = live_nodes(program)
    with tracked_uses(program):
        stats["gemm_epilogues"] = fuse_matmul_epilogues(program)
    if stats["gemm_epilogues"]:
        program.nodes = live_nodes(program)
    stats["removed"] = before + stats["groups"] + stats["gemm_epilogues"] - len(program.nodes)
    return stats
