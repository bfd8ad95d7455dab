"""2-D max and average pooling (NHWC) with their backward ops as ops of their own.

Attributes: ``ksize`` (kh, kw), ``strides`` (sh, sw), ``padding`` "VALID" or "SAME" (TF's
rule). The NCHW layout and TF1's 4-element ksize/strides are handled by ``gc.nn``.

Max pooling's gradient convention (the tie rule): each window's whole gradient goes to ONE
element, the FIRST maximum of the window in row-major order (top row first, then left to
right), the rule of the hand-written W4 baseline and the LLVM kernels; other equal elements
get nothing; a NaN counts as the maximum (the first NaN wins, as ``np.argmax`` has it).
(Unlike ``reduce_max``, which splits ties evenly: a pooling window is a routing
decision, and backends record one argmax per window.) ``max_pool_grad`` takes the forward
input and recomputes the argmax; a backend may instead save the argmax in the forward pass.
Its own VJP is ``max_pool_grad_grad`` (read the gradient at each argmax), and that one's VJP
is ``max_pool_grad`` again, so second derivatives work; neither passes gradient to ``x``
(the routing is piecewise constant in x).

Average pooling divides each window by the number of real (unpadded) elements it covers, as
TF does for SAME padding; ``avg_pool_grad`` takes the forward input as a shape-only operand.
"""
from .. import examples as E
from .conv import check_window_attrs, spatial_out
from .registry import F, defop, require, same_dtype
from .windows import (avg_pool_grad_impl, avg_pool_impl, max_pool_grad_grad_impl,
                      max_pool_grad_impl, max_pool_impl)


def _pool_infer(nodes, ksize=(2, 2), strides=(2, 2), padding="VALID"):
    x = nodes[0]
    same_dtype(nodes, "f")
    require(x.rank == 4, f"input must be 4-D [batch, height, width, channels], found "
            f"{x.type_str()}")
    check_window_attrs(ksize, strides, padding)
    return x.dtype, (x.shape[0],) + spatial_out(x, ksize, strides, padding) + (x.shape[3],)


def _like_input_infer(nodes, ksize=(2, 2), strides=(2, 2), padding="VALID"):
    """(x or like, same-as-pooled) -> x's shape: the backward ops of pooling."""
    x, pooled = nodes
    same_dtype(nodes, "f")
    dtype, want = _pool_infer([x], ksize, strides, padding)
    require(pooled.rank == 4 and all(a is None or b is None or a == b
                                     for a, b in zip(pooled.shape, want)),
            f"the pooled gradient {pooled.type_str()} does not match the pooling of "
            f"{x.type_str()}, which gives {dtype.short}{list(want)}")
    return x.dtype, x.shape


def _max_pool_vjp(g, out, x, **attrs):
    return [F.max_pool_grad(x, g, **attrs)]


def _max_pool_grad_vjp(g, out, x, dy, **attrs):
    return [None, F.max_pool_grad_grad(x, g, **attrs)]


def _max_pool_grad_grad_infer(nodes, **attrs):
    x, gx = nodes
    require(gx.shape == x.shape or None in x.shape + gx.shape,
            f"the gradient {gx.type_str()} must be shaped like the input {x.type_str()}")
    return _pool_infer([x, gx], **attrs)


def _max_pool_grad_grad_vjp(g, out, x, gx, **attrs):
    return [None, F.max_pool_grad(x, g, **attrs)]


def _avg_pool_grad_infer(nodes, **attrs):
    dy, like = nodes
    return _like_input_infer([like, dy], **attrs)


MAX_POOL = defop("max_pool", _pool_infer, _max_pool_vjp, impl=max_pool_impl, family="pool",
                 doc="max over each window; gradient to the window's first maximum",
                 tf_name="MaxPool", examples=E.leading(1))
MAX_POOL_GRAD = defop(
    "max_pool_grad", _like_input_infer, _max_pool_grad_vjp, impl=max_pool_grad_impl,
    family="pool", doc="(x, dy) -> x-shaped: dy routed to each window's first argmax",
    tf_name="MaxPoolGrad", examples=E.leading(1, (0, 1)))
MAX_POOL_GRAD_GRAD = defop(
    "max_pool_grad_grad", _max_pool_grad_grad_infer, _max_pool_grad_grad_vjp,
    impl=max_pool_grad_grad_impl, family="pool", examples=E.leading(1, (0, 1)),
    doc="(x, gx) -> pooled-shaped: gx read at each window's first argmax")
AVG_POOL = defop("avg_pool", _pool_infer,
                 lambda g, out, x, **attrs: [F.avg_pool_grad(g, x, **attrs)],
                 impl=avg_pool_impl, family="pool",
                 doc="mean of each window's real (unpadded) elements", tf_name="AvgPool",
                 examples=E.leading(1))
AVG_POOL_GRAD = defop(
    "avg_pool_grad", _avg_pool_grad_infer,
    lambda g, out, dy, like, **attrs: [F.avg_pool(g, **attrs), None],
    impl=avg_pool_grad_impl, family="pool", shape_only=(1,),
    doc="(dy, like=x) -> x-shaped: each window's gradient spread evenly over it",
    tf_name="AvgPoolGrad", examples=E.leading(1, (0, 1)))
