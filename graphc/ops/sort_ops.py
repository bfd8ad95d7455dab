"""TF1's ``nn.top_k``, ``sort`` and ``argsort`` along the last axis, composed of existing ops.

Each element's place in the order is counted, not found by a sorting network: element ``i``
of a row goes to place ``rank[i] = #{j : x[j] beats x[i]}``, where ``x[j]`` beats ``x[i]``
when it is larger (smaller, ascending) or equal with a lower index, so ties keep index order
as TF's ``top_k`` does. Place ``p`` then selects the element whose rank is ``p`` with a
``where``, whose VJP routes each value's gradient to the one position it came from.

The graph has a fixed number of nodes whatever ``k``; the work is ``n * n`` comparisons per
row of ``n`` elements (plus ``k * n`` selections), fine for class scores and small vectors.
Rows holding NaN give unspecified orders.
"""
import numpy as np

from ..ir import dtypes as D
from ..ir.ops import const_node, convert
from ..ir.static import static_value
from .array_ops import fail
from .math_ops import (cast, equal, expand_dims, greater, less, logical_and, logical_or,
                       transpose, where, zeros_like)
from .reduction_ops import reduce_sum

__all__ = ["top_k", "sort", "argsort"]


def _static_k(fn, k, n):
    known = static_value(k) if hasattr(k, "graph") else np.asarray(k)
    if known is None or known.size != 1 or known.dtype.kind not in "iu":
        fail(fn, f"k must be a static int, found {k!r}", hint="pass k as a Python int")
    k = int(known.reshape(()))
    if not 0 <= k <= n:
        fail(fn, f"k = {k} is outside [0, {n}] (the size of the last axis)")
    return k


def _ranked(fn, x, k, descending):
    """(values, int32 indices) of the first ``k`` places of each row's order."""
    n = x.shape[-1] if x.rank else None
    if n is None:
        fail(fn, f"the last axis of {x.type_str()} must be static")
    k = _static_k(fn, k, n)
    mine, other = expand_dims(x, -1), expand_dims(x, -2)   # [..., i, 1] and [..., 1, j]
    earlier = const_node(np.tri(n, k=-1, dtype=bool))      # earlier[i, j] = j < i
    better = greater(other, mine) if descending else less(other, mine)
    beats = logical_or(better, logical_and(equal(other, mine), earlier))
    rank = reduce_sum(cast(beats, D.int32), axis=-1)       # [..., n]: the place of element i
    places = const_node(np.arange(k, dtype=np.int32).reshape(k, 1))
    pick = equal(expand_dims(rank, -2), places)             # [..., k, n]
    values = reduce_sum(where(pick, other, zeros_like(other)), axis=-1)
    positions = const_node(np.arange(n, dtype=np.int32))
    indices = reduce_sum(where(pick, positions, const_node(np.zeros(n, np.int32))), axis=-1)
    return values, indices


class TopKV2(tuple):
    """``(values, indices)`` with TF1's attribute names."""

    values = property(lambda self: self[0])
    indices = property(lambda self: self[1])


def top_k(input, k=1, sorted=True, name=None):  # noqa: A002
    """The ``k`` largest entries of each row (last axis) and their int32 indices.

    As TF: ties go to the lower index first; the values come out in descending order (also
    for ``sorted=False``, which TF leaves unspecified). The gradient of the values reaches
    exactly the selected positions; indices have none.

    Args:
        input: a tensor of rank >= 1 with a static last axis of size n.
        k: a Python int (or a constant scalar tensor) in [0, n].
    Returns:
        ``(values, indices)``, each ``input.shape[:-1] + [k]``; also ``.values``/``.indices``.
    Raises:
        GraphError: a run-time ``k``, ``k > n`` or an unknown last axis.
    Example:
        >>> values, indices = gc.nn.top_k(logits, k=5)
    """
    x = convert(input)
    with x.graph.name_scope(name or "TopKV2"):
        return TopKV2(_ranked("top_k", x, k, descending=True))


def _along(fn, values, axis, direction, name, part):
    """Part ``part`` (0: values, 1: indices) of the full order of ``values`` along ``axis``,
    computed on the last axis (transposing there and back)."""
    if direction not in ("ASCENDING", "DESCENDING"):
        fail(fn, f"direction must be 'ASCENDING' or 'DESCENDING', found {direction!r}")
    x = convert(values)
    a = int(axis) % max(x.rank, 1)
    perm = list(range(x.rank))
    perm[a], perm[-1] = perm[-1], perm[a]
    moved = x if a == x.rank - 1 else transpose(x, perm)
    with x.graph.name_scope(name or fn):
        out = _ranked(fn, moved, moved.shape[-1], direction == "DESCENDING")[part]
        return out if a == x.rank - 1 else transpose(out, perm)


def sort(values, axis=-1, direction="ASCENDING", name=None):
    """``values`` sorted along ``axis`` (TF's ``tf.sort``); equal entries keep their order.

    Example:
        >>> gc.sort([3., 1., 2.])   # [1., 2., 3.]
    """
    return _along("sort", values, axis, direction, name, 0)


def argsort(values, axis=-1, direction="ASCENDING", stable=False, name=None):
    """int32 indices that sort ``values`` along ``axis`` (TF's ``tf.argsort``); always
    stable (equal entries in index order).

    Example:
        >>> gc.argsort([3., 1., 2.])   # [1, 2, 0]
    """
    return _along("argsort", values, axis, direction, name, 1)
