"""One-line NumPy renderings of the non-elementwise ops: ``TEMPLATES[op](node, args) -> str``.

Ops without a template call their reference kernel (copied into the generated module).
Shapes are concrete here, so axes and shapes are rendered as literals.
"""
import numpy as np

from ...ir.ops.indexing import spec_to_index
from ...ir.ops.nn import dense_xent_grad_impl, dense_xent_impl
from ...ir.ops.reduce import empty_reduction
from ...ir.shapes import normalize_axes
from ...runtime import collectives, host_calls


def attr_literal(v):
    """Python source for an attribute value (DTypes become NumPy dtypes)."""
    if hasattr(v, "np") and hasattr(v, "short"):
        return f"np.{v.np.name}"
    if isinstance(v, tuple):
        return "(" + "".join(attr_literal(x) + ", " for x in v) + ")"
    return repr(v)


def _index_literal(spec):
    parts = []
    for k in spec_to_index(spec):
        if isinstance(k, slice):
            parts.append(":".join("" if x is None else str(x) for x in (k.start, k.stop))
                         + ("" if k.step is None else f":{k.step}"))
        else:
            parts.append(str(k))
    return ", ".join(parts) if parts else "..."


def _swap(name, flag):
    return f"{name}.swapaxes(-1, -2)" if flag else name


def empty_literal(kind, dtype):
    """Source for reduction ``kind``'s value over an empty axis (``ir.ops.reduce``)."""
    v = empty_reduction(kind, dtype).item()
    if isinstance(v, float) and (np.isnan(v) or np.isinf(v)):
        return "np.nan" if np.isnan(v) else ("np.inf" if v > 0 else "-np.inf")
    return repr(v)


def reduced_count(shape, axes):
    """How many values each output of a reduction over ``axes`` of ``shape`` reduces."""
    return int(np.prod([shape[a] for a in axes], dtype=np.int64))


def reduce_call(kind, x, axes, keepdims, shape, dtype):
    """``np.<kind>(x, ...)`` of an array of ``shape``, or its value over an empty axis (NumPy
    raises for max and min, and an integer mean would be NaN cast)."""
    if reduced_count(shape, axes) == 0:
        out = tuple(1 if i in axes else d for i, d in enumerate(shape)) if keepdims \
            else tuple(d for i, d in enumerate(shape) if i not in axes)
        return f"np.full({out!r}, {empty_literal(kind, dtype)}, np.{np.dtype(dtype).name})"
    return f"np.asarray(np.{kind}({x}, axis={tuple(axes)!r}, keepdims={bool(keepdims)}))"


def _reduce(fn):
    def render(n, a):
        axes = normalize_axes(n.attrs.get("axis"), n.inputs[0].rank)
        kd = bool(n.attrs.get("keepdims", False))
        if reduced_count(n.inputs[0].shape, axes) == 0:
            return reduce_call(fn, a[0], axes, kd, n.inputs[0].shape, n.dtype.np)
        dt = f", dtype=np.{n.dtype.np.name}" if fn == "sum" else ""  # int32 stays int32
        text = f"np.asarray(np.{fn}({a[0]}, axis={axes!r}, keepdims={kd}{dt}))"
        if fn == "mean" and not n.dtype.is_floating:  # TF's integer mean truncates
            text += f".astype(np.{n.dtype.np.name})"
        return text
    return render


def _arg(fn):
    def render(n, a):
        return f"np.{fn}({a[0]}, axis={n.attrs.get('axis', 0)}).astype(np.{n.dtype.np.name})"
    return render


