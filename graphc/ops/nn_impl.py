"""``gc.nn``: activations and losses with TF1 signatures (labels and logits by keyword)."""
import numpy as np

from ..errors import DTypeError, GraphError, ShapeError
from ..ir.graph import Node, get_default_graph
from ..ir.ops import apply, const_node, convert
from ..ir.source import user_location
from .math_ops import (cast, equal, exp, expand_dims, greater, is_finite, less, logical_and,
                       matmul, maximum, minimum, reshape, rsqrt, transpose, where, zeros_like)
from .reduction_ops import reduce_sum
from .reduction_ops import reduce_all, reduce_any


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


def softmax_cross_entropy_with_logits_v2(_sentinel=None, labels=None, logits=None, axis=None,
                                         name=None, dim=None):
    """Per-example ``-sum(labels * log softmax(logits))`` (labels one-hot or soft), with TF1's
    argument rules: labels of another dtype (float or int) are cast to the logits' dtype, and
    labels and logits are each flattened to ``[-1, classes]``, so labels ``[1, N, C]`` pair
    with logits ``[N, C]``; the loss has the logits' shape without the class axis. Gradients
    reach labels too.

    Args:
        labels, logits: by keyword; ``axis`` (``dim``): the class axis, default the last.
    Returns:
        the per-example loss, of the logits' shape without the class axis.
    Raises:
        DTypeError: logits that are not floating.
        ShapeError: labels whose class count or number of rows differs from the logits'.
    Example:
        >>> loss = gc.nn.softmax_cross_entropy_with_logits_v2(labels=[onehot], logits=logits)
    """
    return _dense_xent("softmax_cross_entropy_with_logits_v2", labels, logits,
                       dim if axis is None else axis, name, stop_labels=False)


def softmax_cross_entropy_with_logits(_sentinel=None, labels=None, logits=None, dim=-1,
                                      name=None, axis=None):
    """TF1's first version of ``softmax_cross_entropy_with_logits_v2``: the same loss and
    argument rules, but gradients reach the logits only (labels are held constant)."""
    return _dense_xent("softmax_cross_entropy_with_logits", labels, logits,
                       dim if axis is None else axis, name, stop_labels=True)


def _dense_xent(fn, labels, logits, axis, name, stop_labels):
    _need(labels, logits, fn)
    logits = convert(logits)
    if logits.dtype is None or not logits.dtype.is_floating or logits.rank == 0:
        raise DTypeError(f"{fn}: logits must be a floating tensor of rank 1 or more, found "
                         f"{logits.describe()} : {logits.type_str()}", loc=user_location())
    labels = convert(labels, logits)   # Python numbers and lists take the logits' dtype
    if labels.dtype != logits.dtype:
        labels = cast(labels, logits.dtype)   # TF1 casts labels of any other dtype
    if stop_labels:
        labels = apply("stop_gradient", [labels])
    rank = logits.rank
    axis = -1 if axis is None else int(axis)
    if not -rank <= axis < rank:
        raise ShapeError(f"{fn}: axis {axis} is out of range for logits {logits.type_str()}",
                         loc=user_location())
    if axis % rank != rank - 1:   # move the class axis last, in both
        if labels.rank != rank:
            raise ShapeError(f"{fn}: with class axis {axis}, labels {labels.type_str()} must "
                             f"have the rank of logits {logits.type_str()}", loc=user_location())
        perm = [a for a in range(rank) if a != axis % rank] + [axis % rank]
        logits, labels = transpose(logits, perm), transpose(labels, perm)
    if labels.rank == rank:
        return apply("softmax_xent", [logits, labels], name=name)
    return _flat_dense_xent(fn, labels, logits, name)


def _flat_dense_xent(fn, labels, logits, name):
    """Labels of another rank: both flattened to [-1, classes], the loss reshaped back."""
    classes, lead = logits.shape[-1], logits.shape[:-1]
    if classes is None or labels.rank == 0 or labels.shape[-1] not in (None, classes) \
            or sum(d is None for d in lead) > 1:
        raise ShapeError(f"{fn}: labels {labels.type_str()} do not flatten to the rows of "
                         f"logits {logits.type_str()}",
                         ["labels and logits are each flattened to [-1, classes]: the class "
                          "count must be static and equal, and at most one other logits dim "
                          "unknown"], loc=user_location())
    flat_labels = reshape(labels, [-1, classes])
    if logits.rank == 2:
        return apply("softmax_xent", [logits, flat_labels], name=name)
    loss = apply("softmax_xent", [reshape(logits, [-1, classes]), flat_labels])
    return reshape(loss, [-1 if d is None else d for d in lead], name=name)


