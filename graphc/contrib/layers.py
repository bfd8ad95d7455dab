"""``gc.contrib.layers``: TF1's tf.contrib.layers initializers, regularizers and layers.

The layers keep contrib's conventions, which differ from ``gc.layers``: ``fully_connected``
and ``conv2d`` apply ReLU unless told otherwise, their variables are ``weights`` and
``biases`` (scopes ``fully_connected``, ``Conv``; the weights also go into the ``weights``
collection, which ``apply_regularization`` reads by default), and ``conv2d`` pads SAME.

Regularizers return callables ``reg(weights) -> scalar tensor`` (or None when the scale is
0): ``l2_regularizer(s)(w) = s * sum(w ** 2) / 2`` (``gc.nn.l2_loss``), ``l1_regularizer(s)(w)
= s * sum(|w|)``. A layer's ``weights_regularizer`` adds its result to the
``regularization_losses`` collection, which ``gc.losses.get_regularization_loss()`` sums.

Example:
    >>> reg = gc.contrib.layers.l2_regularizer(1e-4)
    >>> h = gc.contrib.layers.fully_connected(x, 128, weights_regularizer=reg)
    >>> loss = xent + gc.losses.get_regularization_loss()
"""
import numbers

import numpy as np

from .. import layers as core
from ..ops import nn_ops as nn_layers
from ..errors import GraphError
from ..framework.graph import (GraphKeys, add_to_collection, control_dependencies, get_collection,
                               get_default_graph)
from ..ops.init_ops import Initializer, _fans, _truncated, zeros as zeros_init
from ..ir import dtypes as D
from ..ir.graph import Node
from ..ir.ops import convert
from ..ops.math_ops import abs as gc_abs, add_n, identity, matmul, reshape
from ..ops.reduction_ops import reduce_sum
from ..ops.nn_impl import l2_loss, relu
from .names import unsupported

_TRUNCATED_VARIANCE_FIX = 1.3  # contrib's factor: a normal cut at 2 stddev keeps ~0.77 of it


# -- initializers ------------------------------------------------------------------------------
class variance_scaling_initializer(Initializer):
    """TF1 contrib's variance scaling: stddev ``sqrt(factor / n)``, n chosen by ``mode``.

    Unlike ``gc.variance_scaling_initializer`` (TF1 core: scale, lower-case mode,
    distribution), contrib takes ``factor``, an upper-case ``mode`` and ``uniform``:
    uniform draws U(-l, l) with ``l = sqrt(3 factor / n)``; otherwise a normal of stddev
    ``sqrt(1.3 factor / n)`` truncated at two standard deviations (contrib's 1.3 restores
    most of the variance the truncation removes).

    Args:
        factor: a positive multiplier (2.0: He et al., for ReLU).
        mode: "FAN_IN", "FAN_OUT" or "FAN_AVG" (n = (fan_in + fan_out) / 2).
        uniform: uniform rather than truncated normal values.
        seed: an int for reproducible values.
        dtype: a floating dtype.
    Raises:
        TypeError: an unknown mode (as TF1). ValueError: a non-floating dtype.
    Example:
        >>> init = gc.contrib.layers.variance_scaling_initializer(seed=0)   # He normal
    """

    random = True

    def __init__(self, factor=2.0, mode="FAN_IN", uniform=False, seed=None, dtype=D.float32):
        if mode not in ("FAN_IN", "FAN_OUT", "FAN_AVG"):
            raise TypeError(f"variance_scaling_initializer: unknown mode {mode!r}, expected "
                            "'FAN_IN', 'FAN_OUT' or 'FAN_AVG'")
        if not D.as_dtype(dtype).is_floating:
            raise ValueError(f"variance_scaling_initializer: dtype must be floating, got "
                             f"{D.as_dtype(dtype).name}")
        super().__init__(seed, dtype)
        self.factor, self.mode, self.uniform = float(factor), mode, bool(uniform)

    def fan(self, shape):
        """The n of ``factor / n`` for a variable of ``shape``."""
        fan_in, fan_out = _fans(shape)
        return {"FAN_IN": fan_in, "FAN_OUT": fan_out,
                "FAN_AVG": (fan_in + fan_out) / 2.0}[self.mode]

    def sample(self, rng, shape):
        n = self.fan(shape)
        if self.uniform:
            limit = np.sqrt(3.0 * self.factor / n)
            return rng.uniform(-limit, limit, shape)
        return _truncated(rng, shape, np.sqrt(_TRUNCATED_VARIANCE_FIX * self.factor / n))


def xavier_initializer(uniform=True, seed=None, dtype=D.float32):
    """Glorot/Xavier (contrib): uniform in ``+-sqrt(6 / (fan_in + fan_out))``, or the
    truncated normal of ``variance_scaling_initializer(1.0, "FAN_AVG")``.

    Example:
        >>> W = gc.get_variable("W", [64, 10], initializer=xavier_initializer(seed=1))
    """
    return variance_scaling_initializer(1.0, "FAN_AVG", uniform, seed, dtype)


