"""Host calls: Python functions a compiled step calls in the middle of its schedule.

``tf.Print``, ``tf.print``, ``tf.Assert`` and ``tf.py_func`` run Python on tensor values
inside a step. The graph holds a ``host_call`` node whose ``key`` attribute names an entry of
this module's per-process registry; the callable itself never enters the IR (its text stays
printable and hashable), which is also why a step with host calls cannot be saved: a fresh
process has no such entry.

Both backends come here:
- generated NumPy code calls ``invoke(key, inputs, specs)`` from the op's reference kernel;
- native code calls the C entry point at ``callback_address()`` with a small int64
  descriptor (mode, key, output index, the inputs' and outputs' dtype codes and shapes) and an
  array of buffer pointers; inputs are wrapped as read-only NumPy views (no copies) and the
  results are copied into the output buffer. A Python exception cannot cross the C frame: it
  is kept in ``last_error``, the entry point returns non-zero, the kernel sets status code
  ``STATUS_HOST`` and the step stops; ``runtime.llvm_step`` then raises ``take_error()``.

A call has M declared outputs. The node's own value is output 0 (a bool ``True`` token when
M == 0); outputs 1..M-1 are ``host_output`` nodes reading the results the call left in a
per-thread stash (mode 1 of the descriptor).

This module imports only numpy, ctypes and graphc.errors: saved steps run without the compiler.
"""
import ctypes
import itertools
import threading

import numpy as np

from graphc.errors import GraphcError, InvalidArgumentError, UnknownError

__all__ = ["register", "describe", "invoke", "stashed", "callback_address", "take_error",
           "STATUS_HOST", "DTYPE_CODES", "HostFunction"]

STATUS_HOST = 4  # status word set by a native kernel whose host call failed
# Descriptor dtype codes (index into this tuple).
DTYPE_NAMES = ("float32", "float64", "int32", "int64", "bool", "int8", "int16", "uint8")
DTYPE_CODES = {name: k for k, name in enumerate(DTYPE_NAMES)}


class HostFunction:
    """One registry entry: the callable, and how errors name its node.

    Attributes:
        func: called with the input arrays; returns a sequence of M results (M outputs).
        label: ``op 'name'`` of the node, for messages (set by ``describe``).
        loc: the user's source location (an object with ``format()``), or None.
        calls: how many times the step called it (tests and diagnostics).
    """

    def __init__(self, func, label):
        self.func, self.label, self.loc, self.calls = func, label, None, 0


_registry = {}
_ids = itertools.count(1)
_local = threading.local()  # per-thread stash of the last results of each key
last_error = []


def register(func, label="host_call"):
    """Register ``func`` for host calls; returns its key (an int, unique in this process).

    Example:
        >>> key = register(lambda x: (x * 2,), "py_func 'double'")
    """
    key = next(_ids)
    _registry[key] = HostFunction(func, label)
    return key


def describe(key, label, loc=None):
    """Name the node calling ``key`` in error messages (known once the node exists)."""
    entry = _registry[key]
    entry.label, entry.loc = label, loc


def entry(key):
    """The HostFunction registered under ``key``.

    Raises:
        GraphcError: no such key in this process (a step built in another process).
    """
    try:
        return _registry[key]
    except KeyError:
        raise GraphcError(f"host_call: no Python function is registered under key {key} in "
                          "this process", hint="a step with tf.Print/tf.py_func runs only in "
                          "the process that built its graph") from None


def invoke(key, inputs, specs):
    """Call the function of ``key`` on ``inputs``; returns its M results, checked.

    The results are kept for ``stashed(key, k)`` (outputs 1..M-1 of the node).

    Args:
        key: a registry key.
        inputs: the input arrays (passed read-only).
        specs: per declared output, (NumPy dtype name, shape tuple).
    Returns:
        The list of results, each an array of its spec's dtype and shape.
    Raises:
        InvalidArgumentError: a result of the wrong count, dtype or shape (TF1's class).
        UnknownError: the function raised; the original exception is the ``__cause__``.
        GraphcError subclasses raised by the function (an Assert failing) pass unchanged.
    """
    fn = entry(key)
    fn.calls += 1
    args = [_read_only(a) for a in inputs]
    try:
        results = fn.func(*args)
    except GraphcError as exc:
        if exc.loc is None:
            exc.loc = fn.loc
            exc.args = (exc._render(),)
        raise
    except Exception as exc:  # noqa: BLE001  (named after the node, the cause kept)
        raise UnknownError(f"{fn.label}: the Python function raised {type(exc).__name__}: "
                           f"{exc}", loc=fn.loc) from exc
    results = _check_results(fn, results, specs)
    _stash()[key] = results
    return results


def stashed(key, index):
    """Result ``index`` of the last call of ``key`` in this thread (a ``host_output``)."""
    return _stash()[key][index]


def _stash():
    if not hasattr(_local, "results"):
        _local.results = {}
    return _local.results


def _read_only(a):
    a = np.asarray(a)
    if a.flags.writeable:
        a = a.view()
        a.flags.writeable = False
    return a


def _check_results(fn, results, specs):
    if not specs:
        return []
    if len(specs) == 1 and not isinstance(results, (list, tuple)):
        results = [results]
    if not isinstance(results, (list, tuple)) or len(results) != len(specs):
        count = len(results) if isinstance(results, (list, tuple)) else "a non-sequence"
        raise InvalidArgumentError(f"{fn.label}: the Python function returned {count} values, "
                                   f"the node declares {len(specs)} outputs", loc=fn.loc,
                                   hint="return one value per entry of Tout")
    return [_check_one(fn, k, r, dtype, shape)
            for k, (r, (dtype, shape)) in enumerate(zip(results, specs))]


