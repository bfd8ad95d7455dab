"""gc.control_dependencies: what is built inside runs after the dependencies (TF1)."""
import numpy as np
import pytest

import graphc as gc


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
@pytest.mark.parametrize("optimize", [False, True])
def test_update_ops_run_with_the_train_op(backend, optimize):
    x = gc.placeholder(gc.float32, [None, 3], name="x")
    w = gc.Variable(np.ones((3, 1), np.float32), name="w")
    count = gc.Variable(np.float32(0), name="count", trainable=False)
    gc.add_to_collection(gc.GraphKeys.UPDATE_OPS, gc.assign_add(count, 1.0))
    loss = gc.reduce_mean(gc.matmul(x, w))
    with gc.control_dependencies(gc.get_collection(gc.GraphKeys.UPDATE_OPS)):
        train = gc.train.GradientDescentOptimizer(0.1).minimize(loss)
    with gc.Session(backend=backend, optimize=optimize) as sess:
        sess.run(gc.global_variables_initializer())
        for _ in range(3):
            sess.run(train, {x: np.ones((2, 3), np.float32)})
        assert sess.run(count) == 3.0
        np.testing.assert_allclose(sess.run(w), np.full((3, 1), 1 - 0.3), rtol=1e-6)
        assert sess.run(loss, {x: np.ones((2, 3), np.float32)}) == pytest.approx(3 * 0.7)
        assert sess.run(count) == 3.0  # fetching the loss alone runs no update


def test_identity_inside_runs_the_dependency_and_keeps_the_value():
    v = gc.Variable(np.float32(1.0), name="v")
    bump = gc.assign_add(v, 1.0)
    with gc.control_dependencies([bump]):
        y = gc.identity(gc.constant(5.0)) * 2.0
    with gc.Session() as sess:
        sess.run(gc.global_variables_initializer())
        assert sess.run(y) == 10.0
        assert sess.run(y) == 10.0
        assert sess.run(v) == 3.0


def test_none_clears_and_gradients_pass_through():
    x = gc.placeholder(gc.float64, [3], name="x")
    v = gc.Variable(np.float64(0.0), name="v")
    bump = gc.assign_add(v, 1.0)
    with gc.control_dependencies([bump]):
        y = gc.reduce_sum(x * x)
        with gc.control_dependencies(None):
            z = gc.reduce_sum(x)
    g, = gc.gradients(y, [x])
    with gc.Session() as sess:
        sess.run(gc.global_variables_initializer())
        np.testing.assert_allclose(sess.run(g, {x: [1.0, 2.0, 3.0]}), [2.0, 4.0, 6.0])
        assert sess.run(v) == 1.0
        sess.run(z, {x: [1.0, 2.0, 3.0]})
        assert sess.run(v) == 1.0


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_a_read_after_an_assign_it_depends_on_sees_the_new_value(backend):
    """TF1: ``with control_dependencies([v.assign_add(1)]): identity(v)`` reads the new v, and
    a loss rebuilt under ``control_dependencies([train_op])`` sees the updated weights. (graphc
    applies assigns when the step ends; before, such a read was a scheduling cycle.)"""
    v = gc.Variable(np.float64(1.0), name="v")
    bump = gc.assign_add(v, 1.0)
    with gc.control_dependencies([bump]):
        seen = gc.identity(v) * 10.0
    x = gc.placeholder(gc.float64, [4, 3], name="x")
    w = gc.Variable(np.ones((3, 1)), name="w")
    loss = gc.reduce_mean(gc.matmul(x, w) ** 2)
    train = gc.train.GradientDescentOptimizer(0.1).minimize(loss, var_list=[w])
    with gc.control_dependencies([train]):
        loss_after = gc.reduce_mean(gc.matmul(x, w) ** 2)
    xb = np.random.RandomState(0).randn(4, 3)
    w1 = np.ones((3, 1)) - 0.1 * xb.T @ (2 * xb @ np.ones((3, 1))) / 4
    with gc.Session(backend=backend) as sess:
        sess.run(gc.global_variables_initializer())
        assert sess.run(seen) == pytest.approx(20.0) and sess.run(v) == pytest.approx(2.0)
        before, after = sess.run([loss, loss_after], {x: xb})
        assert before == pytest.approx(np.mean((xb @ np.ones((3, 1))) ** 2))
        assert after == pytest.approx(np.mean((xb @ w1) ** 2))
        np.testing.assert_allclose(sess.run(w), w1)
