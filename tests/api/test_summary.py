"""tf.summary and FileWriter: TF1 scripts write TensorBoard event files.

The files are read back with a decoder written here from the format's description (TFRecord
framing with masked CRC-32C, protobuf wire format, the Event/Summary/HistogramProto field
numbers), independent of graphc's encoder; with ``tensorboard`` installed they are also read by
TensorBoard's own loader.
"""
import os
import pathlib
import struct

import numpy as np
import pytest

import graphc as tf
from graphc.errors import DTypeError, GraphcError, GraphError, NumericsError, ShapeError
from graphc.summary.proto import crc32c, default_bucket_limits


# -- an independent reader ---------------------------------------------------------------------
def _mask(crc):
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def read_records(path):
    """The TFRecords of ``path``, every length and data CRC checked."""
    data, pos, out = pathlib.Path(path).read_bytes(), 0, []
    while pos < len(data):
        header = data[pos:pos + 8]
        (length,), (len_crc,) = struct.unpack("<Q", header), struct.unpack(
            "<I", data[pos + 8:pos + 12])
        assert len_crc == _mask(crc32c(header)), "length CRC"
        body = data[pos + 12:pos + 12 + length]
        (body_crc,) = struct.unpack("<I", data[pos + 12 + length:pos + 16 + length])
        assert len(body) == length and body_crc == _mask(crc32c(body)), "data CRC"
        out.append(body)
        pos += 16 + length
    assert pos == len(data)
    return out


def _varint(buf, pos):
    shift = result = 0
    while True:
        b = buf[pos]
        result |= (b & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if not b & 0x80:
            return result, pos


def decode(buf):
    """Protobuf wire format -> {field number: [raw values]} (varints as ints, fixed64 and
    fixed32 as bytes, length-delimited as bytes)."""
    fields, pos = {}, 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            assert wire == 2, f"wire type {wire}"
            n, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + n], pos + n
        fields.setdefault(field, []).append(value)
    assert pos == len(buf)
    return fields


def _double(raw):
    return struct.unpack("<d", raw)[0]


def decode_event(body):
    """Event -> dict(wall_time, step, file_version | graph | values {tag: float or histo})."""
    f = decode(body)
    ev = {"wall_time": _double(f[1][0]), "step": f.get(2, [0])[0]}
    if 3 in f:
        ev["file_version"] = f[3][0].decode()
    if 4 in f:
        ev["graph"] = [decode(n) for n in decode(f[4][0]).get(1, [])]
    if 5 in f:
        ev["values"] = {}
        for raw in decode(f[5][0]).get(1, []):
            v = decode(raw)
            tag = v[1][0].decode()
            if 2 in v:
                ev["values"][tag] = struct.unpack("<f", v[2][0])[0]
            elif 5 not in v:   # an image, audio or text value: its raw fields
                ev["values"][tag] = v
            else:
                h = decode(v[5][0])
                histo = {name: _double(h[i][0]) if i in h else 0.0 for i, name in
                         enumerate(("min", "max", "num", "sum", "sum_squares"), 1)}
                histo["limits"] = np.frombuffer(h[6][0], "<f8")
                histo["counts"] = np.frombuffer(h[7][0], "<f8")
                ev["values"][tag] = histo
    return ev


def read_events(logdir):
    files = [n for n in os.listdir(logdir) if n.startswith("events.out.tfevents.")]
    assert len(files) == 1, files
    return [decode_event(r) for r in read_records(os.path.join(logdir, files[0]))]


# -- CRC-32C -----------------------------------------------------------------------------------
@pytest.mark.parametrize("data,crc", [
    (b"123456789", 0xE3069283),
    (b"", 0x00000000),
    (bytes(32), 0x8A9136AA),                 # RFC 3720 (iSCSI) B.4 test vectors
    (b"\xff" * 32, 0x62A8AB43),
    (bytes(range(32)), 0x46DD794E),
    (bytes(range(31, -1, -1)), 0x113FDB5C),
])
def test_crc32c_known_vectors(data, crc):
    assert crc32c(data) == crc


