"""LLVM kernel of ``allreduce_mean``: a call back into the runtime's MPI allreduce.

Native code cannot talk MPI by itself without linking an MPI library into the object code
(which would tie a saved step to one MPI build). Instead the step's pointer table holds the
address of a C entry point the runtime makes at load time
(``runtime.collectives.callback_address``: a ctypes function around mpi4py's ``Allreduce``),
and the kernel calls it on the packed gradient buffer, exactly as matmul calls BLAS gemm
through a table slot. The buffer is averaged in place; when the plan did not store the result
over the packed buffer, the buffer is first copied into the result (no-op when in place).
"""
from ....runtime.collectives import DTYPE_CODES
from ..ir import Function
from ..loops import params
from ..registry import Buf, lowers


def callback(L, name):
    """The table slot (as a Buf) holding the runtime entry point ``name``."""
    key = f"callback_{name}"
    if key not in L._slot_of:
        L.layout.callbacks.append((L._special(key), name))
    return Buf(L._slot_of[key], 0, 0)


@lowers("allreduce_mean")
def lower_allreduce_mean(L, n):
    out = L.out(n)
    L.copy(out, L.buf(n.inputs[0]), n.shape, n.dtype, n)
    fn = Function("kernel", params(2, [False, False]))
    fn.emit(f"call void %p0(ptr %p1, i64 {int(n.shape[0])}, "
            f"i32 {DTYPE_CODES[n.dtype.np.name]})")
    fn.ret()
    L.call(fn, [callback(L, "allreduce_mean"), out], n)
