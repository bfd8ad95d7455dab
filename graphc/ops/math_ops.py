"""The TF1 op functions (``gc.add``, ``gc.reduce_sum``, ``gc.reshape``...): argument handling
only — TF1 names and aliases, Python values to constants. Semantics live in ``ir.ops``.

Shapes, sizes and bounds (``zeros``, ``fill``, ``reshape``, ``range``, ``one_hot``'s depth,
the random ops' shapes...) may be tensors known when the step is specialized, such as
``[gc.shape(x)[0], 3]``: the op resolves them then (``ir.static``)."""
import builtins

import numpy as np

from ..errors import DTypeError, GraphError, ShapeError
from ..ir import dtypes as D
from ..ir.ops import apply, const_node, convert
from ..ir.ops.operators import true_divide
from ..ir.ops.registry import default_array
from ..ir.graph import Node, get_default_graph
from ..ir.static import static_value
from ..ir.shapes import normalize_shape
from .array_ops import (_need_float, along_pending, dims_of, entries, fail, is_tensor_arg,
                        specialization_value)


def _un(op):
    def f(x, name=None):
        return apply(op, [x], name=name)
    f.__name__ = op
    f.__doc__ = f"Elementwise ``{op}`` (see ir.ops.elementwise for its VJP convention)."
    return f


def _bin(op, tf_name=None):
    """tf.<op>; ``tf_name``: TF1's default node name where it differs from the operator's
    (``tf.add`` makes ``Add``, ``x + y`` makes ``add``)."""
    def f(x, y, name=None):
        return apply(op, [x, y], name=name or tf_name)
    f.__name__ = op
    f.__doc__ = f"Elementwise ``{op}`` with NumPy broadcasting."
    return f


add, subtract, multiply = _bin("add", "Add"), _bin("subtract", "Sub"), _bin("multiply", "Mul")
maximum, minimum = _bin("maximum"), _bin("minimum")
pow = _bin("pow")  # noqa: A001  (TF1 name)
realdiv = _bin("divide")  # TF's RealDiv: floats only
floordiv, floormod = _bin("floordiv"), _bin("floormod")
mod = floormod


def divide(x, y, name=None):
    """``x / y`` (TF1's ``truediv``): integer operands are cast to float first, int8, int16
    and uint8 to float32, int32 and int64 to float64.

    Example:
        >>> gc.divide(gc.constant([7, -7]), 2)   # [3.5, -3.5], float64
    """
    return true_divide(x, y, name=name)


truediv = divide


def div(x, y, name=None):
    """TF1's ``div`` (Python 2 semantics): floor division for integers, ``/`` for floats."""
    like = x if isinstance(x, Node) else y if isinstance(y, Node) else None
    x, y = convert(x, like), convert(y, like)
    if not x.dtype.is_floating:
        return floordiv(x, y, name=name)
    return divide(x, y, name=name)
negative, square, sqrt, exp, log, log1p, sign, tanh, sigmoid, floor, sin, cos = (
    _un(o) for o in ("negative", "square", "sqrt", "exp", "log", "log1p", "sign", "tanh",
                     "sigmoid", "floor", "sin", "cos"))
abs = _un("abs")  # noqa: A001
neg = negative
equal, not_equal, less, less_equal, greater, greater_equal = (
    _bin(o) for o in ("equal", "not_equal", "less", "less_equal", "greater", "greater_equal"))
logical_and, logical_or = _bin("logical_and"), _bin("logical_or")
logical_not = _un("logical_not")
is_finite = _un("is_finite")
identity = _un("identity")
stop_gradient = _un("stop_gradient")


def rsqrt(x, name=None):
    return apply("divide", [1.0, sqrt(x)], name=name)


def reciprocal(x, name=None):
    return apply("divide", [1.0, x], name=name)


