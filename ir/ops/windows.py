"""Reference NumPy kernels of the sliding-window ops (conv2d, max and average pooling).

Layout is NHWC throughout; a window op has a kernel size ``(kh, kw)``, strides ``(sh, sw)``
and TF's padding rule ("VALID": windows inside the input; "SAME": ``ceil(size / stride)``
outputs, the padding split with the extra row/column after). The kernels are vectorized:
windows are strided views (``sliding_window_view``), convolution is im2col + one GEMM, and
scattering windows back (the input gradients) loops over the kh*kw kernel taps only.

Every function here uses only ``np`` and the other functions of this module: the NumPy
emitter copies a kernel's source, with the same-module functions it calls, into the generated
step (so avoid calling them from inside comprehensions, whose names it does not see).
"""
import numpy as np


def window_geometry(size, k, s, padding):
    """(outputs, padding before, padding after) along one spatial axis, as TF computes them."""
    if padding == "SAME":
        out = -(-size // s)
        total = max((out - 1) * s + k - size, 0)
        return out, total // 2, total - total // 2
    return (size - k) // s + 1, 0, 0


def window_pad(x, ksize, strides, padding, fill=0):
    """``x`` [N,H,W,C] padded with ``fill`` for the windows; returns (padded, oh, ow)."""
    oh, top, bottom = window_geometry(x.shape[1], ksize[0], strides[0], padding)
    ow, left, right = window_geometry(x.shape[2], ksize[1], strides[1], padding)
    if top or bottom or left or right:
        x = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=fill)
    return x, oh, ow


def window_view(x, ksize, strides, padding, fill=0):
    """The windows of ``x`` as a strided view [N, OH, OW, C, kh, kw] (no copy unless padded)."""
    xp, oh, ow = window_pad(x, ksize, strides, padding, fill)
    view = np.lib.stride_tricks.sliding_window_view(xp, tuple(ksize), axis=(1, 2))
    return view[:, ::strides[0], ::strides[1]][:, :oh, :ow]


def window_scatter(taps, x_shape, ksize, strides, padding):
    """Sum window contributions ``taps`` [N, OH, OW, kh, kw, C] back into an [N,H,W,C] array.

    The adjoint of ``window_view``: each input element receives the sum over every window
    (and tap) that reads it; padding positions are dropped.
    """
    n, h, w, c = x_shape
    kh, kw = ksize
    sh, sw = strides
    oh, top, bottom = window_geometry(h, kh, sh, padding)
    ow, left, right = window_geometry(w, kw, sw, padding)
    out = np.zeros((n, h + top + bottom, w + left + right, c), dtype=taps.dtype)
    for i in range(kh):
        for j in range(kw):
            out[:, i:i + (oh - 1) * sh + 1:sh, j:j + (ow - 1) * sw + 1:sw, :] += taps[:, :, :, i, j]
    return out[:, top:top + h, left:left + w, :]


def im2col(x, ksize, strides, padding):
    """Rows of receptive fields: [N*OH*OW, kh*kw*C] ordered (kh, kw, C) like a filter's rows."""
    view = window_view(x, ksize, strides, padding)
    n, oh, ow, c, kh, kw = view.shape
    return view.transpose(0, 1, 2, 4, 5, 3).reshape(n * oh * ow, kh * kw * c), (n, oh, ow)


# -- convolution --------------------------------------------------------------------------------
def conv2d_impl(x, w, strides=(1, 1), padding="VALID"):
    """y[n,p,q,o] = sum_{i,j,c} x[n, p*sh + i - top, q*sw + j - left, c] w[i,j,c,o]."""
    kh, kw, cin, cout = w.shape
    cols, (n, oh, ow) = im2col(x, (kh, kw), strides, padding)
    return np.matmul(cols, w.reshape(kh * kw * cin, cout)).reshape(n, oh, ow, cout)


