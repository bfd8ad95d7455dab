"""Matrix transposes in vector registers.

A transpose read or written one element at a time with a large stride costs a cache line per
element; a 256x256 float32 transpose took about 160k cycles that way here, more than the GEMM
it fed saved. Instead each n x n block (n = the vector length) is transposed in registers
(``register_transpose.transpose_block``), and the rows and columns that do not fill a block
are copied element by element.
"""
from . import gemm as llvm_gemm
from ..ir import KERNEL_ATTRS, Function, mem_type
from ..loops import params
from .register_transpose import transpose_block


def block_size(dtype):
    """Elements per side of a register block (the vector length), or 1 (no vectors)."""
    unit = llvm_gemm.vector_unit()
    return unit.bytes // dtype.itemsize if unit else 1


def transpose_function(dtype, rows, cols, noalias):
    """A kernel writing ``%p0[c, r] = %p1[r, c]`` for a dense ``rows x cols`` matrix."""
    n = block_size(dtype)
    attrs = KERNEL_ATTRS
    if n > 1:
        bits = n * dtype.itemsize * 8
        attrs += f' "prefer-vector-width"="{bits}" "min-legal-vector-width"="{bits}"'
    fn = Function("kernel", params(2, noalias), attrs=attrs)
    t = mem_type(dtype)  # bytes moved: a bool is a byte here, never a packed i1 vector
    fr, fc = (rows // n, cols // n) if n > 1 else (0, 0)
    if fr and fc:
        with fn.loop(fr, "ib") as li, fn.loop(fc, "jb") as lj:
            _block(fn, t, n, fn.mul(li.i, n), fn.mul(lj.i, n), rows, cols)
    _scalar(fn, t, (fr * n, rows), (0, cols), rows, cols)       # rows below the blocks
    _scalar(fn, t, (0, fr * n), (fc * n, cols), rows, cols)     # columns right of them
    fn.ret()
    return fn


def transpose_into(L, dst, src, rows, cols, dtype, node):
    """Emit ``dst = src^T`` for a dense ``rows x cols`` matrix in buffer ``src``."""
    uniq, _ = L.distinct([dst, src])
    if len(uniq) != 2 or dst.overlaps(src):
        raise ValueError("transpose_into needs two disjoint buffers")
    L.call(L.built(transpose_function, dtype, rows, cols, tuple(L.noalias(uniq))), uniq, node)


def _scalar(fn, t, row_range, col_range, rows, cols):
    (r0, r1), (c0, c1) = row_range, col_range
    if r1 <= r0 or c1 <= c0:
        return
    with fn.loop(r1 - r0, "r") as lr, fn.loop(c1 - c0, "c") as lc:
        r, c = fn.add(lr.i, r0), fn.add(lc.i, c0)
        v = fn.load(t, fn.gep(t, "%p1", fn.add(fn.mul(r, cols), c)))
        fn.store(t, v, fn.gep(t, "%p0", fn.add(fn.mul(c, rows), r)))


def _block(fn, t, n, i0, j0, rows, cols):
    src = fn.gep(t, "%p1", fn.add(fn.mul(i0, cols), j0))
    transpose_block(fn, t, n, src, cols, fn.gep(t, "%p0", fn.add(fn.mul(j0, rows), i0)), rows)


__all__ = ["transpose_function", "transpose_into", "transpose_block", "block_size"]
