"""``gc.losses``: TF1's tf.losses, reduced to a scalar as TF1's default reduction does.

TF1's default reduction (``SUM_BY_NONZERO_WEIGHTS``) divides the weighted sum of the
per-example losses by the number of non-zero weights: with the default ``weights=1.0`` that
is the mean. Each loss is also added to the ``losses`` collection, so
``gc.losses.get_total_loss()`` sums them with the regularization losses, as in TF1.
"""
from .ops import nn_impl as nn
from .framework.graph import GraphKeys, add_to_collection, get_collection
from .ir.ops import convert
from .ops.math_ops import (abs, add_n, cast, equal, log, minimum, not_equal, square,
                           squared_difference, where)
from .ops.reduction_ops import reduce_mean, reduce_sum

LOSSES = "losses"


class Reduction:
    """How a loss reduces its weighted per-element values (TF1's tf.losses.Reduction)."""
    NONE = "none"
    SUM = "weighted_sum"
    MEAN = "weighted_mean"
    SUM_OVER_BATCH_SIZE = "weighted_sum_over_batch_size"
    SUM_BY_NONZERO_WEIGHTS = "weighted_sum_by_nonzero_weights"
    SUM_OVER_NONZERO_WEIGHTS = SUM_BY_NONZERO_WEIGHTS

    @classmethod
    def all(cls):
        return (cls.NONE, cls.SUM, cls.MEAN, cls.SUM_OVER_BATCH_SIZE, cls.SUM_BY_NONZERO_WEIGHTS)


def _safe_div(num, den):
    """``num / den``, and 0 where ``den`` is 0 (TF1 reduces all-zero weights to a zero loss)."""
    zero = equal(den, 0.0)
    return where(zero, den * 0.0, num / where(zero, den * 0.0 + 1.0, den))


def _reduce(per_example, weights, scope, reduction=Reduction.SUM_BY_NONZERO_WEIGHTS,
            loss_collection=LOSSES):
    """Weight ``per_example``, reduce it as ``reduction`` says, add it to the collection."""
    if reduction not in Reduction.all():
        raise ValueError(f"gc.losses: unknown reduction {reduction!r}; one of "
                         f"{', '.join(Reduction.all())}")
    unit = isinstance(weights, (int, float)) and weights == 1.0
    if unit and reduction in (Reduction.SUM_BY_NONZERO_WEIGHTS, Reduction.MEAN,
                              Reduction.SUM_OVER_BATCH_SIZE):
        total = reduce_mean(per_example)  # every weight is one: all three are the mean
    else:
        w = convert(weights, per_example) + per_example * 0.0  # broadcast to every element
        weighted = per_example * w
        if reduction == Reduction.NONE:
            total = weighted
        elif reduction == Reduction.SUM:
            total = reduce_sum(weighted)
        elif reduction == Reduction.MEAN:
            total = _safe_div(reduce_sum(weighted), reduce_sum(w))
        elif reduction == Reduction.SUM_OVER_BATCH_SIZE:
            total = reduce_mean(weighted)
        else:
            nonzero = reduce_sum(cast(not_equal(w, 0.0), per_example.dtype))
            total = _safe_div(reduce_sum(weighted), nonzero)
    if loss_collection:
        add_to_collection(loss_collection, total)
    return total


def sparse_softmax_cross_entropy(labels, logits, weights=1.0, scope=None,
                                 reduction=Reduction.SUM_BY_NONZERO_WEIGHTS, **unused):
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
    return _reduce(per, weights, scope, reduction)


def softmax_cross_entropy(onehot_labels, logits, weights=1.0, scope=None,
                          reduction=Reduction.SUM_BY_NONZERO_WEIGHTS, **unused):
    """Mean (weighted) softmax cross-entropy against one-hot or soft labels."""
    per = nn.softmax_cross_entropy_with_logits(labels=onehot_labels, logits=logits)
    return _reduce(per, weights, scope, reduction)


def sigmoid_cross_entropy(multi_class_labels, logits, weights=1.0, scope=None,
                          reduction=Reduction.SUM_BY_NONZERO_WEIGHTS, **unused):
    """Mean (weighted) elementwise sigmoid cross-entropy."""
    per = nn.sigmoid_cross_entropy_with_logits(labels=multi_class_labels, logits=logits)
    return _reduce(per, weights, scope, reduction)


def mean_squared_error(labels, predictions, weights=1.0, scope=None,
                       reduction=Reduction.SUM_BY_NONZERO_WEIGHTS, **unused):
    """Mean (weighted) ``(predictions - labels) ** 2`` over every element."""
    return _reduce(squared_difference(predictions, labels), weights, scope, reduction)


def absolute_difference(labels, predictions, weights=1.0, scope=None,
                        loss_collection=LOSSES, reduction=Reduction.SUM_BY_NONZERO_WEIGHTS):
    """``|predictions - labels|``, weighted and reduced (TF1's tf.losses.absolute_difference).

    Args:
        labels, predictions: tensors of one shape.
        weights: a number or a tensor broadcastable to the loss.
        reduction: a ``gc.losses.Reduction`` (default: sum over the non-zero weights).
    Returns:
        A scalar tensor (the weighted per-element losses for ``Reduction.NONE``).
    Example:
        >>> loss = gc.losses.absolute_difference(y, pred, weights=mask)
    """
    per = abs(predictions - convert(labels, predictions))
    return _reduce(per, weights, scope, reduction, loss_collection)


def huber_loss(labels, predictions, weights=1.0, delta=1.0, scope=None,
               loss_collection=LOSSES, reduction=Reduction.SUM_BY_NONZERO_WEIGHTS):
    """``0.5 e^2`` where ``|e| <= delta``, ``delta (|e| - delta/2)`` beyond, ``e = pred - label``.

    Written as TF1 does, ``q = min(|e|, delta)``: ``0.5 q^2 + delta (|e| - q)``.

    Example:
        >>> loss = gc.losses.huber_loss(y, pred, delta=2.0)
    """
    err = abs(predictions - convert(labels, predictions))
    quadratic = minimum(err, float(delta))
    per = square(quadratic) * 0.5 + (err - quadratic) * float(delta)
    return _reduce(per, weights, scope, reduction, loss_collection)


def log_loss(labels, predictions, weights=1.0, epsilon=1e-7, scope=None,
             loss_collection=LOSSES, reduction=Reduction.SUM_BY_NONZERO_WEIGHTS):
    """``-y log(p + eps) - (1 - y) log(1 - p + eps)`` for probabilities ``p`` (TF1's log_loss).

    Example:
        >>> loss = gc.losses.log_loss(y, gc.sigmoid(logits))
    """
    y = convert(labels, predictions)
    per = -(y * log(predictions + float(epsilon))) - (1.0 - y) * log(
        1.0 - predictions + float(epsilon))
    return _reduce(per, weights, scope, reduction, loss_collection)


def hinge_loss(labels, logits, weights=1.0, scope=None, loss_collection=LOSSES,
               reduction=Reduction.SUM_BY_NONZERO_WEIGHTS):
    """``relu(1 - (2 y - 1) logits)`` for labels ``y`` in {0, 1} (TF1's hinge_loss).

    Example:
        >>> loss = gc.losses.hinge_loss(labels=y, logits=scores)
    """
    signs = convert(labels, logits) * 2.0 - 1.0
    per = nn.relu(1.0 - signs * logits)
    return _reduce(per, weights, scope, reduction, loss_collection)


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
