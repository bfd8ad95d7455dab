"""NaN/Inf checks in native steps: the ``check_numerics`` op, and the numerics-checked build.

One kernel shape serves both: a loop over a float value that, at the first NaN or Inf,
writes status ``STATUS_NUMERICS`` and the flat index into the status block and returns; the
step then stops (``Lowering.call(..., fallible=...)``) and the runtime raises. Each check
also records a ``runtime.numerics.NumericsSite`` in the layout, saying which node it checks
and where the value lives, so the runtime reads the value after the step stopped and raises
the NumPy backend's very message (``runtime.numerics.numerics_error``).

``check_numerics=True`` (``lower_program(..., checks=("numerics",))``) checks every float
feed and variable at entry, then every node's float value right after its kernel, in
schedule order: the first bad node is the one reported, as in the NumPy backend. Such builds
also keep every value (no folded producer/consumer kernels, no accumulated GEMMs; the pass
pipeline already ran without fusion and in-place writes). A build without checks emits none
of this.
"""
import numpy as np

from graphc.runtime.numerics import NumericsSite

from ..ir import Function, float_literal, val_type
from ..registry import lowers
from ..loops import params

STATUS_NUMERICS = 3  # runtime.llvm_step.STATUS_MESSAGES: "NaN or Inf at flat index"


def numerics_function(dtype, count, noalias):
    """``kernel(%p0 value, %p1 status)``: status = (3, -, flat index) at the first NaN/Inf."""
    fn = Function("kernel", params(2, noalias))
    t = val_type(dtype)
    with fn.loop(count) as lp:
        v = fn.load(t, fn.gep(t, "%p0", lp.i))
        absv = fn.call(t, f"llvm.fabs.{'f32' if t == 'float' else 'f64'}", [(t, v)])
        bad = fn(f"fcmp ueq {t} {absv}, {float_literal(np.inf, dtype)}")
        bad = fn(f"or i1 {bad}, {fn(f'fcmp uno {t} {v}, {v}')}")
        with fn.if_then(bad):
            fn.store("i64", str(STATUS_NUMERICS), "%p1")
            fn.store("i64", lp.i, fn.gep("i64", "%p1", 2))
            fn.ret()
            fn.block(fn.label("dead"))
    fn.ret()
    return fn


def _record(L, node, buf, message=None):
    """The site of the check just called (the layout's latest ``node_names`` entry)."""
    L.layout.numerics.append(NumericsSite.of(
        node, message, entry=len(L.layout.node_names) - 1, slot=buf.slot, offset=buf.offset,
        shape=tuple(node.shape), dtype=node.dtype.np.name))


@lowers("check_numerics")
def lower_check_numerics(L, n):
    """Stop the step with a status (NumericsError) at the first NaN or Inf of the input; the
    value itself is the input's storage (a view), so nothing is copied."""
    x = n.inputs[0]
    if not x.dtype.is_floating:
        return
    count = int(np.prod(x.shape, dtype=np.int64))
    fn = numerics_function(x.dtype, count, L.noalias([L.buf(x), L.status()]))
    where = f" at {n.loc.short}" if getattr(n.loc, "lineno", None) else ""
    label = f"check_numerics '{n.node_name}' ({n.attrs.get('message', '')}){where}"
    L.call(fn, [L.buf(x), L.status()], n, fallible=label)
    _record(L, n, L.buf(x), n.attrs.get("message", ""))


def checked(L, n):
    """Whether the numerics-checked build checks node ``n`` after its kernel: every float
    value a kernel computes or an assign stores (as the NumPy backend: an assigned constant
    is caught there), not constants or views of checked values (an explicit check checks its
    own input)."""
    return (n.dtype is not None and n.dtype.is_floating and n.size != 0
            and not (n.opdef.leaf or n.opdef.compile_time) and n.op_name != "check_numerics"
            and not L.storage.is_view(n))


def check_value(L, n):
    """Check the value of ``n`` (a leaf at entry, or a node right after its kernel; an
    assign's value is in its input's buffer)."""
    if not n.dtype.is_floating or n.size == 0:
        return
    buf = L.buf(n.inputs[1] if n.op_name == "assign" else n)
    count = int(np.prod(n.shape, dtype=np.int64))
    fn = numerics_function(n.dtype, count, L.noalias([buf, L.status()]))
    L.flush()  # the node's own loop first (an elementwise group is emitted lazily)
    L.emit_call(fn, [buf, L.status()], n, fallible=f"{n.op_name} '{n.node_name}'",
                label=f"check_numerics of {n.op_name} '{n.node_name}'", prefix="check_numerics")
    _record(L, n, buf)
