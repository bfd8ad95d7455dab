"""``gc.layers``: TF1's functional layers (``tf.layers.dense`` and friends).

Each call creates its variables under a fresh variable scope (``dense/kernel``, then
``dense_1/kernel``...) and returns the output tensor. Inside ``gc.variable_scope(...,
reuse=True)`` (or with ``reuse=True``) a layer named as before reuses its variables, as TF1's
layers do, so one model function can build a training tower and an evaluation tower.

Batch normalization follows TF1: in training mode the layer normalizes with the batch
statistics and puts one ``assign`` per moving statistic into the ``UPDATE_OPS`` collection;
the moving averages change only when those ops run in the step, so make the train op depend
on them, as in TF1::

    with gc.control_dependencies(gc.get_collection(gc.GraphKeys.UPDATE_OPS)):
        train_op = opt.minimize(loss)

In inference mode it normalizes with the moving statistics and adds no update op.
``training`` may be a bool tensor (a fed placeholder): both modes are then built and selected
per run, and the updates leave the moving statistics unchanged when it is False.
"""
import numpy as np

from . import nn_layers
from .errors import GraphError
from .framework import assign, get_default_graph, global_variables
from .initializers import glorot_uniform, ones as ones_init, zeros as zeros_init
from .ir.graph import Node
from .ir.ops import convert
from .math_ops import matmul, reshape, where
from .variable_scope import get_variable, get_variable_scope, variable_scope

UPDATE_OPS = "update_ops"
REGULARIZATION_LOSSES = "regularization_losses"


def _scope(name, default):
    """A fresh scope name: ``dense``, ``dense_1``, ... (the last part of a unique name)."""
    return get_default_graph().unique_name(name or default).split("/")[-1]


def _layer_scope(name, default, reuse):
    """The layer's variable scope: a fresh name, or exactly ``name`` when reusing."""
    if reuse or get_variable_scope().reuse:
        return variable_scope(name or default, reuse=reuse or None)
    return variable_scope(_scope(name, default))


def _variable(name, shape, dtype, initializer, trainable=True, regularizer=None):
    init = initializer if initializer is not None else glorot_uniform()
    if not callable(init):
        value = init
        init = lambda shape, dtype: np.broadcast_to(value, shape)  # noqa: E731
    known = len(global_variables())
    var = get_variable(name, shape, dtype, initializer=init, trainable=trainable)
    if regularizer is not None and len(global_variables()) > known:  # created, not reused
        loss = regularizer(var)
        if loss is not None:
            get_default_graph().add_to_collection(REGULARIZATION_LOSSES, loss)
    return var


def _static_dim(x, axis, fn):
    d = x.shape[axis]
    if d is None:
        raise GraphError(f"{fn}: the input's axis {axis} ({x.type_str()}) must be known to "
                         "size the layer's variables")
    return d


def dense(inputs, units, activation=None, use_bias=True, kernel_initializer=None,
          bias_initializer=None, kernel_regularizer=None, bias_regularizer=None,
          trainable=True, name=None, reuse=None, **unused):
    """``activation(inputs @ kernel + bias)`` on the last axis (TF1's tf.layers.dense).

    Args:
        inputs: [..., in] tensor (leading dims are kept: a batched matmul).
        units: output size.
        activation: callable or None.
        kernel_initializer: default Glorot uniform; bias_initializer: default zeros.
        kernel_regularizer, bias_regularizer: callables whose result is added to the
            ``regularization_losses`` collection.
    Returns:
        [..., units] tensor. Variables ``<name>/kernel`` [in, units] and ``<name>/bias``.
    Example:
        >>> h = gc.layers.dense(x, 128, activation=gc.nn.relu)
    """
    inputs = convert(inputs)
    depth = _static_dim(inputs, -1, "dense")
    with _layer_scope(name, "dense", reuse):
        kernel = _variable("kernel", [depth, units], inputs.dtype, kernel_initializer,
                           trainable, kernel_regularizer)
        out = matmul(inputs, kernel)
        if use_bias:
            out = out + _variable("bias", [units], inputs.dtype,
                                  bias_initializer or zeros_init(), trainable, bias_regularizer)
        return activation(out) if activation is not None else out


