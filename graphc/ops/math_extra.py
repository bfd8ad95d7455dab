"""More of TF1's math functions, built from graph ops: ``norm`` / ``linalg.norm``,
``count_nonzero``, ``reduce_variance``, ``reduce_std``, ``div_no_nan``, ``is_nan``,
``is_inf``, the ``to_*`` casts and ``clip_by_average_norm``.

Each is a composition of elementwise ops, reductions and ``where``, so both backends run it
and autodiff differentiates it; reduction axes are static, as everywhere in graphc.
"""
import numpy as np

from .array_ops import fail
from ..errors import DTypeError
from ..ir import dtypes as D
from ..ir.graph import Node
from ..ir.ops import apply, convert
from .reduction_ops import _reduce_args

__all__ = ["norm", "count_nonzero", "reduce_variance", "reduce_std", "div_no_nan", "is_nan",
           "is_inf", "to_int32", "to_int64", "to_double", "clip_by_average_norm"]


def _sum(x, axes, keepdims):
    return apply("reduce_sum", [x], {"axis": axes, "keepdims": keepdims})


def _max(x, axes, keepdims):
    return apply("reduce_max", [x], {"axis": axes, "keepdims": keepdims})


def _need_float(fn, x):
    if not x.dtype.is_floating:
        fail(fn, f"needs a floating tensor, found {x.type_str()}", cls=DTypeError,
             hint="cast first: gc.cast(x, gc.float32)")


# -- norm -------------------------------------------------------------------------------------
def _vector_norm(x, ord, axes, keepdims):
    a = apply("abs", [x])
    if ord == 1:
        return _sum(a, axes, keepdims)
    if ord == np.inf:
        return _max(a, axes, keepdims)
    if ord == 2:  # sqrt of the sum of squares: no abs, so its gradient is x / norm
        return apply("sqrt", [_sum(apply("multiply", [x, x]), axes, keepdims)])
    powered = apply("pow", [a, convert(float(ord), x)])
    return apply("pow", [_sum(powered, axes, keepdims), convert(1.0 / ord, x)])


def _matrix_norm(x, ord, axes, keepdims):
    """ord 1: the largest column sum of |x|; inf: the largest row sum (rows on axes[0])."""
    rows, cols = axes
    a = apply("abs", [x])
    summed, other = (rows, cols) if ord == 1 else (cols, rows)
    sums = _sum(a, (summed,), True)
    return _max(sums, tuple(sorted(axes)), True) if keepdims else apply(
        "squeeze", [_max(sums, (other,), True)], {"axis": tuple(sorted(axes))})


def _norm_ord(fn, ord, matrix):
    """TF1's ord: 'euclidean' (also 'fro' for matrices), 1, inf, and p > 0 for vectors."""
    if isinstance(ord, str):
        if ord == "euclidean" or (ord == "fro" and matrix):
            return 2
        fail(fn, f"ord {ord!r} is not supported here",
             hint="'euclidean', 'fro' (matrix axes), 1, np.inf, or p > 0 (vectors)")
    if isinstance(ord, (bool, np.bool_)) or not isinstance(ord, (int, float, np.number)):
        fail(fn, f"ord must be a string or a number, found {ord!r}")
    ok = ord in (1, np.inf) if matrix else ord > 0
    if not ok:
        fail(fn, f"ord {ord!r} is not supported for {'matrix' if matrix else 'vector'} norms",
             hint="matrix norms: 'fro', 'euclidean', 1, np.inf (TF1 has no 2-norm of "
                  "matrices); vector norms: any p > 0")
    return float(ord) if ord != np.inf else np.inf


def norm(tensor, ord="euclidean", axis=None, keepdims=None, name=None, keep_dims=None):
    """TF1's ``tf.norm``: a vector norm over one axis (or all entries), or a matrix norm over
    two axes.

    Args:
        tensor: a floating tensor.
        ord: 'euclidean' (default; also 'fro' for matrices), 1, np.inf, or any p > 0 for
            vector norms. Matrix norms: 'euclidean'/'fro', 1 (largest column sum of |x|),
            np.inf (largest row sum).
        axis: None (all entries as one vector), an int, or a pair of ints (a matrix norm).
        keepdims: keep the reduced axes with size 1; ``keep_dims`` is TF1's alias.
        name: name of the result node.
    Returns:
        A tensor of the input's dtype.
    Raises:
        GraphError: an ord TF1 refuses (matrix 2-norm, p <= 0, unknown strings) or a
            tensor axis; DTypeError: a non-float tensor.
    Example:
        >>> gc.norm(x, axis=1)            # Euclidean length of each row
        >>> gc.norm(m, ord=1, axis=[0, 1])  # largest column sum of |m|
    """
    fn = "norm"
    x = convert(tensor)
    _need_float(fn, x)
    matrix = isinstance(axis, (list, tuple)) and len(axis) == 2
    if isinstance(axis, (list, tuple)) and len(axis) not in (1, 2):
        fail(fn, f"axis must be an int or a pair of ints, found {axis!r}")
    p = _norm_ord(fn, ord, matrix)
    axes, kd = _reduce_args(fn, x, axis, keepdims, None, keep_dims)
    if matrix and len(set(axes)) != 2:
        fail(fn, f"axis {list(axis)} names one axis twice")
    if matrix and p != 2:
        out = _matrix_norm(x, p, tuple(a % x.rank for a in axis), kd)
    else:
        out = _vector_norm(x, p, axes, kd)
    return apply("identity", [out], name=name or "norm")


