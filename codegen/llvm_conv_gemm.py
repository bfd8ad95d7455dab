"""Convolutions with many channels as implicit GEMMs: the GEMM micro-kernel of ``llvm_gemm``
reading its A operand straight out of the (padded) input, with no im2col matrix.

A convolution is a GEMM whose A matrix is the im2col matrix: row p = an output position,
column k = a (tap, input channel) pair, A[p, k] = x_padded[origin(p) + offset(tap) + c]. The
kernels below compute register tiles exactly as ``llvm_gemm`` does (MR rows x NV vectors of
accumulators over the whole contraction) but form each A address from a position's origin and
the tap's offset, so nothing is materialized:

- forward   y[p, o]      = sum_(tap, c) x_pad[origin(p) + off(tap) + c] * w[tap, c, o]
  (rows: output positions; vectors: output channels; contraction: taps x input channels);
- filter    dw[tap, c, o] = sum_p x_pad[origin(p) + off(tap) + c] * dy[p, o]
  (rows: one tap's input channels; vectors: output channels; contraction: every position);
- input     with stride 1, dx is the forward convolution of dy padded by (k - 1 - pad) with
  the filter flipped in space and its channel axes swapped (``lower_conv_input`` builds both).

Padding is a zero-bordered copy of the input in a private buffer (``padded``), so the loops
never test bounds. Few channels keep the direct kernels of ``llvm_conv`` (a whole row of
output channels in one register there beats a GEMM's tiles).
"""
from typing import NamedTuple

from .llvm_gemm import blocking, fmuladd, splat, vector_type, vector_unit
from .llvm_ir import KERNEL_ATTRS, Function, val_type
from .llvm_loops import carried_nest, params


class ConvShape(NamedTuple):
    """An implicit GEMM convolution: output [n, oh, ow, cout] from input [n, hp, wp, cin]
    (already padded) with taps kh x kw and strides sh, sw."""
    n: int
    oh: int
    ow: int
    hp: int
    wp: int
    cin: int
    kh: int
    kw: int
    sh: int
    sw: int
    cout: int


def padded_extent(size, out, stride, k, before):
    """Rows (or columns) the padded input needs: the padding before plus the input, at least
    as far as the last window reaches."""
    return max(before + size, (out - 1) * stride + k)


def _function(dtype, noalias):
    unit = vector_unit()
    bits = unit.bytes * 8
    attrs = KERNEL_ATTRS + f' "prefer-vector-width"="{bits}" "min-legal-vector-width"="{bits}"'
    return Function("kernel", params(len(noalias), noalias), attrs=attrs), unit


