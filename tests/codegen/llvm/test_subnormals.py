"""Subnormal floats, as the README's Reliability section documents them: native (LLVM) steps
on x86-64 flush them to zero in arithmetic (FTZ/DAZ for the step, restored on return), the
NumPy backend keeps them; values only moved keep their bits."""
import platform

import numpy as np
import pytest

import graphc as gc

X86 = platform.machine().lower() in ("x86_64", "amd64")


@pytest.mark.parametrize("dtype", [gc.float32, gc.float64])
def test_subnormals_flush_natively_and_stay_with_numpy(dtype):
    tiny = np.finfo(dtype.np).tiny  # the smallest normal number
    xv = np.array([tiny / 4, tiny / 1024, -tiny / 2, 1.0], dtype.np)  # three subnormals
    sv = np.full(4, np.sqrt(tiny) / 4, dtype.np)  # normal; s * s is subnormal
    x = gc.placeholder(dtype, [4], name="x")
    s = gc.placeholder(dtype, [4], name="s")
    fetches = [x + 0.0, x * float(2 ** 30), s * s, x > 0, gc.reshape(x, [2, 2]), x * 1.0]
    ref = gc.compile(fetches, feeds=[x, s], backend="numpy")(x=xv, s=sv)
    native = gc.compile(fetches, feeds=[x, s], backend="llvm")(x=xv, s=sv)
    add, scale, square, positive, moved, times_one = ref
    # NumPy: IEEE gradual underflow
    np.testing.assert_array_equal(add, xv)
    np.testing.assert_array_equal(scale, xv * dtype.np.type(2 ** 30))
    assert (square > 0).all() and (square < tiny).all()
    np.testing.assert_array_equal(positive, [True, True, False, True])
    if not X86:
        pytest.skip("only x86-64 native steps set FTZ/DAZ")
    add, scale, square, positive, moved, times_one = native
    np.testing.assert_array_equal(add, [0, 0, 0, 1])  # read as 0 (DAZ)
    np.testing.assert_array_equal(scale, [0, 0, 0, 2 ** 30])
    np.testing.assert_array_equal(square, 0)  # results flushed (FTZ)
    np.testing.assert_array_equal(positive, [False, False, False, True])
    # moved, or x * 1 simplified away: the bits are kept
    assert moved.tobytes() == xv.tobytes() and times_one.tobytes() == xv.tobytes()
    # the calling thread's mode is restored: NumPy keeps subnormals after a native step
    assert (np.asarray(sv) * sv > 0).all()