TEMPLATES = {
    "matmul": lambda n, a: f"np.matmul({_swap(a[0], n.attrs.get('transpose_a'))}, "
                           f"{_swap(a[1], n.attrs.get('transpose_b'))})",
    "subtract_matmul": lambda n, a: (f"{a[0]} - np.matmul("
                                     f"{_swap(a[1], n.attrs.get('transpose_a'))}, "
                                     f"{_swap(a[2], n.attrs.get('transpose_b'))})"),
    "reduce_sum": _reduce("sum"), "reduce_mean": _reduce("mean"),
    "reduce_max": _reduce("max"), "reduce_min": _reduce("min"),
    "argmax": _arg("argmax"), "argmin": _arg("argmin"),
    "reshape": lambda n, a: f"{a[0]}.reshape({n.shape!r})",
    "reshape_like": lambda n, a: f"{a[0]}.reshape({n.shape!r})",
    "expand_dims": lambda n, a: f"{a[0]}.reshape({n.shape!r})",
    "squeeze": lambda n, a: f"{a[0]}.reshape({n.shape!r})",
    "transpose": lambda n, a: f"np.transpose({a[0]}, {attr_literal(n.attrs.get('perm'))})",
    "broadcast_to": lambda n, a: f"np.broadcast_to({a[0]}, {n.shape!r}).copy()",
    "broadcast_like": lambda n, a: f"np.broadcast_to({a[0]}, {n.shape!r}).copy()",
    "concat": lambda n, a: f"np.concatenate(({', '.join(a)},), axis={n.attrs['axis']})",
    "stack": lambda n, a: f"np.stack(({', '.join(a)},), axis={n.attrs.get('axis', 0)})",
    "strided_slice": lambda n, a: f"np.array({a[0]}[{_index_literal(n.attrs['spec'])}])",
    "gather": lambda n, a: f"np.take({a[0]}, {a[1]}, axis={n.attrs.get('axis', 0)})",
    "identity": lambda n, a: a[0],
    "after": lambda n, a: a[0],
    "check_index": lambda n, a: a[0],  # checked by the line before (index_lines)
}


# -- renderings into a planned buffer: OUT_TEMPLATES[op](node, args, out, em) -> lines ---------
# ``em`` is the planned emitter: ``em.scratch(shape, dtype, busy)`` names an array preallocated
# once (not one of ``busy``), ``em.reserve(shape, dtype)`` one kept for this node alone,
# ``em.const_array(value)`` a constant bound at load time, ``em.shared`` what a kernel leaves
# for a later one. Kernels repeat the reference implementations' operations in the same order
# (reductions through ``ufunc.reduce``, what ``np.sum`` calls), so results are bit for bit
# equal. Label lookups index with (row, label) pairs, as the reference's ``take_along_axis``
# does; labels and indices were checked by the line before (``Emitter.index_lines``).

_REDUCE_UFUNC = {"sum": "add", "mean": "add", "max": "maximum", "min": "minimum"}


def reduce_lines(kind, x, axes, keepdims, out, dtype, count=None):
    """``reduce_<kind>`` of ``x`` into ``out`` with ufunc.reduce (mean: sum, then divide);
    over an empty axis (``count`` 0), its value there (``ir.ops.reduce.empty_reduction``)."""
    if count == 0:
        return [f"{out}.fill({empty_literal(kind, dtype)})"]
    dt = f", dtype=np.{dtype}" if kind == "sum" else ""
    lines = [f"np.{_REDUCE_UFUNC[kind]}.reduce({x}, axis={tuple(axes)!r}{dt}, out={out}, "
             f"keepdims={bool(keepdims)})"]
    if kind == "mean":  # as np.mean: an intp count, so float32 divides in float64 and rounds
        lines.append(f"np.divide({out}, np.intp({count}), out={out}, casting='unsafe')")
    return lines


def _out_matmul(n, a, o, em):
    return [f"np.matmul({_swap(a[0], n.attrs.get('transpose_a'))}, "
            f"{_swap(a[1], n.attrs.get('transpose_b'))}, out={o})"]


def _out_subtract_matmul(n, a, o, em):
    """The product into scratch, then subtracted from input 0 (``o`` may be its bytes)."""
    p = em.scratch(tuple(n.shape), n.dtype.np, {o, *a})
    return [f"np.matmul({_swap(a[1], n.attrs.get('transpose_a'))}, "
            f"{_swap(a[2], n.attrs.get('transpose_b'))}, out={p})",
            f"np.subtract({a[0]}, {p}, out={o})"]


def _out_reduce(kind):
    def render(n, a, o, em):
        x = n.inputs[0]
        axes = normalize_axes(n.attrs.get("axis"), x.rank)
        count = 1
        for ax in axes:
            count *= x.shape[ax]
        return reduce_lines(kind, a[0], axes, n.attrs.get("keepdims", False), o,
                            n.dtype.np.name, count)
    return render


