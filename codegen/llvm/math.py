"""Vectorizable exp, log, log1p, expm1, tanh, pow, sin and cos for the LLVM backend, written
in IR.

LLVM's ``llvm.exp``/``llvm.log`` intrinsics lower to scalar libm calls: they need symbols the
object code cannot link to, and they stop loops from vectorizing. These functions are plain
branch-free IR instead (``alwaysinline``, so every fused loop that calls them still
vectorizes), accurate to a few ulp in float32 and float64:

- exp: Cody-Waite reduction ``x = n ln2 + r`` (|r| <= ln2/2), Taylor series of exp(r), and
  ``2^n`` applied in two exact halves so results down to the subnormals and up to overflow
  come out right;
- log: ``x = m 2^e`` with m in [sqrt(1/2), sqrt(2)), ``log m = 2 atanh(s)``, s = (m-1)/(m+1);
- expm1: ``2^n expm1(r) + (2^n - 1)`` with expm1(r) by its series (no cancellation);
- log1p by Kahan's correction of log(1+x);
- tanh: float32 a rational function ``x P(x^2) / Q(x^2)`` (coefficients fitted once, see
  TANH_F32_P), float64 ``-expm1(-2|x|) / (2 + expm1(-2|x|))`` with x's sign (accurate near 0);
- pow: ``exp(y log|x|)`` (in float64 for float32 results) with C99's special cases;
- sin, cos (in float64 for float32 results): Cody-Waite reduction ``x = k pi/2 + r``
  (|r| <= pi/4) by a three-part split of pi/2 whose products with k are exact for
  |x| < 3e6 (beyond, r's absolute error grows as |x| 2^-53, as in other vector math libraries
  that skip Payne-Hanek reduction), Taylor series of sin r and cos r, and the quadrant k mod 4,
  computed in floating point (no integer conversion, so loops vectorize on AVX2), choosing
  +-sin r or +-cos r; +-inf and NaN give NaN;
- float32 ``a / (sqrt(b) + c)`` (Adam's step, c > 0 a constant) without the divider:
  LLVM's reciprocal (square root) estimates, each refined by one Newton step here
  (``div_sqrt_add``; ``GRAPHC_EXACT_DIVIDE=1`` keeps fdiv and sqrt).

Every series coefficient is derived here (factorials, 2/(2k+1)), and the split constants of
ln 2 and pi/2 from 40- and 50-digit ``decimal`` values; the one fitted set, float32 tanh's, says how it was fitted.
Special values (NaN, +-inf, 0, negative arguments of log) follow NumPy.
"""
import decimal
import math

from ...ir import dtypes as D
from .ir import KERNEL_ATTRS, MATH_KERNEL_ATTRS, Function, float_literal

# LLVM's estimate instructions (x86 rcp/rsqrt, AArch64 frecpe/frsqrte), without LLVM's own
# refinement steps ("...:0"): ``div_sqrt_add`` refines them itself, in an order whose special
# values it controls. A target without estimates keeps exact fdiv and sqrt, still correct.
ESTIMATE_ATTRS = '"reciprocal-estimates"="vec-sqrtf:0,sqrtf:0,vec-divf:0,divf:0"'
# Estimates pay in loops whose operands stay in cache (compute-bound: an Adam loop over 16k
# elements 1.8x faster, 32k 1.2x); a loop streaming more from memory waits on memory, and
# there the extra instructions measured ~2% slower (W5's W0 and W1 loops): exact there.
ESTIMATE_MAX_BYTES = 1 << 20

# Where tanh's expm1 argument -2|x| is clamped: tanh is 1 in float64 from |x| = 19.1 on, and
# 2^n stays a normal number down there (n = -115).
TANH_LO = -80.0
# float32 tanh(x) = x P(x^2) / Q(x^2) on |x| <= TANH_F32_BOUND (the float32 tanh is within an
# eps of 1 beyond): a rational fit of tanh(x)/x in x^2, relative error weighted, by iterated
# least squares (Loeb's linearization, Lawson's reweighting toward equal ripple; 0.06 eps in
# exact arithmetic, 2.6 eps evaluated in float32). P, Q lowest degree first.
TANH_F32_BOUND = 9.0
TANH_F32_P = (0.9999999935710157, 0.13084086702828301, 0.003104040853989768,
              1.1155168522820807e-05, -2.0228566010550642e-08, 5.279475902086043e-11,
              -8.492428898784703e-14)
