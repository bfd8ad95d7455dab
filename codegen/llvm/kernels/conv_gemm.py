"""Convolutions with many channels as implicit GEMMs: the GEMM micro-kernel of ``gemm``
reading its A operand straight out of the (padded) input, with no im2col matrix.

A convolution is a GEMM whose A matrix is the im2col matrix: row p = an output position,
column k = a (tap, input channel) pair, A[p, k] = x_padded[origin(p) + offset(tap) + c]. The
kernels below compute register tiles exactly as ``gemm`` does (MR rows x NV vectors of
accumulators over the whole contraction) but form each A address from a position's origin and
the tap's offset, so nothing is materialized:

- forward   y[p, o]      = sum_(tap, c) x_pad[origin(p) + off(tap) + c] * w[tap, c, o]
  (rows: output positions; vectors: output channels; contraction: taps x input channels);
- filter    dw[tap, c, o] = sum_p x_pad[origin(p) + off(tap) + c] * dy[p, o]
  (rows: one tap's input channels; vectors: output channels; contraction: every position);
- input     with stride 1, dx is the forward convolution of dy padded by (k - 1 - pad) with
  the filter flipped in space and its channel axes swapped (``lower_input`` builds both);
  with larger strides, one such GEMM per phase of dx (``conv_phases``), each with its own
  taps (``conv_forward_function``'s ``taps``) and every s-th row and column of dx as output.

Padding is a zero-bordered copy of the input in a private buffer (``padded``), so the loops
never test bounds. Few channels keep the direct kernels of ``conv`` (a whole row of
output channels in one register there beats a GEMM's tiles).

When BLAS runs several threads and the convolution is large (``IM2COL_MIN_MACS``) with wide
outputs and an im2col matrix that stays in cache (``IM2COL_MIN_COUT``, ``IM2COL_MAX_BYTES``),
or the host has no usable vectors, the im2col matrix is materialized instead (one strided copy
into a private buffer, shared by the forward pass and the filter gradient of the same input)
and BLAS multiplies it on all its threads.
Large native kernels run in chunks on graphc's thread pool too (``parallel``): the forward
kernel (and so the stride-1 input gradient) over blocks of output positions, the filter
gradient over images, each chunk of images summing into its own partial filter gradient.
"""
from typing import NamedTuple

import numpy as np

from .. import parallel
from .gemm import (blocking, last_or_not, rank1_update, store_tile,
                   vector_type, vector_unit)
from ..ir import KERNEL_ATTRS, VECTOR_CODE, Function, float_literal, val_type
from .elementwise import emit_gemm, fill
from ..loops import carried_nest, contiguous_strides, params
from .movement import strided_copy


class ConvShape(NamedTuple):
    """An implicit GEMM convolution: output [n, oh, ow, cout] from input [n, hp, wp, cin]
    (already padded) with taps kh x kw, rh and rw apart, and strides sh, sw."""
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
    rh: int = 1  # taps this far apart (a dilated convolution)
    rw: int = 1


def padded_extent(size, out, stride, k, before):
    """Rows (or columns) the padded input needs: the padding before plus the input, at least
    as far as the last window reaches."""
    return max(before + size, (out - 1) * stride + k)


def _function(dtype, noalias):
    unit = vector_unit()
    bits = unit.bytes * 8
    attrs = (KERNEL_ATTRS + f' "prefer-vector-width"="{bits}" "min-legal-vector-width"="{bits}"'
             + VECTOR_CODE)
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


