"""More of ``gc.nn``: TF1's weighted and Poisson losses, the selu / swish / crelu
activations, dilated (atrous), depthwise and separable convolutions and local response
normalization, compositions of existing graph ops (so both backends and the gradients come
for free) except the depthwise convolution, an op of its own (``ir.ops.depthwise``).
``gc.nn`` re-exports every name here.
"""
import numpy as np

from ..errors import GraphError, ShapeError
from ..ir.ops import apply, convert
from ..ir.source import user_location
from .math_ops import (abs, concat, exp, greater, greater_equal, less_equal,  # noqa: A004
                       log, log1p, logical_and, matmul, minimum, pow, sigmoid, where)

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def _relu(x):
    return apply("relu", [x])


def weighted_cross_entropy_with_logits(labels=None, logits=None, pos_weight=None, name=None,
                                       targets=None):
    """Sigmoid cross-entropy with the positive term weighted by ``pos_weight`` (TF1).

    ``(1 - z) x + (1 + (q - 1) z) (log1p(exp(-|x|)) + relu(-x))`` for labels ``z``, logits
    ``x`` and ``q = pos_weight``: equal to ``z (-log sigmoid(x)) q + (1 - z) (-log(1 -
    sigmoid(x)))`` but never overflows.

    Args:
        labels (or TF1's older ``targets``), logits: tensors of one shape.
        pos_weight: a number or tensor weighting the positive examples.
    Returns:
        The elementwise loss.
    Raises:
        GraphError: labels, logits or pos_weight missing.
    Example:
        >>> loss = gc.nn.weighted_cross_entropy_with_logits(labels=y, logits=x, pos_weight=3.0)
    """
    labels = targets if labels is None else labels
    if labels is None or logits is None or pos_weight is None:
        raise GraphError("weighted_cross_entropy_with_logits: pass labels= (or targets=), "
                         "logits= and pos_weight= by keyword")
    z = convert(labels, logits)
    log_weight = (convert(pos_weight, logits) - 1.0) * z + 1.0
    softplus_neg = log1p(exp(-abs(logits))) + _relu(-logits)
    return (1.0 - z) * logits + log_weight * softplus_neg


def log_poisson_loss(targets, log_input, compute_full_loss=False, name=None):
    """``exp(c) - c t`` for log-rate ``c`` and counts ``t`` (TF1's log_poisson_loss).

    With ``compute_full_loss`` the Stirling term ``t log t - t + 0.5 log(2 pi t)`` is added
    where ``t > 1`` (it is zero-ish and left out for ``0 <= t <= 1``, as in TF1).

    Example:
        >>> loss = gc.nn.log_poisson_loss(counts, log_rate, compute_full_loss=True)
    """
    t = convert(targets, log_input)
    loss = exp(log_input) - log_input * t
    if not compute_full_loss:
        return loss
    small = logical_and(greater_equal(t, 0.0), less_equal(t, 1.0))
    safe = where(small, t * 0.0 + 1.0, t)  # log sees no zero in the branch that is dropped
    stirling = safe * log(safe) - safe + log(safe * float(2.0 * np.pi)) * 0.5
    return loss + where(small, t * 0.0, stirling)


def selu(features, name=None):
    """``scale * x`` for x > 0, ``scale * alpha * (exp(x) - 1)`` otherwise (self-normalizing).

    Example:
        >>> h = gc.nn.selu(gc.matmul(x, w))
    """
    # exp sees min(x, 0): a large positive x makes no inf whose zero gradient turns into NaN
    negative = (exp(minimum(features, 0.0)) - 1.0) * (SELU_SCALE * SELU_ALPHA)
    return where(greater(features, 0.0), features * SELU_SCALE, negative)


def swish(features, name=None):
    """``x * sigmoid(x)`` (TF1's tf.nn.swish).

    Example:
        >>> h = gc.nn.swish(gc.matmul(x, w))
    """
    return features * sigmoid(features)


def crelu(features, name=None, axis=-1):
    """``concat([relu(x), relu(-x)], axis)``: twice the channels (TF1's concatenated ReLU).

    Example:
        >>> h = gc.nn.crelu(x)  # [batch, 2 * features]
    """
    return concat([_relu(features), _relu(-features)], axis)


# -- convolutions composed from conv2d ---------------------------------------------------------
def atrous_conv2d(value, filters, rate, padding, name=None):
    """TF1's ``tf.nn.atrous_conv2d``: the NHWC convolution with ``filters``' taps ``rate``
    apart (``conv2d(..., dilations=[1, rate, rate, 1])``).

    Example:
        >>> y = gc.nn.atrous_conv2d(x, w, rate=2, padding="SAME")
    """
    from .nn_ops import conv2d
    return conv2d(value, filters, [1, 1, 1, 1], padding, dilations=[1, rate, rate, 1],
                  name=name)


