"""Edge cases with exact expected values and gradients: ties, poles, NaN and inf in the branch
`where` does not take, extreme and fully masked logits, fan-out, unused and integer inputs.

Each table row is (name, function of float64 placeholders, input values, expected value,
expected gradients of sum(value)); both the reference and the optimized pipeline must give
exactly these numbers (inf included), and nothing NaN where a finite value is expected.
"""
import re

import numpy as np
import pytest

import graphc as gc
from graphc.errors import DTypeError, GradientError

from tests.support.checks import run_both

INF, NAN = np.inf, np.nan


def _cases():
    t, f = True, False
    return [
        # ties split evenly (maximum/minimum: g/2 each side; reduce_max/min: g/k among k)
        ("maximum tie", gc.maximum, [[1.0, 2.0, 3.0], [1.0, 0.0, 3.0]], [1, 2, 3],
         [[0.5, 1, 0.5], [0.5, 0, 0.5]]),
        ("minimum tie", gc.minimum, [[1.0, 2.0], [1.0, 3.0]], [1, 2], [[0.5, 1], [0.5, 0]]),
        ("maximum(x, x)", lambda x: gc.maximum(x, x), [[1.0, -2.0]], [1, -2], [[1, 1]]),
        ("reduce_max two ties", gc.reduce_max, [[1.0, 3.0, 3.0, 2.0]], 3, [[0, 0.5, 0.5, 0]]),
        ("reduce_min ties per row", lambda x: gc.reduce_min(x, axis=1),
         [[[2.0, 1.0, 1.0, 1.0], [0.0, 5.0, 5.0, 5.0]]], [1, 0],
         [[[0, 1 / 3, 1 / 3, 1 / 3], [1, 0, 0, 0]]]),
        ("reduce_max all equal", gc.reduce_max, [[[4.0, 4.0], [4.0, 4.0]]], 4,
         [[[0.25, 0.25], [0.25, 0.25]]]),
        # kinks: the documented one-sided conventions
        ("relu'(0) = 0", gc.nn.relu, [[-1.0, 0.0, 2.0]], [0, 0, 2], [[0, 0, 1]]),
        ("abs'(0) = 0", gc.abs, [[-1.0, 0.0, 2.0]], [1, 0, 2], [[-1, 0, 1]]),
        ("leaky_relu'(0) = alpha", lambda x: gc.nn.leaky_relu(x, 0.25), [[-4.0, 0.0, 2.0]],
         [-1, 0, 2], [[0.25, 0.25, 1]]),
        # poles: inf, never nan
        ("sqrt(0)", gc.sqrt, [[0.0, 4.0]], [0, 2], [[INF, 0.25]]),
        ("log(0)", gc.log, [[0.0, 1.0]], [-INF, 0], [[INF, 1]]),
        ("-log(0)", lambda x: -gc.log(x), [[0.0]], [INF], [[-INF]]),
        ("pow(0, 0.5)", lambda x: x ** 0.5, [[0.0, 4.0]], [0, 2], [[INF, 0.25]]),
        ("pow(x, y) at x = 0", gc.pow, [[0.0, 2.0], [2.0, 3.0]], [0, 8],
         [[0, 12], [0, 8 * np.log(2.0)]]),
        ("pow, negative base, integer exponent", lambda x: x ** 3.0, [[-2.0]], [-8], [[12]]),
        # where: the branch not taken is nan / inf, the gradient stays finite and exact
        ("where, log of negatives not taken", lambda x: gc.where(x > 0.0, gc.log(x), x),
         [[-2.0, 0.0, 0.5, 4.0]], [-2, 0, np.log(0.5), np.log(4.0)], [[1, 1, 2, 0.25]]),
        ("where, sqrt of negatives not taken",
         lambda x: gc.where(x > 0.0, gc.sqrt(x), gc.zeros_like(x)), [[-4.0, 0.0, 4.0]],
         [0, 0, 2], [[0, 0, 0.25]]),
        ("where, 1/0 not taken", lambda x: gc.where(gc.not_equal(x, 0.0), 1.0 / x, x),
         [[0.0, 2.0]], [0, 0.5], [[1, -0.25]]),
        ("where, nan data not taken",
         lambda a, b: gc.where(gc.constant([t, f, t]), a, b),
         [[1.0, NAN, 3.0], [NAN, 2.0, NAN]], [1, 2, 3], [[1, 0, 1], [0, 1, 0]]),
        ("where, pow of negative base not taken",
         lambda x: gc.where(x > 0.0, x ** 0.5, x), [[-4.0, 1.0]], [-4, 1], [[1, 0.5]]),
        # fan-out: the driver accumulates
        ("x * x", lambda x: x * x, [[3.0, -2.0]], [9, 4], [[6, -4]]),
        ("x * x * x", lambda x: x * x * x, [[2.0, -1.0]], [8, -1], [[12, 3]]),
        ("x - x", lambda x: x - x, [[2.0, -1.0]], [0, 0], [[0, 0]]),
        ("x / x", lambda x: x / x, [[2.0, -1.0]], [1, 1], [[0, 0]]),
        ("matmul(x, x)", lambda x: gc.matmul(x, x), [[[1.0, 2.0], [3.0, 4.0]]],
         [[7, 10], [15, 22]], [np.ones((2, 2)) @ np.array([[1, 3], [2, 4]]) +
                               np.array([[1, 3], [2, 4]]) @ np.ones((2, 2))]),
        ("gather with repeated rows", lambda p: gc.gather(p, [0, 0, 2]),
         [[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]], [[1, 2], [1, 2], [5, 6]],
         [[[2, 2], [0, 0], [1, 1]]]),
        ("stop_gradient", lambda x: x * gc.stop_gradient(x), [[3.0]], [9], [[3]]),
        # extreme logits: finite losses and gradients
        ("sparse xent, logits +-1e4",
         lambda z: gc.nn.sparse_softmax_cross_entropy_with_logits(
             labels=gc.constant([1, 0], dtype=gc.int64), logits=z),
         [[[1e4, -1e4, 0.0], [1e4, -1e4, 0.0]]], [2e4, 0], [[[1, -1, 0], [0, 0, 0]]]),
        ("dense xent, logits +-1e4",
         lambda z: gc.nn.softmax_cross_entropy_with_logits(
             labels=gc.constant([[0.0, 1.0, 0.0]], dtype=gc.float64), logits=z),
         [[[1e4, -1e4, 0.0]]], [2e4], [[[1, -1, 0]]]),
        ("log_softmax, logits +-1e4", lambda z: gc.nn.log_softmax(z)[:, 1],
         [[[1e4, -1e4]]], [-2e4], [[[-1, 1]]]),
        ("sigmoid xent, logits +-1e4",
         lambda x: gc.nn.sigmoid_cross_entropy_with_logits(labels=gc.zeros_like(x), logits=x),
         [[1e4, -1e4]], [1e4, 0], [[1, 0]]),
        ("softplus of +-1e4", gc.nn.softplus, [[1e4, -1e4]], [1e4, 0], [[1, 0]]),
        ("sigmoid of +-1e4", gc.sigmoid, [[1e4, -1e4]], [1, 0], [[0, 0]]),
        # fully masked rows: uniform probabilities, finite gradients, other rows untouched
        ("softmax of an all -inf row", lambda z: gc.nn.softmax(z)[:, 0],
         [[[-INF, -INF, -INF], [0.0, -INF, 0.0]]], [1 / 3, 0.5],
         [[[2 / 9, -1 / 9, -1 / 9], [0.25, 0, -0.25]]]),
        ("sparse xent on an all -inf row",
         lambda z: gc.nn.sparse_softmax_cross_entropy_with_logits(
             labels=gc.constant([0, 2], dtype=gc.int64), logits=z),
         [[[-INF, -INF, -INF], [0.0, -INF, 0.0]]], [np.log(3.0), np.log(2.0)],
         [[[-2 / 3, 1 / 3, 1 / 3], [0.5, 0, -0.5]]]),
        ("dense xent, masked logit with zero label",
         lambda z: gc.nn.softmax_cross_entropy_with_logits(
             labels=gc.constant([[0.5, 0.0, 0.5]], dtype=gc.float64), logits=z),
         [[[0.0, -INF, 0.0]]], [np.log(2.0)], [[[0, 0, 0]]]),
    ]


