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
