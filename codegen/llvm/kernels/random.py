"""Random ops as counter-based generators: uniform, normal, truncated normal.

Element ``i`` of a random op's output at call ``c`` is a pure function of (the op's 64-bit key,
c, i): ``bits(j) = mix(base + j * G)`` with ``base = mix(key ^ mix(c))``, where ``mix`` is the
SplitMix64 finalizer (Steele, Lea and Flood, 2014) and G the 64-bit golden-ratio increment —
the SplitMix64 stream started at ``base``. No state is carried between elements, so the loops
vectorize, and results do not depend on how the work is split. The key comes from the op's
seed (fixed seeds reproduce across processes) or from the OS (seed None); the call counter
lives in the step's RNG state and is incremented once per call, so every run draws fresh
values. Values differ from NumPy's generators bit for bit, not in distribution.

Uniforms take the top 24 (float32) or 53 (float64) bits. Normals use Box-Muller in float64
(``sqrt(-2 log u1) cos(2 pi u2)``, u1 in (0, 1]); truncated normals redraw, from later
positions of the same stream, until ``|z| <= 2`` (TF's rule).
"""
import math

import numpy as np

from ..ir import Function, float_literal, mem_type, val_type
from ..registry import lowers
from ..loops import params
from ....ir import dtypes as D

GOLDEN = 0x9E3779B97F4A7C15
_MIX = ((30, 0xBF58476D1CE4E5B9), (27, 0x94D049BB133111EB), (31, None))
COS_TERMS = 11  # Taylor terms of cos on [0, pi/2]: the last is ~2e-17


def _signed(c):
    """An unsigned 64-bit constant as LLVM's signed i64 literal."""
    return str(c - (1 << 64) if c >= 1 << 63 else c)


def mix(fn, z):
    """SplitMix64's finalizer: a bijective avalanche of 64 bits."""
    for shift, mult in _MIX:
        z = fn(f"xor i64 {z}, {fn(f'lshr i64 {z}, {shift}')}")
        if mult is not None:
            z = fn(f"mul i64 {z}, {_signed(mult)}")
    return z


def bits_at(fn, base, j):
    """The j-th 64-bit draw of the stream starting at ``base``."""
    return mix(fn, fn(f"add i64 {base}, {fn(f'mul i64 {j}, {_signed(GOLDEN)}')}"))


def unit(fn, bits, dtype, open_zero=False):
    """A uniform in [0, 1) from the top mantissa bits (in (0, 1] with ``open_zero``)."""
    keep = 24 if dtype.name == "float32" else 53
    top = fn(f"lshr i64 {bits}, {64 - keep}")
    if open_zero:
        top = fn(f"add i64 {top}, 1")
    t = val_type(dtype)
    return fn(f"fmul {t} {fn(f'uitofp i64 {top} to {t}')}, {float_literal(2.0 ** -keep, dtype)}")


def cos2pi_helper(module):
    """``cos(2 pi t)`` for doubles t in [0, 1): reduce to [0, 1/4] by symmetry, Taylor there."""
    def build():
        fn = Function("gc.cos2pi.f64", [("double", "%a0", "")], attrs="alwaysinline nounwind",
                      ret_type="double")
        lit = lambda v: float_literal(v, D.float64)  # noqa: E731
        r = fn(f"fsub double %a0, {fn.call('double', 'llvm.rint.f64', [('double', '%a0')])}")
        a = fn.call("double", "llvm.fabs.f64", [("double", r)])
        flip = fn(f"fcmp ogt double {a}, {lit(0.25)}")
        b = fn(f"select i1 {flip}, double {fn(f'fsub double {lit(0.5)}, {a}')}, double {a}")
        phi = fn(f"fmul double {b}, {lit(math.tau)}")
        z = fn(f"fmul double {phi}, {phi}")
        acc = lit((-1) ** (COS_TERMS - 1) / math.factorial(2 * COS_TERMS - 2))
        for k in range(COS_TERMS - 2, -1, -1):
            acc = fn.call("double", "llvm.fmuladd.f64",
                          [("double", acc), ("double", z),
                           ("double", lit((-1) ** k / math.factorial(2 * k)))])
        fn.ret(fn(f"select i1 {flip}, double {fn(f'fneg double {acc}')}, double {acc}"))
        return fn
    return module.helper("gc.cos2pi.f64", build)


