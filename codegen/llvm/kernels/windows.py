"""Sliding-window kernels (NHWC): the window geometry shared with ``conv``, and max and
average pooling with their backward ops.

Each kernel walks output positions (n, p, q), then the window's taps (i, j), skipping taps
that fall into the padding. Up to ``VECTOR_CHANNELS`` channels, a window's channels are one
LLVM vector held in registers over the taps; beyond, loops over channels are vectorized.

Max pooling's gradient goes to each window's FIRST maximum in row-major tap order (NaN counts
as a maximum, as ``np.argmax`` has it): the argmax per channel is tracked while the taps are
walked, then the gradient is written at that one position. When the step's forward
``max_pool`` of the same x saved each window's argmax (``pool``, which lowers max pooling
and its gradients with the kernels built here), the backward kernels read it instead of
walking x again.
"""
import numpy as np

from ....ir.ops.windows import dilated_window, window_geometry
from ..ir import Function, float_literal, mem_type, val_type
from .elementwise import combine, fill
from ..registry import lowers
from ..loops import params
from .nn import _better


VECTOR_CHANNELS = 64  # up to this many channels, a window's channels are one LLVM vector


class Geometry:
    """Sizes of one window op: input [N,H,W,C], taps (kh, kw), strides, dilations (rh, rw),
    output (OH, OW)."""

    def __init__(self, x_shape, ksize, strides, padding, dilations=(1, 1)):
        self.n, self.h, self.w, self.c = x_shape
        self.kh, self.kw = ksize
        self.sh, self.sw = strides
        self.rh, self.rw = dilations  # taps this far apart (convolutions only)
        eh, ew = dilated_window(ksize, dilations)
        self.oh, self.top, _ = window_geometry(self.h, eh, self.sh, padding)
        self.ow, self.left, _ = window_geometry(self.w, ew, self.sw, padding)


def _over_windows(fn, g, body, work=None):
    """Loops over (n, p, q); ``body(n, p, q, pos)`` with pos = the output position index.
    Images are independent: the loop over n may run in chunks on several threads
    (``Function.loop``), with ``work`` (default: taps x channels per window; 0: never)."""
    if work is None:
        work = g.n * g.oh * g.ow * g.kh * g.kw * g.c
    with fn.loop(g.n, split=work) as ln, fn.loop(g.oh) as lp, fn.loop(g.ow) as lq:
        pos = fn.add(fn.mul(fn.add(fn.mul(ln.i, g.oh), lp.i), g.ow), lq.i)
        body(ln.i, lp.i, lq.i, pos)


def _over_taps(fn, g, n, p, q, body, all_taps=False):
    """Loops over taps (i, j); ``body(i, j, xpos)`` runs for taps inside the input, with xpos
    the input position index (n, h, w)."""
    with fn.loop(g.kh) as li, fn.loop(g.kw) as lj:
        h = fn(f"sub i64 {fn.add(fn.mul(p, g.sh), fn.mul(li.i, g.rh))}, {g.top}")
        w = fn(f"sub i64 {fn.add(fn.mul(q, g.sw), fn.mul(lj.i, g.rw))}, {g.left}")
        inside = fn(f"and i1 {fn(f'icmp ult i64 {h}, {g.h}')}, {fn(f'icmp ult i64 {w}, {g.w}')}")
        with fn.if_then(inside):
            xpos = fn.add(fn.mul(fn.add(fn.mul(n, g.h), h), g.w), w)
            body(li.i, lj.i, xpos)


def _geometry(n, x, filters=None):
    if filters is not None:
        ksize = filters[:2]
    else:
        ksize = tuple(n.attrs.get("ksize", (2, 2)))
    strides = tuple(n.attrs.get("strides", (1, 1) if filters is not None else (2, 2)))
    return Geometry(tuple(x.shape), ksize, strides, n.attrs.get("padding", "VALID"),
                    tuple(n.attrs.get("dilations", (1, 1))))


