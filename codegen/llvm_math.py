"""Vectorizable exp, log, log1p, expm1, tanh and pow for the LLVM backend, written in IR.

LLVM's ``llvm.exp``/``llvm.log`` intrinsics lower to scalar libm calls: they need symbols the
object code cannot link to, and they stop loops from vectorizing. These functions are plain
branch-free IR instead (``alwaysinline``, so every fused loop that calls them still
vectorizes), accurate to a few ulp in float32 and float64:

- exp: Cody-Waite reduction ``x = n ln2 + r`` (|r| <= ln2/2), Taylor series of exp(r), and
  ``2^n`` applied in two exact halves so results down to the subnormals and up to overflow
  come out right;
- log: ``x = m 2^e`` with m in [sqrt(1/2), sqrt(2)), ``log m = 2 atanh(s)``, s = (m-1)/(m+1);
- log1p and expm1 by Kahan's correction of log(1+x) and exp(x)-1;
- tanh: its Taylor series near 0, ``1 - 2/(exp(2|x|)+1)`` elsewhere;
- pow: ``exp(y log|x|)`` (in float64 for float32 results) with C99's special cases.

Every series coefficient is derived here from exact rationals (factorials, Bernoulli numbers),
and the split constants of ln 2 from a 40-digit ``decimal`` value: nothing is a magic number.
Special values (NaN, +-inf, 0, negative arguments of log) follow NumPy.
"""
import decimal
import math
from fractions import Fraction

from ..ir import dtypes as D
from .llvm_ir import Function, float_literal

# Per precision: float type, int type of the same width, mantissa bits, exponent bias,
# Taylor degree of exp, atanh-series terms of log, tanh series terms, clamp range of exp.
_SPEC = {
    "float32": dict(t="float", i="i32", mbits=23, bias=127, exp_deg=7, log_terms=5,
                    tanh_terms=6, lo=-104.0, hi=89.0, sfx="f32"),
    "float64": dict(t="double", i="i64", mbits=52, bias=1023, exp_deg=13, log_terms=11,
                    tanh_terms=12, lo=-746.0, hi=710.0, sfx="f64"),
}
TANH_SERIES_BELOW = 0.3  # |x| below this uses the series (fast convergence: (0.6/pi)^2 a term)


def _ln2_parts(keep_bits):
    """ln 2 = hi + lo with ``hi`` holding ``keep_bits`` significant bits (so n*hi is exact)."""
    decimal.getcontext().prec = 40
    ln2 = decimal.Decimal(2).ln()
    m, e = math.frexp(float(ln2))
    hi = math.ldexp(math.floor(m * 2 ** keep_bits) / 2 ** keep_bits, e)
    lo = float(ln2 - decimal.Decimal(hi))
    return hi, lo


def _bernoulli(n):
    """B_0..B_n as Fractions (Akiyama-Tanigawa)."""
    a, out = [Fraction(0)] * (n + 1), []
    for m in range(n + 1):
        a[m] = Fraction(1, m + 1)
        for j in range(m, 0, -1):
            a[j - 1] = j * (a[j - 1] - a[j])
        out.append(a[0])
    return out


def exp_coefficients(degree):
    return [1.0 / math.factorial(k) for k in range(degree + 1)]


def log_coefficients(terms):
    """log(1+f) = s * sum_k c_k z^k with s = f/(2+f), z = s^2: c_k = 2/(2k+1)."""
    return [2.0 / (2 * k + 1) for k in range(terms)]


def tanh_coefficients(terms):
    """tanh x = x + x * sum_k c_k z^k (z = x^2), c_k the Taylor coefficient of x^(2k+1)."""
    b = _bernoulli(2 * terms + 2)
    coef = []
    for n in range(2, terms + 2):
        c = Fraction(2 ** (2 * n) * (2 ** (2 * n) - 1)) * b[2 * n] / math.factorial(2 * n)
        coef.append(float(c))
    return coef


def _dtype(name):
    return D.float32 if name == "float32" else D.float64


