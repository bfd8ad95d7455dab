"""Sliding-window kernels (NHWC): direct convolution and its two gradients, max and average
pooling and their backward ops.

Direct loops rather than im2col + GEMM: with few channels im2col builds very skinny GEMMs, and
a direct loop needs no scratch buffer. Each kernel walks output positions (n, p, q), then the
window's taps (i, j), skipping taps that fall into the padding, and vectorizes its innermost
loop over the contiguous channel axis (output channels for conv2d and the filter gradient,
channels for pooling).

Max pooling's gradient goes to each window's FIRST maximum in row-major tap order (NaN counts
as a maximum, as ``np.argmax`` has it): the argmax per channel is tracked in small stack arrays
while the taps are walked, then the gradient is added at that one position.
"""
import numpy as np

from ..ir.ops.windows import window_geometry
from .llvm_ir import Function, float_literal, mem_type, val_type
from .llvm_kernels import combine, fill
from .llvm_lower import lowers
from .llvm_loops import broadcast_strides, carried_nest, params
from .llvm_nn import _better


VECTOR_CHANNELS = 64  # up to this many channels, a window's channels are one LLVM vector


class Geometry:
    """Sizes of one window op: input [N,H,W,C], taps (kh, kw), strides, output (OH, OW)."""

    def __init__(self, x_shape, ksize, strides, padding):
        self.n, self.h, self.w, self.c = x_shape
        self.kh, self.kw = ksize
        self.sh, self.sw = strides
        self.oh, self.top, _ = window_geometry(self.h, self.kh, self.sh, padding)
        self.ow, self.left, _ = window_geometry(self.w, self.kw, self.sw, padding)


def _over_windows(fn, g, body):
    """Loops over (n, p, q); ``body(n, p, q, pos)`` with pos = the output position index."""
    with fn.loop(g.n) as ln, fn.loop(g.oh) as lp, fn.loop(g.ow) as lq:
        pos = fn.add(fn.mul(fn.add(fn.mul(ln.i, g.oh), lp.i), g.ow), lq.i)
        body(ln.i, lp.i, lq.i, pos)


def _over_taps(fn, g, n, p, q, body, all_taps=False):
    """Loops over taps (i, j); ``body(i, j, xpos)`` runs for taps inside the input, with xpos
    the input position index (n, h, w)."""
    with fn.loop(g.kh) as li, fn.loop(g.kw) as lj:
        h = fn(f"sub i64 {fn.add(fn.mul(p, g.sh), li.i)}, {g.top}")
        w = fn(f"sub i64 {fn.add(fn.mul(q, g.sw), lj.i)}, {g.left}")
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
    return Geometry(tuple(x.shape), ksize, strides, n.attrs.get("padding", "VALID"))


# -- convolution ------------------------------------------------------------------------------
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
    _over_windows(fn, g, window)
    fn.ret()
    return fn


VECTOR_TAPS = 32  # at most this many (tap, input channel) pairs get a register each


def _vectorizable(g, cout):
    return g.kh * g.kw * g.c <= VECTOR_TAPS and cout <= VECTOR_CHANNELS


def _tap_value(fn, g, t, dtype, n, p, q, i, j, c):
    """x[n, p*sh + i - top, q*sw + j - left, c] as a scalar (0 in the padding)."""
    h = fn(f"sub i64 {fn.add(fn.mul(p, g.sh), i)}, {g.top}") if g.top else \
        fn.add(fn.mul(p, g.sh), i)
    w = fn(f"sub i64 {fn.add(fn.mul(q, g.sw), j)}, {g.left}") if g.left else \
        fn.add(fn.mul(q, g.sw), j)
    padded = g.top or g.left or (g.oh - 1) * g.sh + g.kh > g.h or (g.ow - 1) * g.sw + g.kw > g.w
    if padded:
        inside = fn(f"and i1 {fn(f'icmp ult i64 {h}, {g.h}')}, {fn(f'icmp ult i64 {w}, {g.w}')}")
        h = fn.call("i64", "llvm.umin.i64", [("i64", h), ("i64", str(g.h - 1))])
        w = fn.call("i64", "llvm.umin.i64", [("i64", w), ("i64", str(g.w - 1))])
    xi = fn.add(fn.mul(fn.add(fn.mul(fn.add(fn.mul(n, g.h), h), g.w), w), g.c), c)
    v = fn.load(t, fn.gep(t, "%p1", xi))
    if padded:
        v = fn(f"select i1 {inside}, {t} {v}, {t} {float_literal(0.0, dtype)}")
    return v