def where(condition, x=None, y=None, name=None):
    """Select ``x`` where ``condition`` else ``y`` (broadcasting, TF2-style ``where``).

    Raises:
        GraphError: the one-argument form (the indices of the true entries), whose output
            shape depends on data.
    """
    if x is None or y is None:
        data_dependent_shape("where", "where(condition) with one argument",
                             "keep the shape and select with gc.where(condition, x, "
                             "gc.zeros_like(x)), or count with gc.reduce_sum(gc.cast("
                             "condition, gc.int32))")
    like = x if isinstance(x, Node) else y
    return apply("where", [condition, convert(x, like if isinstance(like, Node) else None),
                           convert(y, like if isinstance(like, Node) else None)], name=name)


def cast(x, dtype, name=None):
    x = convert(x)
    dtype = D.as_dtype(dtype)
    if x.dtype == dtype:
        return x
    return apply("cast", [x], {"dtype": dtype}, name=name)


to_float = lambda x, name=None: cast(x, D.float32, name)  # noqa: E731


def zeros_like(x, dtype=None, name=None):
    z = apply("zeros_like", [x], name=name)
    return z if dtype is None else cast(z, dtype)


def ones_like(x, dtype=None, name=None):
    o = apply("ones_like", [x], name=name)
    return o if dtype is None else cast(o, dtype)


def data_dependent_shape(fn, what, idiom):
    """Refuse an op whose output shape depends on data (TF1's boolean_mask, unique...).

    Raises:
        GraphError: naming ``fn`` and the idiom to use instead.
    """
    fail(fn, f"{what} has an output shape that depends on the data, which graphc does not "
             "compile (every shape is known when the step is specialized)", hint=idiom)


def _full_shape(fn, shape):
    """A static shape argument as a tuple of ints; None dims are refused (as TF1 does)."""
    dims = normalize_shape(shape)
    if dims is None or None in dims:
        fail(fn, f"shape {shape!r} has unknown dims", hint="pass gc.shape(x) (or "
                 "[gc.shape(x)[0], 3]) for sizes known when the step is fed", cls=ShapeError)
    return dims


def fill(dims, value, name=None):
    """``dims``-shaped tensor of ``value`` (a number, as TF types it, or a scalar tensor).

    ``dims`` may be known only when the step is specialized (``gc.shape(x)``)."""
    return _filled("fill", dims, value, name or "Fill")


def _filled(fn, dims, value, name):
    if is_tensor_arg(dims):
        dims, known = specialization_value(fn, "shape" if fn != "fill" else "dims", dims)
        dims = dims if known is None else known.reshape(-1).tolist()
    if isinstance(value, Node) or is_tensor_arg(dims):
        value = value if isinstance(value, Node) else const_node(default_array(value))
        return apply("broadcast_to", [value], {"shape": dims if is_tensor_arg(dims) else
                                               _full_shape(fn, dims)}, name=name)
    v = default_array(value)
    return const_node(np.full(_full_shape(fn, dims), v, v.dtype), name=name)


def zeros(shape, dtype=D.float32, name=None):
    """Zeros of ``shape`` (a list of ints, or a tensor such as ``gc.shape(x)``)."""
    return _filled("zeros", shape, np.zeros((), D.as_dtype(dtype).np), name or "zeros")


def ones(shape, dtype=D.float32, name=None):
    """Ones of ``shape`` (a list of ints, or a tensor such as ``gc.shape(x)``)."""
    return _filled("ones", shape, np.ones((), D.as_dtype(dtype).np), name or "ones")


