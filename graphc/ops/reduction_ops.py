"""TF1's reductions beyond sum/mean/max/min: ``reduce_any``, ``reduce_all``,
``reduce_logsumexp``, ``reduce_prod``.

They are compositions of existing ops (casts, sums, slices, multiplies), so both backends run
them and autodiff differentiates them; the arguments are TF1's (``axis`` or the older
``reduction_indices``, ``keepdims`` or ``keep_dims``).
"""
from ..errors import DTypeError, ShapeError
from ..ir import dtypes as D
from ..ir.graph import Node, get_default_graph
from ..ir.ops import apply, convert
from ..ir.shapes import RuleError, normalize_axes
from .array_ops import _need_float, _sum, along, fail

__all__ = ["reduce_all", "reduce_any", "reduce_logsumexp", "reduce_prod"]



# -- sum, mean, max, min: one op each, with TF1's argument aliases ---------------------------
def _axis(axis, reduction_indices, axis_name="axis"):
    if axis is None:
        axis = reduction_indices
    if isinstance(axis, (list, tuple)):
        return tuple(int(a) for a in axis)
    return None if axis is None else int(axis)


def _reduction(op):
    def f(input_tensor, axis=None, keepdims=None, name=None, reduction_indices=None,
          keep_dims=None):
        kd = bool(keepdims if keepdims is not None else keep_dims)
        return apply(op, [input_tensor], {"axis": _axis(axis, reduction_indices),
                                          "keepdims": kd}, name=name)
    f.__name__ = op
    f.__doc__ = f"``{op}`` over ``axis`` (None: all); ``reduction_indices``/``keep_dims`` " \
                "are TF1 aliases."
    return f


reduce_sum, reduce_mean, reduce_max, reduce_min = (
    _reduction(o) for o in ("reduce_sum", "reduce_mean", "reduce_max", "reduce_min"))


def _reduce_args(fn, x, axis, keepdims, reduction_indices, keep_dims):
    """(normalized axes tuple, keepdims bool) from TF1's aliases."""
    axis = reduction_indices if axis is None else axis
    if isinstance(axis, Node):
        fail(fn, f"axis must be static, found tensor '{axis.node_name}'",
             hint="pass a Python int or list of ints")
    if isinstance(axis, (list, tuple)):
        axis = tuple(int(a) for a in axis)
    elif axis is not None:
        axis = int(axis)
    try:
        axes = normalize_axes(axis, x.rank)
    except RuleError as e:
        fail(fn, f"axis {axis} does not fit {x.type_str()}: {e.message}", cls=ShapeError)
    kd = keepdims if keepdims is not None else keep_dims
    return tuple(axes), bool(kd)


def _count(x, axes, keepdims):
    """How many entries of the bool tensor ``x`` are true along ``axes`` (int32)."""
    ones = apply("cast", [x], {"dtype": D.int32})
    return apply("reduce_sum", [ones], {"axis": axes, "keepdims": keepdims})


def _need_bool(fn, x):
    if x.dtype != D.bool_:
        fail(fn, f"input_tensor must be bool, found {x.type_str()}",
             hint="compare first (x > 0) or cast with gc.cast(x, gc.bool)", cls=DTypeError)


_LOGICAL_DOC = """Logical {what} over ``axis`` (None: all axes); an empty reduction is {empty}.

    Counts the true entries (an int32 sum), so it runs wherever reduce_sum does.

    Args:
        input_tensor: a bool tensor.
        axis: an int, a list of ints, or None; ``reduction_indices`` is TF1's alias.
        keepdims: keep reduced axes with size 1; ``keep_dims`` is TF1's alias.
        name: a name scope.
    Returns:
        A bool tensor.
    Raises:
        DTypeError: the input is not bool.
    Example:
        >>> gc.{fn}(x > 0.0, axis=1)
    """


def _logical(fn, scope, what, empty, decide):
    """A TF1 bool reduction: ``decide(x, axes, keepdims)`` after checking the arguments."""
    def reduction(input_tensor, axis=None, keepdims=None, name=None, reduction_indices=None,
                  keep_dims=None):
        x = convert(input_tensor)
        _need_bool(fn, x)
        axes, kd = _reduce_args(fn, x, axis, keepdims, reduction_indices, keep_dims)
        with get_default_graph().name_scope(name or scope):
            return decide(x, axes, kd)
    reduction.__name__ = reduction.__qualname__ = fn
    reduction.__doc__ = _LOGICAL_DOC.format(what=what, empty=empty, fn=fn)
    return reduction


