"""Gradient checks for whole layers: symbolic gradients of a scalar loss with respect to
placeholders AND variables (RNN weights live in variables), compared with float64 central
differences, on the reference pipeline and the optimized one; and Hessian-vector products
against differences of gradients.
"""
import numpy as np

import graphc as gc

from tests.support.checks import ATOL, EPS, RTOL, directions

PIPELINES = (False, True)  # Session(optimize=...): the unoptimized reference, the default


def open_session(optimize, values=None):
    """A session with every variable initialized, then ``values`` ({variable: array}) loaded."""
    sess = gc.Session(optimize=optimize)
    if sess.graph.get_collection("variables"):
        sess.run(gc.global_variables_initializer())
    for var, value in (values or {}).items():
        sess.load_variable(var, value)
    return sess


def _value(sess, feeds, x):
    return np.array(feeds[x] if x in feeds else sess.values[x], np.float64)


def _run_at(sess, fetch, feeds, x, value):
    """Run ``fetch`` with x (a placeholder or a variable) set to ``value``; restores x."""
    if x in feeds:
        return sess.run(fetch, {**feeds, x: value})
    saved = sess.values[x]
    sess.load_variable(x, value)
    try:
        return sess.run(fetch, feeds)
    finally:
        sess.values[x] = saved


def central_differences(sess, loss, xs, feeds, grads, rng, what=""):
    """Assert <grad, v> equals (L(x + eps v) - L(x - eps v)) / (2 eps) along every coordinate
    of small inputs and along random unit directions of large ones."""
    for x, g in zip(xs, grads):
        base = _value(sess, feeds, x)
        assert np.shape(g) == base.shape, f"{what}: gradient shape for '{x.name}'"
        for k, v in enumerate(directions(base.shape, rng)):
            plus = float(_run_at(sess, loss, feeds, x, base + EPS * v))
            minus = float(_run_at(sess, loss, feeds, x, base - EPS * v))
            numeric = (plus - minus) / (2 * EPS)
            analytic = float(np.sum(np.asarray(g, np.float64) * v))
            assert abs(analytic - numeric) <= ATOL + RTOL * abs(numeric), (
                f"{what}: d/d'{x.name}' along direction {k}: analytic {analytic!r} vs "
                f"central difference {numeric!r}")


def check_gradients(loss, xs, feeds, rng, values=None, what=""):
    """Gradients of ``loss`` wrt ``xs`` vs central differences on both pipelines.

    Returns:
        The gradients computed by the reference pipeline (a list of arrays).
    """
    grads = gc.gradients(loss, xs)
    results = []
    for optimize in PIPELINES:
        with open_session(optimize, values) as sess:
            got = sess.run(grads, feeds)
            central_differences(sess, loss, xs, feeds, got, rng, f"{what} optimize={optimize}")
            results.append(got)
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12, err_msg=f"{what}: pipelines")
    return results[0]


def check_hessian_vector_products(loss, xs, feeds, rng, values=None, what=""):
    """H v (symbolic, a gradient of a gradient) vs differences of the gradient along v."""
    vs = [rng.standard_normal(_shape(x, feeds)) for x in xs]
    hvp = gc.hessian_vector_product(loss, xs, vs)
    grads = gc.gradients(loss, xs)
    for optimize in PIPELINES:
        with open_session(optimize, values) as sess:
            got = sess.run(hvp, feeds)
            base = {x: _value(sess, feeds, x) for x in xs}
            plus = _gradients_at(sess, grads, feeds, xs, base, vs, EPS)
            minus = _gradients_at(sess, grads, feeds, xs, base, vs, -EPS)
            for x, h, p, m in zip(xs, got, plus, minus):
                np.testing.assert_allclose(h, (p - m) / (2 * EPS), rtol=1e-4, atol=1e-6,
                                           err_msg=f"{what}: H v for '{x.op.name}'")


def _shape(x, feeds):
    return np.shape(feeds[x]) if x in feeds else tuple(x.shape)


def _gradients_at(sess, grads, feeds, xs, base, vs, step):
    """All gradients with every x moved by ``step * v`` at once."""
    moved = dict(feeds)
    for x, v in zip(xs, vs):
        if x in feeds:
            moved[x] = base[x] + step * v
        else:
            sess.load_variable(x, base[x] + step * v)
    out = [np.asarray(g, np.float64) for g in sess.run(grads, moved)]
    for x in xs:
        if x not in feeds:
            sess.load_variable(x, base[x])
    return out
