"""TF1's semantics where graphc used to differ (issue 15, part 2): ``gradients`` gives None for
an unconnected x (zeros on request), ``compute_gradients`` gives ``(None, v)`` pairs that
``apply_gradients`` skips, feeds convert with ``np.asarray(value, dtype)`` as
``Session.run`` does, and ``get_variable`` takes a tensor initializer."""
import warnings

import numpy as np
import pytest

import graphc as gc
from graphc.errors import FeedError, ShapeError

BACKENDS = ("numpy", "llvm")


# -- gradients of unconnected inputs -------------------------------------------------------------
def test_gradients_give_none_for_an_unconnected_x_and_zeros_on_request():
    x = gc.placeholder(gc.float64, [3])
    unused = gc.placeholder(gc.float64, [2])
    W = gc.Variable(np.ones(2), name="W")
    loss = gc.reduce_sum(x * x) + gc.reduce_sum(gc.round(x))
    gx, gu, gW = gc.gradients(loss, [x, unused, W])
    assert gu is None and gW is None
    assert gc.gradients(gc.reduce_sum(gc.round(x)), [x]) == [None]   # round: no gradient
    assert gc.gradients(gc.reduce_sum(gc.stop_gradient(x)), x) == [None]
    zu, zW = gc.gradients(loss, [unused, W], unconnected_gradients="zero")
    (zx,) = gc.gradients(gc.reduce_sum(gc.round(x)), [x],
                         unconnected_gradients=gc.UnconnectedGradients.ZERO)
    with gc.Session() as sess:
        sess.run(gc.global_variables_initializer())
        got = sess.run([gx, zu, zW, zx], {x: [1.0, 2.0, 3.0], unused: [7.0, 8.0]})
    for value, ref in zip(got, [[2.0, 4.0, 6.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0, 0.0]]):
        np.testing.assert_array_equal(value, ref)


def test_filtering_none_gradients_as_tf1_code_does():
    x = gc.placeholder(gc.float32, [4, 2])
    W = gc.Variable(np.ones((2, 1), np.float32), name="W")
    frozen = gc.Variable(np.ones(3, np.float32), name="frozen")
    loss = gc.reduce_mean(gc.matmul(x, W))
    params = gc.trainable_variables()
    grads = gc.gradients(loss, params)
    kept = [(g, v) for g, v in zip(grads, params) if g is not None]
    assert [v for _, v in kept] == [W]
    clipped, _ = gc.clip_by_global_norm(grads, 1.0)   # None entries pass through, as TF1
    assert clipped[1] is None and frozen.trainable


# -- optimizers: (None, v) pairs ----------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_compute_gradients_gives_none_pairs_and_apply_gradients_skips_them(backend):
    w = gc.Variable(np.array([1.0, -2.0]), name="w")
    unused = gc.Variable(np.array([5.0]), name="unused")
    opt = gc.train.AdamOptimizer(0.1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pairs = opt.compute_gradients(gc.reduce_sum(w * w))
    assert [(g is None, v) for g, v in pairs] == [(False, w), (True, unused)]
    assert any("'unused' is not connected" in str(m.message) for m in caught)
    train = opt.apply_gradients(pairs)
    assert opt.get_slot(unused, "m") is None   # no state for a skipped variable
    with gc.Session(backend=backend) as sess:
        sess.run(gc.global_variables_initializer())
        sess.run(train)
        after_w, after_unused = sess.run([w, unused])
    np.testing.assert_allclose(after_w, [0.9, -1.9], rtol=1e-6)   # Adam's first step: lr sign(g)
    np.testing.assert_array_equal(after_unused, [5.0])
    with pytest.raises(gc.errors.GradientError, match="no gradients provided"):
        opt.apply_gradients([(None, w), (None, unused)])


# -- feeds convert as TF1's Session.run ---------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_float_labels_fed_to_an_int_placeholder_convert(backend):
    labels = gc.placeholder(gc.int32, [None, 1])
    flags = gc.placeholder(gc.bool, [2])
    x = gc.placeholder(gc.float32, [None, 1])
    out = gc.cast(labels, gc.float32) * x
    with gc.Session(backend=backend) as sess:
        got, got_labels, got_flags = sess.run(
            [out, labels, flags], {labels: [[1.], [2.]], x: [[0.5], [0.5]], flags: [0.0, 2.0]})
    np.testing.assert_array_equal(got, [[0.5], [1.0]])
    assert got_labels.dtype == np.int32
    np.testing.assert_array_equal(got_labels, np.asarray([[1.], [2.]], np.int32))
    np.testing.assert_array_equal(got_flags, [False, True])
    step = gc.compile(out, feeds=[labels, x], backend=backend)
    np.testing.assert_array_equal(step({labels: np.array([[3.7], [-1.2]]), x: [[1.0], [1.0]]}),
                                  [[3.0], [-1.0]])   # np.asarray truncates toward zero


def test_feeds_that_cannot_convert_are_refused():
    labels = gc.placeholder(gc.int64, [2], name="labels")
    with gc.Session() as sess:
        with pytest.raises(FeedError, match=r"cannot feed a float64 value holding NaN or Inf "
                                            r"to int64 placeholder 'labels'"):
            sess.run(labels, {labels: [1.0, np.nan]})
        with pytest.raises(FeedError, match=r"cannot convert the value fed to placeholder "
                                            r"'labels' to an array"):
            sess.run(labels, {labels: [[1], [2, 3]]})
        with pytest.raises(FeedError, match=r"cannot feed a value of dtype <U1"):
            sess.run(labels, {labels: ["a", "b"]})
        with pytest.raises(FeedError, match=r"expects i64\[2\], fed \[3\]"):
            sess.run(labels, {labels: [1.0, 2.0, 3.0]})


# -- get_variable with a tensor initializer ------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_get_variable_with_a_tensor_initializer(backend):
    with gc.variable_scope("model"):
        bias = gc.get_variable("bias", initializer=gc.constant(0.0))
        table = gc.get_variable("table", initializer=gc.constant([[1, 2], [3, 4]]))
        same = gc.get_variable("same", [2], initializer=gc.constant([1.5, 2.5]))
        array = gc.get_variable("array", initializer=np.ones((2, 3)), dtype=gc.float64)
    assert (bias.op.name, bias.dtype, tuple(bias.shape)) == ("model/bias", gc.float32, ())
    assert table.dtype == gc.int32 and tuple(table.shape) == (2, 2)
    assert array.dtype == gc.float64 and tuple(array.shape) == (2, 3)
    with gc.Session(backend=backend) as sess:
        sess.run(gc.global_variables_initializer())
        got = sess.run([bias, table, same, array])
    for value, ref in zip(got, [0.0, [[1, 2], [3, 4]], [1.5, 2.5], np.ones((2, 3))]):
        np.testing.assert_array_equal(value, ref)
    with pytest.raises(ShapeError, match=r"initializer const '[^']*' of 'wrong' is f32\[2\], "
                                         r"asked for shape \[3\](.|\n)*leave out shape"):
        gc.get_variable("wrong", [3], initializer=gc.constant([1.0, 2.0]))
    with pytest.raises(ShapeError, match=r"variable 'shapeless' needs a static shape"):
        gc.get_variable("shapeless")
