"""TensorBoard's records, written by hand: protobuf wire encoding, the Summary and Event
messages, default histogram buckets, and TFRecord framing with masked CRC-32C.

graphc has no protobuf dependency: the few messages an event file needs are encoded here
(field numbers from TensorFlow's ``summary.proto``, ``event.proto`` and ``graph.proto``).
Proto3 leaves scalar fields at zero out of the encoding; fields of a ``oneof`` (an event's
``summary``, a value's ``simple_value``) are written even when zero, because being present is
what selects them.
"""
import struct
import sys

import numpy as np

# -- CRC-32C (Castagnoli), as TFRecord frames use it --------------------------------------------
_CASTAGNOLI = 0x82F63B78  # the reflected polynomial 0x1EDC6F41


def _crc_table():
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ _CASTAGNOLI if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_TABLE = _crc_table()


def crc32c(data):
    """CRC-32C of ``data`` (bytes).

    Example:
        >>> hex(crc32c(b"123456789"))
        '0xe3069283'
    """
    crc = 0xFFFFFFFF
    table = _TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data):
    """TFRecord's masked CRC: rotated right by 15 bits plus a constant, so that a CRC stored
    inside checksummed data does not checksum to a fixed value."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def tfrecord(data):
    """One TFRecord: uint64 length, masked CRC of the length, the data, masked CRC of the data
    (all little-endian)."""
    length = struct.pack("<Q", len(data))
    return (length + struct.pack("<I", masked_crc32c(length)) + data
            + struct.pack("<I", masked_crc32c(data)))


# -- protobuf wire format -----------------------------------------------------------------------
_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5


def _varint(n):
    n &= (1 << 64) - 1  # negative int64s take ten bytes (two's complement)
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _key(field, wire):
    return _varint(field << 3 | wire)


def field_bytes(field, data):
    """A length-delimited field (string, bytes or an embedded message)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    return _key(field, _BYTES) + _varint(len(data)) + data


def field_double(field, x):
    return _key(field, _FIXED64) + struct.pack("<d", x)


def field_float(field, x):
    return _key(field, _FIXED32) + struct.pack("<f", x)


def field_int(field, n):
    return _key(field, _VARINT) + _varint(int(n))


def field_packed_doubles(field, xs):
    return field_bytes(field, np.asarray(xs, "<f8").tobytes())


# -- histograms (TensorFlow's default buckets) ---------------------------------------------------
_LIMITS = None


def default_bucket_limits():
    """The right edges TensorFlow's histogram summaries use: +-1e-12 growing by 10% per bucket
    up to 1e20, then +-DBL_MAX, with 0 between the negative and positive halves."""
    global _LIMITS
    if _LIMITS is None:
        pos, v = [], 1.0e-12
        while v < 1.0e20:  # repeated multiplication, so the edges are the same doubles
            pos.append(v)
            v *= 1.1
        pos.append(sys.float_info.max)
        _LIMITS = np.array([-x for x in reversed(pos)] + [0.0] + pos)
    return _LIMITS


class HistogramProto:
    """A histogram as TensorBoard stores it (TF1's ``tf.HistogramProto``).

    Bucket ``i`` counts values in ``[bucket_limit[i-1], bucket_limit[i])``.
    """

    def __init__(self, min=0.0, max=0.0, num=0.0, sum=0.0, sum_squares=0.0,  # noqa: A002
                 bucket_limit=(), bucket=()):
        self.min, self.max, self.num = float(min), float(max), float(num)
        self.sum, self.sum_squares = float(sum), float(sum_squares)
        self.bucket_limit = [float(b) for b in bucket_limit]
        self.bucket = [float(c) for c in bucket]

    @classmethod
    def from_values(cls, values):
        """The histogram of ``values`` (any shape, finite) over the default buckets, runs of
        empty buckets collapsed into their last one, as TensorFlow encodes it.

        Example:
            >>> h = HistogramProto.from_values([0.5, 0.5, 2.0])
            >>> h.num, h.max, sum(h.bucket)
            (3.0, 2.0, 3.0)
        """
        x = np.asarray(values, np.float64).ravel()
        limits = default_bucket_limits()
        counts = np.bincount(np.searchsorted(limits, x, side="right"), minlength=len(limits))
        keep = (counts > 0) | np.append(counts[1:] > 0, True)  # nonempty, or ends an empty run
        if not x.size:  # TensorFlow's cleared histogram: min above max
            return cls(limits[-1], -limits[-1], 0, 0, 0, limits[keep], counts[keep])
        return cls(x.min(), x.max(), x.size, x.sum(), np.dot(x, x), limits[keep],
                   counts[keep].astype(np.float64))

    def SerializeToString(self):  # noqa: N802  (protobuf's name)
        out = b"".join(field_double(i, v) for i, v in enumerate(
            (self.min, self.max, self.num, self.sum, self.sum_squares), 1) if v != 0.0)
        if self.bucket_limit:
            out += field_packed_doubles(6, self.bucket_limit)
            out += field_packed_doubles(7, self.bucket)
        return out

    def __repr__(self):
        return (f"HistogramProto(num={self.num:g}, min={self.min:g}, max={self.max:g}, "
                f"buckets={len(self.bucket)})")