def conv_forward_function(dtype, s, noalias, taps=None, out=None):
    """``%p0[p, o] = sum x[origin(p) + off(tap) + c] * %p2[tap, c, o]`` with %p1 = x padded
    ([n, hp, wp, cin]), %p2 = filters [kh, kw, cin, cout], %p0 = [n, oh, ow, cout].

    ``taps``: [(offset in %p1, first filter row)] instead of the kh x kw grid (the strided
    input gradient's phases, ``conv_phases``); ``out``: element strides (image, row, column)
    and first element of the output positions in %p0 (default: contiguous)."""
    fn, unit = _function(dtype, noalias)
    t = val_type(dtype)
    blk = blocking(dtype, s.cout, unit)
    positions = s.n * s.oh * s.ow
    grid = taps is None  # the kh x kw taps, as loops (the same sums in the same order)
    contiguous = out is None
    if contiguous:
        out = (s.oh * s.ow * s.cout, s.ow * s.cout, s.cout, 0)

    def origin(p, strides, first=0):
        """Element offset of position p's (image, row, column) with ``strides``."""
        img = fn(f"udiv i64 {p}, {s.oh * s.ow}")
        rem = fn(f"urem i64 {p}, {s.oh * s.ow}")
        a, b = fn(f"udiv i64 {rem}, {s.ow}"), fn(f"urem i64 {rem}, {s.ow}")
        at = fn.add(fn.add(fn.mul(img, strides[0]), fn.mul(a, strides[1])), fn.mul(b, strides[2]))
        return fn.add(at, first) if first else at
    window = (s.hp * s.wp * s.cin, s.sh * s.wp * s.cin, s.sw * s.cin)

    tiles = []
    for j0, vectors in _column_groups(blk, s.cout):
        cols = [j0 + sum(vectors[:v]) for v in range(len(vectors))]

        def tile(p0, rows, vectors=vectors, cols=cols):
            bases = [fn.gep(t, "%p1", origin(fn.add(p0, r), window)) for r in range(rows)]
            accs = [["zeroinitializer"] * len(vectors) for _ in range(rows)]

            def b_ptr(row, v):  # filter row ``row`` (tap x cin + c), this tile's columns
                return fn.gep(t, "%p2", fn.add(fn.mul(row, s.cout), cols[v]))
            if grid and s.rw == 1:
                # the taps as loops around the channels (one copy of the tile); a filter
                # row's kw taps read kw x cin consecutive inputs: one loop over them (a
                # third as many inner loops for LLVM's loop strength reduction, which spent
                # ~0.45 s of code generation on a 32->64 kernel's)
                accs = _contract(
                    fn, t, accs, vectors, (s.kh, s.kw * s.cin),
                    lambda idx, r: fn.gep(t, bases[r], fn.add(
                        fn.mul(idx[0], s.rh * s.wp * s.cin), idx[1])),
                    lambda idx, v: b_ptr(fn.add(fn.mul(idx[0], s.kw * s.cin), idx[1]), v))
            elif grid:  # dilated: taps rw apart, one loop each
                def a_ptr(idx, r):
                    i, j, c = idx
                    return fn.gep(t, bases[r], fn.add(fn.add(
                        fn.mul(i, s.rh * s.wp * s.cin), fn.mul(j, s.rw * s.cin)), c))
                accs = _contract(fn, t, accs, vectors, (s.kh, s.kw, s.cin), a_ptr,
                                 lambda idx, v: b_ptr(fn.add(fn.mul(fn.add(
                                     fn.mul(idx[0], s.kw), idx[1]), s.cin), idx[2]), v))
            else:  # listed taps (a strided input gradient's phase): one contraction each
                for off, wrow in taps:
                    accs = _contract(
                        fn, t, accs, vectors, (s.cin,),
                        lambda idx, r, off=off: fn.gep(t, bases[r], fn.add(idx[0], off)),
                        lambda idx, v, wrow=wrow: b_ptr(fn.add(idx[0], wrow), v))
            dst = [fn.mul(fn.add(p0, r), s.cout) if contiguous else
                   origin(fn.add(p0, r), out, out[3]) for r in range(rows)]
            ptrs = [[fn.gep(t, "%p0", fn.add(d, cols[v])) for v in range(len(vectors))]
                    for d in dst]
            store_tile(fn, t, ptrs, accs, vectors)
        tiles.append(tile)
    work = positions * (s.kh * s.kw if grid else len(taps)) * s.cin * s.cout
    full, rest = divmod(positions, blk.mr)
    if full + bool(rest) >= 2 and work >= parallel.min_work():
        # blocks of positions, every column group each: the pool may share them (``parallel``)
        with fn.loop(full + bool(rest), "rb", split=work) as lb:
            p0 = fn.mul(lb.i, blk.mr)
            last_or_not(fn, lb.i, full, rest, lambda rows: [tile(p0, rows) for tile in tiles],
                        blk.mr, rest)
    else:
        for tile in tiles:
            _row_groups(fn, positions, blk.mr, tile)
    fn.ret()
    return fn


def _contract(fn, t, accs, vectors, extents, a_ptr, b_ptr):
    """Accumulators after rank-1 updates over nested loops of ``extents`` (the last
    innermost): acc[r][v] += A(k, r) * B(k, v), with ``a_ptr(k, r)`` the address of a scalar
    and ``b_ptr(k, v)`` of a vector, k the loops' indices."""
    flat = [(vector_type(t, vectors[v]), a) for row in accs for v, a in enumerate(row)]

    def body(k, values):
        bv = [fn.load(vector_type(t, w), b_ptr(k, v)) for v, w in enumerate(vectors)]
        return rank1_update(fn, t, values, vectors, bv, [a_ptr(k, r) for r in range(len(accs))])
    final = carried_nest(fn, tuple(extents), flat, body)
    width = len(vectors)
    return [final[r * width:(r + 1) * width] for r in range(len(accs))]


