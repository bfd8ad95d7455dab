"""Every op of the op table fed special values (inf, -inf, NaN, 0, -0, 1) on the LLVM backend:
NaN and inf land where the unoptimized NumPy reference puts them, with the same sign, and
the finite values agree (a float cast to an integer is compared where its value is defined).

Each row runs twice per float dtype. The float inputs of one shape take their specials at the
same positions, walking through every pair of specials (the first input's value, the
second's), so that interactions between inputs (a -inf logit under a zero label, 0 * inf,
inf - inf) are all met; the other positions keep the row's sampled values. Inputs a row fixes
(labels, indices) are left as they are."""
import itertools
import zlib

import numpy as np
import pytest

import graphc as gc

from tests.support import optable
from tests.support.checks import run

SPECIALS = (np.inf, -np.inf, np.nan, 0.0, -0.0, 1.0)
PAIRS = list(itertools.product(SPECIALS, repeat=2))
ROWS = optable.rows(lambda r: any(d.startswith("float") for d in r.dtypes))
TRIALS = 2


def _with_specials(r, values, trial):
    """``values`` with specials at the positions of a seeded mask, paired across the float
    inputs of each shape (module docstring)."""
    out = [np.array(v) for v in values]
    floats = [i for i, (a, v) in enumerate(zip(r.args, out))
              if v.dtype.kind == "f" and v.size and a.value is None]
    rng = np.random.default_rng(zlib.crc32(r.name.encode()) + trial)
    for shape in {out[i].shape for i in floats}:
        same = [i for i in floats if out[i].shape == shape]
        size = int(np.prod(shape, dtype=np.int64))
        at = np.flatnonzero(rng.random(size) < 0.6)
        for k, flat in enumerate(at):
            pair = PAIRS[(k + trial * len(at)) % len(PAIRS)]
            for j, i in enumerate(same):
                out[i].reshape(-1)[flat] = pair[j % 2]
    return out


def _defined(r, feeds, ref):
    """Where the reference's value is defined: a float cast to an integer of a non-finite or
    out-of-range value has none (NumPy's is the CPU's; LLVM's cast saturates)."""
    if r.op != "cast" or ref.dtype.kind not in "iu":
        return np.ones(ref.shape, bool)
    (x,) = feeds.values()
    info = np.iinfo(ref.dtype)
    return np.isfinite(x) & (x >= info.min) & (x <= info.max)


def _same_kinds(ref, got, dtype, what, defined):
    ref, got = np.asarray(ref), np.asarray(got)
    assert ref.shape == got.shape, what
    if ref.dtype.kind != "f":
        np.testing.assert_array_equal(got[defined], ref[defined], err_msg=what)
        return
    for name, test in (("NaN", np.isnan), ("inf", np.isinf)):
        where = test(ref) != test(got)
        assert not where.any(), (f"{what}: {name} at {np.argwhere(where)[:3].tolist()} "
                                 f"in one only (reference {ref[where][:3]}, llvm "
                                 f"{got[where][:3]})")
    inf = np.isinf(ref)
    np.testing.assert_array_equal(np.sign(got[inf]), np.sign(ref[inf]), err_msg=what)
    finite = np.isfinite(ref)
    tol = 1e-4 if dtype == "float32" else 1e-10
    np.testing.assert_allclose(got[finite], ref[finite], rtol=tol, atol=tol * 1e-3,
                               err_msg=what)


@pytest.mark.parametrize("r", ROWS, ids=optable.ids(ROWS))
def test_special_values_land_where_the_reference_puts_them(r):
    for dtype in (d for d in r.dtypes if d.startswith("float")):
        for trial in range(TRIALS):
            with gc.Graph().as_default():
                phs, values, out = optable.instantiate(r, dtype)
                feeds = dict(zip(phs, _with_specials(r, values, trial)))
                with np.errstate(all="ignore"):
                    ref = run(out, feeds)
                    got = gc.compile([out], feeds=phs, backend="llvm")(feeds)[0]
                _same_kinds(ref, got, dtype, f"{r.name} {dtype} trial {trial}",
                            _defined(r, feeds, np.asarray(ref)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pow_follows_c99_on_every_pair_of_special_values(dtype):
    """x ** y on LLVM against NumPy's (C99's) pow for every pair from a grid of specials:
    -inf to a non-integer power is +inf or +0 (not NaN), -1 to +-inf is 1, -0 and -inf keep
    their sign under odd integers, a finite negative x to a non-integer is NaN."""
    grid = [np.inf, -np.inf, np.nan, 0.0, -0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5, 3.0, -3.0,
            0.9255585, -0.9255585, 1e30, -1e30, 1e-30, -1e-30, 1e10, -1e10]
    xs, ys = (np.array(v, dtype) for v in zip(*itertools.product(grid, repeat=2)))
    x = gc.placeholder(dtype, [len(xs)])
    y = gc.placeholder(dtype, [len(xs)])
    with np.errstate(all="ignore"):
        want = np.power(xs, ys)
        got = gc.compile([x ** y], feeds=[x, y], backend="llvm")({x: xs, y: ys})[0]
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    ok = ~np.isnan(want)
    np.testing.assert_array_equal(np.signbit(got[ok]), np.signbit(want[ok]))
    # (float64's pow loses about |y ln x| ulp: codegen/llvm/math.py)
    np.testing.assert_allclose(got[ok], want[ok], rtol=4e-7 if dtype == np.float32 else 1e-12)