def sigmoid_cross_entropy_with_logits(_sentinel=None, labels=None, logits=None, name=None):
    """Elementwise ``max(x, 0) - x z + log(1 + exp(-|x|))``: stable for any logit."""
    _need(labels, logits, "sigmoid_cross_entropy_with_logits")
    return apply("sigmoid_xent", [convert(labels, logits), logits], name=name)


def l2_loss(t, name=None):
    """``sum(t ** 2) / 2``."""
    return reduce_sum(t * t) * 0.5


def l2_normalize(x, axis=None, epsilon=1e-12, name=None, dim=None):
    """``x / sqrt(max(sum(x ** 2, axis), epsilon))``, TF1's nn.l2_normalize.

    Args:
        x: a float tensor.
        axis: an int, a list of ints, or None (all axes); ``dim`` is TF1's alias.
        epsilon: the floor under the squared norm (a zero vector stays zero, finite gradient).
        name: a name scope.
    Returns:
        A tensor of ``x``'s shape with unit L2 norm along ``axis``.
    Example:
        >>> gc.nn.l2_normalize(embeddings, axis=1)
    """
    axis = dim if axis is None else axis
    x = convert(x)
    with get_default_graph().name_scope(name or "l2_normalize"):
        sq = reduce_sum(x * x, axis=axis, keepdims=True)
        return x * rsqrt(maximum(sq, epsilon))


def in_top_k(predictions, targets, k, name=None):
    """Whether each target class is among the ``k`` largest predictions of its row.

    As TF1: ties straddling the k-th place all count as in the top k (a row is true when
    fewer than k classes score strictly higher than the target); a row with a non-finite
    prediction or a target outside ``[0, classes)`` is false.

    Args:
        predictions: a float tensor [batch, classes] (static classes).
        targets: an int32/int64 tensor [batch].
        k: a Python int or a scalar int tensor.
        name: a name scope.
    Returns:
        A bool tensor [batch].
    Raises:
        ShapeError: wrong ranks or an unknown number of classes.
        DTypeError: targets are not integers.
    Example:
        >>> acc = gc.reduce_mean(gc.cast(gc.nn.in_top_k(logits, labels, 5), gc.float32))
    """
    p, t = convert(predictions), convert(targets)
    _top_k_check(p, t)
    with get_default_graph().name_scope(name or "in_top_k"):
        classes = const_node(np.arange(p.shape[1], dtype=t.dtype.np), name="classes")
        hit = equal(expand_dims(t, 1), classes)
        target = reduce_sum(where(hit, p, zeros_like(p)), axis=1, keepdims=True)
        higher = reduce_sum(cast(greater(p, target), "int32"), axis=1)
        k = cast(k, "int32") if isinstance(k, Node) else int(k)
        valid = logical_and(reduce_all(is_finite(p), axis=1), reduce_any(hit, axis=1))
        return logical_and(valid, less(higher, k))


def _top_k_check(p, t):
    if p.rank != 2 or t.rank != 1:
        raise ShapeError(f"in_top_k: expected predictions [batch, classes] and targets "
                         f"[batch], found {p.type_str()} and {t.type_str()}",
                         loc=user_location())
    if p.shape[1] is None:
        raise ShapeError(f"in_top_k: the number of classes of {p.type_str()} is unknown",
                         loc=user_location(), hint="give predictions a static last dim")
    if not t.dtype.is_integer:
        raise DTypeError(f"in_top_k: targets must be int32 or int64, found {t.type_str()}",
                         loc=user_location())


def bias_add(value, bias, data_format=None, name=None):
    if bias.rank != 1:
        raise GraphError(f"bias_add: bias must be 1-D, found {bias.type_str()}")
    return apply("add", [value, bias], name=name or "BiasAdd")
