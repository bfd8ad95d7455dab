"""Softmax-family rows narrower than a vector, a block of rows at a time, a column a vector
(codegen/llvm/kernels/row_columns.py): every op of the family agrees with float64 NumPy for
whole blocks and the rows past them, float32 and float64, int32 and int64 labels, on both
vector widths; special values keep the row kernels' rules; a bad label stops the step naming
the first bad row."""
import numpy as np
import pytest

import graphc as gc
from graphc.codegen.llvm.kernels import gemm as llvm_gemm, row_columns

AVX2, AVX512 = llvm_gemm.VectorUnit(32, 16), llvm_gemm.VectorUnit(64, 32)


@pytest.fixture(params=[AVX2, AVX512], ids=["avx2", "avx512"])
def unit(request, monkeypatch):
    monkeypatch.setenv("GRAPHC_NO_CACHE", "1")
    monkeypatch.setattr(llvm_gemm, "vector_unit", lambda: request.param)
    return request.param


def _softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _log_softmax(x):
    s = x - x.max(axis=-1, keepdims=True)
    return s - np.log(np.exp(s).sum(axis=-1, keepdims=True))


def _family(x, y_sparse, y_dense):
    """The eight ops of the family (and the gradients that reach them) on placeholders."""
    sparse = gc.nn.sparse_softmax_cross_entropy_with_logits(labels=y_sparse, logits=x)
    dense = gc.nn.softmax_cross_entropy_with_logits(labels=y_dense, logits=x)
    (dsparse,) = gc.gradients(gc.reduce_sum(sparse), [x])
    (ddense,) = gc.gradients(gc.reduce_sum(dense), [x])
    return [gc.nn.softmax(x), gc.nn.log_softmax(x), sparse, dense, dsparse, ddense]


def _expected(x, ys, yd):
    x = x.astype(np.float64)
    p, lp = _softmax(x), _log_softmax(x)
    rows = np.arange(len(x))
    onehot = np.zeros_like(x)
    onehot[rows, ys] = 1
    ysum = yd.sum(axis=-1, keepdims=True)
    return [p, lp, -lp[rows, ys], -(yd * lp).sum(axis=-1), p - onehot, p * ysum - yd]


def _run(rows, width, dtype, label_dtype, seed=0):
    rng = np.random.default_rng(seed)
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(dtype, [rows, width], name="x")
        ys = gc.placeholder(label_dtype, [rows], name="ys")
        yd = gc.placeholder(dtype, [rows, width], name="yd")
        step = gc.compile(_family(x, ys, yd), feeds=[x, ys, yd], backend="llvm")
    feed = {x: (rng.standard_normal((rows, width)) * 4).astype(dtype),
            ys: rng.integers(0, width, rows).astype(label_dtype),
            yd: rng.dirichlet(np.ones(width), rows).astype(dtype)}
    return [np.asarray(v) for v in step(feed)], feed, (x, ys, yd), step.compiled.fn.llvm_ir


@pytest.mark.parametrize("rows,width", [(16, 10), (37, 10), (8, 3), (19, 7), (40, 15),
                                        (64, 2)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_op_of_the_family_agrees_with_float64(unit, rows, width, dtype):
    label_dtype = np.int32 if width % 2 else np.int64
    got, feed, (x, ys, yd), ir = _run(rows, width, dtype, label_dtype)
    n = row_columns.block_rows(gc.float32 if dtype == np.float32 else gc.float64, rows, width)
    assert ("llvm.masked.gather" in ir) == bool(n)  # blocks where the rows fill them
    for g_, e in zip(got, _expected(feed[x], feed[ys], feed[yd])):
        tol = 2e-6 if dtype == np.float32 else 1e-13
        np.testing.assert_allclose(g_, e, rtol=tol * 10, atol=tol * 4)


def test_blocks_are_used_exactly_where_rows_are_narrower_than_a_vector(unit):
    lanes = unit.bytes // 4
    assert row_columns.block_rows(gc.float32, lanes, lanes - 1) == lanes
    assert row_columns.block_rows(gc.float32, lanes - 1, 2) == 0   # no whole block
    assert row_columns.block_rows(gc.float32, 4 * lanes, lanes) == 0  # a whole vector a row
    assert row_columns.block_rows(gc.float32, 4 * lanes, 1) == 0
    assert row_columns.block_rows(gc.float64, lanes // 2, 3) == lanes // 2


def test_blocks_agree_with_rows_one_by_one(unit, monkeypatch):
    """The same ops with column blocks off: each output within a few ulps (the sum of a
    row's exponentials adds in another order)."""
    width = min(10, unit.bytes // 4 - 1)
    blocks, _, _, ir = _run(48, width, np.float32, np.int64, seed=3)
    monkeypatch.setattr(row_columns, "COLUMN_BLOCKS", False)
    rows, _, _, ir_rows = _run(48, width, np.float32, np.int64, seed=3)
    assert "llvm.masked.gather" in ir and "llvm.masked.gather" not in ir_rows
    for a, b in zip(blocks, rows):
        np.testing.assert_allclose(a, b, rtol=4e-6, atol=3e-7)  # (log s near 0: ulps of 1)


def test_special_values_keep_the_row_rules(unit):
    """A NaN makes every output of its row NaN and no other; a row of -inf gives uniform
    probabilities; +inf is the row's maximum (its probability 1)."""
    lanes = unit.bytes // 4
    rows, width = lanes + 3, 5
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, [rows, width])
        y = gc.placeholder(gc.int32, [rows])
        sparse = gc.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=x)
        (dx,) = gc.gradients(gc.reduce_sum(sparse), [x])
        step = gc.compile([gc.nn.softmax(x), dx], feeds=[x, y], backend="llvm")
    xv = np.random.default_rng(1).standard_normal((rows, width)).astype(np.float32)
    xv[1, 2] = np.nan
    xv[2] = -np.inf
    xv[3, 4] = np.inf
    yv = np.zeros(rows, np.int32)
    p, d = (np.asarray(v) for v in step({x: xv, y: yv}))
    assert np.isnan(p[1]).all() and np.isnan(d[1]).all()
    assert not np.isnan(np.delete(p, 1, axis=0)).any()
    np.testing.assert_allclose(p[2], np.full(width, 1 / width), rtol=1e-6)
    np.testing.assert_array_equal(p[3], np.eye(width, dtype=np.float32)[4])
    np.testing.assert_allclose(p[5:], _softmax(xv[5:].astype(np.float64)), rtol=2e-6,
                               atol=1e-7)


@pytest.mark.parametrize("bad_rows,label", [((20, 35), -1), ((3,), 10), ((40,), 11)])
def test_a_bad_label_names_the_first_bad_row(unit, bad_rows, label):
    rows, width = 41, 10
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, [rows, width])
        y = gc.placeholder(gc.int32, [rows])
        loss = gc.reduce_mean(gc.nn.sparse_softmax_cross_entropy_with_logits(
            labels=y, logits=x, name="xent"))
        step = gc.compile([loss], feeds=[x, y], backend="llvm")
    yv = np.zeros(rows, np.int32)
    for r in bad_rows:
        yv[r] = label
    with pytest.raises(gc.errors.InvalidArgumentError,
                       match=rf"'xent': label {label} at \[{bad_rows[0]}\] is outside \[0, 10\)"):
        step({x: np.zeros((rows, width), np.float32), y: yv})
