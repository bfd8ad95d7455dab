"""The conv bias gradient folded into the filter-gradient kernel (one pass over dy): the
fold happens when the sum is scheduled right before it, fetched or not, and either way the
results agree with the NumPy reference."""
import numpy as np
import pytest

import graphc as gc
from graphc.codegen.llvm import folds
from graphc.client.pipeline import compile_program


def _model(cin):
    rng = np.random.default_rng(cin)
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, [5, 7, 6, cin], name="x")
        y = gc.placeholder(gc.int64, [5], name="y")
        k = gc.Variable(rng.standard_normal((3, 2, cin, 4)).astype(np.float32) * 0.4, name="k")
        bc = gc.Variable(np.array([0.1, -0.2, 0.0, 0.3], np.float32), name="bc")
        w = gc.Variable(rng.standard_normal((5 * 5 * 4, 3)).astype(np.float32) * 0.3,
                        name="w")
        a = gc.tanh(gc.nn.conv2d(x, k, [1, 1, 1, 1], "VALID") + bc)
        logits = gc.matmul(gc.reshape(a, [5, -1]), w)
        loss = gc.reduce_mean(gc.nn.sparse_softmax_cross_entropy_with_logits(
            labels=y, logits=logits))
        dbc = gc.gradients(loss, [bc])[0]
        train = gc.train.GradientDescentOptimizer(0.5).minimize(loss)
        init = gc.global_variables_initializer()
    return g, x, y, loss, dbc, train, init


def _run(cin, backend, optimize, fetch_grad, steps=3):
    g, x, y, loss, dbc, train, init = _model(cin)
    rng = np.random.default_rng(7)
    fetches = [loss, dbc, train] if fetch_grad else [loss, train]
    out = []
    with gc.Session(graph=g, backend=backend, optimize=optimize) as sess:
        sess.run(init)
        for _ in range(steps):
            feed = {x: rng.standard_normal((5, 7, 6, cin)).astype(np.float32),
                    y: rng.integers(0, 3, 5)}
            out.append(sess.run(fetches, feed)[:-1])
        bc = np.array(sess.values[[v for v in g.get_collection("variables")
                                   if v.op.name.startswith("bc")][0]])
    return out, bc


def _folded(cin, fetch_grad):
    g, x, y, loss, dbc, train, _ = _model(cin)
    fetches = [loss, dbc, train] if fetch_grad else [loss, train]
    return compile_program(fetches, {x: x.shape, y: y.shape}, "llvm").fn.artifacts.stats[
        "folded_nodes"]


@pytest.mark.parametrize("cin", [1, 2])
def test_bias_gradient_folds_into_the_filter_gradient_and_agrees(cin, monkeypatch):
    with_fold = _folded(cin, False)
    monkeypatch.delitem(folds.FOLDS, "bias_gradient")
    assert with_fold == _folded(cin, False) + 1
    monkeypatch.undo()
    ref, ref_bc = _run(cin, "numpy", False, False)
    got, got_bc = _run(cin, "llvm", True, False)
    np.testing.assert_allclose([o[0] for o in got], [o[0] for o in ref], rtol=2e-5)
    np.testing.assert_allclose(got_bc, ref_bc, rtol=1e-4, atol=1e-6)


def test_a_fetched_bias_gradient_folds_too_and_its_value_agrees(monkeypatch):
    """Fetched (as a cut step's body returns its bias gradient), the sum is still computed
    in the filter kernel and reaches its fetch output after it."""
    with_fold = _folded(1, True)
    monkeypatch.delitem(folds.FOLDS, "bias_gradient")
    assert with_fold == _folded(1, True) + 1
    monkeypatch.undo()
    ref, _ = _run(1, "numpy", False, True)
    got, _ = _run(1, "llvm", True, True)
    for (l0, g0), (l1, g1) in zip(ref, got):
        np.testing.assert_allclose(l1, l0, rtol=2e-5)
        np.testing.assert_allclose(g1, g0, rtol=1e-4, atol=1e-6)