xavier_initializer_conv2d = xavier_initializer


# -- regularizers ------------------------------------------------------------------------------
def _check_scale(scale, fn):
    """TF1's checks: a number must be a non-negative float; 0 means no regularization."""
    if isinstance(scale, numbers.Integral):
        raise ValueError(f"{fn}: scale cannot be an integer: {scale!r} (write {scale}.0)")
    if isinstance(scale, numbers.Real):
        if scale < 0.0:
            raise ValueError(f"{fn}: scale must be >= 0, got {scale}")
        return scale != 0.0
    return True  # a tensor


def l2_regularizer(scale, scope=None):
    """``reg(w) = scale * sum(w ** 2) / 2`` (TF1's contrib.layers.l2_regularizer).

    Args:
        scale: a non-negative float (or a scalar tensor); 0.0 gives a regularizer returning
            None, which layers skip.
    Returns:
        the regularizer callable.
    Raises:
        ValueError: a negative or integer scale.
    Example:
        >>> penalty = gc.contrib.layers.l2_regularizer(0.01)(W)
    """
    if not _check_scale(scale, "l2_regularizer"):
        return lambda weights: None
    return lambda weights: convert(scale, weights) * l2_loss(weights)


def l1_regularizer(scale, scope=None):
    """``reg(w) = scale * sum(|w|)`` (TF1's contrib.layers.l1_regularizer); see
    ``l2_regularizer`` for ``scale``."""
    if not _check_scale(scale, "l1_regularizer"):
        return lambda weights: None
    return lambda weights: convert(scale, weights) * reduce_sum(gc_abs(weights))


def sum_regularizer(regularizer_list, scope=None):
    """The sum of several regularizers (None entries and None results are skipped).

    Returns:
        a regularizer, or None when ``regularizer_list`` has no regularizer.
    Example:
        >>> reg = sum_regularizer([l1_regularizer(1e-5), l2_regularizer(1e-4)])
    """
    regs = [r for r in regularizer_list if r is not None]
    if not regs:
        return None

    def regularize(weights):
        terms = [t for t in (r(weights) for r in regs) if t is not None]
        return add_n(terms) if terms else None
    return regularize


def l1_l2_regularizer(scale_l1=1.0, scale_l2=1.0, scope=None):
    """``l1_regularizer(scale_l1) + l2_regularizer(scale_l2)``."""
    return sum_regularizer([l1_regularizer(scale_l1), l2_regularizer(scale_l2)])


def apply_regularization(regularizer, weights_list=None):
    """The summed penalty of ``regularizer`` over ``weights_list``, also added to the
    ``regularization_losses`` collection (TF1's contrib.layers.apply_regularization).

    Args:
        regularizer: a callable ``reg(w) -> scalar tensor or None``.
        weights_list: tensors or variables; default: the ``weights`` collection (filled by
            ``fully_connected`` and ``conv2d``).
    Returns:
        a scalar tensor.
    Raises:
        ValueError: no weights, or a penalty that is not a scalar.
    Example:
        >>> penalty = apply_regularization(l2_regularizer(1e-4), [W1, W2])
    """
    weights_list = weights_list or get_collection(GraphKeys.WEIGHTS)
    if not weights_list:
        raise ValueError("apply_regularization: no weights to regularize (pass weights_list, "
                         "or build layers that fill the 'weights' collection)")
    penalties = [p for p in (regularizer(w) for w in weights_list) if p is not None]
    for p in penalties:
        if p.rank != 0:
            raise ValueError(f"apply_regularization: the regularizer must return a scalar, "
                             f"got {p.type_str()}")
    total = add_n(penalties) if penalties else convert(0.0)
    add_to_collection(GraphKeys.REGULARIZATION_LOSSES, total)
    return total


# -- layers ------------------------------------------------------------------------------------
def _weights_and_biases(shape, dtype, weights_initializer, weights_regularizer,
                        biases_initializer, biases_regularizer, trainable):
    """Create ``weights`` (into the ``weights`` collection) and, unless its initializer is
    None, ``biases`` [shape[-1]] in the current scope; both are model variables, as TF1."""
    weights = core._variable("weights", shape, dtype, weights_initializer or
                             xavier_initializer(), trainable, weights_regularizer)
    _add_once(GraphKeys.WEIGHTS, weights)
    _add_once(GraphKeys.MODEL_VARIABLES, weights)
    if biases_initializer is None:
        return weights, None
    biases = core._variable("biases", [shape[-1]], dtype, biases_initializer, trainable,
                            biases_regularizer)
    _add_once(GraphKeys.BIASES, biases)
    _add_once(GraphKeys.MODEL_VARIABLES, biases)
    return weights, biases


