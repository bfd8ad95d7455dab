"""Depthwise convolution (NHWC input, [kh, kw, C, M] filters) and its two gradients.

Direct loops over windows with the channels innermost, as vectors: output channels
``c * M + m`` of a block of input channels are one ``<cb M>`` vector (about two registers),
filters rows ``w[i, j, c0:c0 + cb, :]`` are contiguous, and an input row ``x[.., c0:c0 + cb]``
is repeated M times per channel by one shuffle. Taps are ``dilations`` apart; taps in the
padding read a clamped address and count as zero (a select, no branch).

- forward: four neighbouring output positions at a time, each block accumulated in registers
  over the taps (the filter rows loaded once for the four), stored once;
- filter gradient: every image adds, per block and group of taps, a sum over its positions
  kept in registers (the images split over the pool, each chunk summing into its own partial
  filter gradient);
- input gradient: each input position gathers from the output positions that read it, phase
  by phase (``conv_phases.phase_taps``: with stride s, the rows h with one remainder mod s
  see the same taps), the M products of a channel summed by shuffles before the one store;
  a tap whose output position lies past dy leaves the sum as it is (no ``0 * w`` term, which
  an infinite filter value would make NaN).
"""
from ....ir.ops.windows import dilated_window, window_geometry
from .conv_gemm import _row_groups
from .conv_phases import phase_taps
from .gemm import fmuladd, vector_type, vector_unit
from ..ir import Function, float_literal, val_type
from ..loops import carried_nest, params
from ..registry import lowers

# Output lanes of one block: this many vector registers. Measured (GRAPHC_PROFILE minimum
# cycles, 3x3 SAME on AVX2): the forward pass on 32x28x28, 64 channels, one position of 4
# registers at a time 4.1M, 4 positions of 2 registers 2.7M, 2 of 4 2.8M (32x14x14, 128
# channels: 2.0M, 1.6M, 1.6M); the filter gradient (all taps of a block that fit in registers
# per pass over an image) 5.8M with blocks of 4 registers, 3.8M of 2, 3.8-4.1M of 1.
BLOCK_REGISTERS = 2
FORWARD_POSITIONS = 4  # neighbouring positions at a time (forward pass, input gradient)


class DepthwiseGeometry:
    """Sizes of one depthwise convolution: input [n, h, w, c], filters [kh, kw, c, m],
    strides, dilations and the output (oh, ow) with the padding before it (top, left)."""

    def __init__(self, x_shape, f_shape, strides, padding, dilations):
        self.n, self.h, self.w, self.c = (int(d) for d in x_shape)
        self.kh, self.kw, _, self.m = (int(d) for d in f_shape)
        self.sh, self.sw = strides
        self.rh, self.rw = dilations
        eh, ew = dilated_window((self.kh, self.kw), dilations)
        self.oh, self.top, _ = window_geometry(self.h, eh, self.sh, padding)
        self.ow, self.left, _ = window_geometry(self.w, ew, self.sw, padding)
        self.macs = self.n * self.oh * self.ow * self.kh * self.kw * self.c * self.m


def _geometry(node, x, f_shape):
    return DepthwiseGeometry(x.shape, f_shape, tuple(node.attrs.get("strides", (1, 1))),
                             node.attrs.get("padding", "VALID"),
                             tuple(node.attrs.get("dilations", (1, 1))))


