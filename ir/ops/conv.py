"""2-D convolution (NHWC, filters [kh, kw, in, out]) and its two backward ops.

``y = conv2d(x, w)`` is bilinear, so its gradients are the two other linear maps of the
same contraction, and the three ops close under differentiation (second order works):

    dx = conv2d_backprop_input(dy, w, like=x)      dw = conv2d_backprop_filter(x, dy)
    VJP of backprop_input(dy, w):   d dy = conv2d(g, w),          d w = backprop_filter(g, dy)
    VJP of backprop_filter(x, dy):  d x  = backprop_input(dy, g), d dy = conv2d(x, g)

Attributes: ``strides`` (sh, sw), ``padding`` "VALID" or "SAME" (TF's rule: SAME gives
``ceil(size / stride)`` outputs and puts the odd padding row/column after) and ``dilations``
(rh, rw): the taps that far apart (an atrous convolution; padding counts the dilated
window). The NCHW layout and 4-element strides are handled by the API (``gc.nn.conv2d``), so
kernels see one layout.
``conv2d_backprop_input`` takes the forward input as a shape-only third operand (its value is
never read), so gradients stay valid while a placeholder's batch dim is unknown.
Kernels: im2col + GEMM (reference NumPy in ``ir.ops.windows``).
"""
from .. import examples as E
from ..shapes import num_elements
from .registry import F, defop, require, same_dtype
from .windows import (conv2d_backprop_filter_impl, conv2d_backprop_input_impl, conv2d_impl,
                      dilated_window, window_geometry)

PADDINGS = ("VALID", "SAME")


def check_window_attrs(ksize, strides, padding):
    """Shared by conv and pooling rules: two positive ints each, a known padding."""
    require(len(strides) == 2 and all(int(s) >= 1 for s in strides),
            f"strides must be two positive ints (height, width), found {list(strides)}")
    require(len(ksize) == 2 and all(int(k) >= 1 for k in ksize),
            f"window size must be two positive ints (height, width), found {list(ksize)}")
    require(padding in PADDINGS, f"padding must be 'VALID' or 'SAME', found {padding!r}")


def conv_window(ksize, strides, padding, dilations):
    """The extent of a convolution's window, its taps ``dilations`` apart, after checking the
    attributes."""
    require(len(dilations) == 2 and all(int(r) >= 1 for r in dilations),
            f"dilations must be two positive ints (height, width), found {list(dilations)}")
    check_window_attrs(ksize, strides, padding)
    return dilated_window(ksize, dilations)


def spatial_out(x, ksize, strides, padding):
    """Output (height, width) of a window op on NHWC ``x``, None where x's dim is unknown."""
    out = []
    for axis, (size, k, s) in enumerate(zip(x.shape[1:3], ksize, strides)):
        if size is None:
            out.append(None)
            continue
        if padding == "VALID":
            require(size >= k, f"the {'height' if axis == 0 else 'width'} {size} of "
                    f"{x.type_str()} is smaller than the window ({k}) with VALID padding",
                    hint="use padding='SAME' or a smaller window")
        out.append(window_geometry(size, k, s, padding)[0])
    return tuple(out)


def _nhwc(x, what):
    require(x.rank == 4, f"{what} must be 4-D [batch, height, width, channels], found "
            f"{x.type_str()}", hint="reshape it, e.g. gc.reshape(x, [-1, 28, 28, 1])")


def _filter_shape(w):
    require(w.rank == 4, f"filters must be 4-D [height, width, in, out], found {w.type_str()}")
    require(all(d is not None for d in w.shape),
            f"filters need a static shape, found {w.type_str()}")
    return w.shape


def _channels_match(x, cin, what="input", hint="filters are [kh, kw, in_channels, out_channels]"):
    require(x.shape[3] is None or x.shape[3] == cin,
            f"{what} has {x.shape[3]} channels but the filters expect {cin}",
            [f"{what}: {x.type_str()}", f"filters in-channels: {cin}"], hint)


