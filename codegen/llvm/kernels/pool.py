"""Max pooling's argmax saved in the forward pass, for the backward kernels to read.

When a step lowers ``max_pool(x)`` and later runs ``max_pool_grad(x, dy)`` or
``max_pool_grad_grad(x, gx)`` on the SAME x node with the same window geometry, the forward
kernel also writes, per window and channel, the tap of its first maximum (row-major in the
window; a NaN wins, the first NaN stays; a tap in the padding only when every real element
is -inf, as the reference has it) into a private buffer past the planned arena, which no
other value shares, so it survives until the backward kernels. Those then route from the
saved taps instead of scanning x again:

- ``max_pool_grad``: dx (zeroed, unless windows tile x) += dy at each saved tap (+= because
  windows overlap when the stride is smaller than the window);
- ``max_pool_grad_grad``: gx read at each saved tap (0 when the tap lies in the padding).

A code is one byte when the window has at most ``FLAG_U8`` taps, else an int32. Its top bit
records whether the window's maximum is > 0: a pooled ReLU's gradient
``where(x > 0, max_pool_grad(x, dy), 0)`` (the fold ``folds.relu_mask``) needs the mask
at the argmax, where x is the window's maximum, so the fold keeps working without reading x.

Where no forward ``max_pool`` of that x precedes the backward op, the backward kernels
recompute the argmax from x (``windows.argmax_pool_vector``).
"""
import os
from dataclasses import dataclass

import numpy as np

from ..ir import Function, float_literal, val_type
from ..loops import params
from ..registry import lowers
from .elementwise import fill
from .windows import (VECTOR_CHANNELS, _geometry, _over_windows, _splat, _tiled, _unpadded,
                      argmax_pool_function, argmax_pool_vector, pool_function,
                      pool_vector_function, route_scalar, route_vector,
                      scan_scalar, scan_scalar_buffers, scan_vector)

# Save the argmax in the forward pass; GRAPHC_RECOMPUTE_ARGMAX=1 recomputes it in the backward
# kernels instead (for measuring one against the other).
SAVE = os.environ.get("GRAPHC_RECOMPUTE_ARGMAX") != "1"
FLAG_U8 = 128  # taps a one-byte code can hold beside its "maximum > 0" bit
READERS = ("max_pool_grad", "max_pool_grad_grad")


@dataclass(frozen=True)
class SavedArgmax:
    """Where a forward max_pool left its codes: the private ``buf`` of ``index`` integers
    (LLVM type "i8" or "i32"), ``flag`` = the bit set when the window's maximum is > 0 (as
    a signed literal of that type), ``mask`` = the bits holding the tap."""
    buf: object
    index: str
    flag: int
    mask: int


def _registry(L):
    """{(x node, window geometry): SavedArgmax} of this lowering (``_stats`` counts it)."""
    return vars(L).setdefault("saved_argmax", {})


def _key(x, g):
    return x, (g.kh, g.kw, g.sh, g.sw, g.top, g.left, g.oh, g.ow)


def _read_later(L, n, g):
    """Whether a backward pool op of n's input with n's window geometry runs after n."""
    x, key = n.inputs[0], _key(n.inputs[0], g)
    later = False
    for m in L.p.nodes:  # the schedule
        if m is n:
            later = True
        elif later and m.op_name in READERS and m.inputs[0] is x \
                and _key(x, _geometry(m, x)) == key:
            return True
    return False


def lower_saving_pool(L, n, g):
    """Lower ``max_pool`` node ``n`` (geometry ``g``) saving its argmax when a later backward
    pool op of the same x reads it; returns False (nothing emitted) when none does."""
    x = n.inputs[0]
    key = _key(x, g)
    if not SAVE or key in _registry(L) or not _read_later(L, n, g):
        return False
    saved = new_saved(L, n, g)
    bufs = [L.out(n), L.buf(x), saved.buf]
    build = save_vector if g.c <= VECTOR_CHANNELS else save_scalar
    L.call(build(n.dtype, g, saved.index, saved.flag, L.noalias(bufs)), bufs, n)
    return True


def new_saved(L, n, g):
    """A private buffer for max_pool ``n``'s codes (geometry ``g``), registered for the
    backward pool ops of its input to find."""
    taps = g.kh * g.kw
    index, bit, item = ("i8", 7, 1) if taps <= FLAG_U8 else ("i32", 30, 4)
    flag = -(1 << bit) if index == "i8" else 1 << bit  # i8 literals are signed
    saved = SavedArgmax(L.arena(g.n * g.oh * g.ow * g.c * item), index, flag, (1 << bit) - 1)
    _registry(L)[_key(n.inputs[0], g)] = saved
    return saved


def saved_argmax(L, n, g):
    """The SavedArgmax a backward pool op ``n`` (geometry ``g``) can read, or None."""
    return _registry(L).get(_key(n.inputs[0], g))


