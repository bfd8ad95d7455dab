"""Dropout (one mask shared by the forward pass and the gradient, fresh every run, seedable,
keep_prob fed), moments and batch normalization (training against inference, moving
averages, gradients and second order), embedding lookup, and gc.layers.dense."""
import numpy as np
import pytest

import graphc as gc
from graphc.errors import GraphError

from tests.support.checks import run_both
from tests.support.layer_testing import check_gradients, check_hessian_vector_products, open_session

F64 = gc.float64


# -- dropout -------------------------------------------------------------------------------------
def _dropout_graph(seed=None, shape=(None, 50)):
    x = gc.placeholder(F64, list(shape))
    keep = gc.placeholder(F64, [])
    y = gc.nn.dropout(x, keep, seed=seed)
    up = gc.placeholder(F64, list(shape))
    dx, = gc.gradients(gc.reduce_sum(y * up), [x])
    return x, keep, up, y, dx


@pytest.mark.parametrize("optimize", [False, True])
def test_dropout_backward_uses_the_forward_mask(optimize, rng):
    x, keep, up, y, dx = _dropout_graph()
    xv, uv = rng.uniform(1, 2, (40, 50)), rng.standard_normal((40, 50))
    with open_session(optimize) as sess:
        for _ in range(3):
            yv, dxv = sess.run([y, dx], {x: xv, keep: 0.6, up: uv})
            kept = yv != 0
            assert 0.4 < kept.mean() < 0.8
            np.testing.assert_allclose(yv[kept], xv[kept] / 0.6, rtol=1e-15)
            np.testing.assert_array_equal(dxv, np.where(kept, uv / 0.6, 0.0))


def test_dropout_masks_are_fresh_each_run_and_reproducible_by_seed(rng):
    xv = np.ones((8, 50))
    runs = {}
    for seed in (7, 7, 8):
        gc.reset_default_graph()
        x, keep, _, y, _ = _dropout_graph(seed=seed)
        with open_session(True) as sess:
            runs.setdefault(seed, []).append([sess.run(y, {x: xv, keep: 0.5}) for _ in range(2)])
    first, again = runs[7]
    assert not np.array_equal(first[0], first[1])         # fresh each run
    np.testing.assert_array_equal(first, again)            # same seed, same sequence
    assert not np.array_equal(first[0], runs[8][0][0])     # another seed, another mask


def test_graph_seed_makes_dropout_reproducible():
    def masks():
        gc.reset_default_graph()
        gc.set_random_seed(3)
        x = gc.placeholder(F64, [None, 30])
        y = gc.nn.dropout(x, rate=0.5)
        with open_session(False) as sess:
            return sess.run(y, {x: np.ones((4, 30))})
    np.testing.assert_array_equal(masks(), masks())


def test_two_dropouts_are_never_merged(rng):
    """Same input, same keep_prob, no seed: CSE must keep both impure masks."""
    x = gc.placeholder(F64, [None, 200])
    a, b = gc.nn.dropout(x, 0.5), gc.nn.dropout(x, 0.5)
    for av, bv in run_both([a, b], {x: np.ones((5, 200))}):
        assert not np.array_equal(av, bv)
    with open_session(True) as sess:
        source = sess.source([a, b], {x: np.ones((5, 200))})
    assert source.count("random_uniform_like_impl(rngs[") == 2


def test_keep_prob_fed_and_rate_and_noise_shape(rng):
    x, keep, up, y, dx = _dropout_graph()
    xv = rng.standard_normal((20, 50))
    with open_session(True) as sess:
        np.testing.assert_array_equal(sess.run(y, {x: xv, keep: 1.0}), xv)
        zeros = [(sess.run(y, {x: xv, keep: 0.25}) == 0).mean() for _ in range(4)]
    assert abs(np.mean(zeros) - 0.75) < 0.05  # 4000 draws: 5 standard deviations is 0.034
    z = gc.placeholder(F64, [None, 6])
    rows = gc.nn.dropout(z, rate=0.5, noise_shape=[4, 1], seed=1)
    assert gc.nn.dropout(z, keep_prob=1.0) is z
    got = run_both(rows, {z: np.ones((4, 6))})[0]
    assert set(np.unique(got)) <= {0.0, 2.0} and all(len(set(r)) == 1 for r in got)


@pytest.mark.parametrize("kwargs,pattern", [
    ({}, "exactly one"), ({"keep_prob": 0.5, "rate": 0.5}, "exactly one"),
    ({"keep_prob": 0.0}, r"in \(0, 1\]"), ({"rate": 1.0}, r"in \(0, 1\]")])
