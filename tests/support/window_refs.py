"""Naive NumPy references for the sliding-window ops (conv2d, pooling), written from the
definitions with explicit loops over output positions and kernel taps — independent of the
vectorized im2col kernels in ``ir.ops.windows`` that they check. NHWC throughout.
"""
import numpy as np


def pads(size, k, s, padding):
    """(outputs, padding before) along one axis, from TF's documented formulas."""
    if padding == "VALID":
        return int(np.ceil((size - k + 1) / s)), 0
    out = int(np.ceil(size / s))
    return out, max((out - 1) * s + k - size, 0) // 2


def _positions(x_shape, ksize, strides, padding):
    """Yield (p, q, [(i, j, row, col) for the taps inside the input])."""
    (oh, top), (ow, left) = (pads(x_shape[1], ksize[0], strides[0], padding),
                             pads(x_shape[2], ksize[1], strides[1], padding))
    for p in range(oh):
        for q in range(ow):
            taps = []
            for i in range(ksize[0]):
                for j in range(ksize[1]):
                    r, c = p * strides[0] + i - top, q * strides[1] + j - left
                    if 0 <= r < x_shape[1] and 0 <= c < x_shape[2]:
                        taps.append((i, j, r, c))
            yield p, q, taps


def out_shape(x_shape, ksize, strides, padding, channels):
    return (x_shape[0], pads(x_shape[1], ksize[0], strides[0], padding)[0],
            pads(x_shape[2], ksize[1], strides[1], padding)[0], channels)


def conv2d(x, w, strides=(1, 1), padding="VALID"):
    y = np.zeros(out_shape(x.shape, w.shape[:2], strides, padding, w.shape[3]), x.dtype)
    for p, q, taps in _positions(x.shape, w.shape[:2], strides, padding):
        for i, j, r, c in taps:
            y[:, p, q, :] += x[:, r, c, :] @ w[i, j]
    return y


def conv2d_backprop_input(dy, w, x_shape, strides=(1, 1), padding="VALID"):
    dx = np.zeros(x_shape, dy.dtype)
    for p, q, taps in _positions(x_shape, w.shape[:2], strides, padding):
        for i, j, r, c in taps:
            dx[:, r, c, :] += dy[:, p, q, :] @ w[i, j].T
    return dx


def conv2d_backprop_filter(x, dy, filter_shape, strides=(1, 1), padding="VALID"):
    dw = np.zeros(filter_shape, x.dtype)
    for p, q, taps in _positions(x.shape, filter_shape[:2], strides, padding):
        for i, j, r, c in taps:
            dw[i, j] += x[:, r, c, :].T @ dy[:, p, q, :]
    return dw


def dilate(w, rates):
    """Filters [kh, kw, ...] with ``rates - 1`` zero rows/columns between the taps."""
    kh, kw = w.shape[:2]
    out = np.zeros(((kh - 1) * rates[0] + 1, (kw - 1) * rates[1] + 1) + w.shape[2:], w.dtype)
    out[::rates[0], ::rates[1]] = w
    return out


def depthwise_conv2d(x, w, strides=(1, 1), padding="VALID", dilations=(1, 1)):
    """Channel c convolved with its own filters w[:, :, c, m]: output channel c M + m."""
    wd = dilate(w, dilations)
    return np.concatenate([conv2d(x[..., c:c + 1], wd[:, :, c:c + 1, m:m + 1], strides,
                                  padding)
                           for c in range(w.shape[2]) for m in range(w.shape[3])], axis=-1)


def depthwise_conv2d_backprop_input(dy, w, x_shape, strides=(1, 1), padding="VALID",
                                    dilations=(1, 1)):
    wd, m = dilate(w, dilations), w.shape[3]
    one = tuple(x_shape[:3]) + (1,)
    return np.concatenate([sum(conv2d_backprop_input(dy[..., c * m + k:c * m + k + 1],
                                                     wd[:, :, c:c + 1, k:k + 1], one,
                                                     strides, padding) for k in range(m))
                           for c in range(w.shape[2])], axis=-1)


def depthwise_conv2d_backprop_filter(x, dy, filter_shape, strides=(1, 1), padding="VALID",
                                     dilations=(1, 1)):
    kh, kw, cin, m = filter_shape
    eh, ew = (kh - 1) * dilations[0] + 1, (kw - 1) * dilations[1] + 1
    dw = np.zeros((eh, ew, cin, m), x.dtype)
    for c in range(cin):
        for k in range(m):
            dw[:, :, c:c + 1, k:k + 1] = conv2d_backprop_filter(
                x[..., c:c + 1], dy[..., c * m + k:c * m + k + 1], (eh, ew, 1, 1), strides,
                padding)
    return dw[::dilations[0], ::dilations[1]]


def _first_max(x, taps):
    """[N, C] row/col of each window's first maximum (taps are in row-major order)."""
    vals = np.stack([x[:, r, c, :] for _, _, r, c in taps])       # [taps, N, C]
    best = np.argmax(vals, axis=0)                                 # first maximum
    rows = np.array([r for _, _, r, _ in taps])[best]
    cols = np.array([c for _, _, _, c in taps])[best]
    return rows, cols


def _pool(reduce, x, ksize, strides, padding):
    """``reduce`` (np.max, np.mean) over the input elements of each window."""
    y = np.zeros(out_shape(x.shape, ksize, strides, padding, x.shape[3]), x.dtype)
    for p, q, taps in _positions(x.shape, ksize, strides, padding):
        y[:, p, q, :] = reduce([x[:, r, c, :] for _, _, r, c in taps], axis=0)
    return y


def max_pool(x, ksize=(2, 2), strides=(2, 2), padding="VALID"):
    return _pool(np.max, x, ksize, strides, padding)


def max_pool_grad(x, dy, ksize=(2, 2), strides=(2, 2), padding="VALID"):
    dx = np.zeros(x.shape, dy.dtype)
    n_idx, c_idx = np.indices((x.shape[0], x.shape[3]))
    for p, q, taps in _positions(x.shape, ksize, strides, padding):
        rows, cols = _first_max(x, taps)
        np.add.at(dx, (n_idx, rows, cols, c_idx), dy[:, p, q, :])
    return dx


def max_pool_grad_grad(x, gx, ksize=(2, 2), strides=(2, 2), padding="VALID"):
    out = np.zeros(out_shape(x.shape, ksize, strides, padding, x.shape[3]), gx.dtype)
    n_idx, c_idx = np.indices((x.shape[0], x.shape[3]))
    for p, q, taps in _positions(x.shape, ksize, strides, padding):
        rows, cols = _first_max(x, taps)
        out[:, p, q, :] = gx[n_idx, rows, cols, c_idx]
    return out


def avg_pool(x, ksize=(2, 2), strides=(2, 2), padding="VALID"):
    """The mean over the window's input elements only (padding excluded, as TF)."""
    return _pool(np.mean, x, ksize, strides, padding)


def avg_pool_grad(dy, x_shape, ksize=(2, 2), strides=(2, 2), padding="VALID"):
    dx = np.zeros(x_shape, dy.dtype)
    for p, q, taps in _positions(x_shape, ksize, strides, padding):
        for _, _, r, c in taps:
            dx[:, r, c, :] += dy[:, p, q, :] / len(taps)
    return dx