# -- a TF1 script, unchanged -------------------------------------------------------------------
def test_tf1_script_writes_scalars_and_histograms_tensorboard_reads(tmp_path, rng):
    logdir = str(tmp_path / "logs")
    xs = rng.normal(size=(64, 4)).astype(np.float32)
    ys = xs @ np.array([[1.0], [-2.0], [0.5], [3.0]], np.float32)
    # -- the script, as written for TensorFlow 1.x --
    x = tf.placeholder(tf.float32, [None, 4], name="x")
    y = tf.placeholder(tf.float32, [None, 1], name="y")
    w = tf.Variable(tf.zeros([4, 1]), name="weights")
    loss = tf.reduce_mean(tf.square(tf.matmul(x, w) - y))
    train_op = tf.train.GradientDescentOptimizer(0.05).minimize(loss)
    tf.summary.scalar("loss", loss)
    tf.summary.histogram("weights_hist", w)
    merged = tf.summary.merge_all()
    losses, weights = [], []
    with tf.Session() as sess:
        writer = tf.summary.FileWriter(logdir, sess.graph)
        sess.run(tf.global_variables_initializer())
        for step in range(3):
            weights.append(sess.run(w))
            summ, l, _ = sess.run([merged, loss, train_op], feed_dict={x: xs, y: ys})
            writer.add_summary(summ, step)
            losses.append(l)
        writer.flush()
        writer.close()
    # -- what TensorBoard would read --
    events = read_events(logdir)
    assert events[0]["file_version"] == "brain.Event:2"
    graph_nodes = {n[1][0].decode(): n[2][0].decode() for n in events[1]["graph"]}
    assert graph_nodes["x"] == "placeholder" and graph_nodes["weights"] == "variable"
    summaries = [e for e in events if "values" in e]
    assert [e["step"] for e in summaries] == [0, 1, 2]
    assert all(e["wall_time"] > 1.5e9 for e in events)
    assert losses[0] > losses[1] > losses[2]
    for e, l, wv in zip(summaries, losses, weights):
        assert set(e["values"]) == {"loss", "weights_hist"}
        assert e["values"]["loss"] == np.float32(l)
        h = e["values"]["weights_hist"]
        assert h["num"] == 4 and h["counts"].sum() == 4
        assert h["min"] == pytest.approx(wv.min()) and h["max"] == pytest.approx(wv.max())
        assert h["sum"] == pytest.approx(wv.sum(), abs=1e-6)
        assert h["sum_squares"] == pytest.approx((wv.astype(np.float64) ** 2).sum(), abs=1e-6)


def test_histogram_buckets_count_the_values_between_limits(rng):
    values = np.concatenate([rng.normal(0, 3, 500), [0.0, 0.0, -1e-13, 5e18, -7.0]])
    w = tf.constant(values)
    h = tf.summary.histogram("h", w)
    with tf.Session() as sess:
        histo = sess.run(h)["h"]
    limits, counts = np.array(histo.bucket_limit), np.array(histo.bucket)
    assert np.all(np.diff(limits) > 0) and counts.sum() == len(values)
    lower = np.concatenate([[-np.inf], limits[:-1]])
    for lo, hi, c in zip(lower, limits, counts):  # bucket i: [limit[i-1], limit[i])
        assert c == np.count_nonzero((values >= lo) & (values < hi))
    assert (histo.min, histo.max, histo.num) == (values.min(), values.max(), len(values))
    full = default_bucket_limits()
    assert len(full) == 1551 and full[775] == 0.0 and np.array_equal(full, -full[::-1])
    assert full[776] == 1e-12 and full[777] == pytest.approx(1.1e-12, rel=1e-15)


def test_fetched_in_nests_with_eval_and_global_step_arrays(tmp_path):
    a = tf.constant(2.0, name="a")
    s = tf.summary.scalar("a", a * 3.0)
    step = tf.Variable(7, dtype=tf.int64, name="step")
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        out = sess.run({"summary": s, "pair": (a, [s])})
        assert out["summary"]["a_1"] == 6.0 and out["pair"][0] == 2.0
        assert out["pair"][1][0].tags == ["a_1"]  # 'a' names the constant, as in TF1
        assert s.eval()["a_1"] == 6.0
        with tf.summary.FileWriter(str(tmp_path)) as writer:
            writer.add_summary(sess.run(s), sess.run(step))
            writer.add_summary(bytes(sess.run(s)), global_step=np.int64(-3))
    step_fn = tf.compile([s, a])  # gc.compile flattens fetches the same way
    assert step_fn()[0]["a_1"] == 6.0
    events = read_events(str(tmp_path))
    assert [e["step"] for e in events[1:]] == [7, 2 ** 64 - 3]  # int64 -3 as a raw varint
    assert events[2]["values"] == {"a_1": 6.0}


# -- merge, collections, tags ------------------------------------------------------------------
def test_merge_explicit_lists_and_collections():
    x = tf.constant([1.0, 2.0, 3.0], name="x")
    s1 = tf.summary.scalar("mean", tf.reduce_mean(x))
    s2 = tf.summary.histogram("values", x, collections=["eval"])
    s3 = tf.summary.scalar("max", tf.reduce_max(x), collections=[])
    merged = tf.summary.merge([s1, s3])
    assert merged.tags == ["mean", "max"]
    assert tf.summary.merge_all().tags == ["mean"]
    assert tf.summary.merge_all("eval").tags == ["values"]
    assert tf.summary.merge_all("nothing_here") is None
    both = tf.summary.merge([merged, s2])
    with tf.Session() as sess:
        got = sess.run(both)
    assert got.tags == ["mean", "max", "values"]
    assert (got["mean"], got["max"]) == (2.0, 3.0) and got["values"].num == 3
    with pytest.raises(GraphError, match=r"duplicate tag 'mean'"):
        tf.summary.merge([s1, merged])
    with pytest.raises(TypeError, match=r"expects summaries.*got Node"):
        tf.summary.merge([s1, x])


