"""Division as TF1 has it: ``/`` on integers is truediv (int8/int16/uint8 -> float32,
int32/int64 -> float64); ``//``, ``%``, floordiv, floormod and mod follow NumPy (floor
rounding, the remainder takes the divisor's sign, integer x // 0 = x % 0 = 0), on the NumPy
reference, the optimized pipeline and the LLVM backend, bit for bit on a table of edge
values; gradients follow TF's rule."""
import itertools

import numpy as np
import pytest

import graphc as gc
from graphc.errors import DTypeError

RUNS = [("numpy", False), ("numpy", True), ("llvm", False), ("llvm", True)]
RUN_IDS = [f"{b}-{'opt' if o else 'ref'}" for b, o in RUNS]
INT_DTYPES = ["int8", "int16", "uint8", "int32", "int64"]


def _run(fetches, feeds, backend, optimize):
    with gc.Session(backend=backend, optimize=optimize) as sess:
        return sess.run(fetches, feeds)


def _int_pairs(dtype):
    """Every pair of a few values: negatives, zero divisors, MIN // -1 (NumPy wraps)."""
    info = np.iinfo(dtype)
    vals = sorted({0, 1, 2, 3, 7, info.max, info.min, info.max - 1}
                  | ({-1, -2, -3, -7} if info.min < 0 else set()))
    pairs = np.array(list(itertools.product(vals, vals)), dtype=np.int64)
    return pairs[:, 0].astype(dtype), pairs[:, 1].astype(dtype)


