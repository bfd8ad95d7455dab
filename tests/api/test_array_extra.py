"""TF1 array/math functions built from graph ops (gc.sequence_mask, reverse, eye, diag,
diag_part, trace, tensordot, ...) against NumPy on both backends, gradients against float64
central differences, and clear errors for the inputs graphc refuses (run-time sizes)."""
import numpy as np
import pytest

import graphc as gc
from graphc.errors import DTypeError, GraphError, ShapeError

RNG = np.random.default_rng(11)
X = RNG.standard_normal((2, 3, 4))
M = RNG.standard_normal((3, 3))
W = RNG.standard_normal((4, 3, 5))
LENGTHS = np.array([0, 2, 5], np.int32)

IDX = np.array([[1, 2], [0, 0], [1, 2]], np.int32)  # a repeat: scatter_nd sums it
SEG = np.array([[3, 0, 3], [1, 1, 0]], np.int64)  # segment 2 is empty


def np_scatter(indices, updates, shape):
    out = np.zeros(shape)
    np.add.at(out, tuple(np.moveaxis(indices, -1, 0)), updates)
    return out


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
    "gather_nd": (lambda x, m, n: gc.gather_nd(x, IDX),
                  lambda x, m, n: x[IDX[..., 0], IDX[..., 1]]),
    "gather_nd_full": (lambda x, m, n: gc.gather_nd(m, [[2, 1], [0, 0], [2, 1]]),
                       lambda x, m, n: m[[2, 0, 2], [1, 0, 1]]),
    "scatter_nd": (lambda x, m, n: gc.scatter_nd(IDX, m, [2, 3, 3]),
                   lambda x, m, n: np_scatter(IDX, m, (2, 3, 3))),
    "unsorted_segment_sum": (lambda x, m, n: gc.unsorted_segment_sum(x, SEG, 4),
                             lambda x, m, n: np_scatter(SEG[..., None], x, (4, 4))),
    "segment_sum": (lambda x, m, n: gc.math.segment_sum(m, [0, 0, 2]),
                    lambda x, m, n: np.stack([m[0] + m[1], 0 * m[0], m[2]])),
    "tensordot_zero": (lambda x, m, n: gc.linalg.tensordot(m, m, 0),
                       lambda x, m, n: np.tensordot(m, m, 0)),
}


def run_table(table, values):
    """Every case of ``table`` in one graph, its inputs placeholders fed ``values``, run once
    per backend: {backend: {name: value}}."""
    with gc.Graph().as_default():
        holders = [gc.placeholder(v.dtype, v.shape) for v in values]
        names = sorted(table)
        outs = [table[k][0](*holders) for k in names]
        got = {}
        for backend in ("numpy", "llvm"):
            with gc.Session(backend=backend) as sess:
                got[backend] = dict(zip(names, sess.run(outs, dict(zip(holders, values)))))
    return got


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
        with pytest.raises(GraphError, match="segment_ids must be a constant.*lens"):
            gc.segment_sum(x, n)
        with pytest.raises(GraphError, match="sorted, non-negative vector, found \\[1, 0\\]"):
            gc.segment_sum(x, [1, 0])
        with pytest.raises(GraphError, match="num_segments must be static.*maxlen_t"):
            gc.unsorted_segment_sum(x, [0, 1], k)
        with pytest.raises(ShapeError, match="gather_nd: indices index 3 axes of a rank-2"):
            gc.gather_nd(x, [[0, 0, 0]])
        with pytest.raises(ShapeError, match="scatter_nd: updates must have shape \\[2, 3\\]"):
            gc.scatter_nd([[0], [1]], x[0], [4, 3])


# -- norms, counts, moments, safe division ------------------------------------------------------
Y = np.array([[0.0, 1.5, -2.0, 0.0], [3.0, 0.0, 1.0, -0.5], [0.25, 2.0, 0.0, 4.0]])
SPECIAL = np.array([np.nan, 1.0, np.inf, -np.inf, 0.0])