class MathLib:
    """Defines the math helpers in a ``Module`` on first use; ``call`` emits a call to one."""

    def __init__(self, module):
        self.module = module

    def call(self, fn, op, dtype, *args):
        """Emit ``op(args)`` (op in exp, log, log1p, expm1, tanh, pow) in ``fn``."""
        s = _SPEC[dtype.name]
        name = f"gc.{op}.{s['sfx']}"
        self.module.helper(name, lambda: getattr(self, "_" + op)(name, dtype.name))
        return fn(f"call {s['t']} @{name}(" + ", ".join(f"{s['t']} {a}" for a in args) + ")",
                  op)

    # -- building blocks ----------------------------------------------------------------------
    @staticmethod
    def _fn(name, t, nargs=1):
        params = [(t, f"%a{k}", "") for k in range(nargs)]
        return Function(name, params, linkage="internal", attrs="alwaysinline nounwind",
                        ret_type=t)

    @staticmethod
    def _poly(fn, t, x, coefs):
        """Horner's rule with fused multiply-adds: sum coefs[k] x^k."""
        dt = _dtype("float32" if t == "float" else "float64")
        acc = float_literal(coefs[-1], dt)
        for c in reversed(coefs[:-1]):
            acc = fn.call(t, f"llvm.fmuladd.{_sfx(t)}", [(t, acc), (t, x),
                                                        (t, float_literal(c, dt))], "h")
        return acc

    @staticmethod
    def _lit(v, t):
        return float_literal(v, _dtype("float32" if t == "float" else "float64"))

    # -- exp ------------------------------------------------------------------------------------
    def _exp(self, name, prec):
        s, fn = _SPEC[prec], None
        t, it, L = s["t"], s["i"], lambda v: self._lit(v, s["t"])
        fn = self._fn(name, t)
        x = "%a0"
        lo = fn(f"fcmp olt {t} {x}, {L(s['lo'])}")
        xc = fn(f"select i1 {lo}, {t} {L(s['lo'])}, {t} {x}")
        hi = fn(f"fcmp ogt {t} {xc}, {L(s['hi'])}")
        xc = fn(f"select i1 {hi}, {t} {L(s['hi'])}, {t} {xc}")
        ln2hi, ln2lo = _ln2_parts(12 if prec == "float32" else 32)
        nf = fn.call(t, f"llvm.rint.{_sfx(t)}", [(t, fn(f"fmul {t} {xc}, "
                                                        f"{L(1 / math.log(2))}"))])
        r = fn(f"fsub {t} {xc}, {fn(f'fmul {t} {nf}, {L(ln2hi)}')}")
        r = fn(f"fsub {t} {r}, {fn(f'fmul {t} {nf}, {L(ln2lo)}')}")
        p = self._poly(fn, t, r, exp_coefficients(s["exp_deg"]))
        n = fn.call(it, f"llvm.fptosi.sat.{it}.{_sfx(t)}", [(t, nf)])
        n1 = fn(f"ashr {it} {n}, 1")
        n2 = fn(f"sub {it} {n}, {n1}")
        res = p
        for part in (n1, n2):
            biased = fn(f"add {it} {part}, {s['bias']}")
            shifted = fn(f"shl {it} {biased}, {s['mbits']}")
            scale = fn(f"bitcast {it} {shifted} to {t}")
            res = fn(f"fmul {t} {res}, {scale}")
        nan = fn(f"fcmp uno {t} {x}, {x}")
        fn.ret(fn(f"select i1 {nan}, {t} {x}, {t} {res}"))
        return fn

    # -- log ------------------------------------------------------------------------------------
    def _log(self, name, prec):
        s = _SPEC[prec]
        t, it, L = s["t"], s["i"], lambda v: self._lit(v, s["t"])
        fn = self._fn(name, t)
        x, mb = "%a0", s["mbits"]
        smallest_normal = L(2.0 ** (1 - s["bias"]))
        tiny = fn(f"fcmp olt {t} {x}, {smallest_normal}")
        xs = fn(f"select i1 {tiny}, {t} {fn(f'fmul {t} {x}, {L(2.0 ** mb)}')}, {t} {x}")
        bits = fn(f"bitcast {t} {xs} to {it}")
        e = fn(f"sub {it} {fn(f'lshr {it} {bits}, {mb}')}, {s['bias']}")
        e = fn(f"sub {it} {e}, {fn(f'select i1 {tiny}, {it} {mb}, {it} 0')}")
        mant = fn(f"and {it} {bits}, {(1 << mb) - 1}")
        one_bits = s["bias"] << mb
        m = fn(f"bitcast {it} {fn(f'or {it} {mant}, {one_bits}')} to {t}")
        big = fn(f"fcmp ogt {t} {m}, {L(math.sqrt(2.0))}")
        m = fn(f"select i1 {big}, {t} {fn(f'fmul {t} {m}, {L(0.5)}')}, {t} {m}")
        e = fn(f"add {it} {e}, {fn(f'zext i1 {big} to {it}')}")
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
        res = fn(f"select i1 {bad}, {t} {L(math.nan)}, {t} {res}")
        res = fn(f"select i1 {fn(f'fcmp oeq {t} {x}, {L(0.0)}')}, {t} {L(-math.inf)}, "
                 f"{t} {res}")
        res = fn(f"select i1 {fn(f'fcmp oeq {t} {x}, {L(math.inf)}')}, {t} {L(math.inf)}, "
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

    def _expm1(self, name, prec):
        s = _SPEC[prec]
        t, L = s["t"], lambda v: self._lit(v, s["t"])
        fn = self._fn(name, t)
        x = "%a0"
        u = self.call(fn, "exp", _dtype(prec), x)
        d = fn(f"fsub {t} {u}, {L(1.0)}")
        lg = self.call(fn, "log", _dtype(prec), u)
        res = fn(f"fmul {t} {d}, {fn(f'fdiv {t} {x}, {lg}')}")
        res = fn(f"select i1 {fn(f'fcmp oeq {t} {d}, {L(-1.0)}')}, {t} {L(-1.0)}, {t} {res}")
        res = fn(f"select i1 {fn(f'fcmp oeq {t} {d}, {L(0.0)}')}, {t} {x}, {t} {res}")
        res = fn(f"select i1 {fn(f'fcmp oeq {t} {u}, {L(math.inf)}')}, {t} {u}, {t} {res}")
        fn.ret(res)
        return fn

    # -- tanh -----------------------------------------------------------------------------------
    def _tanh(self, name, prec):
        s = _SPEC[prec]
        t, L = s["t"], lambda v: self._lit(v, s["t"])
        fn = self._fn(name, t)
        x = "%a0"
        a = fn.call(t, f"llvm.fabs.{_sfx(t)}", [(t, x)])
        z = fn(f"fmul {t} {x}, {x}")
        series = self._poly(fn, t, z, tanh_coefficients(s["tanh_terms"]))
        q = fn(f"fmul {t} {z}, {series}")
        series = fn.call(t, f"llvm.fmuladd.{_sfx(t)}", [(t, x), (t, q), (t, x)])
        e = self.call(fn, "exp", _dtype(prec), fn(f"fadd {t} {a}, {a}"))
        ratio = fn(f"fdiv {t} {L(2.0)}, {fn(f'fadd {t} {e}, {L(1.0)}')}")
        far = fn(f"fsub {t} {L(1.0)}, {ratio}")
        far = fn.call(t, f"llvm.copysign.{_sfx(t)}", [(t, far), (t, x)])
        near = fn(f"fcmp olt {t} {a}, {L(TANH_SERIES_BELOW)}")
        fn.ret(fn(f"select i1 {near}, {t} {series}, {t} {far}"))
        return fn

    # -- pow ------------------------------------------------------------------------------------
    def _pow(self, name, prec):
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
        res = fn(f"select i1 {fn(f'and i1 {neg}, {yodd}')}, {t} "
                 f"{fn(f'fneg {t} {mag}')}, {t} {mag}")
        notint = fn(f"and i1 {neg}, {fn(f'xor i1 {yint}, true')}")
        res = fn(f"select i1 {notint}, {t} {L(math.nan)}, {t} {res}")
        one = fn(f"or i1 {fn(f'fcmp oeq {t} {y}, {L(0.0)}')}, "
                 f"{fn(f'fcmp oeq {t} {x}, {L(1.0)}')}")
        fn.ret(fn(f"select i1 {one}, {t} {L(1.0)}, {t} {res}"))
        return fn


def _sfx(t):
    return "f32" if t == "float" else "f64"
