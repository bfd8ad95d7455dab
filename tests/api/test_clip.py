"""Clipping: values against NumPy, TF1's edge cases (zero tensors, None entries, Inf norms),
and gradients through the clip against float64 central differences."""
import numpy as np
import pytest

import graphc as gc

RNG = np.random.default_rng(0)
A = RNG.normal(size=(3, 4))
B = RNG.normal(size=(5,))


def run(fetches, feed=None, graph=None):
    with gc.Session(graph=graph) as sess:
        return sess.run(fetches, feed or {})


@pytest.fixture(autouse=True)
def fresh_graph():
    gc.reset_default_graph()


def np_clip_by_norm(t, c, axes=None):
    norm = np.sqrt(np.sum(t * t, axis=axes, keepdims=True))
    return t * c / np.maximum(norm, c)


@pytest.mark.parametrize("c", [0.5, 100.0])
@pytest.mark.parametrize("axes", [None, [1], [0]])
def test_clip_by_norm_matches_numpy(c, axes):
    got = run(gc.clip_by_norm(gc.constant(A), c, axes=axes))
    np.testing.assert_allclose(got, np_clip_by_norm(A, c, None if axes is None else tuple(axes)),
                               rtol=1e-12)
    norms = np.sqrt(np.sum(got ** 2, axis=None if axes is None else tuple(axes)))
    assert np.all(norms <= c * (1 + 1e-12))


def test_clip_by_norm_of_zero_is_zero_with_zero_gradient():
    x = gc.placeholder(gc.float64, [3], name="x")
    y = gc.clip_by_norm(x, 1.0)
    (dx,) = gc.gradients(gc.reduce_sum(y), [x])
    val, grad = run([y, dx], {x: np.zeros(3)})
    np.testing.assert_array_equal(val, 0.0)
    np.testing.assert_array_equal(grad, 1.0)  # identity below the threshold, finite at 0


def test_clip_norm_may_be_a_fed_tensor_of_another_dtype():
    c = gc.placeholder(gc.float32, [], name="c")
    y = gc.clip_by_norm(gc.constant(A), c)
    assert y.dtype == gc.float64
    np.testing.assert_allclose(run(y, {c: 0.25}), np_clip_by_norm(A, 0.25), rtol=1e-7)


def test_global_norm_and_clip_by_global_norm():
    ta, tb = gc.constant(A), gc.constant(B)
    total = np.sqrt(np.sum(A ** 2) + np.sum(B ** 2))
    clipped, norm = gc.clip_by_global_norm([ta, None, tb], 1.0)
    assert clipped[1] is None
    ca, cb, n, gn = run([clipped[0], clipped[2], norm, gc.global_norm([ta, tb])])
    assert n == pytest.approx(total) and gn == pytest.approx(total)
    np.testing.assert_allclose(ca, A / total, rtol=1e-12)
    np.testing.assert_allclose(cb, B / total, rtol=1e-12)
    assert np.sqrt(np.sum(ca ** 2) + np.sum(cb ** 2)) == pytest.approx(1.0)


def test_clip_by_global_norm_leaves_small_gradients_alone_and_uses_use_norm():
    (same,), _ = gc.clip_by_global_norm([gc.constant(A)], 1e6)
    np.testing.assert_allclose(run(same), A, rtol=1e-12)
    (scaled,), n = gc.clip_by_global_norm([gc.constant(A)], 1.0,
                                          use_norm=gc.constant(4.0, gc.float64))
    np.testing.assert_allclose(run(scaled), A / 4.0, rtol=1e-12)
    assert run(n) == 4.0


def test_clip_by_global_norm_with_infinite_norm_gives_nan():
    x = gc.placeholder(gc.float32, [2], name="x")
    (y,), n = gc.clip_by_global_norm([x], 1.0)
    val, norm = run([y, n], {x: np.array([np.inf, 1.0], np.float32)})
    assert np.isinf(norm) and np.all(np.isnan(val))


def test_global_norm_casts_mixed_dtypes_to_the_first():
    n = gc.global_norm([gc.constant(np.float32(3.0)), gc.constant(np.float64(4.0))])
    assert n.dtype == gc.float32 and run(n) == pytest.approx(5.0)


@pytest.mark.parametrize("bad, message", [
    (lambda: gc.global_norm(gc.constant(A)), r"global_norm: expected a list of tensors"),
    (lambda: gc.global_norm([None, None]), r"global_norm: every entry of the list is None"),
    (lambda: gc.clip_by_global_norm(gc.constant(A), 1.0),
     r"clip_by_global_norm: expected a list of tensors"),
    (lambda: gc.clip_by_norm(gc.constant(np.arange(3)), 1.0),
     r"clip_by_norm: expected a floating tensor, found i64\[3\]")])
def test_bad_arguments_are_rejected(bad, message):
    with pytest.raises(gc.errors.GraphError, match=message):
        bad()


def central_difference(f, x, eps=1e-6):
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        d = np.zeros_like(x)
        d[i] = eps
        g[i] = (f(x + d) - f(x - d)) / (2 * eps)
    return g


@pytest.mark.parametrize("which", ["norm", "global"])
def test_gradients_through_clipping_match_central_differences(which):
    x = gc.placeholder(gc.float64, [3, 4], name="x")
    w = gc.constant(RNG.normal(size=(3, 4)))
    y = gc.clip_by_norm(x, 1.0, axes=[1]) if which == "norm" else \
        gc.clip_by_global_norm([x, 2.0 * x], 1.5)[0][1]
    loss = gc.reduce_sum(y * w)
    (dx,) = gc.gradients(loss, [x])
    with gc.Session() as sess:
        sym = sess.run(dx, {x: A})
        num = central_difference(lambda v: sess.run(loss, {x: v}), A)
    np.testing.assert_allclose(sym, num, atol=1e-7, rtol=1e-6)