def range(start, limit=None, delta=1, dtype=None, name="range"):  # noqa: A001
    """TF1's ``range``: int32 for ints, float32 for floats; bounds may be tensors known when
    the step is specialized (``gc.range(0, gc.shape(x)[0])``).

    Example:
        >>> gc.range(0, gc.shape(x)[0]) * 10     # x: f32[?,3]; [0, 10, 20] for 3 rows
    """
    if limit is None:
        start, limit = 0, start
    args = [start, limit, delta]
    if any(isinstance(v, Node) for v in args):
        known = [specialization_value("range", a, v)[1] if isinstance(v, Node) else v
                 for a, v in zip(("start", "limit", "delta"), args)]
        if any(k is None for k in known):
            return _range_pending(args, dtype, name)
        start, limit, delta = (np.asarray(k).reshape(()).item() for k in known)
    arr = np.arange(start, limit, delta)
    if dtype is not None:
        arr = arr.astype(D.as_dtype(dtype).np)
    elif arr.dtype.kind == "i":
        arr = arr.astype(np.int32)
    else:
        arr = arr.astype(np.float32)
    return const_node(arr, name=name)


def _range_pending(args, dtype, name):
    nodes = [v for v in args if isinstance(v, Node)]
    if dtype is None:
        floats = [v.dtype for v in nodes if v.dtype.is_floating]
        numbers = [v for v in args if not isinstance(v, Node)]
        dtype = floats[0] if floats else D.float32 if any(
            isinstance(v, float) for v in numbers) else nodes[0].dtype
    return apply("range", [], dict(zip(("start", "limit", "delta"), args),
                                   dtype=D.as_dtype(dtype)), name=name)


def matmul(a, b, transpose_a=False, transpose_b=False, name=None, **unused):
    """``op(a) @ op(b)``; 2-D or batched (leading dims broadcast)."""
    return apply("matmul", [a, b], {"transpose_a": bool(transpose_a),
                                    "transpose_b": bool(transpose_b)}, name=name)


def argmax(input, axis=None, name=None, dimension=None, output_type=D.int64):  # noqa: A002
    axis = 0 if axis is None and dimension is None else (axis if axis is not None else dimension)
    return apply("argmax", [input], {"axis": int(axis), "output_type": D.as_dtype(output_type)},
                 name=name)


def argmin(input, axis=None, name=None, dimension=None, output_type=D.int64):  # noqa: A002
    axis = 0 if axis is None and dimension is None else (axis if axis is not None else dimension)
    return apply("argmin", [input], {"axis": int(axis), "output_type": D.as_dtype(output_type)},
                 name=name)


def reshape(tensor, shape, name=None):
    """``tensor``'s values in ``shape`` (ints, one -1 inferred; or a tensor known when the
    step is specialized, such as ``[gc.shape(x)[0], -1]``)."""
    if is_tensor_arg(shape):
        return apply("reshape", [tensor], {"shape": shape}, name=name)
    return apply("reshape", [tensor], {"shape": tuple(-1 if d is None else int(d)
                                                      for d in shape)}, name=name)


def transpose(a, perm=None, name="transpose"):
    return apply("transpose", [a], {"perm": None if perm is None else tuple(perm)}, name=name)


def expand_dims(input, axis=None, name=None, dim=None):  # noqa: A002
    return apply("expand_dims", [input], {"axis": int(axis if axis is not None else dim)},
                 name=name)


def squeeze(input, axis=None, name=None, squeeze_dims=None):  # noqa: A002
    axis = axis if axis is not None else squeeze_dims
    if isinstance(axis, int):
        axis = (axis,)
    return apply("squeeze", [input], {"axis": None if axis is None else tuple(axis)}, name=name)


def broadcast_to(input, shape, name=None):  # noqa: A002
    """``input`` broadcast to ``shape`` (ints, or a tensor such as ``gc.shape(x)``)."""
    shape = shape if is_tensor_arg(shape) else _full_shape("broadcast_to", shape)
    return apply("broadcast_to", [input], {"shape": shape}, name=name)


def concat(values, axis, name="concat"):
    values = list(values)
    like = next((v for v in values if isinstance(v, Node)), None)
    return apply("concat", [convert(v, like) for v in values], {"axis": int(axis)}, name=name)


def stack(values, axis=0, name="stack"):
    values = list(values)
    like = next((v for v in values if isinstance(v, Node)), None)
    return apply("stack", [convert(v, like) for v in values], {"axis": int(axis)}, name=name)


