"""Python inside a compiled step: TF1's ``tf.Print``, ``tf.print``, ``tf.Assert``, ``tf.py_func``.

Each builds one ``host_call`` node (``ir/ops/host.py``): the compiled step calls a Python
function, registered in ``graphc.runtime.host_calls`` under a key the node carries, at the
node's place in the schedule, on both backends (NumPy: a call from the generated code; LLVM:
a C callback through the step's pointer table, the input buffers wrapped without copies).

- ``Print(x, data)`` is ``x`` itself (an ``after`` view: gradients flow through it as an
  identity) that runs the print first, so it prints whenever something needs ``x``.
- ``print(...)`` and ``Assert(...)`` return an op (a ``group``: fetching it gives None) to
  fetch or to list in ``control_dependencies``.
- ``py_func(func, inp, Tout)`` returns tensors of the ``Tout`` dtypes. graphc's shapes are
  static, so their shapes are needed: ``shape=`` (a graphc keyword; TF1 scripts call
  ``set_shape`` instead) gives each output's dims, or an input tensor whose shape it has.
  Gradients through a py_func are zero (TF1 declares PyFunc non-differentiable; graphc's
  convention for non-differentiable ops is a zero gradient, not None).

A step holding host calls runs only in the process that built it: ``step.save`` refuses it.
"""
import sys

import numpy as np

from ..errors import GraphError, InvalidArgumentError
from ..ir import dtypes as D
from ..ir.graph import Node
from ..ir.ops.registry import apply, convert
from ..runtime import host_calls

__all__ = ["Print", "print_", "Assert", "py_func", "numpy_function"]


def check_numerics(tensor, message, name=None):
    """``tensor`` unchanged, after checking it has no NaN or Inf (TF1's tf.check_numerics).

    Running a step where it does raises ``NumericsError`` naming this node, its line and
    ``message``; the gradient through it is checked too.
    Example:
        >>> logits = gc.check_numerics(h @ W + b, "logits")
    """
    return apply("check_numerics", [tensor], {"message": str(message)}, name=name)


def verify_tensor_all_finite(t, msg, name=None, x=None, message=None):
    """TF1's ``verify_tensor_all_finite``: ``check_numerics(t, msg)`` under its other name
    (``x=``/``message=`` are TF1's later argument names)."""
    return check_numerics(t if x is None else x, msg if message is None else message, name)


def add_check_numerics_ops():
    """One op checking every floating tensor built so far for NaN and Inf (TF1's
    ``add_check_numerics_ops``); run it with the step: ``sess.run([train_op, check])``.

    Unlike TF1 it leaves out effects (``assign``, random draws, host calls): checking their
    values would make fetching the op run them. Fetching it computes the checked tensors,
    so fetch it alongside the tensors a step computes anyway.

    Returns:
        A ``group`` op (fetching it gives None).
    Raises:
        NumericsError: when run, naming the first tensor found holding NaN or Inf.
    Example:
        >>> check = gc.add_check_numerics_ops()
        >>> sess.run([train_op, check], feeds)
    """
    from ..framework.graph import group
    from ..ir.graph import get_default_graph
    graph = get_default_graph()
    checks = [check_numerics(n, f"{n.node_name} holds NaN or Inf")
              for n in list(graph.nodes)
              if n.dtype is not None and n.dtype.is_floating and not n.opdef.impure
              and n.op_name not in ("check_numerics", "const")]
    return group(*checks, name="CheckNumerics")


def _tensors_and_text(items):
    """Split ``items`` into graph inputs and a formatter: strings (and other non-tensors
    that are not array-like) are kept in Python; tensors and arrays become inputs."""
    parts, inputs = [], []
    for item in items:
        if isinstance(item, str):
            parts.append(item)
        else:
            parts.append(len(inputs))
            inputs.append(convert(item))
    return parts, inputs


def _register(func, api, inputs, outputs, name):
    """A ``host_call`` node calling ``func``, named for error messages."""
    key = host_calls.register(func, api)
    node = apply("host_call", inputs, {"key": key, "outputs": tuple(outputs)}, name=name)
    host_calls.describe(key, f"{api} '{node.node_name}'", node.loc)
    return node


def _op(token, name):
    from ..framework.graph import group
    return group(token, name=name)


