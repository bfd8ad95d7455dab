"""The write guard compares buffers, not names: a kernel writing over a buffer it was given
is not flagged when another live name is only a reshape view of that same buffer."""
import numpy as np

import graphc as gc


def _build():
    x = gc.placeholder(gc.float32, [4, 6], name="x")
    w = gc.Variable(np.linspace(0.5, 1.5, 6).astype(np.float32), name="w")
    h = gc.reshape(w, [6, 1])
    loss = gc.reduce_sum(gc.matmul(x, h) * 2.0 + gc.reduce_sum(h))
    train = gc.train.GradientDescentOptimizer(0.1).minimize(loss)
    return x, w, loss, train


def test_guarded_step_with_a_viewed_variable_matches_the_reference():
    x, w, loss, train = _build()
    guarded = gc.compile([loss, train], [x], check_writes=True)
    reference = gc.compile([loss, train], [x], optimize=False)
    xb = np.arange(24, dtype=np.float32).reshape(4, 6) / 10
    for _ in range(3):
        got, want = guarded({x: xb})[0], reference({x: xb})[0]
        np.testing.assert_allclose(got, want, rtol=1e-5)
    np.testing.assert_allclose(guarded.variables["w"], reference.variables["w"], rtol=1e-5)
