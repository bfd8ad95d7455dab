"""Reference NumPy kernels of the sliding-window ops (conv2d, max and average pooling).

Layout is NHWC throughout; a window op has a kernel size ``(kh, kw)``, strides ``(sh, sw)``
and TF's padding rule ("VALID": windows inside the input; "SAME": ``ceil(size / stride)``
outputs, the padding split with the extra row/column after). The kernels are vectorized
over pixels: they loop over the kh*kw kernel taps only, each tap (i, j) being one strided
view of the (padded) input holding that tap of every window. Convolution is im2col + one
GEMM; pooling is a running max / sum over the taps; the input gradients add each tap's
share back into a padded buffer.

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


def dilated_window(ksize, dilations):
    """The extent (rows, columns) of a window of ``ksize`` taps spaced ``dilations`` apart."""
    return ((ksize[0] - 1) * dilations[0] + 1, (ksize[1] - 1) * dilations[1] + 1)


def window_pad(x, ksize, strides, padding, fill=0):
    """``x`` [N,H,W,C] padded with ``fill`` for the windows; returns (padded, oh, ow)."""
    oh, top, bottom = window_geometry(x.shape[1], ksize[0], strides[0], padding)
    ow, left, right = window_geometry(x.shape[2], ksize[1], strides[1], padding)
    if top or bottom or left or right:
        x = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=fill)
    return x, oh, ow


def window_tap(xp, i, j, strides, oh, ow):
    """The [N, OH, OW, C] view of kernel tap (i, j) of every window of padded ``xp``."""
    sh, sw = strides
    return xp[:, i:i + (oh - 1) * sh + 1:sh, j:j + (ow - 1) * sw + 1:sw, :]


def window_grad_buffer(x_shape, ksize, strides, padding, dtype):
    """Zeros shaped like the padded input, to accumulate taps into; returns
    (buffer, oh, ow, (top, left)) — crop with ``buffer[:, top:top + H, left:left + W]``."""
    oh, top, bottom = window_geometry(x_shape[1], ksize[0], strides[0], padding)
    ow, left, right = window_geometry(x_shape[2], ksize[1], strides[1], padding)
    buf = np.zeros((x_shape[0], x_shape[1] + top + bottom, x_shape[2] + left + right,
                    x_shape[3]), dtype=dtype)
    return buf, oh, ow, (top, left)


def im2col(x, ksize, strides, padding, dilations=(1, 1)):
    """Receptive fields as columns: [kh*kw*C, N*OH*OW], rows ordered (kh, kw, C) like a
    filter's, taps ``dilations`` apart. Tap-major, so each tap is one bulk copy (channels-last
    windows would make the copy a gather of C-element pieces: slow for few channels)."""
    xp, oh, ow = window_pad(x, dilated_window(ksize, dilations), strides, padding)
    n, c = x.shape[0], x.shape[3]
    cols = np.empty((ksize[0], ksize[1], c, n, oh, ow), dtype=x.dtype)
    for i in range(ksize[0]):
        for j in range(ksize[1]):
            tap = window_tap(xp, i * dilations[0], j * dilations[1], strides, oh, ow)
            cols[i, j] = tap.transpose(3, 0, 1, 2)
    return cols.reshape(ksize[0] * ksize[1] * c, n * oh * ow), (n, oh, ow)


# -- convolution --------------------------------------------------------------------------------
def conv2d_impl(x, w, strides=(1, 1), padding="VALID", dilations=(1, 1)):
    """y[n,p,q,o] = sum_{i,j,c} x[n, p*sh + i*rh - top, q*sw + j*rw - left, c] w[i,j,c,o]."""
    kh, kw, cin, cout = w.shape
    cols, (n, oh, ow) = im2col(x, (kh, kw), strides, padding, dilations)
    return np.matmul(cols.T, w.reshape(kh * kw * cin, cout)).reshape(n, oh, ow, cout)


def conv2d_backprop_input_impl(dy, w, like, strides=(1, 1), padding="VALID", dilations=(1, 1)):
    """The gradient of conv2d with respect to its input (shaped like ``like``): each tap's
    share ``w[i, j] dy`` added back where the tap read."""
    kh, kw, cin, cout = w.shape
    n, oh, ow = dy.shape[:3]
    taps = np.matmul(w.reshape(kh * kw * cin, cout), dy.reshape(n * oh * ow, cout).T)
    taps = taps.reshape(kh, kw, cin, n, oh, ow)
    buf, oh, ow, (top, left) = window_grad_buffer(
        np.shape(like), dilated_window((kh, kw), dilations), strides, padding, dy.dtype)
    for i in range(kh):
        for j in range(kw):
            tap = window_tap(buf, i * dilations[0], j * dilations[1], strides, oh, ow)
            tap += taps[i, j].transpose(1, 2, 3, 0)
    return buf[:, top:top + np.shape(like)[1], left:left + np.shape(like)[2], :]


def conv2d_backprop_filter_impl(x, dy, filter_shape=(1, 1, 1, 1), strides=(1, 1),
                                padding="VALID", dilations=(1, 1)):
    """The gradient of conv2d with respect to its filter: im2col(x) dy."""
    kh, kw, cin, cout = filter_shape
    cols, _ = im2col(x, (kh, kw), strides, padding, dilations)
    return np.matmul(cols, dy.reshape(-1, cout)).reshape(kh, kw, cin, cout)


# -- depthwise convolution ------------------------------------------------------------------------
def depthwise_conv2d_impl(x, w, strides=(1, 1), padding="VALID", dilations=(1, 1)):
    """y[n,p,q,c*M+m] = sum_{i,j} x[n, p*sh + i*rh - top, q*sw + j*rw - left, c] w[i,j,c,m]."""
    kh, kw, c, m = w.shape
    xp, oh, ow = window_pad(x, dilated_window((kh, kw), dilations), strides, padding)
    out = np.zeros((x.shape[0], oh, ow, c, m), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            tap = window_tap(xp, i * dilations[0], j * dilations[1], strides, oh, ow)
            out += tap[..., None] * w[i, j]
    return out.reshape(x.shape[0], oh, ow, c * m)


def depthwise_conv2d_backprop_input_impl(dy, w, like, strides=(1, 1), padding="VALID",
                                         dilations=(1, 1)):
    """The gradient of depthwise_conv2d with respect to its input (shaped like ``like``):
    each tap's share ``sum_m w[i, j, c, m] dy[..., c*M+m]`` added back where the tap read."""
    kh, kw, c, m = w.shape
    buf, oh, ow, (top, left) = window_grad_buffer(
        np.shape(like), dilated_window((kh, kw), dilations), strides, padding, dy.dtype)
    d = dy.reshape(dy.shape[0], oh, ow, c, m)
    for i in range(kh):
        for j in range(kw):
            tap = window_tap(buf, i * dilations[0], j * dilations[1], strides, oh, ow)
            tap += (d * w[i, j]).sum(-1)
    return buf[:, top:top + np.shape(like)[1], left:left + np.shape(like)[2], :]


