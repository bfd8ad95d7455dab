"""Direct convolution (NHWC input, [kh, kw, in, out] filters) and its two gradients.

Direct loops rather than im2col + GEMM: with few channels im2col builds very skinny GEMMs
(the filter gradient's ran at a tenth of the machine's speed), and a direct loop needs no
scratch buffer. With few (tap, input channel) pairs and output channels (``_vectorizable``),
the output channels are one LLVM vector: the forward pass keeps a position's output row in a
register over the taps, with the filter rows loaded once, and may apply the following bias
and activation before storing (the fold ``folds.conv_epilogue``); the filter gradient keeps
every filter row in a register over all positions (and may sum the bias gradient on the way:
``folds.bias_gradient``). Otherwise plain loops, vectorized over output channels.
"""
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np

from . import conv_gemm, conv_phases
from .conv_lanes import Lanes, group_taps, lane_group
from .gemm import vector_unit
from ..ir import Function, float_literal, val_type
from .elementwise import combine, fill, scalar_const
from ..registry import lowers
from ..loops import carried_nest, params
from . import pool
from .pool import scan_row, scan_together, store_window
from .windows import VECTOR_CHANNELS, _geometry, _over_taps, _over_windows, _splat
from .vector_body import render_vector


def conv_function(kind, dtype, g, cout, noalias):
    """kind "forward": %p0=y, %p1=x, %p2=w; "filter": %p0=dw, %p1=x, %p2=dy;
    "input": %p0=dx, %p1=dy, %p2=w. Outputs of "filter"/"input" must be zeroed first."""
    fn = Function("kernel", params(3, noalias))
    t = val_type(dtype)
    cin = g.c

    def at(base, i):
        return fn.gep(t, base, i)

    def window(n, p, q, pos):
        obase = fn.mul(pos, cout)
        if kind == "forward":
            with fn.loop(cout) as lo:
                fn.store(t, float_literal(0.0, dtype), at("%p0", fn.add(obase, lo.i)))

        def tap(i, j, xpos):
            xbase = fn.mul(xpos, cin)
            wbase = fn.mul(fn.add(fn.mul(i, g.kw), j), cin * cout)
            with fn.loop(cin) as lc:
                wrow = fn.add(wbase, fn.mul(lc.i, cout))
                if kind == "input":
                    with fn.loop(cout) as lo:
                        acc = lo.carry(t, float_literal(0.0, dtype))
                        prod = fn(f"fmul {t} {fn.load(t, at('%p1', fn.add(obase, lo.i)))}, "
                                  f"{fn.load(t, at('%p2', fn.add(wrow, lo.i)))}")
                        lo.update(acc, combine(fn, "sum", dtype, acc, prod))
                    dst = at("%p0", fn.add(xbase, lc.i))
                    fn.store(t, fn(f"fadd {t} {fn.load(t, dst)}, {acc}"), dst)
                    return
                xv = fn.load(t, at("%p1", fn.add(xbase, lc.i)))
                with fn.loop(cout) as lo:
                    if kind == "forward":
                        dst, other = at("%p0", fn.add(obase, lo.i)), at("%p2", fn.add(wrow, lo.i))
                    else:
                        dst, other = at("%p0", fn.add(wrow, lo.i)), at("%p2", fn.add(obase, lo.i))
                    prod = fn(f"fmul {t} {xv}, {fn.load(t, other)}")
                    fn.store(t, fn(f"fadd {t} {fn.load(t, dst)}, {prod}"), dst)
        _over_taps(fn, g, n, p, q, tap)
    # the filter gradient sums over images: one loop on one thread
    _over_windows(fn, g, window, 0 if kind == "filter" else _macs(g, cout))
    fn.ret()
    return fn


def _macs(g, cout):
    return g.n * g.oh * g.ow * g.kh * g.kw * g.c * cout


VECTOR_TAPS = 32  # at most this many (tap, input channel) pairs get a register each
# Neighbouring output positions the forward vector kernel computes together, each its own
# accumulator (W4's conv: one position at a time waited on a chain of 9 dependent FMAs)
FORWARD_POSITIONS = 8


