"""``gc.nn``: activations and losses with TF1 signatures (labels and logits by keyword)."""
from .errors import GraphError
from .ir.ops import apply, convert
from .math_ops import exp, matmul, minimum, where  # noqa: F401
from .math_ops import reduce_sum, sigmoid, tanh  # noqa: F401  (TF1 exposes them in nn)


def relu(features, name=None):
    return apply("relu", [features], name=name)


def leaky_relu(features, alpha=0.2, name=None):
    return apply("leaky_relu", [features], {"alpha": float(alpha)}, name=name)


def relu6(features, name=None):
    """``min(max(x, 0), 6)``."""
    return apply("minimum", [relu(features), 6.0], name=name)


def elu(features, name=None):
    """``x`` for x > 0, ``exp(x) - 1`` otherwise.

    The exponential sees ``min(x, 0)`` so that a large positive x never makes an ``inf``
    whose zero gradient would turn into NaN.
    """
    neg = exp(minimum(features, 0.0)) - 1.0
    return where(features > 0.0, features, neg, name=name)


def xw_plus_b(x, weights, biases, name=None):
    """``matmul(x, weights) + biases`` (TF1's nn.xw_plus_b)."""
    return bias_add(matmul(x, weights), biases, name=name)


def softplus(features, name=None):
    return apply("softplus", [features], name=name)


def softmax(logits, axis=None, name=None, dim=None):
    axis = -1 if axis is None and dim is None else (axis if axis is not None else dim)
    return apply("softmax", [logits], {"axis": int(axis)}, name=name)


def log_softmax(logits, axis=None, name=None, dim=None):
    axis = -1 if axis is None and dim is None else (axis if axis is not None else dim)
    return apply("log_softmax", [logits], {"axis": int(axis)}, name=name)


def _need(labels, logits, fn):
    if labels is None or logits is None:
        raise GraphError(f"{fn}: pass labels= and logits= by keyword, as TF1 requires")


def sparse_softmax_cross_entropy_with_logits(_sentinel=None, labels=None, logits=None,
                                             name=None):
    """Per-example ``-log softmax(logits)[label]``; its gradient is the fused ``p - y``."""
    _need(labels, logits, "sparse_softmax_cross_entropy_with_logits")
    return apply("sparse_softmax_xent", [logits, convert(labels)], name=name)


def softmax_cross_entropy_with_logits(_sentinel=None, labels=None, logits=None, dim=-1,
                                      name=None, axis=None):
    """Per-example ``-sum(labels * log softmax(logits))`` (labels one-hot or soft)."""
    _need(labels, logits, "softmax_cross_entropy_with_logits")
    return apply("softmax_xent", [logits, convert(labels, logits)], name=name)


softmax_cross_entropy_with_logits_v2 = softmax_cross_entropy_with_logits


def sigmoid_cross_entropy_with_logits(_sentinel=None, labels=None, logits=None, name=None):
    """Elementwise ``max(x, 0) - x z + log(1 + exp(-|x|))``: stable for any logit."""
    _need(labels, logits, "sigmoid_cross_entropy_with_logits")
    return apply("sigmoid_xent", [convert(labels, logits), logits], name=name)


def l2_loss(t, name=None):
    """``sum(t ** 2) / 2``."""
    return reduce_sum(t * t) * 0.5


def bias_add(value, bias, data_format=None, name=None):
    if bias.rank != 1:
        raise GraphError(f"bias_add: bias must be 1-D, found {bias.type_str()}")
    return apply("add", [value, bias], name=name or "BiasAdd")


# Layers and recurrent networks live in their own modules; gc.nn re-exports them, as TF1 does.
from .nn_layers import (avg_pool, avg_pool2d, batch_normalization, conv2d, dropout,  # noqa: E402
                        embedding_lookup, fused_batch_norm, max_pool, max_pool2d, moments)
from . import rnn as rnn_cell  # noqa: E402  (gc.nn.rnn_cell.BasicLSTMCell, ...)
from .rnn import (BasicLSTMCell, BasicRNNCell, GRUCell, LSTMCell, LSTMStateTuple,  # noqa: E402
                  MultiRNNCell, bidirectional_dynamic_rnn, dynamic_rnn,
                  static_bidirectional_rnn, static_rnn)