def _stream(output_stream):
    """A function giving the stream at run time: sys.stderr/stdout are looked up when the
    step prints, so redirections (pytest's capture, contextlib.redirect_stderr) apply."""
    if output_stream is None or output_stream in (sys.stderr, sys.__stderr__):
        return lambda: sys.stderr
    if output_stream in (sys.stdout, sys.__stdout__):
        return lambda: sys.stdout
    return lambda: output_stream


# -- tf.Print ----------------------------------------------------------------------------------
def summarize_first(a, n):
    """TF1's Print rendering on one line: nested brackets, the first ``n`` elements (all when
    None), ``...`` where it stops: ``[[0 1 2]...]``; a scalar is ``[5]``."""
    left = [np.inf if n is None else n]

    def nested(x):
        parts, cut = [], False
        for sub in x:
            if left[0] <= 0:
                cut = True
                break
            if sub.ndim == 0:
                parts.append(str(sub))
                left[0] -= 1
            else:
                parts.append(nested(sub))
        return "[" + (" " if x.ndim == 1 else "").join(parts) + ("...]" if cut else "]")

    a = np.asarray(a)
    return nested(a.reshape(1) if a.ndim == 0 else a)


def Print(input_, data, message=None, first_n=None, summarize=None, name=None):  # noqa: N802
    """``input_`` unchanged; computing it prints ``message`` and the values of ``data``.

    TF1's ``tf.Print``: each run that needs the result writes one line to stderr: the message,
    then each tensor of ``data`` in brackets (its first ``summarize`` elements, 3 by default,
    then ``...``). The result is an identity for gradients.

    Args:
        input_: the tensor passed through.
        data: tensors (or strings) to print.
        message: text printed first.
        first_n: print only the first ``first_n`` runs (None or negative: every run).
        summarize: elements shown per tensor (default 3; negative: all).
        name: the node's name.
    Returns:
        A tensor equal to ``input_``.
    Example:
        >>> h = gc.Print(h, [gc.reduce_mean(h), loss], "h mean, loss: ")
    """
    x = convert(input_)
    parts, inputs = _tensors_and_text(data if isinstance(data, (list, tuple)) else [data])
    shown = 3 if summarize is None else (None if summarize < 0 else int(summarize))
    count = [0]

    def show(*arrays):
        if first_n is not None and 0 <= first_n <= count[0]:
            return
        count[0] += 1
        text = "".join(p if isinstance(p, str) else summarize_first(arrays[p], shown)
                       for p in parts)
        sys.stderr.write((message or "") + text + "\n")

    token = _register(show, "Print", inputs, (), (name or "Print") + "/print")
    return apply("after", [x, token], name=name or "Print")


# -- tf.print ----------------------------------------------------------------------------------
def format_value(a, summarize):
    """tf.print's rendering: NumPy's, ``summarize`` items at each end of long axes."""
    a = np.asarray(a)
    if a.ndim == 0:
        return str(a.item())
    if summarize is None or summarize < 0:
        return np.array2string(a, separator=" ", threshold=sys.maxsize)
    return np.array2string(a, separator=" ", threshold=0, edgeitems=max(int(summarize), 1))


def print_(*inputs, output_stream=None, sep=" ", end="\n", summarize=3, name=None):
    """An op that prints ``inputs`` (strings and tensors) each time it runs (``tf.print``).

    Args:
        *inputs: strings are printed as they are, tensors with NumPy's printing.
        output_stream: a file object; default (and ``sys.stderr``/``sys.stdout``) means the
            process's current stream when the step runs.
        sep, end: as in Python's print.
        summarize: items shown at each end of a long axis (None or -1: all).
        name: the node's name.
    Returns:
        An op (fetching it gives None); run it by fetching it or through
        ``control_dependencies``.
    Example:
        >>> with gc.control_dependencies([gc.print("loss:", loss)]):
        ...     train_op = opt.minimize(loss)
    """
    parts, nodes = _tensors_and_text(inputs)
    stream = _stream(output_stream)

    def show(*arrays):
        text = sep.join(p if isinstance(p, str) else format_value(arrays[p], summarize)
                        for p in parts)
        stream().write(text + end)

    return _op(_register(show, "print", nodes, (), (name or "print") + "/call"), name)


