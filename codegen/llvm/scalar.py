"""Scalar expressions (``ir.scalar.Expr``) -> LLVM instructions, one element at a time.

Every elementwise op's formula and every fused body is rendered here, inside the loops the
kernel builders write. One table maps each primitive of ``ir.scalar.PRIMS`` to its LLVM form
for float, signed/unsigned integer and bool operands. Semantics follow NumPy: ``max``/``min``
propagate NaN (``llvm.maximum``), ``!=`` is true for NaN, float->bool is ``x != 0`` (so NaN
is true), float->int casts saturate instead of being undefined. Transcendentals come from
``llvm.math`` (vectorizable IR, no libm calls).

Float32 ``a / (sqrt(b) + c)`` with a constant c > 0 (Adam's step) is rendered from
refined estimates instead of sqrt and fdiv (``llvm.math.MathLib.div_sqrt_add``): both
share one slow divider unit, which bounded Adam's loop. ``GRAPHC_EXACT_DIVIDE=1`` opts out.

Floor division and modulo (``floordiv``, ``mod``) give NumPy's results without libm: integer
divisors 0 and -1 are guarded (no undefined ``sdiv``), float ones follow ``npy_divmod`` from
an fmod built of an exact (Dekker) product.

Example:
    >>> value = render_expr(fn, math, body, ["%v1", "%v2"])   # SSA name of the result
"""
import math
import os

import numpy as np

from graphc.errors import CompileError

from ...ir import dtypes as D
from .ir import literal, val_type

_FCMP = {"eq": "oeq", "ne": "une", "lt": "olt", "le": "ole", "gt": "ogt", "ge": "oge"}
_ICMP = {"eq": "eq", "ne": "ne", "lt": "slt", "le": "sle", "gt": "sgt", "ge": "sge"}
_UCMP = {"eq": "eq", "ne": "ne", "lt": "ult", "le": "ule", "gt": "ugt", "ge": "uge"}
_FARITH = {"add": "fadd", "sub": "fsub", "mul": "fmul", "div": "fdiv"}
_IARITH = {"add": "add", "sub": "sub", "mul": "mul"}


def _sfx(dtype):
    return {"float32": "f32", "float64": "f64"}.get(dtype.name) or val_type(dtype)


def _unsigned(dtype):
    return dtype.name == "uint8" or dtype.is_bool


def _float_op(fn, math_lib, e, a):
    t, sfx, op = val_type(e.dtype), _sfx(e.dtype), e.op
    if op in _FARITH:
        return fn(f"{_FARITH[op]} {t} {a[0]}, {a[1]}")
    if op == "neg":
        return fn(f"fneg {t} {a[0]}")
    if op in ("max", "min"):  # NaN-propagating, as np.maximum / np.minimum
        name = "maximum" if op == "max" else "minimum"
        return fn.call(t, f"llvm.{name}.{sfx}", [(t, a[0]), (t, a[1])])
    if op in ("sqrt", "floor"):
        return fn.call(t, f"llvm.{op}.{sfx}", [(t, a[0])])
    if op == "abs":
        return fn.call(t, f"llvm.fabs.{sfx}", [(t, a[0])])
    if op == "sign":
        one, zero = literal(1.0, e.dtype), literal(0.0, e.dtype)
        pos = fn(f"select i1 {fn(f'fcmp ogt {t} {a[0]}, {zero}')}, {t} {one}, {t} {a[0]}")
        return fn(f"select i1 {fn(f'fcmp olt {t} {a[0]}, {zero}')}, {t} "
                  f"{literal(-1.0, e.dtype)}, {t} {pos}")
    if op in ("exp", "log", "log1p", "expm1", "tanh", "pow", "sin", "cos"):
        return math_lib.call(fn, op, e.dtype, *a)
    return None


