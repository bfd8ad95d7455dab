"""Convolutions with many channels on the LLVM backend run as implicit GEMMs, or as im2col +
BLAS when BLAS has threads to use (codegen/llvm/kernels/conv_gemm.py): forward, filter gradient and
input gradient agree with float64 NumPy for SAME/VALID padding, strides 1 and 2, partial
register blocks and partial vectors, on the host's vectors and on AVX2's."""
import numpy as np
import pytest

import graphc as gc
from graphc.codegen.llvm import lower as llvm_lower
from graphc.codegen.llvm.kernels import conv as llvm_conv
from graphc.codegen.llvm.kernels import conv_gemm as llvm_conv_gemm
from graphc.codegen.llvm.kernels import gemm as llvm_gemm
from graphc.codegen.llvm.kernels.windows import Geometry
from graphc.ir import dtypes as D

from tests.support.split import same_bits_at_one_and_two_threads, split_every_kernel

NATIVE = llvm_gemm.vector_unit() is not None
UNITS = [llvm_gemm.VectorUnit(32, 16)] + ([llvm_gemm.vector_unit()] if NATIVE and
                                          llvm_gemm.vector_unit().bytes > 32 else [])


MODES = [(u, "implicit") for u in UNITS] + [(UNITS[-1], "im2col")] if NATIVE else \
    [(None, "im2col")]


@pytest.fixture(params=MODES, ids=lambda m: f"{m[0].bytes * 8}bit-{m[1]}" if m[0]
                else "no-vectors-im2col")
def unit(request, monkeypatch):
    """The vector unit and the convolution mode: "im2col" pretends BLAS has 2 threads and
    every convolution and GEMM is large, so the im2col matrix goes to BLAS."""
    unit, mode = request.param
    if unit is not None:
        monkeypatch.setattr(llvm_gemm, "vector_unit", lambda: unit)
        monkeypatch.setattr(llvm_conv_gemm, "vector_unit", lambda: unit)
    if mode == "im2col":
        monkeypatch.setattr(llvm_lower, "blas_threads", lambda: 2)
        monkeypatch.setattr(llvm_conv_gemm, "IM2COL_MIN_MACS", 0)
        monkeypatch.setitem(llvm_gemm.NATIVE_MAX_MACS, "threads", 0)  # its GEMMs on BLAS
        monkeypatch.setattr(llvm_gemm, "blas_vector_bytes", lambda: None)  # (whatever BLAS)
        monkeypatch.setattr(llvm_conv_gemm, "IM2COL_MIN_COUT", 1)
    return unit


# (batch, height, width, in channels, out channels, kernel, stride, padding)
CASES = [
    (2, 9, 9, 16, 32, 3, 1, "SAME"),
    (2, 8, 7, 13, 20, 3, 1, "VALID"),
    (1, 9, 10, 8, 70, 3, 2, "SAME"),
    (3, 6, 6, 24, 16, 2, 2, "VALID"),
    (2, 7, 7, 5, 17, 5, 1, "SAME"),
    (1, 11, 9, 40, 8, 1, 1, "VALID"),
    # strided input gradients by phase (conv_phases): stride 3, odd sizes, a window smaller
    # than the stride (phases no tap reaches), a 5x5 window over two phases
    (2, 11, 10, 12, 20, 3, 3, "SAME"),
    (2, 10, 9, 40, 24, 1, 2, "VALID"),
    (1, 11, 8, 16, 12, 2, 3, "SAME"),
    (2, 13, 12, 8, 20, 5, 2, "VALID"),
    # dilated (a last entry: the rate), taps spread over the padded input
    (2, 12, 11, 16, 24, 3, 1, "SAME", 2),
    (1, 13, 12, 40, 20, 3, 1, "VALID", 3),
]


def _conv_grads(case, dtype, backend, seed=0):
    n, h, w, cin, cout, k, s, pad, *rate = case
    rng = np.random.default_rng(seed)
    np_dt = np.float32 if dtype == gc.float32 else np.float64
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(dtype, [n, h, w, cin])
        f = gc.placeholder(dtype, [k, k, cin, cout])
        y = gc.nn.conv2d(x, f, [1, s, s, 1], pad,
                         dilations=[1] + rate * 2 + [1] if rate else None)
        r = gc.placeholder(dtype, y.shape)
        loss = gc.reduce_sum(y * r)
        dx, df = gc.gradients(loss, [x, f])
        step = gc.compile([y, dx, df], feeds=[x, f, r], backend=backend)
    feed = {x: rng.standard_normal((n, h, w, cin)).astype(np_dt),
            f: rng.standard_normal((k, k, cin, cout)).astype(np_dt),
            r: rng.standard_normal(tuple(y.shape)).astype(np_dt)}
    out = [np.asarray(v, np.float64) for v in step(feed)]
    stats = step.compiled.fn.artifacts.stats if backend == "llvm" else {}
    return out, stats