# -- tf.Assert ---------------------------------------------------------------------------------
def Assert(condition, data, summarize=None, name=None):  # noqa: N802
    """An op that raises ``gc.errors.InvalidArgumentError`` when ``condition`` is False.

    TF1's ``tf.Assert``: the error (raised by ``Session.run`` or the compiled step) shows the
    values of ``data`` and names the node and the line that created it. On the LLVM backend
    the step stops at the assertion: nothing scheduled after it runs.

    Args:
        condition: a scalar bool tensor.
        data: tensors (or strings) shown when it fails.
        summarize: elements shown per tensor (default 3; negative: all).
        name: the node's name.
    Returns:
        An op; list it in ``control_dependencies`` (or fetch it) so that it runs.
    Raises:
        GraphError: ``condition`` is not a scalar bool.
    Example:
        >>> ok = gc.Assert(gc.reduce_all(x >= 0), ["x has negatives:", x])
        >>> with gc.control_dependencies([ok]):
        ...     y = gc.sqrt(x)
    """
    cond = convert(condition)
    if cond.dtype != D.bool_ or cond.shape != ():
        raise GraphError(f"Assert: the condition must be a scalar bool, found "
                         f"{cond.type_str()}", loc=cond.loc,
                         hint="reduce it with gc.reduce_all")
    parts, inputs = _tensors_and_text(data if isinstance(data, (list, tuple)) else [data])
    shown = 3 if summarize is None else (None if summarize < 0 else int(summarize))
    label = []

    def check(ok, *arrays):
        if not bool(ok):
            text = " ".join(p if isinstance(p, str) else summarize_first(arrays[p], shown)
                            for p in parts)
            raise InvalidArgumentError(f"{label[0]}: assertion failed: {text}".rstrip(),
                                       hint="the step stopped at the assertion")

    node = _register(check, "Assert", [cond] + inputs, (), (name or "Assert") + "/check")
    label.append(f"Assert '{node.node_name}'")
    return _op(node, name or "Assert")


# -- tf.py_func ----------------------------------------------------------------------------------
def _shape_spec(shape, inputs, k, where):
    """One output's shape attribute: a tuple of ints, or the index of the input it copies."""
    if isinstance(shape, (list, tuple)) and len(shape) == 1 and isinstance(shape[0], Node):
        shape = shape[0]  # shape=[x]: the shape of input x
    if isinstance(shape, Node):
        for i, x in enumerate(inputs):
            if x is shape:
                return i
        raise GraphError(f"{where}: shape of output {k} is given as tensor "
                         f"'{shape.node_name}', which is not an input of the call",
                         hint="pass one of inp, or the dims")
    try:
        dims = [None if d is None else int(getattr(d, "value", d)) for d in
                (shape.as_list() if hasattr(shape, "as_list") else shape)]
    except (TypeError, ValueError):
        raise GraphError(f"{where}: shape of output {k} must be dims or an input tensor, "
                         f"found {shape!r}") from None
    if None in dims:
        raise GraphError(f"{where}: output {k} has shape {dims}: graphc needs static shapes",
                         hint="give the dims, or the input tensor whose shape it has "
                              "(shape=[x])")
    return tuple(dims)


