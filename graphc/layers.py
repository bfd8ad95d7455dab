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

from .ops import nn_ops as nn_layers
from .errors import GraphError
from .framework.graph import assign, get_default_graph, global_variables
from .ops.init_ops import glorot_uniform, ones as ones_init, zeros as zeros_init
from .ir.graph import Node
from .ir.ops import convert
from .ops.array_ops import scalar_arg
from .ops.math_ops import matmul, reshape, where
from .framework.variable_scope import get_variable, variable_scope

UPDATE_OPS = "update_ops"
REGULARIZATION_LOSSES = "regularization_losses"


def _layer_scope(name, default, reuse):
    """The layer's variable scope, as TF1's layers open it: exactly ``name`` (or
    ``default``) when ``reuse`` is given; else ``name`` or ``default`` made unique among the
    scopes opened in the current one since it was entered (``dense``, ``dense_1``...), so
    that a model function entering a reused scope again names its layers as the first time.
    """
    if reuse:
        return variable_scope(name or default, reuse=reuse)
    return variable_scope(None, default_name=name or default)


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
    d = None if x.shape is None else x.shape[axis]
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
    return Dense(units, activation, use_bias, kernel_initializer, bias_initializer,
                 kernel_regularizer, bias_regularizer, trainable, name, _reuse=reuse)(inputs)


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
    return Conv2D(filters, kernel_size, strides, padding, data_format, dilation_rate,
                  activation, use_bias, kernel_initializer, bias_initializer,
                  kernel_regularizer, trainable, name, _reuse=reuse)(inputs)


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
    training = scalar_arg(training)
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
    layer = BatchNormalization(axis, momentum, epsilon, center, scale, beta_initializer,
                               gamma_initializer, moving_mean_initializer,
                               moving_variance_initializer, trainable, name, _reuse=reuse)
    return layer(inputs, training=scalar_arg(training))


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


# -- TF1's layer objects: variables made on the first call, shared by every later call ----------
class Layer:
    """Base of TF1's layer objects (``tf.layers.Dense``...): the first call creates the
    variables in a fresh variable scope (``dense``, ``dense_1``...); later calls reuse
    them wherever they are made, as TF1's objects do.

    Subclasses define ``build(inputs)`` (creating variables with ``add_variable``) and
    ``call(inputs)``. The functional layers (``gc.layers.dense``...) are one call of an object.
    """

    default_name = "layer"

    def __init__(self, trainable=True, name=None, _reuse=None, **unused):
        self.trainable, self.name, self._reuse = trainable, name, _reuse
        self.built = False
        self._variables = []

    def add_variable(self, name, shape, dtype, initializer, trainable=True, regularizer=None):
        var = _variable(name, shape, dtype, initializer, trainable and self.trainable,
                        regularizer)
        self._variables.append(var)
        return var

    def build(self, inputs):
        """Create the variables (none by default)."""

    def __call__(self, inputs, **kwargs):
        inputs = convert(inputs)
        if self.built:
            return self.call(inputs, **kwargs)
        with _layer_scope(self.name, self.default_name, self._reuse) as scope:
            self.name = scope.name.rstrip("/").split("/")[-1]
            self.build(inputs)
            self.built = True
            return self.call(inputs, **kwargs)

    @property
    def variables(self):
        return list(self._variables)

    weights = variables

    @property
    def trainable_variables(self):
        trainable = set(get_default_graph().get_collection("trainable_variables"))
        return [v for v in self._variables if v in trainable]

    trainable_weights = trainable_variables


class Dense(Layer):
    """TF1's ``tf.layers.Dense``: ``activation(inputs @ kernel + bias)`` on the last axis.

    Example:
        >>> layer = gc.layers.Dense(10)
        >>> train_logits, test_logits = layer(x_train), layer(x_test)  # one kernel, one bias
    """

    default_name = "dense"

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer=None,
                 bias_initializer=None, kernel_regularizer=None, bias_regularizer=None,
                 trainable=True, name=None, **kwargs):
        super().__init__(trainable, name, **kwargs)
        self.units, self.activation, self.use_bias = units, activation, use_bias
        self._inits = (kernel_initializer, bias_initializer or zeros_init())
        self._regs = (kernel_regularizer, bias_regularizer)
        self.kernel = self.bias = None

    def build(self, inputs):
        depth = _static_dim(inputs, -1, "dense")
        self.kernel = self.add_variable("kernel", [depth, self.units], inputs.dtype,
                                        self._inits[0], True, self._regs[0])
        if self.use_bias:
            self.bias = self.add_variable("bias", [self.units], inputs.dtype, self._inits[1],
                                          True, self._regs[1])

    def call(self, inputs):
        out = matmul(inputs, self.kernel)
        if self.bias is not None:
            out = out + self.bias
        return self.activation(out) if self.activation is not None else out


