"""conv2d, max and average pooling through the public API: values against naive loop
references and hand-computed cases (TF's SAME rule), gradients and second derivatives
against central differences, the max-pool routing and tie rule, TF1's argument forms, clear
errors, and the W4 workload against its hand-written baseline."""
import sys
from pathlib import Path

import numpy as np
import pytest

import graphc as gc
from graphc.errors import GraphError, ShapeError

from tests.support import window_refs as W
from tests.support.checks import run_both
from tests.support.layer_testing import check_gradients, check_hessian_vector_products
from tests.support.paths import ROOT

F64 = gc.float64


def _nhwc(a, fmt):
    return a if fmt == "NHWC" else a.transpose(0, 3, 1, 2)


CONV_CASES = [  # (x shape NHWC, filter, strides as given, (sh, sw), padding, format)
    ((2, 7, 6, 3), (3, 2, 3, 4), 1, (1, 1), "VALID", "NHWC"),
    ((2, 7, 6, 3), (3, 3, 3, 2), [2, 1], (2, 1), "SAME", "NHWC"),
    ((1, 8, 8, 2), (2, 2, 2, 3), [1, 2, 2, 1], (2, 2), "same", "NHWC"),
    ((2, 5, 6, 2), (3, 3, 2, 2), [1, 1, 2, 3], (2, 3), "SAME", "NCHW"),
    ((1, 5, 5, 1), (5, 5, 1, 2), 1, (1, 1), "VALID", "NHWC"),
]


@pytest.mark.parametrize("xs,ws,strides,pair,padding,fmt", CONV_CASES)
def test_conv2d_matches_naive_reference(xs, ws, strides, pair, padding, fmt, rng):
    xv, wv = rng.standard_normal(xs), rng.standard_normal(ws)
    shape = list(_nhwc(np.empty(xs), fmt).shape)
    x = gc.placeholder(F64, [None] + shape[1:])
    y = gc.nn.conv2d(x, gc.constant(wv), strides, padding, data_format=fmt)
    expected = _nhwc(W.conv2d(xv, wv, pair, padding.upper()), fmt)
    assert y.shape == (None,) + expected.shape[1:]
    for got in run_both(y, {x: _nhwc(xv, fmt)}):
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_conv2d_same_padding_puts_the_extra_row_after():
    """TF's SAME rule by hand: 3x3 input, 2x2 ones filter, stride 1 pads one row and one
    column at the bottom/right only; stride 2 on 4x4 needs no padding."""
    x3 = np.arange(1.0, 10.0).reshape(1, 3, 3, 1)
    ones = np.ones((2, 2, 1, 1))
    got = gc.nn.conv2d(gc.constant(x3), gc.constant(ones), 1, "SAME")
    want = [[12, 16, 9], [24, 28, 15], [15, 17, 9]]
    x4 = np.arange(1.0, 17.0).reshape(1, 4, 4, 1)
    got2 = gc.nn.conv2d(gc.constant(x4), gc.constant(ones), 2, "SAME")
    for a, b in run_both([got, got2]):
        np.testing.assert_array_equal(a[0, :, :, 0], want)
        np.testing.assert_array_equal(b[0, :, :, 0], [[14, 22], [46, 54]])


def test_conv2d_unknown_spatial_dims_are_specialized(rng):
    """Fully convolutional: H and W unknown until fed; gradients still valid."""
    x = gc.placeholder(F64, [None, None, None, 2])
    w = gc.constant(rng.standard_normal((3, 3, 2, 2)))
    y = gc.nn.conv2d(x, w, 2, "SAME")
    dx, = gc.gradients(gc.reduce_sum(y * y), [x])
    for shape in [(1, 5, 7, 2), (2, 4, 4, 2)]:
        xv = rng.standard_normal(shape)
        got_y, got_dx = run_both([y, dx], {x: xv})[0]
        np.testing.assert_allclose(got_y, W.conv2d(xv, w.attrs["value"], (2, 2), "SAME"))
        assert got_dx.shape == shape


GRAD_CASES = [c for c in CONV_CASES if c[0][0] * c[0][1] * c[0][2] <= 90]


@pytest.mark.parametrize("xs,ws,strides,pair,padding,fmt", GRAD_CASES)
def test_conv2d_gradients_match_central_differences(xs, ws, strides, pair, padding, fmt, rng):
    x = gc.placeholder(F64, list(_nhwc(np.empty(xs), fmt).shape))
    w = gc.placeholder(F64, list(ws))
    y = gc.nn.conv2d(x, w, strides, padding, data_format=fmt)
    loss = gc.reduce_sum(gc.tanh(y) * rng.standard_normal(y.shape))
    feeds = {x: rng.standard_normal(x.shape), w: rng.standard_normal(ws) * 0.5}
    check_gradients(loss, [x, w], feeds, rng, what="conv2d")


