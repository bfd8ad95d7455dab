"""LevelDB's table format (an SSTable), which TensorFlow checkpoints use for their ``.index``.

A table is sorted key/value pairs in *data blocks*, then a *metaindex block* (empty here), an
*index block* (for each data block, a key >= its last key and < the next block's first key,
with the block's handle), and a 48-byte *footer*: the two handles (varint offset, varint size),
zero padding to 40 bytes, the magic number 0xdb4775248b80fb57 (little endian).

A block holds entries ``varint shared, varint unshared, varint value length, key[shared:],
value``: each key shares a prefix with the previous one, except at *restart points* (every 16
entries in data blocks, every entry in the index block), whose offsets close the block as
uint32s, then their count. Every block is followed by a 1-byte compression type (0: none; 1:
Snappy, which TensorFlow does not write for checkpoints) and the masked CRC-32C of the block and
that byte.

``build_table`` writes what TensorFlow's table builder writes for the same pairs, byte for byte
(same block size, restart interval, index keys shortened the same way); ``read_table`` checks
every length, handle and CRC and names the file and the problem in an ``ArtifactError``.
"""
import struct

from ..errors import ArtifactError
from . import proto_wire as wire
from .crc32c import crc32c, mask

MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48
BLOCK_SIZE = 262144  # TensorFlow's default target size of a data block (uncompressed)
RESTART_INTERVAL = 16
TRAILER = 5  # compression type + masked CRC
COMPRESSION = {0: None, 1: "Snappy"}


class _BlockBuilder:
    """Entries of one block, prefix-compressed between restart points."""

    def __init__(self, restart_interval):
        self.interval = restart_interval
        self.reset()

    def reset(self):
        self.buf, self.restarts, self.count, self.last = bytearray(), [0], 0, b""

    def empty(self):
        return not self.buf

    def add(self, key, value):
        shared = 0
        if self.count < self.interval:
            limit = min(len(key), len(self.last))
            while shared < limit and key[shared] == self.last[shared]:
                shared += 1
        else:
            self.restarts.append(len(self.buf))
            self.count = 0
        self.buf += (wire.varint(shared) + wire.varint(len(key) - shared)
                     + wire.varint(len(value)) + key[shared:] + value)
        self.last = key
        self.count += 1

    def size_estimate(self):
        return len(self.buf) + 4 * len(self.restarts) + 4

    def finish(self):
        out = bytes(self.buf) + struct.pack(f"<{len(self.restarts)}I", *self.restarts) \
            + struct.pack("<I", len(self.restarts))
        self.reset()
        return out


def _separator(start, limit):
    """A short key >= ``start`` and < ``limit`` (LevelDB's bytewise rule: bump the first
    differing byte when that keeps it below ``limit``'s)."""
    n = min(len(start), len(limit))
    i = 0
    while i < n and start[i] == limit[i]:
        i += 1
    if i < n and start[i] < 0xFF and start[i] + 1 < limit[i]:
        return start[:i] + bytes([start[i] + 1])
    return start


def _successor(key):
    """A short key >= ``key``: its first byte that is not 0xff, bumped."""
    for i, b in enumerate(key):
        if b != 0xFF:
            return key[:i] + bytes([b + 1])
    return key


def _handle(offset, size):
    return wire.varint(offset) + wire.varint(size)


def build_table(items, block_size=BLOCK_SIZE, restart_interval=RESTART_INTERVAL):
    """The bytes of a table holding ``items`` uncompressed.

    Args:
        items: (key bytes, value bytes) pairs in strictly increasing key order.
        block_size: a data block is closed once its size reaches this.
        restart_interval: entries between restart points in data blocks.
    Returns:
        The table's bytes.
    Example:
        >>> table = build_table([(b"", header), (b"dense/bias", entry)])
    """
    out = bytearray()
    data, index = _BlockBuilder(restart_interval), _BlockBuilder(1)
    pending, last = None, None

    def write_block(block):
        contents = block.finish()
        handle = (len(out), len(contents))
        out.extend(contents + b"\0" + struct.pack("<I", mask(crc32c(contents + b"\0"))))
        return handle

    for key, value in items:
        if last is not None and key <= last:
            raise ValueError(f"table keys out of order: {key!r} after {last!r}")
        if last is not None and len(key) + len(value) >= 2 * block_size and not data.empty():
            pending = write_block(data)  # an overly large entry starts a block of its own
        if pending is not None:
            index.add(_separator(last, key), _handle(*pending))
            pending = None
        last = key
        data.add(key, value)
        if data.size_estimate() >= block_size:
            pending = write_block(data)
    if not data.empty():
        pending = write_block(data)
    metaindex = write_block(_BlockBuilder(restart_interval))
    if pending is not None:
        index.add(_successor(last), _handle(*pending))
    index_handle = write_block(index)
    footer = _handle(*metaindex) + _handle(*index_handle)
    out += footer + b"\0" * (FOOTER_SIZE - 8 - len(footer)) + struct.pack("<Q", MAGIC)
    return bytes(out)


