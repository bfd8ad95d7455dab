"""GEMM update fusion: ``w - a @ b`` whose product nothing else reads becomes one
``subtract_matmul`` node, written over w in place; values stay the reference's on both
backends (every LLVM path: the native GEMM subtracting as it stores, BLAS or packed B into
a private product, a minuend that must be copied), the op's VJP agrees with finite
differences (first and second order), and a bad minuend gets a clear error."""
import numpy as np
import pytest

import graphc as gc
from graphc.errors import ShapeError
from graphc.ir.ops.registry import F
from graphc.ir.printer import program_text

from tests.support.pass_testing import check_passes, mlp, ops, record

RNG = np.random.default_rng(3)


@pytest.fixture(autouse=True)
def fresh_graph():
    gc.reset_default_graph()


def test_an_sgd_step_updates_each_weight_with_one_node():
    x, y, loss, train, feeds = mlp(sizes=(6, 5, 4), batch=3)
    opt = check_passes([loss, train], feeds, steps=2, rtol=1e-12, atol=1e-12)
    assert record(opt, "fuse")["gemm_updates"] == 2
    assert ops(opt).count("subtract_matmul") == 2
    for line in program_text(opt).splitlines():
        if "subtract_matmul" in line:
            assert "in place over" in line
    # no product is left for a subtract to read
    assert not any(n.op_name == "subtract" and n.inputs[1].op_name == "matmul"
                   for n in opt.nodes)


def test_a_product_read_elsewhere_or_fetched_is_left_alone():
    w = gc.placeholder(gc.float64, [4, 3], name="w")
    a = gc.placeholder(gc.float64, [5, 4], name="a")
    b = gc.placeholder(gc.float64, [5, 3], name="b")
    p = gc.matmul(a, b, transpose_a=True)
    feeds = {w: RNG.normal(size=(4, 3)), a: RNG.normal(size=(5, 4)), b: RNG.normal(size=(5, 3))}
    opt = check_passes([w - p, p * 2.0], feeds)
    assert record(opt, "fuse")["gemm_updates"] == 0
    opt = check_passes([w - p, p], feeds)
    assert record(opt, "fuse")["gemm_updates"] == 0
    opt = check_passes([w - p], feeds)
    assert record(opt, "fuse")["gemm_updates"] == 1


# (m, n, k, transpose_a, transpose_b): native in place (A^T and plain), a few columns of A^T
# (a partial vector), B rows 2400 bytes apart (packed in one block: subtracted as stored), B
# rows 1 KiB apart under 40 rows of A^T (packed on AVX2), B packed in several K blocks (the
# product apart, then the subtraction), B transposed, and an empty sum; each native and with
# every GEMM BLAS's (GRAPHC_NATIVE_GEMM=0: the product, then the subtraction)
SHAPES = [(64, 64, 32, True, False), (16, 24, 8, False, False), (64, 10, 32, True, False),
          (8, 600, 4, True, False), (40, 256, 30, True, False), (8, 600, 1100, True, False),
          (12, 40, 9, False, True), (6, 7, 0, False, False)]


@pytest.mark.parametrize("native", ["1", "0"])
@pytest.mark.parametrize("m,n,k,ta,tb", SHAPES)
@pytest.mark.parametrize("dtype", [gc.float32, gc.float64])
def test_backends_agree_on_every_path(m, n, k, ta, tb, dtype, native, monkeypatch):
    monkeypatch.setenv("GRAPHC_NATIVE_GEMM", native)
    w = gc.placeholder(dtype, [m, n], name="w")
    a = gc.placeholder(dtype, [k, m] if ta else [m, k], name="a")
    b = gc.placeholder(dtype, [n, k] if tb else [k, n], name="b")
    upd = w - gc.matmul(a, b, transpose_a=ta, transpose_b=tb) * 1.0
    keep = (w * 0.5) * 1.0  # w read after the update too: it cannot be overwritten
    feeds = {x: RNG.normal(size=x.shape).astype(dtype.np) for x in (w, a, b)}
    ref = (feeds[w] - (feeds[a].T if ta else feeds[a]) @ (feeds[b].T if tb else feeds[b]))
    for fetches in ([upd], [upd, keep]):
        for backend in ("numpy", "llvm"):
            step = gc.compile(fetches, feeds=[w, a, b], backend=backend)
            assert "subtract_matmul" in step.ir()
            got = step(feeds)
            tol = 1e-5 if dtype == gc.float32 else 1e-12
            bound = 2 * np.finfo(dtype.np).eps * k * np.abs(ref).max()  # (a sum of k terms)
            np.testing.assert_allclose(got[0], ref, rtol=tol, atol=max(tol, bound))
            if len(fetches) == 2:
                np.testing.assert_allclose(got[1], feeds[w] * 0.5, rtol=tol)