class Conv2D(Layer):
    """TF1's ``tf.layers.Conv2D``: kernel [kh, kw, in, filters], bias [filters].

    Example:
        >>> conv = gc.layers.Conv2D(8, 3, padding="same", activation=gc.nn.relu)
    """

    default_name = "conv2d"

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid",
                 data_format="channels_last", dilation_rate=(1, 1), activation=None,
                 use_bias=True, kernel_initializer=None, bias_initializer=None,
                 kernel_regularizer=None, trainable=True, name=None, **kwargs):
        super().__init__(trainable, name, **kwargs)
        self.filters, self.strides, self.padding = filters, strides, padding
        self.fmt = "NHWC" if data_format in ("channels_last", "NHWC") else "NCHW"
        self.kernel_size = ((kernel_size, kernel_size) if isinstance(kernel_size, int)
                            else tuple(kernel_size))
        self.dilation_rate, self.activation, self.use_bias = dilation_rate, activation, use_bias
        self._inits = (kernel_initializer, bias_initializer or zeros_init())
        self._kernel_regularizer = kernel_regularizer
        self.kernel = self.bias = None

    def build(self, inputs):
        depth = _static_dim(inputs, 3 if self.fmt == "NHWC" else 1, "conv2d")
        self.kernel = self.add_variable("kernel", [*self.kernel_size, depth, self.filters],
                                        inputs.dtype, self._inits[0], True,
                                        self._kernel_regularizer)
        if self.use_bias:
            self.bias = self.add_variable("bias", [self.filters], inputs.dtype, self._inits[1])

    def call(self, inputs):
        out = nn_layers.conv2d(inputs, self.kernel, self.strides, self.padding,
                               data_format=self.fmt, dilations=self.dilation_rate)
        if self.bias is not None:
            out = out + (self.bias if self.fmt == "NHWC"
                         else reshape(self.bias, [1, self.filters, 1, 1]))
        return self.activation(out) if self.activation is not None else out


class MaxPooling2D(Layer):
    """TF1's ``tf.layers.MaxPooling2D``: ``max_pooling2d`` with fixed arguments."""

    default_name = "max_pooling2d"

    def __init__(self, pool_size, strides, padding="valid", data_format="channels_last",
                 name=None, **kwargs):
        super().__init__(False, name, **kwargs)
        self.pool_size, self.strides = pool_size, strides
        self.padding, self.data_format = padding, data_format

    def __call__(self, inputs):
        return max_pooling2d(inputs, self.pool_size, self.strides, self.padding,
                             self.data_format)


class AveragePooling2D(MaxPooling2D):
    """TF1's ``tf.layers.AveragePooling2D``: ``average_pooling2d`` with fixed arguments."""

    default_name = "average_pooling2d"

    def __call__(self, inputs):
        return average_pooling2d(inputs, self.pool_size, self.strides, self.padding,
                                 self.data_format)


class BatchNormalization(Layer):
    """TF1's ``tf.layers.BatchNormalization`` (see ``batch_normalization``, one call of it):
    ``gamma``, ``beta``, ``moving_mean`` and ``moving_variance`` [C] are created on the first
    call and shared by later ones; ``layer(x, training=...)`` picks the statistics.

    Example:
        >>> bn = gc.layers.BatchNormalization()
        >>> h_train, h_test = bn(h, training=True), bn(h_test_input)
    """

    default_name = "batch_normalization"

    def __init__(self, axis=-1, momentum=0.99, epsilon=1e-3, center=True, scale=True,
                 beta_initializer=None, gamma_initializer=None, moving_mean_initializer=None,
                 moving_variance_initializer=None, trainable=True, name=None, **kwargs):
        super().__init__(trainable, name, **kwargs)
        self.axis, self.momentum, self.epsilon = axis, momentum, epsilon
        self.center, self.scale = center, scale
        self._inits = (gamma_initializer or ones_init(), beta_initializer or zeros_init(),
                       moving_mean_initializer or zeros_init(),
                       moving_variance_initializer or ones_init())
        self.gamma = self.beta = self.moving_mean = self.moving_variance = None

    def build(self, inputs):
        c = _static_dim(inputs, self.axis % inputs.rank, "batch_normalization")
        dt, (g, b, m, v) = inputs.dtype, self._inits
        if self.scale:
            self.gamma = self.add_variable("gamma", [c], dt, g)
        if self.center:
            self.beta = self.add_variable("beta", [c], dt, b)
        self.moving_mean = self.add_variable("moving_mean", [c], dt, m, False)
        self.moving_variance = self.add_variable("moving_variance", [c], dt, v, False)

    def call(self, inputs, training=False):
        a = self.axis % inputs.rank
        shape = [1 if i != a else inputs.shape[a] for i in range(inputs.rank)]

        def bcast(v):  # [C] -> broadcastable against inputs
            return v if a == inputs.rank - 1 or v is None else reshape(v, shape)

        if not isinstance(training, Node) and not training:
            mean, var = self.moving_mean, self.moving_variance
        else:
            mean, var = _training_statistics(inputs, a, training, self.momentum,
                                             self.moving_mean, self.moving_variance)
        return nn_layers.batch_normalization(inputs, bcast(mean), bcast(var), bcast(self.beta),
                                             bcast(self.gamma), self.epsilon)


class Flatten(Layer):
    """TF1's ``tf.layers.Flatten``: [batch, ...] to [batch, prod(...)]."""

    default_name = "flatten"

    def __call__(self, inputs):
        return flatten(inputs)


class Dropout(Layer):
    """TF1's ``tf.layers.Dropout(rate)``; ``layer(x, training=...)`` as ``gc.layers.dropout``."""

    default_name = "dropout"

    def __init__(self, rate=0.5, noise_shape=None, seed=None, name=None, **kwargs):
        super().__init__(False, name, **kwargs)
        self.rate, self.noise_shape, self.seed = rate, noise_shape, seed

    def __call__(self, inputs, training=False):
        return dropout(inputs, self.rate, self.noise_shape, self.seed, training)


__all__ = ["Layer", "Dense", "Conv2D", "Flatten", "Dropout", "MaxPooling2D",
           "AveragePooling2D", "BatchNormalization", "dense", "conv1d", "conv2d",
           "max_pooling2d", "average_pooling2d", "flatten", "dropout", "batch_normalization", "UPDATE_OPS", "REGULARIZATION_LOSSES"]