@pytest.mark.parametrize("padding,strides", [("VALID", 1), ("SAME", 2)])
def test_conv2d_second_order(padding, strides, rng):
    """Hessian-vector products in x and w jointly: exercises the VJPs of both backward ops
    (conv2d_backprop_input -> conv2d / backprop_filter, backprop_filter -> ...)."""
    x = gc.placeholder(F64, [2, 5, 5, 2])
    w = gc.placeholder(F64, [3, 3, 2, 3])
    y = gc.nn.conv2d(x, w, strides, padding)
    loss = gc.reduce_sum(gc.tanh(y) * rng.standard_normal(y.shape))
    feeds = {x: rng.standard_normal(x.shape), w: rng.standard_normal(w.shape) * 0.5}
    check_hessian_vector_products(loss, [x, w], feeds, rng, what="conv2d")
    # Third order through the same closed set of ops: d/dw of <grad_x, v>.
    gx, = gc.gradients(loss, [x])
    inner = gc.reduce_sum(gx * rng.standard_normal(x.shape))
    check_gradients(inner, [w], feeds, rng, what="d/dw <dL/dx, v>")


# -- max pooling: routing and ties ---------------------------------------------------------------
def _pool_grad(x_value, dy_value, **kw):
    x = gc.placeholder(F64, list(x_value.shape))
    y = gc.nn.max_pool2d(x, **kw)
    dx, = gc.gradients(gc.reduce_sum(y * gc.constant(dy_value)), [x])
    assert any(n.op_name == "max_pool_grad" for n in dx.graph.nodes)
    return run_both([y, dx], {x: x_value})


def test_max_pool_gradient_goes_to_the_first_maximum_on_ties():
    """Windows: all equal (top-left wins), a tie in row 0 col 1 and row 1 col 0 (row 0 wins),
    a unique maximum, and a three-way tie (the first in row-major order wins)."""
    x = np.array([[5, 5, 1, 3],
                  [5, 5, 3, 2],
                  [0, 0, 2, 9],
                  [0, 7, 9, 9]], float).reshape(1, 4, 4, 1)
    dy = np.array([[10.0, 20.0], [30.0, 40.0]]).reshape(1, 2, 2, 1)
    want_dx = np.array([[10, 0, 0, 20],
                        [0, 0, 0, 0],
                        [0, 0, 0, 40],
                        [0, 30, 0, 0]], float)
    for y, dx in _pool_grad(x, dy, ksize=2, strides=2, padding="VALID"):
        np.testing.assert_array_equal(y[0, :, :, 0], [[5, 3], [7, 9]])
        np.testing.assert_array_equal(dx[0, :, :, 0], want_dx)


def test_max_pool_nan_counts_as_the_maximum():
    """As np.argmax (and the LLVM kernels): the first NaN of a window takes its gradient."""
    x = np.array([[1, np.nan, 4, 3],
                  [np.nan, 9, 2, 1]]).reshape(1, 2, 4, 1)
    for y, dx in _pool_grad(x, np.array([[[[2.0], [5.0]]]]), ksize=2, strides=2,
                            padding="VALID"):
        assert np.isnan(y[0, 0, 0, 0]) and y[0, 0, 1, 0] == 4
        np.testing.assert_array_equal(dx[0, :, :, 0], [[0, 2, 5, 0], [0, 0, 0, 0]])
    # An infinite upstream gradient stays at its argmax: no inf * 0 = NaN elsewhere.
    for _, dx in _pool_grad(np.arange(8.0).reshape(1, 2, 4, 1),
                            np.array([[[[np.inf], [1.0]]]]), ksize=2, strides=2, padding="VALID"):
        np.testing.assert_array_equal(dx[0, :, :, 0], [[0, 0, 0, 0], [0, np.inf, 0, 1]])