class Summary:
    """A set of tagged values (TF1's ``tf.Summary``): what ``Session.run`` returns for a
    summary op, and what ``FileWriter.add_summary`` writes.

    Example:
        >>> s = Summary(value=[Summary.Value(tag="accuracy", simple_value=0.93)])
        >>> writer.add_summary(s, step)
    """

    class Image:
        """An encoded image (``summary.proto``'s Summary.Image): PNG bytes and their size;
        colorspace 1 grayscale, 3 RGB, 4 RGBA."""

        def __init__(self, height=0, width=0, colorspace=0, encoded_image_string=b""):
            self.height, self.width, self.colorspace = height, width, colorspace
            self.encoded_image_string = encoded_image_string

        def SerializeToString(self):  # noqa: N802
            return (field_int(1, self.height) + field_int(2, self.width)
                    + field_int(3, self.colorspace) + field_bytes(4, self.encoded_image_string))

        def __repr__(self):
            return f"Image({self.height}x{self.width}x{self.colorspace})"

    class Audio:
        """An encoded sound (Summary.Audio): WAV bytes, sample rate, channels, frames."""

        def __init__(self, sample_rate=0.0, num_channels=0, length_frames=0,
                     encoded_audio_string=b"", content_type="audio/wav"):
            self.sample_rate, self.num_channels = float(sample_rate), num_channels
            self.length_frames, self.content_type = length_frames, content_type
            self.encoded_audio_string = encoded_audio_string

        def SerializeToString(self):  # noqa: N802
            return (field_float(1, self.sample_rate) + field_int(2, self.num_channels)
                    + field_int(3, self.length_frames)
                    + field_bytes(4, self.encoded_audio_string)
                    + field_bytes(5, self.content_type))

        def __repr__(self):
            return (f"Audio({self.length_frames} frames x {self.num_channels} at "
                    f"{self.sample_rate:g} Hz)")

    class Value:
        """One tagged value: ``simple_value`` (a float), ``histo`` (a HistogramProto),
        ``image``, ``audio``, or ``text`` (strings, written as TensorBoard's text plugin
        reads them: a string tensor with the plugin's metadata)."""

        def __init__(self, tag="", simple_value=None, histo=None, node_name="", image=None,
                     audio=None, text=None):
            self.tag, self.node_name = tag, node_name
            self.simple_value = None if simple_value is None else float(simple_value)
            self.histo, self.image, self.audio, self.text = histo, image, audio, text

        @property
        def content(self):
            """What the value holds: the float, HistogramProto, Image, Audio or text."""
            for v in (self.simple_value, self.histo, self.image, self.audio, self.text):
                if v is not None:
                    return v
            return None

        def SerializeToString(self):  # noqa: N802
            out = field_bytes(1, self.tag)
            if self.simple_value is not None:
                out += field_float(2, self.simple_value)
            if self.image is not None:
                out += field_bytes(4, self.image.SerializeToString())
            if self.histo is not None:
                out += field_bytes(5, self.histo.SerializeToString())
            if self.audio is not None:
                out += field_bytes(6, self.audio.SerializeToString())
            if self.node_name:
                out += field_bytes(7, self.node_name)
            if self.text is not None:
                out += field_bytes(8, string_tensor(self.text))
                out += field_bytes(9, field_bytes(1, field_bytes(1, "text")))
            return out

        def __repr__(self):
            return f"Value({self.tag!r}: {self.content!r})"

    def __init__(self, value=()):
        self.value = list(value)

    def SerializeToString(self):  # noqa: N802
        return b"".join(field_bytes(1, v.SerializeToString()) for v in self.value)

    def __bytes__(self):
        return self.SerializeToString()

    def __getitem__(self, tag):
        """The value tagged ``tag``: the float of a scalar, the HistogramProto of a histogram,
        the Image, Audio or text array of the others."""
        for v in self.value:
            if v.tag == tag:
                return v.content
        raise KeyError(f"no value tagged {tag!r} (tags: {self.tags})")

    @property
    def tags(self):
        return [v.tag for v in self.value]

    def __repr__(self):
        return f"Summary({self.value!r})"


def string_tensor(strings):
    """An encoded TensorProto of dtype DT_STRING (7) holding ``strings`` (an array of str)
    with their shape: what TensorBoard's text plugin reads."""
    strings = np.asarray(strings, dtype=object)
    shape = b"".join(field_bytes(2, field_int(1, d)) for d in strings.shape)
    out = field_int(1, 7) + field_bytes(2, shape)
    return out + b"".join(field_bytes(8, str(v).encode("utf-8")) for v in strings.flat)


# -- events --------------------------------------------------------------------------------------
def event(wall_time, step=0, file_version=None, summary=None, graph_def=None):
    """An encoded ``Event``: wall_time (1), step (2), then one of file_version (3),
    graph_def (4) or summary (5); ``summary`` is a Summary or its encoding (bytes)."""
    out = field_double(1, wall_time)
    if step:
        out += field_int(2, step)
    if file_version is not None:
        out += field_bytes(3, file_version)
    if graph_def is not None:
        out += field_bytes(4, graph_def)
    if summary is not None:
        out += field_bytes(5, summary if isinstance(summary, (bytes, bytearray))
                           else summary.SerializeToString())
    return out


def graph_def(nodes):
    """An encoded ``GraphDef`` of (name, op, input names) triples: enough for TensorBoard's
    graph view to draw the nodes and their edges (no attributes)."""
    out = b""
    for name, op, inputs in nodes:
        node = field_bytes(1, name) + field_bytes(2, op)
        node += b"".join(field_bytes(3, i) for i in inputs)
        out += field_bytes(1, node)
    return out + field_bytes(4, field_int(1, 1))  # versions { producer: 1 }