def conv_vector_function(kind, dtype, g, cout, noalias, epilogue=None):
    """Direct convolution with output channels as one vector: "forward" (%p0=y, %p1=x,
    %p2=w) keeps each position's output row in a register over the taps, with the filter
    rows loaded once; "filter" (%p0=dw, %p1=x, %p2=dy) keeps every (tap, channel) row of the
    filter gradient in a register over all positions and stores it once (no zero fill).
    ``epilogue`` (forward only): (body, conv arg, {arg: parameter or literal}) applied to
    each output row in registers before it is stored (a bias and activation folded in)."""
    fn = Function("kernel", params(len(noalias), noalias))
    t = val_type(dtype)
    vt = f"<{cout} x {t}>"
    taps = [(i, j, c) for i in range(g.kh) for j in range(g.kw) for c in range(g.c)]

    def row(base, k):
        return fn.load(vt, fn.gep(t, base, k * cout))

    def fma(a, b, acc):
        return fn.call(vt, f"llvm.fmuladd.v{cout}{'f32' if t == 'float' else 'f64'}",
                       [(vt, a), (vt, b), (vt, acc)])
    if kind == "forward":
        wrows = [row("%p2", k) for k in range(len(taps))]
        if epilogue is not None:
            body, conv_arg, sources = epilogue
            rows = {a: (fn.load(vt, src) if src.startswith("%") else src)
                    for a, src in sources.items()}

        def position(idx, values):
            n, p, q = idx
            acc = "zeroinitializer"
            for k, (i, j, c) in enumerate(taps):
                xv = _splat(fn, vt, t, _tap_value(fn, g, t, dtype, n, p, q, i, j, c), cout)
                acc = fma(xv, wrows[k], acc)
            pos = fn.add(fn.mul(fn.add(fn.mul(n, g.oh), p), g.ow), q)
            if epilogue is not None:
                acc = render_vector(fn, body, {**rows, conv_arg: acc}, vt)
            fn.store(vt, acc, fn.gep(t, "%p0", fn.mul(pos, cout)))
            return []
        carried_nest(fn, (g.n, g.oh, g.ow), [], position)
    else:
        def position(idx, accs):
            n, p, q = idx
            pos = fn.add(fn.mul(fn.add(fn.mul(n, g.oh), p), g.ow), q)
            dy = fn.load(vt, fn.gep(t, "%p2", fn.mul(pos, cout)))
            return [fma(_splat(fn, vt, t, _tap_value(fn, g, t, dtype, n, p, q, i, j, c), cout),
                        dy, acc) for (i, j, c), acc in zip(taps, accs)]
        finals = carried_nest(fn, (g.n, g.oh, g.ow), [(vt, "zeroinitializer")] * len(taps),
                              position)
        for k, acc in enumerate(finals):
            fn.store(vt, acc, fn.gep(t, "%p0", k * cout))
    fn.ret()
    return fn


_VECTOR_OPS = {"add": "fadd", "sub": "fsub", "mul": "fmul", "div": "fdiv"}


def render_vector(fn, body, vals, vt):
    """An elementwise body of arithmetic, max and min on whole vectors (conv epilogues)."""
    lanes, elem = vt[1:-1].split(" x ")
    sfx = f"v{lanes}{'f32' if elem == 'float' else 'f64'}"
    memo = {}
    for e in body.walk():
        if e.op == "arg":
            memo[id(e)] = vals[e.value]
        elif e.op == "const":
            memo[id(e)] = f"splat ({elem} {float_literal(e.value, e.dtype)})"
        elif e.op in _VECTOR_OPS:
            a, b = (memo[id(x)] for x in e.args)
            memo[id(e)] = fn(f"{_VECTOR_OPS[e.op]} {vt} {a}, {b}")
        elif e.op == "neg":
            memo[id(e)] = fn(f"fneg {vt} {memo[id(e.args[0])]}")
        else:  # max / min, NaN-propagating like the scalar form
            name = "maximum" if e.op == "max" else "minimum"
            memo[id(e)] = fn.call(vt, f"llvm.{name}.{sfx}", [(vt, memo[id(x)]) for x in e.args])
    return memo[id(body)]