def _add_once(key, var):
    """A reused layer must not list its variable twice (``in`` would build ``==`` nodes)."""
    if not any(v is var for v in get_collection(key)):
        add_to_collection(key, var)


def _finish(outputs, biases, normalizer_fn, normalizer_params, activation_fn, bias_shape=None):
    """Bias (skipped when normalizing, as contrib does), normalizer, then activation."""
    if normalizer_fn is not None:
        outputs = normalizer_fn(outputs, **(normalizer_params or {}))
    elif biases is not None:
        outputs = outputs + (biases if bias_shape is None else reshape(biases, bias_shape))
    return activation_fn(outputs) if activation_fn is not None else outputs


def fully_connected(inputs, num_outputs, activation_fn=relu, normalizer_fn=None,
                    normalizer_params=None, weights_initializer=None, weights_regularizer=None,
                    biases_initializer=zeros_init(), biases_regularizer=None, reuse=None,
                    variables_collections=None, outputs_collections=None, trainable=True,
                    scope=None):
    """``activation_fn(inputs @ weights + biases)`` (TF1's contrib.layers.fully_connected).

    Args:
        inputs: [..., in] tensor with a static last dim.
        num_outputs: the output size.
        activation_fn: default ReLU (unlike gc.layers.dense); None for linear.
        normalizer_fn, normalizer_params: e.g. ``batch_norm`` and ``{"is_training": t}``;
            replaces the biases, as in TF1.
        weights_initializer: default ``xavier_initializer()``.
        weights_regularizer, biases_regularizer: penalties added to
            ``regularization_losses`` when the variables are created.
        biases_initializer: default zeros; None for no biases.
        reuse, scope: share the variables of the layer named ``scope``.
    Returns:
        [..., num_outputs] tensor. Variables ``<scope>/weights`` and ``<scope>/biases``.
    Raises:
        GraphError: the input's last dim is unknown.
    Example:
        >>> logits = gc.contrib.layers.fully_connected(h, 10, activation_fn=None)
    """
    inputs = convert(inputs)
    depth = core._static_dim(inputs, -1, "fully_connected")
    with core._layer_scope(scope, "fully_connected", reuse):
        weights, biases = _weights_and_biases(
            [depth, num_outputs], inputs.dtype, weights_initializer, weights_regularizer,
            biases_initializer, biases_regularizer, trainable)
        return _finish(matmul(inputs, weights), biases, normalizer_fn, normalizer_params,
                       activation_fn)


def conv2d(inputs, num_outputs, kernel_size, stride=1, padding="SAME", data_format=None,
           rate=1, activation_fn=relu, normalizer_fn=None, normalizer_params=None,
           weights_initializer=None, weights_regularizer=None, biases_initializer=zeros_init(),
           biases_regularizer=None, reuse=None, variables_collections=None,
           outputs_collections=None, trainable=True, scope=None):
    """A 2-D convolution layer with contrib's defaults (SAME padding, ReLU, scope ``Conv``).

    Args:
        inputs: NHWC (default) or NCHW (``data_format="NCHW"``) with static channels.
        num_outputs: output channels; kernel_size, stride: an int or a pair.
        rate: dilation (only 1 is supported by graphc's convolution).
        Others: as ``fully_connected``.
    Returns:
        the activations. Variables ``<scope>/weights`` [kh, kw, in, out] and ``biases``.
    Example:
        >>> h = gc.contrib.layers.conv2d(images, 32, [5, 5])
    """
    fmt = "NCHW" if data_format in ("NCHW", "channels_first") else "NHWC"
    inputs = convert(inputs)
    depth = core._static_dim(inputs, 1 if fmt == "NCHW" else 3, "conv2d")
    kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
    with core._layer_scope(scope, "Conv", reuse):
        weights, biases = _weights_and_biases(
            [kh, kw, depth, num_outputs], inputs.dtype, weights_initializer,
            weights_regularizer, biases_initializer, biases_regularizer, trainable)
        out = nn_layers.conv2d(inputs, weights, stride, padding, data_format=fmt,
                               dilations=rate)
        return _finish(out, biases, normalizer_fn, normalizer_params, activation_fn,
                       [1, num_outputs, 1, 1] if fmt == "NCHW" else None)


convolution2d = conv2d


def max_pool2d(inputs, kernel_size, stride=2, padding="VALID", data_format="NHWC",
               outputs_collections=None, scope=None):
    """Max pooling with contrib's defaults (stride 2, VALID)."""
    return nn_layers.max_pool2d(inputs, kernel_size, stride, padding, data_format, scope)


