"""GEMM epilogues: the elementwise node that alone reads a product (a bias and ReLU, a ReLU's
gradient mask) becomes one ``fused_matmul`` on the LLVM backend, whose GEMM applies the body to
each tile as it stores it. Counted where it fires and where it must not; values equal the
NumPy backend's (which keeps the two nodes) on every LLVM path: the native GEMM with B in
place, packed in one block of K, transposed, a product then a loop (K in several blocks,
BLAS), each operand kind (the product's shape, one value per column, one value) and written
over an operand in place."""
import re

import numpy as np
import pytest

import graphc as gc
from graphc.errors import CompileError

RNG = np.random.default_rng(11)


@pytest.fixture(autouse=True)
def fresh_graph():
    gc.reset_default_graph()


def _fuse_record(step):
    return next(r for r in step.stats["passes"] if r["name"] == "fuse")["changes"]


def _mlp(dtype, batch=9):
    x = gc.placeholder(dtype, [batch, 6], name="x")
    y = gc.placeholder(gc.int64, [batch], name="y")
    h = x
    for i, (a, b) in enumerate([(6, 5), (5, 4), (4, 3)]):
        w = gc.Variable(RNG.normal(size=(a, b)).astype(dtype.np), name=f"w{i}")
        bias = gc.Variable(RNG.normal(size=b).astype(dtype.np) * 0.1, name=f"b{i}")
        h = gc.matmul(h, w) + bias
        if i < 2:
            h = gc.nn.relu(h)
    loss = gc.reduce_mean(gc.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=h))
    train = gc.train.GradientDescentOptimizer(0.1).minimize(loss)
    feeds = {x: RNG.normal(size=(batch, 6)).astype(dtype.np), y: RNG.integers(0, 3, batch)}
    return [loss, train], feeds


@pytest.mark.parametrize("dtype", [gc.float32, gc.float64])
def test_an_mlp_step_applies_its_biases_relus_and_masks_in_the_gemms(dtype):
    fetches, feeds = _mlp(dtype)
    steps = {b: gc.compile(fetches, feeds=list(feeds), backend=b) for b in ("numpy", "llvm")}
    # forward: two bias + ReLU, the logits' bias; backward: the two ReLU masks of dh
    assert _fuse_record(steps["llvm"])["gemm_epilogues"] == 5
    assert steps["llvm"].ir().count("fused_matmul") == 5
    assert _fuse_record(steps["numpy"])["gemm_epilogues"] == 0
    assert "fused_matmul" not in steps["numpy"].ir()
    tol = 1e-5 if dtype == gc.float32 else 1e-12
    for _ in range(3):
        a, b = steps["numpy"](feeds)[0], steps["llvm"](feeds)[0]
        np.testing.assert_allclose(b, a, rtol=tol)
    for name, value in steps["numpy"].variables.items():
        np.testing.assert_allclose(steps["llvm"].variables[name], value, rtol=tol, atol=tol)


def test_graphc_gemm_epilogues_zero_keeps_them_apart(monkeypatch):
    monkeypatch.setenv("GRAPHC_GEMM_EPILOGUES", "0")
    fetches, feeds = _mlp(gc.float64)
    step = gc.compile(fetches, feeds=list(feeds), backend="llvm")
    assert _fuse_record(step)["gemm_epilogues"] == 0 and "fused_matmul" not in step.ir()


# (m, n, k, transpose_a, transpose_b): B in place, A^T, a partial vector of columns, B rows
# far apart (packed, one block of K), B transposed (packed, one block), B transposed over
# several blocks of K (the product, then a loop), an empty sum
SHAPES = [(24, 40, 16, False, False), (16, 20, 12, True, False), (8, 10, 6, False, False),
          (8, 600, 4, False, False), (12, 40, 9, False, True), (12, 40, 600, False, True),
          (6, 7, 0, False, False)]


