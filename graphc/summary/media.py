"""Images and sounds for TensorBoard, encoded on the host as TF1's summary ops encode them:
PNG (with zlib) for ``summary.image``, 16-bit PCM WAV for ``summary.audio``.

Float images are mapped to bytes per image as TF1 maps them: all values >= 0 are scaled so the
largest is 255; with negative values, 0 goes to 128 and the largest magnitude to +-127; values
that are not finite are drawn red. uint8 images pass through.
"""
import struct
import zlib

import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_COLOR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> grayscale, gray+alpha, RGB, RGBA
BAD_COLOR = (255, 0, 0, 255)  # TF1's default colour for NaN and Inf pixels
ZERO_THRESHOLD = 1e-6  # below this largest magnitude an image is drawn black (TF1)


def image_bytes(image):
    """One [height, width, channels] image as uint8, TF1's mapping (see the module)."""
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image
    values = image.astype(np.float64)
    finite = np.isfinite(values)
    lo = values[finite].min() if finite.any() else 0.0
    hi = values[finite].max() if finite.any() else 0.0
    if lo < 0:
        top = max(abs(lo), abs(hi))
        scale, offset = (0.0 if top < ZERO_THRESHOLD else 127.0 / top), 128.0
    else:
        scale, offset = (0.0 if hi < ZERO_THRESHOLD else 255.0 / hi), 0.0
    out = np.clip(np.where(finite, values, 0.0) * scale + offset, 0, 255).astype(np.uint8)
    if not finite.all():
        bad = np.asarray(BAD_COLOR[:image.shape[-1]], np.uint8)
        out[~finite.all(axis=-1)] = bad
    return out


def _chunk(kind, data):
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def encode_png(pixels):
    """PNG bytes of a uint8 [height, width, channels] array (channels 1 to 4), unfiltered
    rows, zlib-compressed.

    Example:
        >>> encode_png(np.zeros((2, 3, 3), np.uint8))[:8] == PNG_SIGNATURE
        True
    """
    h, w, c = pixels.shape
    header = struct.pack(">IIBBBBB", w, h, 8, PNG_COLOR_TYPES[c], 0, 0, 0)
    rows = np.concatenate([np.zeros((h, 1), np.uint8),
                           np.ascontiguousarray(pixels, np.uint8).reshape(h, w * c)], axis=1)
    return (PNG_SIGNATURE + _chunk(b"IHDR", header)
            + _chunk(b"IDAT", zlib.compress(rows.tobytes(), 6)) + _chunk(b"IEND", b""))


def encode_wav(samples, sample_rate):
    """16-bit PCM WAV bytes of float [frames, channels] samples in [-1, 1] (TF1's rounding:
    ``round(x * 32768)`` clamped to int16).

    Example:
        >>> encode_wav(np.zeros((8, 1)), 16000)[:4]
        b'RIFF'
    """
    frames, channels = samples.shape
    pcm = np.clip(np.round(np.asarray(samples, np.float64) * 32768.0), -32768, 32767)
    data = pcm.astype("<i2").tobytes()
    rate = int(round(sample_rate))
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * channels * 2, channels * 2, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" \
        + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body
