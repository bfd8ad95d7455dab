"""Shape and data-movement ops: reshape, transpose, expand/squeeze, broadcast, concat, stack,
strided slices, gather/scatter-add, one_hot, and the compile-time shape queries.

Ops whose output shape copies another tensor's (``reshape_like``, ``broadcast_like``,
``strided_slice_grad``, ``scatter_add``) take that tensor as an input, so gradients stay valid
while a placeholder's batch dim is still unknown; its value is never read.
"""
import numpy as np

from .. import dtypes as D
from ..shapes import RuleError, broadcast_shapes, format_shape, normalize_axes, normalize_axis
from .. import examples as E
from .registry import F, ZERO, defop, require


def _static(shape):
    return all(d is not None for d in shape)


def _reshape_to(g, x):
    return F.reshape(g, shape=x.shape) if _static(x.shape) else F.reshape_like(g, x)


# -- reshape ----------------------------------------------------------------------------------
def _reshape_infer(nodes, shape):
    (x,) = nodes
    if shape is None:  # a target whose length is known only when the step is specialized
        return x.dtype, None
    if None in shape:  # entries known when the step is specialized: checked then
        require(all(d is None or d >= -1 for d in shape) and list(shape).count(-1) <= 1,
                f"invalid target shape {format_shape(shape)}")
        return x.dtype, tuple(None if d in (None, -1) else d for d in shape)
    shape = tuple(int(d) for d in shape)
    # (each message is built only when its check fails)
    if sum(d == -1 for d in shape) > 1:
        require(False, f"at most one -1 allowed in shape {list(shape)}")
    if not all(d >= -1 for d in shape):
        require(False, f"negative dimension in shape {list(shape)}")
    known = int(np.prod([d for d in shape if d != -1])) if shape else 1
    total = None if not _static(x.shape) else int(np.prod(x.shape))
    if -1 in shape:
        if total is None:
            return x.dtype, tuple(None if d == -1 else d for d in shape)
        if not (known > 0 and total % known == 0):
            require(False, f"cannot reshape {x.type_str()} ({total} elements) to {list(shape)}")
        return x.dtype, tuple(total // known if d == -1 else d for d in shape)
    if not (total is None or total == known):
        require(False, f"cannot reshape {x.type_str()} ({total} elements) to {list(shape)} "
                f"({known} elements)")
    return x.dtype, shape


def _reshape_impl(x, shape):
    return np.reshape(x, shape)


RESHAPE = defop("reshape", _reshape_infer,
                lambda g, out, x, *static, shape: [_reshape_to(g, x)] + [None] * len(static),
                static_args={"shape": "ints"},
                impl=_reshape_impl, view=True, rearranges=True, family="shape",
                linear="first", tf_name="Reshape", examples=E.reshaped,
                example_attrs=E.shape_attr)
RESHAPE_LIKE = defop(
    "reshape_like", lambda nodes: (nodes[0].dtype, nodes[1].shape),
    lambda g, out, x, like: [_reshape_to(g, x), None],
    impl=lambda x, like: np.reshape(x, np.shape(like)), view=True, family="shape",
    shape_only=(1,), linear="first",
    examples=lambda node: E.reshaped(node) + E.same_shape((1,))(node))


# -- transpose, expand_dims, squeeze -----------------------------------------------------------
def _transpose_infer(nodes, perm=None):
    (x,) = nodes
    perm = tuple(reversed(range(x.rank))) if perm is None else tuple(perm)
    require(sorted(perm) == list(range(x.rank)),
            f"perm {list(perm)} is not a permutation of the {x.rank} axes of {x.type_str()}")
    return x.dtype, tuple(x.shape[p] for p in perm)


def _transpose_vjp(g, out, x, perm=None):
    perm = tuple(reversed(range(x.rank))) if perm is None else tuple(perm)
    return [F.transpose(g, perm=tuple(int(i) for i in np.argsort(perm)))]


def _transpose_examples(node):
    rank = len(node.shape)
    perm = node.attrs.get("perm")
    perm = tuple(reversed(range(rank))) if perm is None else tuple(perm)
    return [(0, p, j) for j, p in enumerate(perm)]


TRANSPOSE = defop("transpose", _transpose_infer, _transpose_vjp,
                  impl=lambda x, perm=None: np.transpose(x, perm), family="shape",
                  rearranges=True, linear="first", tf_name="transpose",
                  examples=_transpose_examples)


def _expand_infer(nodes, axis):
    (x,) = nodes
    a = normalize_axis(axis, x.rank + 1)
    return x.dtype, x.shape[:a] + (1,) + x.shape[a:]


EXPAND_DIMS = defop("expand_dims", _expand_infer, lambda g, out, x, axis: [_reshape_to(g, x)],
                    impl=lambda x, axis: np.expand_dims(x, axis), view=True,
                    rearranges=True, family="shape", linear="first", tf_name="ExpandDims",
                    examples=E.reshaped)


def _squeeze_axes(x, axis):
    if axis is None:
        return tuple(i for i, d in enumerate(x.shape) if d == 1)
    axes = normalize_axes(axis, x.rank)
    for a in axes:
        if x.shape[a] not in (1, None):
            require(False,
                    f"cannot squeeze axis {a} of {x.type_str()}: its size is {x.shape[a]}, not 1")
    return axes


def _squeeze_infer(nodes, axis=None):
    (x,) = nodes
    axes = _squeeze_axes(x, axis)
    return x.dtype, tuple(d for i, d in enumerate(x.shape) if i not in axes)


def _squeeze_impl(x, axis=None):
    if axis is None:
        return np.squeeze(x)
    return np.squeeze(x, tuple(normalize_axes(axis, np.ndim(x))))


SQUEEZE = defop("squeeze", _squeeze_infer, lambda g, out, x, axis=None: [_reshape_to(g, x)],
                impl=_squeeze_impl, view=True, rearranges=True, family="shape",
                linear="first", tf_name="Squeeze", examples=E.reshaped)


# -- broadcasting -------------------------------------------------------------------------------
def _broadcast_to_infer(nodes, shape):
    (x,) = nodes
    if shape is None:  # a target whose length is known only when the step is specialized
        return x.dtype, None
    shape = tuple(shape)
    if not all(d is None or d >= 0 for d in shape):  # (each message only on failure)
        require(False, f"negative dimension in shape {format_shape(shape)}")
    try:
        out = broadcast_shapes(x.shape, shape)
    except RuleError as e:
        raise RuleError(f"cannot broadcast {x.type_str()} to {format_shape(shape)}",
                        e.details, e.hint) from None
    out = tuple(None if s is None else o for o, s in zip(out, shape))
    # (an input dim unknown against a target's 1, as TF1: checked once fed)
    if not (len(out) == len(shape)
            and all(s is None or o == s or o is None for o, s in zip(out, shape))):
        require(False, f"cannot broadcast {x.type_str()} to {format_shape(shape)}")
    return x.dtype, shape


# The driver sums the gradient back to the input's shape: the VJP is the identity.
BROADCAST_TO = defop("broadcast_to", _broadcast_to_infer,
                     lambda g, out, x, *static, shape: [g] + [None] * len(static),
                     static_args={"shape": "ints"},
                     impl=lambda x, shape: np.broadcast_to(x, shape).copy(), family="shape",
                     rearranges=True, linear="first", tf_name="BroadcastTo",
                     examples=E.elementwise, example_attrs=E.shape_attr)
BROADCAST_LIKE = defop(
    "broadcast_like",
    lambda nodes: (nodes[0].dtype, broadcast_shapes(nodes[0].shape, nodes[1].shape)),
    lambda g, out, x, like: [g, None],
    impl=lambda x, like: np.broadcast_to(x, np.broadcast_shapes(np.shape(x), np.shape(like)))
    .copy(), family="shape", shape_only=(1,), linear="first", examples=E.elementwise)


# -- concat and stack ---------------------------------------------------------------------------
def _concat_infer(nodes, axis):
    require(len(nodes) >= 1, "needs at least one tensor")
    first = nodes[0]
    a = normalize_axis(axis, first.rank)
    total = 0
    for n in nodes:
        require(n.dtype == first.dtype, f"mixed dtypes {first.dtype.name} and {n.dtype.name}",
                kind="dtype")
        require(n.rank == first.rank, f"ranks differ: {first.type_str()} and {n.type_str()}")
        for i, (p, q) in enumerate(zip(first.shape, n.shape)):
            if i != a and p is not None and q is not None:
                require(p == q, f"shapes differ off the concat axis: {first.type_str()} and "
                        f"{n.type_str()}", [f"axis {i}: {p} vs {q}"])
        total = None if total is None or n.shape[a] is None else total + n.shape[a]
    return first.dtype, first.shape[:a] + (total,) + first.shape[a + 1:]


def _slice_along(g, rank, axis, start, stop):
    spec = tuple(("s", None, None, None) if i != axis else ("s", start, stop, None)
                 for i in range(rank))
    return F.strided_slice(g, spec=spec)


def _concat_vjp(g, out, *xs, axis):
    a = normalize_axis(axis, out.rank)
    if any(x.shape[a] is None for x in xs):  # offsets known once the step is specialized
        return [F.concat_slice(g, *xs, axis=a, index=i) for i in range(len(xs))]
    grads, off = [], 0
    for x in xs:
        grads.append(_slice_along(g, out.rank, a, off, off + x.shape[a]))
        off += x.shape[a]
    return grads


def _concat_examples(node):
    """Every axis but the one joined ties (rows of the joined axis come from one input)."""
    rank = len(node.shape)
    a = normalize_axis(node.attrs["axis"], rank)
    return [(i, k, k) for i in range(len(node.inputs)) for k in range(rank) if k != a]


CONCAT = defop("concat", _concat_infer, _concat_vjp,
               impl=lambda *xs, axis: np.concatenate(xs, axis=axis), family="shape",
               tf_name="concat", examples=_concat_examples)


def concat_slice_impl(g, *xs, axis, index):
    """The part of ``g`` that input ``index`` of ``concat(xs, axis)`` occupies."""
    start = sum(np.shape(x)[axis] for x in xs[:index])
    stop = start + np.shape(xs[index])[axis]
    return np.array(g[(slice(None),) * axis + (slice(start, stop),)])


def _concat_slice_vjp(gy, out, g, *xs, axis, index):
    """Zeros shaped like the other inputs around ``gy``: the concat this slice came from."""
    parts = [gy if j == index else F.zeros_like(x) for j, x in enumerate(xs)]
    return [F.concat(*parts, axis=axis)] + [None] * len(xs)


# The concat gradient when sizes along the axis are unknown; the inputs' values are not read.
CONCAT_SLICE = defop(
    "concat_slice", lambda nodes, axis, index: (nodes[0].dtype, nodes[1 + index].shape),
    _concat_slice_vjp, impl=concat_slice_impl, family="shape",
    doc="the slice of the first input that input 1+index of a concat on axis occupies")


def _stack_infer(nodes, axis=0):
    first = nodes[0]
    a = normalize_axis(axis, first.rank + 1)
    for n in nodes:
        if not (n.dtype == first.dtype and n.shape == first.shape):  # (message on failure)
            require(False,
                    f"stack needs equal shapes and dtypes: {first.type_str()} vs {n.type_str()}")
    return first.dtype, first.shape[:a] + (len(nodes),) + first.shape[a:]


def _stack_vjp(g, out, *xs, axis=0):
    a = normalize_axis(axis, out.rank)
    return [F.strided_slice(g, spec=tuple(("i", i) if d == a else ("s", None, None, None)
                                          for d in range(out.rank))) for i in range(len(xs))]


def _stack_examples(node):
    a = normalize_axis(node.attrs.get("axis", 0), len(node.shape))
    return [(i, k, k if k < a else k + 1) for i in range(len(node.inputs))
            for k in range(len(node.shape) - 1)]


STACK = defop("stack", _stack_infer, _stack_vjp,
              impl=lambda *xs, axis=0: np.stack(xs, axis=axis), family="shape", tf_name="stack",
              examples=_stack_examples)


# -- range: a sequence known when the step is specialized ---------------------------------------
def _range_infer(nodes, start, limit, delta, dtype):
    if None in (start, limit, delta):  # bounds known when the step is specialized
        return D.as_dtype(dtype), (None,)
    require(delta != 0, "delta must not be 0", kind="argument")
    return D.as_dtype(dtype), (len(np.arange(start, limit, delta)),)


def range_impl(start, limit, delta, dtype):
    """``np.arange(start, limit, delta)`` in ``dtype`` (a DType, NumPy type or name)."""
    return np.arange(start, limit, delta).astype(getattr(dtype, "np", dtype))


# Built only with a pending bound (gc.range makes a constant otherwise); once the bounds
# resolve, ``specialize`` replaces the node by its value (no backend has a range kernel).
RANGE = defop("range", _range_infer, ZERO, impl=range_impl, family="shape",
              static_args={"start": "number", "limit": "number", "delta": "number"},
              doc="start, start + delta, ... below limit (bounds known at specialization)")