def conv_epilogue(L, n):
    """The fused node right after conv2d ``n`` that alone reads it (bias + activation), when
    it can run on each output row in registers: arithmetic, max and min only, other inputs
    per output channel (or splat constants). Safe because nothing runs in between and its
    buffer overlaps none of the bytes the convolution reads. Returns (node, body, conv arg,
    other inputs {arg: node or literal}) or None."""
    users = L.p.users().get(n, [])
    nodes = L.p.nodes
    i = next(k for k, m in enumerate(nodes) if m is n)
    if len(users) != 1 or i + 1 >= len(nodes) or nodes[i + 1] is not users[0] or \
            any(f is n for f in L.p.fetches if f is not None):
        return None
    f = users[0]
    if f.op_name != "fused" or f.attrs.get("reduce") is not None or f.dtype != n.dtype \
            or tuple(f.shape) != tuple(n.shape):
        return None
    body = f.attrs["body"]
    if any(e.op not in ("arg", "const", "neg", "max", "min") + tuple(_VECTOR_OPS)
           for e in body.walk()) or any(e.dtype != n.dtype for e in body.walk()):
        return None
    cout, others, conv_arg = n.shape[-1], {}, None
    for k, x in enumerate(f.inputs):
        if x is n:
            conv_arg = k
            continue
        lanes = broadcast_strides(x.shape, f.shape)
        size = int(np.prod(x.shape))
        if x.dtype != n.dtype or any(lanes[:-1]) or size not in (1, cout) or \
                (size == 1 and const_scalar(x) is None):
            return None
        others[k] = x
    out = L.out(f)
    if conv_arg is None or any(out.overlaps(L.buf(v)) for v in list(n.inputs) +
                               list(others.values())):
        return None
    return f, body, conv_arg, others


@lowers("conv2d")
def lower_conv(L, n):
    x, w = n.inputs
    g = _geometry(n, x, w.shape)
    cout = w.shape[3]
    if not _vectorizable(g, cout):
        bufs = [L.out(n), L.buf(x), L.buf(w)]
        L.call(conv_function("forward", n.dtype, g, cout, L.noalias(bufs)), bufs, n)
        return
    folded = conv_epilogue(L, n)
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
    fn = conv_vector_function("forward", n.dtype, g, cout, L.noalias(bufs), epilogue)
    L.call(fn, bufs, n)


def const_scalar(v):
    """The value of a one-element constant (``conv_epilogue`` admits no other scalars)."""
    from .llvm_kernels import scalar_const
    return scalar_const(v)


@lowers("conv2d_backprop_filter")
def lower_conv_filter(L, n):
    x, dy = n.inputs
    g = _geometry(n, x, n.attrs["filter_shape"])
    bufs = [L.out(n), L.buf(x), L.buf(dy)]
    if _vectorizable(g, n.shape[3]):
        L.call(conv_vector_function("filter", n.dtype, g, n.shape[3], L.noalias(bufs)), bufs, n)
        return
    fill(L, L.out(n), n.shape, n.dtype, 0, n)
    L.call(conv_function("filter", n.dtype, g, n.shape[3], L.noalias(bufs)), bufs, n)