def test_tags_follow_name_scopes_families_and_uniqueness():
    v = tf.constant(1.0, name="v")
    with tf.name_scope("train"):
        with tf.name_scope("inner"):
            a = tf.summary.scalar("loss", v)
        b = tf.summary.scalar("loss", v)
        c = tf.summary.scalar("loss", v)
        d = tf.summary.scalar("acc", v, family="metrics")
    e = tf.summary.scalar("bad name:0", v)
    f = tf.summary.histogram("/lead", v)
    assert [s.tags[0] for s in (a, b, c, d, e, f)] == [
        "train/inner/loss", "train/loss", "train/loss_1", "metrics/train/metrics/acc",
        "bad_name_0", "lead"]
    assert tf.get_collection(tf.GraphKeys.SUMMARIES) == [a, b, c, d, e, f]


def test_manual_summary_values_are_written(tmp_path):
    summ = tf.Summary(value=[tf.Summary.Value(tag="accuracy", simple_value=0.0),
                             tf.Summary.Value(tag="h", histo=tf.HistogramProto.from_values([]))])
    with tf.summary.FileWriter(str(tmp_path), filename_suffix=".eval") as writer:
        writer.add_summary(summ, 5)
    (name,) = os.listdir(tmp_path)
    assert name.endswith(".eval")
    (ev,) = [e for e in read_events(str(tmp_path)) if "values" in e]
    assert ev["values"]["accuracy"] == 0.0  # a oneof zero is still present
    assert ev["values"]["h"]["num"] == 0 and list(ev["values"]["h"]["counts"]) == [0.0]


def test_writer_files_reopen_and_closed_writer(tmp_path):
    first = tf.summary.FileWriter(str(tmp_path))
    second = tf.summary.FileWriter(str(tmp_path))  # the same second: a file of its own
    assert first.path != second.path and first.get_logdir() == str(tmp_path)
    first.close()
    with pytest.raises(GraphcError, match=r"is closed(.|\n)*reopen"):
        first.add_summary(tf.Summary())
    first.reopen()
    first.add_summary(tf.Summary(), 1)
    first.close()
    second.close()
    assert len(os.listdir(tmp_path)) == 3
    for name in os.listdir(tmp_path):
        assert decode_event(read_records(tmp_path / name)[0])["file_version"] == \
            "brain.Event:2"
    with pytest.raises(TypeError, match=r"expects the value Session.run returns"):
        tf.summary.FileWriter(str(tmp_path / "x")).add_summary(3.0)


# -- bad input ---------------------------------------------------------------------------------
def test_non_scalar_to_scalar_names_node_and_line():
    x = tf.placeholder(tf.float32, [None, 3], name="features")
    with pytest.raises(ShapeError, match=r"scalar summary 'feat': expects a scalar tensor, "
                       r"found placeholder 'features' of type f32\[\?,3\]"
                       r"(.|\n)*test_summary.py:\d+ +tf.summary.scalar\('feat', x\)"
                       r"(.|\n)*reduce_mean"):
        tf.summary.scalar('feat', x)


def test_bad_values_are_refused():
    flag = tf.constant(True, name="flag")
    with pytest.raises(DTypeError, match=r"histogram summary 'f': const 'flag' is a bool"):
        tf.summary.histogram("f", flag)
    with pytest.raises(GraphError, match=r"op without a value"):
        tf.summary.scalar("g", tf.no_op(name="noop"))
    bad = tf.summary.histogram("nan", tf.log(tf.constant([1.0, -1.0])))
    with tf.Session() as sess:
        with pytest.raises(NumericsError, match=r"histogram summary 'nan': .*NaN or Inf"):
            sess.run(bad)
    with pytest.raises(GraphcError, match=r"gc.summary.tensor_summary \('t'\): graphc writes "
                                          r"scalar, histogram, image, audio and text"):
        tf.summary.tensor_summary("t", tf.zeros([1, 2, 2, 3]))


def test_tensorboard_reads_the_file_when_installed(tmp_path):
    loader = pytest.importorskip("tensorboard.backend.event_processing.event_file_loader")
    tf.summary.scalar("loss", tf.constant(1.5))
    merged = tf.summary.merge_all()
    with tf.Session() as sess, tf.summary.FileWriter(str(tmp_path)) as writer:
        writer.add_summary(sess.run(merged), 4)
    (name,) = os.listdir(tmp_path)
    events = list(loader.EventFileLoader(str(tmp_path / name)).Load())
    assert events[0].file_version == "brain.Event:2" and events[-1].step == 4