def _int_op(fn, e, a):
    t, op, uns = val_type(e.dtype), e.op, _unsigned(e.dtype)
    if op in _IARITH:
        return fn(f"{_IARITH[op]} {t} {a[0]}, {a[1]}")
    if op == "neg":
        return fn(f"sub {t} 0, {a[0]}")
    if op in ("max", "min"):
        name = ("u" if uns else "s") + op
        return fn.call(t, f"llvm.{name}.{t}", [(t, a[0]), (t, a[1])])
    if op == "abs":
        return a[0] if uns else fn.call(t, f"llvm.abs.{t}", [(t, a[0]), ("i1", "false")])
    if op == "sign":
        pos = fn(f"zext i1 {fn(f'icmp ne {t} {a[0]}, 0')} to {t}")
        if uns:
            return pos
        return fn(f"select i1 {fn(f'icmp slt {t} {a[0]}, 0')}, {t} -1, {t} {pos}")
    return None


def _compare(fn, e, a):
    src = e.args[0].dtype
    t = val_type(src)
    if e.op == "isfinite":
        if not src.is_floating:
            return "true"
        absx = fn.call(t, f"llvm.fabs.{_sfx(src)}", [(t, a[0])])
        return fn(f"fcmp olt {t} {absx}, {literal(math.inf, src)}")
    if e.op in ("and", "or"):
        return fn(f"{e.op} i1 {a[0]}, {a[1]}")
    if e.op == "not":
        return fn(f"xor i1 {a[0]}, true")
    if src.is_floating:
        return fn(f"fcmp {_FCMP[e.op]} {t} {a[0]}, {a[1]}")
    table = _UCMP if _unsigned(src) else _ICMP
    return fn(f"icmp {table[e.op]} {t} {a[0]}, {a[1]}")


def _cast(fn, value, src, dst):
    """Convert ``value`` from dtype ``src`` to ``dst`` with NumPy's ``astype`` semantics."""
    s, d = val_type(src), val_type(dst)
    if src == dst or s == d and src.is_bool == dst.is_bool and \
            _unsigned(src) == _unsigned(dst):
        return value
    if dst.is_bool:
        if src.is_floating:
            return fn(f"fcmp une {s} {value}, {literal(0.0, src)}")
        return fn(f"icmp ne {s} {value}, 0")
    if src.is_floating and dst.is_floating:
        op = "fpext" if src.itemsize < dst.itemsize else "fptrunc"
        return fn(f"{op} {s} {value} to {d}")
    if src.is_floating:  # saturating: NumPy's out-of-range result is unspecified, never UB
        kind = "fptoui" if _unsigned(dst) else "fptosi"
        return fn.call(d, f"llvm.{kind}.sat.{d}.{_sfx(src)}", [(s, value)])
    if dst.is_floating:
        return fn(f"{'uitofp' if _unsigned(src) else 'sitofp'} {s} {value} to {d}")
    bits_s, bits_d = int(s[1:]), int(d[1:])
    if bits_s == bits_d:
        return value
    if bits_s > bits_d:
        return fn(f"trunc {s} {value} to {d}")
    return fn(f"{'zext' if _unsigned(src) else 'sext'} {s} {value} to {d}")


def _int_divmod(fn, e, a):
    """``x // y`` or ``x % y`` on integers as NumPy gives them: rounded to -inf (the
    remainder takes the divisor's sign), 0 for a zero divisor and ``MIN // -1 = MIN``
    (wrapped), so the divide never meets LLVM's undefined cases (by 0, MIN / -1)."""
    t, x, y, floor = val_type(e.dtype), a[0], a[1], e.op == "floordiv"
    zero = fn(f"icmp eq {t} {y}, 0")
    if _unsigned(e.dtype):
        safe = fn(f"select i1 {zero}, {t} 1, {t} {y}")
        out = fn(f"{'udiv' if floor else 'urem'} {t} {x}, {safe}")
        return fn(f"select i1 {zero}, {t} 0, {t} {out}")
    minus1 = fn(f"icmp eq {t} {y}, -1")
    safe = fn(f"select i1 {fn(f'or i1 {zero}, {minus1}')}, {t} 1, {t} {y}")
    r = fn(f"srem {t} {x}, {safe}")  # truncated; 0 when y is 0 or -1
    differ = fn(f"icmp slt {t} {fn(f'xor {t} {r}, {y}')}, 0")
    adjust = fn(f"and i1 {fn(f'icmp ne {t} {r}, 0')}, {differ}")
    if not floor:
        return fn(f"select i1 {adjust}, {t} {fn(f'add {t} {r}, {y}')}, {t} {r}")
    q = fn(f"sub {t} {fn(f'sdiv {t} {x}, {safe}')}, {fn(f'zext i1 {adjust} to {t}')}")
    q = fn(f"select i1 {minus1}, {t} {fn(f'sub {t} 0, {x}')}, {t} {q}")
    return fn(f"select i1 {zero}, {t} 0, {t} {q}")