def _column_groups(blk, cout):
    """[(first column, [vector widths])]: full panels of NV vectors, then the rest."""
    width = blk.nv * blk.lanes
    out = [(j, [blk.lanes] * blk.nv) for j in range(0, cout - cout % width, width)]
    rest = cout % width
    if rest:
        out.append((cout - rest, [blk.lanes] * (rest // blk.lanes) +
                    ([rest % blk.lanes] if rest % blk.lanes else [])))
    return out


def _row_groups(fn, count, mr, body):
    """``body(first row, rows)`` over blocks of ``mr`` rows (a loop), then the remainder."""
    full, rest = divmod(count, mr)
    if full == 1:
        body("0", mr)
    elif full:
        with fn.loop(full, "rb") as lb:
            body(fn.mul(lb.i, mr), mr)
    if rest:
        body(str(full * mr), rest)


def _store(fn, t, ptrs, accs, vectors):
    for prow, arow in zip(ptrs, accs):
        for v, w in enumerate(vectors):
            fn.store(vector_type(t, w), arow[v], prow[v])


def conv_forward_function(dtype, s, noalias):
    """``%p0[p, o] = sum x[origin(p) + off(tap) + c] * %p2[tap, c, o]`` with %p1 = x padded
    ([n, hp, wp, cin]), %p2 = filters [kh, kw, cin, cout], %p0 = [n, oh, ow, cout]."""
    fn, unit = _function(dtype, noalias)
    t = val_type(dtype)
    blk = blocking(dtype, s.cout, unit)
    positions = s.n * s.oh * s.ow

    def origin(p):
        """Element offset of position p's window origin in the padded input."""
        img = fn(f"udiv i64 {p}, {s.oh * s.ow}")
        rem = fn(f"urem i64 {p}, {s.oh * s.ow}")
        a, b = fn(f"udiv i64 {rem}, {s.ow}"), fn(f"urem i64 {rem}, {s.ow}")
        row = fn.add(fn.mul(img, s.hp), fn.mul(a, s.sh))
        return fn.mul(fn.add(fn.mul(row, s.wp), fn.mul(b, s.sw)), s.cin)

    for j0, vectors in _column_groups(blk, s.cout):
        cols = [j0 + sum(vectors[:v]) for v in range(len(vectors))]

        def tile(p0, rows, vectors=vectors, cols=cols):
            bases = [fn.gep(t, "%p1", origin(fn.add(p0, r))) for r in range(rows)]
            accs = [["zeroinitializer"] * len(vectors) for _ in range(rows)]
            for i in range(s.kh):
                for j in range(s.kw):
                    off, wrow = (i * s.wp + j) * s.cin, (i * s.kw + j) * s.cin
                    accs = _contract(fn, t, accs, vectors, s.cin,
                                     lambda c, r, off=off: fn.gep(t, bases[r], fn.add(c, off)),
                                     lambda c, v, wrow=wrow: fn.gep(
                                         t, "%p2", fn.add(fn.mul(fn.add(c, wrow), s.cout),
                                                          cols[v])))
            ptrs = [[fn.gep(t, "%p0", fn.add(fn.mul(fn.add(p0, r), s.cout), cols[v]))
                     for v in range(len(vectors))] for r in range(rows)]
            _store(fn, t, ptrs, accs, vectors)
        _row_groups(fn, positions, blk.mr, tile)
    fn.ret()
    return fn


def _contract(fn, t, accs, vectors, count, a_ptr, b_ptr):
    """Accumulators after ``count`` rank-1 updates: acc[r][v] += A(k, r) * B(k, v), with
    ``a_ptr(k, r)`` the address of a scalar and ``b_ptr(k, v)`` of a vector."""
    flat = [(vector_type(t, vectors[v]), a) for row in accs for v, a in enumerate(row)]

    def body(idx, values):
        k = idx[0]
        bv = [fn.load(vector_type(t, w), b_ptr(k, v)) for v, w in enumerate(vectors)]
        return _rank1(fn, t, values, vectors, bv, [a_ptr(k, r) for r in range(len(accs))])
    final = carried_nest(fn, (count,), flat, body)
    width = len(vectors)
    return [final[r * width:(r + 1) * width] for r in range(len(accs))]


def _rank1(fn, t, accs, vectors, bv, a_ptrs):
    """``accs`` (rows x vectors, flat) after adding the outer product of the scalars at
    ``a_ptrs`` (one per row) and the vectors ``bv``."""
    out, it = [], iter(accs)
    for ptr in a_ptrs:
        x = fn.load(t, ptr)
        splats = {w: splat(fn, t, x, w) for w in set(vectors)}
        out += [fmuladd(fn, t, splats[w], bv[v], next(it), w) for v, w in enumerate(vectors)]
    return out


def conv_filter_function(dtype, s, noalias):
    """``%p0[tap, c, o] += sum_p x[origin(p) + off(tap) + c] * %p2[p, o]`` with %p1 = x
    padded ([n, hp, wp, cin]) and %p2 = dy [n, oh, ow, cout]; %p0 must be zeroed first.

    One image at a time, every tile: a tile reads all of dy's rows, and dy plus the padded
    input of a whole batch overflow L2 (32x14x14, 32->64 channels: 12 multiply-adds per cycle
    over the batch, 27 image by image), while one image's stay in cache for all the tiles.
    """
    fn, unit = _function(dtype, noalias)
    t = val_type(dtype)
    blk = blocking(dtype, s.cout, unit)
    with fn.loop(s.n, "img") as li:
        for j0, vectors in _column_groups(blk, s.cout):
            cols = [j0 + sum(vectors[:v]) for v in range(len(vectors))]
            for i in range(s.kh):
                for j in range(s.kw):
                    tap_off, tap_row = (i * s.wp + j) * s.cin, (i * s.kw + j) * s.cin

                    def tile(c0, rows, vectors=vectors, cols=cols, tap_off=tap_off,
                             tap_row=tap_row):
                        ptrs = [[fn.gep(t, "%p0", fn.add(fn.mul(fn.add(fn.add(c0, r), tap_row),
                                                                s.cout), cols[v]))
                                 for v in range(len(vectors))] for r in range(rows)]
                        accs = _filter_tile(fn, t, s, vectors, cols, ptrs, li.i,
                                            fn.add(c0, tap_off))
                        _store(fn, t, ptrs, accs, vectors)
                    _row_groups(fn, s.cin, blk.mr, tile)
    fn.ret()
    return fn


def _filter_tile(fn, t, s, vectors, cols, ptrs, img, first):
    """One tile of the filter gradient: the values at ``ptrs`` plus the contraction over the
    output positions (a, b) of image ``img``."""
    flat = [(vector_type(t, w), fn.load(vector_type(t, w), p))
            for row in ptrs for w, p in zip(vectors, row)]
    ximg = fn.add(fn.mul(fn.mul(img, s.hp * s.wp), s.cin), first)

    def body(idx, values):
        a, b = idx
        pos = fn.add(fn.mul(fn.add(fn.mul(img, s.oh), a), s.ow), b)
        xrow = fn.add(fn.mul(fn.add(fn.mul(fn.mul(a, s.sh), s.wp), fn.mul(b, s.sw)), s.cin),
                      ximg)
        dyrow = fn.mul(pos, s.cout)
        bv = [fn.load(vector_type(t, w), fn.gep(t, "%p2", fn.add(dyrow, cols[v])))
              for v, w in enumerate(vectors)]
        return _rank1(fn, t, values, vectors, bv,
                      [fn.gep(t, "%p1", fn.add(xrow, r)) for r in range(len(ptrs))])
    final = carried_nest(fn, (s.oh, s.ow), flat, body)
    width = len(vectors)
    return [final[r * width:(r + 1) * width] for r in range(len(ptrs))]


__all__ = ["ConvShape", "conv_forward_function", "conv_filter_function", "padded_extent"]