def conv2d_backprop_input_impl(dy, w, like, strides=(1, 1), padding="VALID"):
    """The gradient of conv2d with respect to its input (shaped like ``like``)."""
    kh, kw, cin, cout = w.shape
    n, oh, ow = dy.shape[:3]
    taps = np.matmul(dy.reshape(n * oh * ow, cout), w.reshape(kh * kw * cin, cout).T)
    return window_scatter(taps.reshape(n, oh, ow, kh, kw, cin), np.shape(like), (kh, kw),
                          strides, padding)


def conv2d_backprop_filter_impl(x, dy, filter_shape=(1, 1, 1, 1), strides=(1, 1),
                                padding="VALID"):
    """The gradient of conv2d with respect to its filter: im2col(x)^T dy."""
    kh, kw, cin, cout = filter_shape
    cols, _ = im2col(x, (kh, kw), strides, padding)
    return np.matmul(cols.T, dy.reshape(-1, cout)).reshape(kh, kw, cin, cout)


# -- max pooling ----------------------------------------------------------------------------------
def max_pool_argmax(x, ksize, strides, padding):
    """Per window, the position (row-major in kh*kw) of its FIRST maximum: [N, OH, OW, C]."""
    view = window_view(x, ksize, strides, padding, -np.inf)
    n, oh, ow, c, kh, kw = view.shape
    return view.reshape(n, oh, ow, c, kh * kw).argmax(axis=-1)


def max_pool_impl(x, ksize=(2, 2), strides=(2, 2), padding="VALID"):
    return window_view(x, ksize, strides, padding, -np.inf).max(axis=(4, 5))


def max_pool_grad_impl(x, dy, ksize=(2, 2), strides=(2, 2), padding="VALID"):
    """Each window's gradient goes whole to its first maximum (row-major); ties get nothing."""
    kh, kw = ksize
    hit = max_pool_argmax(x, ksize, strides, padding)[..., None] == np.arange(kh * kw)
    taps = np.where(hit, dy[..., None], np.zeros((), dy.dtype))
    n, oh, ow, c = dy.shape
    taps = taps.reshape(n, oh, ow, c, kh, kw).transpose(0, 1, 2, 4, 5, 3)
    return window_scatter(taps, x.shape, ksize, strides, padding)


def max_pool_grad_grad_impl(x, gx, ksize=(2, 2), strides=(2, 2), padding="VALID"):
    """The adjoint of max_pool_grad in its gradient: ``gx`` read at each window's argmax."""
    view = window_view(gx, ksize, strides, padding)
    n, oh, ow, c, kh, kw = view.shape
    at = max_pool_argmax(x, ksize, strides, padding)[..., None]
    return np.take_along_axis(view.reshape(n, oh, ow, c, kh * kw), at, axis=-1)[..., 0]


# -- average pooling ---------------------------------------------------------------------------
def avg_pool_counts(x_shape, ksize, strides, padding, dtype):
    """Real (unpadded) elements per window, [1, OH, OW, 1]: SAME windows at the edges average
    over fewer elements, as in TF."""
    ones = np.ones((1, x_shape[1], x_shape[2], 1), dtype=dtype)
    return window_view(ones, ksize, strides, padding).sum(axis=(4, 5))


def avg_pool_impl(x, ksize=(2, 2), strides=(2, 2), padding="VALID"):
    total = window_view(x, ksize, strides, padding).sum(axis=(4, 5))
    return total / avg_pool_counts(x.shape, ksize, strides, padding, x.dtype)


def avg_pool_grad_impl(dy, like, ksize=(2, 2), strides=(2, 2), padding="VALID"):
    """Each window's gradient divided by its count, spread evenly over the window."""
    share = dy / avg_pool_counts(np.shape(like), ksize, strides, padding, dy.dtype)
    n, oh, ow, c = dy.shape
    taps = np.broadcast_to(share[:, :, :, None, None, :], (n, oh, ow) + tuple(ksize) + (c,))
    return window_scatter(taps, np.shape(like), ksize, strides, padding)