def _numeric(f, x, eps=1e-6):
    g = np.zeros_like(x)
    for idx in np.ndindex(*x.shape):
        hi, lo = x.copy(), x.copy()
        hi[idx] += eps
        lo[idx] -= eps
        g[idx] = (f(hi) - f(lo)) / (2 * eps)
    return g


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_the_op_differentiates_once_and_twice(backend):
    """The op itself in a graph: its VJP against float64 central differences, and the
    gradient of a gradient norm (second order)."""
    shapes = {"w": (3, 4), "a": (5, 3), "b": (5, 4)}
    phs = {k: gc.placeholder(gc.float64, s, name=k) for k, s in shapes.items()}
    out = F.subtract_matmul(phs["w"], phs["a"], phs["b"], transpose_a=True)
    loss = gc.reduce_sum(gc.tanh(out) * out)
    grads = gc.gradients(loss, list(phs.values()))
    second = gc.gradients(gc.reduce_sum(gc.square(grads[1])), [phs["b"]])
    vals = {k: RNG.normal(size=s) for k, s in shapes.items()}
    step = gc.compile([loss] + grads + second, feeds=list(phs.values()), backend=backend)
    got = step({phs[k]: v for k, v in vals.items()})

    def f(**kw):
        v = dict(vals, **kw)
        o = v["w"] - v["a"].T @ v["b"]
        return float(np.sum(np.tanh(o) * o))
    for k, g in zip(shapes, got[1:4]):
        np.testing.assert_allclose(g, _numeric(lambda x: f(**{k: x}), vals[k]),
                                   rtol=1e-6, atol=1e-8)
    ga = gc.compile([grads[1]], feeds=list(phs.values()), backend="numpy")

    def norm(bv):
        return float(np.sum(ga({**{phs[k]: v for k, v in vals.items()}, phs["b"]: bv})[0] ** 2))
    np.testing.assert_allclose(got[4], _numeric(norm, vals["b"]), rtol=1e-5, atol=1e-7)


def test_a_minuend_of_another_shape_is_a_clear_error():
    w = gc.placeholder(gc.float32, [3, 5], name="w")
    a = gc.placeholder(gc.float32, [4, 3], name="a")
    b = gc.placeholder(gc.float32, [4, 4], name="b")
    with pytest.raises(ShapeError, match=r"subtract_matmul.*minuend f32\[3,5\] must have the "
                                         r"product's shape \[3,4\]"):
        F.subtract_matmul(w, a, b, transpose_a=True)


def test_llvm_updates_weights_in_place_as_numpy_does():
    """Weights of 24 and 64 columns (native GEMMs subtracting in place) and of 10 (BLAS and a
    loop), float32, three steps on each backend from the same start."""
    x, y, loss, train, feeds = mlp(sizes=(16, 24, 64, 10), batch=32, act="tanh",
                                   dtype=np.float32)
    results = {}
    for backend in ("numpy", "llvm"):
        with gc.Session(backend=backend) as sess:
            sess.run(gc.global_variables_initializer())
            losses = [sess.run([loss, train], feeds)[0] for _ in range(3)]
            results[backend] = losses + [sess.run(v) for v in gc.trainable_variables()]
        step = gc.compile([loss, train], feeds=[x, y], backend=backend)
        step(feeds)
        assert step.ir().count("subtract_matmul") == 3
    for a, b in zip(results["numpy"], results["llvm"]):
        np.testing.assert_allclose(b, a, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("native", ["1", "0"])
@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True)])
def test_a_minuend_that_is_also_a_factor_is_not_overwritten(ta, tb, native, monkeypatch):
    """``h - h @ h`` with h an intermediate: the update may not be written over h, which the
    GEMM reads whole as a factor (it was, and every tile after the first read a clobbered
    h: inf on a 96x96 step)."""
    monkeypatch.setenv("GRAPHC_NATIVE_GEMM", native)
    x = gc.placeholder(gc.float64, [96, 96], name="x")
    h = gc.tanh(x) * 0.5
    out = h - gc.matmul(h, h, transpose_a=ta, transpose_b=tb)
    xv = RNG.normal(size=(96, 96))
    hv = np.tanh(xv) * 0.5
    want = hv - (hv.T if ta else hv) @ (hv.T if tb else hv)
    for backend in ("numpy", "llvm"):
        step = gc.compile([out], feeds=[x], backend=backend)
        line = next(s for s in step.ir().splitlines() if "subtract_matmul" in s)
        assert "in place over" not in line
        np.testing.assert_allclose(step({x: xv})[0], want, rtol=1e-12, atol=1e-12)
