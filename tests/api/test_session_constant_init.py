"""``Session.run`` of an initializer that only assigns constants (variables made from arrays,
an optimizer's zero slots) copies the arrays instead of compiling a step: the same values,
arrays of their own that train the same way; any other initializer is compiled as before."""
import numpy as np
import pytest

import graphc as gc
from graphc.client import session as session_module
from graphc.errors import GraphError


def _model(extra=None):
    rng = np.random.default_rng(3)
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, [4, 3], name="x")
        w0 = rng.standard_normal((3, 2)).astype(np.float32)
        w = gc.Variable(w0, name="w")
        b = gc.Variable(np.zeros(2, np.float32), name="b")
        out = gc.matmul(x, w) + b
        if extra is not None:
            out = out + extra()
        loss = gc.reduce_mean(gc.square(out))
        train = gc.train.AdamOptimizer(0.1).minimize(loss)  # (zero slots, beta powers)
        init = gc.global_variables_initializer()
    feed = {x: rng.standard_normal((4, 3)).astype(np.float32)}
    return g, w0, w, init, loss, train, feed


def _train(backend, copy):
    g, w0, w, init, loss, train, feed = _model()
    if not copy:  # (the compiled way: the copy path refused)
        orig = session_module.constant_assigns
        session_module.constant_assigns = lambda flat: None
    try:
        with gc.Session(graph=g, backend=backend) as sess:
            assert sess.run(init) is None
            compiled = len(sess._cache)
            losses = [sess.run([loss, train], feed)[0] for _ in range(3)]
            return compiled, losses, {v.node_name: np.array(a) for v, a in sess.values.items()}
    finally:
        if not copy:
            session_module.constant_assigns = orig


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_a_constant_initializer_is_copied_and_trains_as_the_compiled_one(backend):
    copied, losses, values = _train(backend, copy=True)
    compiled, ref_losses, ref_values = _train(backend, copy=False)
    assert copied == 0 and compiled == 1  # (no step compiled for the initializer)
    assert losses == ref_losses
    assert values.keys() == ref_values.keys()
    for name in values:
        np.testing.assert_array_equal(values[name], ref_values[name], err_msg=name)


def test_the_copies_are_the_sessions_own_aligned_arrays():
    g, w0, w, init, loss, train, feed = _model()
    with gc.Session(graph=g, backend="llvm") as sess:
        sess.run(init)
        stored = sess.values[w]
        assert np.array_equal(stored, w0) and not np.shares_memory(stored, w0)
        assert stored.flags.writeable and stored.__array_interface__["data"][0] % 64 == 0
        sess.run(train, feed)
        assert not np.array_equal(stored, w0)  # (trained in place; the constant is not)
        np.testing.assert_array_equal(w0, _model()[1])
        sess.run(init)  # (a second run starts over from the constants)
        np.testing.assert_array_equal(sess.values[w], w0)


def test_an_initializer_with_a_random_op_is_compiled():
    g, *_, init, loss, train, feed = _model(
        extra=lambda: gc.Variable(gc.random_normal([2], seed=1), name="r"))
    with gc.Session(graph=g, backend="numpy") as sess:
        sess.run(init)
        assert len(sess._cache) == 1
        assert np.isfinite(sess.run(loss, feed))


def test_an_assign_fetched_alone_still_returns_its_value():
    g, w0, w, init, *_ = _model()
    with g.as_default():
        assign = gc.assign(w, np.ones((3, 2), np.float32))
    with gc.Session(graph=g, backend="numpy") as sess:
        np.testing.assert_array_equal(sess.run(assign), np.ones((3, 2), np.float32))


def test_a_variable_left_out_of_the_initializer_is_still_reported():
    g, w0, w, init, loss, train, feed = _model()
    with g.as_default():
        only_w = gc.variables_initializer([w])
    with gc.Session(graph=g, backend="numpy") as sess:
        sess.run(only_w)
        with pytest.raises(GraphError, match="uninitialized variable 'b"):
            sess.run(loss, feed)