@pytest.mark.parametrize("native", ["1", "0"])
@pytest.mark.parametrize("m,n,k,ta,tb", SHAPES)
@pytest.mark.parametrize("dtype", [gc.float32, gc.float64])
def test_backends_agree_on_every_epilogue_path(m, n, k, ta, tb, dtype, native, monkeypatch):
    monkeypatch.setenv("GRAPHC_NATIVE_GEMM", native)
    a = [gc.placeholder(dtype, [k, m] if ta else [m, k], name=f"a{i}") for i in range(3)]
    b = gc.placeholder(dtype, [n, k] if tb else [k, n], name="b")
    h = gc.placeholder(dtype, [m, n], name="h")
    col = gc.placeholder(dtype, [n], name="col")
    one = gc.placeholder(dtype, [], name="one")
    p, q, r = (gc.matmul(x, b, transpose_a=ta, transpose_b=tb) for x in a)
    fetches = [gc.nn.relu(p + col),                       # one value per column
               gc.where(h > 0.0, q, gc.zeros_like(q)) * one - h,  # full operand, one value
               gc.maximum(r, h) / (one + 2.0)]            # max, div
    feeds = {x: RNG.normal(size=x.shape).astype(dtype.np) for x in a + [b, h, col]}
    feeds[one] = np.asarray(1.5, dtype.np)
    prod = [(feeds[x].T if ta else feeds[x]) @ (feeds[b].T if tb else feeds[b]) for x in a]
    hv, cv, ov = feeds[h], feeds[col], feeds[one]
    want = [np.maximum(prod[0] + cv, 0), np.where(hv > 0, prod[1], 0) * ov - hv,
            np.maximum(prod[2], hv) / (ov + 2)]
    step = gc.compile(fetches, feeds=list(feeds), backend="llvm")
    assert _fuse_record(step)["gemm_epilogues"] == 3
    # (float32: the sum's rounding, about k units of 2^-23 of terms of order 1, in any order)
    tol = max(1e-5, 2 * 2.0 ** -23 * k) if dtype == gc.float32 else 1e-12
    for got, ref in zip(step(feeds), want):
        np.testing.assert_allclose(got, ref, rtol=tol, atol=tol)


@pytest.mark.parametrize("native", ["1", "0"])
def test_a_mask_written_over_its_operand_in_place(native, monkeypatch):
    """``where(h > 0, g @ W^T, 0)`` with h read by nothing after: written over h's bytes,
    each tile reading its h before storing over it (natively), or the product computed
    apart first (BLAS: the product cannot go to the output's bytes, which hold h)."""
    monkeypatch.setenv("GRAPHC_NATIVE_GEMM", native)
    g = gc.placeholder(gc.float64, [32, 10], name="g")
    w = gc.placeholder(gc.float64, [48, 10], name="w")
    x = gc.placeholder(gc.float64, [32, 16], name="x")
    v = gc.placeholder(gc.float64, [16, 48], name="v")
    h = gc.nn.relu(gc.matmul(x, v))  # (a GEMM's own epilogue: h is a value of its own)
    total = gc.reduce_sum(h)  # (read before the mask: h's bytes are free after it)
    dh = gc.where(h > 0.0, gc.matmul(g, w, transpose_b=True), gc.zeros([32, 48], gc.float64))
    feeds = {u: RNG.normal(size=u.shape) for u in (g, w, x, v)}
    step = gc.compile([dh, total], feeds=list(feeds), backend="llvm")
    lines = [s for s in step.ir().splitlines() if "fused_matmul" in s]
    assert len(lines) == 2 and "in place over" in lines[1], lines
    hv = np.maximum(feeds[x] @ feeds[v], 0)
    got = step(feeds)
    np.testing.assert_allclose(got[0], np.where(hv > 0, feeds[g] @ feeds[w].T, 0), rtol=1e-12)
    np.testing.assert_allclose(got[1], hv.sum(), rtol=1e-12)


