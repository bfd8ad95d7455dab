"""TF1's ``tf.confusion_matrix`` (also ``tf.math.confusion_matrix``): a composition of
``one_hot`` and ``matmul``, so it runs inside the step on both backends."""
from ..errors import GraphError
from ..ir import dtypes as D
from ..ir.graph import Node
from ..ir.ops import convert
from ..ir.source import user_location
from .math_ops import cast, matmul, one_hot, transpose


def confusion_matrix(labels, predictions, num_classes=None, weights=None, dtype=D.int32,
                     name=None):
    """``[num_classes, num_classes]`` counts: entry ``[i, j]`` is how many examples have label
    ``i`` and prediction ``j`` (each counting its weight when ``weights`` is given).

    Args:
        labels, predictions: 1-D integer tensors of one length (class indices).
        num_classes: a Python int. TF1 can take it from the data (the largest index plus
            one), a shape graphc would only know at run time, so here it is required.
        weights: optional 1-D tensor of per-example weights.
        dtype: the result's dtype (int32 by default, as TF1).
    Returns:
        The matrix, computed as ``one_hot(labels)^T @ (weights * one_hot(predictions))`` in
        float64 (exact counts below 2^53) and cast to ``dtype``. An index outside
        ``[0, num_classes)`` counts nowhere (TF1 raises at run time).
    Raises:
        GraphError: ``num_classes`` missing or not a positive int.
    Example:
        >>> cm = gc.confusion_matrix(y_true, gc.argmax(logits, 1), num_classes=10)
    """
    if isinstance(num_classes, Node) or not isinstance(num_classes, int) or num_classes < 1:
        raise GraphError(f"confusion_matrix: num_classes must be a positive Python int, found "
                         f"{num_classes!r}", loc=user_location(),
                         hint="pass num_classes=...: TF1's default (the largest label or "
                              "prediction plus one) is a shape known only at run time")
    rows = one_hot(convert(labels), num_classes, dtype=D.float64)
    cols = one_hot(convert(predictions), num_classes, dtype=D.float64)
    if weights is not None:
        cols = cols * cast(convert(weights), D.float64)[:, None]
    return cast(matmul(transpose(rows), cols), dtype, name=name)