def test_dropout_bad_arguments(kwargs, pattern):
    with pytest.raises(GraphError, match=pattern):
        gc.nn.dropout(gc.placeholder(gc.float32, [3]), **kwargs)


def test_layers_dropout_follows_the_training_flag():
    x = gc.placeholder(F64, [None, 100])
    training = gc.placeholder(gc.bool, [])
    y = gc.layers.dropout(x, rate=0.5, training=training)
    assert gc.layers.dropout(x, rate=0.5) is x
    with open_session(False) as sess:
        np.testing.assert_array_equal(sess.run(y, {x: np.ones((2, 100)), training: False}), 1.0)
        assert (sess.run(y, {x: np.ones((2, 100)), training: True}) == 0).any()


# -- moments and batch normalization -------------------------------------------------------------
def test_moments_and_batch_normalization_values(rng):
    xv = rng.standard_normal((6, 3, 4))
    x = gc.constant(xv)
    mean, var = gc.nn.moments(x, axes=[0, 1])
    mk, vk = gc.nn.moments(x, axes=[0], keep_dims=True)
    offset, scale = gc.constant(rng.standard_normal(4)), gc.constant(rng.random(4) + 0.5)
    y = gc.nn.batch_normalization(x, mean, var, offset, scale, 1e-3)
    for m, v, m2, v2, yv in run_both([mean, var, mk, vk, y]):
        np.testing.assert_allclose(m, xv.mean((0, 1)), rtol=1e-13)
        np.testing.assert_allclose(v, xv.var((0, 1)), rtol=1e-13)
        assert m2.shape == v2.shape == (1, 3, 4)
        want = (xv - xv.mean((0, 1))) / np.sqrt(xv.var((0, 1)) + 1e-3)
        np.testing.assert_allclose(yv, want * scale.attrs["value"] + offset.attrs["value"],
                                   rtol=1e-12)


def test_batch_normalization_gradients_and_second_order(rng):
    """Training-mode normalization (statistics of x itself): gradients in x, scale and
    offset, and Hessian-vector products (moments keeps the mean differentiable inside
    the variance, so second derivatives are exact)."""
    x = gc.placeholder(F64, [5, 3])
    scale, offset = gc.placeholder(F64, [3]), gc.placeholder(F64, [3])
    mean, var = gc.nn.moments(x, [0])
    y = gc.nn.batch_normalization(x, mean, var, offset, scale, 1e-3)
    loss = gc.reduce_sum(gc.tanh(y) * rng.standard_normal((5, 3)))
    feeds = {x: rng.standard_normal((5, 3)), scale: rng.random(3) + 0.5,
             offset: rng.standard_normal(3)}
    check_gradients(loss, [x, scale, offset], feeds, rng, what="batch norm")
    check_hessian_vector_products(loss, [x, scale], feeds, rng, what="batch norm")


def _bn_layer(shape, axis=-1, momentum=0.0):
    x = gc.placeholder(F64, shape)
    training = gc.placeholder(gc.bool, [])
    y = gc.layers.batch_normalization(x, axis=axis, momentum=momentum, training=training)
    return x, training, y, gc.get_collection(gc.GraphKeys.UPDATE_OPS)


@pytest.mark.parametrize("shape,axis", [([None, 4], -1), ([None, 3, 3, 2], 3),
                                        ([None, 2, 3, 3], 1)])