def test_max_pool_overlapping_windows_accumulate():
    """Stride 1: the centre is the maximum of all four 2x2 windows and gets all their
    gradients; a tie across windows is resolved per window."""
    x = np.array([[1, 2, 1], [2, 9, 2], [1, 2, 1]], float).reshape(1, 3, 3, 1)
    dy = np.array([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 2, 2, 1)
    for _, dx in _pool_grad(x, dy, ksize=[1, 2, 2, 1], strides=[1, 1, 1, 1], padding="VALID"):
        want = np.zeros((3, 3))
        want[1, 1] = 10.0
        np.testing.assert_array_equal(dx[0, :, :, 0], want)


def test_max_pool_same_padding_never_wins():
    """All-negative input with SAME padding: padding is not a zero that could win."""
    x = -np.arange(1.0, 26.0).reshape(1, 5, 5, 1)
    dy = np.ones((1, 3, 3, 1))
    for y, dx in _pool_grad(x, dy, ksize=3, strides=2, padding="SAME"):
        np.testing.assert_array_equal(y, W.max_pool(x, (3, 3), (2, 2), "SAME"))
        assert (y < 0).all() and dx.sum() == 9.0
        np.testing.assert_array_equal(dx, W.max_pool_grad(x, dy, (3, 3), (2, 2), "SAME"))


@pytest.mark.parametrize("fn", ["max_pool2d", "avg_pool2d"])
@pytest.mark.parametrize("ksize,strides,padding,fmt", [
    (2, 2, "VALID", "NHWC"), ([3, 2], [2, 1], "SAME", "NHWC"), ([1, 1, 3, 3], [1, 1, 2, 2],
                                                                  "SAME", "NCHW")])
def test_pool_gradients_match_central_differences(fn, ksize, strides, padding, fmt, rng):
    x = gc.placeholder(F64, [2, 5, 4, 2] if fmt == "NHWC" else [2, 2, 5, 4])
    y = getattr(gc.nn, fn)(x, ksize, strides, padding, data_format=fmt)
    loss = gc.reduce_sum(gc.square(y) * rng.standard_normal(y.shape))
    check_gradients(loss, [x], {x: rng.standard_normal(x.shape)}, rng, what=fn)


def test_max_pool_gradient_of_gradient(rng):
    """L = sum(pool(x) * a): dL/dx routes a; d/da <dL/dx, v> reads v at each argmax (the
    max_pool_grad_grad op), checked against central differences in a."""
    x = gc.placeholder(F64, [2, 4, 6, 3])
    a = gc.placeholder(F64, [2, 2, 3, 3])
    gx, = gc.gradients(gc.reduce_sum(gc.nn.max_pool(x, 2, 2, "VALID") * a), [x])
    inner = gc.reduce_sum(gx * rng.standard_normal(x.shape))
    feeds = {x: rng.standard_normal(x.shape), a: rng.standard_normal(a.shape)}
    check_gradients(inner, [a], feeds, rng, what="max_pool second order")
    assert any(n.op_name == "max_pool_grad_grad" for n in inner.graph.nodes)


def test_avg_pool_same_divides_by_the_real_elements():
    """TF semantics: SAME windows at the border average over the input elements they cover."""
    x = np.ones((1, 5, 5, 2))
    y = gc.nn.avg_pool(gc.constant(x), [1, 3, 3, 1], [1, 2, 2, 1], "SAME")
    for got in run_both(y):
        np.testing.assert_array_equal(got, np.ones((1, 3, 3, 2)))
    x = np.arange(16.0).reshape(1, 4, 4, 1)
    y = gc.nn.avg_pool2d(gc.constant(x), 3, 1, "SAME")
    assert run_both(y)[0][0, 0, 0, 0] == np.mean([0, 1, 4, 5])


def test_tf1_aliases_and_layers_agree(rng):
    xv = rng.standard_normal((2, 6, 6, 3))
    x = gc.constant(xv)
    outs = [gc.nn.max_pool(x, [1, 2, 2, 1], [1, 2, 2, 1], "VALID"),
            gc.nn.max_pool(value=x, ksize=2, strides=2, padding="VALID"),
            gc.layers.max_pooling2d(x, 2, 2),
            gc.nn.avg_pool(x, [1, 2, 2, 1], [1, 2, 2, 1], "VALID"),
            gc.layers.average_pooling2d(x, [2, 2], [2, 2])]
    got = run_both(outs)[0]
    for g in got[:3]:
        np.testing.assert_array_equal(g, W.max_pool(xv, (2, 2), (2, 2), "VALID"))
    for g in got[3:]:
        np.testing.assert_allclose(g, W.avg_pool(xv, (2, 2), (2, 2), "VALID"), rtol=1e-13)


def test_layers_conv2d_flatten_dense_build_tf1_variables():
    x = gc.placeholder(gc.float32, [None, 8, 8, 1])
    h = gc.layers.conv2d(x, 4, 3, padding="same", activation=gc.nn.relu)
    h = gc.layers.max_pooling2d(h, 2, 2)
    logits = gc.layers.dense(gc.layers.flatten(h), 10)
    names = [v.op.name for v in gc.trainable_variables()]
    assert names == ["conv2d/kernel", "conv2d/bias", "dense/kernel", "dense/bias"]
    assert gc.trainable_variables()[0].shape == (3, 3, 1, 4) and logits.shape == (None, 10)
    got = run_both(logits, {x: np.ones((3, 8, 8, 1), np.float32)})[0]
    assert got.shape == (3, 10) and got.dtype == np.float32


# -- errors ----------------------------------------------------------------------------------------
def _x():
    return gc.placeholder(gc.float32, [None, 6, 6, 3])


def _w(shape=(3, 3, 3, 4)):
    return gc.constant(np.zeros(shape, np.float32))


BAD = [
    (lambda: gc.nn.conv2d(_x(), _w(), 1, "FULL"), GraphError, "padding must be 'VALID' or 'SAME'"),
    (lambda: gc.nn.conv2d(_x(), _w(), [2, 1, 1, 1], "SAME"), GraphError, "batch or channel"),
    (lambda: gc.nn.conv2d(_x(), _w(), [1, 2, 3], "SAME"), GraphError, "list of 1, 2 or 4"),
    (lambda: gc.nn.conv2d(_x(), _w((3, 3, 2, 4)), 1, "SAME"), ShapeError,
     "has 3 channels but the filters expect 2"),
    (lambda: gc.nn.conv2d(_x(), _w((7, 7, 3, 4)), 1, "VALID"), ShapeError,
     "smaller than the window"),
    (lambda: gc.nn.conv2d(_x(), _w((3, 3, 3)), 1, "SAME"), ShapeError, "filters must be 4-D"),
    (lambda: gc.nn.conv2d(gc.placeholder(gc.float32, [6, 6, 3]), _w(), 1, "SAME"), ShapeError,
     "must be 4-D"),
    (lambda: gc.nn.conv2d(_x(), _w(), 2, "SAME", dilations=2), GraphError,
     "dilations other than 1 need strides of 1"),
    (lambda: gc.nn.conv2d(_x(), _w(), 1, "SAME", data_format="NCWH"), GraphError, "NCHW"),
    (lambda: gc.nn.max_pool2d(_x(), 0, 1, "SAME"), ShapeError, "window size"),
    (lambda: gc.nn.avg_pool2d(_x(), 2, [1, 1, 2, 2], "SAME"), GraphError, "batch or channel"),
]


@pytest.mark.parametrize("build,cls,pattern", BAD, ids=[b[2][:30] for b in BAD])
def test_bad_arguments_are_rejected_clearly(build, cls, pattern):
    with pytest.raises(cls, match=pattern):
        build()


def test_conv_error_names_the_users_line():
    with pytest.raises(ShapeError) as info:
        gc.nn.conv2d(_x(), _w((3, 3, 5, 4)), 1, "SAME")
    assert "conv2d" in str(info.value) and "test_conv_pool.py" in str(info.value)


# -- the W4 workload against the hand-written baseline --------------------------------------------
def _baselines():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import baselines
    return baselines


@pytest.mark.parametrize("images", ["random", "ties"])
def test_w4_loss_and_gradients_match_the_baseline(images):
    """conv 3x3 VALID, ReLU, 2x2 max pool, dense, mean sparse xent: the loss and every
    gradient equal the hand-derived NumPy baseline's, also on blocky images whose pooling
    windows tie (both route to the first maximum)."""
    B = _baselines()
    base = B.W4(seed=0, dtype=np.float64)
    rng = np.random.default_rng(5)
    for p in ("bc", "bd"):
        base.params[p][...] = 0.1 * rng.standard_normal(base.params[p].shape)
    xv, yv = B.make_data("W4", seed=1, dtype=np.float64)
    if images == "ties":
        blocks = rng.integers(0, 3, (len(xv), 7, 7)) / 2
        xv = blocks.repeat(4, axis=1).repeat(4, axis=2)[..., None]
    want_loss = base.loss_and_grads(xv, yv)
    x = gc.placeholder(F64, [None, 28, 28, 1])
    y = gc.placeholder(gc.int64, [None])
    params = {k: gc.Variable(v.copy(), name=k) for k, v in base.params.items()}
    h = gc.nn.relu(gc.nn.conv2d(x, params["K"], [1, 1, 1, 1], "VALID") + params["bc"])
    h = gc.nn.max_pool(h, [1, 2, 2, 1], [1, 2, 2, 1], "VALID")
    logits = gc.matmul(gc.reshape(h, [-1, 13 * 13 * 8]), params["Wd"]) + params["bd"]
    loss = gc.reduce_mean(gc.nn.sparse_softmax_cross_entropy_with_logits(labels=y,
                                                                         logits=logits))
    grads = gc.gradients(loss, list(params.values()))
    for got_loss, got_grads in run_both([loss, grads], {x: xv, y: yv}):
        assert abs(got_loss - want_loss) < 1e-12
        for name, g in zip(params, got_grads):
            np.testing.assert_allclose(g, base.grads[name], rtol=1e-9, atol=1e-12,
                                       err_msg=name)
