"""Output channels that fill part of a vector share it with neighbouring positions.

The direct convolution kernels (``conv``) keep one output position's ``cout`` channels in one
vector. Where a vector holds several such rows (8 channels in a 16-lane AVX-512 register:
W4's convolution) half the multiply-add width would go unused, so ``P`` = lanes / cout
neighbouring positions of a row share one vector instead, their lanes interleaved by channel:

    lane c*P + u  =  channel c of position q0 + u        (u < P)

In that order the input values a group of positions reads for one tap, x[q0 .. q0+P-1], fill
the vector as ``P`` consecutive elements repeated ``cout`` times: one broadcast load of P
elements when the input has one channel, no shuffle. A filter row needs each channel repeated
P times (shuffled once per kernel), an output group goes back to the memory order (position
major) with one shuffle before it is stored, and dy goes the other way once per group in the
filter gradient. Each lane still sums its own position's taps in the per-position order, so
the forward pass gives the same bits as one position per vector; the filter gradient's
accumulators sum each of the P positions of a group apart and add the P partial sums at the
end (a different order of the same sum).
"""
from .gemm import vector_unit

SHARE_LANES = True  # off: one position per vector, as on hosts whose vectors cout fills


def lane_group(g, cout, dtype, row_blocked):
    """P: the neighbouring positions of a row that share a vector (1: none), where the
    host's vectors hold 2 or more rows of ``cout`` channels and the kernel walks a row's
    positions in blocks (``row_blocked``)."""
    unit = vector_unit()
    if not SHARE_LANES or unit is None or not row_blocked:
        return 1
    lanes = unit.bytes // dtype.itemsize
    if cout >= lanes or lanes % cout or g.ow < lanes // cout:
        return 1
    return lanes // cout


def _mask(indices):
    return f"<{len(indices)} x i32> <" + ", ".join(f"i32 {i}" for i in indices) + ">"


class Lanes:
    """Shuffles between the memory order of ``p`` rows of ``cout`` channels and the
    interleaved order (lane c*p + u), for element type ``t``."""

    def __init__(self, fn, t, cout, p):
        self.fn, self.t, self.cout, self.p = fn, t, cout, p
        self.vt = f"<{p * cout} x {t}>"

    def _shuffle(self, ty, value, mask, other=None):
        return self.fn(f"shufflevector {ty} {value}, {ty} {other or 'poison'}, {_mask(mask)}")

    def channels(self, row):
        """A ``<cout>`` row (a filter row, a bias) with each channel repeated p times."""
        return self._shuffle(f"<{self.cout} x {self.t}>", row,
                             [c for c in range(self.cout) for _ in range(self.p)])

    def repeated(self, row, count):
        """A ``<cout>`` row repeated for ``count`` positions in memory order
        (``<count*cout>``: an epilogue's row beside ``to_memory``'s groups)."""
        return self._shuffle(f"<{self.cout} x {self.t}>", row,
                             [c for _ in range(count) for c in range(self.cout)])

    def column(self, u, acc, other=None):
        """Position u's ``cout`` lanes of interleaved ``acc`` (memory order), then
        ``other``'s when given (``<2*cout>``: two groups' position u side by side)."""
        lanes = [c * self.p + u for c in range(self.cout)]
        if other is None:
            return self._shuffle(self.vt, acc, lanes)
        return self._shuffle(self.vt, acc, lanes + [self.p * self.cout + k for k in lanes],
                             other)

    def positions(self, values):
        """A ``<p>`` vector of one value per position, repeated for every channel."""
        return self._shuffle(f"<{self.p} x {self.t}>", values,
                             [u for _ in range(self.cout) for u in range(self.p)])

    def to_memory(self, acc, rows):
        """The first ``rows`` positions of interleaved ``acc`` in memory order
        (``<rows*cout>``)."""
        return self._shuffle(self.vt, acc, [c * self.p + u for u in range(rows)
                                            for c in range(self.cout)])

    def from_memory(self, value, rows):
        """``rows`` positions in memory order (``<rows*cout>``) interleaved, the lanes of
        missing positions zero."""
        n = rows * self.cout
        return self._shuffle(f"<{n} x {self.t}>", value,
                             [u * self.cout + c if u < rows else n
                              for c in range(self.cout) for u in range(self.p)],
                             "zeroinitializer")

    def window(self, base, start, stride, rows):
        """x[base + (start + u) * stride] for u < rows (0 past them), interleaved: one load of
        p consecutive elements when ``stride`` is 1 and the group is whole."""
        fn, t, p = self.fn, self.t, self.p
        if stride == 1 and rows == p:
            return self.positions(fn.load(f"<{p} x {t}>", fn.gep(t, base, start)))
        vec = "zeroinitializer"
        for u in range(rows):
            v = fn.load(t, fn.gep(t, base, start + u * stride))
            vec = fn(f"insertelement <{p} x {t}> {vec}, {t} {v}, i64 {u}")
        return self.positions(vec)

    def sum_positions(self, acc):
        """``<cout>``: the p positions' lanes of interleaved ``acc`` added, u = 0, 1, ..."""
        total = None
        for u in range(self.p):
            part = self._shuffle(self.vt, acc, [c * self.p + u for c in range(self.cout)])
            total = part if total is None else \
                self.fn(f"fadd <{self.cout} x {self.t}> {total}, {part}")
        return total



def group_taps(fn, g, lanes, n, p, q0, width, use):
    """The taps of output positions q0 .. q0+width-1 of row p in groups of ``lanes.p``
    (the last may hold fewer), input windows by input column: each window x[n, h, s0 ..
    s0+P-1, c] is loaded once and ``use(xv, k, G)`` runs for every (tap k, group G) reading
    it (a group G at tap column j reads the window starting at G*P + j). Each position's taps
    come in the order (i, j, c), as in ``conv._row_taps``."""
    size = lanes.p
    groups = -(-width // size)
    for i in range(g.kh):
        h = fn.add(fn.mul(p, g.sh), i * g.rh)
        base = fn.mul(fn.add(fn.mul(fn.add(fn.mul(n, g.h), h), g.w), q0), g.c)
        row = fn.gep(lanes.t, "%p1", base)
        for s0 in range((groups - 1) * size + g.kw):
            for c in range(g.c):
                loaded = {}
                for j in range(g.kw):
                    grp, off = divmod(s0 - j, size)
                    if s0 < j or off or grp >= groups:
                        continue
                    rows = min(size, width - grp * size)
                    if rows not in loaded:
                        loaded[rows] = lanes.window(row, s0 * g.c + c, g.c, rows)
                    use(loaded[rows], (i * g.kw + j) * g.c + c, grp)