def conv_filter_function(dtype, s, noalias):
    """``%p0[tap, c, o] = sum_p x[origin(p) + off(tap) + c] * %p2[p, o]`` with %p1 = x
    padded ([n, hp, wp, cin]) and %p2 = dy [n, oh, ow, cout].

    One image at a time, every tile: a tile reads all of dy's rows, and dy plus the padded
    input of a whole batch overflow L2 (32x14x14, 32->64 channels: 12 multiply-adds per cycle
    over the batch, 27 image by image), while one image's stay in cache for all the tiles.
    """
    fn, unit = _function(dtype, noalias)
    t = val_type(dtype)
    blk = blocking(dtype, s.cout, unit)
    size = s.kh * s.kw * s.cin * s.cout
    with fn.loop(size) as lz:  # dw = 0 (a chunk of images: its own partial dw)
        fn.store(t, float_literal(0.0, dtype), fn.gep(t, "%p0", lz.i))
    fn.partials, fn.partial_dtype = {0: size * dtype.itemsize}, dtype
    with fn.loop(s.n, "img", split=s.n * s.oh * s.ow * size) as li:
        for j0, vectors in _column_groups(blk, s.cout):
            cols = [j0 + sum(vectors[:v]) for v in range(len(vectors))]
            # the taps as loops (one copy of the tiles, not kh x kw): the same sums in order
            with fn.loop(s.kh, "ti") as lti, fn.loop(s.kw, "tj") as ltj:
                tap_off = fn.add(fn.mul(lti.i, s.rh * s.wp * s.cin), fn.mul(ltj.i, s.rw * s.cin))
                tap_row = fn.mul(fn.add(fn.mul(lti.i, s.kw), ltj.i), s.cin)

                def tile(c0, rows, vectors=vectors, cols=cols, tap_off=tap_off,
                         tap_row=tap_row):
                    ptrs = [[fn.gep(t, "%p0", fn.add(fn.mul(fn.add(fn.add(c0, r), tap_row),
                                                            s.cout), cols[v]))
                             for v in range(len(vectors))] for r in range(rows)]
                    accs = _filter_tile(fn, t, s, vectors, cols, ptrs, li.i,
                                        fn.add(c0, tap_off))
                    store_tile(fn, t, ptrs, accs, vectors)
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
        return rank1_update(fn, t, values, vectors, bv,
                      [fn.gep(t, "%p1", fn.add(xrow, r)) for r in range(len(ptrs))])
    final = carried_nest(fn, (s.oh, s.ow), flat, body)
    width = len(vectors)
    return [final[r * width:(r + 1) * width] for r in range(len(ptrs))]


# -- lowering ---------------------------------------------------------------------------------
def _strided_copy(L, *args):
    strided_copy(L, *args)


def padded(L, buf, shape, before, extent, dtype, node):
    """``buf`` ([n, h, w, c]) with ``before`` = (top, left) zero rows and columns in front and
    zeros up to ``extent`` = (hp, wp): a private copy, or ``buf`` itself when no padding."""
    n, h, w, c = shape
    (top, left), (hp, wp) = before, extent
    if (top, left, hp, wp) == (0, 0, h, w):
        return buf
    out = L.arena(n * hp * wp * c * dtype.itemsize)
    fill(L, out, (n, hp, wp, c), dtype, 0, node)
    _strided_copy(L, out, ((top * wp + left) * c, (hp * wp * c, wp * c, c, 1)), buf,
                  (0, contiguous_strides(shape)), shape, dtype, node)
    return out


# im2col + multithreaded BLAS beat the single-threaded implicit GEMM only for wide outputs and
# an im2col matrix that stays in cache (2 BLAS threads, fwd + both gradients, ms, implicit vs
# im2col: 16x8x8 64->128 3.4 vs 2.6; 32x14x14 32->64 5.6 vs 5.8; 64x28x28 16->32, a 29 MB
# matrix, 14.4 vs 28.9)
IM2COL_MIN_COUT = 128
IM2COL_MAX_BYTES = 8 << 20
IM2COL_MIN_MACS = 1 << 21  # (once the limit of native GEMMs when BLAS had threads)


def _uses_blas(L, s, dtype):
    if vector_unit() is None:
        return True
    macs = s.n * s.oh * s.ow * s.kh * s.kw * s.cin * s.cout
    cols = s.n * s.oh * s.ow * s.kh * s.kw * s.cin * dtype.itemsize
    return (L.blas_threads > 1 and macs > IM2COL_MIN_MACS
            and s.cout >= IM2COL_MIN_COUT and cols <= IM2COL_MAX_BYTES)


