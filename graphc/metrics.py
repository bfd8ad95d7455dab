"""``gc.metrics``: TF1's streaming accuracy, a running total and count in local variables.

A metric returns ``(value, update_op)``. ``update_op`` adds the batch to the running total
and count (assign nodes, so they take effect when the step ends) and evaluates to the
updated ratio; ``value`` reads the ratio at step start. Running
``gc.local_variables_initializer()`` resets the metric, as in TF1.
"""
import numpy as np

from .errors import ShapeError
from .framework import GraphKeys, Variable, add_to_collection, assign, name_scope
from .ir import dtypes as D
from .ir.ops import convert
from .math_ops import cast, equal, reduce_sum, where

def _local(name):
    """A float32 scalar accumulator starting at zero, in the local and metric collections."""
    return Variable(np.float32(0.0), trainable=False, name=name,
                    collections=[GraphKeys.LOCAL_VARIABLES, GraphKeys.METRIC_VARIABLES])


def _safe_div(num, den):
    """``num / den``, 0 while nothing has been counted."""
    empty = equal(den, 0.0)
    return where(empty, den * 0.0, num / where(empty, den * 0.0 + 1.0, den))


def _same_shape(a, b):
    """Whether two static shapes (None for an unknown dimension) can be the same."""
    return len(a) == len(b) and all(x is None or y is None or x == y for x, y in zip(a, b))


def accuracy(labels, predictions, weights=None, metrics_collections=None,
             updates_collections=None, name=None):
    """How often ``predictions`` equals ``labels``, accumulated over the steps run (TF1).

    Args:
        labels, predictions: tensors of one shape (any dtype, compared with ``equal``).
        weights: optional, broadcastable to ``labels``: each match counts with its weight.
        metrics_collections, updates_collections: collections to add the value and the
            update op to.
        name: the scope of the ``total`` and ``count`` variables (default ``accuracy``).
    Returns:
        ``(accuracy, update_op)``: float32 scalars, ``total / count`` before and after this
        step's batch (0 before any batch).
    Raises:
        ShapeError: labels and predictions of different static shapes.
    Example:
        >>> acc, acc_op = gc.metrics.accuracy(labels=y, predictions=gc.argmax(logits, 1))
        >>> sess.run(gc.local_variables_initializer())
        >>> for xb, yb in batches: sess.run(acc_op, {x: xb, y: yb})
        >>> print(sess.run(acc))
    """
    predictions = convert(predictions)
    labels = convert(labels, predictions)
    if not _same_shape(labels.shape.as_list(), predictions.shape.as_list()):
        raise ShapeError(f"metrics.accuracy: labels {labels.shape} and predictions "
                         f"{predictions.shape} must have the same shape")
    if labels.dtype != predictions.dtype:
        labels = cast(labels, predictions.dtype)
    with name_scope(name or "accuracy"):
        total, count = _local("total"), _local("count")
        hits = cast(equal(predictions, labels), D.float32)
        ones = hits * 0.0 + 1.0  # the batch's shape, for the count
        w = ones if weights is None else cast(convert(weights), D.float32) * ones
        value = _safe_div(total, count)
        update_op = _safe_div(assign(total, total + reduce_sum(hits * w)),
                              assign(count, count + reduce_sum(w)))
    for key in metrics_collections or ():
        add_to_collection(key, value)
    for key in updates_collections or ():
        add_to_collection(key, update_op)
    return value, update_op
