"""TensorFlow's checkpoint format (V2 "tensor bundles"), read and written without TensorFlow.

A checkpoint ``prefix`` is two files (TF1's ``tf.train.Saver`` and TF 2's
``tf.compat.v1.train.Saver`` write the same):

- ``prefix.index``: a LevelDB table (``sstable``) mapping each tensor's name to a
  ``BundleEntryProto`` (dtype enum, shape, shard, byte offset and size in the data file, masked
  CRC-32C of those bytes); the key ``""`` holds the ``BundleHeaderProto`` (number of shards,
  endianness, format version).
- ``prefix.data-00000-of-00001`` (``-0000K-of-0000N`` when sharded): the tensors' raw bytes.

``BundleReader`` opens the index, checks every entry (known fields, shard files present, each
byte range inside its data file) and reads a tensor on request, checking its size against its
dtype and shape and its CRC; any problem is an ``ArtifactError`` naming the file, the tensor and
what is wrong, raised before anything large is allocated. ``bundle_index`` and ``write_bundle``
write what TensorFlow writes for the same tensors: entries sorted by name, data in that order.

Tensors of strings, bfloat16, resources and variants, and tensors saved in slices (partitioned
variables), are refused by name when read.
"""
import os
import re
import sys

import numpy as np

from ..errors import ArtifactError
from . import proto_wire as wire
from .crc32c import crc32c, mask
from .sstable import build_table, read_table

# DataType enum of tensorflow/core/framework/types.proto -> NumPy dtype
DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 4: np.uint8, 5: np.int16, 6: np.int8,
          8: np.complex64, 9: np.int64, 10: np.bool_, 17: np.uint16, 18: np.complex128,
          19: np.float16, 22: np.uint32, 23: np.uint64}
ENUM = {np.dtype(t): e for e, t in DTYPES.items()}
UNREADABLE = {7: "DT_STRING", 11: "DT_QINT8", 12: "DT_QUINT8", 13: "DT_QINT32",
              14: "DT_BFLOAT16", 15: "DT_QINT16", 16: "DT_QUINT16", 20: "DT_RESOURCE",
              21: "DT_VARIANT"}
VERSION = 1  # the bundle format version TensorFlow writes (VersionDef.producer)
LITTLE, BIG = 0, 1
MAX_INDEX_BYTES = 1 << 30
_DATA = re.compile(r"\.data-(\d{5})-of-(\d{5})")


def index_file(prefix):
    return f"{prefix}.index"


def data_file(prefix, shard=0, shards=1):
    return f"{prefix}.data-{shard:05d}-of-{shards:05d}"


def data_files(prefix):
    """Every existing ``prefix.data-*-of-*`` file (what deleting a checkpoint removes)."""
    folder, base = os.path.split(os.path.abspath(prefix))
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    return [os.path.join(folder, n) for n in sorted(names)
            if n.startswith(base) and _DATA.fullmatch(n[len(base):])]


class Entry:
    """One tensor of a bundle: dtype enum, shape, and where its bytes are."""

    __slots__ = ("name", "dtype", "shape", "shard", "offset", "size", "crc", "sliced")

    def __init__(self, name, fields):
        """``fields``: the parsed BundleEntryProto (``proto_wire.parse``); raises WireError
        when its shape is malformed."""
        self.name = name
        self.dtype = wire.last(fields, 1)
        shape = wire.parse(wire.last(fields, 2, b""))
        self.shape = tuple(wire.signed64(wire.last(wire.parse(d), 1)) for d in shape.get(2, []))
        self.shard = wire.signed64(wire.last(fields, 3))
        self.offset = wire.signed64(wire.last(fields, 4))
        self.size = wire.signed64(wire.last(fields, 5))
        self.crc = wire.last(fields, 6)
        self.sliced = bool(fields.get(7))

    def dtype_name(self):
        if self.dtype in DTYPES:
            return np.dtype(DTYPES[self.dtype]).name
        return f"{UNREADABLE.get(self.dtype, 'unknown')} (TensorFlow dtype {self.dtype})"