@pytest.mark.parametrize("dtype", [gc.float32, gc.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c)))
def test_implicit_gemm_convolution_and_gradients_agree(case, dtype, unit):
    n, h, w, cin, cout, k, s, pad, *rate = case
    assert llvm_conv._many_channels(Geometry((n, h, w, cin), (k, k), (s, s), pad), cout,
                                    D.float32)
    got, stats = _conv_grads(case, dtype, "llvm")
    want, _ = _conv_grads(case, gc.float64, "numpy")
    im2col = unit is None or llvm_conv_gemm.IM2COL_MIN_MACS == 0
    # im2col: BLAS multiplies for the forward pass, the filter gradient and (stride 1) dx
    assert stats["blas_gemms"] == ((3 if s == 1 and not rate else 2) if im2col else 0)
    tol = 1e-4 if dtype == gc.float32 else 1e-11
    for name, a, b in zip(("y", "dx", "dfilter"), got, want):
        scale = max(np.abs(b).max(), 1.0)
        assert a.shape == b.shape, name
        np.testing.assert_allclose(a, b, rtol=0, atol=tol * scale, err_msg=name)


def test_few_channels_keep_the_direct_kernel():
    g = Geometry((64, 28, 28, 1), (3, 3), (1, 1), "VALID")
    assert not llvm_conv._many_channels(g, 8, D.float32)  # W4: registers hold the whole row


def test_cnn_trains_alike_on_both_backends():
    losses = {}
    for backend in ("numpy", "llvm"):
        rng = np.random.default_rng(5)
        g = gc.Graph()
        with g.as_default():
            x = gc.placeholder(gc.float32, [8, 10, 10, 3])
            y = gc.placeholder(gc.int64, [8])
            k1 = gc.Variable(rng.standard_normal((3, 3, 3, 24)).astype(np.float32) * 0.2)
            k2 = gc.Variable(rng.standard_normal((3, 3, 24, 32)).astype(np.float32) * 0.1)
            wd = gc.Variable(rng.standard_normal((5 * 5 * 32, 4)).astype(np.float32) * 0.05)
            a = gc.nn.relu(gc.nn.conv2d(x, k1, [1, 1, 1, 1], "SAME"))
            a = gc.nn.relu(gc.nn.conv2d(a, k2, [1, 1, 1, 1], "SAME"))
            p = gc.nn.max_pool(a, [1, 2, 2, 1], [1, 2, 2, 1], "VALID")
            logits = gc.matmul(gc.reshape(p, [8, -1]), wd)
            loss = gc.reduce_mean(gc.nn.sparse_softmax_cross_entropy_with_logits(
                labels=y, logits=logits))
            train = gc.train.GradientDescentOptimizer(0.05).minimize(loss)
            step = gc.compile([loss, train], feeds=[x, y], backend=backend)
        feed = {x: rng.standard_normal((8, 10, 10, 3)).astype(np.float32),
                y: rng.integers(0, 4, 8)}
        losses[backend] = [float(step(feed)[0]) for _ in range(4)]
    np.testing.assert_allclose(losses["llvm"], losses["numpy"], rtol=2e-4)
    assert losses["llvm"][-1] < losses["llvm"][0]


@pytest.mark.parametrize("dtype", [gc.float32, gc.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", [(2, 7, 6, 16, 24, 1, 1, "SAME"), (2, 9, 8, 12, 20, 1, 2, "VALID"),
                                  (1, 8, 9, 8, 12, 2, 3, "SAME")],
                         ids=lambda c: "x".join(map(str, c)))
def test_direct_convolutions_with_wide_inputs_agree(case, dtype):
    """The forward pass direct (few taps x channels), the input gradient a GEMM."""
    n, h, w, cin, cout, k, s, pad = case
    assert not llvm_conv._many_channels(Geometry((n, h, w, cin), (k, k), (s, s), pad), cout,
                                        D.float32)
    got, _ = _conv_grads(case, dtype, "llvm")
    want, _ = _conv_grads(case, gc.float64, "numpy")
    tol = 1e-4 if dtype == gc.float32 else 1e-11
    for name, a, b in zip(("y", "dx", "dfilter"), got, want):
        np.testing.assert_allclose(a, b, rtol=0, atol=tol * max(np.abs(b).max(), 1.0),
                                   err_msg=name)


def test_strided_input_gradient_splits_with_the_same_bits_at_one_and_two_threads(monkeypatch):
    split_every_kernel(monkeypatch)
    rng = np.random.default_rng(4)
    x = gc.placeholder(gc.float32, [3, 9, 11, 24])
    f = gc.constant(rng.standard_normal((3, 3, 24, 40)).astype(np.float32))
    y = gc.nn.conv2d(x, f, [1, 2, 2, 1], "SAME")
    dx = gc.gradients(gc.reduce_sum(y * y), x)[0]
    step = gc.compile([dx], feeds=[x], backend="llvm")
    assert step.compiled.fn.artifacts.stats["parallel_kernels"] >= 4  # dx: one per phase
    feed = {x: rng.standard_normal((3, 9, 11, 24)).astype(np.float32)}
    got = same_bits_at_one_and_two_threads(step, feed)[0]
    want = gc.compile([dx], feeds=[x], backend="numpy")(feed)[0]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * np.abs(want).max())