def _check_one(fn, k, value, dtype, shape):
    """Result ``k`` as an array of ``dtype`` and ``shape``: Python numbers and lists take
    the declared dtype; NumPy values must already have it (TF1 refuses them otherwise)."""
    if isinstance(value, (np.ndarray, np.generic)):
        arr = np.asarray(value)
        if arr.dtype.name != dtype:
            raise InvalidArgumentError(
                f"{fn.label}: output {k} of the Python function is {arr.dtype.name}, the node "
                f"declares {dtype}", loc=fn.loc, hint=f"return .astype(np.{dtype}) or change Tout")
    else:
        try:
            arr = np.asarray(value, dtype=dtype)
        except (TypeError, ValueError) as exc:
            raise InvalidArgumentError(f"{fn.label}: output {k} of the Python function "
                                       f"({type(value).__name__}) is not a {dtype} array: {exc}",
                                       loc=fn.loc) from None
    if arr.shape != tuple(shape):
        raise InvalidArgumentError(
            f"{fn.label}: output {k} of the Python function has shape {list(arr.shape)}, the "
            f"node declares {list(shape)}", loc=fn.loc,
            hint="pass the output's shape with shape= (graphc needs static shapes)")
    return arr


# -- the C entry point native steps call -------------------------------------------------------
# int32 host_call(const int64 *descriptor, void **pointers); 0 is success. Descriptor:
# [mode, key, index, n_in, n_out, (dtype code, ndim, dims...) per input then per output].
# mode 0: call with pointers [inputs..., output 0]; mode 1: copy stashed result ``index``
# into pointers[0].
CALLBACK_TYPE = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p, ctypes.c_void_p)
_callback = []


def _parse(desc_addr):
    head = np.ctypeslib.as_array((ctypes.c_int64 * 5).from_address(desc_addr))
    mode, key, index, n_in, n_out = (int(v) for v in head)
    specs, pos = [], 5
    for _ in range(n_in + n_out):
        code, ndim = np.ctypeslib.as_array((ctypes.c_int64 * 2).from_address(desc_addr + 8 * pos))
        dims = np.ctypeslib.as_array((ctypes.c_int64 * int(ndim)).from_address(
            desc_addr + 8 * (pos + 2))) if ndim else ()
        specs.append((DTYPE_NAMES[int(code)], tuple(int(d) for d in dims)))
        pos += 2 + int(ndim)
    return mode, key, index, specs[:n_in], specs[n_in:]


def _wrap(addr, dtype, shape):
    """A NumPy view of the buffer at ``addr`` (no copy)."""
    count = int(np.prod(shape, dtype=np.int64))
    dt = np.dtype(dtype)
    if count == 0 or not addr:
        return np.zeros(shape, dt)
    raw = (ctypes.c_char * (count * dt.itemsize)).from_address(addr)
    return np.frombuffer(raw, dt, count).reshape(shape)


def _native_host_call(desc_addr, ptrs_addr):
    try:
        mode, key, index, ins, outs = _parse(desc_addr)
        ptrs = (ctypes.c_void_p * (len(ins) + 1)).from_address(ptrs_addr)
        if mode == 1:
            np.copyto(_wrap(ptrs[0], *outs[0]), stashed(key, index))
            return 0
        arrays = [_wrap(ptrs[k], d, s) for k, (d, s) in enumerate(ins)]
        results = invoke(key, arrays, outs)
        target = _wrap(ptrs[len(ins)], "bool", ()) if not outs else _wrap(ptrs[len(ins)], *outs[0])
        np.copyto(target, results[0] if outs else True)
        return 0
    except BaseException as exc:  # noqa: BLE001  (an exception cannot cross the C frame)
        last_error.append(exc)
        return 1


def callback_address():
    """The address of ``int32 host_call(const int64 *descriptor, void **pointers)``, the
    entry point native steps keep in the table slot named "host_call" (made once)."""
    if not _callback:
        _callback.append(CALLBACK_TYPE(_native_host_call))
    return ctypes.cast(_callback[0], ctypes.c_void_p).value


def take_error():
    """The exception a native host call kept (the step stopped after it), cleared."""
    exc = last_error.pop() if last_error else GraphcError("host_call failed")
    last_error.clear()
    return exc


def descriptor(mode, key, index, in_specs, out_specs):
    """The int64 descriptor of one native call site (see ``callback_address``)."""
    words = [mode, key, index, len(in_specs), len(out_specs)]
    for dtype, shape in list(in_specs) + list(out_specs):
        words += [DTYPE_CODES[dtype], len(shape)] + [int(d) for d in shape]
    return np.array(words, np.int64)


# -- the NumPy backend's kernels (copied into generated modules, which import only numpy and
# this module, when the step first calls them) -----------------------------------------------
def host_call_kernel(*inputs, key, outputs=()):
    """Call the registered function; its output 0 (or the True token of a call without
    outputs). ``outputs``: (dtype name, shape or the index of the input it matches)."""
    from graphc.runtime.host_calls import invoke
    specs = tuple((d, tuple(np.shape(inputs[s])) if isinstance(s, int) else tuple(s))
                  for d, s in outputs)
    results = invoke(key, inputs, specs)
    return results[0] if results else np.True_


def host_output_kernel(call, key, index):
    """Result ``index`` of the host call ``call`` that just ran."""
    from graphc.runtime.host_calls import stashed
    return stashed(key, index)
