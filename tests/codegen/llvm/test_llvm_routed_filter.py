"""A pooled convolution's filter gradient routes the pooled gradient from the saved argmax as
it loads dy (folds.routed_filter_gradient, codegen/llvm/kernels/conv.py ``Routing``): the
routing's full-size output is never stored, the step trains to the same bits as with the
routing stored, with and without a ReLU mask and a bias, on both vector widths, agrees with
the NumPy reference, and the fold stands aside where the routing is fetched."""
import numpy as np
import pytest

import graphc as gc
from graphc.client.pipeline import compile_program
from graphc.codegen.llvm import folds
from graphc.codegen.llvm.kernels import conv as llvm_conv, conv_lanes, gemm as llvm_gemm

AVX2, AVX512 = llvm_gemm.VectorUnit(32, 16), llvm_gemm.VectorUnit(64, 32)


@pytest.fixture(params=[AVX2, AVX512], ids=["avx2", "avx512"])
def unit(request, monkeypatch):
    monkeypatch.setenv("GRAPHC_NO_CACHE", "1")
    for module in (conv_lanes, llvm_conv):
        monkeypatch.setattr(module, "vector_unit", lambda: request.param)
    return request.param


def _cnn(cin, cout, pool, relu, bias, seed=0):
    """x [3, 2*pool+2 rows, 3*pool+2 columns, cin] -> conv 3x3 (+ bias) (-> ReLU) -> max
    pool of ``pool`` x ``pool`` windows tiling the conv's output -> dense -> softmax
    cross-entropy, SGD."""
    rng = np.random.default_rng(seed)
    h, w = 2 * pool + 2, 3 * pool + 2
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, [3, h, w, cin], name="x")
        y = gc.placeholder(gc.int64, [3], name="y")
        k = gc.Variable(rng.standard_normal((3, 3, cin, cout)).astype(np.float32) * 0.5,
                        name="k")
        a = gc.nn.conv2d(x, k, [1, 1, 1, 1], "VALID")
        if bias:
            a = a + gc.Variable(rng.standard_normal(cout).astype(np.float32) * 0.1, name="b")
        if relu:
            a = gc.nn.relu(a)
        p = gc.nn.max_pool(a, [1, pool, pool, 1], [1, pool, pool, 1], "VALID")
        wd = gc.Variable(rng.standard_normal((6 * cout, 5)).astype(np.float32) * 0.3,
                         name="wd")
        logits = gc.matmul(gc.reshape(p, [3, 6 * cout]), wd)
        loss = gc.reduce_mean(gc.nn.sparse_softmax_cross_entropy_with_logits(
            labels=y, logits=logits))
        train = gc.train.GradientDescentOptimizer(0.3).minimize(loss)
        init = gc.global_variables_initializer()
    return g, x, y, loss, train, init, a


def _train(case, backend="llvm", optimize=True, steps=3, fetch_routing=False):
    g, x, y, loss, train, init, a = _cnn(*case)
    fetches = [loss, train]
    if fetch_routing:
        with g.as_default():
            fetches = [loss, gc.gradients(loss, [a])[0], train]
    rng = np.random.default_rng(9)
    out = []
    with gc.Session(graph=g, backend=backend, optimize=optimize) as sess:
        sess.run(init)
        for _ in range(steps):  # half-integer images: tied maxima, windows all <= 0
            xb = (np.round(rng.standard_normal(x.shape) * 2) / 2).astype(np.float32)
            out.append([np.array(v) for v in sess.run(fetches, {x: xb, y: rng.integers(0, 5, 3)})
                        if v is not None])
        values = {v.op.name: np.array(sess.values[v]) for v in g.get_collection("variables")}
    stats = compile_program(fetches, {x: x.shape, y: y.shape}, backend).fn.artifacts.stats \
        if backend == "llvm" else None
    return out, values, stats


def _names(stats):
    return [note.split(":")[0] for note in stats["folds"]]


@pytest.mark.parametrize("relu,bias", [(True, True), (False, True), (True, False),
                                       (False, False)])
@pytest.mark.parametrize("cin", [1, 2])
def test_routed_filter_gradient_trains_to_the_bits_of_the_stored_routing(
        unit, cin, relu, bias, monkeypatch):
    cout = unit.bytes // 4 // 2  # two positions a vector: a 2x2 window's row
    routed, values, stats = _train((cin, cout, 2, relu, bias))
    assert "routed_filter_gradient" in _names(stats)
    monkeypatch.setattr(folds, "ROUTE_FILTER_GRADIENT", False)
    stored, stored_values, stored_stats = _train((cin, cout, 2, relu, bias))
    assert "routed_filter_gradient" not in _names(stored_stats)
    assert stats["folded_nodes"] > stored_stats["folded_nodes"]
    for a, b in zip(routed, stored):
        for u, v in zip(a, b):
            np.testing.assert_array_equal(u, v)
    for name, want in stored_values.items():
        np.testing.assert_array_equal(values[name], want, err_msg=name)


def test_wider_windows_route_too_and_agree_with_the_reference(unit):
    """4x4 windows: four positions a vector (a quarter of the lanes a position)."""
    case = (1, unit.bytes // 4 // 4, 4, True, True)
    routed, values, stats = _train(case)
    assert "routed_filter_gradient" in _names(stats)
    ref, ref_values, _ = _train(case, backend="numpy", optimize=False)
    for a, b in zip(routed, ref):
        np.testing.assert_allclose(a[0], b[0], rtol=2e-5, atol=1e-6)
    for name, want in ref_values.items():
        np.testing.assert_allclose(values[name], want, rtol=1e-4, atol=1e-6, err_msg=name)


def test_a_fetched_routing_is_stored_and_agrees(unit):
    """The ReLU's input gradient fetched: the routing has a reader the filter gradient is
    not, so it is stored as before, and every value agrees with the reference."""
    case = (1, unit.bytes // 4 // 2, 2, False, True)
    got, values, stats = _train(case, fetch_routing=True)
    assert "routed_filter_gradient" not in _names(stats)
    ref, ref_values, _ = _train(case, backend="numpy", optimize=False, fetch_routing=True)
    for a, b in zip(got, ref):
        for u, v in zip(a, b):
            np.testing.assert_allclose(u, v, rtol=2e-5, atol=1e-6)
    for name, want in ref_values.items():
        np.testing.assert_allclose(values[name], want, rtol=1e-4, atol=1e-6, err_msg=name)