def read_table(data, path):
    """The (key, value) pairs of the table ``data`` (bytes of the file ``path``), in order.

    Raises:
        ArtifactError: the file is not a table or is damaged (too short, bad magic number,
            a handle outside the file, a CRC mismatch, an unsupported compression, an entry
            that runs past its block, keys out of order); names ``path``.
    """
    def fail(problem):
        raise ArtifactError(f"checkpoint index '{path}' is damaged: {problem}",
                            hint="the file is truncated or corrupted, or is not a TensorFlow "
                                 "checkpoint's .index")

    if len(data) < FOOTER_SIZE:
        fail(f"{len(data)} bytes, shorter than a table's {FOOTER_SIZE}-byte footer")
    footer_at = len(data) - FOOTER_SIZE
    magic = struct.unpack_from("<Q", data, len(data) - 8)[0]
    if magic != MAGIC:
        fail(f"bad magic number {magic:#018x} (a table ends with {MAGIC:#018x})")
    try:
        meta_off, p = wire.read_varint(data, footer_at, len(data) - 8)
        meta_size, p = wire.read_varint(data, p, len(data) - 8)
        index_off, p = wire.read_varint(data, p, len(data) - 8)
        index_size, p = wire.read_varint(data, p, len(data) - 8)
    except wire.WireError as e:
        fail(f"unreadable footer ({e})")

    def block(offset, size, what):
        if offset + size + TRAILER > footer_at:
            fail(f"{what} at byte {offset} ({size} bytes) runs past the end of the blocks "
                 f"({footer_at})")
        contents = data[offset:offset + size]
        kind = data[offset + size]
        if kind not in COMPRESSION:
            fail(f"{what} at byte {offset} has unknown compression type {kind}")
        stored = struct.unpack_from("<I", data, offset + size + 1)[0]
        if stored != mask(crc32c(data[offset:offset + size + 1])):
            fail(f"{what} at byte {offset}: CRC mismatch")
        if COMPRESSION[kind] is not None:
            fail(f"{what} at byte {offset} is {COMPRESSION[kind]}-compressed, which graphc "
                 "does not read (TensorFlow writes checkpoint indexes uncompressed)")
        return entries(contents, what, offset)

    def entries(contents, what, offset):
        where = f"{what} at byte {offset}"
        if len(contents) < 4:
            fail(f"{where}: {len(contents)} bytes, too short for a block")
        restarts = struct.unpack_from("<I", contents, len(contents) - 4)[0]
        end = len(contents) - 4 - 4 * restarts
        if restarts < 1 or end < 0:
            fail(f"{where}: {restarts} restart points do not fit in {len(contents)} bytes")
        out, key, p = [], b"", 0
        try:
            while p < end:
                shared, p = wire.read_varint(contents, p, end)
                unshared, p = wire.read_varint(contents, p, end)
                size, p = wire.read_varint(contents, p, end)
                if shared > len(key) or p + unshared + size > end:
                    fail(f"{where}: an entry at byte {p} runs past the block")
                key = key[:shared] + contents[p:p + unshared]
                out.append((key, contents[p + unshared:p + unshared + size]))
                p += unshared + size
        except wire.WireError as e:
            fail(f"{where}: {e}")
        return out

    block(meta_off, meta_size, "the metaindex block")
    items = []
    for separator, handle in block(index_off, index_size, "the index block"):
        try:
            offset, p = wire.read_varint(handle, 0)
            size, _ = wire.read_varint(handle, p)
        except wire.WireError as e:
            fail(f"a block handle in the index: {e}")
        got = block(offset, size, "a data block")
        if got and got[-1][0] > separator:
            fail(f"the data block at byte {offset} holds keys beyond its index key")
        items += got
    for (a, _), (b, _) in zip(items, items[1:]):
        if b <= a:
            fail(f"keys out of order: {b!r} after {a!r}")
    return items


__all__ = ["build_table", "read_table", "BLOCK_SIZE", "MAGIC"]
