"""One n x n block transposed in vector registers (n = the vector length): the transpose
kernel's blocks and the GEMM's packing of B^T.

The block is loaded as n row vectors and transposed with log2(n) rounds of interleaving
shuffles, then stored as n row vectors of the result (with 256-bit vectors, a sequence whose
shuffles mostly stay inside 128-bit halves: ``_transpose_256``). One round maps row pairs
(i, i + n/2) to

    new[2i]     = interleave the low halves of row i and row i + n/2
    new[2i + 1] = interleave their high halves

which rotates the bits of an element's (row, column) index left by one; after log2(n) rounds
the row bits and column bits have swapped places: the block is transposed.
"""


def transpose_block(fn, t, n, src, src_stride, dst, dst_stride):
    """``dst[c * dst_stride + r] = src[r * src_stride + c]`` for r, c < n: n row vectors
    in, shuffles, n row vectors out."""
    vt = f"<{n} x {t}>"
    rows = [fn.load(vt, fn.gep(t, src, fn.mul(r, src_stride))) for r in range(n)]
    cols = transpose_rows(fn, t, n, rows)
    for c in range(n):
        fn.store(vt, cols[c], fn.gep(t, dst, fn.mul(c, dst_stride)))


def transpose_rows(fn, t, n, rows):
    """The columns of the n x n block whose row vectors (``<n x t>``) are ``rows``."""
    vt = f"<{n} x {t}>"
    if n in (4, 8) and n * _BITS.get(t, 0) == 256:
        return _transpose_256(fn, vt, n, rows)
    return _interleave(fn, vt, n, rows)


def _interleave(fn, vt, n, v):
    """log2(n) rounds of interleaving row pairs (i, i + n/2) (see the module docstring)."""
    half = n // 2
    lo = [k for j in range(half) for k in (j, j + n)]
    hi = [k for j in range(half, n) for k in (j, j + n)]
    for _ in range(n.bit_length() - 1):
        nxt = []
        for i in range(half):
            nxt += [_shuffle(fn, vt, n, v[i], v[i + half], lo),
                    _shuffle(fn, vt, n, v[i], v[i + half], hi)]
        v = nxt
    return v


_BITS = {"float": 32, "i32": 32, "double": 64, "i64": 64}


def _shuffle(fn, vt, n, a, b, mask):
    m = ", ".join(f"i32 {k}" for k in mask)
    return fn(f"shufflevector {vt} {a}, {vt} {b}, <{n} x i32> <{m}>")


def _transpose_256(fn, vt, n, v):
    """The rows of an 8x8 (32-bit) or 4x4 (64-bit) block in 256-bit registers transposed with
    shuffles inside each 128-bit half first (unpack, then for floats shufps) and one
    exchange of halves per output row last (vperm2f128): the interleaving rounds of the
    generic path cross halves in every round, each a slower lane-crossing shuffle on AVX2."""
    if n == 4:  # 64-bit: unpack pairs of rows, then exchange 128-bit halves
        lo = [_shuffle(fn, vt, n, v[i], v[i + 1], (0, 4, 2, 6)) for i in (0, 2)]
        hi = [_shuffle(fn, vt, n, v[i], v[i + 1], (1, 5, 3, 7)) for i in (0, 2)]
        return [_shuffle(fn, vt, n, lo[0], lo[1], (0, 1, 4, 5)),
                _shuffle(fn, vt, n, hi[0], hi[1], (0, 1, 4, 5)),
                _shuffle(fn, vt, n, lo[0], lo[1], (2, 3, 6, 7)),
                _shuffle(fn, vt, n, hi[0], hi[1], (2, 3, 6, 7))]
    t = []  # t[2p], t[2p+1]: rows 2p and 2p+1 interleaved, low and high pairs of each half
    for p in range(4):
        t.append(_shuffle(fn, vt, n, v[2 * p], v[2 * p + 1], (0, 8, 1, 9, 4, 12, 5, 13)))
        t.append(_shuffle(fn, vt, n, v[2 * p], v[2 * p + 1], (2, 10, 3, 11, 6, 14, 7, 15)))
    u = []  # u[4q + c]: column c (and c + 4 in the high half) of rows 4q .. 4q + 3
    for q in range(2):
        lo, hi = t[4 * q], t[4 * q + 1]
        lo2, hi2 = t[4 * q + 2], t[4 * q + 3]
        u += [_shuffle(fn, vt, n, lo, lo2, (0, 1, 8, 9, 4, 5, 12, 13)),
              _shuffle(fn, vt, n, lo, lo2, (2, 3, 10, 11, 6, 7, 14, 15)),
              _shuffle(fn, vt, n, hi, hi2, (0, 1, 8, 9, 4, 5, 12, 13)),
              _shuffle(fn, vt, n, hi, hi2, (2, 3, 10, 11, 6, 7, 14, 15))]
    return [_shuffle(fn, vt, n, u[c % 4], u[4 + c % 4],
                     (0, 1, 2, 3, 8, 9, 10, 11) if c < 4 else (4, 5, 6, 7, 12, 13, 14, 15))
            for c in range(8)]


__all__ = ["transpose_block"]
