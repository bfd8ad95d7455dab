"""gc.contrib: TF1's tf.contrib.layers / tf.contrib.rnn names on graphc's layers, and the
regularization collection they fill (graphc/contrib/)."""
import numpy as np
import pytest

import graphc as tf
from graphc.contrib import layers as cl

BACKENDS = ["numpy", "llvm"]


def contrib_mlp(scale, seed=1):
    """The classic TF1 contrib MLP: xavier + fully_connected + l2_regularizer + Adam."""
    x = tf.placeholder(tf.float32, [None, 64], name="x")
    y = tf.placeholder(tf.int64, [None], name="y")
    reg = tf.contrib.layers.l2_regularizer(scale)
    init = tf.contrib.layers.xavier_initializer(seed=seed)
    h = tf.contrib.layers.fully_connected(x, 32, weights_initializer=init,
                                          weights_regularizer=reg)
    logits = tf.contrib.layers.fully_connected(h, 10, activation_fn=None,
                                               weights_initializer=init,
                                               weights_regularizer=reg)
    xent = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y,
                                                                         logits=logits))
    reg_loss = tf.losses.get_regularization_loss()
    train = tf.train.AdamOptimizer(0.01).minimize(xent + reg_loss)
    return x, y, xent, reg_loss, train


@pytest.mark.parametrize("backend", BACKENDS)
def test_contrib_mlp_trains_on_digits_with_l2_penalty(backend):
    images, labels = tf.data.load_digits()
    scale = 0.01
    x, y, xent, reg_loss, train = contrib_mlp(scale)
    weights = tf.get_collection(tf.GraphKeys.WEIGHTS)
    assert [w.op.name for w in weights] == ["fully_connected/weights", "fully_connected_1/weights"]
    assert len(tf.get_collection(tf.GraphKeys.REGULARIZATION_LOSSES)) == 2
    rng = np.random.default_rng(0)
    with tf.Session(backend=backend) as sess:
        sess.run(tf.global_variables_initializer())
        losses = []
        for _ in range(150):
            idx = rng.integers(0, len(images), 64)
            value, _ = sess.run([xent, train], {x: images[idx], y: labels[idx]})
            losses.append(value)
        penalty, ws = sess.run([reg_loss, weights])
    assert np.mean(losses[-20:]) < 0.5 * np.mean(losses[:5])
    # TF1's l2_regularizer is scale * l2_loss(w) = scale * sum(w ** 2) / 2.
    expected = sum(scale * np.sum(w.astype(np.float64) ** 2) / 2 for w in ws)
    np.testing.assert_allclose(penalty, expected, rtol=1e-5)


def test_fully_connected_defaults_relu_and_variable_names():
    x = tf.constant(np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4))
    out = tf.contrib.layers.fully_connected(x, 5, scope="fc")
    names = [v.op.name for v in tf.trainable_variables()]
    assert names == ["fc/weights", "fc/biases"]
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        got, w = sess.run([out, tf.trainable_variables()[0]])
    np.testing.assert_allclose(got, np.maximum(sess_x(x) @ w, 0.0), rtol=1e-5, atol=1e-6)
    with tf.variable_scope("", reuse=True):
        again = tf.contrib.layers.fully_connected(x, 5, scope="fc", reuse=True)
    assert again is not out and len(tf.trainable_variables()) == 2
    assert len(tf.get_collection(tf.GraphKeys.WEIGHTS)) == 1  # reuse lists it once


def sess_x(x):
    with tf.Session() as sess:
        return sess.run(x)


def test_get_variable_regularizer_and_layers_kernel_regularizer_fill_the_collection():
    reg = tf.contrib.layers.l1_regularizer(0.5)
    w = tf.get_variable("w", [2, 3], initializer=tf.constant_initializer(-2.0),
                        regularizer=reg)
    with tf.variable_scope("", reuse=True):
        tf.get_variable("w", [2, 3], regularizer=reg)  # reused: no second penalty
    tf.layers.dense(tf.ones([1, 3]), 2, kernel_initializer=tf.constant_initializer(1.0),
                    kernel_regularizer=tf.contrib.layers.l2_regularizer(0.1))
    losses = tf.losses.get_regularization_losses()
    assert len(losses) == 2
    assert [n.op.name for n in tf.get_collection(tf.GraphKeys.REGULARIZATION_LOSSES)] == \
        [n.op.name for n in losses]
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        got = sess.run(losses + [tf.losses.get_regularization_loss()])
    # l1: 0.5 * 6 * 2 = 6; l2 on a 3x2 kernel of ones: 0.1 * 6 / 2 = 0.3.
    np.testing.assert_allclose(got, [6.0, 0.3, 6.3], rtol=1e-6)
    assert w.op.name == "w"