def test_batch_norm_training_against_inference(shape, axis, rng):
    """momentum 0: one training step stores the batch statistics as the moving ones, after
    which inference on the same batch reproduces the training output."""
    x, training, y, updates = _bn_layer(shape, axis)
    assert len(updates) == 2
    names = {v.op.name for v in gc.global_variables()}
    assert names == {f"batch_normalization/{n}" for n in
                     ("gamma", "beta", "moving_mean", "moving_variance")}
    assert len(gc.trainable_variables()) == 2
    xv = rng.standard_normal([7] + shape[1:]) * 3 + 1
    axes = tuple(i for i in range(len(shape)) if i != axis % len(shape))
    for optimize in (False, True):
        with open_session(optimize) as sess:
            before = sess.run(y, {x: xv, training: False})
            np.testing.assert_allclose(before, xv / np.sqrt(1 + 1e-3), rtol=1e-12)
            trained, _ = sess.run([y, updates], {x: xv, training: True})
            want = (xv - xv.mean(axes, keepdims=True)) / np.sqrt(xv.var(axes, keepdims=True)
                                                                 + 1e-3)
            np.testing.assert_allclose(trained, want, rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(sess.run(y, {x: xv, training: False}), trained,
                                       rtol=1e-10, atol=1e-12)


def test_batch_norm_moving_averages_follow_momentum(rng):
    x, training, y, updates = _bn_layer([None, 3], momentum=0.9)
    moving_mean = next(v for v in gc.global_variables() if v.op.name.endswith("moving_mean"))
    moving_var = next(v for v in gc.global_variables() if v.op.name.endswith("moving_variance"))
    want_m, want_v = np.zeros(3), np.ones(3)
    with open_session(True) as sess:
        for step in range(3):
            xv = rng.standard_normal((6, 3)) + step
            sess.run(gc.group(*updates), {x: xv, training: True})
            want_m = 0.9 * want_m + 0.1 * xv.mean(0)
            want_v = 0.9 * want_v + 0.1 * xv.var(0)
        sess.run(updates, {x: xv, training: False})  # inference leaves them unchanged
        np.testing.assert_allclose(sess.run(moving_mean), want_m, rtol=1e-12)
        np.testing.assert_allclose(sess.run(moving_var), want_v, rtol=1e-12)


def test_batch_norm_python_training_flag_and_fused_batch_norm(rng):
    xv = rng.standard_normal((4, 2, 2, 3))
    x = gc.placeholder(F64, [None, 2, 2, 3])
    inference = gc.layers.batch_normalization(x, training=False)
    assert not gc.get_collection(gc.GraphKeys.UPDATE_OPS)
    train = gc.layers.batch_normalization(x, training=True, center=False, scale=False)
    assert len(gc.get_collection(gc.GraphKeys.UPDATE_OPS)) == 2
    y, mean, var = gc.nn.fused_batch_norm(x, gc.constant(np.ones(3)), gc.constant(np.zeros(3)),
                                          epsilon=1e-3)
    with open_session(False) as sess:
        got_inf, got_train, got_y, got_mean = sess.run([inference, train, y, mean], {x: xv})
    np.testing.assert_allclose(got_inf, xv / np.sqrt(1 + 1e-3), rtol=1e-12)
    np.testing.assert_allclose(got_train, got_y, rtol=1e-12)
    np.testing.assert_allclose(got_mean, xv.mean((0, 1, 2)), rtol=1e-12)


# -- embedding lookup and dense ------------------------------------------------------------------
def test_embedding_lookup_values_and_scatter_add_gradient(rng):
    params = gc.placeholder(F64, [5, 3])
    ids = np.array([[4, 1], [1, 1], [0, 4]])
    rows = gc.nn.embedding_lookup(params, ids)
    assert rows.shape == (3, 2, 3)
    pv = rng.standard_normal((5, 3))
    np.testing.assert_array_equal(run_both(rows, {params: pv})[0], pv[ids])
    loss = gc.reduce_sum(gc.tanh(rows) * rng.standard_normal((3, 2, 3)))
    grad, = check_gradients(loss, [params], {params: pv}, rng, what="embedding")
    assert not grad[2].any() and not grad[3].any()  # rows never looked up get nothing


def test_embedding_lookup_shards_and_max_norm(rng):
    shards = [rng.standard_normal((2, 3)) for _ in range(3)]
    ids = np.array([0, 5, 3, 1])
    mod = gc.nn.embedding_lookup([gc.constant(s) for s in shards], ids)
    div = gc.nn.embedding_lookup([gc.constant(s) for s in shards], ids, partition_strategy="div")
    clipped = gc.nn.embedding_lookup(gc.constant(np.full((2, 4), 3.0)), [1], max_norm=2.0)
    got_mod, got_div, got_clip = run_both([mod, div, clipped])[0]
    table = np.concatenate(shards)
    np.testing.assert_array_equal(got_div, table[ids])
    np.testing.assert_array_equal(got_mod, [shards[i % 3][i // 3] for i in ids])
    np.testing.assert_allclose(np.linalg.norm(got_clip, axis=-1), 2.0, rtol=1e-6)


def test_layers_dense_gradients_and_tf1_names(rng):
    x = gc.placeholder(F64, [None, 4, 3])  # rank 3: the kernel applies to the last axis
    reg = []
    h = gc.layers.dense(x, 5, activation=gc.tanh, kernel_regularizer=lambda w: reg.append(w)
                        or gc.reduce_sum(w * w))
    out = gc.layers.dense(h, 2, use_bias=False, name="logits")
    assert [v.op.name for v in gc.trainable_variables()] == ["dense/kernel", "dense/bias",
                                                          "logits/kernel"]
    assert out.shape == (None, 4, 2) and len(gc.get_collection("regularization_losses")) == 1
    loss = gc.reduce_sum(out * out)
    check_gradients(loss, gc.trainable_variables() + [x], {x: rng.standard_normal((2, 4, 3))},
                    rng, what="dense")
