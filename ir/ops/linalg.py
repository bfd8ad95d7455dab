"""matmul: 2-D and batched (leading dims broadcast), with transposes as flags.

The VJP keeps transposes as flags rather than transpose nodes, so backends fold them into
GEMM's trans arguments:  C = op(A) op(B)  gives
    dA = g B^T (or B g^T when A is transposed),  dB = A^T g (or g^T A when B is transposed).
Gradients of broadcast batch dims are summed back by the autodiff driver.
"""
import numpy as np

from ..shapes import broadcast_shapes, format_shape, RuleError
from .registry import F, defop, require, same_dtype


def _matmul_infer(nodes, transpose_a=False, transpose_b=False):
    a, b = nodes
    same_dtype(nodes, "fi")
    for x, label in ((a, "a"), (b, "b")):
        require(x.rank >= 2, f"operand {label} must have rank >= 2, found {x.type_str()}",
                hint="reshape vectors to [n, 1] or [1, n], or use gc.tensordot")
    m, ka = (a.shape[-1], a.shape[-2]) if transpose_a else (a.shape[-2], a.shape[-1])
    kb, n = (b.shape[-1], b.shape[-2]) if transpose_b else (b.shape[-2], b.shape[-1])
    if ka is not None and kb is not None and ka != kb:
        raise RuleError(
            f"inner dimensions differ: {a.type_str()} @ {b.type_str()}",
            [f"a{'^T' if transpose_a else ''} has {ka} columns, "
             f"b{'^T' if transpose_b else ''} has {kb} rows"],
            "check the operand order, or pass transpose_a / transpose_b")
    try:
        batch = broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except RuleError:
        raise RuleError(f"batch dims {format_shape(a.shape[:-2])} and "
                        f"{format_shape(b.shape[:-2])} do not broadcast") from None
    return a.dtype, batch + (m, n)


def _t(x, flag):
    return np.swapaxes(x, -1, -2) if flag else x


def matmul_impl(a, b, transpose_a=False, transpose_b=False):
    return np.matmul(_t(a, transpose_a), _t(b, transpose_b))


def _matmul_vjp(g, out, a, b, transpose_a=False, transpose_b=False):
    mm = F.matmul
    if not transpose_a and not transpose_b:
        return [mm(g, b, transpose_b=True), mm(a, g, transpose_a=True)]
    if transpose_a and not transpose_b:
        return [mm(b, g, transpose_b=True), mm(a, g)]
    if not transpose_a and transpose_b:
        return [mm(g, b), mm(g, a, transpose_a=True)]
    return [mm(b, g, transpose_a=True, transpose_b=True),
            mm(g, a, transpose_a=True, transpose_b=True)]


MATMUL = defop("matmul", _matmul_infer, _matmul_vjp, impl=matmul_impl, family="linalg",
               broadcast_core=2, linear="each", tf_name="MatMul")