def normal_at(L, fn, base, pair):
    """A standard normal (float64) from draws 2*pair and 2*pair+1 of the stream."""
    j1 = fn(f"shl i64 {pair}, 1")
    u1 = unit(fn, bits_at(fn, base, j1), D.float64, open_zero=True)
    u2 = unit(fn, bits_at(fn, base, fn(f"or i64 {j1}, 1")), D.float64)
    lg = L.math.call(fn, "log", D.float64, u1)
    radius = fn.call("double", "llvm.sqrt.f64",
                     [("double", fn(f"fmul double {lg}, {float_literal(-2.0, D.float64)}"))])
    c = fn(f"call double @{cos2pi_helper(L.module)}(double {u2})")
    return fn(f"fmul double {radius}, {c}")


def random_function(L, kind, dtype, count, key_index, attrs):
    """``%p0[i]`` = a fresh random value; ``%p1`` is the RNG state [counter, keys...]."""
    fn = Function("kernel", params(2, [True, True]))
    t, mt = val_type(dtype), mem_type(dtype)
    counter = fn.load("i64", "%p1")
    key = fn.load("i64", fn.gep("i64", "%p1", key_index))
    base = mix(fn, fn(f"xor i64 {key}, {mix(fn, counter)}"))
    with fn.loop(count) as lp:
        if kind == "uniform":
            lo, hi = float(attrs.get("minval", 0.0)), float(attrs.get("maxval", 1.0))
            u = unit(fn, bits_at(fn, base, lp.i), dtype)
            v = fn.call(t, f"llvm.fmuladd.{_sfx(t)}",
                        [(t, u), (t, float_literal(hi - lo, dtype)), (t, float_literal(lo, dtype))])
        else:
            z = _truncated(L, fn, base, lp.i, count) if kind == "truncated" else \
                normal_at(L, fn, base, lp.i)
            if dtype.name == "float32":
                z = fn(f"fptrunc double {z} to float")
            mean, std = float(attrs.get("mean", 0.0)), float(attrs.get("stddev", 1.0))
            v = fn.call(t, f"llvm.fmuladd.{_sfx(t)}",
                        [(t, z), (t, float_literal(std, dtype)), (t, float_literal(mean, dtype))])
        fn.store(mt, v, fn.gep(mt, "%p0", lp.i))
    fn.ret()
    return fn


def _truncated(L, fn, base, i, count):
    """Redraw at positions i, i + count, i + 2 count... until |z| <= 2."""
    pre, again, done = fn.cur, fn.label("redraw"), fn.label("drawn")
    fn.br(again)
    fn.block(again)
    attempt, nxt = fn.fresh("try"), fn.fresh("tryn")
    fn.lines.append(f"  {attempt} = phi i64 [0, %{pre}], [{nxt}, %{again}]")
    pair = fn(f"add i64 {i}, {fn(f'mul i64 {attempt}, {count}')}")
    z = normal_at(L, fn, base, pair)
    fn.lines.append(f"  {nxt} = add i64 {attempt}, 1")
    a = fn.call("double", "llvm.fabs.f64", [("double", z)])
    ok = fn(f"fcmp ole double {a}, {float_literal(2.0, D.float64)}")
    fn.emit(f"br i1 {ok}, label %{done}, label %{again}")
    fn.block(done)
    return z


def _sfx(t):
    return "f32" if t == "float" else "f64"


_KINDS = {"random_uniform": "uniform", "random_uniform_like": "uniform",
          "random_normal": "normal", "truncated_normal": "truncated"}


@lowers(*_KINDS)
def lower_random(L, n):
    state, key_index = L.rng(n.attrs.get("seed"))
    count = int(np.prod(n.shape, dtype=np.int64))
    fn = random_function(L, _KINDS[n.op_name], n.dtype, count, key_index, n.attrs)
    L.call(fn, [L.out(n), state], n)