def _input_shape(L, node, g, x, cout):
    """(padded input Buf, ConvShape) of a convolution of ``x`` with geometry ``g``."""
    hp = padded_extent(g.h, g.oh, g.sh, (g.kh - 1) * g.rh + 1, g.top)
    wp = padded_extent(g.w, g.ow, g.sw, (g.kw - 1) * g.rw + 1, g.left)
    xp = padded(L, L.buf(x), (g.n, g.h, g.w, g.c), (g.top, g.left), (hp, wp), node.dtype, node)
    return xp, ConvShape(g.n, g.oh, g.ow, hp, wp, g.c, g.kh, g.kw, g.sh, g.sw, cout, g.rh, g.rw)


def _im2col(L, src, s, dtype, node, key=None):
    """The im2col matrix [n*oh*ow, kh*kw*cin] of the padded input ``src`` (one strided copy),
    reused when the step already built it for the same ``key`` (input node and window)."""
    cache = L.__dict__.setdefault("_im2col", {})
    if key is not None and key in cache:
        return cache[key]
    shape = (s.n, s.oh, s.ow, s.kh, s.kw, s.cin)
    cols = L.arena(int(np.prod(shape)) * dtype.itemsize)
    view = (s.hp * s.wp * s.cin, s.sh * s.wp * s.cin, s.sw * s.cin, s.rh * s.wp * s.cin,
            s.rw * s.cin, 1)
    _strided_copy(L, cols, (0, contiguous_strides(shape)), src, (0, view), shape, dtype, node)
    if key is not None:
        cache[key] = cols
    return cols


def _window_key(x, s):
    return (id(x), s.kh, s.kw, s.sh, s.sw, s.hp, s.wp, s.rh, s.rw)


def lower_forward(L, n, g, x, w):
    """conv2d with many channels: implicit GEMM, or im2col + BLAS (see the module doc)."""
    xp, s = _input_shape(L, n, g, x, w.shape[3])
    _forward(L, n, xp, L.buf(w), s, _window_key(x, s))


def _forward(L, n, src, wbuf, s, key=None):
    if _uses_blas(L, s, n.dtype):
        cols = _im2col(L, src, s, n.dtype, n, key)
        k = s.kh * s.kw * s.cin
        emit_gemm(L, n, L.out(n), cols, wbuf, (s.n * s.oh * s.ow, s.cout, k, k, s.cout),
                  (False, False))
        return
    bufs = [L.out(n), src, wbuf]
    L.call(conv_forward_function(n.dtype, s, L.noalias(bufs)), bufs, n)


def lower_filter(L, n, g, x, dy):
    """The filter gradient with many channels: implicit GEMM image by image, or the im2col
    matrix (the forward pass's, when it built one) transposed times dy by BLAS."""
    xp, s = _input_shape(L, n, g, x, n.shape[3])
    if _uses_blas(L, s, n.dtype):
        cols = _im2col(L, xp, s, n.dtype, n, _window_key(x, s))
        k, p = s.kh * s.kw * s.cin, s.n * s.oh * s.ow
        emit_gemm(L, n, L.out(n), cols, L.buf(dy), (k, s.cout, p, k, s.cout), (True, False))
        return
    bufs = [L.out(n), xp, L.buf(dy)]
    L.call(conv_filter_function(n.dtype, s, L.noalias(bufs)), bufs, n)


def lower_input(L, n, g, dy, w):
    """With stride 1, dx is the forward convolution of dy padded by (k - 1 - pad) in front
    with the filters flipped in space and their channel axes swapped: dx[h, w, c] =
    sum_(i, j, o) dy_pad[h + i, w + j, o] * w[kh - 1 - i, kw - 1 - j, c, o]."""
    kh, kw, cin, cout = w.shape
    before = (kh - 1 - g.top, kw - 1 - g.left)
    extent = (g.h + kh - 1, g.w + kw - 1)
    dyp = padded(L, L.buf(dy), (g.n, g.oh, g.ow, cout), before, extent, n.dtype, n)
    flipped = L.arena(kh * kw * cout * cin * n.dtype.itemsize)
    taps = ((kh - 1) * kw + kw - 1) * cin * cout  # the last tap, read first
    _strided_copy(L, flipped, (0, contiguous_strides((kh, kw, cout, cin))), L.buf(w),
                  (taps, (-kw * cin * cout, -cin * cout, 1, cout)), (kh, kw, cout, cin),
                  n.dtype, n)
    s = ConvShape(g.n, g.h, g.w, extent[0], extent[1], cout, kh, kw, 1, 1, cin)
    _forward(L, n, dyp, flipped, s)


__all__ = ["ConvShape", "conv_forward_function", "conv_filter_function", "padded_extent",
           "lower_forward", "lower_filter", "lower_input", "padded"]
