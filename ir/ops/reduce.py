"""Reductions: sum, mean, max, min over axes (with keepdims), and argmax/argmin.

VJP conventions: the upstream gradient is re-expanded to the kept shape and broadcast back
with ``broadcast_like``; ``reduce_max``/``reduce_min`` split the gradient evenly among ties
(each of k equal maxima receives g / k); argmax/argmin are not differentiable.

Over an empty axis (a 0-length dim), as TF1: a reduction gives its identity (``EMPTY``: sum 0,
max -inf / the lowest integer, min +inf / the highest integer) and a mean 0/0 (NaN; 0 for
integers, whose mean TF starts from 0); argmax/argmin have no answer and raise
InvalidArgumentError ("Reduction axis 0 is empty in shape [0,3]") when the shape is known,
at graph build or when a step specializes on the fed shapes. Every backend follows
``empty_reduction``.
"""
import numpy as np

from .. import dtypes as D
from ..shapes import normalize_axes, normalize_axis
from .registry import F, ZERO, defop, require


def _reduce_infer(kinds):
    def infer(nodes, axis=None, keepdims=False):
        (x,) = nodes
        if x.dtype.kind not in kinds:  # (the message only when it fails)
            require(False, f"expected a floating or integer tensor, found {x.dtype.name}",
                    kind="dtype")
        axes = normalize_axes(axis, x.rank)
        if keepdims:
            shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape))
        else:
            shape = tuple(d for i, d in enumerate(x.shape) if i not in axes)
        return x.dtype, shape
    return infer


def _kept(g, x, axis, keepdims):
    """``g`` with the reduced axes re-inserted as size 1 (rank of x). For ``x`` of unknown
    rank, a full reduction's scalar broadcasts as it is; otherwise ``g`` takes the shape of
    the kept-dims reduction (``reshape_like``; that reduction's value is never read)."""
    if keepdims or (x.shape is None and axis is None):
        return g
    if x.shape is None:
        return F.reshape_like(g, F.reduce_sum(x, axis=axis, keepdims=True))
    for a in normalize_axes(axis, x.rank):
        g = F.expand_dims(g, axis=a)
    return g


def _sum_vjp(g, out, x, axis=None, keepdims=False):
    return [F.broadcast_like(_kept(g, x, axis, keepdims), x)]


def _mean_vjp(g, out, x, axis=None, keepdims=False):
    if x.shape is None:  # reduced axes known when the step is specialized: sizes' ratio
        count = F.dim_size(x, axes=None) / F.dim_size(out, axes=None)
    else:
        count = F.dim_size(x, axes=normalize_axes(axis, x.rank))
    return [F.broadcast_like(_kept(g, x, axis, keepdims) / count, x)]


def _extreme_vjp(g, out, x, axis=None, keepdims=False):
    hit = F.cast(F.equal(x, F.broadcast_like(_kept(out, x, axis, keepdims), x)), dtype=x.dtype)
    ties = F.reduce_sum(hit, axis=axis, keepdims=True)
    return [F.broadcast_like(_kept(g, x, axis, keepdims) / ties, x) * hit]


def empty_reduction(kind, dtype):
    """The value of reduction ``kind`` ("sum", "mean", "max", "min") over an empty axis."""
    dt = np.dtype(dtype)
    if kind == "sum":
        return dt.type(0)
    if kind == "mean":
        return dt.type(np.nan if dt.kind == "f" else 0)
    if dt.kind == "f":
        return dt.type(-np.inf if kind == "max" else np.inf)
    info = np.iinfo(dt)
    return dt.type(info.min if kind == "max" else info.max)


def reduce_reference(kind, fn, x, axes, keepdims):
    """``fn(x, axis=axes, keepdims=keepdims)`` in ``x``'s dtype; ``empty_reduction`` over
    an empty axis (NumPy raises for max and min, and gives NaN for an integer mean)."""
    x = np.asarray(x)
    axes = tuple(axes)
    if any(x.shape[a] == 0 for a in axes):
        shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape)) if keepdims \
            else tuple(d for i, d in enumerate(x.shape) if i not in axes)
        return np.full(shape, empty_reduction(kind, x.dtype), x.dtype)
    # TF keeps the input's dtype (NumPy's sum widens int32 to int64)
    return np.asarray(fn(x, axis=axes, keepdims=keepdims)).astype(x.dtype)


