"""Host calls: a compiled step calling a registered Python function (Print, Assert, py_func).

``host_call(*inputs, key=k, outputs=specs)`` calls the function registered under ``k`` in
``graphc.runtime.host_calls`` with the input arrays, at its place in the schedule. The
function is not part of the IR, only its key: the dump stays text and the key is stable for
the process. ``outputs`` declares the M results, one ``(dtype name, shape)`` each, where a
shape is a tuple of ints or an int ``i`` meaning "the shape of input i" (resolved when the
graph is specialized, so a placeholder's None batch dim is fine).

The node's own value is output 0, or a bool ``True`` token when M == 0 (``tf.print`` and
``tf.Assert``: the token orders the step through control dependencies). Outputs 1..M-1 are
``host_output(call, key=k, index=i)`` nodes: they read what the call left behind, and
depending on the call node they run after it.

Both ops are impure: never merged, folded or recomputed, and they run in schedule order (an
unused host call is dropped like any unused node, as in TF1). They are not differentiable:
their VJP is ZERO, as TF1 declares PyFunc non-differentiable (gradients through them are
zero); ``tf.Print`` is an identity whose gradient flows (``after``, see graphc.debug_ops).
"""

from ..shapes import format_shape
from .registry import ZERO, defop, require

_DTYPES = ("float32", "float64", "int32", "int64", "bool", "int8", "int16", "uint8")


def resolve_specs(outputs, input_shapes):
    """((dtype name, shape tuple), ...) of ``outputs`` with input-relative shapes resolved."""
    return tuple((d, tuple(input_shapes[s]) if isinstance(s, int) else tuple(s))
                 for d, s in outputs)


def _output_type(spec, inputs, k):
    dtype, shape = spec
    require(dtype in _DTYPES, f"output {k} has dtype {dtype!r}; host calls return one of "
            f"{', '.join(_DTYPES)}", kind="dtype")
    if isinstance(shape, int):
        require(0 <= shape < len(inputs), f"output {k} takes the shape of input {shape}, but "
                f"the call has {len(inputs)} inputs")
        return dtype, inputs[shape].shape  # static once the graph is specialized
    require(shape is not None and None not in shape,
            f"output {k} has shape {format_shape(shape)}: host call outputs need static "
            "shapes", hint="pass shape= with the output's dims, or the input it matches")
    return dtype, tuple(shape)


def _host_call_infer(nodes, key, outputs=()):
    from .. import dtypes as D
    types = [_output_type(spec, nodes, k) for k, spec in enumerate(outputs)]
    if not types:
        return D.bool_, ()
    return D.as_dtype(types[0][0]), types[0][1]


def _host_output_infer(nodes, key, index):
    from .. import dtypes as D
    (call,) = nodes
    while call.op_name == "after":  # built under control_dependencies
        call = call.inputs[0]
    require(call.op_name == "host_call" and call.attrs["key"] == key,
            "host_output reads the host_call node of its key")
    outputs = call.attrs.get("outputs", ())
    require(0 < index < len(outputs), f"host_output index {index} outside 1..{len(outputs) - 1}")
    dtype, shape = _output_type(outputs[index], call.inputs, index)
    return D.as_dtype(dtype), shape


HOST_CALL = defop(
    "host_call", _host_call_infer, ZERO, impure=True, family="host",
    may_fail=True,  # the function may raise, an Assert fail, a py_func return a wrong shape
    doc="call a registered Python function on the inputs; its output 0 (or a True token)")
HOST_OUTPUT = defop(
    "host_output", _host_output_infer, ZERO, impure=True, family="host",
    doc="output ``index`` (>= 1) of the host call it reads")
