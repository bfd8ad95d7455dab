"""LLVM kernels of ``host_call`` and ``host_output``: calls back into Python from native code.

As ``allreduce_mean`` calls MPI, a host call goes through a C entry point the runtime makes
at load time (``runtime.host_calls.callback_address()``), kept in the table slot "host_call":

    int32 host_call(const int64 *descriptor, void **pointers)

The descriptor is a constant of the step (its own table slot): the mode, the registry key,
the output index, and the dtype codes and shapes of the inputs and outputs, so the runtime can
wrap each buffer as a NumPy view without copying. The kernel stores the buffer pointers in a
small stack array and calls the entry point; a non-zero result (the Python function raised,
or returned a wrong dtype or shape) sets status code ``STATUS_HOST`` and leaves the kernel,
and the step stops right there (the call is fallible): nothing scheduled after it runs, and
the runtime raises the kept exception.
"""
from ....ir.ops.host import resolve_specs
from ....runtime.host_calls import STATUS_HOST, descriptor
from .collective import callback
from ..ir import Function
from ..registry import Buf, lowers
from ..loops import params
from .movement import exit_with_status


def _descriptor_buf(L, words):
    """A table slot holding the call site's int64 descriptor (a constant of the step)."""
    slot = L.new_slot()
    L.layout.consts.append((slot, words))
    return Buf(slot, 0, words.nbytes)


def _call_function(n_params, pointer_params):
    """The kernel: %p0 the entry point, %p1 the status block, %p2 the descriptor; the
    pointers array holds parameters ``pointer_params`` in order."""
    fn = Function("kernel", params(n_params, [False] * n_params))
    count = len(pointer_params)
    array = fn(f"alloca [{count} x ptr]", "ptrs")
    for j, k in enumerate(pointer_params):
        fn.store("ptr", f"%p{k}", fn.gep("ptr", array, j))
    result = fn(f"call i32 %p0(ptr %p2, ptr {array})", "r")
    exit_with_status(fn, fn(f"icmp ne i32 {result}, 0"), "%p1", STATUS_HOST, "0")
    fn.ret()
    return fn


def _emit(L, n, words, data_bufs):
    fixed = [callback(L, "host_call"), L.status(), _descriptor_buf(L, words)]
    uniq, index = L.distinct(data_bufs)
    fn = _call_function(3 + len(uniq), [3 + i for i in index])
    where = f" at {n.loc.short}" if getattr(n.loc, "lineno", None) else ""
    L.call(fn, fixed + uniq, n, fallible=f"{n.op_name} '{n.node_name}'{where}")


@lowers("host_call")
def lower_host_call(L, n):
    """Call the registered function on the input buffers; output 0 (or the token) to out."""
    ins = [(x.dtype.np.name, tuple(x.shape)) for x in n.inputs]
    outs = resolve_specs(n.attrs.get("outputs", ()), [x.shape for x in n.inputs])
    words = descriptor(0, n.attrs["key"], 0, ins, outs)
    _emit(L, n, words, [L.buf(x) for x in n.inputs] + [L.out(n)])


@lowers("host_output")
def lower_host_output(L, n):
    """Copy result ``index`` of the call that just ran into the node's buffer."""
    words = descriptor(1, n.attrs["key"], n.attrs["index"], [],
                       [(n.dtype.np.name, tuple(n.shape))])
    _emit(L, n, words, [L.out(n)])