def _two_product(fn, dtype, u, v):
    """(p, err) with ``p + err == u * v`` exactly (Dekker's product with Veltkamp's split:
    plain multiplies and adds, so no FMA unit and no libm call is needed)."""
    t = val_type(dtype)
    split = literal(2.0 ** (27 if dtype.itemsize == 8 else 12) + 1.0, dtype)

    def halves(w):
        c = fn(f"fmul {t} {split}, {w}")
        hi = fn(f"fsub {t} {c}, {fn(f'fsub {t} {c}, {w}')}")
        return hi, fn(f"fsub {t} {w}, {hi}")
    (uh, ul), (vh, vl) = halves(u), halves(v)
    p = fn(f"fmul {t} {u}, {v}")
    err = fn(f"fsub {t} {fn(f'fmul {t} {uh}, {vh}')}, {p}")
    err = fn(f"fadd {t} {err}, {fn(f'fmul {t} {uh}, {vl}')}")
    err = fn(f"fadd {t} {err}, {fn(f'fmul {t} {ul}, {vh}')}")
    return p, fn(f"fadd {t} {err}, {fn(f'fmul {t} {ul}, {vl}')}")


def _sign_flipped(fn, dtype, m, ref):
    """i1: ``m`` is nonzero (or NaN) and on the other side of 0 than ``ref``."""
    t, zero = val_type(dtype), literal(0.0, dtype)
    differ = fn(f"xor i1 {fn(f'fcmp olt {t} {m}, {zero}')}, {fn(f'fcmp olt {t} {ref}, {zero}')}")
    return fn(f"and i1 {fn(f'fcmp une {t} {m}, {zero}')}, {differ}")


def _fmod(fn, dtype, x, y):
    """C's ``fmod(x, y)`` (sign of x, |result| < |y|) without libm, exact while
    ``|x / y| < 2**mantissa``: ``x - trunc(x / y) y`` with the product split exactly, then
    one step back inside (-|y|, |y|). Returns (fmod, rounded x / y, whether that quotient
    is beyond the exact range: infinite, NaN or too large; the fmod is then meaningless).
    Huge operands are scaled down by a power of two first, so the split cannot overflow."""
    t, sfx, L = val_type(dtype), _sfx(dtype), lambda v: literal(v, dtype)
    bits, split_bits, top = (53, 27, 1023) if dtype.itemsize == 8 else (24, 12, 127)
    absf = lambda w: fn.call(t, f"llvm.fabs.{sfx}", [(t, w)])  # noqa: E731
    huge = fn(f"fcmp ogt {t} {absf(y)}, {L(2.0 ** (top - split_bits - 2))}")
    scale = fn(f"select i1 {huge}, {t} {L(2.0 ** -(split_bits + 2))}, {t} {L(1.0)}")
    xs, ys = fn(f"fmul {t} {x}, {scale}"), fn(f"fmul {t} {y}, {scale}")
    quot = fn(f"fdiv {t} {x}, {y}")
    beyond = fn(f"fcmp uge {t} {absf(quot)}, {L(2.0 ** bits)}")
    whole = fn.call(t, f"llvm.trunc.{sfx}", [(t, quot)])
    whole = fn(f"select i1 {beyond}, {t} {L(0.0)}, {t} {whole}")
    p, err = _two_product(fn, dtype, whole, ys)
    m = fn(f"fsub {t} {fn(f'fsub {t} {xs}, {p}')}, {err}")
    step = fn.call(t, f"llvm.copysign.{sfx}", [(t, ys), (t, xs)])  # |y| with x's sign
    over = _sign_flipped(fn, dtype, m, step)
    under = fn(f"fcmp oge {t} {absf(m)}, {absf(ys)}")
    inside = fn(f"select i1 {under}, {t} {fn(f'fsub {t} {m}, {step}')}, {t} {m}")
    m = fn(f"select i1 {over}, {t} {fn(f'fadd {t} {m}, {step}')}, {t} {inside}")
    m = fn(f"fdiv {t} {m}, {scale}")  # a power of two: exact
    y_inf = fn(f"fcmp oeq {t} {absf(y)}, {L(math.inf)}")
    return fn(f"select i1 {y_inf}, {t} {x}, {t} {m}"), quot, beyond


