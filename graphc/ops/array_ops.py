"""TF1's array ops built from primitive ops: ``gc.tile``, ``gc.pad``, ``gc.split``,
``gc.cumsum``.

Each is a composition of slices, concats, broadcasts and adds, so both backends run it with
their existing kernels and autodiff differentiates it (to any order) with no new VJP.
``tile``'s multiples, ``split``'s sizes and ``slice``'s begin and size may be tensors known
when the step is specialized (``gc.shape(x)`` arithmetic, see ``ir.static``); the others
(paddings, axes) are Python values, and a tensor there is reported with the argument's name
and the user's line.
"""
import builtins

import numpy as np

from ..errors import DTypeError, GraphError, ShapeError
from ..ir import dtypes as D
from ..ir.graph import Node, get_default_graph
from ..ir.ops import apply, const_node, convert
from ..ir.source import user_location
from ..ir.shapes import RuleError
from ..ir.static import require_specialization_time, static_value

__all__ = ["tile", "pad", "split", "cumsum"]

_WHOLE = ("s", None, None, None)


def fail(fn, message, details=(), hint=None, cls=GraphError):
    """Raise ``cls`` for the public function ``fn``, at the user's line."""
    raise cls(f"{fn}: {message}", details, loc=user_location(), hint=hint)


def static_int(fn, arg, value):
    """``value`` as a Python int; a tensor or a non-integer raises naming ``arg``."""
    if isinstance(value, Node):
        fail(fn, f"{arg} must be a Python int, found tensor '{value.node_name}'",
             hint="graphc shapes are static: pass the value itself")
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        fail(fn, f"{arg} must be an int, found {value!r}")
    return int(value)


def static_ints(fn, arg, value, shape=None):
    """``value`` (a list, tuple or array of ints) as an int array of ``shape``."""
    tensor = value if isinstance(value, Node) else next(
        (v for v in np.ravel(np.asarray(value, dtype=object)) if isinstance(v, Node)), None)
    if tensor is not None:
        fail(fn, f"{arg} must be a list of ints, found tensor '{tensor.node_name}'",
             hint="graphc shapes are static: pass a Python list")
    arr = np.asarray(value)
    if arr.dtype.kind not in "iu" and not (arr.size == 0 and arr.dtype.kind == "f"):
        fail(fn, f"{arg} must hold ints, found {value!r}")
    if shape is not None and arr.shape != tuple(shape):
        fail(fn, f"{arg} must have shape {list(shape)}, found {list(arr.shape)}",
             cls=ShapeError)
    return arr.astype(np.int64)


def is_tensor_arg(value):
    """True for a tensor, or a list or tuple holding one (stacked into one tensor)."""
    return isinstance(value, Node) or (isinstance(value, (list, tuple))
                                       and any(isinstance(v, Node) for v in value))


def specialization_value(fn, arg, value):
    """A tensor argument that must be known when the step is specialized.

    Args:
        fn: the public function (for the error). arg: the argument's name.
        value: a tensor, or a list holding tensors and Python numbers (stacked).
    Returns:
        (tensor, its value as an ndarray, or None when known only at specialization).
    Raises:
        GraphError: the value depends on data (a feed's values, a Variable, a random op).
    Example:
        >>> specialization_value("tile", "multiples", [gc.shape(x)[0], 1])
        (<gc.Tensor 'stack' ...>, None)
    """
    node = convert(value)
    known = static_value(node)
    if known is None:
        try:
            require_specialization_time(arg, node)
        except RuleError as e:
            fail(fn, e.message, e.details, e.hint)
    return node, known


def scalar_arg(value):
    """``value`` as TF1 takes a scalar argument (a keep_prob, a learning rate, a ``training``
    flag): a tensor of unknown rank (``gc.placeholder(gc.float32)``) is reshaped to ``[]``,
    so what is computed from it keeps the other operands' shape and a non-scalar feed is a
    ShapeError when the step is specialized; any other value is returned as it is.

    Example:
        >>> keep_prob = scalar_arg(gc.placeholder(gc.float32))   # f32[]
    """
    if isinstance(value, Node) and value.dtype is not None and value.shape is None:
        return apply("reshape", [value], {"shape": ()})
    return value