@pytest.mark.parametrize("backend,optimize", RUNS, ids=RUN_IDS)
@pytest.mark.parametrize("dtype", INT_DTYPES)
def test_integer_floordiv_and_mod_match_numpy(dtype, backend, optimize):
    xv, yv = _int_pairs(dtype)
    x, y = gc.placeholder(dtype, [len(xv)]), gc.placeholder(dtype, [len(yv)])
    got = _run([x // y, x % y, gc.floordiv(x, y), gc.math.floormod(x, y)], {x: xv, y: yv},
               backend, optimize)
    with np.errstate(all="ignore"):
        want = [np.floor_divide(xv, yv), np.remainder(xv, yv)] * 2
    for g, w in zip(got, want):
        assert g.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(g, w)
    assert np.all(got[0][yv == 0] == 0) and np.all(got[1][yv == 0] == 0)


FLOAT_VALUES = [7.5, -7.5, 1.0, -1.0, 0.0, -0.0, 5.0, -3.3, 0.1, 0.7, 2.0, -2.0, 1e4 + 0.5,
                1e-3, 3.0, np.inf, -np.inf, np.nan]


def _float_pairs(dtype):
    """Every pair of FLOAT_VALUES, then random ones with quotients up to about 1e6."""
    pairs = np.array(list(itertools.product(FLOAT_VALUES, FLOAT_VALUES)))
    rng = np.random.default_rng(7)
    x = rng.uniform(-1e4, 1e4, 3000) * 10.0 ** rng.integers(-4, 1, 3000)
    y = rng.choice([-1.0, 1.0], 3000) * 10.0 ** rng.uniform(-2, 2, 3000)
    return (np.concatenate([pairs[:, 0], x]).astype(dtype),
            np.concatenate([pairs[:, 1], y]).astype(dtype))


def _same_bits(got, want):
    """Equal values with equal signs of zero, NaN where NumPy has NaN."""
    return (np.isnan(got) & np.isnan(want)) | ((got == want) &
                                                (np.signbit(got) == np.signbit(want)))


@pytest.mark.parametrize("backend,optimize", RUNS, ids=RUN_IDS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_float_floordiv_and_mod_match_numpy_bit_for_bit(dtype, backend, optimize):
    """Signed zeros, zero and infinite divisors, infinite and NaN dividends, quotients that
    round to an integer (1 // 0.1 is 9 in NumPy, not floor(1 / 0.1) = 10), random pairs."""
    xv, yv = _float_pairs(dtype)
    x, y = gc.placeholder(dtype, [len(xv)]), gc.placeholder(dtype, [len(yv)])
    got = _run([x // y, x % y], {x: xv, y: yv}, backend, optimize)
    with np.errstate(all="ignore"):
        want = [np.floor_divide(xv, yv), np.remainder(xv, yv)]
    for g, w, what in zip(got, want, ("//", "%")):
        ok = _same_bits(g, w)
        assert ok.all(), f"{what}: " + ", ".join(
            f"{a!r} {what} {b!r} = {c!r}, NumPy {d!r}" for a, b, c, d in
            zip(xv[~ok], yv[~ok], g[~ok], w[~ok]))
    one = np.asarray(1.0, dtype)
    assert np.floor_divide(one, np.asarray(0.1, dtype)) == 9.0  # the case the table covers


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_llvm_beyond_the_exact_quotient_range(dtype):
    """|x / y| >= 2**24 (float32) or 2**53 (float64): the LLVM quotient is the rounded x / y
    (NumPy's too, here) and the remainder is 0 with the divisor's sign (NumPy's exact fmod
    would need a loop); the NumPy backend is NumPy itself."""
    xv = np.array([1e30, -1e30, 1e30], dtype)
    yv = np.array([3.0, 3.0, -7.0], dtype)
    x, y = gc.placeholder(dtype, [3]), gc.placeholder(dtype, [3])
    q, r = _run([x // y, x % y], {x: xv, y: yv}, "llvm", False)
    np.testing.assert_array_equal(q, np.floor_divide(xv, yv))
    assert np.all(r == 0) and np.array_equal(np.signbit(r), np.signbit(yv))


@pytest.mark.parametrize("backend,optimize", RUNS, ids=RUN_IDS)
@pytest.mark.parametrize("dtype,expected", [("int8", np.float32), ("int16", np.float32),
                                            ("uint8", np.float32), ("int32", np.float64),
                                            ("int64", np.float64)])
def test_slash_on_integers_is_truediv(dtype, expected, backend, optimize):
    xv = np.array([7, 0, 9, 100], dtype) if dtype == "uint8" else np.array([7, -7, 0, -9],
                                                                           dtype)
    yv = np.array([2, 3, 0, 4], dtype)
    x, y = gc.placeholder(dtype, [4]), gc.placeholder(dtype, [4])
    outs = [x / y, gc.divide(x, y), gc.truediv(x, y), x / 2, 7 / y]
    assert all(o.dtype.np == expected for o in outs)
    got = _run(outs, {x: xv, y: yv}, backend, optimize)
    with np.errstate(all="ignore"):
        wide = xv.astype(expected), yv.astype(expected)
        want = [wide[0] / wide[1]] * 3 + [wide[0] / expected(2), expected(7) / wide[1]]
    for g, w in zip(got, want):
        assert g.dtype == expected
        np.testing.assert_array_equal(g, w)


def test_reflected_operators_with_python_scalars():
    xi = gc.placeholder(gc.int32, [4])
    xf = gc.placeholder(gc.float32, [4])
    iv = np.array([2, -3, 4, -5], np.int32)
    fv = np.array([0.75, -1.5, 2.5, -4.0], np.float32)
    outs = [17 // xi, 17 % xi, -17 // xi, -17 % xi, 7.0 // xf, 7.0 % xf, xf % -2.0, xi % 3]
    for o in outs[:4] + outs[-1:]:
        assert o.dtype == gc.int32
    with gc.Session() as sess:
        got = sess.run(outs, {xi: iv, xf: fv})
    want = [17 // iv, 17 % iv, -17 // iv, -17 % iv, np.float32(7.0) // fv,
            np.float32(7.0) % fv, fv % np.float32(-2.0), iv % 3]
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def test_tf1_names():
    assert gc.mod is gc.floormod and gc.math.mod is gc.floormod
    assert gc.math.floordiv is gc.floordiv and gc.math.floormod is gc.floormod
    assert gc.math.truediv is gc.truediv is gc.divide
    a = gc.constant([7, -7])
    f = gc.constant([7.0, -7.0])
    with gc.Session() as sess:
        div_int, div_float, realdiv = sess.run([gc.div(a, 2), gc.div(f, 2.0),
                                                gc.realdiv(f, 2.0)])
    assert div_int.tolist() == [3, -4] and div_int.dtype == np.int32  # Python 2's //
    assert gc.div(7, 2).op_name == "floordiv" and gc.div(7.0, 2.0).op_name == "divide"
    assert div_float.tolist() == [3.5, -3.5] and realdiv.tolist() == [3.5, -3.5]
    with pytest.raises(DTypeError, match="expected a floating tensor"):
        gc.realdiv(a, 2)  # TF's RealDiv stays float-only


def test_mixed_integer_dtypes_are_refused():
    a, b = gc.placeholder(gc.int32, [2]), gc.placeholder(gc.int64, [2])
    for build in (lambda: a / b, lambda: a // b, lambda: a % b):
        with pytest.raises(DTypeError, match="different dtypes: int32 vs int64"):
            build()


def test_gradients_follow_tf():
    """d(x // y) = 0 (None by default, as TF1's FloorDiv has no gradient); d(x % y)/dx = 1,
    d(x % y)/dy = -floor(x / y); integer inputs have none."""
    x, y = gc.placeholder(gc.float64, [4]), gc.placeholder(gc.float64, [4])
    xv, yv = np.array([7.5, -7.5, 1.3, -0.2]), np.array([2.0, 2.0, -0.5, 3.0])
    assert gc.gradients(gc.reduce_sum(x // y), [x, y]) == [None, None]
    gq = gc.gradients(gc.reduce_sum(x // y), [x, y], unconnected_gradients="zero")
    gm = gc.gradients(gc.reduce_sum(x % y * 3.0), [x, y])
    for backend, optimize in RUNS:
        got = _run(gq + gm, {x: xv, y: yv}, backend, optimize)
        np.testing.assert_array_equal(got[0], 0.0)
        np.testing.assert_array_equal(got[1], 0.0)
        np.testing.assert_array_equal(got[2], 3.0)
        np.testing.assert_array_equal(got[3], -3.0 * np.floor_divide(xv, yv))


def test_constant_folding_keeps_numpy_semantics():
    a = gc.constant(np.array([7, -7, 5, 0], np.int32))
    b = gc.constant(np.array([2, 2, 0, -3], np.int32))
    outs = [a // b, a % b, a / b]
    with np.errstate(all="ignore"):
        want = [np.floor_divide(a.attrs["value"], b.attrs["value"]),
                np.remainder(a.attrs["value"], b.attrs["value"]),
                a.attrs["value"] / b.attrs["value"]]
    for backend, optimize in RUNS:
        for g, w in zip(_run(outs, {}, backend, optimize), want):
            np.testing.assert_array_equal(g, w)