# -- random geometries ----------------------------------------------------------------------------
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 3), h=st.integers(3, 9), w=st.integers(3, 9),
       cin=st.integers(4, 20), cout=st.integers(1, 40), k=st.integers(1, 3),
       s=st.integers(1, 3), pad=st.sampled_from(["SAME", "VALID"]))
def test_random_geometries_agree(n, h, w, cin, cout, k, s, pad):
    """Random many-channel convolutions (forward, dx, dw) against float64 NumPy."""
    if k * k * cin <= llvm_conv.VECTOR_TAPS and cout <= 64:
        cin = llvm_conv.VECTOR_TAPS // (k * k) + 1  # enough pairs for the GEMM kernels
    case = (n, h, w, cin, cout, k, s, pad)
    got, _ = _conv_grads(case, gc.float32, "llvm")
    want, _ = _conv_grads(case, gc.float64, "numpy")
    for name, a, b in zip(("y", "dx", "dfilter"), got, want):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-4 * max(np.abs(b).max(), 1.0),
                                   err_msg=name)


def _conv_kernel_fmas(k):
    """{kernel label: the fused multiply-adds in the LLVM IR of its kernels} of a 16->32
    channel convolution with a k x k window and its two gradients (implicit GEMMs)."""
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, [2, 9, 9, 16])
        f = gc.placeholder(gc.float32, [k, k, 16, 32])
        y = gc.nn.conv2d(x, f, [1, 1, 1, 1], "SAME")
        dx, df = gc.gradients(gc.reduce_sum(y * y), [x, f])
        step = gc.compile([y, dx, df], feeds=[x, f], backend="llvm")
    ir = step.compiled.fn.llvm_ir
    counts = {}
    for body in ir.split("\ndefine ")[1:]:
        name = body.split("(")[0].split("@")[1]
        for label in ("Conv2DBackpropFilter", "Conv2DBackpropInput", "Conv2D"):
            if label in name:
                counts[label] = counts.get(label, 0) + body.split("\n}\n")[0].count(
                    "llvm.fmuladd")
                break
    return counts


@pytest.mark.skipif(not NATIVE, reason="implicit GEMMs need the host's vectors")
def test_kernel_code_does_not_grow_with_the_window():
    # The kh x kw taps are loops around the channel contraction, not copies of the register
    # tiles: a 5x5 window's kernels hold as many multiply-adds as a 3x3 window's (25/9 as
    # many when each tap had its own copy), the same sums in the same order.
    small, large = _conv_kernel_fmas(3), _conv_kernel_fmas(5)
    assert set(small) == {"Conv2D", "Conv2DBackpropFilter", "Conv2DBackpropInput"}
    assert small == large and min(small.values()) > 0


@pytest.mark.skipif(not NATIVE, reason="implicit GEMMs need the host's vectors")
def test_implicit_gemm_kernels_take_the_vector_pipeline_with_the_same_bits(monkeypatch):
    # Written as register tiles, the implicit-GEMM kernels name the short "vector" pipeline
    # (runtime.llvm_compile), honoured where the module is split in parts: the same bits as
    # the step compiled whole at O2.
    from graphc.codegen.llvm import backend as llvm_backend
    from graphc.codegen.llvm.ir import VECTOR_CODE
    from graphc.runtime import compile_worker, module_parts
    monkeypatch.setenv("GRAPHC_NO_CACHE", "1")
    monkeypatch.setenv("GRAPHC_COMPILE_WORKER", "0")
    monkeypatch.setattr(module_parts, "MIN_WORK", 0)
    monkeypatch.setitem(compile_worker._state, "in_process", 0)
    case = (2, 9, 9, 16, 32, 3, 1, "SAME")
    monkeypatch.setattr(llvm_backend, "PARTS", 1)
    whole, _ = _conv_grads(case, gc.float32, "llvm")
    monkeypatch.setattr(llvm_backend, "PARTS", 6)
    parts, _ = _conv_grads(case, gc.float32, "llvm")
    for a, b in zip(parts, whole):
        assert a.tobytes() == b.tobytes()
    kernel = llvm_conv_gemm.conv_forward_function(
        D.float32, llvm_conv_gemm.ConvShape(2, 9, 9, 11, 11, 16, 3, 3, 1, 1, 32), [True] * 3)
    assert VECTOR_CODE.strip() in kernel.text().split("\n")[0]
