"""TF1's N-d indexing: ``gather_nd``, ``scatter_nd`` (repeats add) and the segment sums, as one
``gather`` / ``scatter_add`` on row-major flattened indices, so gradients come from the existing
ops; each coordinate is checked against its axis when the step runs.
"""
import builtins

import numpy as np

from ..errors import DTypeError, ShapeError
from ..ir.graph import Node
from ..ir.ops import apply, const_node, convert
from ..ir.shapes import compatible
from . import math_ops
from .array_ops import _known_dims, _static_size, constant_value, fail, static_ints


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
    if not compatible(updates.shape, want):  # (a dim unknown until fed: checked then)
        fail(fn, f"updates must have shape {list(want)}, found {updates.type_str()}",
             cls=ShapeError)
    zeros = const_node(np.zeros((rows,) + dims[k:], updates.dtype.np))
    summed = apply("scatter_add", [updates, flat, zeros], {"axis": 0})
    return apply("reshape", [summed], {"shape": dims}, name=name)

def _segment_sum(fn, data, ids, num, name):
    data, ids = convert(data), convert(ids)
    _need_int(fn, "segment_ids", ids)
    if data.rank is None or ids.rank is None:
        fail(fn, f"needs the ranks of data {data.type_str()} and segment_ids "
                 f"{ids.type_str()}", cls=ShapeError, hint="feed placeholders of known rank")
    if not compatible(data.shape[:ids.rank], ids.shape):  # (unknown dims: checked when fed)
        fail(fn, f"segment_ids {ids.type_str()} must be a prefix of data's shape "
                 f"{data.type_str()}", cls=ShapeError)
    rest = tuple(data.shape[ids.rank:])
    if None in rest:  # (the sums' shape known once fed)
        zeros = math_ops.zeros(math_ops.concat([[num], math_ops.shape(data)[ids.rank:]], 0),
                               data.dtype)
    else:
        zeros = const_node(np.zeros((num,) + rest, data.dtype.np))
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
                 f"the run-time tensor '{segment_ids.node_name}'",
             hint="use gc.unsorted_segment_sum(data, ids, num_segments)")
    if known.ndim != 1 or (known.size and (known.min() < 0 or np.any(np.diff(known) < 0))):
        fail(fn, f"segment_ids must be a sorted, non-negative vector, found {known.tolist()}")
    num = int(known.max()) + 1 if known.size else 0
    return _segment_sum(fn, data, segment_ids, num, name or "SegmentSum")