def _conv_infer(nodes, strides=(1, 1), padding="VALID", dilations=(1, 1)):
    x, w = nodes
    same_dtype(nodes, "f")
    _nhwc(x, "input")
    kh, kw, cin, cout = _filter_shape(w)
    window = conv_window((kh, kw), strides, padding, dilations)
    _channels_match(x, cin)
    return x.dtype, (x.shape[0],) + spatial_out(x, window, strides, padding) + (cout,)


def _backprop_input_infer(nodes, strides=(1, 1), padding="VALID", dilations=(1, 1)):
    dy, w, like = nodes
    same_dtype([dy, w], "f")
    _nhwc(like, "input")
    kh, kw, cin, cout = _filter_shape(w)
    conv_window((kh, kw), strides, padding, dilations)
    _channels_match(like, cin)
    _channels_match(dy, cout, "the output gradient")
    return dy.dtype, like.shape[:3] + (cin,)


def _backprop_filter_infer(nodes, filter_shape, strides=(1, 1), padding="VALID",
                           dilations=(1, 1)):
    x, dy = nodes
    same_dtype(nodes, "f")
    _nhwc(x, "input")
    _nhwc(dy, "output gradient")
    kh, kw, cin, cout = filter_shape
    conv_window((kh, kw), strides, padding, dilations)
    _channels_match(x, cin)
    return x.dtype, tuple(int(d) for d in filter_shape)


def _conv_vjp(g, out, x, w, **kw):
    return [F.conv2d_backprop_input(g, w, x, **kw),
            F.conv2d_backprop_filter(x, g, filter_shape=w.shape, **kw)]


def _backprop_input_vjp(g, out, dy, w, like, **kw):
    return [F.conv2d(g, w, **kw), F.conv2d_backprop_filter(g, dy, filter_shape=w.shape, **kw),
            None]


def _backprop_filter_vjp(g, out, x, dy, filter_shape, **kw):
    return [F.conv2d_backprop_input(dy, g, x, **kw), F.conv2d(x, g, **kw)]


def batch_summed(node):
    """A filter gradient: the sum over the images (axis 0) of both inputs."""
    return [(0, 0, "sum"), (1, 0, "sum")]


def _conv_macs(node):
    """Each output element of a convolution sums kh x kw x cin products; its input gradient
    (dy, filters, like) does the same products, one per element of dy and tap, and its
    filter gradient (input, dy) sums over every position of dy for each of the kh x kw x
    cin x cout taps."""
    if node.op_name == "conv2d_backprop_filter":
        kh, kw, cin, cout = node.shape
        return num_elements(node.inputs[1].shape[:3]) * kh * kw * cin * cout
    kh, kw, cin, _ = node.inputs[1].shape
    dy = node.inputs[0] if node.op_name == "conv2d_backprop_input" else node
    return num_elements(dy.shape) * kh * kw * cin


CONV2D = defop("conv2d", _conv_infer, _conv_vjp, impl=conv2d_impl, family="conv",
               doc="NHWC input, [kh, kw, in, out] filters; strides (sh, sw); VALID or SAME",
               tf_name="Conv2D", examples=E.leading(1), macs=_conv_macs)
CONV2D_BACKPROP_INPUT = defop(
    "conv2d_backprop_input", _backprop_input_infer, _backprop_input_vjp,
    impl=conv2d_backprop_input_impl, family="conv",
    doc="gradient of conv2d wrt its input: (dy, filters, like=input) -> input-shaped",
    tf_name="Conv2DBackpropInput", examples=E.leading(1, (0, 2)), macs=_conv_macs)
CONV2D_BACKPROP_FILTER = defop(
    "conv2d_backprop_filter", _backprop_filter_infer, _backprop_filter_vjp,
    impl=conv2d_backprop_filter_impl, family="conv",
    doc="gradient of conv2d wrt its filters: (input, dy) -> filter-shaped",
    tf_name="Conv2DBackpropFilter", examples=batch_summed, macs=_conv_macs)