def _float_divmod(fn, e, a):
    """``x // y`` or ``x % y`` on floats with NumPy's algorithm (``npy_divmod``): from the
    exact fmod, the remainder moves to the divisor's sign and the quotient
    ``(x - mod) / y`` is snapped to an integer; ``x // 0`` is ``x / 0``, ``x % 0`` NaN.
    Beyond the exact range (|x / y| >= 2**24 in float32, 2**53 in float64) the quotient is
    the rounded ``x / y`` and the remainder 0 with the divisor's sign."""
    t, sfx, x, y, dt = val_type(e.dtype), _sfx(e.dtype), a[0], a[1], e.dtype
    zero, one, nan = literal(0.0, dt), literal(1.0, dt), literal(math.nan, dt)
    sign0 = lambda w: fn.call(t, f"llvm.copysign.{sfx}", [(t, zero), (t, w)])  # noqa: E731
    mod, quot, beyond = _fmod(fn, dt, x, y)
    x_finite = fn(f"fcmp olt {t} {fn.call(t, f'llvm.fabs.{sfx}', [(t, x)])}, "
                  f"{literal(math.inf, dt)}")
    y_zero = fn(f"fcmp oeq {t} {y}, {zero}")
    nonzero = fn(f"fcmp une {t} {mod}, {zero}")
    shift = _sign_flipped(fn, dt, mod, y)
    if e.op == "mod":
        moved = fn(f"select i1 {shift}, {t} {fn(f'fadd {t} {mod}, {y}')}, {t} {mod}")
        out = fn(f"select i1 {nonzero}, {t} {moved}, {t} {sign0(y)}")
        usable = fn(f"and i1 {x_finite}, {fn(f'fcmp ord {t} {y}, {y}')}")
        far = fn(f"select i1 {usable}, {t} {sign0(y)}, {t} {nan}")
        out = fn(f"select i1 {beyond}, {t} {far}, {t} {out}")
        return fn(f"select i1 {y_zero}, {t} {nan}, {t} {out}")
    div = fn(f"fdiv {t} {fn(f'fsub {t} {x}, {mod}')}, {y}")
    div = fn(f"select i1 {shift}, {t} {fn(f'fsub {t} {div}, {one}')}, {t} {div}")
    low = fn.call(t, f"llvm.floor.{sfx}", [(t, div)])
    up = fn(f"fcmp ogt {t} {fn(f'fsub {t} {div}, {low}')}, {literal(0.5, dt)}")
    snapped = fn(f"select i1 {up}, {t} {fn(f'fadd {t} {low}, {one}')}, {t} {low}")
    out = fn(f"select i1 {fn(f'fcmp une {t} {div}, {zero}')}, {t} {snapped}, "
             f"{t} {sign0(quot)}")
    far = fn(f"select i1 {x_finite}, {t} {quot}, {t} {nan}")
    out = fn(f"select i1 {beyond}, {t} {far}, {t} {out}")
    return fn(f"select i1 {y_zero}, {t} {quot}, {t} {out}")


