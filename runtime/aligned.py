"""Host arrays that start on a cache line (64 bytes), for the arrays compiled steps keep:
their arenas and the variables they update in place.

NumPy aligns an array to 16 bytes; where the rest of the address falls is chance. A native
GEMM's 32-byte vector loads and stores of a weight that starts 48 bytes into a line cross a
line boundary every other time: W1's step at one thread measured ~15% slower in the processes
whose first weight landed there than in those whose landed on a line (the same code), so a
user timing one process could see either. The arrays here own a few bytes more than they
show; they are views of that buffer (``base``: the uint8 array owning it), which
``runtime.calls.state_ids`` already counts when it keeps feeds apart from variables.

``aligned_copies`` copies many small arrays at once (a step's initial variable values) into
one buffer, each on lines of its own: one allocation for them all.
"""
import math
from operator import attrgetter, itemgetter

import numpy as np

__all__ = ["aligned_empty", "aligned_copy", "aligned_copies", "aligned_zeros", "LINE"]

LINE = 64
# Arrays of at most this many bytes share ``aligned_copies``'s buffer. A buffer of its own
# costs an array ~3 us more than a place in a shared one (an allocation, and its address:
# ``__array_interface__`` alone is 1 us); larger arrays keep their own, so that a small copy
# kept alive keeps only small ones with it. A page: the biases and the tiny weights of deep
# graphs share (mlp10k's 1,110 arrays of 32-256 bytes), and every weight of W1-W5 keeps the
# buffer it had (at 64 KiB W4's 1352x10 dense weight shared one; W4 timed against its old
# layout, alternating, on a noisy machine: 1.00-1.09x, inconclusive).
SHARED_MAX = 4096
# Larger arrays of one shape, when at least this many (a deep model's weights: 63 of 256x256
# in a 64-layer MLP), share one buffer of their own: one allocation that NumPy asks the
# kernel to back with huge pages (from 4 MiB), where one buffer each faulted in 4 KiB pages
# (copying 17.6 MB of initial values: 11.5 -> 4 ms). A view kept alive keeps its group's
# buffer. Few (every weight of W1-W5, an optimizer's two slots of each) keep their own.
GROUP_MIN = 8


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


def aligned_copies(values, dtypes=None):
    """``[aligned_copy(v, d) for v, d in zip(values, dtypes)]`` (``dtypes`` None: each
    value's own, as ``np.asarray`` gives it), with the small ones (at most
    ``SHARED_MAX`` bytes) placed in one buffer: each starts on a line of its own and ends
    before the next one's, so each is still an array of its own, writable, that no other
    one overlaps or shares a line with.

    A small copy is a view of the shared buffer and keeps all of it alive while it lives;
    ``runtime.calls.state_ids`` keeps feeds viewing that buffer apart from them all.
    """
    srcs = list(map(np.asarray, values) if dtypes is None else map(np.asarray, values, dtypes))
    copies, blocks, alone = _placed(list(map(_shape, srcs)), list(map(_dtype, srcs)))
    for block, ks in blocks:  # (a group of one shape: one copy, from NumPy's own loop)
        block[...] = itemgetter(*ks)(srcs) if len(ks) > 1 else srcs[ks[0]]
    for k in alone:
        copies[k][...] = srcs[k]  # (same dtype and shape: np.copyto's copy, at a third of
    return copies                 # its cost)


def aligned_zeros_each(shapes, dtypes):
    """``[aligned_zeros(s, d) for s, d in zip(shapes, dtypes)]``, the small ones placed in
    one buffer as ``aligned_copies`` places them (a session's 1,110 variables before their
    initializers run: one allocation, not 1,110)."""
    zeros, blocks, alone = _placed(shapes, dtypes)
    for block, _ in blocks:
        block[...] = 0
    for k in alone:
        zeros[k][...] = 0
    return zeros


_shape, _dtype = attrgetter("shape"), attrgetter("dtype")


def _placed(shapes, dtypes):
    """(uninitialized C-ordered arrays of ``shapes`` and ``dtypes``, each on a line of its
    own: those of at most ``SHARED_MAX`` bytes views of one shared buffer, and those of a
    larger shape that at least ``GROUP_MIN`` arrays have views of one buffer of their
    shape's; the blocks they view, as [(block, their positions)]; the positions of the
    other arrays, which have buffers of their own).

    Arrays of one shape and dtype are placed side by side, each on as many whole lines as it
    needs, and come out of one strided view of their block (iterating it makes a view in
    ~0.1 us; ``np.ndarray(shape, dtype, buffer, offset)`` took ~0.5 us each): mlp10k's
    1,110 arrays are two groups, each filled with one assignment.
    """
    out = [None] * len(shapes)
    pending, total, alone, blocks = [], 0, [], []
    for (shape, _), ks in _groups(shapes, dtypes):
        shape, dtype = tuple(map(int, shape)), np.dtype(dtypes[ks[0]])
        size = math.prod(shape) * dtype.itemsize
        line = -(-max(size, 1) // LINE) * LINE
        if size <= SHARED_MAX:
            pending.append((shape, dtype, ks, total, line))
            total += line * len(ks)
        elif len(ks) >= GROUP_MIN:
            blocks.append(_block(aligned_empty(line * len(ks)), 0, shape, dtype, ks, line, out))
        else:
            for k in ks:
                out[k] = _aligned_array(shape, dtype)
            alone += ks
    buffer = aligned_empty(total)
    for shape, dtype, ks, start, line in pending:
        blocks.append(_block(buffer, start, shape, dtype, ks, line, out))
    return out, blocks, alone


def _block(buffer, start, shape, dtype, ks, line, out):
    """(the strided view of ``buffer`` from ``start`` holding one array of ``shape`` per
    position of ``ks``, ``line`` bytes apart, ``ks``); ``out[k]`` becomes each array."""
    strides = [dtype.itemsize]
    for n in reversed(shape[1:]):
        strides.insert(0, strides[0] * n)
    rows = (len(ks), *shape) if shape else (len(ks), 1)
    block = np.ndarray(rows, dtype, buffer, start, (line, *strides[-len(rows) + 1:]))
    views = list(block) if shape else [row.reshape(()) for row in block]
    for k, view in zip(ks, views):
        out[k] = view
    return block if shape else block.reshape(len(ks)), ks


def _groups(shapes, dtypes):
    """{(shape, the dtype's id): positions} of the arrays of each shape and dtype (a dtype
    hashes slowly; NumPy's own dtypes are one object each: equal dtypes of two ids make two
    groups), in the order of their first positions."""
    groups = {}
    get = groups.get
    tuples = shapes if set(map(type, shapes)) <= _TUPLE else map(_as_tuple, shapes)
    for k, key in enumerate(zip(tuples, map(id, dtypes))):
        ks = get(key)
        if ks is None:
            ks = groups[key] = []
        ks.append(k)
    return groups.items()


def _as_tuple(shape):
    return shape if type(shape) is tuple else tuple(shape)


_TUPLE = {tuple}