def test_sum_and_apply_regularization():
    w1 = tf.Variable(np.array([[1.0, -2.0]], np.float32))
    w2 = tf.Variable(np.array([3.0], np.float32))
    reg = tf.contrib.layers.sum_regularizer([tf.contrib.layers.l1_regularizer(1.0), None,
                                             tf.contrib.layers.l2_regularizer(0.0),
                                             tf.contrib.layers.l2_regularizer(2.0)])
    total = tf.contrib.layers.apply_regularization(reg, [w1, w2])
    assert tf.get_collection(tf.GraphKeys.REGULARIZATION_LOSSES)[-1] is total
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        # l1 = 3 + 3; l2 (scale 2, /2) = 5 + 9.
        np.testing.assert_allclose(sess.run(total), 20.0, rtol=1e-6)
    assert tf.contrib.layers.sum_regularizer([None]) is None
    assert tf.contrib.layers.l2_regularizer(0.0)(w1) is None


@pytest.mark.parametrize("bad,error", [(1, "cannot be an integer"), (-0.5, "must be >= 0")])
def test_regularizer_scale_checked_as_tf1(bad, error):
    with pytest.raises(ValueError, match=error):
        tf.contrib.layers.l2_regularizer(bad)


def test_apply_regularization_without_weights_is_clear():
    with pytest.raises(ValueError, match="no weights to regularize"):
        tf.contrib.layers.apply_regularization(tf.contrib.layers.l2_regularizer(0.1))


# -- initializers ------------------------------------------------------------------------------
def test_xavier_uniform_bounds_and_seed():
    fan_in, fan_out = 300, 200
    init = tf.contrib.layers.xavier_initializer(seed=7)
    a = init([fan_in, fan_out])
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    assert a.dtype == np.float32 and np.abs(a).max() <= limit
    assert np.abs(a).max() > 0.99 * limit  # it fills the range
    np.testing.assert_allclose(a.var(), limit ** 2 / 3, rtol=0.03)
    np.testing.assert_array_equal(a, tf.contrib.layers.xavier_initializer(seed=7)([300, 200]))
    assert not np.array_equal(a, init([fan_in, fan_out]))  # next variable: new values


@pytest.mark.parametrize("mode,n", [("FAN_IN", 3 * 3 * 16), ("FAN_OUT", 3 * 3 * 32),
                                    ("FAN_AVG", 3 * 3 * 24)])
def test_contrib_variance_scaling_formula(mode, n):
    """Conv fans count the receptive field; normal: truncated at 2 stddev of
    sqrt(1.3 factor / n); uniform: +-sqrt(3 factor / n)."""
    shape = [3, 3, 16, 32]
    normal = cl.variance_scaling_initializer(2.0, mode, uniform=False, seed=3)(shape)
    stddev = np.sqrt(1.3 * 2.0 / n)
    assert np.abs(normal).max() <= 2 * stddev + 1e-6
    np.testing.assert_allclose(normal.astype(np.float64).var(), (stddev * 0.87962566) ** 2,
                               rtol=0.08)
    uniform = cl.variance_scaling_initializer(1.0, mode, uniform=True, seed=3)(shape)
    limit = np.sqrt(3.0 * 1.0 / n)
    assert np.abs(uniform).max() <= limit and np.abs(uniform).max() > 0.98 * limit


def test_contrib_he_normal_variance():
    """The default (factor 2, FAN_IN, truncated): variance 1.3 * 2 / n * 0.7737 ~ 2 / n."""
    fan_in = 200
    a = tf.contrib.layers.variance_scaling_initializer(seed=0)([fan_in, 400]).astype(np.float64)
    np.testing.assert_allclose(a.var(), 1.3 * 2.0 / fan_in * 0.87962566 ** 2, rtol=0.03)
    assert np.abs(a).max() <= 2 * np.sqrt(1.3 * 2.0 / fan_in) + 1e-6
    np.testing.assert_array_equal(
        a, tf.contrib.layers.variance_scaling_initializer(seed=0)([fan_in, 400]))


