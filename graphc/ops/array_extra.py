"""More of TF1's array ops, built from primitive ops: ``sequence_mask``, ``reverse``, ``eye``,
``diag`` / ``linalg.diag``, ``diag_part`` / ``linalg.diag_part``, ``trace``, ``tensordot``,
``gather_nd``, ``scatter_nd``, ``segment_sum`` and ``unsorted_segment_sum`` (one ``gather`` or
``scatter_add`` on row-major flattened indices).

Like ``array_ops``, each is a composition of slices, reshapes, broadcasts, multiplies, sums,
``einsum``, ``gather`` and ``scatter_add``, so both backends run it and autodiff
differentiates it with no new VJP.
Sizes must be static: a run-time ``maxlen`` or axis list is refused with the argument's name.
"""
import builtins

import numpy as np

from .array_ops import fail, static_int, static_ints
from .special_math_ops import einsum
from ..errors import DTypeError, ShapeError
from ..ir import dtypes as D
from ..ir.graph import Node
from ..ir.ops import apply, const_node, convert

__all__ = ["sequence_mask", "reverse", "reverse_v2", "eye", "diag", "diag_part", "matrix_diag",
           "matrix_diag_part", "trace", "tensordot", "gather_nd", "scatter_nd", "segment_sum",
           "unsorted_segment_sum"]


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
                 f"tensor '{value.name}'",
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
                     f"'{lengths.name}'", hint="pass maxlen as a Python int")
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


# -- eye, diagonals, trace --------------------------------------------------------------------
def eye(num_rows, num_columns=None, batch_shape=None, dtype=D.float32, name=None):
    """The identity matrix (ones on the main diagonal), optionally repeated over a batch.

    Args:
        num_rows: an int (static).
        num_columns: an int; None means ``num_rows``.
        batch_shape: a list of ints prepended to the shape, or None.
        dtype: the result's dtype.
        name: name of the constant.
    Returns:
        A constant of shape ``batch_shape + [num_rows, num_columns]``.
    Example:
        >>> gc.eye(2, 3)   # [[1, 0, 0], [0, 1, 0]]
    """
    fn = "eye"
    rows = _static_size(fn, "num_rows", num_rows)
    cols = rows if num_columns is None else _static_size(fn, "num_columns", num_columns)
    batch = () if batch_shape is None else tuple(static_ints(fn, "batch_shape", batch_shape)
                                                  .reshape(-1).tolist())
    value = np.broadcast_to(np.eye(rows, cols, dtype=D.as_dtype(dtype).np), batch + (rows, cols))
    return const_node(np.array(value), name=name or "eye")


def _need_rank(fn, x, least):
    if x.rank < least:
        fail(fn, f"needs a tensor of rank >= {least}, found {x.type_str()}", cls=ShapeError)


def _known_dims(fn, x, axes):
    dims = [x.shape[a] for a in axes]
    if any(d is None for d in dims):
        fail(fn, f"needs static sizes on axes {list(axes)}, found {x.type_str()}",
             cls=ShapeError, hint="feed a placeholder with a full shape")
    return dims


def matrix_diag(diagonal, name=None):
    """``[..., N]`` -> ``[..., N, N]`` with ``diagonal`` on the main diagonal, zeros elsewhere
    (``tf.linalg.diag``).

    Example:
        >>> gc.linalg.diag([1.0, 2.0])   # [[1, 0], [0, 2]]
    """
    fn = "linalg.diag"
    v = convert(diagonal)
    _need_rank(fn, v, 1)
    (n,) = _known_dims(fn, v, [v.rank - 1])
    ones = const_node(np.eye(n, dtype=v.dtype.np))
    return apply("multiply", [apply("expand_dims", [v], {"axis": -1}), ones],
                 name=name or "MatrixDiag")


def matrix_diag_part(input, name=None):  # noqa: A002  (TF1's argument name)
    """``[..., M, N]`` -> ``[..., min(M, N)]``: the main diagonal (``tf.linalg.diag_part``).

    Example:
        >>> gc.linalg.diag_part([[1.0, 2.0], [3.0, 4.0]])   # [1, 4]
    """
    fn = "linalg.diag_part"
    x = convert(input)
    _need_rank(fn, x, 2)
    m, n = _known_dims(fn, x, [x.rank - 2, x.rank - 1])
    picked = apply("multiply", [x, const_node(np.eye(m, n, dtype=x.dtype.np))])
    rows = apply("reduce_sum", [picked], {"axis": x.rank - 1, "keepdims": False})
    if m > n:  # rows past the last column hold no diagonal entry
        spec = tuple(("s", None, None, None) for _ in builtins.range(x.rank - 2))
        rows = apply("strided_slice", [rows], {"spec": spec + (("s", 0, n, None),)})
    return apply("identity", [rows], name=name or "MatrixDiagPart")


