"""Max pooling's argmax saved by the forward kernel (LLVM) and read by the backward kernels:
values agree exactly with the unoptimized NumPy reference (first maximum wins ties, a NaN
wins and the first NaN stays, -inf windows, padding never wins), the step counts the saved
argmaxes, and the recomputing path (no forward max_pool of that x) still agrees."""
import numpy as np
import pytest

import graphc as gc
from graphc.codegen.llvm.kernels import pool as llvm_pool_argmax
from graphc.client.pipeline import compile_program

# (name, x shape, ksize, strides, padding): windows overlapping (stride < ksize), tiling,
# with gaps (stride > ksize), SAME padding, more channels than one vector, i32 codes.
CASES = [
    ("tiled", (2, 6, 6, 3), (2, 2), (2, 2), "VALID"),
    # W4's windows: 8 channels, rows of 7 windows scanned 4 at a time and 3 (pool.scan_together)
    ("tiled_rows", (2, 6, 14, 8), (2, 2), (2, 2), "VALID"),
    ("overlap_valid", (2, 7, 6, 4), (3, 3), (1, 1), "VALID"),
    ("overlap_same", (2, 7, 5, 3), (3, 3), (2, 2), "SAME"),
    ("gaps", (1, 9, 8, 2), (2, 2), (3, 3), "VALID"),
    ("gaps_same", (1, 8, 7, 2), (2, 3), (3, 4), "SAME"),
    ("wide_channels", (1, 5, 5, 70), (3, 3), (2, 2), "SAME"),
    ("many_taps", (1, 13, 13, 2), (12, 12), (1, 1), "VALID"),
]


def _input(shape, seed):
    """Integer values in [-3, 3] (many tied maxima; every sum of them is exact), a few NaNs
    and -infs, and one window corner that is all -inf (padding must not win it)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-3, 4, shape).astype(np.float32)
    flat = x.reshape(-1)
    flat[rng.choice(flat.size, max(1, flat.size // 40), replace=False)] = np.nan
    flat[rng.choice(flat.size, max(1, flat.size // 20), replace=False)] = -np.inf
    x[:, :2, :2, :] = -np.inf
    return x


def _pool_graph(shape, ksize, strides, padding):
    """Forward, gradient and second order through one pool: the program holds max_pool,
    max_pool_grad (twice) and max_pool_grad_grad, all of the same x."""
    x = gc.placeholder(gc.float32, list(shape), name="x")
    y = gc.nn.max_pool(x, [1, *ksize, 1], [1, *strides, 1], padding)
    w = gc.constant(np.random.default_rng(1).integers(-2, 3, y.shape).astype(np.float32))
    (gx,) = gc.gradients(gc.reduce_sum(y * y * 0.5 + y * w), [x])  # dy = y + w
    v = gc.constant(np.random.default_rng(2).integers(-2, 3, shape).astype(np.float32))
    (ggx,) = gc.gradients(gc.reduce_sum(gx * v), [x])  # via max_pool_grad_grad(x, v)
    return x, [y, gx, ggx]


def _ops(compiled):
    return {n.op_name for n in compiled.program.nodes}


@pytest.mark.parametrize("save", [True, False], ids=["saved", "recomputed"])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_pool_gradients_agree_exactly_with_the_reference(case, save, monkeypatch):
    monkeypatch.setattr(llvm_pool_argmax, "SAVE", save)
    _, shape, ksize, strides, padding = case
    x, fetches = _pool_graph(shape, ksize, strides, padding)
    compiled = compile_program(fetches, {x: shape}, "llvm")
    assert {"max_pool", "max_pool_grad", "max_pool_grad_grad"} <= _ops(compiled)
    assert compiled.fn.artifacts.stats["saved_argmax"] == (1 if save else 0)
    for seed in range(2):
        xv = _input(shape, seed)
        with gc.Session(backend="numpy", optimize=False) as sess:
            want = sess.run(fetches, {x: xv})
        with gc.Session(backend="llvm") as sess:
            got = sess.run(fetches, {x: xv})
        for name, g, w in zip(["pool", "grad", "grad of grad"], got, want):
            np.testing.assert_array_equal(g, w, err_msg=f"{name} (seed {seed})")
    assert np.isnan(want[0]).any(), "windows holding a NaN were pooled"


def test_an_all_minus_inf_window_beside_padding_routes_nowhere():
    """SAME padding puts padding first in the corner window; with every real element -inf,
    the first maximum is that padding tap, so the corner's gradient is dropped (the rule of
    the reference), and the second-order read there is 0."""
    shape = (1, 3, 3, 2)
    x, fetches = _pool_graph(shape, (2, 2), (2, 2), "SAME")
    xv = np.full(shape, -np.inf, np.float32)
    xv[0, 2, 2, :] = 1.0
    with gc.Session(backend="numpy", optimize=False) as sess:
        want = sess.run(fetches, {x: xv})
    with gc.Session(backend="llvm") as sess:
        got = sess.run(fetches, {x: xv})
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def test_nothing_is_saved_when_the_gradient_reads_another_input():
    a = gc.placeholder(gc.float32, [2, 4, 4, 3], name="a")
    b = gc.placeholder(gc.float32, [2, 4, 4, 3], name="b")
    pool = gc.nn.max_pool(a, [1, 2, 2, 1], [1, 2, 2, 1], "VALID")
    (gb,) = gc.gradients(gc.reduce_sum(gc.nn.max_pool(b, [1, 2, 2, 1], [1, 2, 2, 1], "VALID")),
                         [b])
    # the same x, but another window: its argmax is not the forward's
    (ga,) = gc.gradients(gc.reduce_sum(gc.nn.max_pool(a, [1, 3, 3, 1], [1, 1, 1, 1], "VALID")),
                         [a])
    compiled = compile_program([pool, gb, ga], {a: a.shape, b: b.shape}, "llvm")
    assert compiled.fn.artifacts.stats["saved_argmax"] == 0
    rng = np.random.default_rng(3)
    feed = {a: rng.standard_normal(a.shape).astype(np.float32),
            b: rng.standard_normal(b.shape).astype(np.float32)}
    with gc.Session(backend="numpy", optimize=False) as sess:
        want = sess.run([pool, gb, ga], feed)
    with gc.Session(backend="llvm") as sess:
        got = sess.run([pool, gb, ga], feed)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def _cnn(seed=0):
    """W4's shape in small: conv 3x3 -> + bias -> ReLU -> 2x2 max pool -> dense, SGD."""
    rng = np.random.default_rng(seed)
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, [8, 10, 10, 1], name="x")
        y = gc.placeholder(gc.int64, [8], name="y")
        k = gc.Variable(rng.standard_normal((3, 3, 1, 8)).astype(np.float32) * 0.4, name="k")
        bc = gc.Variable(rng.standard_normal(8).astype(np.float32) * 0.1, name="bc")
        w = gc.Variable(rng.standard_normal((128, 10)).astype(np.float32) * 0.2, name="w")
        a = gc.nn.relu(gc.nn.conv2d(x, k, [1, 1, 1, 1], "VALID") + bc)
        p = gc.nn.max_pool(a, [1, 2, 2, 1], [1, 2, 2, 1], "VALID")
        logits = gc.matmul(gc.reshape(p, [8, 128]), w)
        loss = gc.reduce_mean(gc.nn.sparse_softmax_cross_entropy_with_logits(
            labels=y, logits=logits))
        train = gc.train.GradientDescentOptimizer(0.5).minimize(loss)
        init = gc.global_variables_initializer()
    return g, x, y, loss, train, init


