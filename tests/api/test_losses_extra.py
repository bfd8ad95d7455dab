"""gc.losses (absolute_difference, huber, log, hinge; every Reduction) and gc.nn
(weighted_cross_entropy_with_logits, log_poisson_loss, selu, swish, crelu) against NumPy
references of TF1's documented formulas, with gradients against float64 central differences.
"""
import numpy as np
import pytest

import graphc as gc

RNG = np.random.default_rng(7)
SHAPE = (4, 3)
LABELS01 = (RNG.random(SHAPE) > 0.5).astype(np.float64)
PRED = RNG.uniform(0.05, 0.95, SHAPE)
LOGITS = RNG.uniform(-3.0, 3.0, SHAPE)
REAL_LABELS = RNG.standard_normal(SHAPE)
WEIGHTS = np.array([[1.0], [0.0], [2.0], [0.5]])  # one zero row: the non-zero count matters
SELU_A, SELU_S = 1.6732632423543772, 1.0507009873554805


def np_huber(y, p, delta):
    e = np.abs(p - y)
    return np.where(e <= delta, 0.5 * e ** 2, delta * e - 0.5 * delta ** 2)


def np_sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


# name -> (build(labels, predictions), numpy per-element loss, labels, predictions)
LOSSES = {
    "absolute_difference": (lambda y, p, **kw: gc.losses.absolute_difference(y, p, **kw),
                            lambda y, p: np.abs(p - y), REAL_LABELS, LOGITS),
    "huber": (lambda y, p, **kw: gc.losses.huber_loss(y, p, **kw),
              lambda y, p: np_huber(y, p, 1.0), REAL_LABELS, LOGITS),
    "huber_delta": (lambda y, p, **kw: gc.losses.huber_loss(y, p, delta=0.7, **kw),
                    lambda y, p: np_huber(y, p, 0.7), REAL_LABELS, LOGITS),
    "log_loss": (lambda y, p, **kw: gc.losses.log_loss(y, p, **kw),
                 lambda y, p: -y * np.log(p + 1e-7) - (1 - y) * np.log(1 - p + 1e-7),
                 LABELS01, PRED),
    "hinge": (lambda y, p, **kw: gc.losses.hinge_loss(labels=y, logits=p, **kw),
              lambda y, p: np.maximum(0.0, 1.0 - (2 * y - 1) * p), LABELS01, LOGITS),
    "mean_squared_error": (lambda y, p, **kw: gc.losses.mean_squared_error(y, p, **kw),
                           lambda y, p: (p - y) ** 2, REAL_LABELS, LOGITS),
}

R = gc.losses.Reduction
REDUCE = {
    R.NONE: lambda per, w: per * w,
    R.SUM: lambda per, w: np.sum(per * w),
    R.MEAN: lambda per, w: np.sum(per * w) / np.sum(w * np.ones_like(per)),
    R.SUM_OVER_BATCH_SIZE: lambda per, w: np.sum(per * w) / per.size,
    R.SUM_BY_NONZERO_WEIGHTS: lambda per, w: np.sum(per * w) / np.count_nonzero(
        w * np.ones_like(per)),
}


def _placeholders(y, p):
    return (gc.placeholder(gc.float64, y.shape, name="labels"),
            gc.placeholder(gc.float64, p.shape, name="predictions"))


@pytest.mark.parametrize("reduction", sorted(REDUCE))
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_loss_values_and_reductions(name, reduction):
    build, ref, y, p = LOSSES[name]
    with gc.Graph().as_default():
        yt, pt = _placeholders(y, p)
        weighted = build(yt, pt, weights=WEIGHTS, reduction=reduction)
        default = build(yt, pt)
        assert gc.losses.get_losses() == [weighted, default]
        with gc.Session() as sess:
            got_w, got_d = sess.run([weighted, default], {yt: y, pt: p})
    np.testing.assert_allclose(got_w, REDUCE[reduction](ref(y, p), WEIGHTS), rtol=1e-12)
    np.testing.assert_allclose(got_d, np.mean(ref(y, p)), rtol=1e-12)


def test_all_zero_weights_give_zero_not_nan():
    with gc.Graph().as_default():
        yt, pt = _placeholders(REAL_LABELS, LOGITS)
        loss = gc.losses.huber_loss(yt, pt, weights=np.zeros((4, 1)))
        mean = gc.losses.absolute_difference(yt, pt, weights=np.zeros((4, 1)),
                                             reduction=R.MEAN)
        with gc.Session() as sess:
            assert sess.run([loss, mean], {yt: REAL_LABELS, pt: LOGITS}) == [0.0, 0.0]


