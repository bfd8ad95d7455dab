"""Clipping by norm (TF1's clip_ops): graph functions, so clipping compiles into the step.

``clip_by_value`` lives in ``math_ops`` (it is two elementwise ops). The norm clippers here
keep TF1's semantics, including its edge cases:
- a zero tensor clips to zero with a zero gradient (the norm's square root is guarded);
- ``clip_by_global_norm`` passes None entries through, and when the global norm is Inf or
  NaN every clipped tensor is NaN (TF1's choice: a broken step is visible, not silent).
"""
import numpy as np

from ..errors import GraphError
from ..ir.graph import Node
from ..ir.ops import apply, convert
from .array_ops import _need_float, _sum, fail
from .math_ops import cast, greater, maximum, minimum, ones_like, sqrt, where
from .reduction_ops import reduce_sum

__all__ = ["clip_by_norm", "clip_by_global_norm", "global_norm"]


def clip_by_value(t, clip_value_min, clip_value_max, name=None):
    return minimum(maximum(t, clip_value_min), clip_value_max)


def _as_tensor(t, fn):
    if not isinstance(t, Node):
        t = convert(t)
    if t.dtype is None or not t.dtype.is_floating:
        raise GraphError(f"{fn}: expected a floating tensor, found "
                         f"{t.describe() if t.dtype is None else t.type_str()}",
                         hint="clip gradients or float tensors only")
    return t


def _like(value, t):
    """A number or tensor as ``t``'s dtype (clip_norm may be a fed float32 scalar)."""
    value = convert(value, t)
    return value if value.dtype == t.dtype else cast(value, t.dtype)


def _safe_sqrt(sum_sq):
    """sqrt that is 0 with a 0 gradient at 0 (plain sqrt's gradient is Inf there)."""
    positive = greater(sum_sq, 0.0)
    return where(positive, sqrt(where(positive, sum_sq, ones_like(sum_sq))), sum_sq)


def clip_by_norm(t, clip_norm, axes=None, name=None):
    """Rescale ``t`` so that its L2 norm (over ``axes``) is at most ``clip_norm``.

    ``t * clip_norm / max(norm(t), clip_norm)``: unchanged when the norm is small enough.

    Args:
        t: a floating tensor.
        clip_norm: a positive number or scalar tensor.
        axes: axes of the norm (None: all); each slice along the others is clipped alone.
    Returns:
        A tensor like ``t``.
    Example:
        >>> g_clipped = gc.clip_by_norm(g, 5.0)          # whole tensor
        >>> rows = gc.clip_by_norm(emb, 1.0, axes=[1])   # each row to norm <= 1
    """
    t = _as_tensor(t, "clip_by_norm")
    norm = _safe_sqrt(reduce_sum(t * t, axis=axes, keepdims=True))
    c = _like(clip_norm, t)
    return t * c / maximum(norm, c)


def global_norm(t_list, name=None):
    """``sqrt(sum_i ||t_i||^2)`` over the non-None tensors of ``t_list``.

    Returns:
        A scalar tensor of the first tensor's dtype (others are cast to it).
    Raises:
        GraphError: ``t_list`` is not a list, or holds only None.
    Example:
        >>> norm = gc.global_norm([g for g, _ in grads_and_vars])
    """
    if isinstance(t_list, Node) or not isinstance(t_list, (list, tuple)):
        raise GraphError("global_norm: expected a list of tensors",
                         hint="wrap a single tensor in a list")
    ts = [_as_tensor(t, "global_norm") for t in t_list if t is not None]
    if not ts:
        raise GraphError("global_norm: every entry of the list is None")
    dtype = ts[0].dtype
    parts = [reduce_sum(t * t) if t.dtype == dtype else cast(reduce_sum(t * t), dtype)
             for t in ts]
    total = parts[0]
    for p in parts[1:]:
        total = total + p
    return _safe_sqrt(total)


def clip_by_global_norm(t_list, clip_norm, use_norm=None, name=None):
    """Scale all tensors by one factor so that their global norm is at most ``clip_norm``.

    ``t_i * clip_norm / max(global_norm, clip_norm)``; the direction of the whole gradient is
    kept, unlike per-tensor clipping.

    Args:
        t_list: tensors (None entries are returned as None).
        clip_norm: a positive number or scalar tensor.
        use_norm: a precomputed global norm (default: computed here).
    Returns:
        (list of clipped tensors, the global norm before clipping).
    Example:
        >>> grads, variables = zip(*opt.compute_gradients(loss))
        >>> clipped, norm = gc.clip_by_global_norm(grads, 1.0)
        >>> train_op = opt.apply_gradients(zip(clipped, variables))
    """
    if isinstance(t_list, Node) or not isinstance(t_list, (list, tuple)):
        raise GraphError("clip_by_global_norm: expected a list of tensors",
                         hint="use clip_by_norm for a single tensor")
    norm = global_norm(t_list) if use_norm is None else use_norm
    c = _like(clip_norm, norm)
    # norm - norm is 0 for a finite norm and NaN for Inf/NaN: a broken step shows as NaN.
    scale = c * minimum(1.0 / norm, 1.0 / c) + (norm - norm)
    clipped = []
    for t in t_list:
        if t is None:
            clipped.append(None)
            continue
        t = _as_tensor(t, "clip_by_global_norm")
        clipped.append(t * (scale if scale.dtype == t.dtype else cast(scale, t.dtype)))
    return clipped, norm


def clip_by_average_norm(t, clip_norm, name=None):
    """TF1's ``clip_by_average_norm``: ``t`` scaled so that ``l2norm(t) / t.size`` is at most
    ``clip_norm``; ``t`` is unchanged when it already is.

    Computed as ``t * clip_norm * min(size / l2norm(t), 1 / clip_norm)``, TF1's formula.

    Example:
        >>> gc.clip_by_average_norm([3.0, 4.0], 1.0)   # average norm 2.5 -> [1.2, 1.6]
    """
    fn = "clip_by_average_norm"
    t = convert(t)
    _need_float(fn, t)
    if any(d is None for d in t.shape):
        fail(fn, f"needs a static shape (its size divides the norm), found {t.type_str()}")
    c = convert(clip_norm, t)
    size = convert(float(np.prod(t.shape, dtype=np.int64)), t)
    inv_norm = apply("divide", [convert(1.0, t), apply("sqrt", [_sum(
        apply("multiply", [t, t]), None, False)])])
    scale = apply("minimum", [apply("multiply", [inv_norm, size]),
                              apply("divide", [convert(1.0, t), c])])
    return apply("multiply", [t, apply("multiply", [c, scale])],
                 name=name or "clip_by_average_norm")
