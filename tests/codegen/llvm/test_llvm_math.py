"""Accuracy of the LLVM backend's own transcendentals (written in IR, no libm) against
float64 NumPy: a few ulp over wide ranges, tiny arguments included, and NumPy's special values
(NaN, +-inf, 0, -0, log of negatives, overflow and underflow).

pow is exp(y log|x|): in float32 it is computed in float64 (a few ulp), in float64 its error
grows with |y ln x| (about that many ulp, as any pow without extended precision).

Native steps flush subnormals to zero (FTZ/DAZ, as TensorFlow's CPU kernels do), so the
reference reads subnormal inputs as zero and a subnormal result may come back as zero."""
import numpy as np
import pytest

import graphc as gc

MAX_ULP = 4.0


def _grid(dtype):
    big = 80.0 if dtype == np.float32 else 700.0
    return np.concatenate([
        np.linspace(-big, big, 40001), np.logspace(-30, 2, 800), -np.logspace(-30, 2, 800),
        [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45 if dtype == np.float32 else 5e-324],
    ]).astype(dtype)


CASES = {
    "exp": (gc.exp, np.exp, lambda x: x),
    "log": (gc.log, np.log, np.abs),
    "log[negative]": (gc.log, np.log, lambda x: x),
    "log1p": (gc.log1p, np.log1p, lambda x: np.maximum(x, -1.0)),
    "tanh": (gc.tanh, np.tanh, lambda x: x),
    "sigmoid": (gc.sigmoid, lambda x: 1.0 / (1.0 + np.exp(-x)), lambda x: x),
    "softplus": (gc.nn.softplus, lambda x: np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x))),
                 lambda x: x),
    "sqrt": (gc.sqrt, np.sqrt, np.abs),
    # Cody-Waite reduction with exact products up to |x| ~ 3e6 (the grid reaches 700)
    "sin": (gc.sin, np.sin, lambda x: x),
    "cos": (gc.cos, np.cos, lambda x: x),
    # the exponent is a constant of x's dtype: float32(1.7) is not 1.7
    "pow[x^1.7]": (lambda x: gc.pow(x, 1.7), lambda x, dt: np.power(x, float(dt(1.7))),
                   lambda x: np.clip(np.abs(x), 0, 1e15)),
    "pow[x^-3]": (lambda x: gc.pow(x, -3.0), lambda x: np.power(x, -3.0),
                  lambda x: np.clip(x, -1e10, 1e10)),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", list(CASES))
def test_transcendental_accuracy_and_special_values(name, dtype):
    build, ref, domain = CASES[name]
    tiny = np.finfo(dtype).tiny
    with np.errstate(all="ignore"):
        xs = domain(_grid(dtype)).astype(dtype)
        x64 = np.where(np.abs(xs) < tiny, np.copysign(0.0, xs), xs).astype(np.float64)  # DAZ
        want = ref(x64, dtype) if name == "pow[x^1.7]" else ref(x64)
    x = gc.placeholder(dtype, [len(xs)], name="x")
    with gc.Session(backend="llvm", optimize=False) as sess:
        got = sess.run(build(x), {x: xs}).astype(np.float64)
    with np.errstate(over="ignore"):
        rounded = want.astype(dtype).astype(np.float64)  # a correctly rounded result
    rounded = np.where(np.abs(rounded) < tiny, np.copysign(0.0, rounded), rounded)  # FTZ
    special = ~np.isfinite(rounded) | (rounded == 0)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(rounded), err_msg=f"{name}: NaN")
    inf = ~np.isfinite(rounded) & ~np.isnan(rounded)
    np.testing.assert_array_equal(got[inf], rounded[inf], err_msg=f"{name}: inf")
    zero = rounded == 0  # zero, or a subnormal passed through untouched
    assert np.all(np.abs(got[zero]) < tiny), f"{name}: zero"
    normal = ~special & (np.abs(rounded) >= tiny)
    ulp = np.abs(got[normal] - want[normal]) / (np.abs(want[normal]) * np.finfo(dtype).eps)
    bound = MAX_ULP
    if name.startswith("pow") and dtype == np.float64:
        bound = MAX_ULP + np.abs(np.log(np.abs(want[normal])))  # |y ln x| = |ln result|
    assert np.all(ulp <= bound), f"{name}: {ulp.max():.2f} ulp at " \
        f"x={xs[normal][np.argmax(ulp - bound)]!r}"


def test_subnormals_flush_inside_the_step_only():
    """The step runs with FTZ/DAZ and gives the caller's thread its mode back."""
    x = gc.placeholder(gc.float32, [2], name="x")
    y = x * 0.5
    tiny = np.finfo(np.float32).tiny
    with gc.Session(backend="llvm", optimize=False) as sess:
        got = sess.run(y, {x: np.array([tiny, 1.0], np.float32)})
    assert got[0] == 0.0 and got[1] == 0.5
    assert np.float32(tiny) * np.float32(0.5) > 0, "NumPy after the step still has subnormals"