def depthwise_conv2d(input, filter, strides, padding, rate=None, name=None,  # noqa: A002
                     data_format=None, dilations=None):
    """TF1's ``tf.nn.depthwise_conv2d``: each input channel ``c`` convolved with its own
    ``filter[:, :, c, :]``, output channel ``c * M + m`` (the op ``depthwise_conv2d``).

    Args:
        input: [batch, height, width, C] (or NCHW with ``data_format``).
        filter: [kh, kw, C, M], static shape.
        strides, padding, data_format: as ``gc.nn.conv2d``; ``rate`` (or ``dilations``):
            the atrous rate (rh, rw), with strides 1.
    Returns:
        [batch, out_height, out_width, C M].
    Raises:
        GraphError: bad strides, padding, layout or rate; ShapeError: a filter whose
            in-channels differ from the input's.
    Example:
        >>> y = gc.nn.depthwise_conv2d(x, w, [1, 1, 1, 1], "SAME")   # w: [3, 3, C, 2]
    """
    from .nn_ops import _data_format, _in_nhwc, _pair, _padding
    fmt = _data_format(data_format or "NHWC", "depthwise_conv2d")
    rates = _rate_dilations(rate, dilations, fmt)
    rates = (1, 1) if rates is None else _pair(rates, "dilations", "depthwise_conv2d", fmt)
    attrs = {"strides": _pair(strides, "strides", "depthwise_conv2d", fmt),
             "padding": _padding(padding, "depthwise_conv2d"), "dilations": rates}
    if rates != (1, 1) and attrs["strides"] != (1, 1):
        raise GraphError("depthwise_conv2d: a rate other than 1 needs strides of 1 (as in TF1)")
    return _in_nhwc(convert(input), fmt, lambda x: apply(
        "depthwise_conv2d", [x, convert(filter, x)], attrs, name=name))


def separable_conv2d(input, depthwise_filter, pointwise_filter, strides, padding,  # noqa: A002
                     rate=None, name=None, data_format=None, dilations=None):
    """TF1's ``tf.nn.separable_conv2d``: ``depthwise_conv2d`` then a 1x1 ``conv2d`` with
    ``pointwise_filter`` [1, 1, C M, out].

    Example:
        >>> y = gc.nn.separable_conv2d(x, dw, pw, [1, 1, 1, 1], "SAME")
    """
    from .nn_ops import conv2d
    depthwise = depthwise_conv2d(input, depthwise_filter, strides, padding, rate,
                                 data_format=data_format, dilations=dilations)
    return conv2d(depthwise, pointwise_filter, [1, 1, 1, 1], "VALID",
                  data_format=data_format or "NHWC", name=name)


def _rate_dilations(rate, dilations, data_format):
    if rate is None:
        return dilations
    rh, rw = (rate, rate) if isinstance(rate, int) else tuple(rate)
    return [1, 1, rh, rw] if data_format == "NCHW" else [1, rh, rw, 1]


# -- local response normalization --------------------------------------------------------------
def local_response_normalization(input, depth_radius=5, bias=1.0, alpha=1.0,  # noqa: A002
                                 beta=0.5, name=None):
    """TF1's ``tf.nn.lrn``: ``x / (bias + alpha * s) ** beta`` where ``s`` sums ``x**2`` over
    the channels within ``depth_radius`` of each channel (the last axis).

    The window sum is one matmul with a banded 0/1 matrix ``[C, C]``.

    Raises:
        ShapeError: an input that is not 4-D with a static channel count.
    Example:
        >>> h = gc.nn.lrn(conv, depth_radius=4, bias=1.0, alpha=0.001 / 9.0, beta=0.75)
    """
    x = convert(input)
    if x.shape is None or len(x.shape) != 4 or x.shape[-1] is None:
        raise ShapeError(f"local_response_normalization: the input must be 4-D NHWC with a "
                         f"static channel count, found {x.describe()} : {x.type_str()}",
                         loc=user_location())
    c = x.shape[-1]
    idx = np.arange(c)
    band = (np.abs(idx[:, None] - idx[None, :]) <= int(depth_radius)).astype(x.dtype.np)
    window = matmul(x * x, band)
    return x * pow(window * float(alpha) + float(bias), -float(beta))


lrn = local_response_normalization
