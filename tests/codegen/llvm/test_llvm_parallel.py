"""Kernels run in chunks on the thread pool (codegen.llvm.parallel): the same numbers as the
NumPy reference, the same bits at one thread and at two, the threshold deciding which
kernels split, and a bad threshold setting refused."""
import numpy as np
import pytest

import graphc as gc
from graphc.client.pipeline import compile_program
from graphc.errors import CompileError
from graphc.runtime import parallel

N, H, W, CIN, COUT = 12, 10, 9, 2, 6


@pytest.fixture(autouse=True)
def whole_steps(monkeypatch):
    """Kernels in chunks are what is tested here: no step cut over its batch (split)."""
    monkeypatch.setenv("GRAPHC_SPLIT_EXAMPLES", "0")


def _model(batch=N):
    rng = np.random.default_rng(3)
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, [batch, H, W, CIN], name="x")
        y = gc.placeholder(gc.int64, [batch], name="y")
        k = gc.Variable(rng.standard_normal((3, 3, CIN, COUT)).astype(np.float32) * 0.3,
                        name="k")
        bc = gc.Variable(rng.standard_normal(COUT).astype(np.float32) * 0.1, name="bc")
        k2 = gc.Variable(rng.standard_normal((3, 3, COUT, 16)).astype(np.float32) * 0.2,
                         name="k2")
        w = gc.Variable(rng.standard_normal((4 * 3 * 16, 5)).astype(np.float32) * 0.2,
                        name="w")
        a = gc.nn.relu(gc.nn.conv2d(x, k, [1, 1, 1, 1], "VALID") + bc)      # 8 x 7
        p = gc.nn.max_pool(a, [1, 2, 2, 1], [1, 2, 2, 1], "VALID")          # 4 x 3
        # 54 (tap, channel) pairs: an implicit GEMM (conv_gemm), with its input gradient
        c2 = gc.reshape(gc.nn.relu(gc.nn.conv2d(p, k2, [1, 1, 1, 1], "SAME")), [batch, -1])
        h = gc.tanh(c2 * 1.5) + c2
        logits = gc.matmul(h, w)
        loss = gc.reduce_mean(gc.nn.sparse_softmax_cross_entropy_with_logits(
            labels=y, logits=logits))
        train = gc.train.MomentumOptimizer(0.1, 0.9).minimize(loss)
        init = gc.global_variables_initializer()
    return g, x, y, loss, train, init


def _feeds(steps, batch=N):
    rng = np.random.default_rng(11)
    return [(rng.standard_normal((batch, H, W, CIN)).astype(np.float32),
             rng.integers(0, 5, batch)) for _ in range(steps)]


def _train(backend, threads=None, steps=4):
    g, x, y, loss, train, init = _model()
    with gc.Session(graph=g, backend=backend, optimize=backend != "numpy") as sess:
        sess.run(init)
        if threads is not None:  # (after the Session applied the policy)
            parallel.ensure_workers(threads)
            parallel.set_threads(threads)
        losses = [sess.run([loss, train], {x: xb, y: yb})[0] for xb, yb in _feeds(steps)]
        values = {v.op.name: np.array(sess.values[v]) for v in g.get_collection("variables")}
    return np.array(losses), values


@pytest.fixture
def split_everything(monkeypatch):
    monkeypatch.setenv("GRAPHC_PARALLEL_MIN_WORK", "1")
    monkeypatch.setenv("GRAPHC_BLAS_TUNING", "0")  # (the test chooses the threads)
    monkeypatch.setenv("GRAPHC_NO_CACHE", "1")


def test_split_kernels_agree_with_numpy_and_give_the_same_bits_at_any_thread_count(
        split_everything):
    ref_loss, ref = _train("numpy")
    one_loss, one = _train("llvm", threads=1)
    two_loss, two = _train("llvm", threads=2)
    np.testing.assert_allclose(two_loss, ref_loss, rtol=2e-5)
    for name in ref:
        np.testing.assert_allclose(two[name], ref[name], rtol=1e-4, atol=1e-6, err_msg=name)
        # chunks are fixed at compile time: which thread runs one changes no bit
        np.testing.assert_array_equal(two[name], one[name], err_msg=name)
    np.testing.assert_array_equal(two_loss, one_loss)


def test_the_convolution_pooling_and_elementwise_kernels_split(split_everything):
    g, x, y, loss, train, _ = _model()
    stats = compile_program([loss, train], {x: x.shape, y: y.shape}, "llvm").fn.artifacts.stats
    text = compile_program([loss, train], {x: x.shape, y: y.shape}, "llvm").fn.llvm_ir
    # conv (+ bias + relu + max pool folded), the pool's gradient, the filter gradient (+
    # bias gradient, summed per chunk), and elementwise loops
    assert stats["parallel_kernels"] >= 5
    assert any(note.startswith("conv_pool") for note in stats["folds"])
    for kernel in ("Conv2D", "Conv2D_1", "MaxPoolGrad", "Conv2DBackpropFilter",
                   "Conv2DBackpropFilter_1", "Conv2DBackpropInput", "MatMul"):
        assert f"_{kernel}.task" in text, kernel
    assert "sum_partials_" in text