def _axes_kw(axis, keepdims):
    return {"axis": axis, "keepdims": keepdims}


def _reducer(kind, fn):
    def impl(x, axis=None, keepdims=False):
        return reduce_reference(kind, fn, x, normalize_axes(axis, np.ndim(x)), keepdims)
    return impl


REDUCE_SUM = defop("reduce_sum", _reduce_infer("fi"), _sum_vjp,
                   impl=_reducer("sum", np.sum), family="reduce", reduce="sum",
                   linear="first", tf_name="Sum")
# An integer mean truncates toward zero, as TF's (the float mean cast back to the input dtype).
REDUCE_MEAN = defop("reduce_mean", _reduce_infer("fi"), _mean_vjp,
                    impl=_reducer("mean", np.mean), family="reduce", reduce="mean",
                    linear="first", tf_name="Mean")
REDUCE_MAX = defop("reduce_max", _reduce_infer("fi"), _extreme_vjp,
                   impl=_reducer("max", np.max), family="reduce", reduce="max", tf_name="Max")
REDUCE_MIN = defop("reduce_min", _reduce_infer("fi"), _extreme_vjp,
                   impl=_reducer("min", np.min), family="reduce", reduce="min", tf_name="Min")


# -- summing a gradient back to an input's shape, decided once shapes are concrete ------------
def _sum_to_like_examples(node):
    """Axes broadcasting added are summed; the others tie, also to ``like``'s."""
    g, like = node.inputs
    lead = len(g.shape) - len(like.shape)
    entries = [(0, k, "sum") for k in range(lead)]
    for i, d in enumerate(like.shape):
        entries.append((0, lead + i, "sum") if d == 1 and g.shape[lead + i] != 1
                       else (0, lead + i, i))
        entries.append((1, i, i))
    return entries


def _sum_to_like_infer(nodes):
    g, like = nodes
    return g.dtype, like.shape


def sum_to_like_impl(g, like):
    """Sum ``g`` over the axes broadcasting added to reach it from ``like``'s shape."""
    shape = np.shape(like)
    lead = np.ndim(g) - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, d in enumerate(shape)
                                      if d == 1 and np.shape(g)[lead + i] != 1)
    return np.sum(g, axis=axes, keepdims=True).reshape(shape) if axes else np.asarray(g)


# Autodiff emits it only where static shapes cannot tell whether an input was broadcast (a
# None dim facing another None dim); once the step is specialized it is a plain reduce_sum or
# nothing. ``like``'s value is never read.
SUM_TO_LIKE = defop("sum_to_like", _sum_to_like_infer,
                    lambda g, out, x, like: [F.broadcast_like(g, x), None],
                    impl=sum_to_like_impl, family="reduce", shape_only=(1,),
                    linear="first", examples=lambda node: _sum_to_like_examples(node),
                    doc="g summed down to the shape of the second input")


def _arg_infer(nodes, axis=0, output_type=D.int64):
    (x,) = nodes
    a = normalize_axis(axis, x.rank)
    require(x.shape[a] != 0, f"Reduction axis {a} is empty in shape "
            f"[{','.join('?' if d is None else str(d) for d in x.shape)}]",
            hint="an empty axis has no largest or smallest entry: guard it with gc.cond, "
                 "or reduce_max / reduce_min (their identity over an empty axis)",
            kind="argument")
    return D.as_dtype(output_type), tuple(d for i, d in enumerate(x.shape) if i != a)


def _argreduce(fn):
    def impl(x, axis=0, output_type=D.int64):
        return np.asarray(fn(x, axis=axis)).astype(D.as_dtype(output_type).np)
    return impl


def _arg_examples(node):
    """Axes other than the one searched tie; the searched one mixes its rows."""
    (x,) = node.inputs
    a = normalize_axis(node.attrs.get("axis", 0), len(x.shape))
    return [(0, k, k if k < a else k - 1) for k in range(len(x.shape)) if k != a]


ARGMAX = defop("argmax", _arg_infer, ZERO, impl=_argreduce(np.argmax), family="reduce",
               tf_name="ArgMax", examples=_arg_examples)
ARGMIN = defop("argmin", _arg_infer, ZERO, impl=_argreduce(np.argmin), family="reduce",
               tf_name="ArgMin", examples=_arg_examples)
