"""Second order: the gradient of a gradient for every table row that has one (elementwise ops,
matmul, reductions, softmax and the cross-entropies, shapes...), checked against float64
central differences of the first gradient, and ``gc.hessian_vector_product``."""
import zlib

import numpy as np
import pytest

import graphc as gc
from graphc.ir.verifier import verify

from tests.support import optable
from tests.support.checks import check_against_central_differences, run_both
from tests.ir.test_gradients import build

SECOND_ROWS = optable.rows(lambda r: r.second)


def directional_first_gradient(r):
    """s = sum_i <d loss / d x_i, V_i> for fixed random V_i: its gradient is H V (mixed
    partials included)."""
    phs, values, out, xs, loss = build(r)
    grads = gc.gradients(loss, xs, unconnected_gradients="zero")
    rng = np.random.default_rng(zlib.crc32(r.name.encode()) + 2)
    vs = [rng.standard_normal(x.shape) for x in xs]
    s = gc.add_n([gc.reduce_sum(g * gc.constant(v)) for g, v in zip(grads, vs)])
    return phs, values, xs, loss, vs, s


@pytest.mark.parametrize("r", SECOND_ROWS, ids=optable.ids(SECOND_ROWS))
def test_gradient_of_gradient_matches_central_differences(r, rng):
    phs, values, xs, _, _, s = directional_first_gradient(r)
    hv = gc.gradients(s, xs, unconnected_gradients="zero")
    for x, h in zip(xs, hv):
        assert h.dtype == x.dtype and tuple(h.shape) == tuple(x.shape)
    verify(gc.get_default_graph().nodes)
    feeds = dict(zip(phs, values))
    with gc.Session(optimize=False) as sess:
        got = sess.run(hv, feeds)
        check_against_central_differences(lambda fd: sess.run(s, fd), feeds, xs, got, rng,
                                          f"{r.name} (second order)")
    with gc.Session() as sess:
        for a, b in zip(got, sess.run(hv, feeds)):
            np.testing.assert_allclose(b, a, rtol=1e-11, atol=1e-12)


HVP_ROWS = [r for r in SECOND_ROWS if r.op in ("matmul", "softmax_xent", "sparse_softmax_xent",
                                                "tanh", "reduce_max", "pow", "log_softmax")]


@pytest.mark.parametrize("r", HVP_ROWS, ids=optable.ids(HVP_ROWS))
def test_hessian_vector_product_is_the_gradient_of_the_directional_gradient(r):
    phs, values, xs, loss, vs, s = directional_first_gradient(r)
    want = gc.gradients(s, xs, unconnected_gradients="zero")
    got_arrays = gc.hessian_vector_product(loss, xs, vs)
    got_tensors = gc.hessian_vector_product(loss, xs, [gc.constant(v) for v in vs])
    feeds = dict(zip(phs, values))
    for w, a, t in zip(*run_both([want, got_arrays, got_tensors], feeds)[0]):
        np.testing.assert_allclose(a, w, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(t, w, rtol=1e-12, atol=1e-12)


def test_hessian_vector_product_of_a_quadratic_is_exact():
    """f = 1/2 x^T A x + b^T x has H = (A + A^T)/2 * 2 / 2 = sym(A): H v in closed form."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((4, 4))
    x = gc.placeholder(gc.float64, [4, 1])
    f = 0.5 * gc.reduce_sum(x * gc.matmul(gc.constant(a), x)) + gc.reduce_sum(x)
    v = rng.standard_normal((4, 1))
    hv, = gc.hessian_vector_product(f, [x], [v])
    for got in run_both(hv, {x: rng.standard_normal((4, 1))}):
        np.testing.assert_allclose(got, 0.5 * (a + a.T) @ v, rtol=1e-12)


def test_hessian_vector_product_in_float32_and_for_several_variables():
    w = gc.Variable(np.array([[1.0, 2.0], [0.5, -1.0]], np.float32), name="w")
    b = gc.Variable(np.array([0.1, -0.2], np.float32), name="b")
    x = gc.placeholder(gc.float32, [None, 2])
    loss = gc.reduce_sum(gc.tanh(gc.matmul(x, w) + b) ** 2.0)
    hv = gc.hessian_vector_product(loss, [w, b], [np.ones((2, 2)), np.ones(2)])
    assert [h.dtype for h in hv] == [gc.float32, gc.float32]
    xv = np.array([[0.3, -0.7], [1.0, 0.2], [0.0, 0.5]], np.float32)
    got = run_both(hv, {x: xv})
    for a, b_ in zip(*got):
        np.testing.assert_allclose(a, b_, rtol=1e-5)
    # the same product in float64, by the gradient of the directional derivative
    gc.reset_default_graph()
    w64 = gc.placeholder(gc.float64, [2, 2])
    b64 = gc.placeholder(gc.float64, [2])
    x64 = gc.constant(xv.astype(np.float64))
    l64 = gc.reduce_sum(gc.tanh(gc.matmul(x64, w64) + b64) ** 2.0)
    gw, gb = gc.gradients(l64, [w64, b64])
    h64 = gc.gradients(gc.reduce_sum(gw) + gc.reduce_sum(gb), [w64, b64])
    ref = run_both(h64, {w64: np.array([[1.0, 2.0], [0.5, -1.0]]), b64: np.array([0.1, -0.2])})
    for a, b_ in zip(got[0], ref[0]):
        np.testing.assert_allclose(a, b_, rtol=1e-4, atol=1e-5)


def test_third_order_of_a_cubic():
    x = gc.placeholder(gc.float64, [3])
    y = gc.reduce_sum(x * x * x)
    g1, = gc.gradients(y, [x])
    g2, = gc.gradients(gc.reduce_sum(g1), [x])
    g3, = gc.gradients(gc.reduce_sum(g2), [x])
    xv = np.array([1.0, -2.0, 0.5])
    for v1, v2, v3 in run_both([g1, g2, g3], {x: xv}):
        np.testing.assert_allclose(v1, 3 * xv ** 2)
        np.testing.assert_allclose(v2, 6 * xv)
        np.testing.assert_allclose(v3, np.full(3, 6.0))