def test_small_kernels_stay_on_the_calling_thread(monkeypatch):
    monkeypatch.delenv("GRAPHC_PARALLEL_MIN_WORK", raising=False)
    g, x, y, loss, train, _ = _model(batch=2)
    stats = compile_program([loss, train], {x: x.shape, y: y.shape}, "llvm").fn.artifacts.stats
    assert stats["parallel_kernels"] == 0
    assert stats["kernel_calls"] > 10


def test_a_large_convolution_splits_at_the_default_threshold(monkeypatch):
    monkeypatch.delenv("GRAPHC_PARALLEL_MIN_WORK", raising=False)
    g, x, y, loss, train, _ = _model(batch=256)
    stats = compile_program([loss, train], {x: x.shape, y: y.shape}, "llvm").fn.artifacts.stats
    assert stats["parallel_kernels"] >= 2  # the forward and filter-gradient convolutions


@pytest.mark.parametrize("value", ["0", "-3", "many"])
def test_a_bad_threshold_setting_is_refused(monkeypatch, value):
    monkeypatch.setenv("GRAPHC_PARALLEL_MIN_WORK", value)
    monkeypatch.setenv("GRAPHC_NO_CACHE", "1")
    g, x, y, loss, train, _ = _model()
    with pytest.raises(CompileError, match="GRAPHC_PARALLEL_MIN_WORK must be a positive"):
        compile_program([loss, train], {x: x.shape, y: y.shape}, "llvm")


def test_blas_calls_after_split_kernels_send_the_pool_to_sleep_first(split_everything,
                                                                     monkeypatch):
    monkeypatch.setenv("GRAPHC_NATIVE_GEMM", "0")  # every GEMM through BLAS
    g, x, y, loss, train, _ = _model()
    fn = compile_program([loss, train], {x: x.shape, y: y.shape}, "llvm").fn
    names = [name for _, name in fn.layout.callbacks]
    assert "parallel_for" in names and "parallel_rest" in names
    assert fn.artifacts.stats["blas_gemms"] >= 3
    ref_loss, ref = _train("numpy")
    got_loss, got = _train("llvm", threads=2)
    np.testing.assert_allclose(got_loss, ref_loss, rtol=2e-5)
    for name in ref:
        np.testing.assert_allclose(got[name], ref[name], rtol=1e-4, atol=1e-6, err_msg=name)


def test_a_large_sum_to_one_value_splits_with_the_same_bits_at_any_thread_count(monkeypatch):
    """A float sum of 2^16 + 1000 elements into one value (a loss, a norm) runs as 8 fixed
    ranges, in chunks on the pool, the partials added in range order: the float64 sum
    within rounding, and the same bits on one thread and on two. A sum of 2^15 elements
    stays whole."""
    monkeypatch.delenv("GRAPHC_PARALLEL_MIN_WORK", raising=False)
    monkeypatch.setenv("GRAPHC_NO_CACHE", "1")
    n, small = (1 << 16) + 1000, 1 << 15
    rng = np.random.default_rng(5)
    xv, yv = (rng.standard_normal(n).astype(np.float32) for _ in range(2))
    zv = rng.standard_normal(small).astype(np.float32)
    g = gc.Graph()
    with g.as_default():
        x, y = gc.placeholder(gc.float32, [n]), gc.placeholder(gc.float32, [n])
        z = gc.placeholder(gc.float32, [small])
        fetches = [gc.reduce_sum(x * y + 1.0), gc.reduce_sum(x), gc.reduce_mean(x),
                   gc.reduce_sum(z * z)]
        compiled = compile_program(fetches, {x: (n,), y: (n,), z: (small,)}, "llvm")
        step = gc.compile(fetches, feeds=[x, y, z], backend="llvm")
    assert compiled.fn.artifacts.stats["parallel_kernels"] == 2  # (the mean stays whole)
    assert "sum_partials_" in compiled.fn.llvm_ir
    got = []
    for threads in (1, 2):
        parallel.ensure_workers(threads)
        parallel.set_threads(threads)
        got.append([np.asarray(v) for v in step({x: xv, y: yv, z: zv})])
    x64, y64, z64 = (v.astype(np.float64) for v in (xv, yv, zv))
    want = [np.sum(x64 * y64 + 1.0), np.sum(x64), np.mean(x64), np.sum(z64 * z64)]
    for a, b, w in zip(*got, want):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(a, w, rtol=1e-5, atol=1e-2)