class BundleReader:
    """The tensors of the TensorFlow checkpoint ``prefix``; values are read on request.

    Args:
        prefix: the checkpoint's prefix (``ckpt/model.ckpt-1000`` for
            ``ckpt/model.ckpt-1000.index`` and its data files).
    Raises:
        ArtifactError: the index is missing, unreadable or damaged, its header is from a
            newer format, an entry is malformed, or a data file is missing or too short for
            the entries that point into it.
    Example:
        >>> reader = BundleReader("ckpt/model.ckpt-1000")
        >>> kernel = reader.read("dense/kernel")
    """

    def __init__(self, prefix):
        self.prefix = os.fspath(prefix)
        self.path = index_file(self.prefix)
        items = read_table(_read_bytes(self.path, MAX_INDEX_BYTES), self.path)
        if not items or items[0][0] != b"":
            self._fail("no header entry (the empty key)")
        header = self._parse(items[0][1], "the header")
        self.shards = wire.signed64(wire.last(header, 1))
        self.endianness = wire.last(header, 2)
        version = wire.parse(wire.last(header, 3, b"")) if 3 in header else {}
        min_consumer = wire.signed64(wire.last(version, 2))
        if self.shards < 1 or self.endianness not in (LITTLE, BIG):
            self._fail(f"header says {self.shards} shard(s), endianness {self.endianness}")
        if min_consumer > VERSION or VERSION in [wire.signed64(v) for v in version.get(3, [])]:
            self._fail(f"the bundle format needs a reader of version {min_consumer} or "
                       f"newer; graphc reads version {VERSION}")
        self.entries = {}
        for key, value in items[1:]:
            try:
                name = key.decode("utf-8")
            except UnicodeDecodeError:
                self._fail(f"tensor name {key!r} is not UTF-8")
            try:
                entry = Entry(name, wire.parse(value))
            except wire.WireError as e:
                self._fail(f"tensor '{name}': malformed entry ({e})")
            self._check(entry)
            self.entries[name] = entry
        self._sizes = {}
        for shard in sorted({e.shard for e in self.entries.values() if not e.sliced}):
            path = data_file(self.prefix, shard, self.shards)
            try:
                self._sizes[shard] = os.path.getsize(path)
            except OSError:
                self._fail(f"its data file '{path}' is missing (shard {shard} of "
                           f"{self.shards})", hint="copy every .data-*-of-* file of the "
                           "checkpoint along with its .index")
        for e in self.entries.values():
            if not e.sliced and e.offset + e.size > self._sizes[e.shard]:
                self._fail(f"tensor '{e.name}' is bytes {e.offset}..{e.offset + e.size} of "
                           f"'{data_file(self.prefix, e.shard, self.shards)}', which has "
                           f"{self._sizes[e.shard]} bytes")

    def _fail(self, problem, hint=None):
        raise ArtifactError(f"TensorFlow checkpoint '{self.path}': {problem}",
                            hint=hint or "the checkpoint is truncated or corrupted; copy it "
                                         "again or restore an earlier one")

    def _parse(self, value, what):
        try:
            return wire.parse(value)
        except wire.WireError as e:
            self._fail(f"{what}: malformed entry ({e})")

    def _check(self, e):
        if any(d < 0 for d in e.shape):
            self._fail(f"tensor '{e.name}' has shape {list(e.shape)} (a dim below 0)")
        if not e.sliced and not (0 <= e.shard < self.shards and e.offset >= 0 and e.size >= 0):
            self._fail(f"tensor '{e.name}': shard {e.shard} of {self.shards}, offset "
                       f"{e.offset}, size {e.size}")

    def names(self):
        """The tensors' names, sorted."""
        return sorted(self.entries)

    def shape(self, name):
        return self.entries[name].shape

    def dtype(self, name):
        """The tensor's NumPy dtype, or None for a dtype graphc does not read."""
        t = DTYPES.get(self.entries[name].dtype)
        return None if t is None else np.dtype(t)

    def read(self, name):
        """The tensor ``name`` as a new NumPy array (native byte order).

        Raises:
            ArtifactError: an unreadable dtype or sliced tensor, a size that does not match
                dtype and shape, a short data file or a CRC mismatch; names the tensor.
        """
        e = self.entries[name]
        data = data_file(self.prefix, e.shard, self.shards)
        if e.sliced:
            self._fail(f"tensor '{name}' was saved in slices (a partitioned variable), which "
                       "graphc does not read", hint="save it unpartitioned")
        dtype = self.dtype(name)
        if dtype is None:
            self._fail(f"tensor '{name}' has dtype {e.dtype_name()}, which graphc does not "
                       "read", hint="restore only the numeric variables (var_list=)")
        count = 1
        for d in e.shape:
            count *= d
        if count * dtype.itemsize != e.size:
            self._fail(f"tensor '{name}': {e.size} bytes stored, {count * dtype.itemsize} "
                       f"expected for {dtype.name}{list(e.shape)}")
        buf = bytearray(e.size)
        try:
            with open(data, "rb") as f:
                f.seek(e.offset)
                got = f.readinto(buf)
        except OSError as err:
            self._fail(f"cannot read '{data}': {err.strerror or err}")
        if got != e.size:
            self._fail(f"tensor '{name}': '{data}' ends after {got} of its {e.size} bytes")
        if mask(crc32c(buf)) != e.crc:
            self._fail(f"tensor '{name}': CRC mismatch in '{data}' (bytes {e.offset}.."
                       f"{e.offset + e.size})")
        order = "<" if self.endianness == LITTLE else ">"
        arr = np.frombuffer(buf, dtype=dtype.newbyteorder(order)).reshape(e.shape)
        return arr if arr.dtype.isnative else arr.astype(dtype)