def test_unknown_reduction_raises():
    with gc.Graph().as_default():
        yt, pt = _placeholders(REAL_LABELS, LOGITS)
        with pytest.raises(ValueError, match="unknown reduction"):
            gc.losses.absolute_difference(yt, pt, reduction="average")


@pytest.mark.parametrize("name", ["huber", "huber_delta", "log_loss", "hinge"])
def test_loss_gradients(name):
    build, _, y, p = LOSSES[name]
    with gc.Graph().as_default():
        yt, pt = _placeholders(y, p)
        loss = build(yt, pt, weights=WEIGHTS)
        gc.check_gradients(loss, [pt], {yt: y, pt: p}).raise_if_failed()


# -- gc.nn ----------------------------------------------------------------------------------
def np_weighted_xent(z, x, q):
    s = np_sigmoid(x)
    return -q * z * np.log(s) - (1 - z) * np.log(1 - s)


def np_log_poisson(t, c, full):
    loss = np.exp(c) - c * t
    if full:
        safe = np.where(t > 1, t, 1.0)
        stirling = safe * np.log(safe) - safe + 0.5 * np.log(2 * np.pi * safe)
        loss = loss + np.where(t > 1, stirling, 0.0)
    return loss


COUNTS = np.array([[0.0, 1.0, 2.0], [5.0, 0.5, 3.0], [1.5, 7.0, 0.0], [4.0, 1.0, 9.0]])
ACTS = {
    "selu": (gc.nn.selu, lambda x: SELU_S * np.where(x > 0, x, SELU_A * (np.exp(x) - 1))),
    "swish": (gc.nn.swish, lambda x: x * np_sigmoid(x)),
    "crelu": (gc.nn.crelu, lambda x: np.concatenate([np.maximum(x, 0), np.maximum(-x, 0)],
                                                    -1)),
    "weighted_xent": (
        lambda x: gc.nn.weighted_cross_entropy_with_logits(labels=LABELS01, logits=x,
                                                           pos_weight=2.5),
        lambda x: np_weighted_xent(LABELS01, x, 2.5)),
    "weighted_xent_targets": (
        lambda x: gc.nn.weighted_cross_entropy_with_logits(targets=LABELS01, logits=x,
                                                           pos_weight=0.3),
        lambda x: np_weighted_xent(LABELS01, x, 0.3)),
    "log_poisson": (lambda x: gc.nn.log_poisson_loss(COUNTS, x),
                    lambda x: np_log_poisson(COUNTS, x, False)),
    "log_poisson_full": (lambda x: gc.nn.log_poisson_loss(COUNTS, x, compute_full_loss=True),
                         lambda x: np_log_poisson(COUNTS, x, True)),
}


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
@pytest.mark.parametrize("name", sorted(ACTS))
def test_nn_values_and_gradients(name, backend):
    build, ref = ACTS[name]
    with gc.Graph().as_default():
        x = gc.placeholder(gc.float64, SHAPE, name="x")
        out = build(x)
        with gc.Session(backend=backend) as sess:
            np.testing.assert_allclose(sess.run(out, {x: LOGITS}), ref(LOGITS), rtol=1e-12,
                                       atol=1e-14)
        loss = gc.reduce_sum(out * RNG.standard_normal(out.shape.as_list()))
        gc.check_gradients(loss, [x], {x: LOGITS}).raise_if_failed()


def test_weighted_xent_is_stable_for_huge_logits():
    x = np.array([-800.0, -30.0, 30.0, 800.0])
    z = np.array([1.0, 0.0, 1.0, 0.0])
    with gc.Graph().as_default():
        xt = gc.placeholder(gc.float32, [4])
        out = gc.nn.weighted_cross_entropy_with_logits(labels=z, logits=xt, pos_weight=2.0)
        (grad,) = gc.gradients(gc.reduce_sum(out), [xt])
        with gc.Session() as sess:
            val, g = sess.run([out, grad], {xt: x})
    np.testing.assert_allclose(val, [1600.0, 0.0, 0.0, 800.0], atol=1e-5)
    assert np.all(np.isfinite(g))


def test_weighted_xent_needs_its_arguments():
    with gc.Graph().as_default():
        with pytest.raises(gc.errors.GraphError, match="pos_weight"):
            gc.nn.weighted_cross_entropy_with_logits(labels=LABELS01, logits=LOGITS)
