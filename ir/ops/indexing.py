"""Indexing ops: strided slices (``x[:, 1:3]``, ``x[i]``), gather with its scatter-add
gradient, one_hot, check_index, and compile-time shape queries (``dim_size``, ``shape_of``).

Indices read at run time are checked by both backends (``index_check``, see
``ir.ops.registry``): one outside its range stops the step with InvalidArgumentError. one_hot
is the exception, as in TF1: an index outside [0, depth) gives a row of ``off_value``.

A slice spec is a tuple with one entry per leading axis: ``("s", start, stop, step)`` for a
range (None as in Python) or ``("i", index)`` for an index that drops the axis.
"""
import numpy as np

from .. import dtypes as D
from ..shapes import RuleError, compatible, format_shape, normalize_axis
from .registry import F, ZERO, defop, require


def spec_to_index(spec):
    return tuple(slice(e[1], e[2], e[3]) if e[0] == "s" else e[1] for e in spec)


def _slice_infer(nodes, spec):
    (x,) = nodes
    if len(spec) > x.rank:  # (each message only when its check fails)
        require(False, f"too many indices ({len(spec)}) for {x.type_str()}")
    out = []
    for axis, (entry, dim) in enumerate(zip(spec + (("s", None, None, None),) *
                                            (x.rank - len(spec)), x.shape)):
        if entry[0] == "i":
            if dim is not None and not -dim <= entry[1] < dim:
                require(False,
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


def _whole(entry, dim):
    """Whether a spec entry takes every element of an axis of ``dim``, in order."""
    return (entry[0] == "s" and entry[1] in (None, 0) and entry[3] in (None, 1)
            and (entry[2] is None or entry[2] >= dim))


def _full_spec(spec, rank):
    return tuple(spec) + (("s", None, None, None),) * (rank - len(spec))


def _slice_examples(node):
    """An axis taken whole ties to the output axis it becomes (``ir.examples``); a range or
    an index picks rows, which mixes them."""
    x = node.inputs[0]
    entries, j = [], 0
    for k, entry in enumerate(_full_spec(node.attrs["spec"], len(x.shape))):
        if entry[0] == "s":
            if _whole(entry, x.shape[k]):
                entries.append((0, k, j))
            j += 1
    return entries


def _slice_example_attrs(node, axis, size):
    """The spec takes output axis ``axis`` whole whatever its size."""
    spec, j = list(_full_spec(node.attrs["spec"], len(node.inputs[0].shape))), 0
    for k, entry in enumerate(spec):
        if entry[0] == "s":
            if j == axis:
                spec[k] = ("s", None, None, None)
            j += 1
    return dict(node.attrs, spec=tuple(spec))


STRIDED_SLICE = defop(
    "strided_slice", _slice_infer,
    lambda g, out, x, spec: [F.strided_slice_grad(g, x, spec=spec)],
    impl=_slice_impl, family="indexing", linear="first", tf_name="strided_slice",
    examples=_slice_examples, example_attrs=_slice_example_attrs)


def _slice_grad_impl(g, like, spec):
    out = np.zeros(np.shape(like), dtype=np.asarray(g).dtype)
    out[spec_to_index(spec)] = g
    return out


STRIDED_SLICE_GRAD = defop(
    "strided_slice_grad", lambda nodes, spec: (nodes[0].dtype, nodes[1].shape),
    lambda g, out, dy, like, spec: [F.strided_slice(g, spec=spec), None],
    impl=_slice_grad_impl, family="indexing", shape_only=(1,), linear="first",
    doc="zeros shaped like the second input, with the first written at spec")


# -- gather / scatter-add -------------------------------------------------------------------
def _gather_infer(nodes, axis=0, of=""):
    params, indices = nodes
    require(indices.dtype.is_integer,
            f"indices must be integers, found {indices.dtype.name}", kind="dtype")
    return params.dtype, _gathered(params.shape, indices.shape, axis)


def _gathered(shape, indices, axis):
    """The shape of ``gather`` from ``shape`` at ``indices`` along ``axis``: also
    the shape of the updates ``scatter_add``, its adjoint, sums back into ``shape``."""
    a = normalize_axis(axis, len(shape))
    return shape[:a] + indices + shape[a + 1:]


def _gather_impl(params, indices, axis=0, of=""):
    return np.take(params, indices, axis=axis)


def _gather_check(n):
    """Indices pick entries of params' ``axis``: each must lie in [0, size) (TF1 raises for
    negative ones too; checked at run time by both backends)."""
    params = n.inputs[0]
    return 1, "index", params.shape[normalize_axis(n.attrs.get("axis", 0), params.rank)]


# A gradient's index check names the forward op the user wrote (``of``): TF1's error names it too.
GATHER = defop("gather", _gather_infer,
               lambda g, out, params, indices, axis=0, of="":
               [F.scatter_add(g, indices, params, axis=axis, of=of or out.describe()), None],
               impl=_gather_impl, family="indexing", index_check=_gather_check,
               linear="first", tf_name="GatherV2")


def _scatter_check(n):
    like = n.inputs[2]
    return 1, n.attrs.get("what", "index"), \
        like.shape[normalize_axis(n.attrs.get("axis", 0), like.rank)]


def _scatter_add_impl(updates, indices, like, axis=0, what="index", of=""):
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


def _scatter_add_infer(nodes, axis=0, what="index", of=""):
    """Shaped like the third input; the updates are what ``gather`` of the same indices and
    axis would give (a dim unknown while the graph is built is checked once the step is
    fed: scatter_nd's updates or a segment sum's data of a placeholder [None, ...])."""
    updates, indices, like = nodes
    if None not in (updates.shape, indices.shape, like.shape):
        want = _gathered(like.shape, indices.shape, axis)
        require(compatible(updates.shape, want),
                f"updates must have shape {format_shape(want)} (the {indices.type_str()} "
                f"{'indices' if what == 'index' else what + 's'} into axis "
                f"{normalize_axis(axis, like.rank)} of "
                f"{format_shape(like.shape)}), found {updates.type_str()}")
    return updates.dtype, like.shape


SCATTER_ADD = defop(
    "scatter_add", _scatter_add_infer,
    lambda g, out, updates, indices, like, axis=0, what="index", of="":
    [F.gather(g, indices, axis=axis, of=of or out.describe()), None, None],
    impl=_scatter_add_impl, family="indexing", index_check=_scatter_check, shape_only=(2,),
    linear="first",
    doc="zeros shaped like the third input, with updates summed in at indices "
        "(``what`` names the indices in run-time errors: 'index', 'segment id')")


# -- check_index: the per-axis check of gather_nd / scatter_nd indices -----------------------
def _check_index_infer(nodes, bounds, what="index", of=""):
    (idx,) = nodes
    require(idx.dtype.is_integer, f"indices must be integers, found {idx.dtype.name}",
            kind="dtype")
    require(idx.rank >= 1 and idx.shape[-1] == len(bounds),
            f"indices {idx.type_str()} need a last axis of {len(bounds)}")
    return idx.dtype, idx.shape


def _check_index_impl(indices, bounds, what="index", of=""):
    """Reference kernel: the indices unchanged, or IndexError at the first one outside
    [0, bounds[j]) for its position j along the last axis."""
    idx = np.asarray(indices)
    bad = np.flatnonzero((idx < 0) | (idx >= np.asarray(bounds, dtype=np.int64)))
    if bad.size:
        raise IndexError(f"{of}: {what} {idx.reshape(-1)[bad[0]]} is out of range")
    return idx.copy()


CHECK_INDEX = defop(
    "check_index", _check_index_infer, ZERO, impl=_check_index_impl, family="indexing",
    index_check=lambda n: (0, n.attrs.get("what", "index"), tuple(n.attrs["bounds"])),
    doc="the indices unchanged, after checking entry j of the last axis is in "
        "[0, bounds[j]) (errors name ``of``, the op the user called)")


# -- one_hot ---------------------------------------------------------------------------------
def _one_hot_infer(nodes, depth, on_value=1.0, off_value=0.0, axis=-1, dtype=D.float32):
    (idx,) = nodes
    require(idx.dtype.is_integer, f"indices must be integers, found {idx.dtype.name}",
            kind="dtype")
    a = normalize_axis(axis, idx.rank + 1)
    if depth is not None:  # else known when the step is specialized
        require(depth >= 0, f"depth must be >= 0, found {depth}", kind="argument")
    return D.as_dtype(dtype), idx.shape[:a] + (depth,) + idx.shape[a:]


def _one_hot_impl(indices, depth, on_value=1.0, off_value=0.0, axis=-1, dtype="float32"):
    # copied into generated modules: no module globals (dtype: DType, NumPy type or name)
    indices = np.asarray(indices)
    hot = indices[..., None] == np.arange(depth)
    out = np.where(hot, on_value, off_value).astype(getattr(dtype, "np", dtype))
    return np.moveaxis(out, -1, axis) if axis != -1 else out


def _one_hot_examples(node):
    (idx,) = node.inputs
    a = normalize_axis(node.attrs.get("axis", -1), len(idx.shape) + 1)
    return [(0, k, k if k < a else k + 1) for k in range(len(idx.shape))]


ONE_HOT = defop("one_hot", _one_hot_infer, ZERO, impl=_one_hot_impl, family="indexing",
                static_args={"depth": "int"},
                tf_name="one_hot", examples=_one_hot_examples)


# -- shape queries, folded once the step is specialized --------------------------------------
def _dim_size_infer(nodes, axes):
    return nodes[0].dtype, ()


def _dim_size_impl(x, axes):
    """The element count of ``x`` along ``axes`` (None: all of them)."""
    dims = np.shape(x) if axes is None else [np.shape(x)[a] for a in axes]
    return np.asarray(int(np.prod(dims)), dtype=np.asarray(x).dtype)


DIM_SIZE = defop("dim_size", _dim_size_infer, ZERO, impl=_dim_size_impl, family="indexing",
                 shape_only=(0,), compile_time=True,
                 doc="number of elements of x along axes, in x's dtype (for means)")


def _shape_of_infer(nodes, out_type=D.int32):
    return D.as_dtype(out_type), (nodes[0].rank,)


SHAPE_OF = defop("shape_of", _shape_of_infer, ZERO,
                 impl=lambda x, out_type=D.int32: np.asarray(np.shape(x),
                                                             D.as_dtype(out_type).np),
                 family="indexing", shape_only=(0,), compile_time=True, tf_name="Shape")

__all__ = ["spec_to_index", "RuleError"]
