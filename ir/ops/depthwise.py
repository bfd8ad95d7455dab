"""Depthwise 2-D convolution (NHWC input, filters [kh, kw, C, M]) and its two backward ops.

Each input channel c is convolved with its own filters ``w[:, :, c, :]``, giving output
channels ``c * M + m`` (TF1's ``depthwise_conv2d``). Like ``conv2d`` the op is bilinear, and
the three ops close under differentiation (second order works):

    dx = depthwise_conv2d_backprop_input(dy, w, like=x)
    dw = depthwise_conv2d_backprop_filter(x, dy)
    VJP of backprop_input(dy, w):   d dy = depthwise(g, w),          d w = backprop_filter(g, dy)
    VJP of backprop_filter(x, dy):  d x  = backprop_input(dy, g),    d dy = depthwise(x, g)

Attributes: ``strides`` (sh, sw), ``padding`` ("VALID" or "SAME", TF's rule, on the dilated
window) and ``dilations`` (rh, rw): the taps ``rate`` apart, as TF1's ``rate``. The NCHW
layout is handled by the API (``gc.nn.depthwise_conv2d``). ``like`` is shape-only.
Kernels: direct loops over windows, channels innermost (reference NumPy in ``ir.ops.windows``).
"""
from .. import examples as E
from .conv import (_channels_match, _nhwc, batch_summed, conv_window,
                   spatial_out)
from .registry import F, defop, require, same_dtype
from .windows import (depthwise_conv2d_backprop_filter_impl,
                      depthwise_conv2d_backprop_input_impl, depthwise_conv2d_impl)


def _filter_shape(w):
    require(w.rank == 4 and all(d is not None for d in w.shape),
            f"the filter must be [kh, kw, in, multiplier] with a static shape, found "
            f"{w.type_str()}")
    return w.shape


def _rule(kind):
    """The shape/dtype rule of the forward op ("forward": x, w), the input gradient
    ("input": dy, w, like) or the filter gradient ("filter": x, dy; ``filter_shape``)."""
    def rule(nodes, filter_shape=None, strides=(1, 1), padding="VALID", dilations=(1, 1)):
        if kind == "filter":
            (x, dy), floats, shape = nodes, nodes, filter_shape
        else:
            shape, floats = _filter_shape(nodes[1]), nodes[:2]
            x, dy = (nodes[0], None) if kind == "forward" else (nodes[2], nodes[0])
        kh, kw, c, m = shape
        same_dtype(floats, "f")
        _nhwc(x, "input")
        window = conv_window((kh, kw), strides, padding, dilations)
        hint = "depthwise filters are [kh, kw, in_channels, channel_multiplier]"
        _channels_match(x, c, hint=hint)
        if dy is not None:
            _nhwc(dy, "output gradient")
            _channels_match(dy, c * m, "the output gradient", hint)
        if kind == "forward":
            return x.dtype, (x.shape[0],) + spatial_out(x, window, strides, padding) + (c * m,)
        return floats[0].dtype, (x.shape[:3] + (c,) if kind == "input" else
                                 tuple(int(d) for d in shape))
    return rule


def _forward_vjp(g, out, x, w, **kw):
    return [F.depthwise_conv2d_backprop_input(g, w, x, **kw),
            F.depthwise_conv2d_backprop_filter(x, g, filter_shape=w.shape, **kw)]


def _backprop_input_vjp(g, out, dy, w, like, **kw):
    return [F.depthwise_conv2d(g, w, **kw),
            F.depthwise_conv2d_backprop_filter(g, dy, filter_shape=w.shape, **kw), None]


def _backprop_filter_vjp(g, out, x, dy, filter_shape, **kw):
    return [F.depthwise_conv2d_backprop_input(dy, g, x, **kw), F.depthwise_conv2d(x, g, **kw)]


DEPTHWISE_CONV2D = defop(
    "depthwise_conv2d", _rule("forward"), _forward_vjp, impl=depthwise_conv2d_impl,
    family="conv", tf_name="DepthwiseConv2dNative", examples=E.leading(1),
    doc="NHWC input, [kh, kw, C, M] filters: channel c convolved with its own M filters")
DEPTHWISE_CONV2D_BACKPROP_INPUT = defop(
    "depthwise_conv2d_backprop_input", _rule("input"), _backprop_input_vjp,
    impl=depthwise_conv2d_backprop_input_impl, family="conv", shape_only=(2,),
    tf_name="DepthwiseConv2dNativeBackpropInput", examples=E.leading(1, (0, 2)),
    doc="gradient of depthwise_conv2d wrt its input: (dy, filters, like=input) -> input-shaped")
DEPTHWISE_CONV2D_BACKPROP_FILTER = defop(
    "depthwise_conv2d_backprop_filter", _rule("filter"), _backprop_filter_vjp,
    impl=depthwise_conv2d_backprop_filter_impl, family="conv",
    tf_name="DepthwiseConv2dNativeBackpropFilter", examples=batch_summed,
    doc="gradient of depthwise_conv2d wrt its filters: (input, dy) -> filter-shaped")
