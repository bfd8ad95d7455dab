"""Running fetches on the reference and the optimized pipeline, and float64 central
differences: the checks most tests share."""
import numpy as np

import graphc as gc

EPS = 1e-6
ATOL, RTOL = 1e-5, 1e-3
MAX_FULL_FD = 24  # inputs with more elements are checked along random directions
PROJECTIONS = 3


def run(fetches, feeds=None, optimize=False, init=True, graph=None):
    """Run ``fetches`` once in a new session (initializing variables first when asked)."""
    with gc.Session(graph=graph, optimize=optimize) as sess:
        if init and sess.graph.get_collection("variables"):
            sess.run(gc.global_variables_initializer())
        return sess.run(fetches, feeds or {})


def run_both(fetches, feeds=None, graph=None):
    """(reference values, optimized values): unoptimized and optimized NumPy pipelines."""
    return (run(fetches, feeds, optimize=False, graph=graph),
            run(fetches, feeds, optimize=True, graph=graph))


def tolerance(dtype):
    """(rtol, atol) for comparing a computation against its reference in ``dtype``."""
    return (2e-5, 2e-6) if np.dtype(dtype) == np.float32 else (1e-12, 1e-13)


def assert_close(actual, expected, dtype=np.float64, what=""):
    rtol, atol = tolerance(dtype)
    np.testing.assert_allclose(np.asarray(actual, np.float64), np.asarray(expected, np.float64),
                               rtol=rtol, atol=atol, err_msg=what, equal_nan=True)


def directions(shape, rng):
    """Unit vectors to differentiate along: every coordinate for small inputs, else a few
    random projections (normalized Gaussian directions)."""
    size = int(np.prod(shape))
    if size <= MAX_FULL_FD:
        for i in range(size):
            e = np.zeros(size)
            e[i] = 1.0
            yield e.reshape(shape)
        return
    for _ in range(PROJECTIONS):
        v = rng.standard_normal(shape)
        yield v / np.linalg.norm(v)


def check_against_central_differences(f, feeds, xs, grads, rng, what=""):
    """Compare analytic gradients with float64 central differences of the scalar ``f``.

    Args:
        f: callable(feeds dict) -> float (the scalar whose gradient is checked).
        feeds: {placeholder: float64 array} at which to differentiate.
        xs: the placeholders differentiated (a subset of feeds' keys).
        grads: analytic gradients, one array per x.
        rng: numpy Generator for random projections.
    Raises:
        AssertionError: naming the input and direction when a derivative disagrees.
    """
    for x, g in zip(xs, grads):
        base = feeds[x]
        assert np.asarray(g).shape == base.shape, f"{what}: gradient shape for '{x.name}'"
        for k, v in enumerate(directions(base.shape, rng)):
            plus = dict(feeds)
            plus[x] = base + EPS * v
            minus = dict(feeds)
            minus[x] = base - EPS * v
            numeric = (f(plus) - f(minus)) / (2 * EPS)
            analytic = float(np.sum(np.asarray(g) * v))
            assert abs(analytic - numeric) <= ATOL + RTOL * abs(numeric), (
                f"{what}: d/d'{x.name}' along direction {k}: analytic {analytic!r} vs "
                f"central difference {numeric!r}")
