"""check_gradients: passes on correct models (float32 ones included, evaluated in float64),
catches a wrong VJP, checks intermediates and second-order losses, and rejects bad input."""
import numpy as np
import pytest

import graphc as gc
from graphc.ir.ops import registry
from graphc.ir.ops.elementwise import FLOAT, unary

RNG = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def fresh_graph():
    gc.reset_default_graph()


@pytest.fixture
def bad_square():
    """x * x declared with the VJP g * x (the factor 2 forgotten), unregistered afterwards."""
    unary("test_bad_square", FLOAT, lambda x: x * x, lambda g, out, x: [g * x])
    yield "test_bad_square"
    del registry.REGISTRY["test_bad_square"]


def mlp(dtype=gc.float32, hidden=16):
    x = gc.placeholder(dtype, [None, 6], name="x")
    y = gc.placeholder(gc.int64, [None], name="y")
    W1 = gc.Variable(gc.initializers.glorot_uniform(seed=1)([6, hidden], dtype), name="W1")
    b1 = gc.Variable(gc.initializers.random_normal(0, 0.1, seed=2)([hidden], dtype), name="b1")
    W2 = gc.Variable(gc.initializers.glorot_uniform(seed=3)([hidden, 4], dtype), name="W2")
    h = gc.tanh(gc.matmul(x, W1) + b1, name="h")
    logits = gc.matmul(h, W2)
    loss = gc.reduce_mean(gc.nn.sparse_softmax_cross_entropy_with_logits(labels=y,
                                                                         logits=logits))
    feed = {x: RNG.normal(size=(10, 6)).astype(dtype.np), y: RNG.integers(0, 4, 10)}
    return loss, (W1, b1, W2, h, x), feed


def test_float32_model_is_checked_in_float64():
    loss, (W1, b1, W2, h, x), feed = mlp()
    with gc.Session() as sess:
        sess.run(gc.global_variables_initializer())
        result = gc.check_gradients(loss, None, feed, max_elements=20)
    assert result.passed and result.settings["dtype"] == "float64"
    assert [r.name for r in result] == ["W1", "b1", "W2"]
    assert result["W1"].checked == "8 projections" and result["b1"].checked == "all 16"
    for r in result:
        assert r.grad_norm > 1e-3
        # float32 arithmetic could not get near this: the copy really ran in float64
        assert r.max_abs_err < 1e-8


def test_intermediates_and_inputs_keep_the_other_paths():
    loss, (W1, b1, W2, h, x), feed = mlp(gc.float64)
    with gc.Session() as sess:
        sess.run(gc.global_variables_initializer())
        result = gc.check_gradients(loss, [h, W1, x], feed)
    assert result.passed
    # checking h must not cut W1 and x off the loss
    assert all(r.grad_norm > 1e-3 for r in result), str(result)


def test_wrong_vjp_is_caught(bad_square):
    x = gc.placeholder(gc.float32, [5], name="x")
    w = gc.Variable(np.linspace(0.5, 1.5, 5).astype(np.float32), name="w")
    bad = registry.apply(bad_square, [x * w])
    loss = gc.reduce_sum(bad)
    with gc.Session() as sess:
        sess.run(gc.global_variables_initializer())
        result = gc.check_gradients(loss, [w, x], {x: np.arange(1.0, 6.0)})
    assert not result.passed
    assert not result["w"].passed and result["w"].max_rel_err == pytest.approx(0.5, rel=1e-6)
    text = str(result)
    assert "FAILED" in text and "FAIL" in text.splitlines()[2]
    with pytest.raises(gc.errors.GradientError, match="differ"):
        result.raise_if_failed()


def test_second_order_loss_and_frozen_random_ops():
    """The loss contains gradient nodes (its gradient is second order) and random noise."""
    x = gc.placeholder(gc.float64, [4], name="x")
    w = gc.Variable(np.array([0.3, -0.2, 0.5, 0.1]), name="w")
    noise = gc.random_normal([4], stddev=0.1, dtype=gc.float64, seed=5)
    f = gc.reduce_sum(gc.sigmoid(w * x + noise) * gc.exp(w))
    (gw,) = gc.gradients(f, [w])
    penalty = gc.reduce_sum(gc.square(gw))
    result = gc.check_gradients(penalty, [w, x], {x: RNG.normal(size=4)})
    assert result.passed, str(result)


def test_native_dtype_mode_uses_looser_float32_tolerances():
    loss, (W1, b1, W2, h, x), feed = mlp()
    with gc.Session() as sess:
        sess.run(gc.global_variables_initializer())
        result = gc.check_gradients(loss, [b1], feed, float64=False)
    assert result.passed and result.settings["eps"] == 1e-3
    assert result["b1"].max_abs_err > 1e-9  # float32 rounding shows


def test_variables_fall_back_to_constant_initial_values():
    w = gc.Variable(np.array([1.0, 2.0]), name="w")
    result = gc.check_gradients(gc.reduce_sum(w * w * w), [w])
    assert result.passed and result["w"].grad_norm == pytest.approx(np.hypot(3, 12))


def test_bad_input_is_reported():
    x = gc.placeholder(gc.float32, [3], name="x")
    w = gc.Variable(gc.random_normal([3]), name="w")
    labels = gc.placeholder(gc.int32, [3], name="labels")
    with pytest.raises(gc.errors.GraphError, match="placeholder 'x' must be fed"):
        gc.check_gradients(gc.reduce_sum(x), [x])
    with pytest.raises(gc.errors.GraphError, match="variable 'w' has no value"):
        gc.check_gradients(gc.reduce_sum(w * x), [w], {x: np.ones(3)})
    with pytest.raises(gc.errors.GradientError, match="floating"):
        gc.check_gradients(gc.reduce_sum(x), [labels], {x: np.ones(3)})
    with pytest.raises(gc.errors.GradientError, match="no trainable variable"):
        gc.check_gradients(gc.reduce_sum(x), None, {x: np.ones(3)})


def test_dropout_mask_is_frozen():
    x = gc.placeholder(gc.float32, [None, 8], name="x")
    w = gc.Variable(gc.initializers.glorot_uniform(seed=0)([8, 8]), name="w")
    h = gc.nn.dropout(gc.tanh(gc.matmul(x, w)), keep_prob=0.5, seed=3)
    loss = gc.reduce_sum(gc.square(h))
    result = gc.check_gradients(loss, [w, x], {x: RNG.normal(size=(4, 8)).astype(np.float32)})
    assert result.passed and result["w"].grad_norm > 0