def conv1d(inputs, filters, kernel_size, strides=1, padding="valid",
           data_format="channels_last", dilation_rate=1, activation=None, use_bias=True,
           kernel_initializer=None, bias_initializer=None, kernel_regularizer=None,
           trainable=True, name=None, reuse=None, **unused):
    """A 1-D convolution layer (TF1's tf.layers.conv1d): kernel [k, in, filters], bias.

    Args:
        inputs: [batch, width, in] ("channels_last") or [batch, in, width].
        filters: output channels; kernel_size, strides: an int or a 1-tuple.
        padding: "valid" or "same".
    Returns:
        [batch, out_width, filters] (or channels first).
    Example:
        >>> h = gc.layers.conv1d(x, 16, 5, padding="same", activation=gc.nn.relu)
    """
    fmt = "NWC" if data_format in ("channels_last", "NWC") else "NCW"
    inputs = convert(inputs)
    depth = _static_dim(inputs, 2 if fmt == "NWC" else 1, "conv1d")
    (k,) = nn_layers._ints(kernel_size)
    with _layer_scope(name, "conv1d", reuse):
        kernel = _variable("kernel", [k, depth, filters], inputs.dtype, kernel_initializer,
                           trainable, kernel_regularizer)
        out = nn_layers.conv1d(inputs, kernel, nn_layers._ints(strides), padding.upper(),
                               data_format=fmt, dilations=dilation_rate)
        if use_bias:
            bias = _variable("bias", [filters], inputs.dtype, bias_initializer or zeros_init(),
                             trainable)
            out = out + (bias if fmt == "NWC" else reshape(bias, [1, filters, 1]))
        return activation(out) if activation is not None else out


def conv2d(inputs, filters, kernel_size, strides=(1, 1), padding="valid",
           data_format="channels_last", dilation_rate=(1, 1), activation=None, use_bias=True,
           kernel_initializer=None, bias_initializer=None, kernel_regularizer=None,
           trainable=True, name=None, reuse=None, **unused):
    """A 2-D convolution layer (TF1's tf.layers.conv2d): kernel [kh, kw, in, filters], bias.

    Example:
        >>> h = gc.layers.conv2d(x, 8, 3, padding="same", activation=gc.nn.relu)
    """
    fmt = "NHWC" if data_format in ("channels_last", "NHWC") else "NCHW"
    inputs = convert(inputs)
    depth = _static_dim(inputs, 3 if fmt == "NHWC" else 1, "conv2d")
    kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
    with _layer_scope(name, "conv2d", reuse):
        kernel = _variable("kernel", [kh, kw, depth, filters], inputs.dtype, kernel_initializer,
                           trainable, kernel_regularizer)
        out = nn_layers.conv2d(inputs, kernel, strides, padding, data_format=fmt,
                               dilations=dilation_rate)
        if use_bias:
            bias = _variable("bias", [filters], inputs.dtype, bias_initializer or zeros_init(),
                             trainable)
            out = out + (bias if fmt == "NHWC" else reshape(bias, [1, filters, 1, 1]))
        return activation(out) if activation is not None else out


def conv2d_transpose(inputs, filters, kernel_size, strides=(1, 1), padding="valid",
                     data_format="channels_last", activation=None, use_bias=True,
                     kernel_initializer=None, bias_initializer=None, kernel_regularizer=None,
                     trainable=True, name=None, reuse=None, **unused):
    """TF1's tf.layers.conv2d_transpose: kernel [kh, kw, filters, in], bias; the output's
    height is ``in * stride`` ("same") or ``in * stride + max(k - stride, 0)`` ("valid").

    Example:
        >>> up = gc.layers.conv2d_transpose(h, 16, 3, strides=2, padding="same")
    """
    fmt = "NHWC" if data_format in ("channels_last", "NHWC") else "NCHW"
    inputs = convert(inputs)
    axes = (1, 2, 3) if fmt == "NHWC" else (2, 3, 1)
    h, w, depth = (_static_dim(inputs, a, "conv2d_transpose") for a in axes)
    kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
    sh, sw = (strides, strides) if isinstance(strides, int) else strides
    same = padding.lower() == "same"
    oh, ow = ((h * sh, w * sw) if same else
              (h * sh + max(kh - sh, 0), w * sw + max(kw - sw, 0)))
    out_shape = [-1, oh, ow, filters] if fmt == "NHWC" else [-1, filters, oh, ow]
    with _layer_scope(name, "conv2d_transpose", reuse):
        kernel = _variable("kernel", [kh, kw, filters, depth], inputs.dtype, kernel_initializer,
                           trainable, kernel_regularizer)
        out = nn_layers.conv2d_transpose(inputs, kernel, out_shape, (sh, sw),
                                         "SAME" if same else "VALID", data_format=fmt)
        if use_bias:
            bias = _variable("bias", [filters], inputs.dtype, bias_initializer or zeros_init(),
                             trainable)
            out = out + (bias if fmt == "NHWC" else reshape(bias, [1, filters, 1, 1]))
        return activation(out) if activation is not None else out


def max_pooling2d(inputs, pool_size, strides, padding="valid", data_format="channels_last",
                  name=None):
    """TF1's tf.layers.max_pooling2d (see ``gc.nn.max_pool2d`` for the gradient's tie rule)."""
    return nn_layers.max_pool2d(inputs, pool_size, strides, padding, data_format, name)


