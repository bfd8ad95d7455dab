"""Optimizers against hand-computed NumPy updates over three steps, slots, errors, schedules.

The loss ``sum(c w) + sum(d w^2) / 2`` has the gradient ``c + d w``, so each reference below
is TF1's update rule written out in NumPy with that gradient, step by step.
"""
import warnings

import numpy as np
import pytest

import graphc as gc

C = {"w": np.array([[0.5, -1.0], [2.0, 0.25], [-0.3, 1.5]]), "b": np.array([0.1, -0.2])}
D_ = {"w": np.array([[1.0, 2.0], [0.5, 1.5], [3.0, 0.2]]), "b": np.array([2.0, 0.7])}
W0 = {"w": np.array([[0.3, -0.6], [1.1, 0.4], [-0.9, 0.05]]), "b": np.array([0.2, -0.4])}


def grad(name, w):
    return C[name] + D_[name] * w


def sgd_ref(lr):
    def step(name, w, s, t):
        return w - lr * grad(name, w)
    return step


def momentum_ref(lr, mu, nesterov=False):
    def step(name, w, s, t):
        g = grad(name, w)
        s["a"] = mu * s.get("a", 0.0) + g
        return w - lr * (g + mu * s["a"]) if nesterov else w - lr * s["a"]
    return step


def adam_ref(lr, b1=0.9, b2=0.999, eps=1e-8):
    def step(name, w, s, t):
        g = grad(name, w)
        s["m"] = b1 * s.get("m", 0.0) + (1 - b1) * g
        s["v"] = b2 * s.get("v", 0.0) + (1 - b2) * g * g
        lr_t = lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        return w - lr_t * s["m"] / (np.sqrt(s["v"]) + eps)
    return step


def adagrad_ref(lr, init=0.1):
    def step(name, w, s, t):
        g = grad(name, w)
        s["acc"] = s.get("acc", init) + g * g
        return w - lr * g / np.sqrt(s["acc"])
    return step


def rmsprop_ref(lr, decay=0.9, mu=0.0, eps=1e-10, centered=False):
    def step(name, w, s, t):
        g = grad(name, w)
        s["ms"] = decay * s.get("ms", 1.0) + (1 - decay) * g * g   # TF1 starts ms at one
        denom = s["ms"] + eps
        if centered:
            s["mg"] = decay * s.get("mg", 0.0) + (1 - decay) * g
            denom = denom - s["mg"] ** 2
        s["mom"] = mu * s.get("mom", 0.0) + lr * g / np.sqrt(denom)
        return w - s["mom"]
    return step


CASES = {
    "sgd": (lambda lr: gc.train.GradientDescentOptimizer(lr), sgd_ref(0.1)),
    "momentum": (lambda lr: gc.train.MomentumOptimizer(lr, 0.9), momentum_ref(0.1, 0.9)),
    "nesterov": (lambda lr: gc.train.MomentumOptimizer(lr, 0.9, use_nesterov=True),
                 momentum_ref(0.1, 0.9, nesterov=True)),
    "adam": (lambda lr: gc.train.AdamOptimizer(lr), adam_ref(0.1)),
    "adam_betas": (lambda lr: gc.train.AdamOptimizer(lr, beta1=0.5, beta2=0.8, epsilon=1e-3),
                   adam_ref(0.1, 0.5, 0.8, 1e-3)),
    "adagrad": (lambda lr: gc.train.AdagradOptimizer(lr, 0.5), adagrad_ref(0.1, 0.5)),
    "rmsprop": (lambda lr: gc.train.RMSPropOptimizer(lr), rmsprop_ref(0.1)),
    "rmsprop_momentum": (lambda lr: gc.train.RMSPropOptimizer(lr, decay=0.8, momentum=0.5),
                         rmsprop_ref(0.1, 0.8, 0.5)),
    "rmsprop_centered": (lambda lr: gc.train.RMSPropOptimizer(lr, momentum=0.3, epsilon=1e-6,
                                                              centered=True),
                         rmsprop_ref(0.1, 0.9, 0.3, 1e-6, centered=True)),
}


def build(dtype, make_opt, lr, graph=None):
    g = graph or gc.Graph()
    with g.as_default():
        vs = {n: gc.Variable(W0[n].astype(dtype), name=n) for n in W0}
        loss = gc.add_n([gc.reduce_sum(vs[n] * C[n].astype(dtype))
                         + 0.5 * gc.reduce_sum(gc.square(vs[n]) * D_[n].astype(dtype))
                         for n in vs])
        opt = make_opt(lr)
        step = gc.train.get_or_create_global_step()
        train = opt.minimize(loss, global_step=step)
        init = gc.global_variables_initializer()
    return g, vs, opt, train, init, step


def reference(ref_step, steps=3):
    ws = {n: W0[n].copy() for n in W0}
    state = {n: {} for n in W0}
    history = []
    for t in range(1, steps + 1):
        ws = {n: ref_step(n, ws[n], state[n], t) for n in ws}
        history.append(ws)
    return history


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_three_steps_match_numpy_float64(case, backend):
    make_opt, ref_step = CASES[case]
    g, vs, opt, train, init, step = build(np.float64, make_opt, 0.1)
    expected = reference(ref_step)
    with gc.Session(graph=g, backend=backend) as sess:
        sess.run(init)
        for t in range(3):
            sess.run(train)
            for n, v in vs.items():
                np.testing.assert_allclose(sess.values[v], expected[t][n], rtol=1e-12,
                                           atol=1e-14, err_msg=f"{case} step {t + 1} {n}")
        assert sess.run(step) == 3