def save_vector(dtype, g, index, flag, noalias):
    """%p0 (pooled) = each window's maximum over x (%p1), %p2 = the codes: a window's
    channels as one vector carried in registers over the taps, stored once. Windows that
    never reach the padding are scanned ``WINDOWS_TOGETHER`` neighbours at a time, tap by tap
    (``scan_together``): their chains of compare-selects interleave."""
    fn = Function("kernel", params(3, noalias))
    code, ptrs = (g.c, index, flag), ("%p0", "%p2")

    def window(n, p, q, pos):
        store_window(fn, dtype, code, ptrs, pos, scan_vector(fn, dtype, g, (n, p, q), index),
                     index)
    if not (_unpadded(g) and g.kh * g.kw <= TOGETHER_MAX_TAPS):
        _over_windows(fn, g, window)
    else:
        work = g.n * g.oh * g.ow * g.kh * g.kw * g.c
        with fn.loop(g.n, split=work) as ln, fn.loop(g.oh) as lp:
            scan_row(fn, dtype, g, code, ptrs, (ln.i, lp.i))
    fn.ret()
    return fn


def store_window(fn, dtype, code, ptrs, pos, found, lanes, stride=None):
    """Store window ``pos``'s maximum (a vector of c channels) to pooled[pos] and, when
    ``ptrs`` has a codes pointer, its taps ``where`` (``lanes`` integers, narrowed to ``index``
    here) with the "maximum > 0" bit ``flag`` to codes[pos]. ``code`` = (c, index, flag),
    ``ptrs`` = (pooled, codes or None), ``found`` = (maximum, where). ``stride``: one
    window's channels where the c values are those of neighbouring windows from pos on."""
    (c, index, flag), (pooled, codes), (maximum, where) = code, ptrs, found
    vt, kt = f"<{c} x {val_type(dtype)}>", f"<{c} x {index}>"
    base, wt = fn.mul(pos, stride or c), f"<{c} x {lanes}>"
    fn.store(vt, maximum, fn.gep(val_type(dtype), pooled, base))
    if codes is None:
        return
    positive = fn(f"fcmp ogt {vt} {maximum}, zeroinitializer")
    wide = flag & ((1 << int(index[1:])) - 1)  # (the i8 literal -128 as 128 in i32)
    bit = _splat(fn, wt, lanes, flag if lanes == index else wide, c)
    bit = fn(f"select <{c} x i1> {positive}, {wt} {bit}, {wt} zeroinitializer")
    where = fn(f"or {wt} {where}, {bit}")
    if lanes != index:
        where = fn(f"trunc {wt} {where} to {kt}")
    fn.store(kt, where, fn.gep(index, codes, base))


# Neighbouring windows the saving max-pool scans together, and the largest window it does so
# for (the taps are written out). W4 (2x2 windows of 8 channels; GRAPHC_PROFILE minimum
# cycles, AVX2): one window at a time, a chain of dependent compare-selects, 147k; 2, 4, 7
# together (tap lanes of 32 bits, the codes narrowed once per window) 138k, 131k, 133k.
WINDOWS_TOGETHER = 4
TOGETHER_MAX_TAPS = 16


def scan_row(fn, dtype, g, code, ptrs, at, address=None):
    """Row p of image n's windows (``at`` = (n, p); they lie inside x), ``WINDOWS_TOGETHER``
    neighbours at a time (``scan_together``, ``address`` passed on): each one's maximum and
    tap stored by ``store_window`` (``code``, ``ptrs`` as there)."""
    n, p = at
    lanes = f"i{dtype.itemsize * 8}"  # tap lanes as wide as the values: no packing

    def block(q0, count):
        first = fn.add(fn.mul(fn.add(fn.mul(n, g.oh), p), g.ow), q0)
        qs = [fn.add(q0, u) for u in range(count)]
        for u, found in enumerate(scan_together(fn, dtype, g, n, p, qs, lanes, address)):
            store_window(fn, dtype, code, ptrs, fn.add(first, u), found, lanes)
    together = min(WINDOWS_TOGETHER, g.ow)
    blocks, rest = divmod(g.ow, together)
    if blocks:
        with fn.loop(blocks, "q") as lq:
            block(fn.mul(lq.i, together), together)
    if rest:
        block(str(blocks * together), rest)


def scan_together(fn, dtype, g, n, p, qs, index, address=None):
    """[(maximum, tap of the first maximum)] of windows (n, p, q) for q in ``qs``, which lie
    inside x (%p1): ``scan_vector``'s comparisons, tap by tap across the windows.
    ``address(i, j, q)``: where tap (i, j) of window q is read instead (n and p unused)."""
    s, c = val_type(dtype), g.c
    vt, kt, mt = f"<{c} x {s}>", f"<{c} x {index}>", f"<{c} x i1>"
    best = [f"splat ({s} {float_literal(-np.inf, dtype)})"] * len(qs)
    where = ["zeroinitializer"] * len(qs)
    if address is None:
        def address(i, j, q):
            row = fn.mul(fn.add(fn.mul(n, g.h), fn.add(fn.mul(p, g.sh), i)), g.w)
            return fn.gep(s, "%p1", fn.mul(fn.add(row, fn.add(fn.mul(q, g.sw), j)), c))
    for i in range(g.kh):
        for j in range(g.kw):
            k = _splat(fn, kt, index, i * g.kw + j, c)
            for u, q in enumerate(qs):
                v = fn.load(vt, address(i, j, q))
                if i == j == 0:  # (-inf, tap 0) would take it or equal it: no compare
                    best[u] = v
                    continue
                # v > best, or v NaN while best is not (the first NaN stays)
                take = fn(f"and {mt} {fn(f'fcmp ugt {vt} {v}, {best[u]}')}, "
                          f"{fn(f'fcmp ord {vt} {best[u]}, {best[u]}')}")
                best[u] = fn(f"select {mt} {take}, {vt} {v}, {vt} {best[u]}")
                where[u] = fn(f"select {mt} {take}, {kt} {k}, {kt} {where[u]}")
    return list(zip(best, where))