@lowers("conv2d_backprop_input")
def lower_conv_input(L, n):
    dy, w, like = n.inputs
    g = _geometry(n, like, w.shape)
    fill(L, L.out(n), n.shape, n.dtype, 0, n)
    bufs = [L.out(n), L.buf(dy), L.buf(w)]
    L.call(conv_function("input", n.dtype, g, w.shape[3], L.noalias(bufs)), bufs, n)


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
    t, c, mt = val_type(dtype), g.c, mem_type(dtype)
    best, where = fn(f"alloca {t}, i64 {c}", "best"), fn(f"alloca i64, i64 {c}", "where")

    def window(n, p, q, pos):
        obase = fn.mul(pos, c)
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
        with fn.loop(c) as lc:
            k = fn.load("i64", fn.gep("i64", where, lc.i))
            h = fn(f"sub i64 {fn.add(fn.mul(p, g.sh), fn(f'udiv i64 {k}, {g.kw}'))}, {g.top}")
            w = fn(f"sub i64 {fn.add(fn.mul(q, g.sw), fn(f'urem i64 {k}, {g.kw}'))}, {g.left}")
            inside = fn(f"and i1 {fn(f'icmp ult i64 {h}, {g.h}')}, "
                        f"{fn(f'icmp ult i64 {w}, {g.w}')}")
            xi = fn.add(fn.mul(fn.add(fn.mul(fn.add(fn.mul(n, g.h), h), g.w), w), c), lc.i)
            oi = fn.add(obase, lc.i)
            if kind == "grad":
                with fn.if_then(inside):
                    dst = fn.gep(t, "%p0", xi)
                    d = fn.load(t, fn.gep(t, "%p2", oi))
                    fn.store(mt, fn(f"fadd {t} {fn.load(t, dst)}, {d}"), dst)
            else:
                fn.store(mt, float_literal(0.0, dtype), fn.gep(t, "%p0", oi))
                with fn.if_then(inside):
                    fn.store(mt, fn.load(t, fn.gep(t, "%p2", xi)), fn.gep(t, "%p0", oi))
    _over_windows(fn, g, window)
    fn.ret()
    return fn


def _tiled(g):
    """Windows cover the input exactly once (stride = window, no padding, no remainder)."""
    return (g.top == 0 and g.left == 0 and g.sh == g.kh and g.sw == g.kw
            and g.h == g.oh * g.kh and g.w == g.ow * g.kw)


