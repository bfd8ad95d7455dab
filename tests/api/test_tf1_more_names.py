"""TF1 names that were missing (issue 15, part 3): sin and cos, depthwise, separable and
dilated (atrous) convolutions, local response normalization, confusion_matrix,
train.checkpoint_exists, random_shuffle, random_crop and the image distortions (random flips,
brightness, contrast, resize_image_with_crop_or_pad). Values against NumPy on both backends;
the differentiable ones against float64 central differences."""
import numpy as np
import pytest

import graphc as gc
from graphc.errors import GraphError, ShapeError

from tests.support.checks import check_against_central_differences
from tests.support.window_refs import pads

BACKENDS = ("numpy", "llvm")


def run_on(backend, fetches, feeds=None):
    with gc.Session(backend=backend) as sess:
        if gc.global_variables():
            sess.run(gc.global_variables_initializer())
        return sess.run(fetches, feeds or {})


def check_grads(backend, loss, feeds, xs, rng, what):
    grads = gc.gradients(loss, xs)
    sess = gc.Session(backend=backend)
    got = sess.run(grads, feeds)
    check_against_central_differences(lambda f: float(sess.run(loss, f)), feeds, xs, got, rng,
                                      what)


# -- sin, cos -------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_sin_and_cos(backend, rng):
    x = gc.placeholder(gc.float64, [7])
    x32 = gc.placeholder(gc.float32, [7])
    xv = np.array([-7.5, -np.pi, -0.3, 0.0, 1.0, np.pi / 2, 12.25])
    ops = [gc.sin(x), gc.cos(x), gc.math.sin(x32), gc.math.cos(x32)]
    assert [op.op.name for op in ops] == ["Sin", "Cos", "Sin_1", "Cos_1"]
    got = run_on(backend, ops, {x: xv, x32: xv.astype(np.float32)})
    np.testing.assert_allclose(got[0], np.sin(xv), rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(got[1], np.cos(xv), rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(got[2], np.sin(xv.astype(np.float32)), rtol=1e-6, atol=1e-7)
    assert got[2].dtype == np.float32
    loss = gc.reduce_sum(gc.sin(x) * gc.cos(2.0 * x))
    check_grads(backend, loss, {x: xv}, [x], rng, "sin cos")


# -- convolutions ---------------------------------------------------------------------------------
def conv_ref(x, w, strides=(1, 1), padding="VALID", rates=(1, 1)):
    """NHWC cross-correlation with taps ``rates`` apart, from the definition (loops)."""
    kh, kw = [(k - 1) * r + 1 for k, r in zip(w.shape[:2], rates)]
    (oh, top), (ow, left) = (pads(x.shape[1], kh, strides[0], padding),
                             pads(x.shape[2], kw, strides[1], padding))
    y = np.zeros((x.shape[0], oh, ow, w.shape[3]))
    for p in range(oh):
        for q in range(ow):
            for i in range(w.shape[0]):
                for j in range(w.shape[1]):
                    r = p * strides[0] + i * rates[0] - top
                    c = q * strides[1] + j * rates[1] - left
                    if 0 <= r < x.shape[1] and 0 <= c < x.shape[2]:
                        y[:, p, q, :] += x[:, r, c, :] @ w[i, j]
    return y


def depthwise_ref(x, f, strides=(1, 1), padding="VALID", rates=(1, 1)):
    outs = [conv_ref(x[..., c:c + 1], f[:, :, c:c + 1, m:m + 1], strides, padding, rates)
            for c in range(f.shape[2]) for m in range(f.shape[3])]
    return np.concatenate(outs, axis=-1)   # channel c * M + m


@pytest.mark.parametrize("backend", BACKENDS)
def test_depthwise_and_separable_conv2d(backend, rng):
    x = gc.placeholder(gc.float64, [2, 6, 5, 3])
    f = gc.placeholder(gc.float64, [3, 2, 3, 2])
    pw = gc.placeholder(gc.float64, [1, 1, 6, 4])
    outs = [gc.nn.depthwise_conv2d(x, f, [1, 1, 1, 1], "SAME"),
            gc.nn.depthwise_conv2d(x, f, [1, 2, 2, 1], "VALID"),
            gc.nn.depthwise_conv2d(x, f, [1, 1, 1, 1], "SAME", rate=[2, 2]),
            gc.nn.separable_conv2d(x, f, pw, [1, 1, 1, 1], "SAME")]
    xv, fv, pv = (rng.standard_normal(s) for s in ((2, 6, 5, 3), (3, 2, 3, 2), (1, 1, 6, 4)))
    got = run_on(backend, outs, {x: xv, f: fv, pw: pv})
    same = depthwise_ref(xv, fv, padding="SAME")
    np.testing.assert_allclose(got[0], same, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got[1], depthwise_ref(xv, fv, (2, 2)), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got[2], depthwise_ref(xv, fv, padding="SAME", rates=(2, 2)),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got[3], same @ pv[0, 0], rtol=1e-12, atol=1e-12)
    assert outs[0].shape == (2, 6, 5, 6) and outs[1].shape == (2, 2, 2, 6)
    loss = gc.reduce_sum(gc.tanh(outs[3])) + gc.reduce_sum(outs[2] * outs[2])
    check_grads(backend, loss, {x: xv, f: fv, pw: pv}, [x, f, pw], rng, "depthwise")


@pytest.mark.parametrize("backend", BACKENDS)
def test_atrous_conv2d_and_conv2d_dilations(backend, rng):
    x = gc.placeholder(gc.float64, [1, 7, 8, 2])
    w = gc.placeholder(gc.float64, [3, 3, 2, 3])
    atrous = gc.nn.atrous_conv2d(x, w, rate=2, padding="SAME")
    dilated = gc.nn.conv2d(x, w, [1, 1, 1, 1], "VALID", dilations=[1, 3, 2, 1])
    xv, wv = rng.standard_normal((1, 7, 8, 2)), rng.standard_normal((3, 3, 2, 3))
    got = run_on(backend, [atrous, dilated], {x: xv, w: wv})
    np.testing.assert_allclose(got[0], conv_ref(xv, wv, padding="SAME", rates=(2, 2)),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got[1], conv_ref(xv, wv, rates=(3, 2)), rtol=1e-12, atol=1e-12)
    assert dilated.shape == (1, 1, 4, 3)
    check_grads(backend, gc.reduce_sum(gc.square(atrous)), {x: xv, w: wv}, [x, w], rng,
                "atrous")
    with pytest.raises(GraphError, match="dilations other than 1 need strides of 1"):
        gc.nn.conv2d(x, w, [1, 2, 2, 1], "SAME", dilations=[1, 2, 2, 1])
    with pytest.raises(ShapeError, match=r"depthwise_conv2d .*: the filter must be \[kh, kw"):
        gc.nn.depthwise_conv2d(x, gc.zeros([3, 3, 2]), [1, 1, 1, 1], "SAME")


# -- local response normalization -----------------------------------------------------------------
def lrn_ref(x, r, bias, alpha, beta):
    s = np.zeros_like(x)
    c = x.shape[-1]
    for k in range(c):
        s[..., k] = np.sum(x[..., max(0, k - r):min(c, k + r + 1)] ** 2, axis=-1)
    return x / (bias + alpha * s) ** beta


@pytest.mark.parametrize("backend", BACKENDS)
def test_local_response_normalization(backend, rng):
    x = gc.placeholder(gc.float64, [2, 3, 3, 7])
    default = gc.nn.lrn(x)
    alexnet = gc.nn.local_response_normalization(x, depth_radius=2, bias=2.0, alpha=1e-1,
                                                 beta=0.75)
    xv = rng.standard_normal((2, 3, 3, 7))
    got = run_on(backend, [default, alexnet], {x: xv})
    np.testing.assert_allclose(got[0], lrn_ref(xv, 5, 1.0, 1.0, 0.5), rtol=1e-12)
    np.testing.assert_allclose(got[1], lrn_ref(xv, 2, 2.0, 0.1, 0.75), rtol=1e-12)
    check_grads(backend, gc.reduce_sum(alexnet * gc.constant(rng.standard_normal(7))),
                {x: xv}, [x], rng, "lrn")
    with pytest.raises(ShapeError, match="must be 4-D NHWC"):
        gc.nn.lrn(gc.zeros([3, 4]))


# -- confusion_matrix, checkpoint_exists ----------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_confusion_matrix(backend):
    labels = gc.placeholder(gc.int64, [6])
    preds = gc.placeholder(gc.int32, [6])
    weights = gc.placeholder(gc.float32, [6])
    counts = gc.confusion_matrix(labels, preds, num_classes=3)
    weighted = gc.math.confusion_matrix(labels, preds, 4, weights=weights, dtype=gc.float32)
    lv, pv = np.array([0, 1, 2, 2, 1, 0]), np.array([0, 2, 2, 1, 1, 0], np.int32)
    wv = np.array([1.0, 0.5, 2.0, 1.0, 3.0, 0.25], np.float32)
    got_counts, got_weighted = run_on(backend, [counts, weighted],
                                      {labels: lv, preds: pv, weights: wv})
    want, want_w = np.zeros((3, 3), np.int32), np.zeros((4, 4), np.float32)
    np.add.at(want, (lv, pv), 1)
    np.add.at(want_w, (lv, pv), wv)
    assert got_counts.dtype == np.int32 and counts.shape == (3, 3)
    np.testing.assert_array_equal(got_counts, want)
    np.testing.assert_array_equal(got_weighted, want_w)
    with pytest.raises(GraphError, match="num_classes must be a positive Python int"):
        gc.confusion_matrix(labels, preds)


def test_checkpoint_exists(tmp_path):
    w = gc.Variable(np.ones(3), name="w")
    saver = gc.train.Saver()
    prefix = str(tmp_path / "model")
    assert not gc.train.checkpoint_exists(prefix)
    with gc.Session() as sess:
        sess.run(w.initializer)
        path = saver.save(sess, prefix, global_step=7)
    assert gc.train.checkpoint_exists(path) and gc.train.checkpoint_exists(prefix + "-7")
    assert not gc.train.checkpoint_exists(prefix) and not gc.train.checkpoint_exists(tmp_path)


# -- random_shuffle, random_crop ------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_random_shuffle_permutes_rows_and_routes_gradients(backend, rng):
    x = gc.placeholder(gc.float64, [6, 2])
    shuffled = gc.random_shuffle(x)
    weights = gc.constant(np.arange(1.0, 13.0).reshape(6, 2))
    (dx,) = gc.gradients(gc.reduce_sum(shuffled * weights), [x])
    xv = rng.standard_normal((6, 2))
    orders = set()
    with gc.Session(backend=backend) as sess:
        for _ in range(8):
            got, grad = sess.run([shuffled, dx], {x: xv})
            perm = [int(np.flatnonzero((xv == row).all(1))[0]) for row in got]
            assert sorted(perm) == list(range(6))          # a permutation of the rows
            np.testing.assert_array_equal(grad[perm], np.arange(1.0, 13.0).reshape(6, 2))
            orders.add(tuple(perm))
    assert len(orders) > 1                                   # drawn anew each run
    with pytest.raises(ShapeError, match="needs a first axis of static size"):
        gc.random_shuffle(gc.placeholder(gc.float32, [None, 3]))


@pytest.mark.parametrize("backend", BACKENDS)
def test_random_crop_takes_boxes_inside(backend):
    image = gc.placeholder(gc.float32, [5, 6, 2])
    crop = gc.random_crop(image, [3, 4, 2])
    xv = np.arange(60, dtype=np.float32).reshape(5, 6, 2)
    offsets = set()
    with gc.Session(backend=backend) as sess:
        for _ in range(30):
            got = sess.run(crop, {image: xv})
            r, c = divmod(int(got[0, 0, 0]) // 2, 6)
            np.testing.assert_array_equal(got, xv[r:r + 3, c:c + 4])
            offsets.add((r, c))
    assert crop.shape == (3, 4, 2) and len(offsets) > 3
    assert all(0 <= r <= 2 and 0 <= c <= 2 for r, c in offsets)
    with pytest.raises(ShapeError, match=r"size \[6, 4, 2\] does not fit"):
        gc.random_crop(image, [6, 4, 2])


# -- image distortions ----------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_random_image_distortions(backend, rng):
    batch = gc.placeholder(gc.float32, [4, 3, 5, 2])
    image = gc.placeholder(gc.float32, [3, 5, 2])
    fetches = [gc.image.random_flip_left_right(batch), gc.image.random_flip_up_down(image),
               gc.image.random_brightness(image, 0.25),
               gc.image.random_contrast(batch, 0.5, 1.5)]
    bv = rng.standard_normal((4, 3, 5, 2)).astype(np.float32)
    iv = rng.standard_normal((3, 5, 2)).astype(np.float32)
    flipped_any, kept_any = False, False
    with gc.Session(backend=backend) as sess:
        for _ in range(6):
            lr, ud, bright, contrast = sess.run(fetches, {batch: bv, image: iv})
            for k in range(4):   # each image on its own coin
                flipped = np.array_equal(lr[k], bv[k, :, ::-1])
                assert flipped or np.array_equal(lr[k], bv[k])
                flipped_any, kept_any = flipped_any or flipped, kept_any or not flipped
            assert np.array_equal(ud, iv[::-1]) or np.array_equal(ud, iv)
            delta = bright - iv
            assert np.ptp(delta) < 1e-6 and -0.25 <= delta.flat[0] < 0.25
            mean = bv.mean(axis=(1, 2), keepdims=True)
            factor = (contrast - mean)[0, 0, 0, 0] / (bv - mean)[0, 0, 0, 0]
            assert 0.5 <= factor < 1.5
            np.testing.assert_allclose(contrast, (bv - mean) * factor + mean, rtol=1e-4,
                                       atol=1e-5)
    assert flipped_any and kept_any


@pytest.mark.parametrize("backend", BACKENDS)
def test_resize_image_with_crop_or_pad(backend, rng):
    images = gc.placeholder(gc.float64, [2, 5, 4, 3])
    outs = [gc.image.resize_image_with_crop_or_pad(images, 3, 7),
            gc.image.resize_image_with_crop_or_pad(images[0], 8, 2)]
    xv = rng.standard_normal((2, 5, 4, 3))
    got = run_on(backend, outs, {images: xv})
    want = np.zeros((2, 3, 7, 3))
    want[:, :, 1:5] = xv[:, 1:4]               # crop rows 1..3, pad 1 column before, 2 after
    np.testing.assert_array_equal(got[0], want)
    want1 = np.zeros((8, 2, 3))
    want1[1:6] = xv[0][:, 1:3]                 # pad 1 row before, 2 after; crop columns 1..2
    np.testing.assert_array_equal(got[1], want1)
    check_grads(backend, gc.reduce_sum(gc.tanh(outs[0])), {images: xv}, [images], rng,
                "crop or pad")


# -- sampled losses -------------------------------------------------------------------------------
def sampled_ref(w, b, labels, x, sampled, true_count, sampled_count, remove_hits, kind):
    true_logits = np.einsum("bd,btd->bt", x, w[labels]) + b[labels] - np.log(true_count)
    samp = x @ w[sampled].T + b[sampled] - np.log(sampled_count)
    if remove_hits:
        hit = (labels[:, :, None] == sampled[None, None, :]).any(axis=1)
        samp = np.where(hit, -1e30, samp)
    logits = np.concatenate([true_logits, samp], axis=1)
    targets = np.concatenate([np.full(true_logits.shape, 1.0 / labels.shape[1]),
                              np.zeros(samp.shape)], axis=1)
    if kind == "nce":
        per = np.maximum(logits, 0) - logits * targets + np.log1p(np.exp(-np.abs(logits)))
        return per.sum(axis=1)
    m = logits.max(axis=1, keepdims=True)
    log_p = logits - m - np.log(np.exp(logits - m).sum(axis=1, keepdims=True))
    return -(targets * log_p).sum(axis=1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_nce_and_sampled_softmax_losses(backend, rng):
    V, dim, B = 20, 3, 4
    w, b = gc.placeholder(gc.float64, [V, dim]), gc.placeholder(gc.float64, [V])
    x, labels = gc.placeholder(gc.float64, [B, dim]), gc.placeholder(gc.int64, [B, 2])
    sampled = np.array([3, 0, 11, 5, 3], np.int64)
    true_count = rng.uniform(0.5, 2.0, (B, 2)).astype(np.float32)
    sampled_count = rng.uniform(0.5, 2.0, 5).astype(np.float32)
    values = (sampled, true_count, sampled_count)
    nce = gc.nn.nce_loss(w, b, labels, x, 5, V, num_true=2, sampled_values=values)
    ssm = gc.nn.sampled_softmax_loss(w, b, labels, x, 5, V, num_true=2, sampled_values=values)
    feeds = {w: rng.standard_normal((V, dim)), b: rng.standard_normal(V),
             x: rng.standard_normal((B, dim)), labels: [[1, 5], [7, 2], [3, 3], [19, 0]]}
    got_nce, got_ssm = run_on(backend, [nce, ssm], feeds)
    args = (feeds[w], feeds[b], np.array(feeds[labels]), feeds[x], sampled,
            true_count.astype(np.float64), sampled_count.astype(np.float64))
    np.testing.assert_allclose(got_nce, sampled_ref(*args, False, "nce"), rtol=1e-6)
    np.testing.assert_allclose(got_ssm, sampled_ref(*args, True, "softmax"), rtol=1e-6)
    check_grads(backend, gc.reduce_sum(nce) + gc.reduce_sum(ssm), feeds, [w, b, x], rng,
                "sampled losses")


@pytest.mark.parametrize("backend", BACKENDS)
def test_log_uniform_sampler_draws_zipfian_classes(backend):
    labels = gc.placeholder(gc.int64, [2, 1])
    sampled, true_count, sampled_count = gc.nn.log_uniform_candidate_sampler(
        labels, 1, 4000, False, 30)
    loss = gc.nn.nce_loss(gc.ones([30, 2]), gc.zeros([30]), labels, gc.ones([2, 2]), 16, 30)
    got, got_true, got_count, got_loss = run_on(backend, [sampled, true_count, sampled_count,
                                                          loss], {labels: [[0], [9]]})
    p = np.log((np.arange(30) + 2.0) / (np.arange(30) + 1.0)) / np.log(31.0)
    assert got.dtype == np.int64 and got.min() >= 0 and got.max() < 30
    freq = np.bincount(got, minlength=30) / 4000.0
    assert np.abs(freq[:5] - p[:5]).max() < 0.03             # frequent classes first
    np.testing.assert_allclose(got_true[:, 0], 4000 * p[[0, 9]], rtol=1e-6)
    np.testing.assert_allclose(got_count, 4000 * p[got], rtol=1e-6)
    assert got_loss.shape == (2,) and np.all(np.isfinite(got_loss))
    with pytest.raises(GraphError, match="unique=True draws a number of times"):
        gc.nn.log_uniform_candidate_sampler(labels, 1, 8, True, 30)