TANH_F32_Q = (1.0, 0.4641741386672259, 0.024495517976073567, 0.00025462669942306193)
# Per precision: float type, int type of the same width, mantissa bits, exponent bias,
# Taylor degree of exp, atanh-series terms of log, clamp range of exp.
_SPEC = {
    "float32": dict(t="float", i="i32", mbits=23, bias=127, exp_deg=7, log_terms=5,
                    lo=-104.0, hi=89.0, sfx="f32"),
    "float64": dict(t="double", i="i64", mbits=52, bias=1023, exp_deg=13, log_terms=11,
                    lo=-746.0, hi=710.0, sfx="f64"),
}


def _ln2_parts(keep_bits):
    """ln 2 = hi + lo with ``hi`` holding ``keep_bits`` significant bits (so n*hi is exact)."""
    decimal.getcontext().prec = 40
    ln2 = decimal.Decimal(2).ln()
    m, e = math.frexp(float(ln2))
    hi = math.ldexp(math.floor(m * 2 ** keep_bits) / 2 ** keep_bits, e)
    lo = float(ln2 - decimal.Decimal(hi))
    return hi, lo


def exp_coefficients(degree):
    return [1.0 / math.factorial(k) for k in range(degree + 1)]


def expm1_coefficients(degree):
    """expm1(r) = r * sum_k c_k r^k with c_k = 1/(k+1)!."""
    return [1.0 / math.factorial(k + 1) for k in range(degree)]


def log_coefficients(terms):
    """log(1+f) = s * sum_k c_k z^k with s = f/(2+f), z = s^2: c_k = 2/(2k+1)."""
    return [2.0 / (2 * k + 1) for k in range(terms)]


# pi to 50 digits, for the split of pi/2 in sin and cos
PI_50 = "3.14159265358979323846264338327950288419716939937511"
# Significant bits of the first two parts of pi/2: k * part is exact for |k| < 2^(53 - 32).
PIO2_BITS = 32
# sin and cos clamp |x| here before the reduction (k then fits a double's integers exactly);
# the results beyond mean little (ulp(x) exceeds pi there), but stay finite.
SINCOS_BOUND = 2.0 ** 50
# Taylor terms of sin r = r sum (-1)^k r^2k / (2k+1)! and cos r (|r| <= pi/4): the first
# term left out is below 2^-56 relative (pi/4)^19 / 19! ~ 1e-18.
SIN_TERMS, COS_TERMS = 9, 10


def _pio2_parts(keep_bits, count=3):
    """pi/2 as ``count`` doubles summing to it, all but the last holding ``keep_bits``
    significant bits (so k times each is exact while k is small)."""
    decimal.getcontext().prec = 50
    rest = decimal.Decimal(PI_50) / 2
    parts = []
    for _ in range(count - 1):
        m, e = math.frexp(float(rest))
        hi = math.ldexp(math.floor(m * 2 ** keep_bits) / 2 ** keep_bits, e)
        parts.append(hi)
        rest -= decimal.Decimal(hi)
    return parts + [float(rest)]


def sin_coefficients(terms):
    """P with sin r = r P(r^2): (-1)^k / (2k+1)!."""
    return [(-1) ** k / math.factorial(2 * k + 1) for k in range(terms)]


def cos_coefficients(terms):
    """P with cos r = P(r^2): (-1)^k / (2k)!."""
    return [(-1) ** k / math.factorial(2 * k) for k in range(terms)]


def _dtype(name):
    return D.float32 if name == "float32" else D.float64