# -- counts, moments -------------------------------------------------------------------------
def count_nonzero(input_tensor, axis=None, keepdims=None, dtype=D.int64, name=None,
                  reduction_indices=None, keep_dims=None):
    """How many entries are non-zero (true, for bool) along ``axis`` (None: all).

    Example:
        >>> gc.count_nonzero([[0, 1], [2, 0]], axis=1)   # [1, 1], int64
    """
    x = convert(input_tensor)
    axes, kd = _reduce_args("count_nonzero", x, axis, keepdims, reduction_indices, keep_dims)
    nonzero = x if x.dtype == D.bool_ else apply("not_equal", [x, convert(0, x)])
    ones = apply("cast", [nonzero], {"dtype": D.as_dtype(dtype)})
    return apply("identity", [_sum(ones, axes, kd)], name=name or "count_nonzero")


def reduce_variance(input_tensor, axis=None, keepdims=False, name=None):
    """The population variance ``mean((x - mean(x))**2)`` along ``axis`` (None: all).

    Example:
        >>> gc.reduce_variance([[1.0, 2.0], [3.0, 4.0]], axis=0)   # [1.0, 1.0]
    """
    fn = "reduce_variance"
    x = convert(input_tensor)
    _need_float(fn, x)
    axes, kd = _reduce_args(fn, x, axis, keepdims, None, None)
    mean = apply("reduce_mean", [x], {"axis": axes, "keepdims": True})
    centered = apply("subtract", [x, mean])
    var = apply("reduce_mean", [apply("multiply", [centered, centered])],
                {"axis": axes, "keepdims": kd})
    return apply("identity", [var], name=name or "reduce_variance")


def reduce_std(input_tensor, axis=None, keepdims=False, name=None):
    """The population standard deviation ``sqrt(reduce_variance(x))`` along ``axis``.

    Example:
        >>> gc.math.reduce_std([[1.0, 2.0], [3.0, 4.0]])   # 1.118...
    """
    return apply("sqrt", [reduce_variance(input_tensor, axis, keepdims)],
                 name=name or "reduce_std")


# -- elementwise helpers ---------------------------------------------------------------------
def div_no_nan(x, y, name=None):
    """``x / y``, and 0 where ``y`` is 0 (also for ``x`` = 0 or inf); floats only.

    The division uses 1 in place of a zero ``y``, so neither the value nor the gradient
    there is inf or NaN (a ``where`` over the plain quotient would leak ``0 * inf``).

    Example:
        >>> gc.div_no_nan([1.0, 2.0], [0.0, 4.0])   # [0.0, 0.5]
    """
    like = x if isinstance(x, Node) else y if isinstance(y, Node) else None
    x, y = convert(x, like), convert(y, like)
    _need_float("div_no_nan", x)
    zero = apply("equal", [y, convert(0, y)])
    safe = apply("where", [zero, apply("ones_like", [y]), y])
    quotient = apply("divide", [x, safe])
    return apply("where", [zero, apply("zeros_like", [quotient]), quotient],
                 name=name or "div_no_nan")


def is_nan(x, name=None):
    """True where ``x`` is NaN (the one value not equal to itself)."""
    x = convert(x)
    return apply("not_equal", [x, x], name=name or "is_nan")


def is_inf(x, name=None):
    """True where ``x`` is +inf or -inf: neither finite nor NaN."""
    x = convert(x)
    return apply("logical_and", [apply("logical_not", [apply("is_finite", [x])]),
                                 apply("equal", [x, x])], name=name or "is_inf")


def _cast_to(dtype, tf_name):
    def f(x, name=tf_name):
        x = convert(x)
        return x if x.dtype == dtype else apply("cast", [x], {"dtype": dtype}, name=name)
    f.__name__ = f"to_{dtype.name}" if dtype != D.float64 else "to_double"
    f.__doc__ = f"TF1's ``{f.__name__}``: ``x`` cast to {dtype.name}."
    return f


to_int32 = _cast_to(D.int32, "ToInt32")
to_int64 = _cast_to(D.int64, "ToInt64")
to_double = _cast_to(D.float64, "ToDouble")


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
