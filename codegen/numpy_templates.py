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
        return f"np.asarray(np.{fn}({a[0]}, axis={axes!r}, keepdims={kd}{dt}))"
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
