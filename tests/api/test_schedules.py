"""Learning-rate schedules of gc.train against TF1's documented formulas in NumPy.

Each schedule is evaluated at several fed global steps (both backends) and compared with the
formula written out in float64; one schedule then drives an optimizer for three steps, where
each step must use the rate of the step-start global step.
"""
import math

import numpy as np
import pytest

import graphc as gc

STEPS = [0, 1, 7, 50, 99, 100, 101, 250, 1000]


def poly_ref(lr, t, decay_steps, end=1e-4, power=1.0, cycle=False):
    if cycle:
        decay_steps = decay_steps * (1 if t == 0 else math.ceil(t / decay_steps))
    else:
        t = min(t, decay_steps)
    return (lr - end) * (1 - t / decay_steps) ** power + end


def piecewise_ref(t, boundaries, values):
    for b, v in zip(boundaries, values):
        if t <= b:
            return v
    return values[-1]


def cosine_ref(lr, t, decay_steps, alpha=0.0):
    t = min(t, decay_steps)
    return lr * ((1 - alpha) * 0.5 * (1 + math.cos(math.pi * t / decay_steps)) + alpha)


def stair(t, n, staircase):
    return math.floor(t / n) if staircase else t / n


CASES = {
    "piecewise": (lambda s: gc.train.piecewise_constant(s, [10, 100], [1.0, 0.5, 0.1]),
                  lambda t: piecewise_ref(t, [10, 100], [1.0, 0.5, 0.1])),
    "piecewise_float_bounds": (
        lambda s: gc.train.piecewise_constant(s, [0.5, 99.5], [3.0, 2.0, 1.0]),
        lambda t: piecewise_ref(t, [0.5, 99.5], [3.0, 2.0, 1.0])),
    "polynomial": (lambda s: gc.train.polynomial_decay(0.1, s, 100),
                   lambda t: poly_ref(0.1, t, 100)),
    "polynomial_sqrt": (lambda s: gc.train.polynomial_decay(0.1, s, 200, 0.01, power=0.5),
                        lambda t: poly_ref(0.1, t, 200, 0.01, 0.5)),
    "polynomial_cycle": (lambda s: gc.train.polynomial_decay(0.1, s, 100, 0.01, 2.0, True),
                         lambda t: poly_ref(0.1, t, 100, 0.01, 2.0, True)),
    "natural_exp": (lambda s: gc.train.natural_exp_decay(0.1, s, 100, 0.5),
                    lambda t: 0.1 * math.exp(-0.5 * stair(t, 100, False))),
    "natural_exp_stair": (lambda s: gc.train.natural_exp_decay(0.1, s, 100, 0.5, True),
                          lambda t: 0.1 * math.exp(-0.5 * stair(t, 100, True))),
    "inverse_time": (lambda s: gc.train.inverse_time_decay(0.1, s, 100, 0.5),
                     lambda t: 0.1 / (1 + 0.5 * stair(t, 100, False))),
    "inverse_time_stair": (lambda s: gc.train.inverse_time_decay(0.1, s, 100, 0.5, True),
                           lambda t: 0.1 / (1 + 0.5 * stair(t, 100, True))),
    "cosine": (lambda s: gc.train.cosine_decay(0.1, s, 250),
               lambda t: cosine_ref(0.1, t, 250)),
    "cosine_alpha": (lambda s: gc.train.cosine_decay(0.1, s, 100, alpha=0.2),
                     lambda t: cosine_ref(0.1, t, 100, 0.2)),
}


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_schedule_values_match_formula(case, backend):
    build, ref = CASES[case]
    g = gc.Graph()
    with g.as_default():
        step = gc.placeholder(gc.int64, [], name="step")
        lr = build(step)
    with gc.Session(graph=g, backend=backend) as sess:
        got = [float(sess.run(lr, {step: t})) for t in STEPS]
    np.testing.assert_allclose(got, [ref(t) for t in STEPS], rtol=2e-6, atol=1e-8,
                               err_msg=case)


def test_cosine_is_exact_across_the_whole_horizon():
    """The polynomial cosine agrees with math.cos at every step of a long horizon."""
    g = gc.Graph()
    with g.as_default():
        step = gc.placeholder(gc.float64, [1001], name="step")
        lr = gc.train.cosine_decay(1.0, step, 1000)
    ts = np.arange(1001, dtype=np.float64)
    with gc.Session(graph=g) as sess:
        got = sess.run(lr, {step: ts})
    np.testing.assert_allclose(got, [cosine_ref(1.0, t, 1000) for t in ts], atol=3e-7)


def test_schedule_drives_an_optimizer_for_three_steps():
    """w -= lr(t) * g with the rate of the step-start global step t = 0, 1, 2."""
    g = gc.Graph()
    with g.as_default():
        w = gc.Variable(np.array([1.0, -2.0], np.float32), name="w")
        gs = gc.train.get_or_create_global_step()
        lr = gc.train.polynomial_decay(0.5, gs, 4, end_learning_rate=0.1, power=2.0)
        loss = gc.reduce_sum(gc.square(w))
        train = gc.train.GradientDescentOptimizer(lr).minimize(loss, global_step=gs)
        init = gc.global_variables_initializer()
    ref = np.array([1.0, -2.0])
    for t in range(3):
        ref = ref - poly_ref(0.5, t, 4, 0.1, 2.0) * 2 * ref
    with gc.Session(graph=g) as sess:
        sess.run(init)
        for _ in range(3):
            sess.run(train)
        np.testing.assert_allclose(sess.run(w), ref, rtol=1e-5)
        assert sess.run(gs) == 3


@pytest.mark.parametrize("call", [
    lambda s: gc.train.piecewise_constant(s, [10], [1.0]),
    lambda s: gc.train.polynomial_decay(0.1, s, 0),
    lambda s: gc.train.cosine_decay(0.1, s, -1),
    lambda s: gc.train.natural_exp_decay(0.1, s, 0, 0.5),
])
def test_bad_arguments_raise(call):
    with gc.Graph().as_default():
        step = gc.placeholder(gc.int64, [], name="step")
        with pytest.raises(ValueError):
            call(step)
