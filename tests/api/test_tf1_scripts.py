"""TF1 scripts as TF1 users write them: shapeless scalar placeholders, variable scopes with
reuse, tf.layers with UPDATE_OPS under control_dependencies, global_step, and the small
composites TF1 code reaches for (squared_difference, nn.relu6, nn.elu, nn.xw_plus_b)."""
import numpy as np
import pytest

import graphc as tf
from graphc.errors import GraphError, ShapeError


@pytest.fixture(autouse=True)
def fresh_graph():
    tf.reset_default_graph()


def test_placeholder_without_shape_takes_any_shape():
    """As TF1: no shape is an unknown shape. A scalar learning rate works as it always did; a
    vector broadcasts as NumPy would (issue 15: each fed shape compiles its own step)."""
    lr = tf.placeholder(tf.float32, name="lr")
    x = tf.placeholder(tf.float32, [None, 2], name="x")
    y = x * lr
    assert lr.shape is None and lr.get_shape().ndims is None
    with tf.Session() as sess:
        np.testing.assert_array_equal(sess.run(y, {x: [[1.0, 2.0]], lr: 0.5}), [[0.5, 1.0]])
        np.testing.assert_array_equal(sess.run(y, {x: [[1.0, 2.0]], lr: [0.5, 2.0]}),
                                      [[0.5, 4.0]])
        with pytest.raises(ShapeError, match=r"cannot broadcast f32\[1,2\] with f32\[3\]"):
            sess.run(y, {x: [[1.0, 2.0]], lr: [0.5, 0.5, 0.5]})


def test_variable_scope_reuse_shares_one_variable():
    def encoder(inp):
        W = tf.get_variable("W", [3, 2], initializer=tf.ones_initializer())
        return tf.matmul(inp, W)
    a, b = tf.placeholder(tf.float32, [1, 3]), tf.placeholder(tf.float32, [1, 3])
    with tf.variable_scope("enc"):
        ya = encoder(a)
    with tf.variable_scope("enc", reuse=True):
        yb = encoder(b)
    assert [v.op.name for v in tf.trainable_variables()] == ["enc/W"]
    grads = tf.gradients(tf.reduce_sum(ya) + 2.0 * tf.reduce_sum(yb), tf.trainable_variables())
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        g = sess.run(grads[0], {a: [[1.0, 0.0, 0.0]], b: [[0.0, 1.0, 0.0]]})
    # Both uses of the shared W contribute: row 0 from a (x1), row 1 from b (x2).
    np.testing.assert_array_equal(g, [[1.0, 1.0], [2.0, 2.0], [0.0, 0.0]])


def test_auto_reuse_and_reuse_variables():
    with tf.variable_scope("s", reuse=tf.AUTO_REUSE):
        first = tf.get_variable("v", [2])
        again = tf.get_variable("v", [2])
    assert first is again and first.op.name == "s/v"
    with tf.variable_scope("t") as scope:
        w = tf.get_variable("w", [4])
        scope.reuse_variables()
        assert tf.get_variable("w", [4]) is w
        with tf.variable_scope("inner"):  # reuse is inherited, as in TF1
            assert tf.get_variable_scope().reuse is True


def test_variable_scope_errors_name_the_variable():
    with tf.variable_scope("enc"):
        tf.get_variable("W", [3, 2])
    with pytest.raises(GraphError, match=r"variable 'enc/W' already exists(.|\n)*reuse=True"):
        with tf.variable_scope("enc"):
            tf.get_variable("W", [3, 2])
    with pytest.raises(GraphError, match=r"'enc/U' does not exist"):
        with tf.variable_scope("enc", reuse=True):
            tf.get_variable("U", [3, 2])
    with pytest.raises(ShapeError, match=r"'enc/W' has shape \[3, 2\], asked for \[2, 3\]"):
        with tf.variable_scope("enc", reuse=True):
            tf.get_variable("W", [2, 3])


def _central_difference(f, v, eps=1e-6):
    """Elementwise derivative of an elementwise f (one difference per element, so a large
    element's rounding does not pollute the others)."""
    h = eps * np.maximum(1.0, np.abs(v))
    return (f(v + h) - f(v - h)) / (2 * h)