CASES = _cases()


def _value_and_grads(fn, inputs):
    phs = [gc.placeholder(gc.float64, np.shape(v), name=f"in{i}") for i, v in enumerate(inputs)]
    y = fn(*phs)
    grads = gc.gradients(gc.reduce_sum(y), phs)
    feeds = {p: np.asarray(v, np.float64) for p, v in zip(phs, inputs)}
    return run_both([y, grads], feeds)


@pytest.mark.parametrize("name,fn,inputs,value,grads", CASES, ids=[c[0] for c in CASES])
def test_exact_values_and_gradients(name, fn, inputs, value, grads):
    for label, (got_value, got_grads) in zip(("reference", "optimized"),
                                             _value_and_grads(fn, inputs)):
        np.testing.assert_allclose(got_value, np.asarray(value, np.float64), rtol=1e-15,
                                   atol=0, err_msg=f"{name} value ({label})")
        for i, (g, want) in enumerate(zip(got_grads, grads)):
            want = np.asarray(want, np.float64)
            assert not np.isnan(g).any(), f"{name}: nan in the gradient of input {i} ({label})"
            np.testing.assert_allclose(g, want, rtol=1e-15, atol=1e-300,
                                       err_msg=f"{name} gradient {i} ({label})")


@pytest.mark.parametrize("dtype", [gc.float32, gc.float64])
def test_extreme_logits_stay_finite_in_both_dtypes(dtype):
    z = gc.placeholder(dtype, [2, 3])
    y = gc.placeholder(gc.int32, [2])
    loss = gc.reduce_mean(gc.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=z))
    g, = gc.gradients(loss, [z])
    zv = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4]], dtype.np)
    for lv, gv in run_both([loss, g], {z: zv, y: np.array([1, 2], np.int32)}):
        assert np.isfinite(lv) and np.isfinite(gv).all()
        assert lv == pytest.approx(1e4, rel=1e-6)
        np.testing.assert_allclose(gv, [[0.5, -0.5, 0], [0, 0, 0]], atol=1e-6)