def entries(vector, n):
    """The ``n`` scalar entries of an int vector tensor, as tensors."""
    return [apply("strided_slice", [vector], {"spec": (("i", i),)}) for i in builtins.range(n)]


def dims_of(x):
    """``x``'s dims: ints where known when the graph is built, else scalar tensors."""
    whole = apply("shape_of", [x])
    return [d if d is not None else apply("strided_slice", [whole], {"spec": (("i", i),)})
            for i, d in enumerate(x.shape)]


def along_pending(x, axis, start, stop):
    """``x[..., start:stop, ...]`` on ``axis`` with bounds known when the step is
    specialized: a gather of ``range(start, stop)`` (the range becomes a constant then)."""
    index = apply("range", [], {"start": start, "limit": stop, "delta": 1, "dtype": D.int32},
                  name="range")
    return apply("gather", [x, index], {"axis": axis})


def axis_of(fn, x, axis):
    """``axis`` of ``x`` normalized to ``0..rank-1``."""
    a = static_int(fn, "axis", axis)
    if not -x.rank <= a < x.rank:
        fail(fn, f"axis {a} is out of range for {x.type_str()}", cls=ShapeError)
    return a % x.rank


def along(x, axis, start, stop, step=None):
    """``x[..., start:stop:step, ...]`` on ``axis`` (a strided slice)."""
    spec = tuple(("s", start, stop, step) if i == axis else _WHOLE
                 for i in builtins.range(axis + 1))
    return apply("strided_slice", [x], {"spec": spec})


# -- tile -------------------------------------------------------------------------------------
def _repeat(x, axis, m):
    """``m`` copies of ``x`` along ``axis`` with O(log m) concats (binary doubling)."""
    result, power = None, x
    while m:
        if m & 1:
            result = power if result is None else apply("concat", [result, power],
                                                         {"axis": axis})
        m >>= 1
        if m:
            power = apply("concat", [power, power], {"axis": axis})
    return result


def tile(input, multiples, name=None):  # noqa: A002  (TF1's argument name)
    """Repeat ``input`` ``multiples[i]`` times along each axis ``i`` (``np.tile``).

    With a static shape it is one broadcast between two reshapes (views); with unknown dims,
    copies are concatenated by doubling.

    Args:
        input: a tensor of rank r.
        multiples: r non-negative Python ints.
        name: a name scope for the nodes built.
    Returns:
        A tensor of shape ``[d * m for d, m in zip(input.shape, multiples)]``.
    Raises:
        GraphError: ``multiples`` is a tensor, has negative entries, or has the wrong length.
    Example:
        >>> gc.tile(gc.constant([[1, 2]]), [2, 3])   # [[1, 2, 1, 2, 1, 2]] twice
    """
    x = convert(input)
    if is_tensor_arg(multiples):
        node, known = specialization_value("tile", "multiples", multiples)
        if known is None:
            return _tile_pending(x, node, name)
        multiples = known
    mult = static_ints("tile", "multiples", multiples, (x.rank,))
    if (mult < 0).any():
        fail("tile", f"multiples must be >= 0, found {mult.tolist()}")
    with get_default_graph().name_scope(name or "Tile"):
        if (mult == 1).all():
            return apply("identity", [x])
        if all(d is not None for d in x.shape):
            spread = [v for d in x.shape for v in (1, d)]
            wide = apply("reshape", [x], {"shape": tuple(spread)})
            spread[0::2] = mult.tolist()
            wide = apply("broadcast_to", [wide], {"shape": tuple(spread)})
            return apply("reshape", [wide], {"shape": tuple(int(d) * int(m) for d, m in
                                                            zip(x.shape, mult))})
        for axis, m in enumerate(mult.tolist()):
            if m == 0:
                x = along(x, axis, 0, 0)
            elif m != 1:
                x = _repeat(x, axis, m)
        return x


def _tile_pending(x, multiples, name):
    """tile with multiples known when the step is specialized: one broadcast between two
    reshapes, their shapes computed from ``gc.shape(x)`` and the multiples."""
    if multiples.shape != (x.rank,):
        fail("tile", f"multiples must have shape [{x.rank}] for {x.type_str()}, found "
                     f"{multiples.type_str()}", cls=ShapeError)
    with get_default_graph().name_scope(name or "Tile"):
        dims, mult = dims_of(x), entries(multiples, x.rank)
        wide = apply("reshape", [x], {"shape": [v for d in dims for v in (1, d)]})
        wide = apply("broadcast_to", [wide], {"shape": [v for d, m in zip(dims, mult)
                                                       for v in (m, d)]})
        return apply("reshape", [wide], {"shape": [apply("multiply", [m, d])
                                                   for d, m in zip(dims, mult)]})


