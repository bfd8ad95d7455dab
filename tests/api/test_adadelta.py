"""gc.train.AdadeltaOptimizer against TF1's update rule in NumPy over three steps, on both
backends, reusing the quadratic loss and NumPy driver of test_optimizers."""
import numpy as np
import pytest

import graphc as gc

from tests.api.test_optimizers import W0, build, grad, reference


def adadelta_ref(lr, rho=0.95, eps=1e-8):
    def step(name, w, s, t):
        g = grad(name, w)
        s["acc"] = rho * s.get("acc", 0.0) + (1 - rho) * g * g
        update = np.sqrt(s.get("upd", 0.0) + eps) / np.sqrt(s["acc"] + eps) * g
        s["upd"] = rho * s.get("upd", 0.0) + (1 - rho) * update * update
        return w - lr * update
    return step


CASES = {
    "defaults": (lambda lr: gc.train.AdadeltaOptimizer(lr), adadelta_ref(1.0)),
    "rho_eps": (lambda lr: gc.train.AdadeltaOptimizer(lr, rho=0.5, epsilon=1e-3),
                adadelta_ref(1.0, 0.5, 1e-3)),
}


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_three_steps_match_numpy_float64(case, backend):
    make_opt, ref_step = CASES[case]
    g, vs, opt, train, init, step = build(np.float64, make_opt, 1.0)
    with gc.Session(graph=g, backend=backend) as sess:
        sess.run(init)
        history = []
        for _ in range(3):
            sess.run(train)
            history.append({n: sess.values[v].copy() for n, v in vs.items()})
        slots = {s: sess.values[opt.get_slot(vs["w"], s)] for s in opt.get_slot_names()}
        assert sess.run(step) == 3
    for got, want in zip(history, reference(ref_step)):
        for n in vs:
            np.testing.assert_allclose(got[n], want[n], rtol=1e-12, atol=1e-14, err_msg=case)
    assert sorted(slots) == ["accum", "accum_update"]
    assert slots["accum_update"].shape == W0["w"].shape and np.all(slots["accum_update"] > 0)


def test_default_hyperparameters_are_tf1s():
    opt = gc.train.AdadeltaOptimizer()
    assert (opt.learning_rate, opt.rho, opt.epsilon, opt.name) == (0.001, 0.95, 1e-8,
                                                                   "Adadelta")
