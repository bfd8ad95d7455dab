"""``x[i]`` with scalar integer tensors, as TF1 allows: run-time indices become gathers
(values and gradients against NumPy, negative indices wrap), build-time ones (constants, an
unrolled loop's counter) become plain slices, tensor slice bounds must be build-time values,
and anything else is refused clearly."""
import numpy as np
import pytest

import graphc as gc
from graphc.errors import GraphError

from tests.support.checks import check_against_central_differences

BACKENDS = [("numpy", False), ("numpy", True), ("llvm", False), ("llvm", True)]
BACKEND_IDS = [f"{b}-{'opt' if o else 'ref'}" for b, o in BACKENDS]


def _ops(*ops):
    names = [op.node.op_name for op in gc.get_default_graph().get_operations()]
    return tuple(names.count(op) for op in ops)


@pytest.mark.parametrize("backend,optimize", BACKENDS, ids=BACKEND_IDS)
def test_placeholder_index_matches_numpy_on_both_backends(backend, optimize):
    x = gc.placeholder(gc.float32, [4, 5, 3])
    i = gc.placeholder(gc.int32, [])
    j = gc.placeholder(gc.int64, [])
    fetches = [x[i], x[:, i], x[i, 1:3], x[..., j], x[i, j], x[i, None, ::2], x[1:, j, i]]
    xv = np.random.default_rng(0).standard_normal((4, 5, 3)).astype(np.float32)
    with gc.Session(backend=backend, optimize=optimize) as sess:
        for iv, jv in [(2, 1), (-1, -3), (-3, 0), (0, 2)]:
            got = sess.run(fetches, {x: xv, i: iv, j: jv})
            want = [xv[iv], xv[:, iv], xv[iv, 1:3], xv[..., jv], xv[iv, jv],
                    xv[iv, None, ::2], xv[1:, jv, iv]]
            for k, (a, b) in enumerate(zip(got, want)):
                np.testing.assert_array_equal(a, b, err_msg=f"fetch {k}, i={iv}, j={jv}")


def test_index_into_an_unknown_dim_wraps_with_the_fed_size():
    x = gc.placeholder(gc.float32, [None, 3])
    i = gc.placeholder(gc.int32, [])
    y = x[i]
    assert y.shape.as_list() == [3]
    xv = np.arange(12.0, dtype=np.float32).reshape(4, 3)
    with gc.Session() as sess:
        for iv in (0, 3, -1, -4):
            np.testing.assert_array_equal(sess.run(y, {x: xv, i: iv}), xv[iv])
        np.testing.assert_array_equal(sess.run(y, {x: xv[:2], i: -1}), xv[1])


def test_gradients_of_runtime_indices_match_central_differences(rng):
    x = gc.placeholder(gc.float64, [4, 3])
    i = gc.placeholder(gc.int32, [])
    # x[i] and x[:, i] overlap at (i, i); with i = -1, x[i + 1] is row 0 as in Python
    loss = (gc.reduce_sum(x[i] * x[i + 1]) + gc.reduce_sum(gc.tanh(x[:, i]))
            + x[i, i] ** 2)
    (g,) = gc.gradients(loss, [x])
    xv = rng.uniform(-1, 1, (4, 3))
    with gc.Session() as sess:
        for iv in (0, 1, -1, -3):
            feeds = {x: xv, i: iv}
            analytic = sess.run(g, feeds)
            expected = np.zeros((4, 3))
            expected[iv] += xv[iv + 1]
            expected[iv + 1] += xv[iv]
            expected[:, iv] += 1 - np.tanh(xv[:, iv]) ** 2
            expected[iv, iv] += 2 * xv[iv, iv]
            np.testing.assert_allclose(analytic, expected, rtol=1e-12, atol=1e-12)
            check_against_central_differences(lambda f: float(sess.run(loss, f)), feeds, [x],
                                              [analytic], rng, what=f"i={iv}")


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_gradient_of_a_runtime_index_on_both_backends(backend):
    x = gc.placeholder(gc.float32, [3, 4])
    i = gc.placeholder(gc.int32, [])
    (g,) = gc.gradients(gc.reduce_sum(x[:, i] * np.array([1.0, 2.0, 3.0])), [x])
    with gc.Session(backend=backend, optimize=True) as sess:
        got = sess.run(g, {x: np.ones((3, 4), np.float32), i: -1})
    expected = np.zeros((3, 4), np.float32)
    expected[:, -1] = [1, 2, 3]
    np.testing.assert_array_equal(got, expected)