def save_scalar(dtype, g, index, flag, noalias):
    """``save_vector`` one channel at a time (windows of more than VECTOR_CHANNELS)."""
    fn = Function("kernel", params(3, noalias))
    t = val_type(dtype)
    best, where = scan_scalar_buffers(fn, dtype, g.c)

    def window(n, p, q, pos):
        scan_scalar(fn, dtype, g, n, p, q, best, where)
        with fn.loop(g.c) as lc:
            i = fn.add(fn.mul(pos, g.c), lc.i)
            m = fn.load(t, fn.gep(t, best, lc.i))
            fn.store(t, m, fn.gep(t, "%p0", i))
            k = fn(f"trunc i64 {fn.load('i64', fn.gep('i64', where, lc.i))} to {index}")
            bit = fn(f"select i1 {fn(f'fcmp ogt {t} {m}, 0.0')}, {index} {flag}, {index} 0")
            fn.store(index, fn(f"or {index} {k}, {bit}"), fn.gep(index, "%p2", i))
    _over_windows(fn, g, window)
    fn.ret()
    return fn


def route_saved(kind, dtype, g, saved, noalias, positive_only=False):
    """"grad": %p0 (x-shaped; zeroed unless vector windows tile x) += %p2 (pooled dy) at the
    taps coded in %p1; "gradgrad": %p0 (pooled) = %p2 (x-shaped) read there.
    ``positive_only`` (vector only): route only windows whose maximum was > 0."""
    fn = Function("kernel", params(3, noalias))
    index, c, mask = saved.index, g.c, saved.mask

    def vector(n, p, q, pos):
        kt = f"<{c} x {index}>"
        code = fn.load(kt, fn.gep(index, "%p1", fn.mul(pos, c)))
        where = fn(f"and {kt} {code}, {_splat(fn, kt, index, mask, c)}")
        positive = None
        if positive_only:
            flag = fn(f"and {kt} {code}, {_splat(fn, kt, index, saved.flag, c)}")
            positive = fn(f"icmp ne {kt} {flag}, zeroinitializer")
        route_vector(fn, kind, dtype, g, (n, p, q, pos), (where, index), positive)

    def scalar(n, p, q, pos):
        with fn.loop(c) as lc:
            code = fn.load(index, fn.gep(index, "%p1", fn.add(fn.mul(pos, c), lc.i)))
            k = fn(f"zext {index} {fn(f'and {index} {code}, {mask}')} to i64")
            route_scalar(fn, kind, dtype, g, (n, p, q, pos), lc.i, k)
    _over_windows(fn, g, vector if c <= VECTOR_CHANNELS else scalar)
    fn.ret()
    return fn


# -- the lowerings of max pooling and its gradients ---------------------------------------------
@lowers("max_pool", "avg_pool")
def lower_pool(L, n):
    x = n.inputs[0]
    g = _geometry(n, x)
    if n.op_name == "max_pool" and lower_saving_pool(L, n, g):
        return
    bufs = [L.out(n), L.buf(x)]
    build = pool_vector_function if g.c <= VECTOR_CHANNELS else pool_function
    L.call(build(n.op_name[:3], n.dtype, g, L.noalias(bufs)), bufs, n)


@lowers("max_pool_grad", "max_pool_grad_grad")
def lower_max_pool_grad(L, n):
    x, other = n.inputs
    kind = "grad" if n.op_name == "max_pool_grad" else "gradgrad"
    g = _geometry(n, x)
    vector = g.c <= VECTOR_CHANNELS
    masked = L.fold(n, "relu_mask")  # the where node computed here (folds.relu_mask)
    out = L.out(n) if masked is None else L.out(masked)
    if masked is not None:
        L.skip.add(masked)
    if kind == "grad" and not (vector and _tiled(g)):
        fill(L, out, n.shape, n.dtype, 0, n)
    saved = saved_argmax(L, n, g)
    if saved is not None:  # the forward max_pool saved each window's argmax
        uniq = [out, saved.buf, L.buf(other)]
        fn = route_saved(kind, n.dtype, g, saved, L.noalias(uniq), masked is not None)
        L.call(fn, uniq, n)
        return
    uniq = [out, L.buf(x), L.buf(other)]
    if vector:
        fn = argmax_pool_vector(kind, n.dtype, g, L.noalias(uniq), masked is not None)
    else:
        fn = argmax_pool_function(kind, n.dtype, g, L.noalias(uniq))
    L.call(fn, uniq, n)