def np_vector_norm(v, p, axis=None, keepdims=False):
    return np.sum(np.abs(v) ** p, axis=axis, keepdims=keepdims) ** (1.0 / p)


# name -> (build(x, y, special), numpy reference(x, y, special))
MATH = {
    "norm_all": (lambda x, y, s: gc.norm(x), lambda x, y, s: np.linalg.norm(x.ravel())),
    "norm_axis_keep": (lambda x, y, s: gc.norm(x, axis=-1, keepdims=True),
                       lambda x, y, s: np.linalg.norm(x, axis=-1, keepdims=True)),
    "norm_l1": (lambda x, y, s: gc.norm(x, ord=1, axis=1),
                lambda x, y, s: np.sum(np.abs(x), axis=1)),
    "norm_inf": (lambda x, y, s: gc.norm(x, ord=np.inf, axis=0),
                 lambda x, y, s: np.max(np.abs(x), axis=0)),
    "norm_p3": (lambda x, y, s: gc.norm(x, ord=3, axis=2),
                lambda x, y, s: np_vector_norm(x, 3, axis=2)),
    "norm_fro": (lambda x, y, s: gc.linalg.norm(x, "fro", axis=[1, 2]),
                 lambda x, y, s: np.linalg.norm(x, "fro", axis=(1, 2))),
    "matrix_norm_1": (lambda x, y, s: gc.norm(x, 1, axis=[1, 2]),
                      lambda x, y, s: np.linalg.norm(x, 1, axis=(1, 2))),
    "matrix_norm_inf_keep": (lambda x, y, s: gc.norm(x, np.inf, axis=[-1, 0], keep_dims=True),
                             lambda x, y, s: np.linalg.norm(x, np.inf, axis=(-1, 0),
                                                            keepdims=True)),
    "count_nonzero": (lambda x, y, s: gc.count_nonzero(y, axis=1),
                      lambda x, y, s: np.count_nonzero(y, axis=1).astype(np.int64)),
    "count_nonzero_bool": (lambda x, y, s: gc.math.count_nonzero(y > 0, dtype=gc.int32,
                                                                 keepdims=True),
                           lambda x, y, s: np.full((1, 1), np.count_nonzero(y > 0), np.int32)),
    "reduce_variance": (lambda x, y, s: gc.reduce_variance(x, axis=[0, 2]),
                        lambda x, y, s: np.var(x, axis=(0, 2))),
    "reduce_std": (lambda x, y, s: gc.math.reduce_std(x, axis=1, keepdims=True),
                   lambda x, y, s: np.std(x, axis=1, keepdims=True)),
    "div_no_nan": (lambda x, y, s: gc.div_no_nan(x[0], y),
                   lambda x, y, s: np.where(y == 0, 0.0, x[0] / np.where(y == 0, 1.0, y))),
    "is_nan": (lambda x, y, s: gc.is_nan(s), lambda x, y, s: np.isnan(s)),
    "is_inf": (lambda x, y, s: gc.math.is_inf(s), lambda x, y, s: np.isinf(s)),
    "to_int32": (lambda x, y, s: gc.to_int32(y), lambda x, y, s: y.astype(np.int32)),
    "to_int64": (lambda x, y, s: gc.to_int64(y), lambda x, y, s: y.astype(np.int64)),
    "to_double": (lambda x, y, s: gc.to_double(gc.to_int32(y)),
                  lambda x, y, s: y.astype(np.int32).astype(np.float64)),
    "clip_by_average_norm": (lambda x, y, s: gc.clip_by_average_norm(x, 0.01),
                             lambda x, y, s: x * 0.01 * min(x.size / np.linalg.norm(x),
                                                            1 / 0.01)),
    "clip_by_average_norm_noop": (lambda x, y, s: gc.clip_by_average_norm(x, 10.0),
                                  lambda x, y, s: x),
}


