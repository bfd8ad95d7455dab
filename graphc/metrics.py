"""``gc.metrics``: TF1's streaming metrics (accuracy, mean, mean_squared_error, precision,
recall), each a running pair of sums in local variables.

A metric returns ``(value, update_op)``. ``update_op`` adds the batch to the running total
and count (assign nodes, so they take effect when the step ends) and evaluates to the
updated ratio; ``value`` reads the ratio at step start. Running
``gc.local_variables_initializer()`` resets the metric, as in TF1.
"""
import numpy as np

from .errors import ShapeError
from .framework.graph import GraphKeys, Variable, add_to_collection, assign, name_scope
from .ir import dtypes as D
from .ir.ops import convert
from .ops.math_ops import cast, equal, logical_and, logical_not, not_equal, square, where
from .ops.reduction_ops import reduce_sum


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
    labels, predictions = _pair("accuracy", labels, predictions)
    hits = cast(equal(predictions, labels), D.float32)
    return _streaming_ratio(name or "accuracy", ("total", "count"),
                            lambda w: (reduce_sum(hits * w), reduce_sum(w)),
                            hits, weights, metrics_collections, updates_collections)


def _streaming_ratio(name, var_names, batch_sums, like, weights, metrics_collections,
                     updates_collections, ratio=None):
    """The machinery every metric here shares: two float32 accumulators ``a``, ``b`` (local
    variables named ``var_names`` under ``name``), each step adding ``batch_sums(w)`` to
    them, ``w`` being the weights broadcast to ``like``'s shape (ones by default).

    Returns:
        ``(ratio(a, b), ratio(a + batch_a, b + batch_b))``, ``ratio`` defaulting to ``a / b``
        (0 while ``b`` is 0); the second is the update op.
    """
    ratio = ratio or _safe_div
    with name_scope(name):
        a, b = (_local(n) for n in var_names)
        ones = cast(like, D.float32) * 0.0 + 1.0  # the batch's shape, for the count
        w = ones if weights is None else cast(convert(weights), D.float32) * ones
        da, db = batch_sums(w)
        value = ratio(a, b)
        update_op = ratio(assign(a, a + da), assign(b, b + db))
    for key in metrics_collections or ():
        add_to_collection(key, value)
    for key in updates_collections or ():
        add_to_collection(key, update_op)
    return value, update_op


def _pair(fn, labels, predictions, dtype=None):
    """(labels, predictions) checked for one static shape and cast to one dtype."""
    predictions = convert(predictions)
    labels = convert(labels, predictions)
    if not _same_shape(labels.shape.as_list(), predictions.shape.as_list()):
        raise ShapeError(f"metrics.{fn}: labels {labels.shape} and predictions "
                         f"{predictions.shape} must have the same shape")
    dtype = dtype or predictions.dtype
    return cast(labels, dtype), cast(predictions, dtype)


def mean(values, weights=None, metrics_collections=None, updates_collections=None,
         name=None):
    """The (weighted) mean of every ``values`` seen, accumulated over the steps run (TF1).

    Args:
        values: a tensor of any shape; weights: optional, broadcastable to it.
    Returns:
        ``(mean, update_op)``: float32 scalars ``total / count`` before and after this batch.
    Example:
        >>> avg_loss, update = gc.metrics.mean(loss)
    """
    values = cast(convert(values), D.float32)
    return _streaming_ratio(name or "mean", ("total", "count"),
                            lambda w: (reduce_sum(values * w), reduce_sum(w)),
                            values, weights, metrics_collections, updates_collections)


def mean_squared_error(labels, predictions, weights=None, metrics_collections=None,
                       updates_collections=None, name=None):
    """The running mean of ``(labels - predictions) ** 2`` over every element seen (TF1).

    Raises:
        ShapeError: labels and predictions of different static shapes.
    Example:
        >>> mse, update = gc.metrics.mean_squared_error(y, y_hat)
    """
    labels, predictions = _pair("mean_squared_error", labels, predictions, D.float32)
    sq = square(labels - predictions)
    return _streaming_ratio(name or "mean_squared_error", ("total", "count"),
                            lambda w: (reduce_sum(sq * w), reduce_sum(w)),
                            sq, weights, metrics_collections, updates_collections)


def _confusion(fn, labels, predictions, other, name, weights, metrics_collections,
               updates_collections):
    """tp / (tp + other) with TF1's bool reading (nonzero is True) of labels and predictions;
    ``other`` is "false_positives" (precision) or "false_negatives" (recall)."""
    labels, predictions = _pair(fn, labels, predictions)
    y, p = not_equal(labels, 0), not_equal(predictions, 0)
    tp = cast(logical_and(y, p), D.float32)
    wrong = cast(logical_and(logical_not(y), p) if other == "false_positives"
                 else logical_and(y, logical_not(p)), D.float32)
    return _streaming_ratio(name or fn, ("true_positives", other),
                            lambda w: (reduce_sum(tp * w), reduce_sum(wrong * w)),
                            tp, weights, metrics_collections, updates_collections,
                            ratio=lambda a, b: _safe_div(a, a + b))


def precision(labels, predictions, weights=None, metrics_collections=None,
              updates_collections=None, name=None):
    """Running ``true_positives / (true_positives + false_positives)`` (TF1: labels and
    predictions read as bools, nonzero is True; 0 before any positive prediction).

    Example:
        >>> prec, update = gc.metrics.precision(y, gc.argmax(logits, 1))
    """
    return _confusion("precision", labels, predictions, "false_positives", name, weights,
                      metrics_collections, updates_collections)


def recall(labels, predictions, weights=None, metrics_collections=None,
           updates_collections=None, name=None):
    """Running ``true_positives / (true_positives + false_negatives)`` (TF1's bool reading,
    as ``precision``; 0 before any positive label).

    Example:
        >>> rec, update = gc.metrics.recall(y, gc.argmax(logits, 1))
    """
    return _confusion("recall", labels, predictions, "false_negatives", name, weights,
                      metrics_collections, updates_collections)


__all__ = ["accuracy", "mean", "mean_squared_error", "precision", "recall"]