# -- pad --------------------------------------------------------------------------------------
def _fill_like(x, axis, size, value):
    """A slab of ``value`` shaped like ``x`` but ``size`` long on ``axis``.

    With unknown dims the slab is broadcast against a size-1 slice of ``x`` (whose values are
    never read), so it takes ``x``'s dims once the step is specialized.
    """
    seed_shape = tuple(size if i == axis else 1 for i in builtins.range(x.rank))
    seed = apply("broadcast_to", [apply("reshape", [value], {"shape": (1,) * x.rank})],
                 {"shape": seed_shape})
    shape = x.shape[:axis] + (size,) + x.shape[axis + 1:]
    if all(d is not None for d in shape):
        return apply("broadcast_to", [seed], {"shape": shape})
    return apply("broadcast_like", [seed, along(x, axis, 0, 1)])


def _mirror(x, axis, before, after, symmetric):
    """The reflected pieces: SYMMETRIC repeats the edge element, REFLECT does not."""
    skip = 0 if symmetric else 1
    lo = along(x, axis, before - 1 + skip, None if skip == 0 else 0, -1) if before else None
    hi = along(x, axis, -1 - skip, -1 - skip - after, -1) if after else None
    return lo, hi


_MODES = ("CONSTANT", "REFLECT", "SYMMETRIC")


def _pad_check(x, pads, mode):
    """Validate the mirror modes' limits (TF1's: at most size-1 for REFLECT, size for
    SYMMETRIC), which need static sizes on the padded axes."""
    if mode == "CONSTANT":
        return
    room = 0 if mode == "SYMMETRIC" else 1
    for axis, (b, a) in enumerate(pads.tolist()):
        if not (b or a):
            continue
        d = x.shape[axis]
        if d is None:
            fail("pad", f"mode {mode} needs a static size on axis {axis} of {x.type_str()}",
                 hint="give the placeholder a static shape on that axis", cls=ShapeError)
        if max(b, a) > d - room:
            fail("pad", f"paddings {[b, a]} on axis {axis} are too large for mode {mode} "
                 f"and size {d}", [f"expected at most {d - room} per side"], cls=ShapeError)


def pad(tensor, paddings, mode="CONSTANT", name=None, constant_values=0):
    """Pad ``tensor`` with ``paddings[i] = [before, after]`` entries along each axis i.

    CONSTANT fills with ``constant_values``; REFLECT mirrors without repeating the edge
    element (``np.pad``'s "reflect"), SYMMETRIC repeats it (``np.pad``'s "symmetric").

    Args:
        tensor: a tensor of rank r.
        paddings: an [r, 2] list of non-negative Python ints.
        mode: "CONSTANT", "REFLECT" or "SYMMETRIC" (any case).
        name: a name scope for the nodes built.
        constant_values: a number or a scalar tensor of ``tensor``'s dtype (CONSTANT only).
    Returns:
        The padded tensor (differentiable in ``tensor`` and a tensor ``constant_values``).
    Raises:
        GraphError: paddings is a tensor or negative, or the mode is unknown.
        ShapeError: paddings has the wrong shape, or a mirror pad is larger than allowed.
        DTypeError: ``constant_values`` does not fit ``tensor``'s dtype.
    Example:
        >>> gc.pad(images, [[0, 0], [2, 2], [2, 2], [0, 0]])   # 2 zero pixels each side
    """
    x = convert(tensor)
    pads = static_ints("pad", "paddings", paddings, (x.rank, 2))
    if (pads < 0).any():
        fail("pad", f"paddings must be >= 0, found {pads.tolist()}")
    upper = str(mode).upper()
    if upper not in _MODES:
        fail("pad", f"unknown mode {mode!r}", [f"expected one of {', '.join(_MODES)}"])
    _pad_check(x, pads, upper)
    with get_default_graph().name_scope(name or "Pad"):
        value = convert(constant_values, x) if upper == "CONSTANT" else None
        if value is not None and value.rank != 0:
            fail("pad", f"constant_values must be a scalar, found {value.type_str()}",
                 cls=ShapeError)
        for axis, (b, a) in enumerate(pads.tolist()):
            if not (b or a):
                continue
            if value is not None:
                lo = _fill_like(x, axis, b, value) if b else None
                hi = _fill_like(x, axis, a, value) if a else None
            else:
                lo, hi = _mirror(x, axis, b, a, upper == "SYMMETRIC")
            x = apply("concat", [p for p in (lo, x, hi) if p is not None], {"axis": axis})
        return x if pads.any() else apply("identity", [x])