def _blocks(g, dtype):
    """Input channels per block: the block's output lanes fill ``BLOCK_REGISTERS`` vectors."""
    unit = vector_unit()
    lanes = (unit.bytes if unit else 32) // dtype.itemsize
    return min(max(BLOCK_REGISTERS * lanes // g.m, 1), g.c)


def _over_blocks(fn, g, dtype, body):
    """``body(first channel, cb)`` for every block of input channels."""
    _row_groups(fn, g.c, _blocks(g, dtype), body)


def _neighbours(fn, count, body):
    """``body([index values])`` over ``count`` positions, ``FORWARD_POSITIONS`` at a time
    (a loop), then the rest."""
    together = min(FORWARD_POSITIONS, count)
    blocks, rest = divmod(count, together)
    if blocks:
        with fn.loop(blocks, "q") as lq:
            first = fn.mul(lq.i, together)
            body([fn.add(first, u) for u in range(together)])
    if rest:
        body([str(blocks * together + u) for u in range(rest)])


def _pixel(fn, n, h, w, dims, chans, check):
    """(element offset of pixel (n, h, w) of an [n, dims[0], dims[1], chans] buffer, and an
    i1 "inside" when ``check``: h and w are then clamped inside, else None)."""
    inside = None
    if check:
        inside = fn(f"and i1 {fn(f'icmp ult i64 {h}, {dims[0]}')}, "
                    f"{fn(f'icmp ult i64 {w}, {dims[1]}')}")
        h = fn.call("i64", "llvm.umin.i64", [("i64", h), ("i64", str(dims[0] - 1))])
        w = fn.call("i64", "llvm.umin.i64", [("i64", w), ("i64", str(dims[1] - 1))])
    return fn.mul(fn.add(fn.mul(fn.add(fn.mul(n, dims[0]), h), dims[1]), w), chans), inside


def _load(fn, t, width, ptr, inside):
    vt = vector_type(t, width)
    v = fn.load(vt, ptr)
    return v if inside is None else fn(f"select i1 {inside}, {vt} {v}, {vt} zeroinitializer")


def _repeat(fn, t, v, cb, m):
    """<cb> -> <cb m>: each lane repeated m times (x[c] for output channels c m .. c m + m-1)."""
    if m == 1:
        return v
    mask = ", ".join(f"i32 {lane // m}" for lane in range(cb * m))
    return fn(f"shufflevector {vector_type(t, cb)} {v}, {vector_type(t, cb)} poison, "
              f"<{cb * m} x i32> <{mask}>")


def _sum_groups(fn, t, v, cb, m):
    """<cb m> -> <cb>: lane c is the sum of lanes c m .. c m + m-1."""
    if m == 1:
        return v
    vt = vector_type(t, cb * m)
    out = None
    for k in range(m):
        mask = ", ".join(f"i32 {c * m + k}" for c in range(cb))
        part = fn(f"shufflevector {vt} {v}, {vt} poison, <{cb} x i32> <{mask}>")
        out = part if out is None else fn(f"fadd {vector_type(t, cb)} {out}, {part}")
    return out


def _padded(g):
    """Whether some tap of some window falls outside the input."""
    eh, ew = dilated_window((g.kh, g.kw), (g.rh, g.rw))
    return bool(g.top or g.left or (g.oh - 1) * g.sh + eh > g.h or (g.ow - 1) * g.sw + ew > g.w)


def _x_tap(fn, t, g, n, p, q, i, j, c0, cb):
    """x[n, p sh + i rh - top, q sw + j rw - left, c0 : c0 + cb], zero in the padding."""
    h = fn.add(fn.mul(p, g.sh), i * g.rh - g.top)
    w = fn.add(fn.mul(q, g.sw), j * g.rw - g.left)
    off, inside = _pixel(fn, n, h, w, (g.h, g.w), g.c, _padded(g))
    return _load(fn, t, cb, fn.gep(t, "%p1", fn.add(off, c0)), inside)


def forward_function(dtype, g, noalias):
    """%p0 = y [n, oh, ow, c m], %p1 = x, %p2 = filters: ``FORWARD_POSITIONS`` neighbouring
    positions at a time, each its own accumulators, sharing the filter rows loaded per tap."""
    fn = Function("kernel", params(3, noalias))
    t, cm = val_type(dtype), g.c * g.m

    def positions(n, p, qs):
        def block(c0, cb):
            width = cb * g.m
            accs = ["zeroinitializer"] * len(qs)
            for i in range(g.kh):
                for j in range(g.kw):
                    wv = fn.load(vector_type(t, width), fn.gep(
                        t, "%p2", fn.add(fn.mul(c0, g.m), (i * g.kw + j) * cm)))
                    for u, q in enumerate(qs):
                        xv = _repeat(fn, t, _x_tap(fn, t, g, n, p, q, i, j, c0, cb), cb, g.m)
                        accs[u] = fmuladd(fn, t, xv, wv, accs[u], width)
            for q, acc in zip(qs, accs):
                pos = fn.add(fn.mul(fn.add(fn.mul(n, g.oh), p), g.ow), q)
                fn.store(vector_type(t, width), acc,
                         fn.gep(t, "%p0", fn.add(fn.mul(pos, cm), fn.mul(c0, g.m))))
        _over_blocks(fn, g, dtype, block)
    with fn.loop(g.n, split=g.macs) as ln, fn.loop(g.oh) as lp:
        _neighbours(fn, g.ow, lambda qs: positions(ln.i, lp.i, qs))
    fn.ret()
    return fn


def _tap_group(dtype, width):
    """Taps whose accumulators one pass over an image's positions keeps in registers."""
    unit = vector_unit()
    registers, size = (unit.registers, unit.bytes) if unit else (16, 32)
    rows = max(-(-width * dtype.itemsize // size), 1)
    return max((registers - 2 * rows - 2) // rows, 1)


def filter_function(dtype, g, noalias):
    """%p0 = dw [kh, kw, c, m] (its own partial per chunk of images), %p1 = x, %p2 = dy."""
    fn = Function("kernel", params(3, noalias))
    t, cm = val_type(dtype), g.c * g.m
    size = g.kh * g.kw * cm
    with fn.loop(size) as lz:  # dw = 0 (a chunk of images: its own partial dw)
        fn.store(t, float_literal(0.0, dtype), fn.gep(t, "%p0", lz.i))
    fn.partials, fn.partial_dtype = {0: size * dtype.itemsize}, dtype
    taps = [(i, j) for i in range(g.kh) for j in range(g.kw)]
    with fn.loop(g.n, "img", split=g.macs) as ln:
        def block(c0, cb):
            width = cb * g.m
            vt = vector_type(t, width)
            step = _tap_group(dtype, width)
            for first in range(0, len(taps), step):
                group = taps[first:first + step]
                ptrs = [fn.gep(t, "%p0", fn.add(fn.mul(c0, g.m), (i * g.kw + j) * cm))
                        for i, j in group]

                def position(idx, accs, group=group):
                    p, q = idx
                    pos = fn.add(fn.mul(fn.add(fn.mul(ln.i, g.oh), p), g.ow), q)
                    dy = fn.load(vt, fn.gep(t, "%p2", fn.add(fn.mul(pos, cm), fn.mul(c0, g.m))))
                    return [fmuladd(fn, t, _repeat(fn, t, _x_tap(fn, t, g, ln.i, p, q, i, j,
                                                                 c0, cb), cb, g.m), dy, acc,
                                    width)
                            for (i, j), acc in zip(group, accs)]
                out = carried_nest(fn, (g.oh, g.ow), [(vt, fn.load(vt, p)) for p in ptrs],
                                   position)
                for p, v in zip(ptrs, out):
                    fn.store(vt, v, p)
        _over_blocks(fn, g, dtype, block)
    fn.ret()
    return fn


def input_function(dtype, g, noalias):
    """%p0 = dx [n, h, w, c], %p1 = dy [n, oh, ow, c m], %p2 = filters: every element of dx
    written once, phase by phase, ``FORWARD_POSITIONS`` neighbouring columns of a phase at a
    time (sharing the filter rows, as the forward pass does)."""
    fn = Function("kernel", params(3, noalias))
    t, cm = val_type(dtype), g.c * g.m
    rows = phase_taps(g.h, g.kh, g.sh, g.top, g.rh)
    cols = phase_taps(g.w, g.kw, g.sw, g.left, g.rw)

    def positions(n, a, bs, phase, ti, tj):
        """dx at rows a s + ph, columns b s + pw of phase (ph, pw) for b in ``bs``."""
        def block(c0, cb):
            width = cb * g.m
            accs = ["zeroinitializer"] * len(bs)
            for i, di in ti:
                for j, dj in tj:
                    wv = fn.load(vector_type(t, width), fn.gep(
                        t, "%p2", fn.add(fn.mul(c0, g.m), (i * g.kw + j) * cm)))
                    for u, b in enumerate(bs):
                        off, inside = _pixel(fn, n, fn.add(a, di), fn.add(b, dj),
                                             (g.oh, g.ow), cm, True)
                        dy = _load(fn, t, width, fn.gep(t, "%p1", fn.add(off, fn.mul(c0, g.m))),
                                   None)
                        # an output position past dy adds no term (not 0 * w: NaN for an
                        # infinite tap, where the reference has none)
                        acc = fmuladd(fn, t, dy, wv, accs[u], width)
                        vt = vector_type(t, width)
                        accs[u] = fn(f"select i1 {inside}, {vt} {acc}, {vt} {accs[u]}")
            for b, acc in zip(bs, accs):
                dst, _ = _pixel(fn, n, fn.add(fn.mul(a, g.sh), phase[0]),
                                fn.add(fn.mul(b, g.sw), phase[1]), (g.h, g.w), g.c, False)
                fn.store(vector_type(t, cb), _sum_groups(fn, t, acc, cb, g.m),
                         fn.gep(t, "%p0", fn.add(dst, c0)))
        _over_blocks(fn, g, dtype, block)
    with fn.loop(g.n, split=g.macs) as ln:
        for ph, (a_count, ti) in enumerate(rows):
            for pw, (b_count, tj) in enumerate(cols):
                if not (a_count and b_count):
                    continue
                with fn.loop(a_count, "a") as la:
                    _neighbours(fn, b_count, lambda bs, a=la.i, ph=ph, pw=pw, ti=ti, tj=tj:
                                positions(ln.i, a, bs, (ph, pw), ti, tj))
    fn.ret()
    return fn


@lowers("depthwise_conv2d")
def lower_depthwise(L, n):
    x, w = n.inputs
    bufs = [L.out(n), L.buf(x), L.buf(w)]
    L.call(forward_function(n.dtype, _geometry(n, x, w.shape), L.noalias(bufs)), bufs, n)


@lowers("depthwise_conv2d_backprop_filter")
def lower_depthwise_filter(L, n):
    x, dy = n.inputs
    bufs = [L.out(n), L.buf(x), L.buf(dy)]
    g = _geometry(n, x, n.attrs["filter_shape"])
    L.call(filter_function(n.dtype, g, L.noalias(bufs)), bufs, n)


@lowers("depthwise_conv2d_backprop_input")
def lower_depthwise_input(L, n):
    dy, w, like = n.inputs
    bufs = [L.out(n), L.buf(dy), L.buf(w)]
    L.call(input_function(n.dtype, _geometry(n, like, w.shape), L.noalias(bufs)), bufs, n)