reduce_any = _logical("reduce_any", "Any", "or", "False",
                      lambda x, axes, kd: apply("greater", [_count(x, axes, kd), 0]))
reduce_all = _logical("reduce_all", "All", "and", "True",
                      lambda x, axes, kd: apply("equal", [_count(apply("logical_not", [x]),
                                                                 axes, kd), 0]))


def _drop(y, axes, keepdims):
    """``y`` (reduced with keepdims) without the reduced axes unless ``keepdims``."""
    if keepdims or not axes:
        return y
    return apply("squeeze", [y], {"axis": axes})


def reduce_logsumexp(input_tensor, axis=None, keepdims=None, name=None,
                     reduction_indices=None, keep_dims=None):
    """``log(sum(exp(x)))`` over ``axis``, computed stably as TF1 does.

    The maximum is subtracted first and added back; it is a ``stop_gradient`` (the result
    does not depend on it), so the gradient is exactly ``softmax(x)``. An infinite maximum is
    replaced by 0, so an all ``-inf`` slice gives ``-inf`` rather than NaN.

    Args:
        input_tensor: a float tensor.
        axis: an int, a list of ints, or None; ``reduction_indices`` is TF1's alias.
        keepdims: keep reduced axes with size 1; ``keep_dims`` is TF1's alias.
        name: a name scope.
    Returns:
        A float tensor of the input's dtype.
    Raises:
        DTypeError: the input is not floating.
    Example:
        >>> gc.reduce_logsumexp(logits, axis=-1)
    """
    x = convert(input_tensor)
    if not x.dtype.is_floating:
        fail("reduce_logsumexp", f"input_tensor must be floating, found {x.type_str()}",
             cls=DTypeError)
    axes, kd = _reduce_args("reduce_logsumexp", x, axis, keepdims, reduction_indices,
                            keep_dims)
    with get_default_graph().name_scope(name or "ReduceLogSumExp"):
        m = apply("reduce_max", [x], {"axis": axes, "keepdims": True})
        m = apply("stop_gradient", [apply("where", [apply("is_finite", [m]), m,
                                                    apply("zeros_like", [m])])])
        e = apply("exp", [apply("subtract", [x, m])])
        s = apply("reduce_sum", [e], {"axis": axes, "keepdims": True})
        return _drop(apply("add", [apply("log", [s]), m]), axes, kd)


def _prod_along(x, axis):
    """The product over ``axis`` kept as size 1: pairwise halving, O(log n) nodes."""
    n = x.shape[axis]
    if n is None:
        fail("reduce_prod", f"axis {axis} of {x.type_str()} has an unknown size",
             hint="reduce_prod needs static sizes on the reduced axes", cls=ShapeError)
    if n == 0:
        return apply("ones_like", [apply("reduce_sum", [x], {"axis": (axis,),
                                                            "keepdims": True})])
    while n > 1:
        h = n // 2
        y = apply("multiply", [along(x, axis, 0, h), along(x, axis, h, 2 * h)])
        if n % 2:
            y = apply("concat", [y, along(x, axis, 2 * h, n)], {"axis": axis})
        x, n = y, n - h
    return x


def reduce_prod(input_tensor, axis=None, keepdims=None, name=None, reduction_indices=None,
                keep_dims=None):
    """Product over ``axis`` (None: all axes); an empty product is 1.

    Built from multiplies of halves, so it is exact where a product is (integers, zeros)
    and its gradient needs no division: a zero factor gives the right gradient.

    Args:
        input_tensor: a float or integer tensor with static sizes on the reduced axes.
        axis: an int, a list of ints, or None; ``reduction_indices`` is TF1's alias.
        keepdims: keep reduced axes with size 1; ``keep_dims`` is TF1's alias.
        name: a name scope.
    Returns:
        A tensor of the input's dtype.
    Raises:
        ShapeError: a reduced axis has an unknown size.
        DTypeError: the input is bool.
    Example:
        >>> gc.reduce_prod([[1., 2.], [3., 4.]], axis=1)   # [2., 12.]
    """
    x = convert(input_tensor)
    if x.dtype.kind not in "fi":
        fail("reduce_prod", f"input_tensor must be a float or integer tensor, found "
             f"{x.type_str()}", cls=DTypeError)
    axes, kd = _reduce_args("reduce_prod", x, axis, keepdims, reduction_indices, keep_dims)
    with get_default_graph().name_scope(name or "Prod"):
        y = x
        for a in axes:
            y = _prod_along(y, a)
        return _drop(y, axes, kd) if axes else apply("identity", [y])


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