# -- pooling ----------------------------------------------------------------------------------
def _count(fn, g, p, q, dtype):
    """Real (unpadded) elements of window (p, q), as a float."""
    sizes = []
    for pos, s, off, k, size in ((p, g.sh, g.top, g.kh, g.h), (q, g.sw, g.left, g.kw, g.w)):
        start = fn(f"sub i64 {fn.mul(pos, s)}, {off}")
        lo = fn.call("i64", "llvm.smax.i64", [("i64", start), ("i64", "0")])
        hi = fn.call("i64", "llvm.smin.i64", [("i64", fn.add(start, k)), ("i64", str(size))])
        sizes.append(fn(f"sub i64 {hi}, {lo}"))
    return fn(f"sitofp i64 {fn(f'mul i64 {sizes[0]}, {sizes[1]}')} to {val_type(dtype)}")


def pool_function(kind, dtype, g, noalias):
    """kind "max"/"avg": %p0=out, %p1=x; "avg_grad": %p0=dx (zeroed), %p1=dy."""
    fn = Function("kernel", params(2, noalias))
    t, c = val_type(dtype), g.c

    def window(n, p, q, pos):
        obase = fn.mul(pos, c)
        if kind != "avg_grad":
            init = float_literal(-np.inf if kind == "max" else 0.0, dtype)
            with fn.loop(c) as lc:
                fn.store(t, init, fn.gep(t, "%p0", fn.add(obase, lc.i)))
        count = _count(fn, g, p, q, dtype) if kind != "max" else None

        def tap(i, j, xpos):
            xbase = fn.mul(xpos, c)
            with fn.loop(c) as lc:
                if kind == "avg_grad":
                    dst = fn.gep(t, "%p0", fn.add(xbase, lc.i))
                    share = fn(f"fdiv {t} {fn.load(t, fn.gep(t, '%p1', fn.add(obase, lc.i)))}, "
                               f"{count}")
                    fn.store(t, fn(f"fadd {t} {fn.load(t, dst)}, {share}"), dst)
                    return
                dst = fn.gep(t, "%p0", fn.add(obase, lc.i))
                v = fn.load(t, fn.gep(t, "%p1", fn.add(xbase, lc.i)))
                fn.store(t, combine(fn, "max" if kind == "max" else "sum", dtype,
                                    fn.load(t, dst), v), dst)
        _over_taps(fn, g, n, p, q, tap)
        if kind == "avg":
            with fn.loop(c) as lc:
                dst = fn.gep(t, "%p0", fn.add(obase, lc.i))
                fn.store(t, fn(f"fdiv {t} {fn.load(t, dst)}, {count}"), dst)
    _over_windows(fn, g, window)
    fn.ret()
    return fn


def argmax_pool_function(kind, dtype, g, noalias):
    """Per window and channel, the first maximum of x (%p1); then "grad": %p0 (zeroed, shaped
    like x) += %p2 (pooled-shaped dy) at it, or "gradgrad": %p0 (pooled) = %p2 (x-shaped)
    read at it (0 when it lies in the padding)."""
    fn = Function("kernel", params(3, noalias))
    best, where = scan_scalar_buffers(fn, dtype, g.c)

    def window(n, p, q, pos):
        scan_scalar(fn, dtype, g, n, p, q, best, where)
        with fn.loop(g.c) as lc:
            route_scalar(fn, kind, dtype, g, (n, p, q, pos), lc.i,
                         fn.load("i64", fn.gep("i64", where, lc.i)))
    _over_windows(fn, g, window)
    fn.ret()
    return fn


def scan_scalar_buffers(fn, dtype, c):
    """Per-channel stack arrays (best value, tap of the first maximum) for ``scan_scalar``."""
    return fn(f"alloca {val_type(dtype)}, i64 {c}", "best"), fn(f"alloca i64, i64 {c}", "where")