def _train(backend, optimize, steps=3):
    g, x, y, loss, train, init = _cnn()
    rng = np.random.default_rng(5)
    losses = []
    with gc.Session(graph=g, backend=backend, optimize=optimize) as sess:
        sess.run(init)
        for _ in range(steps):  # half-integer images: tied maxima in flat regions
            xb = np.round(rng.random((8, 10, 10, 1)) * 2).astype(np.float32) / 2
            losses.append(sess.run([loss, train], {x: xb, y: rng.integers(0, 10, 8)})[0])
        values = {v.op.name: np.array(sess.values[v]) for v in g.get_collection("variables")}
    return np.array(losses), values


def test_pooled_relu_cnn_saves_the_argmax_folds_the_mask_and_trains_like_the_reference(
        monkeypatch):
    g, x, y, loss, train, _ = _cnn()
    stats = compile_program([loss, train], {x: x.shape, y: y.shape}, "llvm").fn.artifacts.stats
    monkeypatch.setattr(llvm_pool_argmax, "SAVE", False)
    unsaved = compile_program([loss, train], {x: x.shape, y: y.shape},
                              "llvm").fn.artifacts.stats
    monkeypatch.undo()
    assert (stats["saved_argmax"], unsaved["saved_argmax"]) == (1, 0)
    names = [[note.split(":")[0] for note in st["folds"]] for st in (stats, unsaved)]
    assert "relu_mask" in names[0] and "relu_mask" in names[1], "the ReLU mask still folds"
    # the pooling joins the convolution only when the argmax is saved (folds.conv_pool), and
    # the filter gradient routes the pooled gradient from it (folds.routed_filter_gradient)
    assert "conv_pool" in names[0] and "conv_pool" not in names[1]
    assert "routed_filter_gradient" in names[0] and "routed_filter_gradient" not in names[1]
    assert stats["folded_nodes"] == unsaved["folded_nodes"] + 2
    ref_losses, ref_values = _train("numpy", False)
    losses, values = _train("llvm", True)
    np.testing.assert_allclose(losses, ref_losses, rtol=2e-5, atol=1e-6)
    for name, want in ref_values.items():
        np.testing.assert_allclose(values[name], want, rtol=1e-4, atol=1e-6, err_msg=name)
