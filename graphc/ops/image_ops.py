"""``gc.image``: TF1's basic image ops on NHWC batches or single HWC images.

Every op is a composition of graph ops with static sizes: flips gather the reversed indices,
standardization reduces over each image, and resizing multiplies by two interpolation
matrices (rows, then columns) built in NumPy at graph-construction time, so the gradients
of bilinear resizing come from the matrix products for free. The random distortions
(``random_flip_left_right``, ``random_brightness``...) draw inside the step, anew each run,
and select or add with ``where`` and ``+``; central crops and pads gather and pad.

Resizing follows TF1's legacy pixel mapping (no half-pixel centers): output pixel ``i``
samples input coordinate ``i * scale`` with ``scale = in / out``, or with
``align_corners=True`` ``scale = (in - 1) / (out - 1)`` so that the corner pixels match.
"""
import numpy as np

from ..errors import ShapeError
from ..ir import dtypes as D
from ..ir.ops import convert
from .special_math_ops import einsum
from .array_ops import pad
from .math_ops import cast, gather, maximum, random_uniform, sqrt, square, where
from .reduction_ops import reduce_mean


class ResizeMethod:
    """TF1's tf.image.ResizeMethod (only the two that graphc implements)."""
    BILINEAR = 0
    NEAREST_NEIGHBOR = 1


def _image_axes(images, fn):
    """(the tensor, whether it is a single HWC image) for a rank-3 or rank-4 input."""
    images = convert(images)
    rank = images.shape.ndims
    if rank not in (3, 4):
        raise ShapeError(f"image.{fn}: expected an NHWC batch or an HWC image, found shape "
                         f"{images.shape}", hint="reshape to [batch, height, width, channels]")
    return images, rank == 3


def _static(images, axis, fn):
    size = images.shape.as_list()[axis]
    if size is None:
        raise ShapeError(f"image.{fn}: the {'height' if axis == -3 else 'width'} must be "
                         f"static, found shape {images.shape}")
    return size


def _flip(images, axis, fn):
    images, _ = _image_axes(images, fn)
    n = _static(images, axis, fn)
    return gather(images, np.arange(n - 1, -1, -1), axis=images.shape.ndims + axis)


def flip_left_right(image):
    """Mirror the width axis (TF1's tf.image.flip_left_right).

    Example:
        >>> mirrored = gc.image.flip_left_right(batch)  # [N, H, W, C] or [H, W, C]
    """
    return _flip(image, -2, "flip_left_right")


def flip_up_down(image):
    """Mirror the height axis (TF1's tf.image.flip_up_down).

    Example:
        >>> upside_down = gc.image.flip_up_down(image)
    """
    return _flip(image, -3, "flip_up_down")


def per_image_standardization(image):
    """``(x - mean) / max(stddev, 1 / sqrt(N))`` per image, ``N`` its number of elements.

    The floor on the deviation keeps a uniform image finite (TF1's adjusted stddev).

    Returns:
        float32 (float64 stays float64), the input's shape.
    Example:
        >>> x = gc.image.per_image_standardization(raw)
    """
    image, _ = _image_axes(image, "per_image_standardization")
    if not image.dtype.is_floating:
        image = cast(image, D.float32)
    n = int(np.prod([_static(image, a, "per_image_standardization") for a in (-3, -2)]
                    + [image.shape.as_list()[-1]]))
    axes = [-3, -2, -1]
    mean = reduce_mean(image, axis=axes, keepdims=True)
    centered = image - mean
    stddev = sqrt(reduce_mean(square(centered), axis=axes, keepdims=True))
    return centered / maximum(stddev, float(1.0 / np.sqrt(n)))


def _scale(n_in, n_out, align_corners):
    if align_corners and n_out > 1:
        return (n_in - 1) / (n_out - 1)
    return n_in / n_out


def interpolation_matrix(n_in, n_out, method=ResizeMethod.BILINEAR, align_corners=False):
    """The [n_out, n_in] matrix resizing one axis (each row sums to one).

    Bilinear: output ``i`` mixes inputs ``floor(s)`` and ``floor(s) + 1`` (clamped) with
    weights ``1 - frac`` and ``frac``, ``s = i * scale``. Nearest: input ``floor(s)``, or
    ``round(s)`` with ``align_corners``, clamped to the last pixel.

    Example:
        >>> interpolation_matrix(2, 4)[:, 0]   # array([1. , 0.5, 0. , 0. ])
    """
    src = np.arange(n_out, dtype=np.float64) * _scale(n_in, n_out, align_corners)
    m = np.zeros((n_out, n_in))
    rows = np.arange(n_out)
    if method == ResizeMethod.NEAREST_NEIGHBOR:
        picked = np.floor(src + 0.5) if align_corners else np.floor(src)
        m[rows, np.minimum(picked.astype(int), n_in - 1)] = 1.0
        return m
    lo = np.minimum(np.floor(src).astype(int), n_in - 1)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = src - lo
    np.add.at(m, (rows, lo), 1.0 - frac)
    np.add.at(m, (rows, hi), frac)
    return m


