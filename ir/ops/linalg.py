"""matmul: 2-D and batched (leading dims broadcast), with transposes as flags.

The VJP keeps transposes as flags rather than transpose nodes, so backends fold them into
GEMM's trans arguments:  C = op(A) op(B)  gives
    dA = g B^T (or B g^T when A is transposed),  dB = A^T g (or g^T A when B is transposed).
Gradients of broadcast batch dims are summed back by the autodiff driver.
"""
import numpy as np

from ..shapes import RuleError, broadcast_shapes, format_shape, num_elements
from .. import scalar as S
from .registry import F, ZERO, defop, require, same_dtype


def _matmul_infer(nodes, transpose_a=False, transpose_b=False):
    a, b = nodes
    same_dtype(nodes, "fi")
    for x, label in ((a, "a"), (b, "b")):
        if x.shape is None or len(x.shape) < 2:  # (the message only when it fails)
            require(x.rank >= 2, f"operand {label} must have rank >= 2, found {x.type_str()}",
                    hint="reshape vectors to [n, 1] or [1, n], or use gc.tensordot")
    sa, sb = tuple(a.shape), tuple(b.shape)  # (plain tuples: indexed at C speed)
    m, ka = (sa[-1], sa[-2]) if transpose_a else (sa[-2], sa[-1])
    kb, n = (sb[-1], sb[-2]) if transpose_b else (sb[-2], sb[-1])
    if ka is not None and kb is not None and ka != kb:
        raise RuleError(
            f"inner dimensions differ: {a.type_str()} @ {b.type_str()}",
            [f"a{'^T' if transpose_a else ''} has {ka} columns, "
             f"b{'^T' if transpose_b else ''} has {kb} rows"],
            "check the operand order, or pass transpose_a / transpose_b")
    try:
        batch = broadcast_shapes(sa[:-2], sb[:-2])
    except RuleError:
        raise RuleError(f"batch dims {format_shape(sa[:-2])} and "
                        f"{format_shape(sb[:-2])} do not broadcast") from None
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


def _matmul_examples(node):
    """Leading dims broadcast; A's rows are the output's rows and B's columns its columns;
    the contracted axis is summed over (``ir.examples``)."""
    a, b = node.inputs
    ra, rb, r = len(a.shape), len(b.shape), len(node.shape)
    ta, tb = node.attrs.get("transpose_a", False), node.attrs.get("transpose_b", False)
    entries = [(i, k, k + r - len(x.shape)) for i, x in enumerate((a, b))
               for k in range(len(x.shape) - 2) if x.shape[k] == node.shape[k + r - len(x.shape)]]
    return entries + [(0, ra - 1 if ta else ra - 2, r - 2), (0, ra - 2 if ta else ra - 1, "sum"),
                      (1, rb - 2 if tb else rb - 1, r - 1), (1, rb - 1 if tb else rb - 2, "sum")]


def _matmul_macs(node):
    """Output elements times the contracted length (of A, the second-to-last input)."""
    a = node.inputs[-2].shape
    return num_elements(node.shape) * (a[-2] if node.attrs.get("transpose_a") else a[-1])


MATMUL = defop("matmul", _matmul_infer, _matmul_vjp, impl=matmul_impl, family="linalg",
               broadcast_core=2, linear="each", tf_name="MatMul", examples=_matmul_examples,
               macs=_matmul_macs, product=(0, 1))


# -- w - op(a) op(b): an update that consumes its product ----------------------------------
# A weight update ``W - A^T dY`` (the learning rate already folded into dY) reads its
# product once: ``fuse`` (``ir.passes.fuse_gemm``) makes the pair one node, so that a GEMM
# writes the update straight into W's bytes (the product rounded as the matmul's, then
# subtracted: the reference's order). Made by the passes, after autodiff; its VJP is the
# pair's all the same.

def _subtract_matmul_infer(nodes, transpose_a=False, transpose_b=False):
    w, a, b = nodes
    dtype, shape = _matmul_infer([a, b], transpose_a, transpose_b)
    same_dtype(nodes, "f")
    if tuple(w.shape) != tuple(shape):
        raise RuleError(f"the minuend {w.type_str()} must have the product's shape "
                        f"{format_shape(shape)}")
    return dtype, shape


def _subtract_matmul_vjp(g, out, w, a, b, transpose_a=False, transpose_b=False):
    da, db = _matmul_vjp(g, out, a, b, transpose_a, transpose_b)
    return [g, F.negative(da), F.negative(db)]


def subtract_matmul_impl(w, a, b, transpose_a=False, transpose_b=False):
    return w - matmul_impl(a, b, transpose_a, transpose_b)


SUBTRACT_MATMUL = defop(
    "subtract_matmul", _subtract_matmul_infer, _subtract_matmul_vjp, impl=subtract_matmul_impl,
    family="linalg", destroys=(0,), doc="w - op(a) op(b) (an update consuming its product)",
    macs=_matmul_macs, product=(1, 2))


# -- body(op(a) op(b), others...): an elementwise epilogue that consumes its product -------
# The elementwise node right after a product that alone reads it (a bias and activation, an
# activation's gradient mask ``where(h > 0, dh, 0)``): ``fuse`` (``ir.passes.fuse_gemm``)
# makes the pair one node, and a GEMM applies ``body`` to each tile in registers as it stores
# it: no product buffer, no second pass. ``body`` (an ``ir.scalar.Expr``) reads the product as
# arg 0 and input k + 1 as arg k (others broadcast to the product's shape); the product is
# rounded as the matmul's, then the body runs: the reference's order. Made by the passes,
# after autodiff (no gradient, as ``fused``). An input of the product's shape and dtype may
# be overwritten in place: each output element reads its own element of it only.

def _fused_matmul_infer(nodes, body, transpose_a=False, transpose_b=False):
    a, b, *others = nodes
    _, shape = _matmul_infer([a, b], transpose_a, transpose_b)
    for i, x in enumerate(others):
        try:
            ok = broadcast_shapes(tuple(x.shape), tuple(shape)) == tuple(shape)
        except (RuleError, ValueError):
            ok = False
        if not ok:
            raise RuleError(f"input {i + 2} {x.type_str()} does not broadcast to the product's "
                            f"{format_shape(shape)}")
    return body.dtype, shape


def fused_matmul_impl(a, b, *others, body, transpose_a=False, transpose_b=False):
    product = matmul_impl(a, b, transpose_a, transpose_b)
    value = S.evaluate(body, [product] + list(others))
    return np.broadcast_to(value, product.shape).astype(body.dtype.np)


def _fused_matmul_macs(node):
    a = node.inputs[0].shape
    return num_elements(node.shape) * (a[-2] if node.attrs.get("transpose_a") else a[-1])


FUSED_MATMUL = defop(
    "fused_matmul", _fused_matmul_infer, ZERO, impl=fused_matmul_impl, family="linalg",
    doc="body(op(a) op(b), others...) (an elementwise epilogue consuming its product)",
    macs=_fused_matmul_macs, destroys_from=2, product=(0, 1))