def scan_scalar(fn, dtype, g, n, p, q, best, where):
    """Fill ``best``/``where`` with each channel's first maximum of window (p, q) of x (%p1)
    and its tap (row-major; a NaN wins, the first NaN stays; taps in the padding are skipped,
    so an all -inf window keeps tap 0 as the -inf padding would)."""
    t, c = val_type(dtype), g.c
    with fn.loop(c) as lc:
        fn.store(t, float_literal(-np.inf, dtype), fn.gep(t, best, lc.i))
        fn.store("i64", "0", fn.gep("i64", where, lc.i))

    def tap(i, j, xpos):
        k = fn.add(fn.mul(i, g.kw), j)
        with fn.loop(c) as lc:
            v = fn.load(t, fn.gep(t, "%p1", fn.add(fn.mul(xpos, c), lc.i)))
            pb, pw = fn.gep(t, best, lc.i), fn.gep("i64", where, lc.i)
            b = fn.load(t, pb)
            take = _better(fn, dtype, "gt", v, b)
            fn.store(t, fn(f"select i1 {take}, {t} {v}, {t} {b}"), pb)
            fn.store("i64", fn(f"select i1 {take}, i64 {k}, i64 {fn.load('i64', pw)}"), pw)
    _over_taps(fn, g, n, p, q, tap)


def route_scalar(fn, kind, dtype, g, window, lane, k):
    """Channel ``lane`` of window (n, p, q) at output position ``pos`` has its maximum at tap
    ``k`` (i64): "grad": %p0 (x-shaped) += %p2 (pooled) there; "gradgrad": %p0 (pooled) =
    %p2 (x-shaped) read there, 0 when the tap lies in the padding."""
    n, p, q, pos = window
    t, mt = val_type(dtype), mem_type(dtype)
    h = fn(f"sub i64 {fn.add(fn.mul(p, g.sh), fn(f'udiv i64 {k}, {g.kw}'))}, {g.top}")
    w = fn(f"sub i64 {fn.add(fn.mul(q, g.sw), fn(f'urem i64 {k}, {g.kw}'))}, {g.left}")
    inside = fn(f"and i1 {fn(f'icmp ult i64 {h}, {g.h}')}, {fn(f'icmp ult i64 {w}, {g.w}')}")
    xi = fn.add(fn.mul(fn.add(fn.mul(fn.add(fn.mul(n, g.h), h), g.w), w), g.c), lane)
    oi = fn.add(fn.mul(pos, g.c), lane)
    if kind == "grad":
        with fn.if_then(inside):
            dst = fn.gep(t, "%p0", xi)
            d = fn.load(t, fn.gep(t, "%p2", oi))
            fn.store(mt, fn(f"fadd {t} {fn.load(t, dst)}, {d}"), dst)
    else:
        fn.store(mt, float_literal(0.0, dtype), fn.gep(t, "%p0", oi))
        with fn.if_then(inside):
            fn.store(mt, fn.load(t, fn.gep(t, "%p2", xi)), fn.gep(t, "%p0", oi))


def _tiled(g):
    """Windows cover the input exactly once (stride = window, no padding, no remainder)."""
    return (g.top == 0 and g.left == 0 and g.sh == g.kh and g.sw == g.kw
            and g.h == g.oh * g.kh and g.w == g.ow * g.kw)


def _splat(fn, vec_type, elem_type, value, lanes):
    one = fn(f"insertelement {vec_type} poison, {elem_type} {value}, i64 0")
    return fn(f"shufflevector {vec_type} {one}, {vec_type} poison, "
              f"<{lanes} x i32> zeroinitializer")


def _unpadded(g):
    """Every tap of every window lies inside the input (no padding, no overhang)."""
    return (g.top == 0 and g.left == 0 and (g.oh - 1) * g.sh + (g.kh - 1) * g.rh < g.h
            and (g.ow - 1) * g.sw + (g.kw - 1) * g.rw < g.w)