# -- split ------------------------------------------------------------------------------------
def _split_sizes(value, sizes, axis, d):
    """Static piece sizes (the last may be None: "to the end" on an unknown axis)."""
    sizes = static_ints("split", "num_or_size_splits", sizes).reshape(-1).tolist()
    if sum(s == -1 for s in sizes) > 1 or any(s < -1 for s in sizes):
        fail("split", f"num_or_size_splits {sizes}: sizes must be >= 0 with at most one -1")
    if d is None:
        if -1 in sizes[:-1]:
            fail("split", f"the -1 in num_or_size_splits {sizes} needs a static size on axis "
                 f"{axis} of {value.type_str()}", hint="put the -1 last", cls=ShapeError)
        if -1 not in sizes:
            fail("split", f"sizes {sizes} cannot be checked against the unknown size of axis "
                 f"{axis} of {value.type_str()}", hint="make the last size -1", cls=ShapeError)
        return sizes[:-1] + [None]
    rest = d - sum(s for s in sizes if s != -1)
    if -1 in sizes and rest >= 0:
        sizes[sizes.index(-1)] = rest
    if sum(sizes) != d:
        fail("split", f"sizes {sizes} do not add up to the size {d} of axis {axis} of "
             f"{value.type_str()}", cls=ShapeError)
    return sizes