def _out_arg(fn):
    def render(n, a, o, em):
        axis = n.attrs.get("axis", 0)
        if n.dtype.np.name == "int64":
            return [f"np.{fn}({a[0]}, axis={axis}, out={o})"]
        return [f"np.copyto({o}, np.{fn}({a[0]}, axis={axis}), casting='unsafe')"]
    return render


def _row_shape(n):
    return tuple(n.inputs[0].shape[:-1]) + (1,)


def _shifted_lines(n, x, o, em):
    """``o = x - rowmax`` with 0 where ``x`` equals its row max (``ir.ops.nn.shifted_logits``:
    an all -inf row stays finite); returns (row scratch, lines). The mask is taken first:
    ``o`` may be ``x``'s buffer."""
    r = em.scratch(_row_shape(n), n.dtype.np)
    mask = em.scratch(tuple(n.inputs[0].shape), "bool")
    return r, [f"np.maximum.reduce({x}, axis=-1, out={r}, keepdims=True)",
               f"np.equal({x}, {r}, out={mask})", f"np.subtract({x}, {r}, out={o})",
               f"np.copyto({o}, 0.0, where={mask})"]


def _out_softmax(n, a, o, em):
    r, lines = _shifted_lines(n, a[0], o, em)
    return lines + [f"np.exp({o}, out={o})", f"np.add.reduce({o}, axis=-1, out={r}, "
                    "keepdims=True)", f"np.divide({o}, {r}, out={o})"]


def _log_softmax_lines(n, x, o, em, keep=None):
    """log_softmax(x) into ``o``; ``keep`` = (e, s) names to leave exp(shifted) and its row
    sums in (for the gradient's softmax), else scratch."""
    r, lines = _shifted_lines(n, x, o, em)
    dt = n.inputs[0].dtype.np
    e, s = keep if keep else (em.scratch(tuple(n.inputs[0].shape), dt, {o, x}), r)
    lines += [f"np.exp({o}, out={e})", f"np.add.reduce({e}, axis=-1, out={s}, keepdims=True)"]
    return lines + [f"np.log({s}, out={r})", f"np.subtract({o}, {r}, out={o})"]


def _out_log_softmax(n, a, o, em):
    return _log_softmax_lines(n, a[0], o, em)


def _pick(n, em, lsm, y):
    """The (row, label) lookup of 2-D logits, or take_along_axis for more dims."""
    if n.inputs[0].rank == 2:
        rows = em.const_array(np.arange(n.inputs[0].shape[0]))
        return f"{lsm}[{rows}, {y}]"
    return (f"np.take_along_axis({lsm}, np.asarray({y})[..., None].astype(np.int64), "
            "axis=-1)[..., 0]")


def _out_sparse_xent(n, a, o, em):
    """-log_softmax(z)[y]; when the gradient of the same logits follows, exp(shifted) and its
    row sums are kept for it (``em.shared``), so the softmax is computed once."""
    z = n.inputs[0]
    keep = None
    if em.has_partner(n, "sparse_softmax_xent_grad"):
        keep = (em.reserve(tuple(z.shape), z.dtype.np), em.reserve(_row_shape(n), z.dtype.np))
        em.shared[("softmax", id(z), id(n.inputs[1]))] = keep
    return _sparse_xent_lines(n, a, o, em, keep)


def _sparse_xent_lines(n, a, o, em, keep):
    z = n.inputs[0]
    lsm = em.scratch(tuple(z.shape), z.dtype.np)
    return _log_softmax_lines(n, a[0], lsm, em, keep) + [
        f"np.negative({_pick(n, em, lsm, a[1])}, out={o})"]


def _out_sparse_xent_grad(n, a, o, em):
    return _sparse_grad_lines(n, a, o, em,
                              em.shared.get(("softmax", id(n.inputs[0]), id(n.inputs[1]))))


def _sparse_grad_lines(n, a, o, em, keep):
    """softmax(z) - one_hot(y) into ``o``, from ``keep`` = (exp(shifted), row sums) if given."""
    if keep is not None:
        lines = [f"np.divide({keep[0]}, {keep[1]}, out={o})"]
    else:
        lines = _out_softmax(n, a, o, em)
    if n.inputs[0].rank == 2:
        rows = em.const_array(np.arange(n.inputs[0].shape[0]))
        return lines + [f"{o}[{rows}, {a[1]}] -= 1"]
    return lines + [
        f"_y = np.asarray({a[1]})[..., None].astype(np.int64)",
        f"np.put_along_axis({o}, _y, np.take_along_axis({o}, _y, axis=-1) - 1, axis=-1)"]


