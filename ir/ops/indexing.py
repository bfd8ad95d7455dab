"""Indexing ops: strided slices (``x[:, 1:3]``, ``x[i]``), gather with its scatter-add
gradient, one_hot, and compile-time shape queries (``dim_size``, ``shape_of``).

A slice spec is a tuple with one entry per leading axis: ``("s", start, stop, step)`` for a
range (None as in Python) or ``("i", index)`` for an index that drops the axis.
"""
import numpy as np

from .. import dtypes as D
from ..shapes import RuleError, normalize_axis
from .registry import F, ZERO, defop, require


def spec_to_index(spec):
    return tuple(slice(e[1], e[2], e[3]) if e[0] == "s" else e[1] for e in spec)


def _slice_infer(nodes, spec):
    (x,) = nodes
    require(len(spec) <= x.rank, f"too many indices ({len(spec)}) for {x.type_str()}")
    out = []
    for axis, (entry, dim) in enumerate(zip(spec + (("s", None, None, None),) *
                                            (x.rank - len(spec)), x.shape)):
        if entry[0] == "i":
            if dim is not None:
                require(-dim <= entry[1] < dim,
                        f"index {entry[1]} is out of bounds for axis {axis} of size {dim}")
            continue
        if dim is None:
            whole = entry[1] is None and entry[2] is None and entry[3] in (None, 1)
            out.append(None if whole or entry[2] is None or entry[2] < 0 else
                       len(range(*slice(entry[1], entry[2], entry[3]).indices(entry[2]))))
        else:
            out.append(len(range(*slice(entry[1], entry[2], entry[3]).indices(dim))))
    return x.dtype, tuple(out)


def _slice_impl(x, spec):
    return np.array(x[spec_to_index(spec)])


STRIDED_SLICE = defop(
    "strided_slice", _slice_infer,
    lambda g, out, x, spec: [F.strided_slice_grad(g, x, spec=spec)],
    impl=_slice_impl, family="indexing")


def _slice_grad_impl(g, like, spec):
    out = np.zeros(np.shape(like), dtype=np.asarray(g).dtype)
    out[spec_to_index(spec)] = g
    return out


STRIDED_SLICE_GRAD = defop(
    "strided_slice_grad", lambda nodes, spec: (nodes[0].dtype, nodes[1].shape),
    lambda g, out, dy, like, spec: [F.strided_slice(g, spec=spec), None],
    impl=_slice_grad_impl, family="indexing",
    doc="zeros shaped like the second input, with the first written at spec")


# -- gather / scatter-add -------------------------------------------------------------------
def _gather_infer(nodes, axis=0):
    params, indices = nodes
    require(indices.dtype.is_integer,
            f"indices must be integers, found {indices.dtype.name}", kind="dtype")
    a = normalize_axis(axis, params.rank)
    return params.dtype, params.shape[:a] + indices.shape + params.shape[a + 1:]


def _gather_impl(params, indices, axis=0):
    return np.take(params, indices, axis=axis)


GATHER = defop("gather", _gather_infer,
               lambda g, out, params, indices, axis=0:
               [F.scatter_add(g, indices, params, axis=axis), None],
               impl=_gather_impl, family="indexing")


def _scatter_add_impl(updates, indices, like, axis=0):
    """Sum rows of ``updates`` into zeros shaped like ``like`` at ``indices`` (repeats add)."""
    like_shape = np.shape(like)
    a = axis % len(like_shape)
    out = np.zeros(like_shape, dtype=np.asarray(updates).dtype)
    moved = np.moveaxis(out, a, 0)
    idx = np.asarray(indices).reshape(-1)
    upd = np.asarray(updates)
    lead = upd.shape[:a]
    upd = np.moveaxis(upd.reshape(lead + (idx.size,) + upd.shape[a + np.ndim(indices):]), a, 0)
    np.add.at(moved, idx, upd)
    return out


SCATTER_ADD = defop(
    "scatter_add", lambda nodes, axis=0: (nodes[0].dtype, nodes[2].shape),
    lambda g, out, updates, indices, like, axis=0: [F.gather(g, indices, axis=axis), None, None],
    impl=_scatter_add_impl, family="indexing",
    doc="zeros shaped like the third input, with updates summed in at indices")


# -- one_hot ---------------------------------------------------------------------------------
def _one_hot_infer(nodes, depth, on_value=1.0, off_value=0.0, axis=-1, dtype=D.float32):
    (idx,) = nodes
    require(idx.dtype.is_integer, f"indices must be integers, found {idx.dtype.name}",
            kind="dtype")
    a = normalize_axis(axis, idx.rank + 1)
    return D.as_dtype(dtype), idx.shape[:a] + (int(depth),) + idx.shape[a:]


def _one_hot_impl(indices, depth, on_value=1.0, off_value=0.0, axis=-1, dtype="float32"):
    # copied into generated modules: no module globals (dtype: DType, NumPy type or name)
    indices = np.asarray(indices)
    hot = indices[..., None] == np.arange(depth)
    out = np.where(hot, on_value, off_value).astype(getattr(dtype, "np", dtype))
    return np.moveaxis(out, -1, axis) if axis != -1 else out


ONE_HOT = defop("one_hot", _one_hot_infer, ZERO, impl=_one_hot_impl, family="indexing")


# -- shape queries, folded once the step is specialized --------------------------------------
def _dim_size_infer(nodes, axes):
    return nodes[0].dtype, ()


def _dim_size_impl(x, axes):
    return np.asarray(int(np.prod([np.shape(x)[a] for a in axes])), dtype=np.asarray(x).dtype)


DIM_SIZE = defop("dim_size", _dim_size_infer, ZERO, impl=_dim_size_impl, family="indexing",
                 doc="number of elements of x along axes, in x's dtype (for means)")


def _shape_of_infer(nodes, out_type=D.int32):
    return D.as_dtype(out_type), (nodes[0].rank,)


SHAPE_OF = defop("shape_of", _shape_of_infer, ZERO,
                 impl=lambda x, out_type=D.int32: np.asarray(np.shape(x),
                                                             D.as_dtype(out_type).np),
                 family="indexing")

__all__ = ["spec_to_index", "RuleError"]
