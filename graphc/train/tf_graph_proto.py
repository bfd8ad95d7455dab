"""TensorFlow's ``MetaGraphDef`` protobuf (a TF1 ``.meta`` file), read without TensorFlow.

Only what an import needs is decoded (field numbers of tensorflow/core/protobuf/
meta_graph.proto and tensorflow/core/framework/{graph,node_def,attr_value,tensor,
tensor_shape}.proto): the GraphDef's nodes (name, op, inputs, attributes) and the collections
(``node_list`` and ``bytes_list``, whose ``variables`` entries are ``VariableDef`` messages).
An attribute is decoded only when an op asks for it (``NodeDef.attr``); a tensor attribute
becomes a NumPy array after its size is checked against its dtype and shape.

Malformed input raises ``WireError`` (from ``proto_wire``) or ``ValueError`` saying what is
wrong (``TypeError`` where a field has another wire type than the message's);
``tf_meta_graph`` turns them into an ``ArtifactError`` naming the file and the node.
"""
import math
import struct

import numpy as np

from . import proto_wire as wire
from .tf_bundle import DTYPES, UNREADABLE

MAX_ELEMENTS = 1 << 28  # a constant of more elements is refused before it is allocated
HELD = {np.dtype(t) for t in (np.float32, np.float64, np.int8, np.int16, np.int32, np.int64,
                              np.uint8, np.bool_)}  # graphc's dtypes
REF = 100  # TensorFlow's reference dtypes are the plain enum + 100 (DT_FLOAT_REF = 101)


def packed(values, kind="varint"):
    """The ints (or floats) of a repeated scalar field, packed (one BYTES value) or not."""
    out = []
    for v in values:
        if not isinstance(v, bytes):
            out.append(v)
        elif kind == "varint":
            pos = 0
            while pos < len(v):
                x, pos = wire.read_varint(v, pos)
                out.append(x)
        else:  # fixed32 / fixed64 as raw ints
            size = 4 if kind == "fixed32" else 8
            if len(v) % size:
                raise wire.WireError(f"a packed {kind} field of {len(v)} bytes")
            out.extend(int.from_bytes(v[i:i + size], "little") for i in range(0, len(v), size))
    return out


class DTypeNotHeld(ValueError):
    """A known TensorFlow dtype graphc has no tensors of (strings, resources, quantized)."""


def np_dtype(enum):
    """The NumPy dtype of a DataType enum (a reference type counts as its value's type)."""
    if not isinstance(enum, int):
        raise ValueError(f"dtype {enum!r} is not a DataType enum")
    if enum > REF:
        enum -= REF
    if enum in UNREADABLE:
        raise DTypeNotHeld(f"dtype {UNREADABLE[enum]} is not a dtype graphc has")
    if enum not in DTYPES:
        raise ValueError(f"unknown dtype enum {enum}")
    dtype = np.dtype(DTYPES[enum])
    if dtype not in HELD:
        raise DTypeNotHeld(f"dtype {dtype.name} is not a dtype graphc has")
    return dtype


def shape(buf):
    """A TensorShapeProto: a tuple with None for -1 dims, or None for an unknown rank."""
    f = wire.parse(buf)
    if wire.last(f, 3):
        return None
    dims = []
    for d in f.get(2, []):
        size = wire.signed64(wire.last(wire.parse(d), 1))
        if size < -1:
            raise ValueError(f"dimension {size}")
        dims.append(None if size == -1 else size)
    return tuple(dims)


_TYPED = {np.dtype(np.float32): (5, "fixed32"), np.dtype(np.float64): (6, "fixed64"),
          np.dtype(np.int64): (10, "varint"), np.dtype(np.bool_): (11, "varint"),
          np.dtype(np.uint32): (16, "varint"), np.dtype(np.uint64): (17, "varint"),
          np.dtype(np.float16): (13, "varint")}  # everything else: int_val (7)


def tensor(buf):
    """A TensorProto as a NumPy array: ``tensor_content`` (raw little-endian bytes, exactly the
    dtype's size times the elements) or the typed ``*_val`` field; fewer values than elements
    repeat the last one (TensorFlow's rule: one value fills the tensor), none means zeros."""
    f = wire.parse(buf)
    dtype = np_dtype(wire.last(f, 1))
    dims = shape(wire.last(f, 2, b""))
    if dims is None or None in dims:
        raise ValueError(f"a constant's shape {dims} is not fully known")
    n = math.prod(dims)  # Python ints: no overflow
    if n > MAX_ELEMENTS or any(d > MAX_ELEMENTS for d in dims):
        raise ValueError(f"a constant of shape {list(dims)}, more than {MAX_ELEMENTS} elements")
    if 4 in f:
        content = wire.last(f, 4, b"")
        if len(content) != n * dtype.itemsize:
            raise ValueError(f"tensor_content of {len(content)} bytes for {dtype.name} "
                             f"{list(dims)} ({n * dtype.itemsize} bytes)")
        return np.frombuffer(content, dtype.newbyteorder("<")).astype(dtype).reshape(dims)
    number, kind = _TYPED.get(dtype, (7, "varint"))
    raw = packed(f.get(number, []), kind)
    if len(raw) > n:
        raise ValueError(f"{len(raw)} values for {dtype.name} {list(dims)} ({n} elements)")
    if kind == "fixed32":
        vals = np.array(struct.unpack(f"<{len(raw)}I", struct.pack(f"<{len(raw)}I", *raw)),
                        np.uint32).view(np.float32)
    elif kind == "fixed64":
        vals = np.array(raw, np.uint64).view(np.float64)
    elif dtype == np.float16:
        vals = np.array(raw, np.uint64).astype(np.uint16).view(np.float16)
    elif dtype.kind in "iu":  # varints of negative ints are 64-bit two's complement
        vals = np.array([wire.signed64(v) for v in raw], np.int64)
    else:
        vals = np.array(raw, np.uint64)
    out = np.zeros(n, dtype)
    if len(vals):
        out[:len(vals)] = vals.astype(dtype)
        out[len(vals):] = vals[-1].astype(dtype)
    return out.reshape(dims)