def test_what_a_gemm_cannot_apply_stays_apart():
    """A transcendental body (tanh), a product also fetched, a sum of two products (the
    accumulating GEMMs' case), an operand broadcast along rows, a plain product: no
    fused_matmul; a body reading its product twice: one."""
    a = [gc.placeholder(gc.float32, [8, 6], name=f"a{i}") for i in range(7)]
    b = gc.placeholder(gc.float32, [6, 5], name="b")
    rows = gc.placeholder(gc.float32, [8, 1], name="rows")
    p = [gc.matmul(x, b) for x in a]
    fetches = [gc.tanh(p[0] + 1.0), p[1] * 2.0, p[1], p[2] + p[3] * 3.0, p[4] + rows,
               (p[5] * p[5]) + 1.0, p[6]]
    feeds = {v: RNG.normal(size=v.shape).astype(np.float32) for v in a + [b, rows]}
    step = gc.compile(fetches, feeds=list(feeds), backend="llvm")
    assert _fuse_record(step)["gemm_epilogues"] == 1  # only p5 * p5 + 1 (p5 read twice)
    prod = [feeds[x] @ feeds[b] for x in a]
    want = [np.tanh(prod[0] + 1), prod[1] * 2, prod[1], prod[2] + prod[3] * 3,
            prod[4] + feeds[rows], prod[5] * prod[5] + 1, prod[6]]
    for got, ref in zip(step(feeds), want):
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_the_numpy_backend_refuses_a_gemm_epilogue(monkeypatch):
    from graphc.client import pipeline
    from graphc.codegen.llvm.kernels.vector_body import VECTOR_BODY_OPS
    build = pipeline.build_program

    def with_epilogues(*args, **kwargs):
        program = build(*args, **kwargs)
        program.gemm_epilogues = VECTOR_BODY_OPS
        return program
    monkeypatch.setattr(pipeline, "build_program", with_epilogues)
    a = gc.placeholder(gc.float64, [4, 3], name="a")
    b = gc.placeholder(gc.float64, [3, 2], name="b")
    with pytest.raises(CompileError, match="the NumPy backend runs no GEMM epilogue"):
        gc.compile([gc.nn.relu(gc.matmul(a, b))], feeds=[a, b], backend="numpy")


@pytest.mark.parametrize("native", ["1", "0"])
def test_an_operand_that_is_also_a_factor_is_not_overwritten(native, monkeypatch):
    """``relu(h @ w + h)``: the epilogue reads h at each element, the GEMM reads it whole as A,
    so the node is not written over h (it was: the tiles after the first read a clobbered
    A)."""
    monkeypatch.setenv("GRAPHC_NATIVE_GEMM", native)
    x = gc.placeholder(gc.float64, [96, 96], name="x")
    w = gc.placeholder(gc.float64, [96, 96], name="w")
    h = gc.tanh(x) * 2.0
    out = gc.nn.relu(gc.matmul(h, w) + h)
    feeds = {x: RNG.normal(size=(96, 96)), w: RNG.normal(size=(96, 96))}
    step = gc.compile([out], feeds=list(feeds), backend="llvm")
    line = next(s for s in step.ir().splitlines() if "fused_matmul" in s)
    assert "in place over" not in line and "also reads" in line
    hv = np.tanh(feeds[x]) * 2
    np.testing.assert_allclose(step(feeds)[0], np.maximum(hv @ feeds[w] + hv, 0), rtol=1e-12,
                               atol=1e-12)


def test_a_cut_steps_body_shows_the_epilogues_it_runs(monkeypatch):
    """A loop body is a program of its own, compiled and shown through the same passes: the
    body the dumps and ``step.ir()`` show holds the fused_matmul nodes the backend lowers."""
    monkeypatch.setenv("GRAPHC_SPLIT_EXAMPLES", "2")
    monkeypatch.setenv("GRAPHC_SPLIT_MIN_WORK", "1")
    fetches, feeds = _mlp(gc.float64, batch=8)
    step = gc.compile(fetches, feeds=list(feeds), backend="llvm")
    step(feeds)
    program = step.compiled.program
    assert [n.op_name for n in program.nodes].count("loop") == 1
    shown = step.ir().count("= fused_matmul")
    lowered = set(re.findall(r"; kernel fused_matmul '([^']*)'", step.compiled.fn.llvm_ir))
    assert shown >= 2 and shown == len(lowered), (shown, lowered)