@pytest.mark.parametrize("name, fn, ref", [
    ("relu6", tf.nn.relu6, lambda v: np.minimum(np.maximum(v, 0), 6)),
    ("elu", tf.nn.elu, lambda v: np.where(v > 0, v, np.expm1(np.minimum(v, 0)))),
    ("squared_difference", lambda t: tf.squared_difference(t, 0.25), lambda v: (v - 0.25) ** 2),
])
def test_tf1_composites_forward_and_gradient(name, fn, ref):
    # Points away from the kinks (0 and 6), plus a large one: elu must stay finite there.
    v = np.array([-3.1, -0.7, 0.4, 2.3, 7.5, 900.0])
    x = tf.placeholder(tf.float64, [6])
    y = fn(x)
    g = tf.gradients(tf.reduce_sum(y), x)[0]
    with tf.Session() as sess:
        got, grad = sess.run([y, g], {x: v})
    np.testing.assert_allclose(got, ref(v), rtol=1e-12)
    np.testing.assert_allclose(grad, _central_difference(ref, v),
                               rtol=1e-6, atol=1e-6)
    assert np.all(np.isfinite(grad))


def test_xw_plus_b():
    x = tf.constant(np.arange(6.0).reshape(2, 3))
    w = tf.constant(np.ones((3, 2)))
    b = tf.constant(np.array([1.0, -1.0]))
    with tf.Session() as sess:
        np.testing.assert_array_equal(sess.run(tf.nn.xw_plus_b(x, w, b)), [[4, 2], [13, 11]])


def test_tf1_training_script_with_layers_dropout_bn_and_global_step():
    xs, ys = tf.data.load_digits()
    x = tf.placeholder(tf.float32, [None, 64], name="x")
    y_ = tf.placeholder(tf.int64, [None], name="y")
    keep_prob = tf.placeholder(tf.float32, name="keep_prob")
    is_training = tf.placeholder(tf.bool, name="is_training")
    global_step = tf.Variable(0, name="global_step", trainable=False)
    with tf.name_scope("model"):
        h = tf.layers.dense(x, 64, activation=tf.nn.relu, name="fc1")
        h = tf.layers.batch_normalization(h, training=is_training)
        h = tf.nn.dropout(h, keep_prob)
        logits = tf.layers.dense(h, 10, name="logits")
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y_,
                                                                         logits=logits))
    update_ops = tf.get_collection(tf.GraphKeys.UPDATE_OPS)
    assert update_ops, "batch_normalization must register its moving-average updates"
    with tf.control_dependencies(update_ops):
        train_op = tf.train.AdamOptimizer(3e-3).minimize(loss, global_step=global_step)
    acc = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, 1), y_), tf.float32))
    moving = [v for v in tf.global_variables() if "moving_mean" in v.op.name]
    assert len(moving) == 1
    rng = np.random.default_rng(0)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        for _ in range(150):
            idx = rng.integers(0, len(xs), 64)
            sess.run(train_op, {x: xs[idx], y_: ys[idx], keep_prob: 0.7, is_training: True})
        step, mean = sess.run([global_step, moving[0]])
        test_acc = sess.run(acc, {x: xs, y_: ys, keep_prob: 1.0, is_training: False})
    assert step == 150
    assert np.abs(mean).max() > 0.01  # the moving mean moved: UPDATE_OPS ran in the step
    assert test_acc > 0.9


def test_unsupported_tf1_module_is_a_clear_attribute_error():
    with pytest.raises(AttributeError, match="has no attribute 'slim'"):
        tf.contrib.slim.fully_connected(tf.constant([[1.0]]), 1)


def test_placeholder_with_default_is_used_unless_fed():
    training = tf.placeholder_with_default(False, shape=(), name="training")
    scale = tf.placeholder_with_default(np.array([1.0, 2.0]), shape=[None], name="scale")
    out = tf.where(training, scale * 10.0, scale)
    assert training.dtype == tf.bool and scale.dtype == tf.float64
    with tf.Session() as sess:
        np.testing.assert_array_equal(sess.run(out), [1.0, 2.0])
        np.testing.assert_array_equal(sess.run(out, {training: True}), [10.0, 20.0])
        np.testing.assert_array_equal(sess.run(out, {training: True, scale: [3.0]}), [30.0])
    with pytest.raises(ShapeError, match=r"the default has shape \[2\], the placeholder \[3\]"):
        tf.placeholder_with_default([1.0, 2.0], shape=[3])


