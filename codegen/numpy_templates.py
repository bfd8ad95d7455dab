"""One-line NumPy renderings of the non-elementwise ops: ``TEMPLATES[op](node, args) -> str``.

Ops without a template call their reference kernel (copied into the generated module).
Shapes are concrete here, so axes and shapes are rendered as literals.
"""
from ..ir.ops.indexing import spec_to_index
from ..ir.shapes import normalize_axes


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


def _reduce(fn):
    def render(n, a):
        axes = normalize_axes(n.attrs.get("axis"), n.inputs[0].rank)
        kd = bool(n.attrs.get("keepdims", False))
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
}


# -- renderings into a planned buffer: OUT_TEMPLATES[op](node, args, out, scratch) -> lines -----
# ``scratch(shape, dtype, busy)`` names an array the step preallocates once (not in busy). The kernels repeat the
# reference implementations' operations in the same order, so results are bit for bit equal.
# Label lookups (``take_along_axis``) still make small index temporaries of batch size.

def _out_matmul(n, a, o, scratch):
    return [f"np.matmul({_swap(a[0], n.attrs.get('transpose_a'))}, "
            f"{_swap(a[1], n.attrs.get('transpose_b'))}, out={o})"]


def _out_reduce(fn):
    def render(n, a, o, scratch):
        axes = normalize_axes(n.attrs.get("axis"), n.inputs[0].rank)
        kd = bool(n.attrs.get("keepdims", False))
        dt = f", dtype=np.{n.dtype.np.name}" if fn == "sum" else ""
        return [f"np.{fn}({a[0]}, axis={axes!r}, keepdims={kd}{dt}, out={o})"]
    return render


def _out_arg(fn):
    def render(n, a, o, scratch):
        axis = n.attrs.get("axis", 0)
        if n.dtype.np.name == "int64":
            return [f"np.{fn}({a[0]}, axis={axis}, out={o})"]
        return [f"np.copyto({o}, np.{fn}({a[0]}, axis={axis}), casting='unsafe')"]
    return render


def _rows(n, scratch):
    x = n.inputs[0]
    return scratch(tuple(x.shape[:-1]) + (1,), x.dtype.np)


def _shifted_lines(n, x, o, scratch):
    """``o = x - rowmax`` with 0 where ``x`` equals its row max (``ir.ops.nn.shifted_logits``:
    an all -inf row stays finite). The mask is taken first: ``o`` may be ``x``'s buffer."""
    r = _rows(n, scratch)
    mask = scratch(tuple(n.inputs[0].shape), "bool")
    return r, [f"np.max({x}, axis=-1, keepdims=True, out={r})",
               f"np.equal({x}, {r}, out={mask})", f"np.subtract({x}, {r}, out={o})",
               f"np.copyto({o}, 0.0, where={mask})"]


def _out_softmax(n, a, o, scratch):
    r, lines = _shifted_lines(n, a[0], o, scratch)
    return lines + [f"np.exp({o}, out={o})", f"np.sum({o}, axis=-1, keepdims=True, out={r})",
                    f"np.divide({o}, {r}, out={o})"]


def _log_softmax_lines(n, x, o, scratch):
    r, lines = _shifted_lines(n, x, o, scratch)
    e = scratch(tuple(n.inputs[0].shape), n.inputs[0].dtype.np, {o, x})
    return lines + [f"np.exp({o}, out={e})", f"np.sum({e}, axis=-1, keepdims=True, out={r})",
                    f"np.log({r}, out={r})", f"np.subtract({o}, {r}, out={o})"]


def _out_log_softmax(n, a, o, scratch):
    return _log_softmax_lines(n, a[0], o, scratch)


def _labels(a):
    return f"np.asarray({a[1]})[..., None].astype(np.int64)"


def _out_sparse_xent(n, a, o, scratch):
    lsm = scratch(tuple(n.inputs[0].shape), n.inputs[0].dtype.np)
    return _log_softmax_lines(n, a[0], lsm, scratch) + [
        f"np.negative(np.take_along_axis({lsm}, {_labels(a)}, axis=-1)[..., 0], out={o})"]


def _out_sparse_xent_grad(n, a, o, scratch):
    return _out_softmax(n, a, o, scratch) + [
        f"_y = {_labels(a)}",
        f"np.put_along_axis({o}, _y, np.take_along_axis({o}, _y, axis=-1) - 1, axis=-1)"]


def _out_slice_grad(n, a, o, scratch):
    return [f"{o}.fill(0)", f"{o}[{_index_literal(n.attrs['spec'])}] = {a[0]}"]


OUT_TEMPLATES = {
    "matmul": _out_matmul,
    "reduce_sum": _out_reduce("sum"), "reduce_mean": _out_reduce("mean"),
    "reduce_max": _out_reduce("max"), "reduce_min": _out_reduce("min"),
    "argmax": _out_arg("argmax"), "argmin": _out_arg("argmin"),
    "transpose": lambda n, a, o, s: [f"np.copyto({o}, np.transpose({a[0]}, "
                                     f"{attr_literal(n.attrs.get('perm'))}))"],
    "broadcast_to": lambda n, a, o, s: [f"np.copyto({o}, {a[0]})"],
    "broadcast_like": lambda n, a, o, s: [f"np.copyto({o}, {a[0]})"],
    "identity": lambda n, a, o, s: [f"np.copyto({o}, {a[0]})"],
    "concat": lambda n, a, o, s: [f"np.concatenate(({', '.join(a)},), "
                                  f"axis={n.attrs['axis']}, out={o})"],
    "stack": lambda n, a, o, s: [f"np.stack(({', '.join(a)},), "
                                 f"axis={n.attrs.get('axis', 0)}, out={o})"],
    "strided_slice": lambda n, a, o, s: [f"np.copyto({o}, "
                                         f"{a[0]}[{_index_literal(n.attrs['spec'])}])"],
    "strided_slice_grad": _out_slice_grad,
    "gather": lambda n, a, o, s: [f"np.take({a[0]}, {a[1]}, "
                                  f"axis={n.attrs.get('axis', 0)}, out={o})"],
    "softmax": _out_softmax, "log_softmax": _out_log_softmax,
    "sparse_softmax_xent": _out_sparse_xent, "sparse_softmax_xent_grad": _out_sparse_xent_grad,
}
