"""Small GEMMs as native register-blocked loops instead of BLAS calls.

An unrolled RNN or a small MLP makes many GEMMs of a few hundred thousand multiply-adds
(W3: 93 of shape 32x128x128). BLAS spends a good part of each on what pays off only for big
matrices: packing both operands into its blocked layouts and dispatching. Here a small GEMM is
written straight into the step as explicit vector code (the shape of the register-blocked
"micro-kernel" at the heart of every BLAS, but for one known shape, mostly without packing):

    for each column panel j0 (NV vectors of the row: NV * lanes columns):
        for each row block i0 (MR rows):
            acc[MR][NV] = 0 (or C's tile, to accumulate)
            for k in 0..K-1:
                b[v] = B[k, j0 + v*lanes ...]          NV vector loads
                a    = splat(A[i0 + r, k])              MR broadcasts
                acc[r][v] += a * b[v]                   MR * NV fused multiply-adds
            C tile = acc

The MR * NV accumulators stay in vector registers over the whole K loop; a B panel (K rows of
NV vectors) is reused from cache by every row block. When B's rows lie far apart (a wide B:
``PACK_ROW_BYTES``) the panel's rows share a few cache sets and would be fetched again for every
row block, so the panel is copied, ``PACK_DEPTH`` rows of K at a time, into a contiguous block
on the stack that stays in L1, and the row blocks run over each block in turn, adding into C
(K-blocking; the order of the sum does not change, see ``_panel``). A transposed A only
changes where the broadcast scalars come from; a transposed B would need strided vector loads,
so its panels are always packed, transposed on the way in register blocks (one panel only:
the lowering copies B^T contiguous first; one B^T read by many GEMMs: ``gemm_acc`` does).
Columns that do not fill a vector use a narrower vector type (``<10 x float>``): LLVM
legalizes it into pieces that never touch memory past the row. Sizes above
``NATIVE_MAX_MACS`` go to BLAS, whose blocking for L2/L3 wins there, unless BLAS computes with
narrower vectors than the host (``WIDE_HOST_MAX_MACS``). On several threads a GEMM runs in
chunks of column panels or of row blocks (``_split``); a tall GEMM with a B past L2's
budget in chunks of rows, K block by K block (``_row_chunks``).

The summation order over K is the same sequential order a naive loop has, so results differ
from BLAS only by rounding (checked against the NumPy reference in tests).

What follows the sum can happen in registers as each tile is stored: an update's subtraction
(``subtract_matmul``: ``C = W - op(A) B``) or an elementwise epilogue (``fused_matmul``:
``C = body(op(A) B, others)``, a bias and ReLU, a ReLU's gradient mask), where each tile is
stored once with its whole sum (``stores_tiles_once``: B read in place, or packed in one block
of K). At 2 threads the epilogue's pass runs in the GEMM's chunks on both cores, where a
separate elementwise loop of 32k elements ran on one: W1 3-5% and W5 4-6% faster a step.
"""
import os
from typing import NamedTuple

from ....runtime.blas import kernel_vector_bytes
from ....runtime.jit import VectorUnit, host_vector_unit  # noqa: F401  (VectorUnit: kernels' name)
from .. import parallel
from .register_transpose import transpose_block, transpose_rows
from .vector_body import render_vector
from ..ir import KERNEL_ATTRS, VECTOR_CODE, Function, val_type
from ..loops import coalesce, loop_nest, params

# Multiply-adds (M*N*K) up to which a GEMM is written natively, BLAS above, by the number of
# threads BLAS would use. One thread: the native loops match OpenBLAS up to this size or beat
# it (AVX2, GFLOP/s native vs OpenBLAS: 128x256x784 43.8 vs 44.3, 784x256x128 (A^T) 42.3 vs
# 44.4, 32x128x128 44.8 vs 36.9, 128x512x512 44.3 vs 39.6); above it BLAS's cache blocking
# takes over. Threads: native GEMMs split over graphc's pool beat OpenBLAS's two
# threads on every shape measured up to 2^26 (2 cores, quiet, kernel GFLOP/s: 128x256x784
# 86.6 vs 78.0, 128x256x256 90.8 vs 75.3, 256x256x128 (A^T) 84.2 vs 64.9, 128x1024x512 71.4
# vs 46.6, 1024x256x256 76.0 vs 64.3) and are even with it above (128x1024x1024 67.0 vs
# 68.9), and a step without BLAS calls leaves no OpenBLAS thread spinning against the pool.
# ``GRAPHC_NATIVE_GEMM=0`` sends every GEMM to BLAS.
NATIVE_MAX_MACS = {1: 1 << 26, "threads": 1 << 26}
# On several threads, also up to NARROW_FACTOR times that where no side exceeds NARROW_SIDES
# (M, N, K): an MLP of 784-256-256-10 at batch 512 and 1024 (forward 1024x256x784, weight
# gradient 784x256x1024) ran 1.18x and 1.31x faster than with those GEMMs on OpenBLAS's two
# threads (8.5 vs 10.0, 17.8 vs 23.3 ms a step, medians of 9, quiet); wider or deeper ones
# lost (N = 2048 at batch 128, 69.6 -> 82.9 ms; K = 2048, 256x256x2048, at batch 2048; 1.1x
# slower each), and at one thread every one of them did.
NARROW_FACTOR = 4
NARROW_SIDES = (1024, 256, 1024)
# Where BLAS's GEMM kernels use narrower vectors than the host (NumPy's OpenBLAS runs its
# 256-bit Haswell kernels on a Zen 5 with AVX-512), these limits instead. One thread, GMAC/s
# native vs OpenBLAS: 1024x256x784 111.9 vs 54.7, 128x1024x1024 90.8 vs 53.3, 1024x1024x1024
# 97.9 vs 56.6, 128x4096x4096 80.2 vs 55.6, 8192x256x784 85.2 vs 53.4: every GEMM native.
# Two threads: 128x1024x1024 90.9 vs 57.1, 1024x256x784 122.8 vs 104.2 (medians of 9
# alternating rounds); the largest ones measured even one GEMM a step (8192x256x784 80.5 vs
# 77.1, 128x4096x4096 80.4 vs 97.5, on a noisy second vCPU), but in whole steps native ran
# ahead: W1's model at batch 8192 (8192x256x784, its weight gradient 784x256x8192, row
# chunks) 23.1-39.9 ms a step against 41.9-44.8 with those GEMMs on OpenBLAS, the MLP
# 784-4096-4096-10 at batch 128 41.3-41.5 against 72.7-74.7 (medians of 7 alternating rounds
# over several runs): every GEMM native there too.
WIDE_HOST_MAX_MACS = {1: 1 << 62, "threads": 1 << 62}