def test_contrib_variance_scaling_bad_arguments():
    with pytest.raises(TypeError, match="unknown mode 'fan_in'"):
        tf.contrib.layers.variance_scaling_initializer(mode="fan_in")
    with pytest.raises(ValueError, match="must be floating"):
        tf.contrib.layers.variance_scaling_initializer(dtype=tf.int32)


# -- layers: conv2d, dropout, batch_norm -------------------------------------------------------
def test_conv2d_contrib_defaults_same_padding_relu():
    rng = np.random.default_rng(0)
    images = rng.normal(size=(2, 6, 6, 3)).astype(np.float32)
    out = tf.contrib.layers.conv2d(tf.constant(images), 4, 3, stride=2)
    ref = tf.nn.relu(tf.nn.conv2d(tf.constant(images), tf.trainable_variables()[0],
                                  [1, 2, 2, 1], "SAME"))
    assert [v.op.name for v in tf.trainable_variables()] == ["Conv/weights", "Conv/biases"]
    assert out.shape == (2, 3, 3, 4)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        got, want = sess.run([out, ref])
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert (got == 0).any() and (got > 0).any()


def test_dropout_is_training_switch():
    ones = tf.ones([200, 50])
    training = tf.placeholder(tf.bool, [])
    out = tf.contrib.layers.dropout(ones, keep_prob=0.5, is_training=training, seed=1)
    with tf.Session() as sess:
        kept = sess.run(out, {training: True})
        np.testing.assert_array_equal(sess.run(out, {training: False}), np.ones((200, 50)))
    assert set(np.unique(kept)) == {0.0, 2.0}
    assert abs((kept > 0).mean() - 0.5) < 0.03
    assert tf.contrib.layers.dropout(ones, is_training=False) is ones


def test_batch_norm_maps_onto_batch_normalization():
    x = tf.placeholder(tf.float32, [None, 3])
    out = tf.contrib.layers.batch_norm(x, decay=0.9, is_training=True)
    names = [v.op.name for v in tf.global_variables()]
    assert names == ["BatchNorm/beta", "BatchNorm/moving_mean", "BatchNorm/moving_variance"]
    updates = tf.get_collection(tf.GraphKeys.UPDATE_OPS)
    data = np.random.default_rng(0).normal(2.0, 3.0, size=(64, 3)).astype(np.float32)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        got, _ = sess.run([out, updates], {x: data})
        mean = sess.run(tf.global_variables()[1])
    want = (data - data.mean(0)) / np.sqrt(data.var(0) + 0.001)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(mean, 0.1 * data.mean(0), rtol=1e-5)


def test_batch_norm_updates_collections_none_updates_in_place():
    x = tf.placeholder(tf.float32, [None, 2])
    out = tf.contrib.layers.batch_norm(x, decay=0.5, scale=True, is_training=True,
                                       updates_collections=None)
    assert tf.get_collection(tf.GraphKeys.UPDATE_OPS) == []
    moving_mean = [v for v in tf.global_variables() if v.op.name.endswith("moving_mean")][0]
    data = np.array([[1.0, 2.0], [3.0, 6.0]], np.float32)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        sess.run(out, {x: data})  # fetching the output alone runs the updates
        np.testing.assert_allclose(sess.run(moving_mean), [1.0, 2.0])


def test_batch_norm_refuses_what_it_cannot_map():
    with pytest.raises(tf.errors.GraphError, match="does not support renorm"):
        tf.contrib.layers.batch_norm(tf.ones([2, 2]), renorm=True)