def unstack(value, num=None, axis=0, name="unstack"):
    """Split along ``axis`` into a list of tensors (the axis size must be static)."""
    a = axis % value.rank
    n = value.shape[a] if num is None else num
    if n is None:
        raise GraphError(f"unstack: axis {axis} of '{value.node_name}' has unknown size",
                         hint="pass num=")
    return [apply("strided_slice", [value],
                  {"spec": tuple(("i", i) if d == a else ("s", None, None, None)
                                 for d in builtins.range(a + 1))}, name=name)
            for i in builtins.range(n)]


def slice(input_, begin, size, name=None):  # noqa: A001
    """TF1's slice: ``size`` -1 means "to the end"; the box must lie inside the tensor.
    ``begin`` and ``size`` may be tensors known when the step is specialized."""
    input_ = convert(input_)
    if is_tensor_arg(begin) or is_tensor_arg(size):
        b_node, b = specialization_value("slice", "begin", begin)
        s_node, s = specialization_value("slice", "size", size)
        if b is None or s is None:
            return _slice_pending(input_, b_node, s_node, name)
        begin, size = b.tolist(), s.tolist()
    for axis, (b, s, d) in enumerate(zip(begin, size, input_.shape or (None,) * len(begin))):
        if d is not None and not (0 <= int(b) <= d and (int(s) == -1 or int(b) + int(s) <= d)):
            from ..ir.source import user_location
            raise ShapeError(f"slice: begin {list(begin)} and size {list(size)} do not fit "
                             f"in {input_.type_str()}", [f"axis {axis}: {b} + {s} > {d}"],
                             loc=user_location(), hint="size -1 means to the end")
    spec = tuple(("s", int(b), None if int(s) == -1 else int(b) + int(s), None)
                 for b, s in zip(begin, size))
    return apply("strided_slice", [input_], {"spec": spec}, name=name)


def _slice_pending(x, begin, size, name):
    """slice with a begin or size known when the step is specialized: on each axis, a gather
    of ``range(begin, begin + size)`` (``size`` -1: to the end)."""
    for arg, v in (("begin", begin), ("size", size)):
        if v.shape != (x.rank,):
            fail("slice", f"{arg} must have shape [{x.rank}] for {x.type_str()}, found "
                          f"{v.type_str()}", cls=ShapeError)
    y = x
    with get_default_graph().name_scope(name or "Slice"):
        for axis, (b, s, d) in enumerate(zip(entries(begin, x.rank), entries(size, x.rank),
                                             dims_of(x))):
            stop = apply("where", [apply("less", [s, convert(0, s)]), convert(d, b),
                                   apply("add", [b, s])])
            y = along_pending(y, axis, b, stop)
        return y


def gather(params, indices, axis=0, name=None, validate_indices=None):
    return apply("gather", [params, convert(indices)], {"axis": int(axis)}, name=name)


def one_hot(indices, depth, on_value=None, off_value=None, axis=None, dtype=None, name=None):
    dtype = D.as_dtype(dtype) if dtype is not None else D.float32
    return apply("one_hot", [convert(indices)], {
        "depth": depth if isinstance(depth, Node) else int(depth),
        "on_value": 1.0 if on_value is None else float(on_value),
        "off_value": 0.0 if off_value is None else float(off_value),
        "axis": -1 if axis is None else int(axis), "dtype": dtype}, name=name)


def shape(input, name=None, out_type=D.int32):  # noqa: A002
    """The shape as an int tensor; its value is known once the step is specialized."""
    return apply("shape_of", [input], {"out_type": D.as_dtype(out_type)}, name=name)


def rank(input, name=None):  # noqa: A002
    """The number of dims (an int32 scalar; known when the step is specialized for a
    tensor of unknown rank)."""
    x = convert(input)
    if x.shape is None:
        dims = apply("shape_of", [apply("shape_of", [x])])
        return apply("strided_slice", [dims], {"spec": (("i", 0),)}, name=name or "Rank")
    return const_node(np.int32(x.rank), name=name or "Rank")


