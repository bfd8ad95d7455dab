"""Host arrays that start on a cache line (64 bytes), for the arrays compiled steps keep:
their arenas and the variables they update in place.

NumPy aligns an array to 16 bytes; where the rest of the address falls is chance. A native
GEMM's 32-byte vector loads and stores of a weight that starts 48 bytes into a line cross a
line boundary every other time: W1's step at one thread measured ~15% slower in the processes
whose first weight landed there than in those whose landed on a line (the same code), so a
user timing one process could see either. The arrays here own a few bytes more than they
show; they are views of that buffer (``base``: the uint8 array owning it), which
``runtime.calls.state_ids`` already counts when it keeps feeds apart from variables.
"""
import math

import numpy as np

__all__ = ["aligned_empty", "aligned_copy", "aligned_zeros", "LINE"]

LINE = 64


def aligned_empty(nbytes, align=LINE):
    """``nbytes`` uninitialized bytes (uint8) starting at a multiple of ``align``."""
    raw = np.empty(int(nbytes) + align, np.uint8)
    start = (-raw.__array_interface__["data"][0]) % align
    return raw[start:start + int(nbytes)]


def _aligned_array(shape, dtype):
    """An uninitialized C-ordered array of ``shape`` and ``dtype`` on a cache line."""
    dtype = np.dtype(dtype)
    nbytes = math.prod(map(int, shape)) * dtype.itemsize  # (np.prod: 4 us a call, per variable)
    return aligned_empty(nbytes).view(dtype).reshape(shape)


def aligned_zeros(shape, dtype):
    """``np.zeros(shape, dtype)``, starting on a cache line."""
    out = _aligned_array(shape, dtype)
    out[...] = 0
    return out


def aligned_copy(value, dtype=None):
    """A C-ordered copy of ``value`` (converted to ``dtype`` if given), starting on a cache
    line: what ``np.array(value, dtype, order="C")`` gives, owned by this module's buffer."""
    src = np.asarray(value, dtype=dtype)
    out = _aligned_array(src.shape, src.dtype)
    np.copyto(out, src, casting="no")
    return out