def _read_bytes(path, limit):
    try:
        size = os.path.getsize(path)
        if size > limit:
            raise ArtifactError(f"TensorFlow checkpoint '{path}': {size} bytes, more than an "
                                f"index can be ({limit})")
        with open(path, "rb") as f:
            return f.read(size)
    except OSError as e:
        raise ArtifactError(f"cannot read TensorFlow checkpoint '{path}': "
                            f"{e.strerror or type(e).__name__}",
                            hint="pass the prefix that Saver.save returned") from None


def _little_endian(arr):
    arr = np.asarray(arr, order="C")  # (ascontiguousarray makes a 0-d array 1-d)
    if arr.dtype.byteorder == ">" or (arr.dtype.byteorder == "=" and sys.byteorder == "big"):
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    return arr


def _entry(dtype_enum, shape, offset, size, crc):
    """A BundleEntryProto's bytes, as TensorFlow serializes it (defaults left out)."""
    dims = b"".join(wire.field(2, wire.field(1, d) if d else b"", wire.BYTES) for d in shape)
    out = wire.field(1, dtype_enum) + wire.field(2, dims, wire.BYTES)
    out += wire.field(4, offset) if offset else b""
    out += wire.field(5, size) if size else b""
    return out + (wire.field(6, crc, wire.FIXED32) if crc else b"")


HEADER = wire.field(1, 1) + wire.field(3, wire.field(1, VERSION), wire.BYTES)


def bundle_index(arrays):
    """(index bytes, arrays in data order) of a one-shard bundle of ``arrays``.

    Args:
        arrays: {tensor name: NumPy array}.
    Raises:
        ValueError: an array's dtype has no TensorFlow equivalent here.
    """
    items, ordered, offset = [(b"", HEADER)], [], 0
    for name in sorted(arrays, key=lambda n: n.encode("utf-8")):
        arr = _little_endian(arrays[name])
        if arr.dtype not in ENUM:
            raise ValueError(f"'{name}': dtype {arr.dtype} has no TensorFlow checkpoint dtype")
        size = arr.nbytes
        items.append((name.encode("utf-8"), _entry(ENUM[np.dtype(arr.dtype.type)], arr.shape,
                                                   offset, size, mask(crc32c(arr)))))
        ordered.append(arr)
        offset += size
    return build_table(items), ordered


def write_bundle(prefix, index, ordered, replace_file):
    """Write the TensorFlow checkpoint ``prefix`` (``.index`` and ``.data-00000-of-00001``)
    from what ``bundle_index`` returned.

    The data file is replaced first, then the index (small, built in memory beforehand), each
    atomically by ``replace_file(path, write)``: a reader that finds the index finds its data.
    Rewriting an existing prefix leaves a moment between the two renames where the old index
    meets the new data; a reader then fails on the sizes or CRCs (an ``ArtifactError``), it
    never returns mixed values.

    Returns:
        The paths written: [data file, index file].
    Example:
        >>> write_bundle("ckpt/model.ckpt", *bundle_index(arrays), durable_replace)
    """

    def write_data(f):
        for arr in ordered:
            f.write(arr.reshape(-1).view(np.uint8).data)

    paths = [data_file(prefix), index_file(prefix)]
    replace_file(paths[0], write_data)
    replace_file(paths[1], lambda f: f.write(index))
    return paths


__all__ = ["BundleReader", "bundle_index", "write_bundle", "index_file", "data_file",
           "data_files", "DTYPES"]