def diag(diagonal, name=None):
    """TF1's ``tf.diag``: a rank-k tensor -> rank 2k, ``out[i.., i..] = diagonal[i..]``.

    Example:
        >>> gc.diag([1.0, 2.0])   # [[1, 0], [0, 2]]
    """
    v = convert(diagonal)
    _need_rank("diag", v, 1)
    dims = _known_dims("diag", v, builtins.range(v.rank))
    flat = apply("reshape", [v], {"shape": (int(np.prod(dims)),)})
    return apply("reshape", [matrix_diag(flat)], {"shape": tuple(dims) * 2},
                 name=name or "Diag")


def diag_part(input, name=None):  # noqa: A002  (TF1's argument name)
    """TF1's ``tf.diag_part``: a rank-2k tensor of shape ``D + D`` -> its diagonal, shape D."""
    x = convert(input)
    k = x.rank // 2
    if x.rank == 0 or x.rank % 2 or x.shape[:k] != x.shape[k:]:
        fail("diag_part", f"needs shape D + D (even rank), found {x.type_str()}",
             cls=ShapeError, hint="gc.linalg.diag_part takes the last two axes' diagonal")
    dims = _known_dims("diag_part", x, builtins.range(k))
    n = int(np.prod(dims))
    square = apply("reshape", [x], {"shape": (n, n)})
    return apply("reshape", [matrix_diag_part(square)], {"shape": tuple(dims)},
                 name=name or "DiagPart")


def trace(x, name=None):
    """Sum of the main diagonal of the last two axes: ``[..., M, N]`` -> ``[...]``.

    Example:
        >>> gc.trace([[1.0, 2.0], [3.0, 4.0]])   # 5.0
    """
    d = matrix_diag_part(x)
    return apply("reduce_sum", [d], {"axis": d.rank - 1, "keepdims": False},
                 name=name or "Trace")


# -- tensordot --------------------------------------------------------------------------------
def _tensordot_axes(fn, a, b, axes):
    """(axes of a, axes of b) contracted, as lists of non-negative ints."""
    if isinstance(axes, Node):
        fail(fn, f"axes must be static, found tensor '{axes.name}'",
             hint="pass an int or a pair of lists of ints")
    if np.ndim(axes) == 0:
        n = static_int(fn, "axes", axes)
        if not 0 <= n <= min(a.rank, b.rank):
            fail(fn, f"axes={n} does not fit {a.type_str()} and {b.type_str()}",
                 cls=ShapeError)
        return list(builtins.range(a.rank - n, a.rank)), list(builtins.range(n))
    if len(axes) != 2:
        fail(fn, f"axes must be an int or a pair of lists, found {axes!r}")
    pair = []
    for x, part in zip((a, b), axes):
        ax = static_ints(fn, "axes", [part] if np.ndim(part) == 0 else part).reshape(-1)
        if any(not -x.rank <= i < x.rank for i in ax):
            fail(fn, f"axes {ax.tolist()} out of range for {x.type_str()}", cls=ShapeError)
        pair.append([int(i) % x.rank for i in ax])
    if len(pair[0]) != len(pair[1]):
        fail(fn, f"axes {pair[0]} and {pair[1]} differ in length", cls=ShapeError)
    return pair