def _out_sparse_xent_with_grad(n, a, o, em):
    """The losses, kept for ``kept_loss`` (``em.shared``), then the gradient from the same
    exponentials and sums; the logits are read before ``o`` (which may be theirs) is written."""
    z = n.inputs[0]
    keep = (em.reserve(tuple(z.shape), z.dtype.np), em.reserve(_row_shape(n), z.dtype.np))
    kept = em.reserve(tuple(z.shape[:-1]), z.dtype.np)
    em.shared[("kept_loss", id(n))] = kept
    return _sparse_xent_lines(n, a, kept, em, keep) + _sparse_grad_lines(n, a, o, em, keep)


def _out_dense_xent_with_grad(n, a, o, em):
    """The losses, kept for ``kept_loss``, then the gradient, each by its op's reference: the
    logits are read before ``o`` (which may be theirs) is written."""
    z = n.inputs[0]
    kept = em.reserve(tuple(z.shape[:-1]), z.dtype.np)
    em.shared[("kept_loss", id(n))] = kept
    loss, grad = em.kernel(dense_xent_impl), em.kernel(dense_xent_grad_impl)
    return [f"np.copyto({kept}, {loss}({a[0]}, {a[1]}))",
            f"np.copyto({o}, {grad}({a[0]}, {a[1]}))"]


def _out_slice_grad(n, a, o, em):
    return [f"{o}.fill(0)", f"{o}[{_index_literal(n.attrs['spec'])}] = {a[0]}"]


def _copy(n, a, o, em):
    return [f"np.copyto({o}, {a[0]})"]


OUT_TEMPLATES = {
    "matmul": _out_matmul, "subtract_matmul": _out_subtract_matmul,
    "reduce_sum": _out_reduce("sum"), "reduce_mean": _out_reduce("mean"),
    "reduce_max": _out_reduce("max"), "reduce_min": _out_reduce("min"),
    "argmax": _out_arg("argmax"), "argmin": _out_arg("argmin"),
    "transpose": lambda n, a, o, em: [f"np.copyto({o}, np.transpose({a[0]}, "
                                      f"{attr_literal(n.attrs.get('perm'))}))"],
    "broadcast_to": _copy, "broadcast_like": _copy, "identity": _copy, "check_index": _copy,
    "concat": lambda n, a, o, em: [f"np.concatenate(({', '.join(a)},), "
                                   f"axis={n.attrs['axis']}, out={o})"],
    "stack": lambda n, a, o, em: [f"np.stack(({', '.join(a)},), "
                                  f"axis={n.attrs.get('axis', 0)}, out={o})"],
    "strided_slice": lambda n, a, o, em: [f"np.copyto({o}, "
                                          f"{a[0]}[{_index_literal(n.attrs['spec'])}])"],
    "strided_slice_grad": _out_slice_grad,
    "gather": lambda n, a, o, em: [f"np.take({a[0]}, {a[1]}, "
                                   f"axis={n.attrs.get('axis', 0)}, out={o})"],
    "softmax": _out_softmax, "log_softmax": _out_log_softmax,
    "sparse_softmax_xent": _out_sparse_xent, "sparse_softmax_xent_grad": _out_sparse_xent_grad,
    "sparse_softmax_xent_with_grad": _out_sparse_xent_with_grad,
    "softmax_xent_with_grad": _out_dense_xent_with_grad,
    "kept_loss": lambda n, a, o, em: [
        f"np.copyto({o}, {em.shared[('kept_loss', id(n.inputs[0]))]})"],
}


# Ops whose kernel is the runtime's (they call back into Python or MPI): copied into the
# generated module like a reference kernel, but ir declares no implementation for them.
RUNTIME_KERNELS = {"host_call": host_calls.host_call_kernel,
                   "host_output": host_calls.host_output_kernel,
                   "allreduce_mean": collectives.allreduce_mean_kernel}


def kernel_of(n):
    """The Python function computing node ``n`` (the runtime's, else the op's reference)."""
    return RUNTIME_KERNELS.get(n.op_name) or n.opdef.impl