def size(input, name=None, out_type=D.int32):  # noqa: A002
    """The number of elements (TF1's ``tf.size``): a constant when the shape is static, else
    the product of ``shape(input)``, known once the step is specialized."""
    x = convert(input)
    out_type = D.as_dtype(out_type)
    if x.shape is None:  # the length of x flattened
        flat = apply("shape_of", [apply("reshape", [x], {"shape": (-1,)})],
                     {"out_type": out_type})
        return apply("strided_slice", [flat], {"spec": (("i", 0),)}, name=name or "Size")
    if None not in x.shape:
        return const_node(np.array(int(np.prod(x.shape)), out_type.np), name=name or "Size")
    from .reduction_ops import reduce_prod
    return reduce_prod(shape(x, out_type=out_type), name=name or "Size")


def linspace(start, stop, num, name=None, axis=0):
    """``num`` evenly spaced values from ``start`` to ``stop`` inclusive (TF1's ``lin_space``);
    the arguments must be known when the graph is built (numbers or constants).

    Example:
        >>> gc.linspace(0.0, 1.0, 5)   # [0., 0.25, 0.5, 0.75, 1.]
    """
    from ..ir.static import static_value
    known = [static_value(v) if isinstance(v, Node) else np.asarray(v)
             for v in (start, stop, num)]
    for arg, value, given in zip(("start", "stop", "num"), known, (start, stop, num)):
        if value is None:
            raise GraphError(f"linspace: {arg} must be known when the graph is built, found "
                             f"tensor '{given.node_name}'", hint="pass a Python number")
    floating = isinstance(start, Node) and start.dtype.is_floating
    dtype = start.dtype.np if floating else np.float32   # as TF: start's dtype, else float32
    values = np.linspace(known[0], known[1], int(known[2]), dtype=dtype, axis=axis)
    return const_node(values, name=name or "LinSpace")


lin_space = linspace


def convert_to_tensor(value, dtype=None, name=None, preferred_dtype=None, dtype_hint=None):
    """``value`` as a tensor (TF1's ``convert_to_tensor``): tensors unchanged, Python values
    and arrays as constants (``dtype`` or the preferred one when given).

    Raises:
        DTypeError: a tensor whose dtype is not ``dtype`` (TF1 raises too; use gc.cast).
    """
    if isinstance(value, Node):
        if dtype is not None and value.dtype != D.as_dtype(dtype):
            raise DTypeError(f"convert_to_tensor: {value.describe()} is {value.dtype.name}, "
                             f"asked for {D.as_dtype(dtype).name}", loc=value.loc,
                             hint="use gc.cast to change a tensor's dtype")
        return value
    want = dtype if dtype is not None else (preferred_dtype or dtype_hint)
    return const_node(default_array(value, want), name=name or "Const")


def add_n(inputs, name=None):
    total = inputs[0]
    for x in inputs[1:]:
        total = total + x
    return total


def squared_difference(x, y, name=None):
    """TF1's ``(x - y) ** 2`` elementwise, with broadcasting."""
    d = x - y
    return multiply(d, d, name=name)


