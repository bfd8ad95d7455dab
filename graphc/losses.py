"""``gc.losses``: TF1's tf.losses, reduced to a scalar as TF1's default reduction does.

TF1's default reduction (``SUM_BY_NONZERO_WEIGHTS``) divides the weighted sum of the
per-example losses by the number of non-zero weights: with the default ``weights=1.0`` that
is the mean. Each loss is also added to the ``losses`` collection, so
``gc.losses.get_total_loss()`` sums them with the regularization losses, as in TF1.
"""
from . import nn
from .framework import GraphKeys, add_to_collection, get_collection
from .ir.ops import convert
from .math_ops import add_n, cast, not_equal, reduce_mean, reduce_sum, squared_difference

LOSSES = "losses"


def _reduce(per_example, weights, scope):
    """Weighted sum over non-zero weights, added to the ``losses`` collection."""
    if isinstance(weights, (int, float)) and weights == 1.0:
        total = reduce_mean(per_example)
    else:
        w = convert(weights, per_example) + per_example * 0.0  # broadcast to every element
        nonzero = reduce_sum(cast(not_equal(w, 0.0), per_example.dtype))
        total = reduce_sum(per_example * w) / nonzero
    add_to_collection(LOSSES, total)
    return total


def sparse_softmax_cross_entropy(labels, logits, weights=1.0, scope=None, **unused):
    """Mean (weighted) sparse softmax cross-entropy, as ``tf.losses`` computes it.

    Args:
        labels: int [batch] class indices.
        logits: [batch, classes].
        weights: a number or a [batch] tensor; the sum is divided by its non-zero count.
    Returns:
        a scalar tensor.
    Example:
        >>> loss = gc.losses.sparse_softmax_cross_entropy(labels=y, logits=logits)
    """
    per = nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    return _reduce(per, weights, scope)


def softmax_cross_entropy(onehot_labels, logits, weights=1.0, scope=None, **unused):
    """Mean (weighted) softmax cross-entropy against one-hot or soft labels."""
    per = nn.softmax_cross_entropy_with_logits(labels=onehot_labels, logits=logits)
    return _reduce(per, weights, scope)


def sigmoid_cross_entropy(multi_class_labels, logits, weights=1.0, scope=None, **unused):
    """Mean (weighted) elementwise sigmoid cross-entropy."""
    per = nn.sigmoid_cross_entropy_with_logits(labels=multi_class_labels, logits=logits)
    return _reduce(per, weights, scope)


def mean_squared_error(labels, predictions, weights=1.0, scope=None, **unused):
    """Mean (weighted) ``(predictions - labels) ** 2`` over every element."""
    return _reduce(squared_difference(predictions, labels), weights, scope)


def get_losses(scope=None):
    """The losses the functions above added to the default graph."""
    return get_collection(LOSSES, scope)


def get_regularization_losses(scope=None):
    """The ``regularization_losses`` collection: penalties added by layers'
    ``kernel_regularizer`` / ``weights_regularizer``, ``gc.get_variable(regularizer=...)`` and
    ``gc.contrib.layers.apply_regularization``."""
    return get_collection(GraphKeys.REGULARIZATION_LOSSES, scope)


def get_regularization_loss(scope=None, name="total_regularization_loss"):
    """The sum of the ``regularization_losses`` collection (0.0 when empty).

    Example:
        >>> loss = xent + gc.losses.get_regularization_loss()
    """
    regs = get_regularization_losses(scope)
    return add_n(regs) if regs else convert(0.0)


def get_total_loss(add_regularization_losses=True, name="total_loss"):
    """The sum of every loss added by ``gc.losses``, plus the regularization losses."""
    parts = get_losses() + (get_collection(GraphKeys.REGULARIZATION_LOSSES)
                            if add_regularization_losses else [])
    return add_n(parts)