def tensordot(a, b, axes, name=None):
    """Sum of products over ``axes``: the free axes of ``a``, then those of ``b``.

    Args:
        a, b: tensors of one dtype.
        axes: an int n (the last n axes of ``a`` with the first n of ``b``) or a pair of
            lists ``[[a axes], [b axes]]`` (an int in place of a list is one axis).
        name: name of the result node.
    Returns:
        A tensor of shape ``a's free dims + b's free dims``.
    Raises:
        GraphError: tensor ``axes``, or a malformed pair; ShapeError: out-of-range axes, or
            contracted sizes that differ.
    Example:
        >>> gc.tensordot(x, w, [[2], [0]])   # [B, T, D] x [D, H] -> [B, T, H]
    """
    a = convert(a, b if isinstance(b, Node) else None)
    b = convert(b, a)
    axes_a, axes_b = _tensordot_axes("tensordot", a, b, axes)
    letters = iter("abcdefghijklmnopqrstuvwxyz")
    la = [next(letters) for _ in builtins.range(a.rank)]
    lb = [next(letters) for _ in builtins.range(b.rank)]
    for i, j in zip(axes_a, axes_b):
        if None not in (a.shape[i], b.shape[j]) and a.shape[i] != b.shape[j]:
            fail("tensordot", f"contracted axes {i} of {a.type_str()} and {j} of "
                              f"{b.type_str()} differ in size", cls=ShapeError)
        lb[j] = la[i]
    out = [c for i, c in enumerate(la) if i not in axes_a] + [
        c for j, c in enumerate(lb) if j not in axes_b]
    return einsum(f"{''.join(la)},{''.join(lb)}->{''.join(out)}", a, b,
                  name=name or "Tensordot")


# -- gather_nd / scatter_nd / segment sums: gather and scatter_add on flattened indices -------
def _flat_indices(fn, indices, shape, name):
    """``indices[..., K]`` into the leading K axes of ``shape`` -> one row-major index
    ``indices[..., :] . strides`` into their product (an int tensor of ``indices.shape[:-1]``).

    Each coordinate is checked at run time against its axis (``check_index``; the error
    names the op the user called, ``fn`` and the result's ``name``), so none wraps into
    another row."""
    if indices.rank == 0 or indices.shape[-1] is None:
        fail(fn, f"indices need a static last dimension, found {indices.type_str()}",
             cls=ShapeError)
    k = indices.shape[-1]
    if k > len(shape):
        fail(fn, f"indices index {k} axes of a rank-{len(shape)} tensor", cls=ShapeError)
    lead = [int(d) for d in shape[:k]]
    label = f"{fn} '{indices.graph.next_name(name)}'"
    indices = apply("check_index", [indices], {"bounds": tuple(lead), "of": label},
                    name=f"{name}/check_index")
    strides = np.cumprod([1] + lead[:0:-1])[::-1].astype(indices.dtype.np)
    weighted = apply("multiply", [indices, const_node(np.ascontiguousarray(strides))])
    flat = apply("reduce_sum", [weighted], {"axis": indices.rank - 1, "keepdims": False})
    return flat, int(np.prod(lead, dtype=np.int64))


def _need_int(fn, arg, x):
    if not x.dtype.is_integer:
        fail(fn, f"{arg} must be integers, found {x.type_str()}", cls=DTypeError)


def gather_nd(params, indices, name=None, batch_dims=0):
    """``out[i..] = params[indices[i.., 0], ..., indices[i.., K-1]]`` (TF1's ``gather_nd``).

    Computed as one ``gather`` from ``params`` with its first K axes flattened, so the
    gradient is a scatter-add. An index outside its axis raises InvalidArgumentError when
    the step runs (both backends; the step changes no variable).

    Args:
        params: a tensor with static leading sizes.
        indices: an int tensor whose last dimension K (static) indexes params' first K axes.
        name: name of the result node.
        batch_dims: only 0 is supported.
    Returns:
        A tensor of shape ``indices.shape[:-1] + params.shape[K:]``.
    Raises:
        GraphError: batch_dims != 0; ShapeError: K unknown or above params' rank;
        DTypeError: non-integer indices.
    Example:
        >>> gc.gather_nd([[1, 2], [3, 4]], [[1, 0], [0, 1]])   # [3, 2]
    """
    fn = "gather_nd"
    if batch_dims:
        fail(fn, f"batch_dims={batch_dims} is not supported", hint="add the batch index as "
             "the first column of indices")
    params, indices = convert(params), convert(indices)
    _need_int(fn, "indices", indices)
    k = indices.shape[-1] if indices.rank else None
    if k is not None:
        _known_dims(fn, params, builtins.range(min(k, params.rank)))
    name = name or "GatherNd"
    flat, rows = _flat_indices(fn, indices, params.shape, name)
    table = apply("reshape", [params], {"shape": (rows,) + tuple(params.shape[k:])})
    return apply("gather", [table, flat], {"axis": 0}, name=name)