def _random(op, shape, dtype, seed, name, scale, offset, **params):
    """A random op of ``shape`` (ints, or a tensor known when the step is specialized).

    ``scale`` and ``offset`` (stddev and mean, or maxval - minval and minval) are attributes
    when known when the graph is built; a tensor known only later, or when the step runs
    (TF1 allows any tensor), multiplies and adds to standard draws instead.
    """
    g = get_default_graph()
    op_seed = seed if seed is not None else (None if g.seed is None else
                                             hash((g.seed, len(g.nodes))) & 0x7FFFFFFF)
    dtype = D.as_dtype(dtype)
    (scale_name, scale), (offset_name, offset) = scale, offset
    known = {k: _number_now(v) for k, v in ((scale_name, scale), (offset_name, offset))}
    later = [k for k, v in known.items() if v is None]
    if not later:
        params.update(known)
    shape = shape if is_tensor_arg(shape) else _full_shape(op, shape)
    draws = apply(op, [], {"shape": shape, "dtype": dtype, "seed": op_seed, **params},
                  name=None if later else name)
    if not later:
        return draws
    if op == "random_uniform":
        scale = subtract(scale, offset)
    scaled = multiply(draws, cast(convert(scale, draws), dtype))
    return add(scaled, cast(convert(offset, draws), dtype), name=name)


def _number_now(value):
    """A Python float for a number or a tensor whose value is known now, else None."""
    if not isinstance(value, Node):
        return float(value)
    known = static_value(value)
    return None if known is None or known.size != 1 else float(known.reshape(()))


def random_normal(shape, mean=0.0, stddev=1.0, dtype=D.float32, seed=None, name=None):
    """Fresh normal samples every run (impure; seedable; never merged by CSE). ``shape``,
    ``mean`` and ``stddev`` may be tensors (``gc.shape(x)``; any scalar for the others)."""
    return _random("random_normal", shape, dtype, seed, name, ("stddev", stddev),
                   ("mean", mean))


def truncated_normal(shape, mean=0.0, stddev=1.0, dtype=D.float32, seed=None, name=None):
    """Normal samples within two standard deviations (redrawn beyond), as ``random_normal``
    takes its arguments."""
    return _random("truncated_normal", shape, dtype, seed, name, ("stddev", stddev),
                   ("mean", mean))


def random_uniform(shape, minval=0.0, maxval=1.0, dtype=D.float32, seed=None, name=None):
    """Uniform samples in [minval, maxval); ``shape`` and the bounds may be tensors."""
    maxval = 1.0 if maxval is None else maxval
    return _random("random_uniform", shape, dtype, seed, name, ("maxval", maxval),
                   ("minval", minval))


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


# -- rounding: compositions of floor, so every backend has them and the gradient is zero -----
def ceil(x, name=None):
    """Smallest integer-valued float >= ``x``: ``-floor(-x)``; zero gradient (TF1: none)."""
    x = convert(x)
    if not x.dtype.is_floating:
        return identity(x, name=name)
    return negative(floor(negative(x)), name=name or "Ceil")


def round(x, name=None):  # noqa: A001  (TF1's name)
    """Nearest integer-valued float, halves to even as TF (``round(2.5) = 2``,
    ``round(-1.5) = -2``); integers unchanged; zero gradient (TF1 declares Round
    non-differentiable: ``gc.gradients`` gives None through it).

    Example:
        >>> gc.round([0.5, 1.5, 2.5, -1.5])   # [0., 2., 2., -2.]
    """
    x = convert(x)
    if not x.dtype.is_floating:
        return identity(x, name=name)
    low = floor(x)
    frac = subtract(x, low)
    high = add(low, convert(1, low))
    low_is_even = equal(multiply(floor(multiply(low, convert(0.5, low))), convert(2, low)), low)
    half = where(low_is_even, low, high)
    return where(greater(frac, convert(0.5, low)), high,
                 where(less(frac, convert(0.5, low)), low, half), name=name or "Round")


rint = round  # TF's Rint also rounds halves to even


def arg_max(input, dimension=None, output_type=D.int64, name=None):  # noqa: A002
    """TF1's ``arg_max`` (the older spelling of ``argmax``; ``dimension`` is the axis)."""
    return argmax(input, axis=dimension, name=name, output_type=output_type)


def arg_min(input, dimension=None, output_type=D.int64, name=None):  # noqa: A002
    """TF1's ``arg_min`` (the older spelling of ``argmin``; ``dimension`` is the axis)."""
    return argmin(input, axis=dimension, name=name, output_type=output_type)
