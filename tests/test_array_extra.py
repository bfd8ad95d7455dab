"""TF1 array/math functions built from graph ops (gc.sequence_mask, reverse, eye, diag,
diag_part, trace, tensordot, ...) against NumPy on both backends, gradients against float64
central differences, and clear errors for the inputs graphc refuses (run-time sizes)."""
import numpy as np
import pytest

import graphc as gc
from graphc.errors import GraphError, ShapeError

RNG = np.random.default_rng(11)
X = RNG.standard_normal((2, 3, 4))
M = RNG.standard_normal((3, 3))
W = RNG.standard_normal((4, 3, 5))
LENGTHS = np.array([0, 2, 5], np.int32)

# name -> (build(x, m, lengths), numpy reference(x, m, lengths))
CASES = {
    "sequence_mask": (lambda x, m, n: gc.sequence_mask(n, 5),
                      lambda x, m, n: np.arange(5) < n[:, None]),
    "sequence_mask_float": (lambda x, m, n: gc.sequence_mask(n, gc.constant(6), gc.float32),
                            lambda x, m, n: (np.arange(6) < n[:, None]).astype(np.float32)),
    "sequence_mask_const": (lambda x, m, n: gc.sequence_mask([1, 3]),
                            lambda x, m, n: np.array([[1, 0, 0], [1, 1, 1]], bool)),
    "reverse": (lambda x, m, n: gc.reverse(x, [0, -1]), lambda x, m, n: x[::-1, :, ::-1]),
    "reverse_v2_int": (lambda x, m, n: gc.reverse_v2(x, 1), lambda x, m, n: x[:, ::-1]),
    "eye": (lambda x, m, n: gc.eye(2, 3, batch_shape=[2], dtype=gc.float64),
            lambda x, m, n: np.broadcast_to(np.eye(2, 3), (2, 2, 3))),
    "linalg_diag": (lambda x, m, n: gc.linalg.diag(x),
                    lambda x, m, n: x[..., None] * np.eye(4)),
    "diag_rank2": (lambda x, m, n: gc.diag(m),
                   lambda x, m, n: np.einsum("ij,ik,jl->ijkl", m, np.eye(3), np.eye(3))),
    "linalg_diag_part_wide": (lambda x, m, n: gc.linalg.diag_part(x),
                              lambda x, m, n: np.diagonal(x, axis1=1, axis2=2)),
    "linalg_diag_part_tall": (lambda x, m, n: gc.linalg.diag_part(gc.transpose(x, [0, 2, 1])),
                              lambda x, m, n: np.diagonal(x, axis1=1, axis2=2)),
    "diag_part": (lambda x, m, n: gc.diag_part(m), lambda x, m, n: np.diag(m)),
    "trace": (lambda x, m, n: gc.trace(x), lambda x, m, n: np.trace(x, axis1=1, axis2=2)),
    "linalg_trace": (lambda x, m, n: gc.linalg.trace(m), lambda x, m, n: np.trace(m)),
    "tensordot_pairs": (lambda x, m, n: gc.tensordot(x, W, [[2, 1], [0, 1]]),
                        lambda x, m, n: np.tensordot(x, W, [[2, 1], [0, 1]])),
    "tensordot_int": (lambda x, m, n: gc.tensordot(m, x[0], 1),
                      lambda x, m, n: np.tensordot(m, x[0], 1)),
    "tensordot_zero": (lambda x, m, n: gc.linalg.tensordot(m, m, 0),
                       lambda x, m, n: np.tensordot(m, m, 0)),
}


@pytest.fixture(scope="module")
def results():
    """Every case in one graph, run once per backend: {backend: {name: value}}."""
    with gc.Graph().as_default():
        x = gc.placeholder(gc.float64, X.shape)
        m = gc.placeholder(gc.float64, M.shape)
        n = gc.placeholder(gc.int32, LENGTHS.shape)
        names = sorted(CASES)
        outs = [CASES[k][0](x, m, n) for k in names]
        got = {}
        for backend in ("numpy", "llvm"):
            with gc.Session(backend=backend) as sess:
                got[backend] = dict(zip(names, sess.run(outs, {x: X, m: M, n: LENGTHS})))
    return got


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_values_match_numpy(results, name, backend):
    got, want = results[backend][name], CASES[name][1](X, M, LENGTHS)
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


DIFFERENTIABLE = ["reverse", "linalg_diag", "diag_rank2", "linalg_diag_part_wide",
                  "linalg_diag_part_tall", "diag_part", "trace", "tensordot_pairs",
                  "tensordot_int"]


@pytest.mark.parametrize("name", DIFFERENTIABLE)
def test_gradients_match_central_differences(name):
    with gc.Graph().as_default():
        x = gc.placeholder(gc.float64, X.shape)
        m = gc.placeholder(gc.float64, M.shape)
        out = CASES[name][0](x, m, None)
        weights = gc.constant(RNG.standard_normal(tuple(out.shape)))
        loss = gc.reduce_sum(out * weights)
        with gc.Session():
            result = gc.check_gradients(loss, [x, m], {x: X, m: M})
    assert result.passed, str(result)


def test_refused_inputs_are_clear():
    with gc.Graph().as_default():
        n = gc.placeholder(gc.int32, [3], name="lens")
        k = gc.placeholder(gc.int32, [], name="maxlen_t")
        x = gc.placeholder(gc.float32, [2, 3])
        with pytest.raises(GraphError, match="maxlen must be static.*maxlen_t"):
            gc.sequence_mask(n, k)
        with pytest.raises(GraphError, match="maxlen=None needs constant lengths.*lens"):
            gc.sequence_mask(n)
        with pytest.raises(ShapeError, match="reverse: axis \\[2\\] is out of range"):
            gc.reverse(x, [2])
        with pytest.raises(ShapeError, match="tensordot: contracted axes"):
            gc.tensordot(x, x, [[1], [0]])
        with pytest.raises(ShapeError, match="diag_part: needs shape D \\+ D"):
            gc.diag_part(x)
        with pytest.raises(ShapeError, match="linalg.diag_part: needs a tensor of rank >= 2"):
            gc.linalg.diag_part(n)