def test_layers_reuse_variables_in_a_reusing_variable_scope():
    x = tf.placeholder(tf.float32, [None, 8, 8, 1], name="x")
    training = tf.placeholder_with_default(False, shape=())

    def tower(reuse):
        with tf.variable_scope("tower", reuse=reuse):
            c = tf.layers.conv2d(x, 4, 3, padding="same", activation=tf.nn.relu, name="conv")
            f = tf.layers.flatten(tf.layers.max_pooling2d(c, 2, 2))
            f = tf.layers.dropout(f, rate=0.5, training=training)
            return tf.layers.dense(f, 3, name="out")

    train_logits, eval_logits = tower(False), tower(True)
    names = [v.op.name for v in tf.trainable_variables()]
    assert names == ["tower/conv/kernel", "tower/conv/bias", "tower/out/kernel", "tower/out/bias"]
    # Without dropout both towers compute the same function of the same variables.
    xv = np.random.default_rng(0).standard_normal((2, 8, 8, 1)).astype(np.float32)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        a, b = sess.run([train_logits, eval_logits], {x: xv})
    np.testing.assert_array_equal(a, b)
    with pytest.raises(GraphError, match="'tower/missing/kernel' does not exist"):
        with tf.variable_scope("tower", reuse=True):
            tf.layers.dense(x, 2, name="missing")


def test_layer_reuse_argument_and_fresh_names_without_reuse():
    x = tf.placeholder(tf.float32, [None, 4])
    first = tf.layers.dense(x, 2, name="fc")
    tf.layers.dense(x, 2, name="fc", reuse=True)
    tf.layers.dense(x, 2)
    tf.layers.dense(x, 2)
    assert [v.op.name for v in tf.trainable_variables()] == [
        "fc/kernel", "fc/bias", "dense/kernel", "dense/bias", "dense_1/kernel", "dense_1/bias"]
    assert first.shape == (None, 2)


def test_interactive_session_is_the_default_until_closed():
    v = tf.Variable(3.0, name="v")
    doubled = v * 2.0
    sess = tf.InteractiveSession()
    try:
        sess.run(tf.global_variables_initializer())
        assert doubled.eval() == 6.0
        tf.assign_add(v, 1.0).run()
        assert doubled.eval() == 8.0
    finally:
        sess.close()
    with pytest.raises(GraphError, match="no session to evaluate in"):
        doubled.eval()


def test_tf_losses_reduce_as_tf1_and_collect():
    rng = np.random.default_rng(1)
    z = rng.standard_normal((4, 3))
    lab = np.array([0, 2, 1, 2])
    w = np.array([1.0, 0.0, 2.0, 0.5])
    logits = tf.placeholder(tf.float64, [None, 3])
    labels = tf.placeholder(tf.int64, [None])
    mean = tf.losses.sparse_softmax_cross_entropy(labels=labels, logits=logits)
    weighted = tf.losses.sparse_softmax_cross_entropy(labels, logits, weights=w)
    soft = tf.losses.softmax_cross_entropy(tf.one_hot(labels, 3, dtype=tf.float64), logits)
    mse = tf.losses.mean_squared_error(labels=tf.zeros_like(logits), predictions=logits)
    kernel = tf.Variable(np.ones(2), name="kernel")
    tf.add_to_collection(tf.GraphKeys.REGULARIZATION_LOSSES, tf.reduce_sum(kernel))
    total = tf.losses.get_total_loss()
    assert [id(t) for t in tf.losses.get_losses()] == [id(t) for t in (mean, weighted, soft, mse)]
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    per = -logp[np.arange(4), lab]
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        got = sess.run([mean, weighted, soft, mse, total], {logits: z, labels: lab})
    want = [per.mean(), (per * w).sum() / 3, per.mean(), (z ** 2).mean()]
    want.append(sum(want) + 2.0)
    np.testing.assert_allclose(got, want, rtol=1e-12)