def _resize(images, size, method, align_corners, fn):
    images, single = _image_axes(images, fn)
    out_h, out_w = (int(s) for s in size)
    if out_h <= 0 or out_w <= 0:
        raise ValueError(f"image.{fn}: size must be positive, got {list(size)}")
    in_h, in_w = _static(images, -3, fn), _static(images, -2, fn)
    if method == ResizeMethod.BILINEAR or not images.dtype.is_floating:
        work = D.float32 if images.dtype != D.float64 else D.float64
    else:
        work = images.dtype
    x = images if images.dtype == work else cast(images, work)
    rows = interpolation_matrix(in_h, out_h, method, align_corners).astype(work.np)
    cols = interpolation_matrix(in_w, out_w, method, align_corners).astype(work.np)
    spec = ("yh,hwc->ywc", "xw,ywc->yxc") if single else ("yh,nhwc->nywc", "xw,nywc->nyxc")
    out = einsum(spec[1], cols, einsum(spec[0], rows, x))
    if method == ResizeMethod.NEAREST_NEIGHBOR and out.dtype != images.dtype:
        out = cast(out, images.dtype)  # nearest neighbor keeps the input's dtype, as TF1
    return out


def resize_images(images, size, method=ResizeMethod.BILINEAR, align_corners=False,
                  preserve_aspect_ratio=False):
    """Resize to ``size = (height, width)`` (TF1's tf.image.resize_images).

    Args:
        images: [N, H, W, C] or [H, W, C] with static H and W.
        size: two Python ints.
        method: ``ResizeMethod.BILINEAR`` (float32 result) or ``NEAREST_NEIGHBOR`` (the
            input's dtype).
        align_corners: map corner pixel centers onto each other.
    Raises:
        ShapeError: not rank 3 or 4, or dynamic H or W. ValueError: another method, or
        ``preserve_aspect_ratio``.
    Example:
        >>> small = gc.image.resize_images(batch, (14, 14))
    """
    if method not in (ResizeMethod.BILINEAR, ResizeMethod.NEAREST_NEIGHBOR):
        raise ValueError(f"image.resize_images: method {method!r} is not implemented; use "
                         "ResizeMethod.BILINEAR or ResizeMethod.NEAREST_NEIGHBOR")
    if preserve_aspect_ratio:
        raise ValueError("image.resize_images: preserve_aspect_ratio is not implemented; "
                         "compute the size yourself")
    return _resize(images, size, method, align_corners, "resize_images")


def resize_bilinear(images, size, align_corners=False, name=None, half_pixel_centers=False):
    """Bilinear resize to ``size`` (float32 result; TF1's tf.image.resize_bilinear).

    Example:
        >>> big = gc.image.resize_bilinear(batch, (56, 56), align_corners=True)
    """
    _no_half_pixel(half_pixel_centers, "resize_bilinear")
    return _resize(images, size, ResizeMethod.BILINEAR, align_corners, "resize_bilinear")


def resize_nearest_neighbor(images, size, align_corners=False, name=None,
                            half_pixel_centers=False):
    """Nearest-neighbor resize to ``size`` (TF1's tf.image.resize_nearest_neighbor).

    Example:
        >>> big = gc.image.resize_nearest_neighbor(batch, (56, 56))
    """
    _no_half_pixel(half_pixel_centers, "resize_nearest_neighbor")
    return _resize(images, size, ResizeMethod.NEAREST_NEIGHBOR, align_corners,
                   "resize_nearest_neighbor")


def _no_half_pixel(half_pixel_centers, fn):
    if half_pixel_centers:
        raise ValueError(f"image.{fn}: half_pixel_centers=True is not implemented (graphc "
                         "has TF1's legacy mapping only)")