# -- unused inputs ---------------------------------------------------------------------------

def _unused_setup():
    x = gc.placeholder(gc.float64, [2, 3], name="x")
    unused = gc.Variable(np.ones((4,)), name="unused")
    return x, unused, gc.reduce_sum(x * x)


def test_unused_input_gets_zeros_when_asked():
    x, unused, y = _unused_setup()
    gx, gu = gc.gradients(y, [x, unused], unconnected_gradients=gc.UnconnectedGradients.ZERO)
    assert tuple(gu.shape) == (4,) and gu.dtype == gc.float64
    xv = np.arange(6.0).reshape(2, 3)
    for vx, vu in run_both([gx, gu], {x: xv}):
        np.testing.assert_array_equal(vx, 2 * xv)
        np.testing.assert_array_equal(vu, np.zeros(4))


def test_unused_input_gives_none_as_tf1():
    x, unused, y = _unused_setup()
    gx, gu = gc.gradients(y, [x, unused])   # TF1's default: None
    assert gu is None
    assert gc.gradients(y, [unused], unconnected_gradients="none") == [None]
    xv = np.arange(6.0).reshape(2, 3)
    for (vx,) in run_both([gx], {x: xv}):  # the connected input's gradient is unaffected
        np.testing.assert_array_equal(vx, 2 * xv)