def test_build_time_indices_are_plain_slices():
    """Constants and arithmetic on them are ints when the graph is built: no gather."""
    x = gc.placeholder(gc.float32, [4, 5])
    c = gc.constant(3)
    ys = [x[c], x[:, c - 5], x[c - 2:c], x[gc.constant(1):, ::gc.constant(2)]]
    assert _ops("gather") == (0,)
    assert [y.shape.as_list() for y in ys] == [[5], [4], [2, 5], [3, 3]]
    xv = np.arange(20.0, dtype=np.float32).reshape(4, 5)
    got = gc.Session().run(ys, {x: xv})
    for a, b in zip(got, [xv[3], xv[:, -2], xv[1:3], xv[1:, ::2]]):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("backend,optimize", BACKENDS, ids=BACKEND_IDS)
def test_loop_counter_indexes_statically_in_a_while_loop(backend, optimize):
    """In an unrolled while_loop the counter is known in each iteration: ``x[i]``,
    ``x[:, i]`` and ``x[i:i + 2]`` are plain slices with the exact gradient."""
    x = gc.placeholder(gc.float32, [5, 4])

    def body(i, acc, cols):
        return i + 1, acc * 0.5 + x[i] + gc.reduce_sum(x[i:i + 2], 0), cols + x[:, i - 1]
    _, acc, cols = gc.while_loop(lambda i, a, c: i < 4, body,
                                 (gc.constant(0), gc.zeros([4]), gc.zeros([5])))
    assert _ops("gather") == (0,)
    (g,) = gc.gradients(gc.reduce_sum(acc) + gc.reduce_sum(cols * cols), [x])
    xv = np.random.default_rng(1).uniform(-1, 1, (5, 4)).astype(np.float32)
    want_acc, want_cols, want_g = np.zeros(4, np.float32), np.zeros(5, np.float32), 0
    for k in range(4):
        want_acc = want_acc * 0.5 + xv[k] + xv[k:k + 2].sum(0)
        want_cols = want_cols + xv[:, k - 1]
    want_g = np.zeros((5, 4), np.float32)
    for k in range(4):  # d acc / d x[k] = 0.5 ** (3 - k), rows k and k+1 from the window
        want_g[k] += 0.5 ** (3 - k) * 2
        want_g[k + 1] += 0.5 ** (3 - k)
        want_g[:, k - 1] += 2 * want_cols
    with gc.Session(backend=backend, optimize=optimize) as sess:
        got = sess.run([acc, cols, g], {x: xv})
    np.testing.assert_allclose(got[0], want_acc, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got[1], want_cols, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got[2], want_g, rtol=1e-5, atol=1e-5)


def test_placeholder_index_inside_a_while_loop_body():
    x = gc.placeholder(gc.float64, [3, 4])
    j = gc.placeholder(gc.int32, [])
    _, total = gc.while_loop(lambda i, s: i < 3, lambda i, s: (i + 1, s + x[i, j] * x[i, -1]),
                             (0, gc.constant(0.0, gc.float64)))
    assert _ops("gather") == (3,)
    (g,) = gc.gradients(total, [x])
    xv = np.arange(12.0).reshape(3, 4)
    with gc.Session() as sess:
        got, got_g = sess.run([total, g], {x: xv, j: -3})
    assert got == pytest.approx(float(np.sum(xv[:, 1] * xv[:, 3])))
    want_g = np.zeros((3, 4))
    want_g[:, 1] += xv[:, 3]
    want_g[:, 3] += xv[:, 1]
    np.testing.assert_array_equal(got_g, want_g)


def test_runtime_slice_bounds_are_refused_naming_the_node_and_line():
    x = gc.placeholder(gc.float32, [4, 5])
    i = gc.placeholder(gc.int32, [], name="start")
    with pytest.raises(GraphError, match=r"slice bound placeholder 'start' of tensor "
                       r"'Placeholder' is known only when the step runs(.|\n)*"
                       r"test_tensor_index.py:\d+ +x\[1:i\]"):
        x[1:i]


@pytest.mark.parametrize("make,found", [
    (lambda: gc.constant([1, 2]), r"i32\[2\]"),
    (lambda: gc.constant(1.0), r"f32\[\]"),
    (lambda: gc.placeholder(gc.float32, []), r"f32\[\]"),
    (lambda: gc.placeholder(gc.bool, []), r"bool\[\]|b\[\]|b1\[\]"),
])
def test_non_scalar_or_non_integer_tensor_indices_are_refused(make, found):
    x = gc.placeholder(gc.float32, [4, 5])
    with pytest.raises(TypeError, match=rf"a tensor index must be a scalar integer, "
                       rf"found .* : ({found}); use gc.gather"):
        x[make()]
    with pytest.raises(TypeError, match=r"a tensor slice bound must be a scalar integer"):
        x[:make()]
