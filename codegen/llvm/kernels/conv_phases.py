"""The strided (or dilated) input gradient of a convolution with many channels, as implicit
GEMMs by phase.

With stride s, ``dx[h] = sum_(i, p: p s + i - top = h) dy[p] w[i]`` (one spatial axis shown):
the taps that reach row h are those with ``i = (h + top) mod s``, at dy row
``p = (h + top - i) / s``. Rows h of one phase ``h mod s = ph`` therefore see the same taps
i, each at a fixed dy offset ``d_i = (ph + top - i) / s`` from ``h // s``: a phase is a
stride-1 convolution of dy (zero-bordered for the offsets that fall outside) with a subset of
the taps, written to every s-th row of dx. The s x s phases (rows x columns) together do
exactly the forward pass's multiply-adds (a zero-inserted dy would do s^2 times as many), and
each element of dx is written once, so nothing is summed or zeroed first (except the phases
no tap reaches, when the window is smaller than the stride).

Each phase is one call of ``conv_gemm.conv_forward_function`` with explicit taps and a
strided output, split over the thread pool by blocks of positions like the forward pass.
"""
from .conv_gemm import ConvShape, conv_forward_function, padded
from .elementwise import fill
from ..loops import contiguous_strides
from .movement import strided_copy


def phase_taps(size, k, s, top, rate=1):
    """Per phase ph < s along one axis: (outputs of the phase, [(tap i, dy offset d_i)]),
    for taps ``rate`` apart (tap i reads row ``p s + i rate - top``)."""
    out = []
    for ph in range(s):
        taps = [(i, (ph + top - i * rate) // s) for i in range(k)
                if (ph + top - i * rate) % s == 0]
        out.append((len(range(ph, size, s)), taps))
    return out


def dy_extent(phases, before, dy_size):
    """Rows of dy the phases read, with ``before`` zero rows in front (at least dy itself)."""
    reach = [count - 1 + max(d for _, d in taps)
             for count, taps in phases if count and taps]
    return max([before + dy_size] + [before + r + 1 for r in reach])


def lower_input_strided(L, n, g, dy, w):
    """dx of a strided or dilated convolution with many channels: one implicit GEMM per
    phase (taps ``dilations`` apart: tap i reaches row ``p s + i r - top``)."""
    kh, kw, cin, cout = w.shape
    rows = phase_taps(g.h, kh, g.sh, g.top, g.rh)
    cols = phase_taps(g.w, kw, g.sw, g.left, g.rw)
    top = max([0] + [-d for _, taps in rows for _, d in taps])
    left = max([0] + [-d for _, taps in cols for _, d in taps])
    hp, wp = dy_extent(rows, top, g.oh), dy_extent(cols, left, g.ow)
    dyp = padded(L, L.buf(dy), (g.n, g.oh, g.ow, cout), (top, left), (hp, wp), n.dtype, n)
    # the filters with their channel axes swapped: [kh, kw, cout, cin]
    wt = L.arena(kh * kw * cout * cin * n.dtype.itemsize)
    strided_copy(L, wt, (0, contiguous_strides((kh, kw, cout, cin))), L.buf(w),
                 (0, (kw * cin * cout, cin * cout, 1, cout)), (kh, kw, cout, cin), n.dtype, n)
    if any(a and b and not (ti and tj) for a, ti in rows for b, tj in cols):
        fill(L, L.out(n), n.shape, n.dtype, 0, n)  # phases that no tap reaches stay zero
    out = (g.h * g.w * cin, g.sh * g.w * cin, g.sw * cin)
    for ph, (a, ti) in enumerate(rows):
        for pw, (b, tj) in enumerate(cols):
            if not (a and b and ti and tj):
                continue
            s = ConvShape(g.n, a, b, hp, wp, cout, len(ti), len(tj), 1, 1, cin)
            taps = [(((di + top) * wp + dj + left) * cout, (i * kw + j) * cout)
                    for i, di in ti for j, dj in tj]
            bufs = [L.out(n), dyp, wt]
            L.call(conv_forward_function(n.dtype, s, L.noalias(bufs), taps,
                                         out + ((ph * g.w + pw) * cin,)), bufs, n)