def scatter_nd(indices, updates, shape, name=None):
    """Zeros of ``shape`` with ``updates`` summed in at ``indices`` (repeats add), TF1's
    ``scatter_nd``; its gradient w.r.t. ``updates`` is ``gather_nd``.

    Args:
        indices: an int tensor ``[..., K]`` (K static) into the first K axes of ``shape``.
        updates: a tensor of shape ``indices.shape[:-1] + shape[K:]``.
        shape: the result's shape, a static list of ints.
        name: name of the result node.
    Returns:
        A tensor of ``shape`` and ``updates``' dtype.
    Raises:
        GraphError: a tensor ``shape``; ShapeError: updates of the wrong shape.
    Example:
        >>> gc.scatter_nd([[1], [3]], [9.0, 10.0], [4])   # [0, 9, 0, 10]
    """
    fn = "scatter_nd"
    indices = convert(indices)
    updates = convert(updates)
    _need_int(fn, "indices", indices)
    dims = tuple(static_ints(fn, "shape", shape).reshape(-1).tolist())
    name = name or "ScatterNd"
    flat, rows = _flat_indices(fn, indices, dims, name)
    k = indices.shape[-1]
    want = tuple(indices.shape[:-1]) + dims[k:]
    if tuple(updates.shape) != want:
        fail(fn, f"updates must have shape {list(want)}, found {updates.type_str()}",
             cls=ShapeError)
    zeros = const_node(np.zeros((rows,) + dims[k:], updates.dtype.np))
    summed = apply("scatter_add", [updates, flat, zeros], {"axis": 0})
    return apply("reshape", [summed], {"shape": dims}, name=name)


def _segment_sum(fn, data, ids, num, name):
    data, ids = convert(data), convert(ids)
    _need_int(fn, "segment_ids", ids)
    if tuple(data.shape[:ids.rank]) != tuple(ids.shape):
        fail(fn, f"segment_ids {ids.type_str()} must be a prefix of data's shape "
                 f"{data.type_str()}", cls=ShapeError)
    zeros = const_node(np.zeros((num,) + tuple(data.shape[ids.rank:]), data.dtype.np))
    label = f"{fn} '{ids.graph.next_name(name)}'"  # run-time errors name the op called
    return apply("scatter_add", [data, ids, zeros],
                 {"axis": 0, "what": "segment id", "of": label}, name=name)


def unsorted_segment_sum(data, segment_ids, num_segments, name=None):
    """``out[s] = sum of data[i..] over segment_ids[i..] == s``, for s < num_segments.

    Args:
        data: a tensor.
        segment_ids: an int tensor whose shape is a prefix of data's, values in
            ``[0, num_segments)``: any other id raises InvalidArgumentError when the step
            runs (TF1 raises for ids >= num_segments and drops negative ones; graphc
            raises for both).
        num_segments: an int or a scalar constant tensor (static).
        name: name of the result node.
    Returns:
        A tensor of shape ``[num_segments] + data.shape[segment_ids.rank:]``.
    Raises:
        GraphError: a run-time num_segments; ShapeError: ids that are not a prefix.
    Example:
        >>> gc.unsorted_segment_sum([1.0, 2.0, 3.0], [1, 0, 1], 2)   # [2.0, 4.0]
    """
    num = _static_size("unsorted_segment_sum", "num_segments", num_segments)
    return _segment_sum("unsorted_segment_sum", data, segment_ids, num,
                        name or "UnsortedSegmentSum")


def segment_sum(data, segment_ids, name=None):
    """TF1's ``segment_sum``: sums of data's rows by sorted ``segment_ids`` (rank 1); the
    result has ``max(segment_ids) + 1`` rows, so the ids must be a constant here.

    Raises:
        GraphError: run-time ids (use ``unsorted_segment_sum`` with num_segments), or ids
            that are negative or not sorted.
    Example:
        >>> gc.segment_sum([1.0, 2.0, 3.0], [0, 0, 2])   # [3.0, 0.0, 3.0]
    """
    fn = "segment_sum"
    known = constant_value(segment_ids) if isinstance(segment_ids, Node) else np.asarray(
        segment_ids)
    if known is None:
        fail(fn, f"segment_ids must be a constant (the row count is max(ids) + 1), found "
                 f"the run-time tensor '{segment_ids.name}'",
             hint="use gc.unsorted_segment_sum(data, ids, num_segments)")
    if known.ndim != 1 or (known.size and (known.min() < 0 or np.any(np.diff(known) < 0))):
        fail(fn, f"segment_ids must be a sorted, non-negative vector, found {known.tolist()}")
    num = int(known.max()) + 1 if known.size else 0
    return _segment_sum(fn, data, segment_ids, num, name or "SegmentSum")