def avg_pool2d(inputs, kernel_size, stride=2, padding="VALID", data_format="NHWC",
               outputs_collections=None, scope=None):
    """Average pooling with contrib's defaults (stride 2, VALID)."""
    return nn_layers.avg_pool2d(inputs, kernel_size, stride, padding, data_format, scope)


def flatten(inputs, outputs_collections=None, scope=None):
    """[batch, ...] to [batch, k] (the non-batch dims must be static)."""
    return core.flatten(inputs, name=scope)


def dropout(inputs, keep_prob=0.5, noise_shape=None, is_training=True,
            outputs_collections=None, scope=None, seed=None):
    """Dropout keeping each element with ``keep_prob`` (scaled by 1 / keep_prob) when
    ``is_training`` (a bool or a bool tensor), the identity otherwise.

    Example:
        >>> h = gc.contrib.layers.dropout(h, keep_prob=0.8, is_training=training)
    """
    return core.dropout(inputs, rate=_rate(keep_prob), noise_shape=noise_shape, seed=seed,
                        training=is_training, name=scope)


def _rate(keep_prob):
    return 1.0 - keep_prob if isinstance(keep_prob, Node) else 1.0 - float(keep_prob)


def batch_norm(inputs, decay=0.999, center=True, scale=False, epsilon=0.001,
               activation_fn=None, param_initializers=None, param_regularizers=None,
               updates_collections=GraphKeys.UPDATE_OPS, is_training=True, reuse=None,
               variables_collections=None, outputs_collections=None, trainable=True,
               data_format="NHWC", scope=None, **unsupported):
    """TF1's contrib.layers.batch_norm on ``gc.layers.batch_normalization``: the channels
    are the last axis (axis 1 for NCHW), ``decay`` is the moving averages' momentum, and
    contrib's default is ``scale=False`` (no gamma).

    The moving-average updates go into ``updates_collections`` (UPDATE_OPS by default: run
    them with the train op, as in TF1); with ``updates_collections=None`` the output
    depends on them, so every run that computes it in training mode updates the averages.

    Args:
        is_training: a Python bool or a bool tensor selecting the mode at run time.
        param_initializers: optional dict with beta, gamma, moving_mean, moving_variance.
    Raises:
        GraphError: contrib options graphc lacks (renorm, batch_weights,
            zero_debias_moving_mean, param_regularizers); ``fused`` is accepted and ignored.
    Example:
        >>> h = gc.contrib.layers.fully_connected(x, 64, normalizer_fn=batch_norm,
        ...                                       normalizer_params={"is_training": True})
    """
    _refuse_options(unsupported, param_regularizers)
    inits = param_initializers or {}
    graph_updates = get_collection(GraphKeys.UPDATE_OPS)
    out = core.batch_normalization(
        inputs, axis=1 if data_format == "NCHW" else -1, momentum=decay, epsilon=epsilon,
        center=center, scale=scale, beta_initializer=inits.get("beta"),
        gamma_initializer=inits.get("gamma"),
        moving_mean_initializer=inits.get("moving_mean"),
        moving_variance_initializer=inits.get("moving_variance"), training=is_training,
        trainable=trainable, name=scope or "BatchNorm", reuse=reuse)
    out = _route_updates(out, graph_updates, updates_collections)
    return activation_fn(out) if activation_fn is not None else out


def _refuse_options(options, param_regularizers):
    used = {k: v for k, v in options.items()
            if v is not None and v is not False and k not in ("fused", "adjustment")}
    if param_regularizers:
        used["param_regularizers"] = param_regularizers
    if used:
        raise GraphError(f"batch_norm: graphc does not support {', '.join(sorted(used))}",
                         hint="batch_norm maps onto gc.layers.batch_normalization; leave "
                              "these at their defaults")


def _route_updates(out, before, collection):
    """Move the layer's new update ops from UPDATE_OPS to ``collection``, or (None) make the
    output wait for them."""
    if collection == GraphKeys.UPDATE_OPS:
        return out
    graph = get_default_graph()
    ops = graph.collections.get(GraphKeys.UPDATE_OPS, [])
    new = ops[len(before):]  # the layer appended its updates
    graph.collections[GraphKeys.UPDATE_OPS] = ops[:len(before)]
    if collection is None:
        with control_dependencies(new):
            return identity(out)
    for op in new:
        add_to_collection(collection, op)
    return out


__all__ = ["variance_scaling_initializer", "xavier_initializer", "xavier_initializer_conv2d",
           "l1_regularizer", "l2_regularizer", "l1_l2_regularizer", "sum_regularizer",
           "apply_regularization", "fully_connected", "conv2d", "convolution2d", "max_pool2d",
           "avg_pool2d", "flatten", "dropout", "batch_norm"]


def __getattr__(name):
    """Other tf.contrib.layers names: say graphc lacks them and list what is here."""
    if name.startswith("__"):
        raise AttributeError(name)
    raise unsupported(__name__, name, __all__)