def py_func(func, inp, Tout, stateful=True, name=None, shape=None):  # noqa: N803
    """Call ``func`` on the values of ``inp`` inside the step (TF1's ``tf.py_func``).

    ``func`` gets NumPy arrays (read-only views, valid during the call: copy to keep them) and
    returns one value per ``Tout`` dtype (NumPy values must have that dtype exactly; Python
    numbers and lists are converted). It runs each time a result is needed, in schedule order.

    Args:
        func: the Python function.
        inp: list of input tensors.
        Tout: a dtype (one result, returned as a tensor) or a list of dtypes (a list).
        stateful: accepted; every host call is treated as stateful (never merged).
        name: the node's name.
        shape: graphc's addition: the output's shape (dims), or an input tensor whose shape it
            has; for a list ``Tout``, a list of those. Required: graphc's shapes are static.
    Returns:
        A tensor, or a list of tensors; an op when ``Tout`` is an empty list.
    Raises:
        GraphError: an output's shape is not given or not static.
    Example:
        >>> y = gc.py_func(lambda a: np.sort(a), [x], gc.float32, shape=[x])
    """
    single = not isinstance(Tout, (list, tuple))
    touts = [Tout] if single else list(Tout)
    inputs = [convert(x) for x in (inp if isinstance(inp, (list, tuple)) else [inp])]
    where = f"py_func '{name or 'PyFunc'}'"
    shapes = [shape] if single else (shape if shape is not None else [None] * len(touts))
    if shape is None and touts:
        raise GraphError(f"{where}: graphc needs the static shape of each output",
                         hint="pass shape=[dims] (or shape=[x] for the shape of input x); for "
                              "several outputs, a list of those")
    if len(shapes) != len(touts):
        raise GraphError(f"{where}: {len(touts)} outputs but {len(shapes)} shapes")
    outputs = [(D.as_dtype(t).np.name, _shape_spec(s, inputs, k, where))
               for k, (t, s) in enumerate(zip(touts, shapes))]
    node = _register(func, "py_func", inputs, outputs, name or "PyFunc")
    if not touts:
        return _op(node, None)
    key = node.attrs["key"]
    outs = [node] + [apply("host_output", [node], {"key": key, "index": k},
                           name=f"{node.node_name}/output{k}") for k in range(1, len(touts))]
    return outs[0] if single else outs


def numpy_function(func, inp, Tout, stateful=True, name=None, shape=None):  # noqa: N803
    """``py_func`` under TF 1.15's newer name (same arguments and behaviour)."""
    return py_func(func, inp, Tout, stateful=stateful, name=name, shape=shape)


# -- tf.debugging.assert_* -----------------------------------------------------------------------
def _assert_all(holds, what, tensors, data, summarize, message, name):
    """``Assert(reduce_all(holds), ...)`` with TF1's message: the condition, then the values."""
    from .reduction_ops import reduce_all
    if data is None:
        data = [f"{message + ': ' if message else ''}Condition {what} did not hold "
                "element-wise:"]
        for label, t in tensors:
            data += [f"{label} ({t.node_name}) =", t]
    return Assert(reduce_all(holds), data, summarize=summarize, name=name)


def assert_equal(x, y, data=None, summarize=None, message=None, name=None):
    """An op failing (InvalidArgumentError) unless ``x == y`` everywhere (TF1's form).

    Example:
        >>> with gc.control_dependencies([gc.debugging.assert_equal(gc.shape(a), [2, 3])]):
        ...     b = a * 2.0
    """
    x = convert(x)
    y = convert(y, x)
    return _assert_all(apply("equal", [x, y]), "x == y", [("x", x), ("y", y)], data,
                       summarize, message, name or "assert_equal")


def assert_less(x, y, data=None, summarize=None, message=None, name=None):
    """An op failing (InvalidArgumentError) unless ``x < y`` everywhere."""
    x = convert(x)
    y = convert(y, x)
    return _assert_all(apply("less", [x, y]), "x < y", [("x", x), ("y", y)], data,
                       summarize, message, name or "assert_less")


def assert_positive(x, data=None, summarize=None, message=None, name=None):
    """An op failing (InvalidArgumentError) unless ``x > 0`` everywhere."""
    x = convert(x)
    return _assert_all(apply("greater", [x, convert(0, x)]), "x > 0", [("x", x)], data,
                       summarize, message, name or "assert_positive")


def assert_non_negative(x, data=None, summarize=None, message=None, name=None):
    """An op failing (InvalidArgumentError) unless ``x >= 0`` everywhere."""
    x = convert(x)
    return _assert_all(apply("greater_equal", [x, convert(0, x)]), "x >= 0", [("x", x)], data,
                       summarize, message, name or "assert_non_negative")


class _Debugging:
    """``tf.debugging``: the assertions above, Assert and check_numerics under one name."""

    def __init__(self):
        self.Assert, self.check_numerics = Assert, check_numerics
        self.assert_equal, self.assert_less = assert_equal, assert_less
        self.assert_positive, self.assert_non_negative = assert_positive, assert_non_negative

    def __repr__(self):
        return "<module 'graphc.debugging'>"


def debugging_namespace():
    """The ``gc.debugging`` object (made once, by graphc/__init__.py)."""
    return _Debugging()