def test_unused_input_raises_naming_it_and_its_line():
    x, unused, y = _unused_setup()
    with pytest.raises(GradientError, match=r"(?s)'unused'.*not connected.*"
                       r"test_edge_cases\.py:\d+"):
        gc.gradients(y, [x, unused], unconnected_gradients="raise")


def test_path_through_an_integer_cast_carries_no_gradient():
    x = gc.placeholder(gc.float64, [3])
    y = gc.reduce_sum(gc.cast(gc.cast(x, gc.int32), gc.float64) * x)
    g, = gc.gradients(y, [x])
    xv = np.array([1.5, -2.5, 3.0])
    for got in run_both(g, {x: xv}):
        np.testing.assert_array_equal(got, np.trunc(xv))


# -- integer inputs ------------------------------------------------------------------------------

def test_gradient_with_respect_to_an_integer_tensor_is_a_dtype_error():
    labels = gc.placeholder(gc.int64, [4], name="labels")
    logits = gc.placeholder(gc.float32, [4, 3], name="logits")
    loss = gc.reduce_sum(gc.nn.sparse_softmax_cross_entropy_with_logits(labels=labels,
                                                                         logits=logits))
    with pytest.raises(DTypeError, match=r"(?s)'labels'.*int64.*test_edge_cases\.py:\d+"):
        gc.gradients(loss, [logits, labels])
    flag = gc.placeholder(gc.bool, [4], name="flag")
    with pytest.raises(DTypeError, match=r"'flag'.*bool"):
        gc.gradients(loss, flag)


def test_gradient_of_an_integer_tensor_is_a_dtype_error():
    x = gc.placeholder(gc.float32, [3], name="x")
    k = gc.argmax(x, name="best")
    with pytest.raises(DTypeError, match=r"'best'.*int64"):
        gc.gradients(k, [x])


def test_gradient_keeps_the_dtype_of_x_across_casts():
    x = gc.placeholder(gc.float32, [2])
    y = gc.reduce_sum(gc.cast(x, gc.float64) ** 2.0)
    g, = gc.gradients(y, [x])
    assert g.dtype == gc.float32
    for got in run_both(g, {x: np.array([1.0, -3.0], np.float32)}):
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, [2.0, -6.0])


# -- None dims -----------------------------------------------------------------------------------

def test_none_dim_fed_as_one_broadcasts_and_its_gradient_is_summed():
    """x: [None, 3] fed [1, 3] broadcasts against y: [None, 3] fed [4, 3]: the static shapes
    could not show it, yet x's gradient must come back as [1, 3]."""
    x = gc.placeholder(gc.float64, [None, 3])
    y = gc.placeholder(gc.float64, [None, 3])
    gx, gy = gc.gradients(gc.reduce_sum(x * y), [x, y])
    xv, yv = np.array([[1.0, 2.0, 3.0]]), np.arange(12.0).reshape(4, 3)
    for vx, vy in run_both([gx, gy], {x: xv, y: yv}):
        np.testing.assert_array_equal(vx, yv.sum(0, keepdims=True))
        np.testing.assert_array_equal(vy, np.repeat(xv, 4, 0))


def test_dense_layer_gradients_with_a_none_batch_need_no_deferred_sums():
    x = gc.placeholder(gc.float32, [None, 4])
    w = gc.Variable(np.ones((4, 3), np.float32))
    b = gc.Variable(np.zeros(3, np.float32))
    h = gc.nn.relu(gc.matmul(x, w) + b)
    loss = gc.reduce_mean(gc.nn.sparse_softmax_cross_entropy_with_logits(
        labels=gc.placeholder(gc.int64, [None]), logits=h))
    gc.gradients(loss, [x, w, b])
    ops = [n.op_name for n in gc.get_default_graph().nodes]
    assert "sum_to_like" not in ops


def test_mean_gradient_uses_the_fed_batch_size():
    x = gc.placeholder(gc.float64, [None, 2])
    g, = gc.gradients(gc.reduce_mean(x), [x])
    with gc.Session() as sess:
        for n in (1, 2, 5):
            np.testing.assert_array_equal(sess.run(g, {x: np.zeros((n, 2))}),
                                          np.full((n, 2), 1.0 / (2 * n)))