def split(value, num_or_size_splits, axis=0, num=None, name="split"):
    """Split ``value`` along ``axis`` into equal pieces or pieces of given sizes.

    Args:
        value: the tensor to split.
        num_or_size_splits: an int n (the axis size must be static and divisible by n), or a
            list of sizes, one of which may be -1 (the rest).
        axis: a Python int.
        num: unused (TF1 needs it only for tensor sizes, which graphc does not take).
        name: a name scope for the slices.
    Returns:
        A list of tensors (strided slices of ``value``).
    Raises:
        GraphError: a tensor or negative argument.
        ShapeError: the sizes do not add up, or n does not divide the axis size.
    Example:
        >>> a, b = gc.split(x, [3, -1], axis=1)   # x[:, :3], x[:, 3:]
    """
    value = convert(value)
    a = axis_of("split", value, axis)
    d = value.shape[a]
    if is_tensor_arg(num_or_size_splits):
        node, known = specialization_value("split", "num_or_size_splits", num_or_size_splits)
        if known is None:
            return _split_pending(value, node, a, name)
        num_or_size_splits = known if known.ndim else int(known)
    if isinstance(num_or_size_splits, (int, np.integer)) and not isinstance(
            num_or_size_splits, (bool, np.bool_)):
        n = int(num_or_size_splits)
        if d is None and n > 0:
            return _split_unknown_axis(value, n, a, name)
        if n <= 0 or d is None or d % n:
            fail("split", f"cannot split axis {a} of {value.type_str()} into {n} equal pieces",
                 hint="pass a list of sizes" if d is not None and n > 0 else None,
                 cls=ShapeError)
        sizes = [d // n] * n
    else:
        sizes = _split_sizes(value, num_or_size_splits, a, d)
    pieces, off = [], 0
    with get_default_graph().name_scope(name or "split"):
        for s in sizes:
            pieces.append(along(value, a, off, None if s is None else off + s))
            off += s or 0
    return pieces


def _split_unknown_axis(value, n, axis, name):
    """n equal pieces of an axis whose size is known when the step is specialized: a
    reshape to ``[..., n, size // n, ...]`` (which checks that n divides the size then)
    and one index per piece."""
    dims = dims_of(value)
    piece = apply("floordiv", [dims[axis], convert(n, dims[axis])])
    with get_default_graph().name_scope(name or "split"):
        y = apply("reshape", [value], {"shape": dims[:axis] + [n, piece] + dims[axis + 1:]})
        return [apply("strided_slice", [y], {"spec": (_WHOLE,) * axis + (("i", i),)})
                for i in builtins.range(n)]


def _split_pending(value, sizes, axis, name):
    """Pieces of sizes known when the step is specialized (one may be -1: the rest)."""
    if sizes.shape is None or len(sizes.shape) != 1 or sizes.shape[0] is None:
        fail("split", f"num_or_size_splits must be an int or a vector of known length, found "
                      f"{sizes.type_str()}", hint="the number of pieces must be known when the "
                      "graph is built", cls=ShapeError)
    d = dims_of(value)[axis]
    parts = entries(sizes, sizes.shape[0])
    total = apply("reduce_sum", [sizes], {"axis": None, "keepdims": False})
    rest = apply("subtract", [d, apply("add", [total, convert(1, total)])])
    pieces, start = [], convert(0, sizes)
    with get_default_graph().name_scope(name or "split"):
        for s in parts:
            s = apply("where", [apply("less", [s, convert(0, s)]), rest, s])
            stop = apply("add", [start, s])
            pieces.append(along_pending(value, axis, start, stop))
            start = stop
    return pieces


# -- cumsum -----------------------------------------------------------------------------------
def _shift(y, axis, n, s, reverse):
    """``y`` moved ``s`` places along ``axis`` (towards the end, or the start when
    ``reverse``), zeros filling in."""
    if s >= n:
        return apply("zeros_like", [y])
    if reverse:
        return apply("concat", [along(y, axis, s, n),
                                apply("zeros_like", [along(y, axis, n - s, n)])],
                     {"axis": axis})
    return apply("concat", [apply("zeros_like", [along(y, axis, 0, s)]),
                            along(y, axis, 0, n - s)], {"axis": axis})


def cumsum(x, axis=0, exclusive=False, reverse=False, name=None):
    """Cumulative sum along ``axis`` (``np.cumsum``), TF1's exclusive and reverse options.

    A log-step scan: ``ceil(log2 n)`` rounds of ``y += shift(y, 2^k)``, only adds, so an inf
    stays where it is and integer sums are exact.

    Args:
        x: a float or integer tensor whose ``axis`` has a static size.
        axis: a Python int.
        exclusive: each output leaves its own element out (the first is 0).
        reverse: sum from the end of the axis.
        name: a name scope for the nodes built.
    Returns:
        A tensor of ``x``'s shape and dtype.
    Raises:
        GraphError: ``axis`` is a tensor.
        ShapeError: the axis size is unknown.
        DTypeError: ``x`` is bool.
    Example:
        >>> gc.cumsum([1, 2, 3], exclusive=True)   # [0, 1, 3]
    """
    y = convert(x)
    a = axis_of("cumsum", y, axis)
    n = y.shape[a]
    if n is None:
        fail("cumsum", f"axis {a} of {y.type_str()} has an unknown size",
             hint="cumsum needs a static size on its axis", cls=ShapeError)
    if y.dtype.kind not in "fi":
        fail("cumsum", f"expected a float or integer tensor, found {y.dtype.name}",
             cls=DTypeError)
    with get_default_graph().name_scope(name or "Cumsum"):
        if exclusive:
            y = _shift(y, a, n, 1, reverse)
        s = 1
        while s < n:
            y = apply("add", [y, _shift(y, a, n, s, reverse)])
            s *= 2
        return y if (exclusive or n > 1) else apply("identity", [y])


def constant_value(node):
    """The NumPy value of ``node`` when it is a ``const`` node, else None."""
    if isinstance(node, Node) and node.op_name == "const":
        return np.asarray(node.attrs["value"])
    return None

def _static_size(fn, arg, value):
    """``value`` (an int, or a scalar ``const`` tensor) as a Python int."""
    known = constant_value(value)
    if known is not None and known.size == 1 and known.dtype.kind in "iu":
        return int(known.reshape(()))
    if isinstance(value, Node):
        fail(fn, f"{arg} must be static (a Python int or a constant), found the run-time "
                 f"tensor '{value.node_name}'",
             hint="graphc shapes are static: pass the largest length as a Python int")
    return static_int(fn, arg, value)

# -- sequence_mask ----------------------------------------------------------------------------
def sequence_mask(lengths, maxlen=None, dtype=D.bool_, name=None):
    """``mask[..., j] = j < lengths[...]``: the first ``lengths`` entries of each row are set.

    Args:
        lengths: an integer tensor (any shape) or a Python list of ints.
        maxlen: the mask's last dimension: an int or a scalar constant tensor; None takes
            ``max(lengths)``, which needs ``lengths`` to be a constant.
        dtype: the result's dtype (bool by default; else the mask cast to it).
        name: name of the result node.
    Returns:
        A tensor of shape ``lengths.shape + [maxlen]``.
    Raises:
        GraphError: a run-time ``maxlen``, or ``maxlen=None`` with run-time ``lengths``.
        DTypeError: non-integer ``lengths``.
    Example:
        >>> gc.sequence_mask([1, 3], 4)   # [[T, F, F, F], [T, T, T, F]]
    """
    fn = "sequence_mask"
    lengths = convert(lengths)
    if not lengths.dtype.is_integer:
        fail(fn, f"lengths must be integers, found {lengths.type_str()}", cls=DTypeError)
    if maxlen is None:
        known = constant_value(lengths)
        if known is None:
            fail(fn, f"maxlen=None needs constant lengths, found the run-time tensor "
                     f"'{lengths.node_name}'", hint="pass maxlen as a Python int")
        maxlen = int(known.max(initial=0))
    n = _static_size(fn, "maxlen", maxlen)
    positions = const_node(np.arange(n, dtype=lengths.dtype.np))
    mask = apply("less", [positions, apply("expand_dims", [lengths], {"axis": -1})])
    dtype = D.as_dtype(dtype)
    if dtype != D.bool_:
        mask = apply("cast", [mask], {"dtype": dtype})
    return apply("identity", [mask], name=name or "SequenceMask")

# -- reverse ----------------------------------------------------------------------------------
def reverse(tensor, axis, name=None):
    """``tensor`` with the order of its entries reversed along each axis in ``axis``.

    Args:
        tensor: any tensor.
        axis: an int or a list of ints (negative counts from the end), static.
        name: name of the result node.
    Returns:
        A tensor of ``tensor``'s shape and dtype.
    Raises:
        GraphError: a tensor ``axis``; ShapeError: an axis out of range or repeated.
    Example:
        >>> gc.reverse(x, [1])   # x[:, ::-1]
    """
    fn = "reverse"
    x = convert(tensor)
    axes = static_ints(fn, "axis", [axis] if np.ndim(axis) == 0 else axis).reshape(-1)
    if any(not -x.rank <= a < x.rank for a in axes):
        fail(fn, f"axis {axes.tolist()} is out of range for {x.type_str()}", cls=ShapeError)
    flip = {int(a) % x.rank for a in axes}
    if len(flip) != len(axes):
        fail(fn, f"axis {axes.tolist()} repeats an axis", cls=ShapeError)
    if not flip:
        return apply("identity", [x], name=name)
    spec = tuple(("s", None, None, -1 if i in flip else None)
                 for i in builtins.range(max(flip) + 1))
    return apply("strided_slice", [x], {"spec": spec}, name=name or "ReverseV2")

reverse_v2 = reverse


def _sum(x, axes, keepdims):
    return apply("reduce_sum", [x], {"axis": axes, "keepdims": keepdims})

def _max(x, axes, keepdims):
    return apply("reduce_max", [x], {"axis": axes, "keepdims": keepdims})

def _need_float(fn, x):
    if not x.dtype.is_floating:
        fail(fn, f"needs a floating tensor, found {x.type_str()}", cls=DTypeError,
             hint="cast first: gc.cast(x, gc.float32)")

def _need_rank(fn, x, least):
    if x.rank < least:
        fail(fn, f"needs a tensor of rank >= {least}, found {x.type_str()}", cls=ShapeError)

def _known_dims(fn, x, axes):
    dims = [x.shape[a] for a in axes]
    if any(d is None for d in dims):
        fail(fn, f"needs static sizes on axes {list(axes)}, found {x.type_str()}",
             cls=ShapeError, hint="feed a placeholder with a full shape")
    return dims
