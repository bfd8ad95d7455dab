"""gc.image against per-pixel NumPy references written from TF1's documented formulas
(legacy pixel mapping, align_corners both ways), on batches and single images, both backends;
gradients of bilinear resizing against float64 central differences."""
import math

import numpy as np
import pytest

import graphc as gc

RNG = np.random.default_rng(3)
BATCH = RNG.standard_normal((2, 5, 4, 3))


def ref_resize(img, out_h, out_w, nearest, align):
    """Loop over output pixels: TF1's legacy source coordinate, then lerp or pick."""
    n, in_h, in_w, c = img.shape

    def scale(i, o):
        return (i - 1) / (o - 1) if align and o > 1 else i / o

    sy, sx = scale(in_h, out_h), scale(in_w, out_w)
    out = np.zeros((n, out_h, out_w, c))
    for y in range(out_h):
        for x in range(out_w):
            fy, fx = y * sy, x * sx
            if nearest:
                pick = (lambda f: math.floor(f + 0.5)) if align else math.floor
                out[:, y, x] = img[:, min(pick(fy), in_h - 1), min(pick(fx), in_w - 1)]
                continue
            y0, x0 = math.floor(fy), math.floor(fx)
            y1, x1 = min(y0 + 1, in_h - 1), min(x0 + 1, in_w - 1)
            dy, dx = fy - y0, fx - x0
            top = img[:, y0, x0] * (1 - dx) + img[:, y0, x1] * dx
            bottom = img[:, y1, x0] * (1 - dx) + img[:, y1, x1] * dx
            out[:, y, x] = top * (1 - dy) + bottom * dy
    return out


def ref_standardize(img):
    axes = tuple(range(img.ndim - 3, img.ndim))
    n = np.prod(img.shape[-3:])
    mean = img.mean(axis=axes, keepdims=True)
    std = img.std(axis=axes, keepdims=True)
    return (img - mean) / np.maximum(std, 1.0 / np.sqrt(n))


def run(fetch, feeds, backend="numpy"):
    with gc.Session(backend=backend) as sess:
        return sess.run(fetch, feeds)


SIZES = [(10, 8), (3, 2), (5, 4), (7, 9), (1, 1)]


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
@pytest.mark.parametrize("align", [False, True])
@pytest.mark.parametrize("nearest", [False, True])
def test_resize_matches_reference(nearest, align, backend):
    with gc.Graph().as_default():
        x = gc.placeholder(gc.float64, BATCH.shape, name="images")
        fn = gc.image.resize_nearest_neighbor if nearest else gc.image.resize_bilinear
        outs = [fn(x, s, align_corners=align) for s in SIZES]
        got = run(outs, {x: BATCH}, backend)
    for (h, w), g in zip(SIZES, got):
        np.testing.assert_allclose(g, ref_resize(BATCH, h, w, nearest, align), rtol=1e-12,
                                   atol=1e-13, err_msg=f"{h}x{w}")


def test_resize_images_single_image_and_dtypes():
    img = (RNG.random((4, 6, 2)) * 255).astype(np.uint8)
    with gc.Graph().as_default():
        x = gc.placeholder(gc.uint8, img.shape)
        bilinear = gc.image.resize_images(x, (8, 3))
        nearest = gc.image.resize_images(x, (8, 3), gc.image.ResizeMethod.NEAREST_NEIGHBOR)
        assert bilinear.dtype == gc.float32 and nearest.dtype == gc.uint8
        assert bilinear.shape.as_list() == [8, 3, 2]
        b, n = run([bilinear, nearest], {x: img})
    want = ref_resize(img[None].astype(np.float64), 8, 3, False, False)[0]
    np.testing.assert_allclose(b, want, rtol=1e-5)
    np.testing.assert_array_equal(n, ref_resize(img[None], 8, 3, True, False)[0])


def test_bilinear_gradient():
    with gc.Graph().as_default():
        x = gc.placeholder(gc.float64, (1, 4, 3, 2), name="images")
        out = gc.image.resize_bilinear(x, (7, 5), align_corners=False)
        loss = gc.reduce_sum(gc.square(out) * RNG.standard_normal((1, 7, 5, 2)))
        gc.check_gradients(loss, [x], {x: RNG.standard_normal((1, 4, 3, 2))}).raise_if_failed()


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_flips_and_standardization(backend):
    single = BATCH[0]
    flat = np.full((3, 3, 1), 7.0)  # zero stddev: the 1/sqrt(N) floor keeps it finite
    with gc.Graph().as_default():
        x = gc.placeholder(gc.float64, BATCH.shape)
        s = gc.placeholder(gc.float64, single.shape)
        f = gc.placeholder(gc.float64, flat.shape)
        outs = [gc.image.flip_left_right(x), gc.image.flip_up_down(x),
                gc.image.flip_left_right(s), gc.image.flip_up_down(s),
                gc.image.per_image_standardization(x), gc.image.per_image_standardization(s),
                gc.image.per_image_standardization(f)]
        got = run(outs, {x: BATCH, s: single, f: flat}, backend)
    want = [BATCH[:, :, ::-1], BATCH[:, ::-1], single[:, ::-1], single[::-1],
            ref_standardize(BATCH), ref_standardize(single), np.zeros_like(flat)]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-13)


def test_standardization_gradient_and_int_input():
    with gc.Graph().as_default():
        x = gc.placeholder(gc.float64, (2, 3, 2, 1))
        loss = gc.reduce_sum(gc.image.per_image_standardization(x)
                             * RNG.standard_normal((2, 3, 2, 1)))
        gc.check_gradients(loss, [x], {x: RNG.standard_normal((2, 3, 2, 1))}).raise_if_failed()
        u = gc.placeholder(gc.uint8, (2, 2, 1))
        out = gc.image.per_image_standardization(u)
        assert out.dtype == gc.float32
        img = np.array([[[0], [10]], [[20], [30]]], np.uint8)
        np.testing.assert_allclose(run(out, {u: img}), ref_standardize(img.astype(float)),
                                   rtol=1e-6)


def test_bad_inputs():
    with gc.Graph().as_default():
        with pytest.raises(gc.errors.ShapeError, match="NHWC"):
            gc.image.flip_left_right(gc.placeholder(gc.float32, [4, 4]))
        with pytest.raises(gc.errors.ShapeError, match="static"):
            gc.image.resize_bilinear(gc.placeholder(gc.float32, [None, None, 4, 1]), (2, 2))
        x = gc.placeholder(gc.float32, [1, 4, 4, 1])
        with pytest.raises(ValueError, match="not implemented"):
            gc.image.resize_images(x, (2, 2), method=2)
        with pytest.raises(ValueError, match="positive"):
            gc.image.resize_bilinear(x, (0, 2))