def vector_unit():
    """The host's widest float vectors usable here, or None (then BLAS does every GEMM):
    ``runtime.jit.host_vector_unit`` (tests replace this function to build for others)."""
    return host_vector_unit()


def blas_vector_bytes():
    """Bytes of BLAS's own GEMM vectors, None when unknown: ``runtime.blas.
    kernel_vector_bytes`` (tests replace this function)."""
    return kernel_vector_bytes()


def size_limits(unit):
    """Multiply-adds up to which GEMMs are native, by BLAS's threads: ``NATIVE_MAX_MACS``, or
    ``WIDE_HOST_MAX_MACS`` where BLAS's vectors are narrower than ``unit``'s."""
    wide = blas_vector_bytes()
    return WIDE_HOST_MAX_MACS if wide is not None and wide < unit.bytes else NATIVE_MAX_MACS


class Blocking(NamedTuple):
    """Register blocking of one GEMM: MR rows by NV vectors of ``lanes`` elements."""
    mr: int
    nv: int
    lanes: int


def blocking(dtype, n, unit):
    """MR x NV for ``n`` columns: as many accumulators as the registers hold after NV loads
    of B and one broadcast, NV at most 2 (a B panel of K x 2 vectors stays in L1), MR at
    most 12 (W3's 32x128x128 GEMMs: 12 rows ran 5-10% faster than 8, 10 or 14)."""
    lanes = unit.bytes // dtype.itemsize
    nv = 1 if n <= lanes else 2
    mr = min(12, (unit.registers - nv - 2) // nv)
    return Blocking(mr, nv, lanes)


def native_gemm_ok(dtype, dims, flags, threads=1, enabled=None):
    """Whether ``gemm_kernel`` should compute this GEMM (else BLAS).

    Args:
        dtype: the element dtype; dims: (M, N, K, lda, ldb); flags: (transpose_a, transpose_b).
        threads: how many threads BLAS would use; 0: BLAS is not to be called (a loop body
            whose iterations run at once on the pool), so every GEMM the vectors can do is
            native.
        enabled: override of ``GRAPHC_NATIVE_GEMM`` (tests).
    """
    if enabled is None:
        enabled = os.environ.get("GRAPHC_NATIVE_GEMM", "1") != "0"
    unit = vector_unit() if enabled and dtype.name in ("float32", "float64") else None
    if unit is None:
        return False
    if threads == 0:
        return True
    m, n, k = dims[:3]
    if flags[1] and n <= 2 * (unit.bytes // dtype.itemsize):
        return False  # one column panel: the lowering copies B^T contiguous instead
    macs = m * n * k
    limits = size_limits(unit)
    if threads <= 1:
        return macs <= limits[1]
    limit = limits["threads"]
    return macs <= limit or (macs <= NARROW_FACTOR * limit and m <= NARROW_SIDES[0]
                             and n <= NARROW_SIDES[1] and k <= NARROW_SIDES[2])


class _Geometry(NamedTuple):
    t: str          # element type
    k: int
    lda: int
    ldb: int
    ldc: int
    ta: bool
    beta: float
    dtype: object
    kc: int = 0     # K rows per packed block of B (0: B read in place; ``packed_depth``)
    tb: bool = False  # B given transposed (N x K): packed, transposed on the way
    subtract: bool = False  # C = C - op(A) B: each tile's product subtracted as it is stored
    # (body, ((arg, kind, pointer), ...)): C = body(op(A) B, others) tile by tile; kind "full"
    # (C's shape and layout), "column" (one value per column) or "one" (``fused_matmul``)
    epilogue: tuple = None
    k_blocks: bool = True  # K may run in blocks with partial sums in C (``_row_chunks``)


def gemm_kernel(dtype, batch, strides, dims, flags, index, noalias, beta=0.0, subtract=False,
                epilogue=None):
    """A kernel computing ``C[b] = op(A[b]) B[b] (+ C[b] when beta = 1)`` (row-major), or with
    ``subtract`` ``C = C - op(A) B``: the product summed from zero in registers as always, then
    subtracted from C's tile as it is stored (the order of ``C - (op(A) B)``; only for B read
    in place: ``subtract_in_place``), or with ``epilogue`` = (body, ((arg, kind, parameter),
    ...)) ``C = body(op(A) B, others)``: the body run on each tile's vectors as it is stored
    (only where each tile is stored once: ``stores_tiles_once``).

    Args: as ``elementwise.gemm_function`` without the BLAS pointer: ``index`` gives the
    parameter of (C, A, B); a transposed B (``flags[1]``, ``native_gemm_ok``) is packed.
    """
    unit = vector_unit()
    m, n, k, lda, ldb = dims
    blk = blocking(dtype, n, unit)
    attrs = (KERNEL_ATTRS + f' "prefer-vector-width"="{unit.bytes * 8}"'
             f' "min-legal-vector-width"="{unit.bytes * 8}"' + VECTOR_CODE)
    last = max(list(index) + [p for _, _, p in (epilogue[1] if epilogue else ())])
    fn = Function("kernel", params(last + 1, noalias), attrs=attrs)
    if epilogue is not None:
        epilogue = (epilogue[0], tuple((arg, kind, f"%p{p}") for arg, kind, p in epilogue[1]))
    # (partial sums in C would overwrite an epilogue operand written in place)
    in_place = epilogue is not None and any(p == f"%p{index[0]}" for _, _, p in epilogue[1])
    g = _Geometry(val_type(dtype), k, lda, ldb, n, bool(flags[0]), beta, dtype,
                  tb=bool(flags[1]), subtract=subtract, epilogue=epilogue,
                  k_blocks=not in_place)
    c, a, b = (f"%p{i}" for i in index)

    shape, cstrides = coalesce(tuple(batch), list(strides))
    split = not shape and m * n * k >= parallel.min_work()
    # (a GEMM in row chunks reads B in place, K block by K block: ``_row_chunks``)
    chunks = split and not g.tb and _k_blocked_rows(g, m, n, blk)
    kc = 0 if chunks else packed_depth(dtype, dims, blk, g.tb)
    assert not (kc and kc < k and subtract), "K blocks keep partial sums in C"
    assert not (epilogue and (batch or (kc and kc < k))), "an epilogue needs each tile once"
    if kc:  # (in the entry block: one slot of the stack for the whole call)
        g = g._replace(kc=kc)
        fn.emit(f"%bpack = alloca {g.t}, i64 {kc * blk.nv * blk.lanes}, align 64")

    def one(offs):
        bases = [fn.gep(g.t, base, off) for base, off in zip((c, a, b), offs)]
        _panels(fn, g, blk, bases, m, n)
    if not shape and _narrow_ok(g, blk, n):
        _narrow_transposed(fn, g, blk, (c, a, b), m, n)
    elif not split or not _split(fn, g, blk, (c, a, b), m, n):
        loop_nest(fn, shape, cstrides, [0, 0, 0], one)
    fn.ret()
    return fn


# A^T B with C narrower than a vector (a weight gradient into a classifier's few outputs:
# W4's 1352x10x64) is computed transposed, C^T = B^T A, whose rows are A's rows: full vectors
# of A and one broadcast of B per row of C^T, where the register tiles filled n of a
# vector's lanes (``_narrow_transposed``). Up to this many columns, and as many as leave
# 2n accumulators and four more in the registers.
NARROW_T_MAX_N = 12


def _narrow_ok(g, blk, n):
    """Whether ``gemm_kernel`` computes this GEMM by ``_narrow_transposed``."""
    unit = vector_unit()
    registers = unit.registers if unit is not None else 16
    return (NARROW_T_MAX_N and g.ta and not g.tb and not g.kc and 2 <= n < blk.lanes
            and n <= NARROW_T_MAX_N and 2 * n + 4 <= registers)


def _narrow_transposed(fn, g, blk, bases, m, n):
    """C = A^T B (n columns, fewer than a vector) as C^T = B^T A, two vectors of C^T's
    columns (C's rows) a tile: C^T's n rows accumulate over K from A's rows and B's scalars
    (the order of every sum as in ``_tile``), then each vector's rows are transposed in
    registers (``transpose_rows``, padded to a square) and C's rows stored, each with its
    whole sum (beta, ``subtract`` and the epilogue applied there). Tiles split over threads
    as column panels do."""
    width = 2 * blk.lanes
    full, rest = divmod(m, width)
    with fn.loop(full + bool(rest), "jt", split=m * n * g.k) as lj:
        j0 = fn.mul(lj.i, width)
        last_or_not(fn, lj.i, full, rest,
                    lambda cols: _narrow_tile(fn, g, blk, bases, j0, cols, n), width, rest)


def _narrow_tile(fn, g, blk, bases, j0, cols, n):
    """C[j0 : j0 + cols, :n] of ``_narrow_transposed``."""
    c, a, b = bases
    t, lanes = g.t, blk.lanes
    vectors = [min(lanes, cols - v) for v in range(0, cols, lanes)]
    with fn.counted(g.k, "k") as lk:
        flat = [lk.carry(vector_type(t, w), "zeroinitializer") for _ in range(n)
                for w in vectors]
        arow = fn.gep(t, a, fn.add(fn.mul(lk.i, g.lda), j0))
        av = [fn.load(vector_type(t, w), fn.gep(t, arow, v * lanes))
              for v, w in enumerate(vectors)]
        brow = fn.gep(t, b, fn.mul(lk.i, g.ldb))
        new = rank1_update(fn, t, flat, vectors, av, [fn.gep(t, brow, i) for i in range(n)])
        for phi, value in zip(flat, new):
            lk.update(phi, value)
    vt, rt = vector_type(t, lanes), vector_type(t, n)
    first = "<" + ", ".join(f"i32 {i}" for i in range(n)) + ">"
    for v, w in enumerate(vectors):
        rows = []
        for i in range(lanes):
            if i >= n:
                rows.append("zeroinitializer")
                continue
            rows.append(_zero_padded(fn, t, flat[i * len(vectors) + v], w, lanes))
        columns = transpose_rows(fn, t, lanes, rows)
        for q in range(w):
            product = fn(f"shufflevector {vt} {columns[q]}, {vt} poison, <{n} x i32> {first}")
            at = fn.mul(fn.add(j0, v * lanes + q), g.ldc)
            ptr = fn.gep(t, c, at)
            if g.beta:
                product = fn(f"fadd {rt} {fn.load(rt, ptr)}, {product}")
            if g.subtract:
                product = fn(f"fsub {rt} {fn.load(rt, ptr)}, {product}")
            if g.epilogue is not None:
                product = _epilogue(fn, g, product, at, "0", n)
            fn.store(rt, product, ptr)


def _split(fn, g, blk, bases, m, n):
    """One GEMM as a loop whose iterations the thread pool may share (``parallel``), or False
    when there is one tile only. Over column panels (each chunk keeps the panel order's reuse
    of B), unless the GEMM is taller than wide with a B that stays in L2 (``_by_rows``): then
    over row blocks, each running along every panel, so that each thread reads its own rows
    of A once instead of all of A once per panel. The narrower last panel or row block is a
    branch inside the loop. Row blocks read B in place, so a GEMM whose B is packed
    (``g.kc``: a transposed B, or rows far apart) splits over its panels only."""
    width = blk.nv * blk.lanes
    full, rest = divmod(n, width)
    work = m * n * g.k
    rows, rest_rows = divmod(m, blk.mr)
    if _k_blocked_rows(g, m, n, blk):
        _row_chunks(fn, g, blk, bases, m, n)
        return True
    if full + bool(rest) >= 2 and not _by_rows(g, m, n, rows):
        wide, narrow = _panel_vectors(blk, n)
        with fn.loop(full + bool(rest), "jt", split=work) as lj:
            j0 = fn.mul(lj.i, width)
            last_or_not(fn, lj.i, full, rest,
                         lambda vectors: _panel(fn, g, blk, bases, m, j0, vectors),
                         wide, narrow)
        return True
    if rows + bool(rest_rows) < 2 or g.kc:
        # (a packed B is packed panel by panel, K block by K block, in ``_panel``: row blocks
        # run here straight on ``_tile`` would read B as if it lay in place)
        return False

    with fn.loop(rows + bool(rest_rows), "it", split=work) as li:
        i0 = fn.mul(li.i, blk.mr)
        last_or_not(fn, li.i, rows, rest_rows, lambda r: _along(fn, g, blk, bases, i0, r, n),
                    blk.mr, rest_rows)
    return True


def _panel_vectors(blk, n):
    """The vector widths of a whole column panel and of the narrower last one."""
    rest = n % (blk.nv * blk.lanes)
    return ([blk.lanes] * blk.nv,
            [blk.lanes] * (rest // blk.lanes) + ([rest % blk.lanes] if rest % blk.lanes else []))


def _along(fn, g, blk, bases, i0, r, n):
    """Row block i0 (r rows) across every column panel, B read in place."""
    width = blk.nv * blk.lanes
    full, rest = divmod(n, width)
    wide, narrow = _panel_vectors(blk, n)
    if full > 1:
        with fn.loop(full, "jt") as lj:
            _tile(fn, g, bases, i0, fn.mul(lj.i, width), r, wide)
    elif full:
        _tile(fn, g, bases, i0, "0", r, wide)
    if rest:
        _tile(fn, g, bases, i0, str(full * width), r, narrow)


# A GEMM taller than wide whose B is too big for the row split's budget of L2 (an MLP's layer
# at a batch of thousands: 8192x256x784, its weight gradient 784x256x8192) runs in chunks of
# rows, each chunk in blocks of K of at most that budget of B: B's block stays in L2 while the
# chunk's row blocks sweep it, the chunk's rows of C wait in L2 between blocks (partial sums
# exact in C, as ``_panel``'s K blocks: the same bits) and A's rows are read once, where the
# panel split read all of A once per column panel. A chunk's rows of A (one K block) and of C
# take at most ``CHUNK_BYTES``. Zen 5, one thread, GMAC/s (one GEMM a step, medians of 9
# alternating rounds), row chunks vs panels: 8192x256x784 117.3 vs 99.9, 784x256x8192 (A^T)
# 111.8 vs 97.5; W1's model at batch 8192 51.3 -> 43.7 ms a step; at batch 1024 (B within the
# budget) unchanged.
CHUNK_BYTES = 512 << 10


def _k_blocked_rows(g, m, n, blk):
    return (not g.kc and not g.subtract and g.k_blocks and m > n
            and m // blk.mr >= 2 * parallel.CHUNKS
            and g.k * n * g.dtype.itemsize > ROW_SPLIT_MAX_B_BYTES)


def _row_chunks(fn, g, blk, bases, m, n):
    """``_k_blocked_rows``' GEMM: a loop over chunks of row blocks (split over the threads),
    in each K block by K block, its row blocks across every panel; the epilogue on the last."""
    size = g.dtype.itemsize
    blocks = -(-g.k * n * size // ROW_SPLIT_MAX_B_BYTES)
    kc = -(-g.k // blocks)
    full, rest = divmod(m, blk.mr)
    total = full + bool(rest)
    per = max(1, min(CHUNK_BYTES // ((kc + n) * size * blk.mr), -(-total // parallel.CHUNKS)))
    c, a, b = bases
    with fn.loop(-(-total // per), "ch", split=m * n * g.k) as lc:
        first = fn.mul(lc.i, per)
        count = _chunk(fn, first, per, total)

        def block(k0, kb, beta, last):
            gk = g._replace(k=kb, beta=beta, epilogue=g.epilogue if last else None)
            kbases = (c, fn.gep(g.t, a, fn.mul(k0, g.lda) if g.ta else k0),
                      fn.gep(g.t, b, fn.mul(k0, g.ldb)))
            with fn.loop(count, "rb") as lr:
                at = fn.add(first, lr.i)
                i0 = fn.mul(at, blk.mr)
                last_or_not(fn, at, full, rest,
                            lambda r: _along(fn, gk, blk, kbases, i0, r, n), blk.mr, rest)
        _k_blocks(fn, g.k, kc, g.beta, block)


# Split a GEMM over row blocks when it has more rows than columns and B (read whole by every
# row block) fits this budget of L2; else over column panels, where every chunk reads all of A.
ROW_SPLIT_MAX_B_BYTES = 256 << 10


def _by_rows(g, m, n, rows):
    return (not g.kc and m > n and rows >= 2 * parallel.CHUNKS
            and g.k * n * g.dtype.itemsize <= ROW_SPLIT_MAX_B_BYTES)


def last_or_not(fn, i, full, rest, body, whole, part):
    """``body(whole)`` for iterations before ``full``, ``body(part)`` for the one after
    (when ``rest``)."""
    if not rest:
        body(whole)
        return
    last = fn(f"icmp eq i64 {i}, {full}")
    with fn.if_then(fn(f"xor i1 {last}, true")):
        body(whole)
    with fn.if_then(last):
        body(part)


def _panels(fn, g, blk, bases, m, n):
    """Column panels of NV vectors (a loop over the full ones, then the remainder)."""
    width = blk.nv * blk.lanes
    full, rest = divmod(n, width)
    if full:
        vectors = [blk.lanes] * blk.nv
        if full == 1:
            _panel(fn, g, blk, bases, m, "0", vectors)
        else:
            with fn.loop(full, "jt") as lj:
                _panel(fn, g, blk, bases, m, fn.mul(lj.i, width), vectors)
    if rest:
        vectors = [blk.lanes] * (rest // blk.lanes) + ([rest % blk.lanes] if rest % blk.lanes
                                                       else [])
        _panel(fn, g, blk, bases, m, str(full * width), vectors)


# B's rows this many bytes apart or more are packed: a column panel's K rows then fall into
# a few cache sets only (L1 holds 4 KiB per way), so the panel does not stay in cache while
# the row blocks sweep it (AVX2, one thread, GFLOP/s plain -> packed: 128x512x512 26 -> 44,
# 64x512x512 35 -> 43, 128x768x256 38 -> 45, 128x2048x2048 5 -> 37).
PACK_ROW_BYTES = 2048
# With 256-bit vectors, rows half that far apart are packed too where at least this many row
# blocks reuse the panel. A panel row is then one cache line, rows 1 KiB apart use 4 of L1's
# 64 sets, and the panel streams from L2 for every row block: on Zen 3, one thread, median
# GMAC/s in place -> packed, 128x256x784 28.9 -> 40.8, A^T 784x256x128 40.6 -> 45.2,
# 128x256x256 33.3 -> 41.6, 32x256x784 29.3 -> 37.6, 48x256x256 38.1 -> 43.8; with fewer
# row blocks the copy is not repaid (24x256x256 40.7 -> 38.3, 12x256x256 38.0 -> 31.2; Zen 1
# measured the same loss, 45 -> 36). AVX-512 hosts keep PACK_ROW_BYTES (W1's GEMMs at 0.93-0.96
# of the floor on Zen 4 with rows 1 KiB apart read in place).
PACK_REUSE_BLOCKS = 5
# On 512-bit vectors, rows 1 KiB apart are packed too where a panel of K rows takes at least
# this many bytes (half of a 1 MiB L2): such a panel streams from L3 for every row block
# (W1's model at batch 8192, one thread, Zen 5: its weight gradient 784x256x8192; the step
# 76.8 -> 58.8 ms, medians of 7 alternating rounds; batch 1024, panels of 128 KiB, measured
# even packed: 5.03 vs 5.15 ms, so smaller panels stay in place, as W1's at 0.94 of the floor).
PANEL_PAST_L2 = 512 << 10
PACK_DEPTH = 256  # K rows per packed block: 256 x 64 bytes, half of L1
# ...unless the whole panel (K rows) takes at most this many bytes: then it is packed in one
# block, so that each tile of C is stored once, its sum complete, and an update's
# subtraction or an epilogue still runs on it as it is stored (``stores_tiles_once``,
# ``subtract_in_place``).
PACK_WHOLE_BYTES = 64 << 10


def packed_depth(dtype, dims, blk, tb=False):
    """K rows per packed block of B (blocks of equal depth but the last), or 0: B read in
    place (one column panel, or rows close enough). A transposed B is always packed."""
    m, n, k, _, ldb = dims
    if not tb and (n <= blk.nv * blk.lanes or not _far_apart(dtype, (m, k), ldb, blk)):
        return 0
    if k * blk.nv * blk.lanes * dtype.itemsize <= PACK_WHOLE_BYTES:
        return k
    return -(-k // -(-k // PACK_DEPTH))


def _far_apart(dtype, mk, ldb, blk):
    """Whether B's rows lie far enough apart that its panels are packed (``PACK_ROW_BYTES``)."""
    (m, k), row = mk, ldb * dtype.itemsize
    if row >= PACK_ROW_BYTES:
        return True
    narrow = blk.lanes * dtype.itemsize == 32 or \
        k * blk.nv * blk.lanes * dtype.itemsize >= PANEL_PAST_L2
    return narrow and 2 * row >= PACK_ROW_BYTES and -(-m // blk.mr) >= PACK_REUSE_BLOCKS


def _panel(fn, g, blk, bases, m, j0, vectors):
    """One column panel: its row blocks over B in place, or (``g.kc``) K block by K block,
    each block of the panel first copied into the contiguous ``%bpack`` and every row block
    then accumulating into C (the first block from zero or C, per beta; later ones from C).

    Summation order: every C element still adds its K products in order k = 0, 1, ... with
    one fused multiply-add each; between blocks the partial sum waits in C (exact in its own
    type), so packed and in-place kernels compute the same bits.
    """
    if not g.kc:
        _row_blocks(fn, g, blk, bases, m, j0, vectors)
        return
    if g.epilogue is not None:  # (its operands move with C's panel: one block of K only)
        g = g._replace(epilogue=(g.epilogue[0], tuple(
            (arg, kind, p if kind == "one" else fn.gep(g.t, p, j0))
            for arg, kind, p in g.epilogue[1])))
    _k_blocks(fn, g.k, g.kc, g.beta, lambda k0, kb, beta, _: _packed_block(
        fn, g, blk, bases, m, j0, vectors, k0, kb, beta))


def _packed_block(fn, g, blk, bases, m, j0, vectors, k0, kb, beta):
    """Rows k0 .. k0 + kb - 1 of B's panel at column j0 packed into ``%bpack``, then every row
    block of C's panel accumulating their products (from zero or C, per ``beta``)."""
    c, a, b = bases
    (_pack_transposed if g.tb else _pack)(
        fn, g, blk, fn.gep(g.t, b, fn.mul(j0, g.ldb) if g.tb else j0), k0, kb, vectors)
    ablock = fn.gep(g.t, a, fn.mul(k0, g.lda) if g.ta else k0)
    _row_blocks(fn, g._replace(k=kb, ldb=sum(vectors), beta=beta, kc=0), blk,
                (fn.gep(g.t, c, j0), ablock, "%bpack"), m, "0", vectors)


def _k_blocks(fn, k, kc, beta, block):
    """``block(k0, kb, beta, last)`` for K's blocks of ``kc`` (the last one shorter) in order:
    the first with ``beta``, later ones adding to C (1.0)."""
    blocks = -(-k // kc)
    last = k - (blocks - 1) * kc
    block("0", kc if blocks > 1 else last, beta, blocks == 1)
    if blocks > 2:
        with fn.loop(blocks - 2, "kb") as lb:
            block(fn.mul(fn.add(lb.i, 1), kc), kc, 1.0, False)
    if blocks > 1:
        block(str((blocks - 1) * kc), last, 1.0, True)


def _chunk(fn, first, per, total):
    """``min(per, total - first)``: the items of a chunk starting at ``first``."""
    return fn(f"select i1 {fn(f'icmp slt i64 {fn.add(first, per)}, {total}')}, "
              f"i64 {per}, i64 {fn(f'sub i64 {total}, {first}')}")


def _pack(fn, g, blk, bpanel, k0, kb, vectors):
    """``%bpack[kk, :] = B[k0 + kk, panel]`` for kk < kb: row vectors copied."""
    width, cols = sum(vectors), [sum(vectors[:v]) for v in range(len(vectors))]
    with fn.loop(kb, "kp") as lp:
        src = fn.gep(g.t, bpanel, fn.mul(fn.add(k0, lp.i), g.ldb))
        dst = fn.gep(g.t, "%bpack", fn.mul(lp.i, width))
        for v, w in enumerate(vectors):
            vt = vector_type(g.t, w)
            fn.store(vt, fn.load(vt, fn.gep(g.t, src, cols[v])), fn.gep(g.t, dst, cols[v]))


def _pack_transposed(fn, g, blk, bpanel, k0, kb, vectors):
    """``%bpack[kk, j] = B^T[panel j, k0 + kk]``: lanes x lanes blocks transposed in
    registers (``transpose.transpose_block``); a partial vector's columns and the rows of K
    past the last whole block one element at a time."""
    width, n = sum(vectors), blk.lanes
    col = 0
    for w in vectors:
        src = fn.gep(g.t, bpanel, fn.add(fn.mul(col, g.ldb), k0))
        if w == n and SHORT_K_TRANSPOSE <= kb < n:  # K shorter than a vector: one block
            _short_block(fn, g.t, n, kb, src, g.ldb, fn.gep(g.t, "%bpack", col), width)
            col += w
            continue
        whole = kb // n if w == n else 0
        if whole:
            with fn.loop(whole, "kq") as lq:
                kk = fn.mul(lq.i, n)
                transpose_block(fn, g.t, n, fn.gep(g.t, src, kk), g.ldb,
                                fn.gep(g.t, "%bpack", fn.add(fn.mul(kk, width), col)), width)
        if kb > whole * n:
            with fn.loop(kb - whole * n, "kr") as lr, fn.loop(w, "jr") as lj:
                kk = fn.add(lr.i, whole * n)
                x = fn.load(g.t, fn.gep(g.t, src, fn.add(fn.mul(lj.i, g.ldb), kk)))
                fn.store(g.t, x, fn.gep(g.t, "%bpack",
                                        fn.add(fn.mul(kk, width), fn.add(col, lj.i))))
        col += w


# B^T's rows of fewer than a vector's K elements (a classifier's input gradient, dlogits
# W^T: K = 10 classes) are packed by one register transpose per block of lanes rows, each
# row read as a narrower vector: W4's 64x1352x10 input gradient 30.1k -> 21.7k cycles, where
# the element-by-element copy moved each of its 13.5k elements alone.
SHORT_K_TRANSPOSE = 2


def _short_block(fn, t, n, kb, src, ldb, dst, width):
    """``dst[c * width + r] = src[r * ldb + c]`` for r < n, c < kb < n: n rows of kb
    elements loaded as ``<kb x t>`` (never past a row), padded with zeros to n lanes,
    transposed in registers, the first kb columns stored."""
    nt, vt = f"<{kb} x {t}>", f"<{n} x {t}>"
    rows = [_zero_padded(fn, t, fn.load(nt, fn.gep(t, src, fn.mul(r, ldb))), kb, n)
            for r in range(n)]
    for c, column in enumerate(transpose_rows(fn, t, n, rows)[:kb]):
        fn.store(vt, column, fn.gep(t, dst, c * width))


def _zero_padded(fn, t, value, w, n):
    """A ``<w x t>`` vector widened to ``<n x t>``, the lanes past w zero."""
    if w == n:
        return value
    wt = f"<{w} x {t}>"
    pad = "<" + ", ".join(f"i32 {q if q < w else w}" for q in range(n)) + ">"
    return fn(f"shufflevector {wt} {value}, {wt} zeroinitializer, <{n} x i32> {pad}")


def _row_blocks(fn, g, blk, bases, m, j0, vectors):
    """Row blocks of MR rows over one column panel (a loop, then the remaining rows:
    ``tail_rows``)."""
    full, tail = tail_rows(m, blk.mr)
    if full == 1:
        _tile(fn, g, bases, "0", j0, blk.mr, vectors)
    elif full:
        with fn.loop(full, "it") as li:
            _tile(fn, g, bases, fn.mul(li.i, blk.mr), j0, blk.mr, vectors)
    at = full * blk.mr
    for rows in tail:
        _tile(fn, g, bases, str(at), j0, rows, vectors)
        at += rows


def tail_rows(m, mr):
    """(full row blocks of ``mr`` rows, the rows of the blocks after them). A remainder of
    under half a block shares the last full block's rows in two blocks instead: a block of
    r rows keeps r x NV chains of fused multiply-adds going, too few to hide their latency
    when r is small. Zen 3, one thread, median GMAC/s of 15 alternating rounds, 6+...+6+2 ->
    6+...+6+4+4: W3's 32x128x128 39.8 -> 40.6 and 32x128x28 43.7 -> 45.7, W2's 32x64x64
    45.1 -> 47.0. Each element's sum is the same either way."""
    full, rest = divmod(m, mr)
    if not rest or full == 0 or 2 * rest > mr:
        return full, [rest] if rest else []
    both = mr + rest
    return full - 1, [both - both // 2, both // 2]


def vector_type(t, w):
    """``<w x t>``."""
    return f"<{w} x {t}>"


def _tile(fn, g, bases, i0, j0, rows, vectors):
    """C[i0:i0+rows, j0:...] for one tile; ``vectors`` lists the width of each column vector."""
    c, a, b = bases
    cols = [sum(vectors[:v]) for v in range(len(vectors))]
    cptr = [[fn.gep(g.t, c, fn.add(fn.mul(fn.add(i0, r), g.ldc), fn.add(j0, cols[v])))
             for v in range(len(vectors))] for r in range(rows)]
    if g.beta:
        init = [[fn.load(vector_type(g.t, w), cptr[r][v]) for v, w in enumerate(vectors)]
                for r in range(rows)]
    else:
        init = [["zeroinitializer"] * len(vectors) for _ in range(rows)]
    # A's scalars for row r at step k: A[i0 + r, k], or A^T[k, i0 + r] when A is transposed.
    arow = [fn.gep(g.t, a, fn.add(i0, r) if g.ta else fn.mul(fn.add(i0, r), g.lda))
            for r in range(rows)]
    bcol = fn.gep(g.t, b, j0)
    with fn.counted(g.k, "k") as lk:
        flat = [lk.carry(vector_type(g.t, w), init[r][v]) for r in range(rows)
                for v, w in enumerate(vectors)]
        brow = fn.gep(g.t, bcol, fn.mul(lk.i, g.ldb))
        bv = [fn.load(vector_type(g.t, w), fn.gep(g.t, brow, cols[v])) for v, w in enumerate(vectors)]
        aoff = fn.mul(lk.i, g.lda) if g.ta else lk.i
        new = rank1_update(fn, g.t, flat, vectors, bv,
                           [fn.gep(g.t, arow[r], aoff) for r in range(rows)])
        for phi, value in zip(flat, new):
            lk.update(phi, value)
    width = len(vectors)
    if g.subtract:  # C - product, tile by tile (each tile read once, then written)
        flat = [fn(f"fsub {vector_type(g.t, w)} "
                   f"{fn.load(vector_type(g.t, w), cptr[r][v])}, {flat[r * width + v]}")
                for r in range(rows) for v, w in enumerate(vectors)]
    if g.epilogue is not None:  # body(product, others): every operand read before C is written
        flat = [_epilogue(fn, g, flat[r * width + v], fn.add(fn.mul(fn.add(i0, r), g.ldc),
                                                             fn.add(j0, cols[v])),
                          fn.add(j0, cols[v]), w)
                for r in range(rows) for v, w in enumerate(vectors)]
    store_tile(fn, g.t, cptr, [flat[r * width:(r + 1) * width] for r in range(rows)], vectors)


def _epilogue(fn, g, product, at, col, w):
    """``g.epilogue``'s body on one vector of ``w`` lanes: the product's, and each other
    operand's at element ``at`` of C's layout (full), at column ``col`` (column) or its one
    value."""
    body, operands = g.epilogue
    vt = vector_type(g.t, w)
    vals = {0: product}
    for arg, kind, p in operands:
        if kind == "one":
            vals[arg] = splat(fn, g.t, fn.load(g.t, p), w)
        else:
            vals[arg] = fn.load(vt, fn.gep(g.t, p, at if kind == "full" else col))
    return render_vector(fn, body, vals, vt)


def stores_tiles_once(dtype, dims, flags, threads=1):
    """Whether the native kernel computes this 2-D GEMM storing each tile of C once, its sum
    complete (B read in place, or packed in one block of K), so that an epilogue can run on
    each tile as it is stored (``gemm_kernel(epilogue=)``)."""
    if not native_gemm_ok(dtype, dims, flags, threads):
        return False
    kc = packed_depth(dtype, dims, blocking(dtype, dims[1], vector_unit()), bool(flags[1]))
    return not kc or kc >= dims[2]


def subtract_in_place(dtype, dims, flags, threads=1):
    """Whether ``gemm_kernel(subtract=True)`` computes this GEMM: native, B read in place or
    packed in one block of K (K blocks keep their partial sums in C, which holds the minuend
    here)."""
    if flags[1] or not native_gemm_ok(dtype, dims, flags, threads):
        return False
    kc = packed_depth(dtype, dims, blocking(dtype, dims[1], vector_unit()))
    return not kc or kc >= dims[2]


def rank1_update(fn, t, accs, vectors, bv, a_ptrs):
    """``accs`` (rows x vectors, flat) after adding the outer product of the scalars at
    ``a_ptrs`` (one per row) and the vectors ``bv``: one broadcast and NV fused multiply-adds
    per row, the step every register tile here (GEMMs and implicit-GEMM convolutions) makes."""
    out, it = [], iter(accs)
    for ptr in a_ptrs:
        x = fn.load(t, ptr)
        splats = {w: splat(fn, t, x, w) for w in sorted(set(vectors))}
        out += [fmuladd(fn, t, splats[w], bv[v], next(it), w) for v, w in enumerate(vectors)]
    return out


def store_tile(fn, t, ptrs, accs, vectors):
    """Store a tile's accumulators (rows x vectors) at ``ptrs`` (same layout)."""
    for prow, arow in zip(ptrs, accs):
        for v, w in enumerate(vectors):
            fn.store(vector_type(t, w), arow[v], prow[v])


def splat(fn, t, value, w):
    """``value`` (of element type ``t``) in every lane of a ``<w x t>`` vector."""
    vt = vector_type(t, w)
    one = fn(f"insertelement {vt} poison, {t} {value}, i64 0")
    return fn(f"shufflevector {vt} {one}, {vt} poison, <{w} x i32> zeroinitializer")


def fmuladd(fn, t, x, y, z, w):
    """x * y + z on ``<w x t>`` vectors, fused where the CPU has FMA (``llvm.fmuladd``
    never calls a library)."""
    vt = vector_type(t, w)
    sfx = "f32" if t == "float" else "f64"
    return fn.call(vt, f"llvm.fmuladd.v{w}{sfx}", [(vt, x), (vt, y), (vt, z)])


__all__ = ["gemm_kernel", "native_gemm_ok", "vector_unit", "blocking", "rank1_update",
           "last_or_not",
           "store_tile", "splat", "fmuladd", "vector_type", "NATIVE_MAX_MACS",
           "subtract_in_place", "stores_tiles_once"]
