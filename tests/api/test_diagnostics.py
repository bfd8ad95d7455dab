"""Gradient health: norms against NumPy, exact update ratios, no side effects, and a report
that names vanishing and exploding layers."""
import numpy as np
import pytest

import graphc as gc
from graphc.tools.diagnostics import gradient_norms, gradient_report, layer_of

RNG = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def fresh_graph():
    gc.reset_default_graph()


def deep_net(depth, width=16, activation=gc.sigmoid, scale=1.0):
    x = gc.placeholder(gc.float64, [None, width], name="x")
    h = x
    for i in range(depth):
        with gc.name_scope(f"layer{i:02d}"):
            W = gc.Variable(scale * gc.initializers.glorot_normal(seed=i)([width, width],
                                                                          gc.float64), name="W")
            b = gc.Variable(np.zeros(width), name="b")
            h = activation(gc.matmul(h, W) + b)
    loss = gc.reduce_mean(gc.square(h - 0.5))
    return x, loss


def test_norms_and_exact_update_ratios_match_numpy():
    x, loss = deep_net(3, activation=gc.tanh)
    opt = gc.train.AdamOptimizer(0.01)
    pairs = opt.compute_gradients(loss)
    train = opt.apply_gradients(pairs)
    health = gradient_norms(pairs, train_op=train)
    feed = {x: RNG.normal(size=(8, 16))}
    with gc.Session() as sess:
        sess.run(gc.global_variables_initializer())
        before = {v.op.name: sess.values[v].copy() for _, v in pairs}
        grads = dict(zip([v.op.name for _, v in pairs], sess.run([g for g, _ in pairs], feed)))
        _, h = sess.run([train, health], feed)
        after = {v.op.name: sess.values[v] for _, v in pairs}
    for name in before:
        assert h["grad_norms"][name] == pytest.approx(np.linalg.norm(grads[name]), rel=1e-12)
        assert h["weight_norms"][name] == pytest.approx(np.linalg.norm(before[name]), abs=1e-14)
        if np.linalg.norm(before[name]) > 0:
            expect = np.linalg.norm(after[name] - before[name]) / np.linalg.norm(before[name])
            assert h["update_ratios"][name] == pytest.approx(expect, rel=1e-10)
    total = np.sqrt(sum(np.sum(g ** 2) for g in grads.values()))
    assert h["global_norm"] == pytest.approx(total, rel=1e-12)


def test_fetching_the_norms_alone_updates_nothing():
    x, loss = deep_net(2)
    opt = gc.train.GradientDescentOptimizer(0.5)
    pairs = opt.compute_gradients(loss)
    health = gradient_norms(pairs, train_op=opt.apply_gradients(pairs))
    with gc.Session() as sess:
        sess.run(gc.global_variables_initializer())
        before = {v: a.copy() for v, a in sess.values.items()}
        sess.run(health, {x: RNG.normal(size=(4, 16))})
        for v, a in before.items():
            np.testing.assert_array_equal(sess.values[v], a)


def test_sgd_estimate_equals_the_exact_ratio_for_sgd():
    x, loss = deep_net(2, activation=gc.tanh)
    opt = gc.train.GradientDescentOptimizer(0.3)
    pairs = opt.compute_gradients(loss)
    exact = gradient_norms(pairs, train_op=opt.apply_gradients(pairs))
    estimate = gradient_norms(pairs, learning_rate=0.3)
    assert "update_ratios" not in gradient_norms(pairs)
    with gc.Session() as sess:
        sess.run(gc.global_variables_initializer())
        e, s = sess.run([exact, estimate], {x: RNG.normal(size=(4, 16))})
    for name, ratio in e["update_ratios"].items():
        if "/W" in name:
            assert s["update_ratios"][name] == pytest.approx(ratio, rel=1e-10)


def test_report_names_the_vanishing_layers_of_a_deep_sigmoid_net():
    x, loss = deep_net(12)
    pairs = gc.train.GradientDescentOptimizer(0.1).compute_gradients(loss)
    with gc.Session() as sess:
        sess.run(gc.global_variables_initializer())
        values = sess.run(gradient_norms(pairs, learning_rate=0.1), {x: RNG.normal(size=(8, 16))})
    report = gradient_report(values)
    assert [r[0] for r in report.rows] == [f"layer{i:02d}" for i in range(12)]
    assert report.vanishing and "layer00" in report.vanishing and "layer11" not in report.vanishing
    assert not report.exploding
    # norms shrink from the output layer down: every vanishing layer sits below the healthy ones
    first_ok = min(i for i, r in enumerate(report.rows) if r[3] == "ok")
    assert all(r[3] == "vanishing" for r in report.rows[:first_ok])
    text = str(report)
    assert "layer00" in text and "vanishing" in text and "< 0.001 x the largest" in text


def fake(norms, weights=None, ratios=None):
    out = {"grad_norms": norms, "global_norm": np.sqrt(sum(v ** 2 for v in norms.values())),
           "weight_norms": weights or {k: 1.0 for k in norms}}
    if ratios is not None:
        out["update_ratios"] = ratios
    return out


def test_report_thresholds():
    r = gradient_report(fake({"a/W": 1.0, "a/b": 1.0, "b/W": 5e-4, "c/W": 2e3}))
    assert r.vanishing == ["b"] and r.exploding == ["c"]
    assert r.rows[0][1] == pytest.approx(np.sqrt(2))  # a/W and a/b form layer a
    r = gradient_report(fake({"a/W": 1.0, "b/W": np.nan}))
    assert r.exploding == ["b"]
    r = gradient_report(fake({"a/W": 1.0, "b/W": 0.5}, ratios={"a/W": 1e-3, "b/W": 3.0}))
    assert r.exploding == ["b"] and r.rows[0][2] == pytest.approx(1e-3)
    r = gradient_report(fake({"a/W": 1.0, "b/W": 0.5}, weights={"a/W": 1.0, "b/W": 0.0},
                             ratios={"a/W": 1e-3, "b/W": 1e12}))
    assert r.healthy  # zero weights (fresh biases): the ratio means nothing
    assert gradient_report(fake({"a/W": 1.0, "b/W": 5e-4}), vanish_rel=1e-4).healthy
    assert "healthy" in str(gradient_report(fake({"w": 1.0})))


def test_layer_names_and_errors():
    assert layer_of("enc/dense1/W") == "enc/dense1" and layer_of("bias") == "bias"
    with pytest.raises(gc.errors.GraphError, match="every gradient is None"):
        gradient_norms([(None, None)])