def _splat(fn, vec_type, elem_type, value, lanes):
    one = fn(f"insertelement {vec_type} poison, {elem_type} {value}, i64 0")
    return fn(f"shufflevector {vec_type} {one}, {vec_type} poison, "
              f"<{lanes} x i32> zeroinitializer")


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
    of a pooled ReLU, folded in: see ``relu_mask_fold``)."""
    fn = Function("kernel", params(3, noalias))
    s, c = val_type(dtype), g.c
    vt, it, mt = f"<{c} x {s}>", f"<{c} x i64>", f"<{c} x i1>"
    ninf = f"splat ({s} {float_literal(-np.inf, dtype)})"
    tiled = _tiled(g)

    def scan(k, inside, xoff, values):
        best, where = values
        v = fn.load(vt, fn.gep(s, "%p1", xoff))
        v = fn(f"select i1 {inside}, {vt} {v}, {vt} {ninf}")
        nan = fn(f"and {mt} {fn(f'fcmp uno {vt} {v}, {v}')}, "
                 f"{fn(f'fcmp ord {vt} {best}, {best}')}")
        take = fn(f"or {mt} {fn(f'fcmp ogt {vt} {v}, {best}')}, {nan}")
        return [fn(f"select {mt} {take}, {vt} {v}, {vt} {best}"),
                fn(f"select {mt} {take}, {it} {_splat(fn, it, 'i64', k, c)}, {it} {where}")]

    def window(n, p, q, pos):
        obase = fn.mul(pos, c)
        maximum, where = _vector_taps(fn, g, n, p, q, [(vt, ninf), (it, "zeroinitializer")],
                                      scan)
        if kind == "grad":
            dy = fn.load(vt, fn.gep(s, "%p2", obase))
            positive = None
            if positive_only:
                positive = fn(f"fcmp ogt {vt} {maximum}, zeroinitializer")

            def write(k, inside, xoff, values):
                hit = fn(f"icmp eq {it} {where}, {_splat(fn, it, 'i64', k, c)}")
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
            hit = fn(f"icmp eq {it} {where}, {_splat(fn, it, 'i64', k, c)}")
            hit = fn(f"and {mt} {hit}, {_splat(fn, mt, 'i1', inside, c)}")
            gx = fn.load(vt, fn.gep(s, "%p2", xoff))
            return [fn(f"select {mt} {hit}, {vt} {gx}, {vt} {values[0]}")]
        (acc,) = _vector_taps(fn, g, n, p, q, [(vt, "zeroinitializer")], gather)
        fn.store(vt, acc, fn.gep(s, "%p0", obase))
    _over_windows(fn, g, window)
    fn.ret()
    return fn


@lowers("max_pool", "avg_pool")
def lower_pool(L, n):
    x = n.inputs[0]
    bufs = [L.out(n), L.buf(x)]
    fn = pool_function(n.op_name[:3], n.dtype, _geometry(n, x), L.noalias(bufs))
    L.call(fn, bufs, n)


@lowers("avg_pool_grad")
def lower_avg_pool_grad(L, n):
    dy, like = n.inputs
    fill(L, L.out(n), n.shape, n.dtype, 0, n)
    bufs = [L.out(n), L.buf(dy)]
    L.call(pool_function("avg_grad", n.dtype, _geometry(n, like), L.noalias(bufs)), bufs, n)


def relu_mask_fold(L, n):
    """The node ``where(x > 0, max_pool_grad(x, dy), 0)`` right after ``max_pool_grad`` node
    ``n`` (a pooled ReLU's gradient: x is the pool's input, the ReLU's output), when the mask can
    be folded into the routing: route only windows whose maximum is > 0, straight into the
    where's buffer. Safe when nothing runs between the two and the where's bytes overlap
    neither input of ``n`` (the only values live then that the plan may have put there), or
    are exactly x's with windows that tile x."""
    users = L.p.users().get(n, [])
    if len(users) != 1 or any(f is n for f in L.p.fetches if f is not None):
        return None
    f = users[0]
    nodes = L.p.nodes
    i = next(k for k, m in enumerate(nodes) if m is n)
    if i + 1 >= len(nodes) or nodes[i + 1] is not f or tuple(f.shape) != tuple(n.shape) \
            or f.dtype != n.dtype or not (f.op_name == "fused" and f.attrs.get("reduce") is None):
        return None
    body = f.attrs["body"]
    if not (body.op == "where" and body.args[0].op == "gt" and body.args[1].op == "arg"
            and body.args[2].op == "const" and body.args[2].value == 0.0
            and body.args[0].args[0].op == "arg" and body.args[0].args[1].op == "const"
            and body.args[0].args[1].value == 0.0):
        return None
    if f.inputs[body.args[1].value] is not n or \
            f.inputs[body.args[0].args[0].value] is not n.inputs[0]:
        return None
    out, (x, dy) = L.out(f), (L.buf(v) for v in n.inputs)
    if out.overlaps(dy) or (out.overlaps(x) and not (out == x and _tiled(_geometry(n, n.inputs[0])))):
        return None  # (over x itself is fine when windows tile: each reads its taps first)
    return f


@lowers("max_pool_grad", "max_pool_grad_grad")
def lower_max_pool_grad(L, n):
    x, other = n.inputs
    kind = "grad" if n.op_name == "max_pool_grad" else "gradgrad"
    g = _geometry(n, x)
    vector = g.c <= VECTOR_CHANNELS
    masked = relu_mask_fold(L, n) if vector and kind == "grad" else None
    out = L.out(n) if masked is None else L.out(masked)
    if masked is not None:
        L.skip.add(masked)
    if kind == "grad" and not (vector and _tiled(g)):
        fill(L, out, n.shape, n.dtype, 0, n)
    uniq = [out, L.buf(x), L.buf(other)]
    if vector:
        fn = argmax_pool_vector(kind, n.dtype, g, L.noalias(uniq), masked is not None)
    else:
        fn = argmax_pool_function(kind, n.dtype, g, L.noalias(uniq))
    L.call(fn, uniq, n)