@pytest.mark.parametrize("case", ["momentum", "adam", "rmsprop_centered"])
def test_learning_rate_placeholder_and_float32(case):
    """A fed learning rate gives the float result; float32 variables track float64."""
    make_opt, ref_step = CASES[case]
    g = gc.Graph()
    with g.as_default():
        lr = gc.placeholder(gc.float32, [], name="lr")
    g, vs, opt, train, init, _ = build(np.float32, make_opt, lr, graph=g)
    expected = reference(ref_step)
    with gc.Session(graph=g) as sess:
        sess.run(init)
        for t in range(3):
            sess.run(train, {lr: 0.1})
        for n, v in vs.items():
            assert sess.values[v].dtype == np.float32
            np.testing.assert_allclose(sess.values[v], expected[2][n], rtol=2e-5, atol=2e-6)


def test_slots_are_non_trainable_named_variables():
    g, vs, opt, train, init, _ = build(np.float64, CASES["adam"][0], 0.1)
    with g.as_default():
        names = [v.op.name for v in gc.global_variables()]
        trainable = [v.op.name for v in gc.trainable_variables()]
    assert sorted(trainable) == ["b", "w"]
    for slot in ("w/Adam/m", "w/Adam/v", "b/Adam/m", "b/Adam/v", "Adam/beta1_power",
                 "Adam/beta2_power"):
        assert slot in names
    m = opt.get_slot(vs["w"], "m")
    assert m.shape == vs["w"].shape and not m.trainable
    assert opt.get_slot_names() == ["m", "v"]
    assert len(opt.variables()) == 6
    with gc.Session(graph=g) as sess:
        sess.run(init)
        sess.run(train)
        b1p = [v for v in opt.variables() if v.op.name == "Adam/beta1_power"][0]
        assert sess.values[b1p] == pytest.approx(0.81)
        np.testing.assert_allclose(sess.values[m], 0.1 * grad("w", W0["w"]))


def test_rmsprop_mean_square_starts_at_one():
    g, vs, opt, train, init, _ = build(np.float64, CASES["rmsprop"][0], 0.1)
    with gc.Session(graph=g) as sess:
        sess.run(init)
        np.testing.assert_array_equal(sess.values[opt.get_slot(vs["w"], "rms")], 1.0)


def test_minimize_raises_when_nothing_is_connected():
    g = gc.Graph()
    with g.as_default():
        w = gc.Variable(np.ones(2, np.float32), name="lonely")
        x = gc.placeholder(gc.float32, [2], name="x")
        loss = gc.reduce_sum(x * x)
        with pytest.raises(gc.errors.GradientError, match="no variable is connected.*\n.*lonely"):
            gc.train.AdamOptimizer().minimize(loss)


def test_minimize_warns_for_each_unconnected_variable():
    g = gc.Graph()
    with g.as_default():
        used = gc.Variable(np.ones(2, np.float32), name="used")
        gc.Variable(np.ones(2, np.float32), name="unused_a")
        gc.Variable(np.ones(2, np.float32), name="unused_b")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            gc.train.MomentumOptimizer(0.1, 0.9).minimize(gc.reduce_sum(used * used))
    messages = [str(w.message) for w in caught]
    assert any("unused_a" in m for m in messages) and any("unused_b" in m for m in messages)
    assert not any("'used'" in m for m in messages)


def test_apply_gradients_skips_none_and_accepts_modified_gradients():
    g = gc.Graph()
    with g.as_default():
        w = gc.Variable(np.array([1.0, -2.0]), name="w")
        opt = gc.train.GradientDescentOptimizer(0.5)
        pairs = opt.compute_gradients(gc.reduce_sum(w * w))
        train = opt.apply_gradients([(g_ * 0.5, v) for g_, v in pairs] + [(None, w)])
        with gc.Session(graph=g) as sess:
            sess.run(gc.global_variables_initializer())
            sess.run(train)
            np.testing.assert_allclose(sess.values[w], [0.5, -1.0])  # w - 0.5 * (0.5 * 2w)
        with pytest.raises(gc.errors.GradientError, match="no gradients provided"):
            opt.apply_gradients([(None, w)])


@pytest.mark.parametrize("staircase", [False, True])
def test_exponential_decay(staircase):
    g = gc.Graph()
    with g.as_default():
        step = gc.train.get_or_create_global_step()
        assert step.dtype == gc.int64
        lr = gc.train.exponential_decay(0.1, step, 4, 0.5, staircase=staircase)
        bump = gc.assign(step, step + 1)
        with gc.Session(graph=g) as sess:
            sess.run(gc.global_variables_initializer())
            seen = []
            for _ in range(6):
                seen.append(sess.run(lr))
                sess.run(bump)
    t = np.arange(6)
    expect = 0.1 * 0.5 ** (np.floor(t / 4) if staircase else t / 4)
    np.testing.assert_allclose(seen, expect, rtol=1e-6)
