"""Protocol-buffer wire encoding for the few small messages TensorFlow checkpoints hold.

Enough of the wire format to read and write ``BundleHeaderProto`` and ``BundleEntryProto``
without a protobuf dependency: varints (wire type 0), 64-bit (1), length-delimited (2) and
32-bit (5) fields. Writing follows proto3: fields at their default (0, empty) are left out, and
fields go in field-number order, as protobuf's own serializer writes them.

Malformed input raises ``WireError`` (a ``ValueError``) saying what is wrong and where; the
callers turn it into an ``ArtifactError`` naming the file.
"""
import struct

VARINT, FIXED64, BYTES, FIXED32 = 0, 1, 2, 5
MAX_VARINT_BYTES = 10


class WireError(ValueError):
    """Bytes that are not a well-formed protobuf message."""


def varint(value):
    """The varint encoding of a non-negative int (negative ints as their 64-bit two's complement,
    protobuf's rule for int32/int64 fields)."""
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def read_varint(buf, pos, end=None):
    """(value, next position) of the varint at ``buf[pos]``.

    Raises:
        WireError: it runs past ``end`` or is longer than 10 bytes.
    """
    end = len(buf) if end is None else end
    value = shift = 0
    for i in range(MAX_VARINT_BYTES):
        if pos + i >= end:
            raise WireError(f"a varint at byte {pos} runs past the end ({end})")
        byte = buf[pos + i]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos + i + 1
        shift += 7
    raise WireError(f"a varint at byte {pos} is longer than {MAX_VARINT_BYTES} bytes")


def signed64(value):
    """An int64 field's value from its unsigned varint."""
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >> 63 else value


def field(number, value, wire=VARINT):
    """One encoded field: the tag, then the value (an int; bytes for ``BYTES``).

    Example:
        >>> field(1, 150)
        b'\\x08\\x96\\x01'
    """
    tag = varint(number << 3 | wire)
    if wire == VARINT:
        return tag + varint(value)
    if wire == BYTES:
        return tag + varint(len(value)) + bytes(value)
    if wire == FIXED32:
        return tag + struct.pack("<I", value)
    return tag + struct.pack("<Q", value)


def parse(buf):
    """{field number: [values...]} of a message (varints and fixed ints as ints, length-
    delimited fields as bytes), in the order they appear.

    Raises:
        WireError: a truncated field, a group (wire types 3 and 4) or an unknown wire type.
    """
    out = {}
    pos, end = 0, len(buf)
    while pos < end:
        tag, pos = read_varint(buf, pos, end)
        number, wire = tag >> 3, tag & 7
        if number == 0:
            raise WireError(f"field number 0 at byte {pos}")
        if wire == VARINT:
            value, pos = read_varint(buf, pos, end)
        elif wire in (FIXED32, FIXED64):
            size = 4 if wire == FIXED32 else 8
            if pos + size > end:
                raise WireError(f"field {number}: a {size * 8}-bit value runs past the end")
            value = int.from_bytes(bytes(buf[pos:pos + size]), "little")
            pos += size
        elif wire == BYTES:
            size, pos = read_varint(buf, pos, end)
            if pos + size > end:
                raise WireError(f"field {number}: {size} bytes announced, "
                                f"{end - pos} left")
            value = bytes(buf[pos:pos + size])
            pos += size
        else:
            raise WireError(f"field {number}: wire type {wire} is not supported")
        out.setdefault(number, []).append(value)
    return out


def last(fields, number, default=0):
    """The value of a singular field (the last one wins, as in protobuf), or ``default``."""
    values = fields.get(number)
    return values[-1] if values else default


__all__ = ["WireError", "varint", "read_varint", "signed64", "field", "parse", "last",
           "VARINT", "FIXED64", "BYTES", "FIXED32"]