def _registers(cout, dtype):
    """(vector registers of the host, registers one row of ``cout`` channels fills)."""
    unit = vector_unit()
    registers, width = (unit.registers, unit.bytes) if unit else (16, 32)
    return registers, max(-(-cout * dtype.itemsize // width), 1)


# Positions per block of the row-blocked forward kernel (``_row_taps``), at most. W4's conv
# (3x3, 1 -> 8 channels, rows of 26; GRAPHC_PROFILE minimum cycles, AVX2): blocks of 6, 7, 9,
# 13 positions 382k, 374k, 356k, 376k (per position, 8 at a time: 416k)
FORWARD_ROW_POSITIONS = 9


def _forward_positions(cout, dtype, blocked=False):
    """Neighbouring positions the forward kernel computes together: ``FORWARD_POSITIONS``
    rows of accumulators, as many as half the vector registers hold (a 32-channel row is four
    AVX2 registers: 2 positions; 8 of them spilled: 3->32 channels on 16 images of 64x64,
    11.0M -> 7.2M cycles with 2). Row-blocked: up to ``FORWARD_ROW_POSITIONS``, leaving four
    registers for the input value and filter rows (those that do not fit are read from
    memory by the multiply-adds)."""
    registers, row = _registers(cout, dtype)
    if blocked:
        return max(min(FORWARD_ROW_POSITIONS, (registers - 4) // row), 1)
    return max(min(FORWARD_POSITIONS, registers // 2 // row), 1)


def _filter_group(cout, dtype):
    """Accumulators the filter gradient keeps over one pass of an image's positions, measured
    on AVX2 (16 registers; GRAPHC_PROFILE cycles): one-register rows, half the registers less
    two (W4's 10 in one pass spilled to the stack: 615k cycles; 4, 6, 8 a pass: 494k, 426k,
    487k); wider rows, the registers less four (32 channels, rows of 4: 1, 2, 3, 4 a pass
    975k, 787k, 599k, 721k on 16 images of 28x28)."""
    registers, row = _registers(cout, dtype)
    if row == 1:
        return max(registers // 2 - 2, 1)
    return max((registers - 4) // row, 1)


# Neighbouring positions the row-blocked filter gradient takes together (``_filter_rows``),
# at most. W4's (10 accumulators with the bias gradient's; GRAPHC_PROFILE minimum cycles,
# AVX2): 3, 4, 5 positions 400k, 338k, 348-366k (per position, two passes: 407k)
FILTER_POSITIONS = 4


def _filter_positions(count, cout, dtype):
    """Positions per block of the row-blocked filter gradient: their dy rows, ``count``
    accumulators and the input value fill the vector registers; 0 (the passes of
    ``_filter_group`` instead) when fewer than two positions fit beside one-register
    accumulators."""
    registers, row = _registers(cout, dtype)
    if row != 1:
        return 0
    width = min(FILTER_POSITIONS, registers - count - 1)
    return width if width >= 2 else 0


def _vectorizable(g, cout):
    return g.kh * g.kw * g.c <= VECTOR_TAPS and cout <= VECTOR_CHANNELS


def _padded(g):
    """Whether some tap of the convolution reads the padding (or past the input's end)."""
    return bool(g.top or g.left or (g.oh - 1) * g.sh + (g.kh - 1) * g.rh + 1 > g.h or
                (g.ow - 1) * g.sw + (g.kw - 1) * g.rw + 1 > g.w)


def _tap_value(fn, g, t, dtype, n, p, q, i, j, c):
    """x[n, p*sh + i*rh - top, q*sw + j*rw - left, c] as a scalar (0 in the padding)."""
    h = fn(f"sub i64 {fn.add(fn.mul(p, g.sh), i * g.rh)}, {g.top}") if g.top else \
        fn.add(fn.mul(p, g.sh), i * g.rh)
    w = fn(f"sub i64 {fn.add(fn.mul(q, g.sw), j * g.rw)}, {g.left}") if g.left else \
        fn.add(fn.mul(q, g.sw), j * g.rw)
    padded = _padded(g)
    if padded:
        inside = fn(f"and i1 {fn(f'icmp ult i64 {h}, {g.h}')}, {fn(f'icmp ult i64 {w}, {g.w}')}")
        h = fn.call("i64", "llvm.umin.i64", [("i64", h), ("i64", str(g.h - 1))])
        w = fn.call("i64", "llvm.umin.i64", [("i64", w), ("i64", str(g.w - 1))])
    xi = fn.add(fn.mul(fn.add(fn.mul(fn.add(fn.mul(n, g.h), h), g.w), w), g.c), c)
    v = fn.load(t, fn.gep(t, "%p1", xi))
    if padded:
        v = fn(f"select i1 {inside}, {t} {v}, {t} {float_literal(0.0, dtype)}")
    return v


def _row_blocked(g):
    """Neighbouring output positions of a row read overlapping input columns (width stride
    and dilation 1, no padding): a block of them reads each input value once, for every tap
    of the row that uses it (``_row_taps``)."""
    return g.sw == 1 and g.rw == 1 and not _padded(g)


def _row_taps(fn, g, t, cout, n, p, q0, width, use):
    """The taps of output positions q0 .. q0+width-1 of row p, input column by column: each
    x[n, h, q0+s, c] is loaded and splat to ``cout`` lanes once, and ``use(xv, k, u)`` runs
    for every (tap k, position u) reading it. A position's taps come in the order (i, j, c),
    as in the per-position kernels (the same rounding). Needs ``_row_blocked(g)``."""
    for i in range(g.kh):
        h = fn.add(fn.mul(p, g.sh), i * g.rh)
        base = fn.mul(fn.add(fn.mul(fn.add(fn.mul(n, g.h), h), g.w), q0), g.c)
        for s in range(width + g.kw - 1):
            for c in range(g.c):
                xv = None
                for j in range(g.kw):
                    if 0 <= s - j < width:
                        if xv is None:
                            xv = _splat(fn, f"<{cout} x {t}>", t, fn.load(
                                t, fn.gep(t, "%p1", fn.add(base, s * g.c + c))), cout)
                        use(xv, (i * g.kw + j) * g.c + c, s - j)


def _row_blocks(fn, ow, most, carried, body):
    """A row's ``ow`` positions in blocks of at most ``most``, as even as can be (widths
    differ by one at most: 26 by 7 is 7, 7, 6, 6, not 7, 7, 7, 5); ``body(q0, width,
    values)`` returns the next values of ``carried`` [(type, value)]; returns the last."""
    count = -(-ow // most)
    base, extra = divmod(ow, count)
    values, start = [v for _, v in carried], 0
    for width, k in ((base + 1, extra), (base, count - extra)):
        if k == 1:
            values = body(str(start), width, values)
        elif k:
            with fn.loop(k, "q") as lq:
                phis = [lq.carry(ty, v) for (ty, _), v in zip(carried, values)]
                q0 = fn.add(fn.mul(lq.i, width), start)
                for phi, v in zip(phis, body(q0, width, phis)):
                    lq.update(phi, v)
            values = phis
        start += k * width
    return values


def conv_vector_function(kind, dtype, g, cout, noalias, epilogue=None, bias=False,
                         pool=None, routed=None):
    """Direct convolution with output channels as one vector: "forward" (%p0=y, %p1=x,
    %p2=w) keeps each position's output row in a register over the taps, with the filter
    rows loaded once; "filter" (%p0=dw, %p1=x, %p2=dy) keeps every (tap, channel) row of the
    filter gradient in a register over all positions and stores it once (no zero fill).
    ``epilogue`` (forward only): (body, conv arg, {arg: parameter or literal}) applied to
    each output row in registers before it is stored (a bias and activation folded in).
    ``bias`` (filter only): also sum dy over all positions into %p3 (the bias gradient, one
    more register, read from the rows the filter gradient loads anyway).
    ``pool`` (forward only): (pooling geometry, (channels, code type, flag), codes parameter
    or None): %p0 is max pooling's output instead (``folds.conv_pool``): each band of
    ``kh`` output rows goes to a stack buffer, is pooled from there (``pool.scan_row``, the
    argmax codes saved as the saving max-pool does) and is never stored; rows past the last
    window are not computed.
    ``routed`` (filter only, positions sharing vectors): %p2 is max pooling's gradient
    instead of dy, routed as it is loaded (``Routing``, ``folds.routed_filter_gradient``)."""
    fn = Function("kernel", params(len(noalias), noalias))
    t = val_type(dtype)
    vt = f"<{cout} x {t}>"
    taps = [(i, j, c) for i in range(g.kh) for j in range(g.kw) for c in range(g.c)]

    def row(base, k):
        return fn.load(vt, fn.gep(t, base, k * cout))

    def fma(a, b, acc, ty=vt):
        width = ty[1:].split(" x ")[0]
        return fn.call(ty, f"llvm.fmuladd.v{width}{'f32' if t == 'float' else 'f64'}",
                       [(ty, a), (ty, b), (ty, acc)])
    blocked = _row_blocked(g)
    lanes = Lanes(fn, t, cout, lane_group(g, cout, dtype, blocked))
    if kind == "forward":
        wrows = [row("%p2", k) for k in range(len(taps))]
        if epilogue is not None:
            body, conv_arg, sources = epilogue
            rows = {a: (fn.load(vt, src) if src.startswith("%") else src)
                    for a, src in sources.items()}
        if lanes.p > 1:
            wide = [lanes.channels(w) for w in wrows]
            # the epilogue's rows repeated for a whole group's positions and the last
            # group's, in memory order (made here: they must dominate every block)
            wide_rows = {count: {a: lanes.repeated(v, count) if v.startswith("%") else v
                                 for a, v in rows.items()}
                         for count in {lanes.p, g.ow % lanes.p} - {0}} \
                if epilogue is not None else {}

        def shared(n, p, q0, width, target):
            """Output positions (n, p, q0 + u), u < ``width``, ``lanes.p`` to a vector
            (``conv_lanes``): one chain of multiply-adds per group."""
            accs = ["zeroinitializer"] * -(-width // lanes.p)

            def use(xv, k, grp):
                accs[grp] = fma(xv, wide[k], accs[grp], lanes.vt)
            group_taps(fn, g, lanes, n, p, q0, width, use)
            for grp, acc in enumerate(accs):
                count = min(lanes.p, width - grp * lanes.p)
                rt = f"<{count * cout} x {t}>"
                value = lanes.to_memory(acc, count)
                if epilogue is not None:
                    value = render_vector(fn, body, {**wide_rows[count], conv_arg: value}, rt)
                fn.store(rt, value, out_at(n, p, fn.add(q0, grp * lanes.p), target))

        def out_at(n, p, q, target):
            if target is not None:
                return target(q)
            pos = fn.add(fn.mul(fn.add(fn.mul(n, g.oh), p), g.ow), q)
            return fn.gep(t, "%p0", fn.mul(pos, cout))

        def positions(n, p, q0, width, target):
            """Output positions (n, p, q0 + u), u < ``width``: one chain of fused
            multiply-adds each, interleaved (one chain alone waits on each FMA's latency).
            Each row stored at ``target(q)`` (None: y's)."""
            accs = ["zeroinitializer"] * width

            def use(xv, k, u):
                accs[u] = fma(xv, wrows[k], accs[u])
            if blocked:
                _row_taps(fn, g, t, cout, n, p, q0, width, use)
            else:
                for k, (i, j, c) in enumerate(taps):
                    for u in range(width):
                        q = fn.add(q0, u)
                        use(_splat(fn, vt, t, _tap_value(fn, g, t, dtype, n, p, q, i, j, c),
                                   cout), k, u)
            for u, acc in enumerate(accs):
                ptr = out_at(n, p, fn.add(q0, u), target)
                if epilogue is not None:
                    acc = render_vector(fn, body, {**rows, conv_arg: acc}, vt)
                fn.store(vt, acc, ptr)

        def conv_row(n, p, target=None):
            if lanes.p > 1:
                full, rest = divmod(g.ow, lanes.p)
                _row_blocks(fn, full, FORWARD_ROW_GROUPS, [], lambda g0, count, _: shared(
                    n, p, fn.mul(g0, lanes.p), count * lanes.p, target) or [])
                if rest:
                    shared(n, p, str(full * lanes.p), rest, target)
                return
            if blocked:
                _row_blocks(fn, g.ow, together, [],
                            lambda q0, width, _: positions(n, p, q0, width, target) or [])
                return
            blocks, rest = divmod(g.ow, together)
            if blocks:
                with fn.loop(blocks, "q") as lq:
                    positions(n, p, fn.mul(lq.i, together), together, target)
            if rest:
                positions(n, p, str(blocks * together), rest, target)
        together = _forward_positions(cout, dtype, blocked)
        if pool is None:
            with fn.loop(g.n, split=_macs(g, cout)) as ln, fn.loop(g.oh) as lp:
                conv_row(ln.i, lp.i)
        elif POOL_PAIRS and lanes.p == 2 == pool[0].kw:
            _pool_pairs(fn, (g, lanes, dtype), pool, wide, fma,
                        (body, conv_arg, rows, wide_rows[2]) if epilogue is not None else None)
        else:
            pg, code, codes = pool
            band = fn(f"alloca {t}, i64 {pg.kh * g.ow * cout}, align 64", "band")

            def in_band(i, q):
                return fn.gep(t, band, fn.mul(fn.add(q, i * g.ow), cout))
            with fn.loop(g.n, split=_macs(g, cout)) as ln, fn.loop(pg.oh) as lp:
                for i in range(pg.kh):
                    conv_row(ln.i, fn.add(fn.mul(lp.i, pg.kh), i),
                             lambda q, i=i: in_band(i, q))
                scan_row(fn, dtype, pg, code, ("%p0", codes), (ln.i, lp.i),
                         lambda i, j, q: in_band(i, fn.add(fn.mul(q, pg.kw), j)))
    else:
        # each chunk of images sums into its own copy of dw (and db): ``parallel``
        fn.partials = {0: len(taps) * cout * dtype.itemsize}
        if bias:
            fn.partials[3] = cout * dtype.itemsize
        fn.partial_dtype = dtype
        count = len(taps) + bias  # accumulators: one per tap, and the bias gradient's
        with fn.loop(g.n, split=_macs(g, cout)) as ln:
            finals = [ln.carry(lanes.vt, "zeroinitializer") for _ in range(count)]
            values = list(finals)
            width = _filter_positions(count, cout, dtype) if blocked else 0
            if lanes.p > 1:
                values = _filter_groups(fn, g, lanes, ln.i, values, bias, fma, routed)
                width = 0
            elif width:  # every accumulator in one pass, blocks of positions
                values = _filter_rows(fn, g, (t, cout), ln.i, values, bias, width, fma)
            size = _filter_group(cout, dtype)  # else passes over the positions, a group each
            groups = [] if width or lanes.p > 1 else [range(k, min(k + size, count))
                                                      for k in range(0, count, size)]
            for group in groups:
                def position(idx, accs, group=group):
                    p, q = idx
                    pos = fn.add(fn.mul(fn.add(fn.mul(ln.i, g.oh), p), g.ow), q)
                    dy = fn.load(vt, fn.gep(t, "%p2", fn.mul(pos, cout)))
                    return [fn(f"fadd fast {vt} {acc}, {dy}") if k == len(taps) else
                            fma(_splat(fn, vt, t, _tap_value(fn, g, t, dtype, ln.i, p, q,
                                                             *taps[k]), cout), dy, acc)
                            for k, acc in zip(group, accs)]
                out = carried_nest(fn, (g.oh, g.ow), [(vt, values[k]) for k in group],
                                   position)
                for k, v in zip(group, out):
                    values[k] = v
            for phi, v in zip(finals, values):
                ln.update(phi, v)
        if lanes.p > 1:
            finals = [lanes.sum_positions(v) for v in finals]
        if bias:
            fn.store(vt, finals.pop(), "%p3")
        for k, acc in enumerate(finals):
            fn.store(vt, acc, fn.gep(t, "%p0", k * cout))
    fn.ret()
    return fn


# Pairs of pooling windows per block of the pooling convolution's rows (``_pool_pairs``;
# 0: a band in memory order, one window a vector)
POOL_PAIRS = 3


def _pool_pairs(fn, conv, pool, wide, fma, epilogue):
    """The pooling convolution where a window's two columns are the two positions sharing a
    vector (``conv_lanes``, P = kw = 2): the band holds, for each of the window's rows and
    columns, the tap of two neighbouring windows side by side (the two groups' lanes of that
    column, one two-vector shuffle each), so that ``pool.scan_together`` compares two windows
    a vector, tap by tap as it does one, and stores both windows' maxima and taps at once.
    An odd last window is scanned alone. ``wide``: the interleaved filter rows; ``epilogue``:
    (body, conv arg, its rows, its rows repeated for two windows)."""
    g, lanes, dtype = conv
    pg, code, codes = pool
    t, cout, kw = lanes.t, lanes.cout, pg.kw
    pairs, odd = divmod(pg.ow, 2)
    slots = pairs + odd
    band = fn(f"alloca {t}, i64 {pg.kh * slots * kw * 2 * cout}, align 64", "band")

    def slot(i, w2, j):
        return fn.gep(t, band, fn.mul(fn.add(fn.mul(w2, kw), (i * slots) * kw + j), 2 * cout))

    def taps(i, n, p, w0, count):
        """Conv row p's windows 2*w0 .. 2*(w0+count)-1 (``count`` pairs; 0: the odd last
        window alone) into band row i."""
        groups = max(2 * count, 1)
        accs = ["zeroinitializer"] * groups

        def use(xv, k, grp):
            accs[grp] = fma(xv, wide[k], accs[grp], lanes.vt)
        group_taps(fn, g, lanes, n, p, fn.mul(w0, 2 * kw), groups * kw, use)
        for pair in range(max(count, 1)):
            for j in range(kw):
                value = lanes.column(j, accs[2 * pair], accs[2 * pair + 1]) if count else \
                    lanes.column(j, accs[0])
                width = 2 * cout if count else cout
                vt = f"<{width} x {t}>"
                if epilogue is not None:
                    body, conv_arg, rows, pair_rows = epilogue
                    value = render_vector(fn, body, {**(pair_rows if count else rows),
                                                     conv_arg: value}, vt)
                fn.store(vt, value, slot(i, fn.add(w0, pair), j))
    index = f"i{dtype.itemsize * 8}"
    with fn.loop(g.n, split=_macs(g, cout)) as ln, fn.loop(pg.oh) as lp:
        for i in range(pg.kh):
            p = fn.add(fn.mul(lp.i, pg.kh), i)
            if pairs:
                _row_blocks(fn, pairs, POOL_PAIRS, [],
                            lambda w0, count, _, i=i, p=p: taps(i, ln.i, p, w0, count) or [])
            if odd:
                taps(i, ln.i, p, str(pairs), 0)
        first = fn.mul(fn.add(fn.mul(ln.i, pg.oh), lp.i), pg.ow)
        for channels, w2s in ((2 * cout, range(pairs)), (cout, range(pairs, slots))):
            if not len(w2s):
                continue
            geometry = SimpleNamespace(kh=pg.kh, kw=kw, c=channels)

            def scan(w2):
                (found,) = scan_together(fn, dtype, geometry, None, None, [w2], index,
                                         lambda i, j, q: slot(i, q, j))
                store_window(fn, dtype, (channels, *code[1:]), ("%p0", codes),
                             fn.add(first, fn.mul(w2, 2)), found, index, cout)
            if channels == cout:
                scan(str(pairs))
            else:
                with fn.loop(pairs, "w") as lw:
                    scan(lw.i)


def _filter_rows(fn, g, types, n, values, bias, width, fma):
    """The filter gradient's accumulators ``values`` (one per tap, then the bias
    gradient's when ``bias``) summed over image n's positions, ``width`` neighbouring
    positions at a time: their dy rows loaded once, each input value once for every tap
    reading it (``_row_taps``). Each accumulator still sums the positions in row-major order.
    Returns the sums."""
    t, cout = types
    vt = f"<{cout} x {t}>"

    def block(p, q0, count, accs):
        accs = list(accs)
        pos = fn.add(fn.mul(fn.add(fn.mul(n, g.oh), p), g.ow), q0)
        dys = [fn.load(vt, fn.gep(t, "%p2", fn.mul(fn.add(pos, u), cout)))
               for u in range(count)]
        if bias:
            for dy in dys:
                accs[-1] = fn(f"fadd fast {vt} {accs[-1]}, {dy}")

        def use(xv, k, u):
            accs[k] = fma(xv, dys[u], accs[k])
        _row_taps(fn, g, t, cout, n, p, q0, count, use)
        return accs
    with fn.loop(g.oh) as lp:
        row = [lp.carry(vt, v) for v in values]
        out = _row_blocks(fn, g.ow, width, [(vt, v) for v in row],
                          lambda q0, count, accs: block(lp.i, q0, count, accs))
        for phi, v in zip(row, out):
            lp.update(phi, v)
    return row


# Groups of positions sharing vectors (``conv_lanes``) per block of a row, at most: the
# forward kernel's accumulators, the filter gradient's dy vectors
FORWARD_ROW_GROUPS = 5
FILTER_GROUPS = 4


def _filter_groups(fn, g, lanes, n, values, bias, fma, routed=None):
    """``_filter_rows`` with ``lanes.p`` positions to a vector (``conv_lanes``): each
    accumulator sums the positions of a group in separate lanes, each in row-major order.
    ``routed``: a ``Routing`` giving each group's dy from the pooled gradient."""
    t, cout, wt = lanes.t, lanes.cout, lanes.vt

    def block(p, q0, width, accs):
        accs = list(accs)
        pos = fn.add(fn.mul(fn.add(fn.mul(n, g.oh), p), g.ow), q0)
        dys = []
        for grp in range(-(-width // lanes.p)):
            count = min(lanes.p, width - grp * lanes.p)
            if routed is not None:
                dys.append(routed.dy(fn, lanes, n, p, fn.add(q0, grp * lanes.p)))
                continue
            at = fn.gep(t, "%p2", fn.mul(fn.add(pos, grp * lanes.p), cout))
            dys.append(lanes.from_memory(fn.load(f"<{count * cout} x {t}>", at), count))
        if bias:
            for dy in dys:
                accs[-1] = fn(f"fadd fast {wt} {accs[-1]}, {dy}")

        def use(xv, k, grp):
            accs[k] = fma(xv, dys[grp], accs[k], wt)
        group_taps(fn, g, lanes, n, p, q0, width, use)
        return accs
    full, rest = divmod(g.ow, lanes.p)
    with fn.loop(g.oh) as lp:
        row = [lp.carry(wt, v) for v in values]
        out = _row_blocks(fn, full, FILTER_GROUPS, [(wt, v) for v in row],
                          lambda g0, count, accs: block(lp.i, fn.mul(g0, lanes.p),
                                                        count * lanes.p, accs))
        if rest:
            out = block(lp.i, str(full * lanes.p), rest, out)
        for phi, v in zip(row, out):
            lp.update(phi, v)
    return row


@dataclass(frozen=True)
class Routing:
    """dy of a pooled convolution's filter gradient from max pooling's gradient (%p2) and the
    argmax codes a forward max_pool saved (``codes``; ``pool.SavedArgmax``'s ``index``
    type, ``flag`` and ``mask``), as ``max_pool_grad`` would have stored it: a window of
    ``kh`` x ``kw`` (its stride; the pooled output ``oh`` x ``ow``) gives its gradient to
    the tap of its first maximum, each channel its own, 0 elsewhere; with ``masked``, only
    where the window's maximum is > 0 (a pooled ReLU's where: ``folds.relu_mask``)."""
    kh: int
    kw: int
    oh: int
    ow: int
    index: str
    flag: int
    mask: int
    masked: bool
    codes: str

    def dy(self, fn, lanes, n, p, q0):
        """The interleaved dy of positions (n, p, q0 .. q0 + kw - 1): one window's row of
        taps (``lanes.p`` = kw, q0 a multiple of it)."""
        t, cout, it = lanes.t, lanes.cout, self.index
        size = lanes.p * cout
        dh = fn(f"urem i64 {p}, {self.kh}")
        window = fn.add(fn.mul(fn.add(fn.mul(n, self.oh), fn(f"udiv i64 {p}, {self.kh}")),
                               self.ow), fn(f"udiv i64 {q0}, {self.kw}"))
        grad = lanes.channels(fn.load(f"<{cout} x {t}>",
                                      fn.gep(t, "%p2", fn.mul(window, cout))))
        kt, wide = f"<{cout} x {it}>", f"<{size} x {it}>"
        code = fn.load(kt, fn.gep(it, self.codes, fn.mul(window, cout)))
        code = fn(f"shufflevector {kt} {code}, {kt} poison, <{size} x i32> <" +
                  ", ".join(f"i32 {c}" for c in range(cout) for _ in range(lanes.p)) + ">")
        first = fn(f"trunc i64 {fn.mul(dh, self.kw)} to {it}")
        taps = fn(f"add {wide} {_splat(fn, wide, it, first, size)}, <" +
                  ", ".join(f"{it} {u}" for _ in range(cout) for u in range(lanes.p)) + ">")
        tap = fn(f"and {wide} {code}, splat ({it} {self.mask})")
        hit = fn(f"icmp eq {wide} {tap}, {taps}")
        if self.masked:
            flag = fn(f"and {wide} {code}, splat ({it} {self.flag})")
            hit = fn(f"and <{size} x i1> {hit}, {fn(f'icmp ne {wide} {flag}, zeroinitializer')}")
        return fn(f"select <{size} x i1> {hit}, {lanes.vt} {grad}, {lanes.vt} zeroinitializer")


def _many_channels(g, cout, dtype):
    """Too many (tap, channel) pairs or output channels for the direct vector kernels: the
    convolution runs as a GEMM (``conv_gemm``) when the backend can."""
    return not _vectorizable(g, cout) and dtype.is_floating


@lowers("conv2d")
def lower_conv(L, n):
    x, w = n.inputs
    g = _geometry(n, x, w.shape)
    cout = w.shape[3]
    if _many_channels(g, cout, n.dtype):
        conv_gemm.lower_forward(L, n, g, x, w)
        return
    if not _vectorizable(g, cout):
        bufs = [L.out(n), L.buf(x), L.buf(w)]
        L.call(conv_function("forward", n.dtype, g, cout, L.noalias(bufs)), bufs, n)
        return
    folded = L.fold(n, "conv_epilogue")  # (folds.conv_epilogue)
    bufs, epilogue = [L.out(n), L.buf(x), L.buf(w)], None
    if folded is not None:
        f, body, conv_arg, others = folded
        bufs[0], sources = L.out(f), {}
        for k, v in others.items():
            if int(np.prod(v.shape)) == 1:  # one value for every lane: a splat literal
                sources[k] = f"splat ({val_type(n.dtype)} " \
                             f"{float_literal(const_scalar(v), n.dtype)})"
            else:  # one value per output channel: a vector loaded once
                sources[k] = f"%p{len(bufs)}"
                bufs.append(L.buf(v))
        L.skip.add(f)
        epilogue = (body, conv_arg, sources)
    m = vars(L).get("pooled_conv", {}).get(n)  # (folds.conv_pool)
    fn = conv_vector_function("forward", n.dtype, g, cout, L.noalias(bufs), epilogue) \
        if m is None else _pooling_conv(L, n, m, bufs, (g, cout, epilogue))
    L.call(fn, bufs, n)


def _pooling_conv(L, n, m, bufs, conv):
    """The forward kernel of conv2d ``n`` that computes max_pool ``m`` of its output instead
    (``folds.conv_pool``): ``bufs`` gets m's output first and, when a backward pool op reads
    them, the argmax codes last."""
    g, cout, epilogue = conv
    pg = _geometry(m, m.inputs[0])
    bufs[0] = L.out(m)
    L.skip.add(m)
    codes, saved = None, None
    if pool._read_later(L, m, pg):
        saved = pool.new_saved(L, m, pg)
        bufs.append(saved.buf)
        codes = f"%p{len(bufs) - 1}"
    code = (pg.c, saved.index, saved.flag) if saved is not None else (pg.c, "i8", 0)
    return conv_vector_function("forward", n.dtype, g, cout, L.noalias(bufs), epilogue,
                                pool=(pg, code, codes))


def const_scalar(v):
    """The value of a one-element constant (``folds.conv_epilogue`` admits no other scalars)."""
    return scalar_const(v)


@lowers("conv2d_backprop_filter")
def lower_conv_filter(L, n):
    x, dy = n.inputs
    g = _geometry(n, x, n.attrs["filter_shape"])
    if _many_channels(g, n.shape[3], n.dtype):
        conv_gemm.lower_filter(L, n, g, x, dy)
        return
    bufs = [L.out(n), L.buf(x), L.buf(dy)]
    if _vectorizable(g, n.shape[3]):
        bias = L.fold(n, "bias_gradient")  # the sum deferred to this kernel (folds.py)
        routed = L.fold(n, "routed_filter_gradient")
        if routed is not None:  # dy routed from the pooled gradient as it is loaded
            routing, masked, bias = routed
            pg = _geometry(routing, routing.inputs[0])
            saved = pool.saved_argmax(L, routing, pg)
            bufs[2] = L.buf(routing.inputs[1])
        if bias is not None:
            bufs.append(L.out(bias))
            L.skip.add(bias)
        if routed is not None:
            bufs.append(saved.buf)
            routed = Routing(pg.kh, pg.kw, pg.oh, pg.ow, saved.index, saved.flag, saved.mask,
                             masked, f"%p{len(bufs) - 1}")
        fn = conv_vector_function("filter", n.dtype, g, n.shape[3], L.noalias(bufs),
                                  bias=bias is not None, routed=routed)
        L.call(fn, bufs, n)
        return
    fill(L, L.out(n), n.shape, n.dtype, 0, n)
    L.call(conv_function("filter", n.dtype, g, n.shape[3], L.noalias(bufs)), bufs, n)


def _wide_input(g, dtype):
    """Input channels enough to fill a vector: the input gradient runs as a GEMM (its rows
    the input channels) even when the forward pass is direct. 1x1 convolutions on 32x28x28
    (GRAPHC_PROFILE minimum cycles, plain loops vs GEMM): 16->32 channels 2.65M vs 0.66M,
    32->64 10.0M vs 5.2M, stride 2 16->16 0.84M vs 0.32M, 8->16 0.59M vs 0.58M."""
    unit = vector_unit()
    return unit is not None and dtype.is_floating and g.c * dtype.itemsize >= unit.bytes


@lowers("conv2d_backprop_input")
def lower_conv_input(L, n):
    dy, w, like = n.inputs
    g = _geometry(n, like, w.shape)
    if _many_channels(g, w.shape[3], n.dtype) or _wide_input(g, n.dtype):
        if (g.sh, g.sw, g.rh, g.rw) == (1, 1, 1, 1):
            conv_gemm.lower_input(L, n, g, dy, w)
            return
        if vector_unit() is not None:
            conv_phases.lower_input_strided(L, n, g, dy, w)
            return
    fill(L, L.out(n), n.shape, n.dtype, 0, n)
    bufs = [L.out(n), L.buf(dy), L.buf(w)]
    L.call(conv_function("input", n.dtype, g, w.shape[3], L.noalias(bufs)), bufs, n)
