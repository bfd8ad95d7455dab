"""Depthwise convolutions on the LLVM backend (codegen/llvm/kernels/depthwise.py): forward,
input and filter gradients against float64 NumPy for odd sizes, SAME/VALID, strides 1-3,
channel multipliers M > 1, dilations, NCHW, channel blocks of several vector widths; the same
bits at one thread and at two."""
import numpy as np
import pytest

import graphc as gc
from graphc.codegen.llvm.kernels import depthwise as llvm_depthwise
from graphc.codegen.llvm.kernels import gemm as llvm_gemm

from tests.support.split import same_bits_at_one_and_two_threads, split_every_kernel

# (input NHWC, filter [kh, kw, C, M], strides, padding, rate)
CASES = [
    ((2, 7, 6, 3), (3, 2, 3, 2), (1, 1), "SAME", (1, 1)),
    ((2, 9, 8, 4), (3, 3, 4, 1), (2, 3), "VALID", (1, 1)),
    ((1, 9, 9, 2), (3, 3, 2, 3), (1, 1), "SAME", (2, 3)),
    ((3, 10, 11, 40), (3, 3, 40, 1), (2, 2), "SAME", (1, 1)),
    ((2, 8, 8, 37), (5, 5, 37, 3), (3, 3), "SAME", (1, 1)),
    ((2, 6, 7, 5), (1, 1, 5, 2), (2, 2), "VALID", (1, 1)),
    ((2, 12, 12, 20), (3, 3, 20, 2), (1, 1), "VALID", (2, 2)),
]


def _grads(case, dtype, backend, rng_seed=0, fmt="NHWC"):
    xs, fs, st, pad, rate = case
    rng = np.random.default_rng(rng_seed)
    np_dt = np.float32 if dtype == gc.float32 else np.float64
    if fmt == "NCHW":
        xs = (xs[0], xs[3], xs[1], xs[2])
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(dtype, xs)
        f = gc.placeholder(dtype, fs)
        strides = [1, st[0], st[1], 1] if fmt == "NHWC" else [1, 1, st[0], st[1]]
        y = gc.nn.depthwise_conv2d(x, f, strides, pad, rate=None if rate == (1, 1) else rate,
                                   data_format=fmt)
        r = gc.placeholder(dtype, y.shape)
        dx, df = gc.gradients(gc.reduce_sum(y * r), [x, f])
        step = gc.compile([y, dx, df], feeds=[x, f, r], backend=backend)
    feed = {x: rng.standard_normal(xs).astype(np_dt), f: rng.standard_normal(fs).astype(np_dt),
            r: rng.standard_normal(tuple(y.shape)).astype(np_dt)}
    return [np.asarray(v, np.float64) for v in step(feed)]


@pytest.fixture(params=[llvm_gemm.VectorUnit(32, 16), llvm_gemm.VectorUnit(64, 32)],
                ids=["256bit", "512bit"])
def unit(request, monkeypatch):
    """Channel blocks as wide as four registers of this vector unit."""
    monkeypatch.setattr(llvm_depthwise, "vector_unit", lambda: request.param)
    return request.param


@pytest.mark.parametrize("dtype", [gc.float32, gc.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join("x".join(map(str, v))
                                                               if isinstance(v, tuple) else v
                                                               for v in c))
def test_depthwise_and_gradients_agree_with_numpy(case, dtype, unit):
    got = _grads(case, dtype, "llvm")
    want = _grads(case, gc.float64, "numpy")
    tol = 1e-5 if dtype == gc.float32 else 1e-12
    for name, a, b in zip(("y", "dx", "dfilter"), got, want):
        assert a.shape == b.shape, name
        np.testing.assert_allclose(a, b, rtol=0, atol=tol * max(np.abs(b).max(), 1.0),
                                   err_msg=name)


def test_depthwise_nchw_agrees_with_numpy():
    case = ((2, 7, 9, 6), (3, 3, 6, 2), (2, 1), "SAME", (1, 1))
    for a, b in zip(_grads(case, gc.float64, "llvm", fmt="NCHW"),
                    _grads(case, gc.float64, "numpy", fmt="NCHW")):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12 * max(np.abs(b).max(), 1.0))


def test_depthwise_kernels_split_with_the_same_bits_at_one_and_two_threads(monkeypatch):
    split_every_kernel(monkeypatch)
    rng = np.random.default_rng(2)
    x = gc.placeholder(gc.float32, [5, 9, 8, 12])
    f = gc.placeholder(gc.float32, [3, 3, 12, 2])
    y = gc.nn.depthwise_conv2d(x, f, [1, 2, 2, 1], "SAME")
    dx, df = gc.gradients(gc.reduce_sum(gc.square(y)), [x, f])
    step = gc.compile([y, dx, df], feeds=[x, f], backend="llvm")
    assert step.compiled.fn.artifacts.stats["parallel_kernels"] >= 3
    feed = {x: rng.standard_normal((5, 9, 8, 12)).astype(np.float32),
            f: rng.standard_normal((3, 3, 12, 2)).astype(np.float32)}
    got = same_bits_at_one_and_two_threads(step, feed)
    want = gc.compile([y, dx, df], feeds=[x, f], backend="numpy")(feed)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * np.abs(b).max())