class NodeDef:
    """One node of a GraphDef: ``name``, ``op``, ``inputs`` ((node name, output index,
    is_control) triples) and its attributes, decoded on request."""

    def __init__(self, buf):
        f = wire.parse(buf)
        self.name = _text(wire.last(f, 1, b""))
        self.op = _text(wire.last(f, 2, b""))
        if not self.name or not self.op:
            raise ValueError("a node without a name or an op")
        self.inputs = [_input(_text(s)) for s in f.get(3, [])]
        self._attrs = {}
        for entry in f.get(5, []):
            e = wire.parse(entry)
            self._attrs[_text(wire.last(e, 1, b""))] = wire.last(e, 2, b"")

    def has(self, key):
        return key in self._attrs

    def attr(self, key, kind, default=None):
        """The attribute ``key`` as ``kind``: "i", "f", "b", "s", "type", "shape", "tensor",
        "ints", "types", "shapes"; ``default`` when absent."""
        if key not in self._attrs:
            if default is None:
                raise ValueError(f"attribute {key!r} is missing")
            return default
        f = wire.parse(self._attrs[key])
        if kind == "i":
            return wire.signed64(wire.last(f, 3))
        if kind == "f":
            return struct.unpack("<f", struct.pack("<I", wire.last(f, 4)))[0]
        if kind == "b":
            return bool(wire.last(f, 5))
        if kind == "s":
            return _text(wire.last(f, 2, b""))
        if kind == "type":
            return np_dtype(wire.last(f, 6))
        if kind == "shape":
            return shape(wire.last(f, 7, b""))
        if kind == "tensor":
            return tensor(wire.last(f, 8, b""))
        lst = wire.parse(wire.last(f, 1, b""))
        if kind == "ints":
            return [wire.signed64(v) for v in packed(lst.get(3, []))]
        if kind == "types":
            return [np_dtype(v) for v in packed(lst.get(6, []))]
        if kind == "shapes":
            return [shape(v) for v in lst.get(7, [])]
        raise ValueError(f"attribute kind {kind!r}")


def _text(b):
    try:
        return b.decode("utf-8")
    except (UnicodeDecodeError, AttributeError):
        raise ValueError(f"a name that is not UTF-8 text: {repr(b)[:60]}") from None


def _input(s):
    if s.startswith("^"):
        return s[1:], 0, True
    base, colon, index = s.rpartition(":")
    if colon and index.isdigit():
        return base, int(index), False
    return s, 0, False


class MetaGraph:
    """A parsed MetaGraphDef: ``nodes`` (NodeDefs in file order) and ``collections`` (name ->
    list of node names, or of VariableDef dicts for ``bytes_list`` ones)."""

    def __init__(self, buf):
        f = wire.parse(buf)
        if 2 not in f:
            raise ValueError("no graph_def (field 2): not a TensorFlow MetaGraphDef")
        g = wire.parse(wire.last(f, 2, b""))
        self.nodes = [NodeDef(n) for n in g.get(1, [])]
        self.collections = {}
        for entry in f.get(4, []):
            e = wire.parse(entry)
            self.collections[_text(wire.last(e, 1, b""))] = _collection(wire.last(e, 2, b""))


def _collection(buf):
    f = wire.parse(buf)
    if 1 in f:
        return [_text(s) for s in wire.parse(wire.last(f, 1, b"")).get(1, [])]
    if 2 in f:
        return [_variable_def(b) for b in wire.parse(wire.last(f, 2, b"")).get(1, [])]
    return []


def _variable_def(buf):
    """A VariableDef: its variable, initializer and initial value names, trainable flag; None
    for bytes that are not one (other collections' protos)."""
    try:
        f = wire.parse(buf)
        return {"variable": _input(_text(wire.last(f, 1, b"")))[0],
                "initializer": _text(wire.last(f, 2, b"")),
                "initial_value": _input(_text(wire.last(f, 6, b"")))[0],
                "trainable": bool(wire.last(f, 7, 0))}
    except (ValueError, TypeError):  # a field of another wire type than VariableDef's
        return None


__all__ = ["DTypeNotHeld", "MetaGraph", "NodeDef", "np_dtype", "shape", "tensor", "packed"]
