"""Constant folding: evaluate, at compile time, every pure node whose inputs are all constants.

Values come from the op's reference semantics (``OpDef.evaluate``: the scalar formula or the
NumPy ``impl``), so a folded node holds exactly what the unoptimized step would compute.
Splat results (every element equal, e.g. a broadcast scalar) are stored as zero-strided views,
so folding ``broadcast_to(1/128, [128, 10])`` costs no memory; fusion later inlines splats into
scalar bodies. Results larger than ``MAX_FOLD_ELEMENTS`` that are not splats are left to run
time, so that folding never bloats a compiled step. Impure nodes (random ops, assign) and
nodes that fail to evaluate are left alone.
"""
import numpy as np

from ..ops.registry import index_check_of
from .common import is_pure, make_const, replace_uses, splat, splat_array, tracked_uses

MAX_FOLD_ELEMENTS = 1 << 16


def _fold_value(n):
    """The constant value of ``n`` (all inputs const), or None when it should not fold."""
    values = [x.attrs["value"] for x in n.inputs]
    splats = [splat(x) for x in n.inputs]
    if all(s is not None for s in splats) and (n.opdef.is_elementwise or
                                              n.opdef.rearranges):
        # Every element is the same: evaluate once on scalars and broadcast.
        if n.opdef.is_elementwise:
            scalars = [np.asarray(s, dtype=v.dtype) for s, v in zip(splats, values)]
            one = np.asarray(n.opdef.evaluate(scalars, n.attrs)).astype(n.dtype.np)
        else:
            one = np.asarray(splats[0], dtype=n.dtype.np)
        return splat_array(one[()], n.dtype.np, n.shape)
    if n.size > MAX_FOLD_ELEMENTS:
        return None
    check = index_check_of(n)
    if check is not None:  # a bad index fails at run time, where the error names the node
        idx, bound = np.asarray(values[check[0]]), np.asarray(check[2], dtype=np.int64)
        if np.any((idx < 0) | (idx >= bound)):
            return None
    try:
        with np.errstate(all="ignore"):
            out = n.opdef.evaluate(values, n.attrs)
    except Exception:  # noqa: BLE001  (left to run time, where the error names the node)
        return None
    out = np.asarray(out)
    if out.shape != tuple(n.shape):
        return None
    return out.astype(n.dtype.np, copy=True)


def fold_constants(program):
    """Replace pure all-constant nodes by constants.

    Args:
        program: an ``ir.program.Program`` (rewritten in place).
    Returns:
        {"folded": nodes replaced by constants}.
    Example:
        >>> fold_constants(program)     # 1/128 * ones: one splat const
        {'folded': 5}
    """
    folded = 0
    with tracked_uses(program):  # each replacement visits the folded node's users only
        for n in list(program.nodes):
            if n.opdef.leaf or not is_pure(n) or n.dtype is None or not n.inputs:
                continue
            if n.op_name == "check_numerics" or not all(x.op_name == "const"
                                                        for x in n.inputs):
                continue
            value = _fold_value(n)
            if value is None:
                continue
            replace_uses(program, n, make_const(program, n, value))
            folded += 1
    return {"folded": folded}
