"""GEMM accumulation fires only where it is proved: every occurrence of a summed product.

The LLVM backend lets the matmuls of a fused sum add into one buffer (BLAS ``beta = 1``) and
deletes their own values. That is sound only for a product read exactly once in the fused
body, as a leaf of the sum. These graphs read a product twice (``t + t + u``), outside the
sum (``(t + u) * t``), or through a shared subexpression, on both GEMM paths, and must agree
with the unoptimized NumPy reference on every call; the plain sum must still accumulate.
"""
import numpy as np
import pytest

import graphc as gc
from graphc.codegen.llvm.kernels import gemm_acc as llvm_gemm_acc
from graphc.client.pipeline import compile_program
from graphc.ir import scalar as S
from graphc.ir.dtypes import float32


def _matmuls(dtype=gc.float32):
    a, b, c, d, e, f = (gc.placeholder(dtype, s) for s in
                        ([3, 4], [4, 2], [3, 5], [5, 2], [3, 6], [6, 2]))
    return (a, b, c, d, e, f), gc.matmul(a, b), gc.matmul(c, d), gc.matmul(e, f)


CASES = {
    "t+t+u": lambda t, u, w: t + t + u,
    "(t+u)*t": lambda t, u, w: (t + u) * t,
    "shared (t+u) twice": lambda t, u, w: (t + u) * (t + u) + w,
    "t+u+w, t fetched elsewhere in body": lambda t, u, w: (t + u + w) * gc.tanh(t),
    "2t+u+w": lambda t, u, w: 2.0 * t + u + w,
    "t+u+w": lambda t, u, w: t + u + w,
}


@pytest.mark.parametrize("native", ["1", "0"], ids=["native-gemm", "blas"])
@pytest.mark.parametrize("case", list(CASES))
def test_sums_of_matmuls_agree_with_the_reference_on_every_call(case, native, monkeypatch):
    monkeypatch.setenv("GRAPHC_NATIVE_GEMM", native)
    feeds, t, u, w = _matmuls()
    y = CASES[case](t, u, w)
    rng = np.random.default_rng(0)
    used = feeds if "w" in case else feeds[:4]
    feed = {p: rng.normal(size=p.shape).astype(np.float32) for p in used}
    ref = gc.compile(y, backend="numpy", optimize=False)(feed)
    step = gc.compile(y, backend="llvm")
    for _ in range(3):  # a GEMM adding into an uncleared buffer differs call to call
        np.testing.assert_allclose(step(feed), ref, rtol=1e-5, atol=1e-5)


def _accumulated(y, feeds):
    shapes = {p: tuple(p.shape) for p in feeds}
    return compile_program([y], shapes, "llvm").fn.artifacts.stats["accumulated_matmuls"]


def test_the_proof_still_lets_a_plain_sum_accumulate():
    feeds, t, u, w = _matmuls()
    assert _accumulated(t + u + w, feeds) == 3
    assert _accumulated(t + t + u, feeds) == 0  # t twice: only u is provable, one is no sum
    feeds, t, u, w = _matmuls()
    assert _accumulated((t + u + w) * gc.tanh(t), feeds) == 2  # u and w; t is read again


def test_gradient_of_a_product_of_one_doubled_tensor():
    """The issue's user case: ``b = x*1.5 + x*1.5``, ``d sum(b b) / dx`` was NaN on LLVM."""
    x = gc.placeholder(gc.float64, [4, 4])
    b = x * 1.5 + x * 1.5
    g = gc.gradients(gc.reduce_sum(gc.matmul(b, b)), [x])[0]
    xv = np.random.default_rng(1).normal(size=(4, 4))
    ref = gc.compile(g, backend="numpy", optimize=False)({x: xv})
    step = gc.compile(g, backend="llvm")
    for _ in range(2):
        np.testing.assert_allclose(step({x: xv}), ref, rtol=1e-12, atol=1e-12)


def test_hessian_vector_product_of_a_squared_product():
    a, b, v = (gc.placeholder(gc.float64, s) for s in ([3, 4], [4, 2], [3, 4]))
    m = gc.matmul(a, b)
    ga = gc.gradients(gc.reduce_sum(m * m), [a])[0]
    hv = gc.gradients(gc.reduce_sum(ga * v), [a])[0]
    rng = np.random.default_rng(2)
    feed = {p: rng.normal(size=p.shape) for p in (a, b, v)}
    want = 2 * feed[v] @ feed[b] @ feed[b].T  # H v for sum((ab)^2) = 2 v b b^T
    np.testing.assert_allclose(gc.compile(hv, backend="llvm")(feed), want, rtol=1e-10)


def test_occurrences_count_paths_not_nodes():
    x, y = S.arg(0, float32), S.arg(1, float32)
    s = x + y
    body = s * s + x
    count = S.occurrences(body)
    assert count[id(x)] == 3 and count[id(y)] == 2 and count[id(s)] == 2
    assert llvm_gemm_acc.summable_args(body, s, {0, 1}) == set()
    z = S.arg(2, float32)
    total = x + y + z
    assert llvm_gemm_acc.summable_args(total * y, total, {0, 1, 2}) == {0, 2}


def test_summable_args_on_a_deep_sum_does_not_recurse():
    terms = [S.arg(i, float32) for i in range(3000)]
    body = terms[0]
    for t in terms[1:]:
        body = body + t
    assert llvm_gemm_acc.summable_args(body, body, set(range(3000))) == set(range(3000))
