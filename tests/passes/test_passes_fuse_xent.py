"""Softmax cross-entropy fusion: a loss and its gradient of the same logits become one
``sparse_softmax_xent_with_grad`` node and its ``kept_loss``; values stay the reference's on
both backends (float64 finite differences, second order through the gradient), bad labels
still stop the step with the same error, and the LLVM row kernels (one vector per short row,
loops for long ones) agree with NumPy on every softmax-family op."""
import numpy as np
import pytest

import graphc as gc
from graphc.errors import GradientError, InvalidArgumentError
from graphc.ir.printer import program_text

from tests.support.pass_testing import check_passes, ops, program_of, record

RNG = np.random.default_rng(7)


@pytest.fixture(autouse=True)
def fresh_graph():
    gc.reset_default_graph()


def _xent_step(rows, width, dtype=gc.float64):
    z = gc.placeholder(dtype, [rows, width], name="z")
    y = gc.placeholder(gc.int64, [rows], name="y")
    loss = gc.reduce_mean(gc.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=z,
                                                                         name="xent"))
    (gz,) = gc.gradients(loss, [z])
    feeds = {z: RNG.normal(size=(rows, width)) * 3, y: RNG.integers(0, width, rows)}
    return z, y, loss, gz, feeds


def _reference_loss(z, y):
    m = z.max(axis=-1, keepdims=True)
    lse = np.log(np.exp(z - m).sum(axis=-1)) + m[:, 0]
    return float(np.mean(lse - z[np.arange(len(y)), y]))


def test_the_loss_and_its_gradient_become_one_node():
    z = gc.placeholder(gc.float64, [6, 10], name="z")
    y = gc.placeholder(gc.int64, [6], name="y")
    loss = gc.reduce_mean(gc.nn.sparse_softmax_cross_entropy_with_logits(labels=y,
                                                                         logits=z * 1.5))
    (gz,) = gc.gradients(loss, [z])
    feeds = {z: RNG.normal(size=(6, 10)), y: RNG.integers(0, 10, 6)}
    opt = check_passes([loss, gz], feeds, rtol=1e-13, atol=1e-15)
    assert ops(opt).count("sparse_softmax_xent_with_grad") == 1
    assert ops(opt).count("kept_loss") == 1
    assert "sparse_softmax_xent" not in ops(opt) and "sparse_softmax_xent_grad" not in ops(opt)
    assert record(opt, "fuse")["xent"] == 1
    # the logits have no other reader now: the gradient is written over them
    (line,) = [ln for ln in program_text(opt).splitlines() if "xent_with_grad" in ln]
    assert "in place over" in line
    # kept_loss reads the fused gradient, not the logits: it has no gradient to give, and
    # says so rather than give a zero
    (kept,) = [n for n in opt.nodes if n.op_name == "kept_loss"]
    with pytest.raises(GradientError, match="kept_loss .* made by the fuse pass"):
        kept.opdef.vjp(kept, kept, *kept.inputs, **kept.attrs)


def test_a_loss_or_a_gradient_alone_is_left_as_it_is():
    z, y, loss, gz, feeds = _xent_step(4, 5)
    assert "sparse_softmax_xent" in ops(program_of([loss], feeds))
    assert record(program_of([loss], feeds), "fuse")["xent"] == 0
    assert "sparse_softmax_xent_grad" in ops(program_of([gz], feeds))


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
@pytest.mark.parametrize("rows,width", [(6, 10), (7, 3), (5, 40), (9, 32)])
def test_values_and_finite_differences(backend, rows, width):
    """float64: the loss against the formula, the gradient against central differences
    (rows of 10 and 3 run as vectors, 40 as loops; 7 and 9 rows leave a partial block)."""
    z, y, loss, gz, feeds = _xent_step(rows, width)
    _check_fused_step(backend, "sparse_softmax_xent_with_grad", z, y, loss, gz, feeds,
                      _reference_loss)