# -- contrib.rnn -------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_contrib_rnn_lstm_equals_nn_rnn_cell(backend):
    assert tf.contrib.rnn.BasicLSTMCell is tf.nn.rnn_cell.BasicLSTMCell
    assert tf.contrib.rnn.LSTMStateTuple is tf.nn.rnn_cell.LSTMStateTuple
    rng = np.random.default_rng(2)
    x = tf.constant(rng.normal(size=(3, 4, 5)).astype(np.float32))
    steps = tf.unstack(x, axis=1)
    tf.set_random_seed(0)
    with tf.variable_scope("contrib"):
        cell = tf.contrib.rnn.MultiRNNCell([tf.contrib.rnn.LSTMCell(6) for _ in range(2)])
        out_c, state_c = tf.contrib.rnn.static_rnn(cell, steps, dtype=tf.float32)
    with tf.variable_scope("core"):
        cell = tf.nn.rnn_cell.MultiRNNCell([tf.nn.rnn_cell.LSTMCell(6) for _ in range(2)])
        out_n, state_n = tf.nn.static_rnn(cell, steps, dtype=tf.float32)
    contrib_vars = tf.trainable_variables("contrib")
    core_vars = tf.trainable_variables("core")
    assert [v.op.name[len("contrib"):] for v in contrib_vars] == \
        [v.op.name[len("core"):] for v in core_vars]
    copy = tf.group(*[tf.assign(c, n) for c, n in zip(contrib_vars, core_vars)])
    with tf.Session(backend=backend) as sess:
        sess.run(tf.global_variables_initializer())
        sess.run(copy)
        a, b = sess.run([(out_c, state_c), (out_n, state_n)])
    for u, v in zip(_flat(a), _flat(b)):
        np.testing.assert_allclose(u, v, rtol=1e-6)


def _flat(s):
    if isinstance(s, (list, tuple)):
        return [leaf for item in s for leaf in _flat(item)]
    return [s]


@pytest.mark.parametrize("backend", BACKENDS)
def test_dropout_wrapper_keeps_expectation(backend):
    """Input/output/state masks are fresh per run; their mean over many runs is the input."""
    cell = tf.contrib.rnn.BasicRNNCell(4, activation=tf.identity)
    wrapped = tf.contrib.rnn.DropoutWrapper(cell, input_keep_prob=0.5, output_keep_prob=0.8,
                                            seed=3)
    x = tf.constant(np.full((50, 4), 1.0, np.float32))
    state = tf.zeros([50, 4])
    out, _ = wrapped(x, state)
    ref, _ = cell(x, state)
    with tf.Session(backend=backend) as sess:
        sess.run(tf.global_variables_initializer())
        runs = np.stack([sess.run(out) for _ in range(40)])
        want = sess.run(ref)
    assert not np.array_equal(runs[0], runs[1])  # impure: a new mask every run
    assert (runs == 0).mean() > 0.2
    np.testing.assert_allclose(runs.mean(axis=(0, 1)), want.mean(axis=0),
                               rtol=0.15, atol=0.15 * np.abs(want).mean())


def test_dropout_wrapper_keep_prob_one_is_identity_and_state_spares_lstm_c():
    cell = tf.contrib.rnn.BasicLSTMCell(3)
    x = tf.constant(np.ones((4, 2), np.float32))
    state = cell.zero_state(4, tf.float32)
    same = tf.contrib.rnn.DropoutWrapper(cell)
    out_same, _ = same(x, state)
    out_ref, state_ref = cell(x, state)
    dropped = tf.contrib.rnn.DropoutWrapper(cell, state_keep_prob=0.5, seed=1)
    out_d, state_d = dropped(x, state)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        a, b, c_ref, c_d, h_d = sess.run([out_same, out_ref, state_ref.c, state_d.c,
                                          state_d.h])
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(c_ref, c_d)  # TF1's default state filter keeps c
    assert (h_d == 0).any()
    with pytest.raises(tf.errors.GraphError, match="variational_recurrent"):
        tf.contrib.rnn.DropoutWrapper(cell, variational_recurrent=True)


# -- names -------------------------------------------------------------------------------------
@pytest.mark.parametrize("path,missing", [("contrib", "slim"), ("contrib", "learn"),
                                          ("contrib.layers", "layer_norm"),
                                          ("contrib.rnn", "AttentionCellWrapper")])
def test_unknown_contrib_names_are_clear(path, missing):
    module = tf
    for part in path.split("."):
        module = getattr(module, part)
    with pytest.raises(AttributeError, match=rf"^module 'graphc\.{path}' has no attribute "
                       rf"'{missing}': graphc does not have tf\.{path}\.{missing}; graphc's "
                       r"contrib covers only contrib\.layers and contrib\.rnn"):
        getattr(module, missing)
    assert not hasattr(module, missing)


def test_unknown_contrib_layers_name_lists_what_is_there():
    with pytest.raises(AttributeError, match=r"has only: .*fully_connected.*xavier"):
        tf.contrib.layers.repeat  # noqa: B018