def _vector_taps(fn, g, n, p, q, carried, body):
    """Loops over a window's taps with loop-carried values ``carried`` [(type, init)].

    ``body(k, inside, xoff, values)`` gets the tap index, whether the tap is inside the input,
    the element offset of its (clamped) input position, and the carried values; it returns
    their next values. Returns the values after the last tap.
    """
    with fn.loop(g.kh) as li:
        outer = [li.carry(ty, init) for ty, init in carried]
        with fn.loop(g.kw) as lj:
            inner = [lj.carry(ty, o) for (ty, _), o in zip(carried, outer)]
            k = fn.add(fn.mul(li.i, g.kw), lj.i)
            h = fn(f"sub i64 {fn.add(fn.mul(p, g.sh), li.i)}, {g.top}")
            w = fn(f"sub i64 {fn.add(fn.mul(q, g.sw), lj.i)}, {g.left}")
            if _unpadded(g):  # (every tap inside: no test, no clamp)
                inside, hc, wc = "true", h, w
            else:
                inside = fn(f"and i1 {fn(f'icmp ult i64 {h}, {g.h}')}, "
                            f"{fn(f'icmp ult i64 {w}, {g.w}')}")
                hc = fn.call("i64", "llvm.umin.i64", [("i64", h), ("i64", str(g.h - 1))])
                wc = fn.call("i64", "llvm.umin.i64", [("i64", w), ("i64", str(g.w - 1))])
            xoff = fn.mul(fn.add(fn.mul(fn.add(fn.mul(n, g.h), hc), g.w), wc), g.c)
            for phi, v in zip(inner, body(k, inside, xoff, inner)):
                lj.update(phi, v)
        for phi, v in zip(outer, inner):
            li.update(phi, v)
    return outer


def argmax_pool_vector(kind, dtype, g, noalias, positive_only=False):
    """``argmax_pool_function`` with a window's channels as one vector register: the running
    maximum and the tap of the first maximum are carried in registers over the taps, then
    the gradient is written per tap with a vector select (added when windows overlap). Taps
    in the padding read a clamped address and count as -inf (gradgrad: as 0).
    ``positive_only``: route a window's gradient only when its maximum is > 0 (the ReLU mask
    of a pooled ReLU, folded in: see ``folds.relu_mask``)."""
    fn = Function("kernel", params(3, noalias))

    def window(n, p, q, pos):
        maximum, where = scan_vector(fn, dtype, g, (n, p, q), "i64")
        positive = None
        if positive_only:
            positive = fn(f"fcmp ogt <{g.c} x {val_type(dtype)}> {maximum}, zeroinitializer")
        route_vector(fn, kind, dtype, g, (n, p, q, pos), (where, "i64"), positive)
    _over_windows(fn, g, window)
    fn.ret()
    return fn


def route_vector(fn, kind, dtype, g, window, where, positive=None):
    """A window's channels as one vector, given ``where`` = (the tap of each channel's first
    maximum, a vector of that integer type): "grad": %p0 (x-shaped) += %p2 (pooled dy) at
    it, per tap with a vector select (stored, not added, when windows tile x); "gradgrad":
    %p0 (pooled) = %p2 (x-shaped) read at it, 0 when it lies in the padding. ``positive``
    (lanes, or None): only those lanes route a gradient (a folded ReLU mask)."""
    n, p, q, pos = window
    s, c = val_type(dtype), g.c
    (where, index), vt, mt = where, f"<{c} x {s}>", f"<{c} x i1>"
    it, obase, tiled = f"<{c} x {index}>", fn.mul(pos, c), _tiled(g)

    def hit_at(k):
        if index != "i64":
            k = fn(f"trunc i64 {k} to {index}")
        return fn(f"icmp eq {it} {where}, {_splat(fn, it, index, k, c)}")
    if kind == "grad":
        dy = fn.load(vt, fn.gep(s, "%p2", obase))

        def write(k, inside, xoff, values):
            hit = hit_at(k)
            if positive is not None:
                hit = fn(f"and {mt} {hit}, {positive}")
            val = fn(f"select {mt} {hit}, {vt} {dy}, {vt} zeroinitializer")
            dst = fn.gep(s, "%p0", xoff)
            with fn.if_then(inside):
                if not tiled:
                    val = fn(f"fadd {vt} {fn.load(vt, dst)}, {val}")
                fn.store(vt, val, dst)
            return []
        _vector_taps(fn, g, n, p, q, [], write)
        return

    def gather(k, inside, xoff, values):
        hit = fn(f"and {mt} {hit_at(k)}, {_splat(fn, mt, 'i1', inside, c)}")
        gx = fn.load(vt, fn.gep(s, "%p2", xoff))
        return [fn(f"select {mt} {hit}, {vt} {gx}, {vt} {values[0]}")]
    (acc,) = _vector_taps(fn, g, n, p, q, [(vt, "zeroinitializer")], gather)
    fn.store(vt, acc, fn.gep(s, "%p0", obase))