def render_op(fn, math_lib, e, a):
    """One primitive ``e`` applied to rendered operands ``a``; returns the SSA value."""
    if e.op in ("floordiv", "mod"):
        return (_float_divmod if e.dtype.is_floating else _int_divmod)(fn, e, a)
    if e.op == "cast":
        return _cast(fn, a[0], e.args[0].dtype, e.dtype)
    if e.op == "where":
        return fn(f"select i1 {a[0]}, {val_type(e.dtype)} {a[1]}, {val_type(e.dtype)} {a[2]}")
    if e.dtype.is_bool and e.op not in ("max", "min"):
        if e.op in _FCMP or e.op in ("and", "or", "not", "isfinite"):
            return _compare(fn, e, a)
    if e.dtype.is_floating:
        out = _float_op(fn, math_lib, e, a)
    else:
        out = _int_op(fn, e, a)
    if out is None:
        raise CompileError(f"the LLVM backend has no {e.dtype.name} form of scalar "
                           f"primitive '{e.op}'",
                           hint="add it to codegen/llvm/scalar.py")
    return out


def _pow_special(fn, math_lib, e, a):
    """x ** c for a constant c in {0, 1, 2, 3, -1, 0.5}: the exact (NumPy-fast-path) forms."""
    c = e.args[1]
    if c.op != "const" or not e.dtype.is_floating:
        return None
    t, x, v = val_type(e.dtype), a[0], c.value
    one = literal(1.0, e.dtype)
    if v == 1.0:
        return x
    if v == 0.0:
        return one
    if v == 2.0:
        return fn(f"fmul {t} {x}, {x}")
    if v == 3.0:
        return fn(f"fmul {t} {fn(f'fmul {t} {x}, {x}')}, {x}")
    if v == -1.0:
        return fn(f"fdiv {t} {one}, {x}")
    if v == 0.5:
        return fn.call(t, f"llvm.sqrt.{_sfx(e.dtype)}", [(t, x)])
    return None


def _sqrt_plus_const(e):
    """For float32 ``a / (sqrt(b) + c)`` with a constant c that ``div_sqrt_add`` takes (a
    positive normal number with a finite reciprocal): (b's Expr, c); else None."""
    if e.op != "div" or e.dtype.name != "float32" or e.args[1].op != "add" \
            or os.environ.get("GRAPHC_EXACT_DIVIDE", "") not in ("", "0"):
        return None
    for root, c in (e.args[1].args, e.args[1].args[::-1]):
        if root.op == "sqrt" and c.op == "const":
            v = float(np.float32(c.value))
            if np.finfo(np.float32).tiny <= v < np.inf:
                return root.args[0], v
    return None


def render_expr(fn, math_lib, body, args):
    """Render ``body`` with ``arg(i)`` bound to the SSA values ``args[i]``.

    Args:
        fn: the ``llvm_ir.Function`` being written (instructions go to its current block).
        math_lib: the module's ``llvm.math.MathLib``.
        body: an ``ir.scalar.Expr``.
        args: SSA names (register types, bools as i1), indexed by ``arg`` number.
    Returns:
        The SSA name (or literal) of the body's value.
    Raises:
        CompileError: a primitive without an LLVM form.
    """
    memo = {}
    for e in body.walk():
        if e.op == "arg":
            memo[id(e)] = args[e.value]
        elif e.op == "const":
            memo[id(e)] = literal(e.value, e.dtype)
        else:
            a = [memo[id(x)] for x in e.args]
            out = _pow_special(fn, math_lib, e, a) if e.op == "pow" else None
            fast = _sqrt_plus_const(e) if e.op == "div" and math_lib.estimates else None
            if fast is not None:  # the exact sqrt rendered before is dead code LLVM drops
                out = math_lib.div_sqrt_add(fn, a[0], memo[id(fast[0])], fast[1])
            memo[id(e)] = out if out is not None else render_op(fn, math_lib, e, a)
    return memo[id(body)]


def bool_dtype():
    return D.bool_