# table -> (cases, input values, how many leading inputs gradients are checked for; a zero
# divisor in Y makes div_no_nan's y-derivative a jump there, so the math table checks X only)
TABLES = {"array": (CASES, [X, M, LENGTHS], 2), "math": (MATH, [X, Y, SPECIAL], 1)}
DIFFERENTIABLE = {
    "array": ["reverse", "linalg_diag", "diag_rank2", "linalg_diag_part_wide",
              "linalg_diag_part_tall", "diag_part", "trace", "tensordot_pairs", "tensordot_int",
              "gather_nd", "gather_nd_full", "scatter_nd", "unsorted_segment_sum",
              "segment_sum"],
    "math": ["norm_all", "norm_axis_keep", "norm_l1", "norm_inf", "norm_p3", "norm_fro",
             "matrix_norm_1", "matrix_norm_inf_keep", "reduce_variance", "reduce_std",
             "div_no_nan", "clip_by_average_norm", "clip_by_average_norm_noop"],
}


@pytest.fixture(scope="module")
def results():
    return {t: run_table(cases, values) for t, (cases, values, _) in TABLES.items()}


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
@pytest.mark.parametrize("table, name", [(t, k) for t in TABLES for k in sorted(TABLES[t][0])])
def test_values_match_numpy(results, table, name, backend):
    cases, values, _ = TABLES[table]
    got, want = results[table][backend][name], np.asarray(cases[name][1](*values))
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("table, name", [(t, k) for t in TABLES for k in DIFFERENTIABLE[t]])
def test_gradients_match_central_differences(table, name):
    cases, values, checked = TABLES[table]
    with gc.Graph().as_default():
        holders = [gc.placeholder(v.dtype, v.shape) for v in values]
        out = cases[name][0](*holders)
        loss = gc.reduce_sum(out * gc.constant(RNG.standard_normal(tuple(out.shape))))
        with gc.Session():
            result = gc.check_gradients(loss, holders[:checked], dict(zip(holders, values)))
    assert result.passed, str(result)


def test_div_no_nan_gradient_is_finite_where_y_is_zero():
    with gc.Graph().as_default():
        x = gc.placeholder(gc.float64, [4])
        y = gc.placeholder(gc.float64, [4])
        gx, gy = gc.gradients(gc.reduce_sum(gc.div_no_nan(x, y)), [x, y])
        with gc.Session() as sess:
            vx, vy = sess.run([gx, gy], {x: X[0, 0], y: Y[0]})
    np.testing.assert_allclose(vx, np.where(Y[0] == 0, 0.0, 1.0 / np.where(Y[0] == 0, 1, Y[0])))
    assert np.all(np.isfinite(vy)) and np.all(vy[Y[0] == 0] == 0)


@pytest.mark.parametrize("ord_, axis, match", [
    (2, [0, 1], "ord 2 is not supported for matrix norms"),
    (0, None, "ord 0 is not supported for vector norms"),
    ("nuc", [0, 1], "ord 'nuc' is not supported"),
    ("fro", 0, "ord 'fro' is not supported"),
    ("euclidean", [0, 1, 2], "axis must be an int or a pair of ints"),
])
def test_norm_refuses_what_tf1_refuses(ord_, axis, match):
    with gc.Graph().as_default():
        x = gc.placeholder(gc.float32, [2, 3, 4])
        with pytest.raises(GraphError, match=match):
            gc.norm(x, ord=ord_, axis=axis)


def test_float_only_functions_name_the_dtype():
    with gc.Graph().as_default():
        n = gc.placeholder(gc.int32, [3])
        for fn in (gc.norm, gc.reduce_variance, gc.clip_by_average_norm):
            args = (n, 1.0) if fn is gc.clip_by_average_norm else (n,)
            with pytest.raises(DTypeError, match="needs a floating tensor, found i32\\[3\\]"):
                fn(*args)
