"""tf.summary.image, audio and text (issue 15, part 2): PNG and WAV encoded as TF1 encodes them,
text as TensorBoard's text plugin reads it, written into event files and read back with the
independent decoder of test_summary (PNG decoded here with zlib, WAV with Python's ``wave``)."""
import io
import struct
import wave
import zlib

import numpy as np
import pytest

import graphc as tf
from graphc.errors import DTypeError, ShapeError

from tests.api.test_summary import decode, read_events

BACKENDS = ("numpy", "llvm")


def decode_png(data):
    """(height, width, colour type, uint8 pixels) of an 8-bit PNG with unfiltered rows."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        (crc,) = struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF, kind
        chunks[kind] = chunks.get(kind, b"") + body
        pos += 12 + n
    w, h, depth, colour = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    channels = {0: 1, 2: 3, 6: 4}[colour]
    assert depth == 8 and b"IEND" in chunks
    rows = np.frombuffer(zlib.decompress(chunks[b"IDAT"]), np.uint8).reshape(h, 1 + w * channels)
    assert not rows[:, 0].any()   # filter type 0
    return h, w, colour, rows[:, 1:].reshape(h, w, channels)


def tf1_image_bytes(image):
    """TF1's float -> uint8 mapping, per image (the reference)."""
    lo, hi = image.min(), image.max()
    if lo < 0:
        scale, offset = 127.0 / max(-lo, hi), 128.0
    else:
        scale, offset = 255.0 / hi, 0.0
    return np.clip(image * scale + offset, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("backend", BACKENDS)
def test_image_summaries_are_pngs_tensorboard_reads(backend, tmp_path, rng):
    x = tf.placeholder(tf.float32, [5, 4, 3, 3])
    gray = tf.placeholder(tf.uint8, [2, 2, 5, 1])
    with tf.name_scope("inputs"):
        tf.summary.image("rgb", x * 2.0)                   # three of five, signed
        tf.summary.image("digit", gray, max_outputs=1)      # one: tag without an index
    merged = tf.summary.merge_all()
    xv = rng.standard_normal((5, 4, 3, 3)).astype(np.float32)
    gv = rng.integers(0, 256, (2, 2, 5, 1)).astype(np.uint8)
    with tf.Session(backend=backend) as sess, tf.summary.FileWriter(str(tmp_path)) as writer:
        summ = sess.run(merged, {x: xv, gray: gv})
        writer.add_summary(summ, 3)
    assert summ.tags == ["inputs/rgb/image/0", "inputs/rgb/image/1", "inputs/rgb/image/2",
                         "inputs/digit/image"]
    values = read_events(str(tmp_path))[1]["values"]
    for k in range(3):
        img = decode(values[f"inputs/rgb/image/{k}"][4][0])
        assert (img[1][0], img[2][0], img[3][0]) == (4, 3, 3)
        h, w, colour, pixels = decode_png(img[4][0])
        assert (h, w, colour) == (4, 3, 2)
        np.testing.assert_array_equal(pixels, tf1_image_bytes(xv[k].astype(np.float64) * 2))
    h, w, colour, pixels = decode_png(decode(values["inputs/digit/image"][4][0])[4][0])
    assert (h, w, colour) == (2, 5, 0)
    np.testing.assert_array_equal(pixels, gv[0])


def test_image_mapping_of_positive_and_non_finite_values():
    x = tf.placeholder(tf.float64, [1, 1, 4, 4])
    op = tf.summary.image("rgba", x)
    xv = np.array([[[[0.0, 0.5, 1.0, 2.0], [2.0, 1.0, 0.5, 0.0], [np.nan, 1.0, 1.0, 1.0],
                     [0.25, 0.25, np.inf, 0.25]]]])
    with tf.Session() as sess:
        summ = sess.run(op, {x: xv})
    pixels = decode_png(summ["rgba/image/0"].encoded_image_string)[3][0]
    np.testing.assert_array_equal(pixels[:2], [[0, 63, 127, 255], [255, 127, 63, 0]])
    np.testing.assert_array_equal(pixels[2:], [[255, 0, 0, 255], [255, 0, 0, 255]])  # red


@pytest.mark.parametrize("backend", BACKENDS)
def test_audio_summaries_are_wav_files(backend, tmp_path):
    waves = tf.placeholder(tf.float32, [2, 50, 2])
    mono = tf.placeholder(tf.float64, [3, 40])
    tf.summary.audio("stereo", waves, sample_rate=8000)
    tf.summary.audio("mono", mono * 1.0, 22050.0, max_outputs=1)
    t = np.arange(50) / 8000.0
    wv = np.stack([np.stack([np.sin(2 * np.pi * 440 * t), 1.5 * np.cos(t)], 1)] * 2)
    mv = np.linspace(-1, 1, 120).reshape(3, 40)
    with tf.Session(backend=backend) as sess, tf.summary.FileWriter(str(tmp_path)) as writer:
        writer.add_summary(sess.run(tf.summary.merge_all(), {waves: wv, mono: mv}))
    values = read_events(str(tmp_path))[1]["values"]
    assert sorted(values) == ["mono/audio", "stereo/audio/0", "stereo/audio/1"]
    audio = decode(values["stereo/audio/1"][6][0])
    assert struct.unpack("<f", audio[1][0])[0] == 8000.0 and audio[2][0] == 2
    assert audio[3][0] == 50 and audio[5][0] == b"audio/wav"
    with wave.open(io.BytesIO(audio[4][0])) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (2, 2, 8000)
        got = np.frombuffer(wav.readframes(50), "<i2").reshape(50, 2)
    want = np.clip(np.round(wv[1].astype(np.float32).astype(np.float64) * 32768), -32768, 32767)
    np.testing.assert_array_equal(got, want)
    with wave.open(io.BytesIO(decode(values["mono/audio"][6][0])[4][0])) as wav:
        assert (wav.getnchannels(), wav.getframerate(), wav.getnframes()) == (1, 22050, 40)
        got = np.frombuffer(wav.readframes(40), "<i2")
    np.testing.assert_array_equal(got, np.clip(np.round(mv[0] * 32768), -32768, 32767))


def test_text_summaries_for_the_text_plugin(tmp_path):
    tf.summary.text("config", "lr = 0.1, **batch** = 32")
    tf.summary.text("notes", ["first", "second"])
    tf.summary.scalar("loss", tf.constant(2.5))
    merged = tf.summary.merge_all()
    with tf.Session() as sess, tf.summary.FileWriter(str(tmp_path)) as writer:
        summ = sess.run(merged)
        writer.add_summary(summ, 1)
    assert summ.tags == ["config", "notes", "loss"] and summ["loss"] == 2.5
    values = read_events(str(tmp_path))[1]["values"]
    tensor = decode(values["notes"][8][0])
    assert tensor[1] == [7] and tensor[8] == [b"first", b"second"]     # DT_STRING
    assert decode(decode(tensor[2][0])[2][0]) == {1: [2]}                # shape [2]
    plugin = decode(decode(values["notes"][9][0])[1][0])
    assert plugin[1] == [b"text"]
    assert decode(values["config"][8][0])[8] == [b"lr = 0.1, **batch** = 32"]
    with tf.Session() as sess:                                            # text alone
        assert sess.run(tf.summary.merge([tf.summary.text("t", "x")]))["t"] == "x"


def test_bad_media_summaries_are_refused():
    with pytest.raises(ShapeError, match=r"image summary 'img': expects \[batch, height, width, "
                                         r"channels\] with 1, 3 or 4 channels"):
        tf.summary.image("img", tf.zeros([2, 4, 4, 2]))
    with pytest.raises(DTypeError, match=r"audio summary 'a': expects float samples"):
        tf.summary.audio("a", tf.zeros([2, 8], tf.int32), 8000)
    with pytest.raises(ShapeError, match=r"audio summary 'b': expects \[batch, frames\]"):
        tf.summary.audio("b", tf.zeros([8]), 8000)
    with pytest.raises(DTypeError, match=r"text summary 'c': graphc tensors are numeric"):
        tf.summary.text("c", tf.constant(1.0))