class MathLib:
    """Defines the math helpers in a ``Module`` on first use; ``call`` emits a call to one."""

    def __init__(self, module):
        self.module = module
        # whether float32 a / (sqrt(b) + c) may use ``div_sqrt_add`` in the kernel being
        # written (a loop builder that knows its bytes sets it, see ESTIMATE_MAX_BYTES)
        self.estimates = True

    def call(self, fn, op, dtype, *args, lanes=0):
        """Emit ``op(args)`` (op in exp, log, log1p, expm1, tanh, pow, sin, cos) in ``fn``;
        with ``lanes`` (exp only), on ``<lanes x float>`` vectors (explicitly vector kernels:
        rows too short for the loop vectorizer)."""
        s = _SPEC[dtype.name]
        if fn.attrs == KERNEL_ATTRS:  # a kernel, not a helper inlined into one
            fn.attrs = MATH_KERNEL_ATTRS
        t, name = s["t"], f"gc.{op}.{s['sfx']}"
        if lanes:
            if op not in VECTOR_OPS:
                raise NotImplementedError(f"no vector {op} (vector ops: {VECTOR_OPS})")
            t, name = f"<{lanes} x {t}>", f"gc.{op}.v{lanes}{s['sfx']}"
            self.module.helper(name, lambda: getattr(self, "_" + op)(name, dtype.name, lanes))
        else:
            self.module.helper(name, lambda: getattr(self, "_" + op)(name, dtype.name))
        return fn(f"call {t} @{name}(" + ", ".join(f"{t} {a}" for a in args) + ")", op)

    def div_sqrt_add(self, fn, a, b, c):
        """float32 ``a / (sqrt(b) + c)`` for a constant ``c`` (a positive normal number whose
        reciprocal is finite) from estimates refined by Newton steps: no divide, no sqrt.

        ``y ~ 1/sqrt(b)`` and ``r ~ 1/d`` come from LLVM's estimates (``ESTIMATE_ATTRS`` on
        the kernel, 12 or 14 bits); one Newton step each (fused multiply-adds) gives
        ``s = sqrt(b)`` and ``r`` to about an ulp, ``q = a r`` to a few (see the tests).
        Special values: b = +-0 -> a/c (the estimate's inf is not used); b = +inf -> a * 0
        (the estimate's 0 times inf would be NaN); b < 0 or NaN -> NaN (the estimate is NaN).
        ``ninf`` on the reciprocal lets LLVM use its estimate; its operand is never inf
        (b = inf makes d NaN before the select) and its result is finite (d >= c).
        """
        if ESTIMATE_ATTRS not in fn.attrs:
            fn.attrs += " " + ESTIMATE_ATTRS
        t, L = "float", lambda v: self._lit(v, "float")
        fma = lambda x, y, z: fn.call(t, "llvm.fmuladd.f32", [(t, x), (t, y), (t, z)])
        fn.uses.add(("llvm.sqrt.f32", t, (t,)))
        root = fn(f"call afn {t} @llvm.sqrt.f32({t} {b})")
        y = fn(f"fdiv arcp afn {t} {L(1.0)}, {root}")  # the rsqrt estimate
        s0, h = fn(f"fmul {t} {b}, {y}"), fn(f"fmul {t} {y}, {L(0.5)}")
        s = fma(s0, fma(fn(f"fneg {t} {s0}"), h, L(0.5)), s0)  # s0 (1 + (1 - s0 y) / 2)
        s = fn(f"select i1 {fn(f'fcmp oeq {t} {b}, {L(0.0)}')}, {t} {b}, {t} {s}")
        d = fn(f"fadd {t} {s}, {L(c)}")
        r = fn(f"fdiv arcp afn ninf {t} {L(1.0)}, {d}")  # the reciprocal estimate
        r = fma(r, fma(fn(f"fneg {t} {d}"), r, L(1.0)), r)  # r (1 + (1 - d r))
        q = fn(f"fmul {t} {a}, {r}")
        inf = fn(f"fcmp oeq {t} {b}, {L(math.inf)}")
        return fn(f"select i1 {inf}, {t} {fn(f'fmul {t} {a}, {L(0.0)}')}, {t} {q}")

    # -- building blocks ----------------------------------------------------------------------
    @staticmethod
    def _fn(name, t, nargs=1):
        params = [(t, f"%a{k}", "") for k in range(nargs)]
        return Function(name, params, linkage="internal", attrs="alwaysinline nounwind",
                        ret_type=t)

    @staticmethod
    def _poly(fn, t, x, coefs):
        """Horner's rule with fused multiply-adds: sum coefs[k] x^k."""
        acc = MathLib._lit(coefs[-1], t)
        for c in reversed(coefs[:-1]):
            acc = fn.call(t, f"llvm.fmuladd.{_sfx(t)}", [(t, acc), (t, x),
                                                        (t, MathLib._lit(c, t))], "h")
        return acc

    @staticmethod
    def _lit(v, t):
        """A float literal of type ``t`` (a splat for a vector type)."""
        elem = _elem(t)
        lit = float_literal(v, _dtype("float32" if elem == "float" else "float64"))
        return lit if elem == t else f"splat ({elem} {lit})"

    # -- exp ------------------------------------------------------------------------------------
    def _reduce(self, fn, prec, x, lanes=0):
        """Cody-Waite: (r, 2^n as two exact halves) with x = n ln2 + r, |r| <= ln2/2 (x is
        clamped to where exp neither overflows nor underflows past the subnormals)."""
        s = _SPEC[prec]
        t, it = _typed(s["t"], lanes), _typed(s["i"], lanes)
        L, I = lambda v: self._lit(v, t), lambda v: _int_lit(v, it)
        # minnum/maxnum clamp in one instruction each; they turn NaN into a bound, so what
        # follows stays finite (plain fptosi is defined) and callers restore NaN at the end
        xc = fn.call(t, f"llvm.minnum.{_sfx(t)}", [(t, x), (t, L(s["hi"]))])
        xc = fn.call(t, f"llvm.maxnum.{_sfx(t)}", [(t, xc), (t, L(s["lo"]))])
        ln2hi, ln2lo = _ln2_parts(12 if prec == "float32" else 32)
        nf = fn.call(t, f"llvm.rint.{_sfx(t)}", [(t, fn(f"fmul {t} {xc}, "
                                                        f"{L(1 / math.log(2))}"))])
        r = fn(f"fsub {t} {xc}, {fn(f'fmul {t} {nf}, {L(ln2hi)}')}")
        r = fn(f"fsub {t} {r}, {fn(f'fmul {t} {nf}, {L(ln2lo)}')}")
        n = fn(f"fptosi {t} {nf} to {it}")
        n1 = fn(f"ashr {it} {n}, {I(1)}")
        scales = []
        for part in (n1, fn(f"sub {it} {n}, {n1}")):
            biased = fn(f"add {it} {part}, {I(s['bias'])}")
            shifted = fn(f"shl {it} {biased}, {I(s['mbits'])}")
            scales.append(fn(f"bitcast {it} {shifted} to {t}"))
        return r, scales

    def _exp(self, name, prec, lanes=0):
        t = _typed(_SPEC[prec]["t"], lanes)
        fn = self._fn(name, t)
        x = "%a0"
        r, (s1, s2) = self._reduce(fn, prec, x, lanes)
        p = self._poly(fn, t, r, exp_coefficients(_SPEC[prec]["exp_deg"]))
        res = fn(f"fmul {t} {fn(f'fmul {t} {p}, {s1}')}, {s2}")
        nan = fn(f"fcmp uno {t} {x}, {x}")
        fn.ret(fn(f"select {_typed('i1', lanes)} {nan}, {t} {x}, {t} {res}"))
        return fn

    def _expm1(self, name, prec):
        """exp(x) - 1 without cancellation: 2^n expm1(r) + (2^n - 1), expm1(r) by its series
        (no constant term, so small results keep their relative accuracy)."""
        s = _SPEC[prec]
        t, L = s["t"], lambda v: self._lit(v, s["t"])
        fn = self._fn(name, t)
        x = "%a0"
        r, (s1, s2) = self._reduce(fn, prec, x)
        q = fn(f"fmul {t} {r}, {self._poly(fn, t, r, expm1_coefficients(s['exp_deg'] + 1))}")
        scale = fn(f"fmul {t} {s1}, {s2}")
        res = fn.call(t, f"llvm.fmuladd.{_sfx(t)}",
                      [(t, q), (t, scale), (t, fn(f"fsub {t} {scale}, {L(1.0)}"))])
        nan = fn(f"fcmp uno {t} {x}, {x}")
        fn.ret(fn(f"select i1 {nan}, {t} {x}, {t} {res}"))
        return fn

    # -- log ------------------------------------------------------------------------------------
    def _log(self, name, prec, lanes=0):
        s = _SPEC[prec]
        t, it, bt = _typed(s["t"], lanes), _typed(s["i"], lanes), _typed("i1", lanes)
        L, I = lambda v: self._lit(v, t), lambda v: _int_lit(v, it)
        fn = self._fn(name, t)
        x, mb = "%a0", s["mbits"]
        smallest_normal = L(2.0 ** (1 - s["bias"]))
        tiny = fn(f"fcmp olt {t} {x}, {smallest_normal}")
        xs = fn(f"select {bt} {tiny}, {t} {fn(f'fmul {t} {x}, {L(2.0 ** mb)}')}, {t} {x}")
        bits = fn(f"bitcast {t} {xs} to {it}")
        e = fn(f"sub {it} {fn(f'lshr {it} {bits}, {I(mb)}')}, {I(s['bias'])}")
        e = fn(f"sub {it} {e}, {fn(f'select {bt} {tiny}, {it} {I(mb)}, {it} {I(0)}')}")
        mant = fn(f"and {it} {bits}, {I((1 << mb) - 1)}")
        one_bits = s["bias"] << mb
        m = fn(f"bitcast {it} {fn(f'or {it} {mant}, {I(one_bits)}')} to {t}")
        big = fn(f"fcmp ogt {t} {m}, {L(math.sqrt(2.0))}")
        m = fn(f"select {bt} {big}, {t} {fn(f'fmul {t} {m}, {L(0.5)}')}, {t} {m}")
        e = fn(f"add {it} {e}, {fn(f'zext {bt} {big} to {it}')}")
        f = fn(f"fsub {t} {m}, {L(1.0)}")
        sv = fn(f"fdiv {t} {f}, {fn(f'fadd {t} {f}, {L(2.0)}')}")
        z = fn(f"fmul {t} {sv}, {sv}")
        series = self._poly(fn, t, z, log_coefficients(s["log_terms"]))
        p = fn(f"fmul {t} {sv}, {series}")
        ef = fn(f"sitofp {it} {e} to {t}")
        ln2hi, ln2lo = _ln2_parts(12 if prec == "float32" else 32)
        low = fn.call(t, f"llvm.fmuladd.{_sfx(t)}", [(t, ef), (t, L(ln2lo)), (t, p)])
        res = fn.call(t, f"llvm.fmuladd.{_sfx(t)}", [(t, ef), (t, L(ln2hi)), (t, low)])
        bad = fn(f"fcmp ult {t} {x}, {L(0.0)}")  # negative or NaN
        res = fn(f"select {bt} {bad}, {t} {L(math.nan)}, {t} {res}")
        res = fn(f"select {bt} {fn(f'fcmp oeq {t} {x}, {L(0.0)}')}, {t} {L(-math.inf)}, "
                 f"{t} {res}")
        res = fn(f"select {bt} {fn(f'fcmp oeq {t} {x}, {L(math.inf)}')}, {t} {L(math.inf)}, "
                 f"{t} {res}")
        fn.ret(res)
        return fn

    def _log1p(self, name, prec):
        s = _SPEC[prec]
        t, L = s["t"], lambda v: self._lit(v, s["t"])
        fn = self._fn(name, t)
        x = "%a0"
        u = fn(f"fadd {t} {x}, {L(1.0)}")
        d = fn(f"fsub {t} {u}, {L(1.0)}")
        lg = self.call(fn, "log", _dtype(prec), u)
        res = fn(f"fmul {t} {lg}, {fn(f'fdiv {t} {x}, {d}')}")
        res = fn(f"select i1 {fn(f'fcmp oeq {t} {d}, {L(0.0)}')}, {t} {x}, {t} {res}")
        res = fn(f"select i1 {fn(f'fcmp oeq {t} {x}, {L(math.inf)}')}, {t} {x}, {t} {res}")
        fn.ret(res)
        return fn

    # -- tanh -----------------------------------------------------------------------------------
    def _tanh(self, name, prec):
        """float32: ``_tanh_rational``. float64: tanh|x| = -expm1(-2|x|) / (2 + expm1(-2|x|)),
        with x's sign: accurate near 0 (no cancellation) and exactly 1 once expm1 reaches -1.

        expm1 is inlined for an argument in [TANH_LO, 0] (tanh is 1 long before): no upper
        clamp, 2^n in one scale (a normal number), reduction by fused multiply-adds, and one
        NaN check at the end, and one series term fewer than ``_expm1`` (about 2.2 eps over
        [-20, 20]): 29 instead of 37 vector instructions per vector (in float32, before the
        rational form: W3's tanh kernels 358k -> 270k cycles).
        """
        if prec == "float32":
            return self._tanh_rational(name)
        s = _SPEC[prec]
        t, it, L = s["t"], s["i"], lambda v: self._lit(v, s["t"])
        fn = self._fn(name, t)
        x = "%a0"
        fma = lambda a, b, c: fn.call(t, f"llvm.fmuladd.{_sfx(t)}", [(t, a), (t, b), (t, c)])
        a = fn.call(t, f"llvm.fabs.{_sfx(t)}", [(t, x)])
        # maxnum turns NaN into the bound (finite from here on; restored at the end)
        y = fn.call(t, f"llvm.maxnum.{_sfx(t)}", [(t, fn(f"fmul {t} {a}, {L(-2.0)}")),
                                                  (t, L(TANH_LO))])
        ln2hi, ln2lo = _ln2_parts(12 if prec == "float32" else 32)
        nf = fn.call(t, f"llvm.rint.{_sfx(t)}", [(t, fn(f"fmul {t} {y}, "
                                                        f"{L(1 / math.log(2))}"))])
        r = fma(nf, L(-ln2hi), y)  # exact: n ln2hi fits ln2hi's spare bits (Cody-Waite)
        r = fma(nf, L(-ln2lo), r)
        biased = fn(f"add {it} {fn(f'fptosi {t} {nf} to {it}')}, {s['bias']}")
        shifted = fn(f"shl {it} {biased}, {s['mbits']}")
        scale = fn(f"bitcast {it} {shifted} to {t}")
        q = fn(f"fmul {t} {r}, {self._poly(fn, t, r, expm1_coefficients(s['exp_deg']))}")
        e = fma(q, scale, fn(f"fsub {t} {scale}, {L(1.0)}"))
        mag = fn(f"fdiv {t} {fn(f'fneg {t} {e}')}, {fn(f'fadd {t} {e}, {L(2.0)}')}")
        res = fn.call(t, f"llvm.copysign.{_sfx(t)}", [(t, mag), (t, x)])
        nan = fn(f"fcmp uno {t} {x}, {x}")
        fn.ret(fn(f"select i1 {nan}, {t} {x}, {t} {res}"))
        return fn

    def _tanh_rational(self, name):
        """float32 tanh as ``x P(x^2) / Q(x^2)`` (x clamped to +-TANH_F32_BOUND): 16 vector
        instructions instead of the expm1 form's 29, relative error within 2.6 eps."""
        t, L = "float", lambda v: self._lit(v, "float")
        fn = self._fn(name, t)
        x = "%a0"
        # minnum/maxnum turn NaN into a bound; the select at the end restores it
        xc = fn.call(t, "llvm.minnum.f32", [(t, x), (t, L(TANH_F32_BOUND))])
        xc = fn.call(t, "llvm.maxnum.f32", [(t, xc), (t, L(-TANH_F32_BOUND))])
        z = fn(f"fmul {t} {xc}, {xc}")
        num = fn(f"fmul {t} {xc}, {self._poly(fn, t, z, TANH_F32_P)}")
        res = fn(f"fdiv {t} {num}, {self._poly(fn, t, z, TANH_F32_Q)}")
        nan = fn(f"fcmp uno {t} {x}, {x}")
        fn.ret(fn(f"select i1 {nan}, {t} {x}, {t} {res}"))
        return fn

    # -- pow ------------------------------------------------------------------------------------
    def _pow(self, name, prec):
        """C99's pow (NumPy's): ``exp(y log|x|)`` with the sign of x for odd integer y, and its
        special cases (module docstring)."""
        s = _SPEC[prec]
        t, L = s["t"], lambda v: self._lit(v, s["t"])
        fn = self._fn(name, t, 2)
        x, y = "%a0", "%a1"
        ax = fn.call(t, f"llvm.fabs.{_sfx(t)}", [(t, x)])
        if prec == "float32":  # float64 inside: y log|x| up to ~100 keeps full f32 accuracy
            axd, yd = fn(f"fpext float {ax} to double"), fn(f"fpext float {y} to double")
            lg = self.call(fn, "log", D.float64, axd)
            td = self.call(fn, "exp", D.float64, fn(f"fmul double {yd}, {lg}"))
            mag = fn(f"fptrunc double {td} to float")
        else:
            lg = self.call(fn, "log", D.float64, ax)
            mag = self.call(fn, "exp", D.float64, fn(f"fmul double {y}, {lg}"))
        fl = fn.call(t, f"llvm.floor.{_sfx(t)}", [(t, y)])
        yint = fn(f"fcmp oeq {t} {fl}, {y}")
        half = fn.call(t, f"llvm.floor.{_sfx(t)}", [(t, fn(f"fmul {t} {y}, {L(0.5)}"))])
        even = fn(f"fcmp oeq {t} {fn(f'fmul {t} {half}, {L(2.0)}')}, {y}")
        yodd = fn(f"and i1 {yint}, {fn(f'xor i1 {even}, true')}")
        neg = fn(f"fcmp olt {t} {x}, {L(0.0)}")
        as_int = fn(f"bitcast {t} {x} to {s['i']}")
        signbit = fn(f"icmp slt {s['i']} {as_int}, 0")
        res = fn(f"select i1 {fn(f'and i1 {signbit}, {yodd}')}, {t} "
                 f"{fn(f'fneg {t} {mag}')}, {t} {mag}")  # (-0)^odd keeps the sign, as C
        # a finite negative x to a non-integer power is NaN; -inf to one is +inf or +0 (C99)
        finite_neg = fn(f"and i1 {neg}, {fn(f'fcmp one {t} {x}, {L(-math.inf)}')}")
        notint = fn(f"and i1 {finite_neg}, {fn(f'xor i1 {yint}, true')}")
        res = fn(f"select i1 {notint}, {t} {L(math.nan)}, {t} {res}")
        # 1 for y = +-0, for x = 1 (even to NaN) and for x = -1 to +-inf (C99)
        ay = fn.call(t, f"llvm.fabs.{_sfx(t)}", [(t, y)])
        minus_one_inf = fn(f"and i1 {fn(f'fcmp oeq {t} {x}, {L(-1.0)}')}, "
                           f"{fn(f'fcmp oeq {t} {ay}, {L(math.inf)}')}")
        one = fn(f"or i1 {fn(f'fcmp oeq {t} {y}, {L(0.0)}')}, "
                 f"{fn(f'fcmp oeq {t} {x}, {L(1.0)}')}")
        one = fn(f"or i1 {one}, {minus_one_inf}")
        fn.ret(fn(f"select i1 {one}, {t} {L(1.0)}, {t} {res}"))
        return fn

    # -- sin, cos ---------------------------------------------------------------------------
    def _sin(self, name, prec):
        return self._sincos(name, prec, 0)

    def _cos(self, name, prec):
        return self._sincos(name, prec, 1)

    def _sincos(self, name, prec, shift):
        """sin (shift 0) or cos (shift 1: cos x = sin(x + pi/2), one quadrant on), in double.

        With x = k pi/2 + r and q = (k + shift) mod 4: the result is sin r, cos r, -sin r,
        -cos r for q = 0, 1, 2, 3. q's two bits are read in floating point: q is odd where
        k' / 2 is not an integer, and the sign flips where floor(k' / 2) / 2 is not.
        """
        t = _SPEC[prec]["t"]
        fn = self._fn(name, t)
        d, L = "double", lambda v: self._lit(v, "double")
        x = "%a0" if t == d else fn(f"fpext float %a0 to {d}")
        xc = fn.call(d, "llvm.minnum.f64", [(d, x), (d, L(SINCOS_BOUND))])
        xc = fn.call(d, "llvm.maxnum.f64", [(d, xc), (d, L(-SINCOS_BOUND))])
        k = fn.call(d, "llvm.rint.f64", [(d, fn(f"fmul {d} {xc}, {L(2 / math.pi)}"))])
        r = xc
        for part in _pio2_parts(PIO2_BITS):
            r = fn(f"fsub {d} {r}, {fn(f'fmul {d} {k}, {L(part)}')}")
        u = fn(f"fmul {d} {r}, {r}")
        sin_r = fn(f"fmul {d} {r}, {self._poly(fn, d, u, sin_coefficients(SIN_TERMS))}")
        cos_r = self._poly(fn, d, u, cos_coefficients(COS_TERMS))
        kq = fn(f"fadd {d} {k}, {L(float(shift))}") if shift else k
        half = fn(f"fmul {d} {kq}, {L(0.5)}")
        whole = fn.call(d, "llvm.floor.f64", [(d, half)])
        odd = fn(f"fcmp une {d} {whole}, {half}")
        quarter = fn(f"fmul {d} {whole}, {L(0.5)}")
        flip = fn(f"fcmp une {d} {fn.call(d, 'llvm.floor.f64', [(d, quarter)])}, {quarter}")
        v = fn(f"select i1 {odd}, {d} {cos_r}, {d} {sin_r}")
        v = fn(f"select i1 {flip}, {d} {fn(f'fneg {d} {v}')}, {d} {v}")
        finite = fn(f"fcmp olt {d} {fn.call(d, 'llvm.fabs.f64', [(d, x)])}, {L(math.inf)}")
        v = fn(f"select i1 {finite}, {d} {v}, {d} {L(math.nan)}")
        if not shift:  # sin(-0) = -0 (the reduction gives +0)
            v = fn(f"select i1 {fn(f'fcmp oeq {d} {x}, {L(0.0)}')}, {d} {x}, {d} {v}")
        fn.ret(v if t == d else fn(f"fptrunc {d} {v} to float"))
        return fn


# The helpers ``call`` also writes on vectors (``lanes``).
VECTOR_OPS = ("exp", "log")


def _typed(t, lanes):
    """``t``, or a vector of ``lanes`` of it."""
    return f"<{lanes} x {t}>" if lanes else t


def _elem(t):
    """The element type of ``t`` (``t`` itself when scalar)."""
    return t.split(" x ")[1].rstrip(">") if t.startswith("<") else t


def _int_lit(v, it):
    return str(int(v)) if not it.startswith("<") else f"splat ({_elem(it)} {int(v)})"


def _sfx(t):
    """The intrinsics' type suffix: f32, f64, v16f32..."""
    elem = "f32" if _elem(t) == "float" else "f64"
    return elem if not t.startswith("<") else f"v{t[1:].split(' x ')[0]}{elem}"