def average_pooling2d(inputs, pool_size, strides, padding="valid",
                      data_format="channels_last", name=None):
    """TF1's tf.layers.average_pooling2d."""
    return nn_layers.avg_pool2d(inputs, pool_size, strides, padding, data_format, name)


def flatten(inputs, name=None, data_format=None):
    """[batch, ...] to [batch, prod(...)] (the non-batch dims must be static)."""
    inputs = convert(inputs)
    rest = inputs.shape[1:]
    if None in rest:
        raise GraphError(f"flatten: the non-batch dims of {inputs.type_str()} must be known")
    return reshape(inputs, [-1, int(np.prod(rest))], name=name)


def dropout(inputs, rate=0.5, noise_shape=None, seed=None, training=False, name=None):
    """TF1's tf.layers.dropout: ``gc.nn.dropout(rate=rate)`` when ``training`` (a bool or a
    bool tensor), the identity otherwise."""
    if isinstance(training, Node):
        dropped = nn_layers.dropout(inputs, noise_shape=noise_shape, seed=seed, rate=rate)
        return where(training, dropped, inputs)
    if not training:
        return convert(inputs)
    return nn_layers.dropout(inputs, noise_shape=noise_shape, seed=seed, rate=rate, name=name)


def batch_normalization(inputs, axis=-1, momentum=0.99, epsilon=1e-3, center=True, scale=True,
                        beta_initializer=None, gamma_initializer=None,
                        moving_mean_initializer=None, moving_variance_initializer=None,
                        training=False, trainable=True, name=None, reuse=None, **unused):
    """TF1's tf.layers.batch_normalization over ``axis`` (the channels).

    Training: normalize with the batch mean and (biased) variance over the other axes, and
    add to ``UPDATE_OPS`` ``moving = momentum * moving + (1 - momentum) * batch`` for the
    mean and the variance. Inference: normalize with the moving statistics.

    Args:
        inputs: tensor whose ``axis`` has a static size C.
        training: Python bool, or a bool scalar tensor selecting the mode at run time.
        center, scale: learn ``beta`` (offset) / ``gamma`` (scale), each [C].
    Returns:
        The normalized tensor. Variables: ``<name>/gamma``, ``beta``, ``moving_mean`` and
        ``moving_variance`` (the last two not trainable).
    Example:
        >>> h = gc.layers.batch_normalization(h, training=is_training)
    """
    inputs = convert(inputs)
    a = axis % inputs.rank
    c = _static_dim(inputs, a, "batch_normalization")
    dt = inputs.dtype
    shape = [1 if i != a else c for i in range(inputs.rank)]

    def bcast(v):  # [C] -> broadcastable against inputs
        return v if a == inputs.rank - 1 or v is None else reshape(v, shape)

    with _layer_scope(name, "batch_normalization", reuse):
        gamma = _variable("gamma", [c], dt, gamma_initializer or ones_init(),
                          trainable) if scale else None
        beta = _variable("beta", [c], dt, beta_initializer or zeros_init(),
                         trainable) if center else None
        moving_mean = _variable("moving_mean", [c], dt, moving_mean_initializer or zeros_init(),
                                False)
        moving_var = _variable("moving_variance", [c], dt,
                               moving_variance_initializer or ones_init(), False)
        if not isinstance(training, Node) and not training:
            mean, var = moving_mean, moving_var
        else:
            mean, var = _training_statistics(inputs, a, training, momentum,
                                             moving_mean, moving_var)
        return nn_layers.batch_normalization(inputs, bcast(mean), bcast(var), bcast(beta),
                                             bcast(gamma), epsilon)


def _training_statistics(inputs, axis, training, momentum, moving_mean, moving_var):
    """Batch statistics (selected by a ``training`` tensor when given) and their updates."""
    axes = [i for i in range(inputs.rank) if i != axis]
    batch_mean, batch_var = nn_layers.moments(inputs, axes)
    g = get_default_graph()
    for moving, batch, label in ((moving_mean, batch_mean, "mean"),
                                 (moving_var, batch_var, "variance")):
        new = moving * momentum + batch * (1.0 - momentum)
        if isinstance(training, Node):
            new = where(training, new, moving)
        g.add_to_collection(UPDATE_OPS, assign(moving, new, name=f"update_moving_{label}"))
    if isinstance(training, Node):
        return where(training, batch_mean, moving_mean), where(training, batch_var, moving_var)
    return batch_mean, batch_var


__all__ = ["dense", "conv1d", "conv2d", "max_pooling2d", "average_pooling2d", "flatten", "dropout",
           "batch_normalization", "UPDATE_OPS", "REGULARIZATION_LOSSES"]