def scan_vector(fn, dtype, g, window, index):
    """A window's channels as one vector: (its maximum, the tap of its first maximum as a
    vector of ``index`` integers), carried in registers over the taps of x (%p1). A NaN wins
    and the first NaN stays; taps in the padding read a clamped address and count as -inf."""
    s, c = val_type(dtype), g.c
    vt, kt, mt = f"<{c} x {s}>", f"<{c} x {index}>", f"<{c} x i1>"
    ninf = f"splat ({s} {float_literal(-np.inf, dtype)})"

    def scan(k, inside, xoff, values):
        best, where = values
        v = fn.load(vt, fn.gep(s, "%p1", xoff))
        v = fn(f"select i1 {inside}, {vt} {v}, {vt} {ninf}")
        # v > best, or v NaN while best is not: "unordered or greater" while best is ordered
        take = fn(f"and {mt} {fn(f'fcmp ugt {vt} {v}, {best}')}, "
                  f"{fn(f'fcmp ord {vt} {best}, {best}')}")
        if index != "i64":
            k = fn(f"trunc i64 {k} to {index}")
        return [fn(f"select {mt} {take}, {vt} {v}, {vt} {best}"),
                fn(f"select {mt} {take}, {kt} {_splat(fn, kt, index, k, c)}, {kt} {where}")]
    return _vector_taps(fn, g, *window, [(vt, ninf), (kt, "zeroinitializer")], scan)


def pool_vector_function(kind, dtype, g, noalias):
    """Max or average pooling with a window's channels as one vector accumulated in a
    register over the taps (padding taps count as -inf / 0) and stored once."""
    fn = Function("kernel", params(2, noalias))
    s, c = val_type(dtype), g.c
    vt = f"<{c} x {s}>"
    init = f"splat ({s} {float_literal(-np.inf if kind == 'max' else 0.0, dtype)})"

    def add(k, inside, xoff, values):
        v = fn(f"select i1 {inside}, {vt} {fn.load(vt, fn.gep(s, '%p1', xoff))}, {vt} {init}")
        return [combine_vector(fn, "max" if kind == "max" else "sum", vt, values[0], v)]

    def window(n, p, q, pos):
        (acc,) = _vector_taps(fn, g, n, p, q, [(vt, init)], add)
        if kind == "avg":
            acc = fn(f"fdiv {vt} {acc}, {_splat(fn, vt, s, _count(fn, g, p, q, dtype), c)}")
        fn.store(vt, acc, fn.gep(s, "%p0", fn.mul(pos, c)))
    _over_windows(fn, g, window)
    fn.ret()
    return fn


def combine_vector(fn, kind, vt, a, b):
    """``a + b`` or the NaN-propagating maximum of two float vectors."""
    if kind == "sum":
        return fn(f"fadd {vt} {a}, {b}")
    lanes, elem = vt[1:-1].split(" x ")
    return fn.call(vt, f"llvm.maximum.v{lanes}{'f32' if elem == 'float' else 'f64'}",
                   [(vt, a), (vt, b)])


@lowers("avg_pool_grad")
def lower_avg_pool_grad(L, n):
    dy, like = n.inputs
    fill(L, L.out(n), n.shape, n.dtype, 0, n)
    bufs = [L.out(n), L.buf(dy)]
    L.call(pool_function("avg_grad", n.dtype, _geometry(n, like), L.noalias(bufs)), bufs, n)
