"""Initializers: statistics within tolerance, orthogonality, seeds, TF1 names and defaults."""
import numpy as np
import pytest

import graphc as gc
from graphc.ops import init_ops as I

SHAPE = (400, 300)          # fan_in 400, fan_out 300: 120000 samples
CONV = (3, 3, 16, 32)       # fan_in 144, fan_out 288


def stats(init, shape=SHAPE):
    x = init(shape, gc.float64)
    return x, float(x.mean()), float(x.var())


# (initializer, shape, expected variance, max |x|): the variance formula of each scheme.
VARIANCE = [
    (I.glorot_uniform(seed=1), SHAPE, 2.0 / 700, np.sqrt(6.0 / 700)),
    (I.glorot_normal(seed=1), SHAPE, 2.0 / 700, 2 * np.sqrt(2.0 / 700) / 0.8796),
    (I.he_uniform(seed=1), SHAPE, 2.0 / 400, np.sqrt(6.0 / 400)),
    (I.he_normal(seed=1), SHAPE, 2.0 / 400, 2 * np.sqrt(2.0 / 400) / 0.8796),
    (I.lecun_normal(seed=1), SHAPE, 1.0 / 400, 2 * np.sqrt(1.0 / 400) / 0.8796),
    (I.lecun_uniform(seed=1), SHAPE, 1.0 / 400, np.sqrt(3.0 / 400)),
    (I.he_normal(seed=1), CONV, 2.0 / 144, 2 * np.sqrt(2.0 / 144) / 0.8796),
    (I.glorot_uniform(seed=1), CONV, 2.0 / (144 + 288), np.sqrt(6.0 / 432)),
    (I.variance_scaling(3.0, "fan_out", "untruncated_normal", seed=1), SHAPE, 3.0 / 300, None),
    (I.random_normal(0.0, 0.5, seed=1), SHAPE, 0.25, None),
    (I.truncated_normal(0.0, 0.5, seed=1), SHAPE, 0.25 * 0.8796 ** 2, 1.0),
    (I.random_uniform(-1.0, 1.0, seed=1), SHAPE, 1.0 / 3, 1.0),
]


@pytest.mark.parametrize("init,shape,variance,bound", VARIANCE,
                         ids=[f"{type(c[0]).__name__}{list(c[1])}" for c in VARIANCE])
def test_variance_and_bounds(init, shape, variance, bound):
    x, mean, var = stats(init, shape)
    n = x.size
    # The sample variance's relative standard error is about sqrt(2 / n) (<= 2% here);
    # a tolerance of 5 standard errors cannot fail by chance, and a wrong fan can't pass.
    assert var == pytest.approx(variance, rel=5 * np.sqrt(2.0 / n) + 1e-3)
    assert abs(mean) < 5 * np.sqrt(variance / n)
    if bound is not None:
        assert np.abs(x).max() <= bound * (1 + 1e-3)


def test_truncation_is_corrected_so_variance_is_not_shrunk():
    """Glorot normal is truncated, yet its variance is the untruncated formula's."""
    x = I.glorot_normal(seed=3)((1000, 1000), gc.float64)
    assert x.var() == pytest.approx(2.0 / 2000, rel=0.01)
    assert np.abs(x).max() <= 2 * np.sqrt(2.0 / 2000) / 0.87962566103423978 + 1e-12


@pytest.mark.parametrize("shape", [(64, 64), (100, 30), (30, 100), (3, 3, 8, 16)])
@pytest.mark.parametrize("gain", [1.0, 0.5])
def test_orthogonal(shape, gain):
    w = I.orthogonal(gain=gain, seed=0)(shape, gc.float64)
    assert w.shape == shape
    m = w.reshape(-1, shape[-1])
    gram = m.T @ m if m.shape[0] >= m.shape[1] else m @ m.T
    np.testing.assert_allclose(gram, gain ** 2 * np.eye(len(gram)), atol=1e-12)


def test_orthogonal_rejects_vectors():
    with pytest.raises(ValueError, match="rank >= 2"):
        I.orthogonal()([5])


@pytest.mark.parametrize("make", [lambda: I.glorot_uniform(seed=7), lambda: I.he_normal(seed=7),
                                  lambda: I.orthogonal(seed=7),
                                  lambda: I.random_normal(seed=7),
                                  lambda: I.truncated_normal(seed=7),
                                  lambda: I.random_uniform(seed=7)])
def test_seeds_reproduce_and_successive_calls_differ(make):
    a, b = make(), make()
    first_a, second_a = a([20, 10]), a([20, 10])
    first_b, second_b = b([20, 10]), b([20, 10])
    np.testing.assert_array_equal(first_a, first_b)
    np.testing.assert_array_equal(second_a, second_b)
    assert not np.array_equal(first_a, second_a)
    other = type(make())(seed=8)
    assert not np.array_equal(first_a, other([20, 10]))


def test_graph_seed_makes_unseeded_initializers_reproducible():
    def build():
        g = gc.Graph()
        with g.as_default():
            gc.set_random_seed(42)
            init = I.he_uniform()
            return [gc.Variable(init([8, 8]), name=f"w{i}") for i in range(2)]
    v1, v2 = build(), build()
    a = [v.initial_value.attrs["value"] for v in v1]
    b = [v.initial_value.attrs["value"] for v in v2]
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], a[1])


def test_deterministic_initializers_and_dtypes():
    assert I.zeros()([2, 3]).dtype == np.float32
    np.testing.assert_array_equal(I.zeros(gc.int32)([2]), np.zeros(2, np.int32))
    np.testing.assert_array_equal(I.ones()([2], gc.float64), np.ones(2))
    np.testing.assert_array_equal(I.constant(2.5)([2, 2]), np.full((2, 2), 2.5, np.float32))
    np.testing.assert_array_equal(I.constant([1, 2, 3, 4])([2, 2]), [[1, 2], [3, 4]])
    np.testing.assert_array_equal(I.identity(2.0)([2, 3]), 2 * np.eye(2, 3))
    with pytest.raises(ValueError, match="does not fit"):
        I.constant([1, 2, 3])([2, 2])
    with pytest.raises(ValueError, match="floating"):
        I.glorot_uniform()([2, 2], gc.int32)


def test_tf1_defaults():
    assert I.random_normal().stddev == 1.0
    assert I.truncated_normal().stddev == 1.0
    u = I.random_uniform(seed=0)([1000], gc.float64)
    assert u.min() >= 0.0 and u.max() < 1.0


def test_tf1_class_names_are_exported():
    for name in I.TF1_ALIASES:
        assert getattr(gc, name) is getattr(I, name)
    assert isinstance(gc.glorot_uniform_initializer(seed=0), I.variance_scaling)
    with gc.Graph().as_default():
        w = gc.get_variable("w", [4, 5], initializer=gc.random_normal_initializer(0.0, 0.1,
                                                                                  seed=1))
        b = gc.get_variable("b", [5], initializer=gc.zeros_initializer())
        with gc.Session() as sess:
            sess.run(gc.initializers.global_variables())
            assert sess.values[w].shape == (4, 5) and sess.values[w].std() < 0.3
            np.testing.assert_array_equal(sess.values[b], 0.0)