def _check_fused_step(backend, fused, z, y, loss, gz, feeds, reference_loss):
    """The step holds ``fused``; its loss is the formula's, its gradient the formula's
    central differences."""
    step = gc.compile([loss, gz], feeds=[z, y], backend=backend)
    assert fused in step.ir()
    zv, yv = feeds[z], feeds[y]
    got_loss, got_grad = step({z: zv, y: yv})
    assert np.isclose(got_loss, reference_loss(zv, yv), rtol=1e-13)
    eps, numeric = 1e-6, np.zeros_like(zv)
    for idx in np.ndindex(*zv.shape):
        hi, lo = zv.copy(), zv.copy()
        hi[idx] += eps
        lo[idx] -= eps
        numeric[idx] = (reference_loss(hi, yv) - reference_loss(lo, yv)) / (2 * eps)
    np.testing.assert_allclose(got_grad, numeric, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_second_order_through_the_fused_gradient(backend):
    """d/dz sum(grad^2) with the loss fetched too (so the pair is fused): against central
    differences of the gradient itself."""
    z, y, loss, gz, feeds = _xent_step(4, 10)
    (hz,) = gc.gradients(gc.reduce_sum(gz * gz), [z])
    step = gc.compile([loss, gz, hz], feeds=[z, y], backend=backend)
    assert "sparse_softmax_xent_with_grad" in step.ir()
    gonly = gc.compile([gz], feeds=[z, y], backend="numpy")
    zv, yv = feeds[z], feeds[y]
    _, _, h = step({z: zv, y: yv})
    eps, numeric = 1e-6, np.zeros_like(zv)
    for idx in np.ndindex(*zv.shape):
        hi, lo = zv.copy(), zv.copy()
        hi[idx] += eps
        lo[idx] -= eps
        numeric[idx] = (np.sum(gonly({z: hi, y: yv})[0] ** 2)
                        - np.sum(gonly({z: lo, y: yv})[0] ** 2)) / (2 * eps)
    np.testing.assert_allclose(h, numeric, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
@pytest.mark.parametrize("width", [10, 40])
def test_a_bad_label_still_names_the_loss(backend, width):
    z, y, loss, gz, feeds = _xent_step(4, width, gc.float32)
    step = gc.compile([loss, gz], feeds=[z, y], backend=backend)
    zv = feeds[z].astype(np.float32)
    with pytest.raises(InvalidArgumentError,
                       match=rf"sparse_softmax_xent 'xent': label {width} at \[2\] is outside "
                             rf"\[0, {width}\)"):
        step({z: zv, y: np.array([0, 1, width, 2])})


@pytest.mark.parametrize("width", [1, 2, 3, 10, 16, 32, 33, 100])
def test_llvm_row_kernels_agree_with_numpy(width):
    """Every softmax-family op, forward and gradient, float32 and float64, with a masked
    (all -inf) row, rows of huge logits, the maximum at either end and a NaN row; widths
    around the vector limits."""
    for dtype in (gc.float32, gc.float64):
        gc.reset_default_graph()
        rows = 9
        z = gc.placeholder(dtype, [rows, width], name="z")
        y = gc.placeholder(gc.int64, [rows], name="y")
        soft = gc.placeholder(dtype, [rows, width], name="soft")
        sparse = gc.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=z)
        dense = gc.nn.softmax_cross_entropy_with_logits(labels=soft, logits=z)
        outs = [gc.nn.softmax(z), gc.nn.log_softmax(z), sparse, dense]
        grads = gc.gradients(gc.reduce_sum(sparse) + gc.reduce_sum(dense * 0.5), [z])
        zv = RNG.normal(size=(rows, width)) * 4
        zv[1] = -np.inf
        zv[2, :] = 1e4 * RNG.normal(size=width)
        zv[3, width // 2] = np.nan
        zv[4] = 500.0 * np.arange(width)  # the maximum last, then first: every lane counts
        zv[5] = zv[4][::-1]
        labels = RNG.random((rows, width))
        feed = {z: zv.astype(dtype.np), y: RNG.integers(0, width, rows),
                soft: (labels / labels.sum(-1, keepdims=True)).astype(dtype.np)}
        got = {}
        for backend in ("numpy", "llvm"):
            step = gc.compile(outs + grads, feeds=[z, y, soft], backend=backend)
            got[backend] = step(feed)
        tol = 2e-5 if dtype == gc.float32 else 1e-12
        for a, b in zip(got["numpy"], got["llvm"]):
            np.testing.assert_allclose(b, a, rtol=tol, atol=tol, equal_nan=True)


# -- dense labels -----------------------------------------------------------------------------
def _dense_step(rows, width, dtype=gc.float64, v2=False):
    z = gc.placeholder(dtype, [rows, width], name="z")
    y = gc.placeholder(dtype, [rows, width], name="y")
    xent = (gc.nn.softmax_cross_entropy_with_logits_v2 if v2
            else gc.nn.softmax_cross_entropy_with_logits)
    loss = gc.reduce_mean(xent(labels=y, logits=z, name="xent"))
    labels = RNG.random((rows, width))
    labels[0, 0] = 0.0
    feeds = {z: RNG.normal(size=(rows, width)) * 3,
             y: labels / labels.sum(-1, keepdims=True)}
    return z, y, loss, feeds


def _dense_reference_loss(z, y):
    m = z.max(axis=-1, keepdims=True)
    log_p = z - m - np.log(np.exp(z - m).sum(axis=-1, keepdims=True))
    return float(np.mean(-(y * log_p).sum(-1)))


def test_dense_labels_fuse_too():
    z, y, loss, feeds = _dense_step(6, 10)
    (gz,) = gc.gradients(loss, [z])
    opt = check_passes([loss, gz], feeds, rtol=1e-13, atol=1e-15)
    assert ops(opt).count("softmax_xent_with_grad") == 1
    assert ops(opt).count("kept_loss") == 1
    assert "softmax_xent" not in ops(opt) and "softmax_xent_grad" not in ops(opt)
    assert record(opt, "fuse")["xent"] == 1
    (kept,) = [n for n in opt.nodes if n.op_name == "kept_loss"]
    with pytest.raises(GradientError, match="differentiate softmax_xent instead"):
        kept.opdef.vjp(kept, kept, *kept.inputs, **kept.attrs)


def test_dense_and_sparse_losses_of_the_same_logits_pair_with_their_own_gradients():
    z, y, dense, feeds = _dense_step(5, 10)
    labels = gc.placeholder(gc.int64, [5], name="labels")
    sparse = gc.reduce_mean(gc.nn.sparse_softmax_cross_entropy_with_logits(labels=labels,
                                                                           logits=z))
    (gz,) = gc.gradients(dense + 0.5 * sparse, [z])
    feeds[labels] = RNG.integers(0, 10, 5)
    opt = check_passes([dense, sparse, gz], feeds, rtol=1e-13, atol=1e-15)
    assert record(opt, "fuse")["xent"] == 2
    assert {"softmax_xent_with_grad", "sparse_softmax_xent_with_grad"} <= set(ops(opt))


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
@pytest.mark.parametrize("rows,width", [(6, 10), (7, 3), (5, 40), (9, 32)])
def test_dense_values_and_finite_differences(backend, rows, width):
    """float64, both row kernels: the fused loss against the formula, its gradient against
    central differences."""
    z, y, loss, feeds = _dense_step(rows, width)
    (gz,) = gc.gradients(loss, [z])
    _check_fused_step(backend, "softmax_xent_with_grad", z, y, loss, gz, feeds,
                      _dense_reference_loss)


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_dense_v2_second_order_and_label_gradients(backend):
    """v2 lets gradients reach the labels (a log_softmax beside the fused pair); the
    Hessian-vector product through the fused gradient against central differences."""
    z, y, loss, feeds = _dense_step(4, 10, v2=True)
    gz, gy = gc.gradients(loss, [z, y])
    (hz,) = gc.gradients(gc.reduce_sum(gz * gz), [z])
    step = gc.compile([loss, gz, gy, hz], feeds=[z, y], backend=backend)
    assert "softmax_xent_with_grad" in step.ir()
    ref = gc.compile([loss, gz, gy, hz], feeds=[z, y], backend="numpy", optimize=False)
    for got, want in zip(step(feeds), ref(feeds)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("dtype", [gc.float32, gc.float64])
@pytest.mark.parametrize("width", [3, 10, 40])
def test_dense_fused_rows_with_masked_logits_agree_with_the_reference(dtype, width):
    """-inf logits under zero labels, an all -inf row and a NaN label, through the fused
    kernel of each backend, against the unoptimized reference."""
    z, y, loss, _ = _dense_step(9, width, dtype)
    (gz,) = gc.gradients(loss, [z])
    zv = (RNG.normal(size=(9, width)) * 3).astype(dtype.np)
    yv = RNG.random((9, width)).astype(dtype.np)
    zv[0, 1], yv[0, 1] = -np.inf, 0.0
    zv[3] = -np.inf
    yv /= yv.sum(-1, keepdims=True)
    feeds = {z: zv, y: yv}
    want = gc.compile([loss, gz], feeds=[z, y], backend="numpy", optimize=False)(feeds)
    assert np.isfinite(want[0]) and np.isfinite(want[1]).all()
    tol = 2e-6 if dtype == gc.float32 else 1e-13
    for backend in ("numpy", "llvm"):
        step = gc.compile([loss, gz], feeds=[z, y], backend=backend)
        assert "softmax_xent_with_grad" in step.ir()
        for got, w in zip(step(feeds), want):
            np.testing.assert_allclose(got, w, rtol=tol, atol=tol, err_msg=backend)