def depthwise_conv2d_backprop_filter_impl(x, dy, filter_shape=(1, 1, 1, 1), strides=(1, 1),
                                          padding="VALID", dilations=(1, 1)):
    """The gradient of depthwise_conv2d with respect to its filter: per tap and channel, the
    tap's view of x times dy summed over every position."""
    kh, kw, c, m = filter_shape
    xp, oh, ow = window_pad(x, dilated_window((kh, kw), dilations), strides, padding)
    d = dy.reshape(dy.shape[0], oh, ow, c, m)
    dw = np.empty(tuple(filter_shape), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            tap = window_tap(xp, i * dilations[0], j * dilations[1], strides, oh, ow)
            dw[i, j] = np.einsum("npqc,npqcm->cm", tap, d)
    return dw


# -- max pooling ----------------------------------------------------------------------------------
def max_pool_argmax(x, ksize, strides, padding):
    """Position of each window's FIRST maximum, row-major in kh*kw: [N, OH, OW, C] int32.

    Taps are visited in row-major order and a later tap wins only when strictly greater, so
    ties go to the first; a NaN counts as the maximum (the first NaN wins, as np.argmax has
    it). Padding is -inf and never wins a window (each window has a real element).
    """
    xp, oh, ow = window_pad(x, ksize, strides, padding, -np.inf)
    best = window_tap(xp, 0, 0, strides, oh, ow).copy()
    first = np.zeros(best.shape, dtype=np.int32)
    for k in range(1, ksize[0] * ksize[1]):
        tap = window_tap(xp, k // ksize[1], k % ksize[1], strides, oh, ow)
        # "not tap <= best" also holds for a NaN tap; a NaN best (best != best) keeps its place.
        better = ~(tap <= best) & (best == best)
        # Branch-free: k grows, so a better tap k always raises ``first`` to k.
        np.maximum(first, better * np.int32(k), out=first)
        np.maximum(best, tap, out=best)  # propagates NaN
    return first


def max_pool_impl(x, ksize=(2, 2), strides=(2, 2), padding="VALID"):
    xp, oh, ow = window_pad(x, ksize, strides, padding, -np.inf)
    out = window_tap(xp, 0, 0, strides, oh, ow).copy()
    for k in range(1, ksize[0] * ksize[1]):
        np.maximum(out, window_tap(xp, k // ksize[1], k % ksize[1], strides, oh, ow), out=out)
    return out


def max_pool_grad_impl(x, dy, ksize=(2, 2), strides=(2, 2), padding="VALID"):
    """Each window's gradient goes whole to its first maximum (row-major); ties get nothing."""
    first = max_pool_argmax(x, ksize, strides, padding)
    buf, oh, ow, (top, left) = window_grad_buffer(x.shape, ksize, strides, padding, dy.dtype)
    zero = np.zeros((), dtype=dy.dtype)
    finite = bool(np.isfinite(dy).all())  # then a mask multiply (faster) equals np.where
    for k in range(ksize[0] * ksize[1]):
        tap = window_tap(buf, k // ksize[1], k % ksize[1], strides, oh, ow)
        hit = first == k
        tap += dy * hit if finite else np.where(hit, dy, zero)
    return buf[:, top:top + x.shape[1], left:left + x.shape[2], :]


def max_pool_grad_grad_impl(x, gx, ksize=(2, 2), strides=(2, 2), padding="VALID"):
    """The adjoint of max_pool_grad in its gradient: ``gx`` read at each window's argmax."""
    first = max_pool_argmax(x, ksize, strides, padding)
    gp, oh, ow = window_pad(gx, ksize, strides, padding)
    out = np.zeros(first.shape, dtype=gx.dtype)
    for k in range(ksize[0] * ksize[1]):
        np.copyto(out, window_tap(gp, k // ksize[1], k % ksize[1], strides, oh, ow),
                  where=first == k)
    return out


# -- average pooling ---------------------------------------------------------------------------
def avg_pool_sum(x, ksize, strides, padding):
    """Sum of each window's elements (padding adds zeros)."""
    xp, oh, ow = window_pad(x, ksize, strides, padding)
    total = window_tap(xp, 0, 0, strides, oh, ow).copy()
    for k in range(1, ksize[0] * ksize[1]):
        total += window_tap(xp, k // ksize[1], k % ksize[1], strides, oh, ow)
    return total


def avg_pool_counts(x_shape, ksize, strides, padding, dtype):
    """Real (unpadded) elements per window, [1, OH, OW, 1]: SAME windows at the edges average
    over fewer elements, as in TF."""
    ones = np.ones((1, x_shape[1], x_shape[2], 1), dtype=dtype)
    return avg_pool_sum(ones, ksize, strides, padding)


def avg_pool_impl(x, ksize=(2, 2), strides=(2, 2), padding="VALID"):
    total = avg_pool_sum(x, ksize, strides, padding)
    return total / avg_pool_counts(x.shape, ksize, strides, padding, x.dtype)


def avg_pool_grad_impl(dy, like, ksize=(2, 2), strides=(2, 2), padding="VALID"):
    """Each window's gradient divided by its count, spread evenly over the window."""
    share = dy / avg_pool_counts(np.shape(like), ksize, strides, padding, dy.dtype)
    buf, oh, ow, (top, left) = window_grad_buffer(np.shape(like), ksize, strides, padding,
                                                  dy.dtype)
    for k in range(ksize[0] * ksize[1]):
        window_tap(buf, k // ksize[1], k % ksize[1], strides, oh, ow)[...] += share
    return buf[:, top:top + np.shape(like)[1], left:left + np.shape(like)[2], :]