# -- random distortions (a new draw each run) --------------------------------------------------
def _coin(images, single, seed):
    """True with probability 1/2: one for an image, one per image of a batch."""
    n = None if single else images.shape.as_list()[0]
    if not single and n is None:
        raise ShapeError(f"image: the batch of {images.shape} must be static to draw a coin "
                         f"per image", hint="give the placeholder its batch size")
    shape = [] if single else [n, 1, 1, 1]
    return random_uniform(shape, dtype=D.float64, seed=seed) < 0.5


def random_flip_left_right(image, seed=None):
    """Mirror the width axis with probability 1/2, each image of a batch on its own coin
    (TF1's tf.image.random_flip_left_right).

    Example:
        >>> augmented = gc.image.random_flip_left_right(batch)
    """
    image, single = _image_axes(image, "random_flip_left_right")
    return where(_coin(image, single, seed), flip_left_right(image), image)


def random_flip_up_down(image, seed=None):
    """Mirror the height axis with probability 1/2, per image (TF1's
    tf.image.random_flip_up_down)."""
    image, single = _image_axes(image, "random_flip_up_down")
    return where(_coin(image, single, seed), flip_up_down(image), image)


def adjust_brightness(image, delta):
    """``image + delta`` (TF1's tf.image.adjust_brightness, on float images)."""
    image, _ = _image_axes(image, "adjust_brightness")
    return image + delta


def random_brightness(image, max_delta, seed=None):
    """``image + delta`` for one ``delta`` uniform in ``[-max_delta, max_delta)`` per run
    (TF1's tf.image.random_brightness).

    Raises:
        ValueError: a negative ``max_delta`` (as TF1).
    """
    if max_delta < 0:
        raise ValueError("image.random_brightness: max_delta must be non-negative")
    image, _ = _image_axes(image, "random_brightness")
    delta = random_uniform([], -float(max_delta), float(max_delta), dtype=image.dtype,
                           seed=seed)
    return adjust_brightness(image, delta)


def adjust_contrast(images, contrast_factor):
    """``(x - mean) * contrast_factor + mean`` with the mean of each channel of each image
    (TF1's tf.image.adjust_contrast)."""
    images, _ = _image_axes(images, "adjust_contrast")
    mean = reduce_mean(images, axis=[-3, -2], keepdims=True)
    return (images - mean) * contrast_factor + mean


def random_contrast(image, lower, upper, seed=None):
    """``adjust_contrast`` by one factor uniform in ``[lower, upper)`` per run (TF1's
    tf.image.random_contrast).

    Raises:
        ValueError: ``upper <= lower`` or ``lower < 0`` (as TF1).
    """
    if upper <= lower or lower < 0:
        raise ValueError(f"image.random_contrast: need 0 <= lower < upper, found lower="
                         f"{lower}, upper={upper}")
    image, _ = _image_axes(image, "random_contrast")
    factor = random_uniform([], float(lower), float(upper), dtype=image.dtype, seed=seed)
    return adjust_contrast(image, factor)


def resize_image_with_crop_or_pad(image, target_height, target_width):
    """Crop the centre of ``image`` or pad it with zeros evenly to ``target_height`` by
    ``target_width`` (TF1's tf.image.resize_image_with_crop_or_pad: the extra row or column
    of an odd difference goes after, as TF1's offsets ``(h - target) // 2`` put it).

    Raises:
        ShapeError: height or width not static, or a target below 1.
    Example:
        >>> x = gc.image.resize_image_with_crop_or_pad(images, 28, 28)
    """
    image, single = _image_axes(image, "resize_image_with_crop_or_pad")
    th, tw = int(target_height), int(target_width)
    if th < 1 or tw < 1:
        raise ShapeError(f"image.resize_image_with_crop_or_pad: the target {th}x{tw} must be "
                         f"at least 1x1")
    rank = image.shape.ndims
    out = image
    for axis, target in ((rank - 3, th), (rank - 2, tw)):
        n = _static(image, axis - rank, "resize_image_with_crop_or_pad")
        if n > target:   # crop: keep rows [(n - target) // 2, ... + target)
            start = (n - target) // 2
            out = gather(out, np.arange(start, start + target), axis=axis)
        elif n < target:   # pad: zeros before and after
            before = (target - n) // 2
            paddings = [[0, 0]] * rank
            paddings[axis] = [before, target - n - before]
            out = pad(out, paddings)
    return out


def __getattr__(name):
    """TF1's image file codecs: a clear error (the table is in graphc/__init__.py)."""
    from .. import missing_attribute
    raise missing_attribute(f"image.{name}", __name__, name)