def test_concat_gradient_along_an_unknown_axis():
    a = gc.placeholder(gc.float64, [None, 2])
    b = gc.placeholder(gc.float64, [None, 2])
    c = gc.concat([a, b], 0)
    w = gc.placeholder(gc.float64, [None, 2])
    ga, gb = gc.gradients(gc.reduce_sum(c * w), [a, b])
    wv = np.arange(10.0).reshape(5, 2)
    for va, vb in run_both([ga, gb], {a: np.zeros((2, 2)), b: np.zeros((3, 2)), w: wv}):
        np.testing.assert_array_equal(va, wv[:2])
        np.testing.assert_array_equal(vb, wv[2:])


def test_message_names_where_the_unused_tensor_was_created():
    x, unused, y = _unused_setup()
    with pytest.raises(GradientError) as info:
        gc.gradients(y, unused, unconnected_gradients="raise")
    line = [ln for ln in str(info.value).splitlines() if "test_edge_cases.py" in ln][0]
    assert re.search(r"gc\.Variable\(np\.ones", line)


@pytest.mark.parametrize("name,fn,inputs,value,grads", CASES, ids=[c[0] for c in CASES])
def test_llvm_gives_the_same_edge_values(name, fn, inputs, value, grads):
    """The same table on the LLVM backend: its vector exp and log and reassociated sums
    may differ from the reference in the last bits, never in kind (NaN for a finite value)."""
    phs = [gc.placeholder(gc.float64, np.shape(v), name=f"in{i}") for i, v in enumerate(inputs)]
    y = fn(*phs)
    grads_n = gc.gradients(gc.reduce_sum(y), phs)
    step = gc.compile([y] + [g for g in grads_n if g is not None], feeds=phs, backend="llvm")
    got = step({p: np.asarray(v, np.float64) for p, v in zip(phs, inputs)})
    np.testing.assert_allclose(got[0], np.asarray(value, np.float64), rtol=1e-13, atol=1e-300,
                               err_msg=f"{name} value (llvm)")
    wanted = [w for g, w in zip(grads_n, grads) if g is not None]
    for i, (g, want) in enumerate(zip(got[1:], wanted)):
        np.testing.assert_allclose(g, np.asarray(want, np.float64), rtol=1e-13, atol=1e-15,
                                   err_msg=f"{name} gradient {i} (llvm)")


@pytest.mark.parametrize("width", [3, 12, 40])
@pytest.mark.parametrize("dtype", [gc.float32, gc.float64])
def test_dense_xent_masked_logits_agree_on_every_row_kernel(width, dtype):
    """A -inf logit under a zero label adds nothing to the dense loss (0 log 0 = 0), on
    the LLVM rows held as one vector (short) and as loops (long), as in the reference;
    a row of all -inf logits and a NaN label give the reference's values too."""
    rng = np.random.default_rng(width)
    z = gc.placeholder(dtype, [9, width])
    y = gc.placeholder(dtype, [9, width])
    loss = gc.nn.softmax_cross_entropy_with_logits(labels=y, logits=z)
    zv = rng.standard_normal((9, width)).astype(dtype.np)
    zv[0, 1] = zv[2, -1] = -INF
    zv[3] = -INF
    yv = np.zeros((9, width), dtype.np)
    yv[:, 0] = 1.0
    yv[4, :2] = 0.5, 0.5
    yv[5, 2] = NAN
    want = gc.compile([loss], feeds=[z, y], backend="numpy")({z: zv, y: yv})[0]
    got = gc.compile([loss], feeds=[z, y], backend="llvm")({z: zv, y: yv})[0]
    assert np.isfinite(want[[0, 1, 2, 3, 4]]).all() and np.isnan(want[5])
    np.testing.assert_allclose(got, want, rtol=10 * np.finfo(dtype.np).eps)
