"""TensorFlow's checkpoints (V2 bundles) in graphc's Saver: a checkpoint written by real
TensorFlow (tests/fixtures/tf_checkpoints, made by its make_fixtures.py) restored by name on
both backends, graphc's own bundles read back and byte-identical to TensorFlow's, TF1's reader
functions on both formats, the ``.meta`` that saves write, and every kind of damaged bundle
refused with an ArtifactError naming the file."""
import json
import os
import pathlib
import shutil
import struct
import warnings

import numpy as np
import pytest

import graphc as gc
from graphc.runtime import durable
from graphc.train import meta_graph, proto_wire, sstable, tf_bundle
from graphc.train.crc32c import _raw, crc32c, mask, unmask
from graphc.train.saver import tf1_name

ArtifactError = gc.errors.ArtifactError
FIXTURES = os.path.join(os.path.dirname(__file__), os.pardir, "fixtures", "tf_checkpoints")
FIXTURE = os.path.join(FIXTURES, "tf1_saver")
PREFIX = os.path.join(FIXTURE, "model.ckpt-1")


def expected():
    """{name: value} TensorFlow read back from the fixture (make_fixtures.py)."""
    with np.load(os.path.join(FIXTURES, "tf1_saver_expected.npz")) as f:
        out = {k: f[k] for k in f.files if k not in ("long_names", "long_values")}
        out.update(zip((n.decode() for n in f["long_names"]), f["long_values"]))
    return out


def graph_like_fixture(values):
    """A graphc graph with variables of the fixture's names, shapes and dtypes (zeros), and a
    dense layer's output that uses two of them."""
    g = gc.Graph()
    with g.as_default():
        made = {n: gc.Variable(np.zeros_like(a), name=n) for n, a in values.items()}
        x = gc.placeholder(gc.float32, [None, 3], name="x")
        out = gc.matmul(x, made["dense/kernel"]) + made["dense/bias"]
        init = gc.global_variables_initializer()
    assert sorted(v.op.name for v in made.values()) == sorted(values)  # the names are kept
    return g, made, x, out, init


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_restores_tensorflow_checkpoint_by_name(backend):
    values = expected()
    assert {"dense/kernel/Adam", "dense/kernel/Adam_1", "beta1_power", "global_step",
            "stats/flags", "stats/big_counts"} <= set(values)
    g, made, x, out, init = graph_like_fixture(values)
    sess = gc.Session(graph=g, backend=backend)
    sess.run(init)
    gc.train.Saver().restore(sess, PREFIX)
    for name, var in made.items():
        got = sess.run(var)
        assert got.dtype == values[name].dtype and got.shape == values[name].shape, name
        np.testing.assert_array_equal(got, values[name], err_msg=name)
    assert values["global_step"] == 1 and values["global_step"].dtype == np.int64
    feed = np.array([[1.0, -2.0, 0.5]], np.float32)
    np.testing.assert_allclose(
        sess.run(out, {x: feed}),
        feed @ values["dense/kernel"] + values["dense/bias"], rtol=1e-6)


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_graphc_adam_resumes_from_tensorflows_adam(backend):
    """graphc's Adam variables are found under TF1's names (dense/kernel/Adam, ..._1,
    beta1_power); the checkpoint's other tensors are left alone."""
    values = expected()
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, [None, 3], name="x")
        with gc.variable_scope("dense"):
            k = gc.get_variable("kernel", [3, 2])
            b = gc.get_variable("bias", [2], initializer=gc.zeros_initializer())
        loss = gc.reduce_mean(gc.square(gc.matmul(x, k) + b))
        opt = gc.train.AdamOptimizer(0.1)
        train = opt.minimize(loss, global_step=gc.train.get_or_create_global_step())
        init = gc.global_variables_initializer()
    sess = gc.Session(graph=g, backend=backend)
    sess.run(init)
    gc.train.Saver().restore(sess, PREFIX)
    m, v = opt.get_slot(k, "m"), opt.get_slot(k, "v")
    pairs = [(k, "dense/kernel"), (b, "dense/bias"), (m, "dense/kernel/Adam"),
             (v, "dense/kernel/Adam_1"), (opt.get_slot(b, "v"), "dense/bias/Adam_1")]
    with g.as_default():
        pairs += [(gc.train.get_global_step(), "global_step")]
    for var, name in pairs:
        np.testing.assert_array_equal(sess.run(var), values[name], err_msg=name)
    powers = {n.op.name: a for n, a in sess.values.items() if n.op.name.endswith("_power")}
    assert powers == {"Adam/beta1_power": values["beta1_power"],
                      "Adam/beta2_power": values["beta2_power"]}
    sess.run(train, {x: np.ones((1, 3), np.float32)})  # and it trains on from there
    assert sess.run(gc.train.get_global_step(g)) == 2


def test_tensorflow_folder_latest_checkpoint_state_and_exists(tmp_path):
    assert gc.train.latest_checkpoint(FIXTURE) == PREFIX
    state = gc.train.get_checkpoint_state(FIXTURE)
    assert state.model_checkpoint_path == PREFIX
    assert state.all_model_checkpoint_paths == [PREFIX]
    assert gc.train.checkpoint_exists(PREFIX)
    assert not gc.train.checkpoint_exists(os.path.join(FIXTURE, "model.ckpt-2"))
    # a copy whose files all have the same time: TensorFlow's state file decides
    folder = tmp_path / "copy"
    shutil.copytree(FIXTURE, folder)
    g = gc.Graph()
    with g.as_default():
        gc.Variable(np.ones(2, np.float32), name="v")
        init = gc.global_variables_initializer()
    sess = gc.Session(graph=g)
    sess.run(init)
    older = gc.train.Saver().save(sess, folder / "graphc_model", write_meta_graph=False)
    for f in os.listdir(folder):
        os.utime(folder / f, ns=(10**18, 10**18))
    assert gc.train.latest_checkpoint(str(folder)) == str(folder / "model.ckpt-1")
    os.utime(older + ".npz", ns=(2 * 10**18, 2 * 10**18))  # written after it: the newest
    assert gc.train.latest_checkpoint(str(folder)) == older
    state = gc.train.get_checkpoint_state(str(folder))
    assert state.model_checkpoint_path == older
    assert sorted(state.all_model_checkpoint_paths) == sorted([older, str(folder / "model.ckpt-1")])
    # TF1's Saver writes absolute paths by default; a moved folder's stale ones are passed over
    # (all files of one time again: without the state file, the last name in order wins)
    os.utime(older + ".npz", ns=(10**18, 10**18))
    for named, found in ((older, older), ("/elsewhere/graphc_model", folder / "model.ckpt-1")):
        (folder / "checkpoint").write_text(f'model_checkpoint_path: "{named}"\n'
                                           f'all_model_checkpoint_paths: "{named}"\n')
        assert gc.train.latest_checkpoint(str(folder)) == str(found)


def test_reader_functions_on_a_tensorflow_checkpoint():
    values = expected()
    reader = gc.train.NewCheckpointReader(PREFIX)
    shapes = reader.get_variable_to_shape_map()
    assert shapes == {n: list(a.shape) for n, a in values.items()}
    dtypes = reader.get_variable_to_dtype_map()
    assert dtypes["dense/kernel"] is gc.float32 and dtypes["stats/double"] is gc.float64
    assert dtypes["stats/counts"] is gc.int32 and dtypes["global_step"] is gc.int64
    assert dtypes["stats/flags"] is gc.bool
    for n, a in values.items():
        got = reader.get_tensor(n)
        assert got.dtype == a.dtype
        np.testing.assert_array_equal(got, a)
    assert reader.has_tensor("dense/bias") and reader.has_tensor("dense/bias:0")
    assert not reader.has_tensor("dense/weights")
    with pytest.raises(ArtifactError, match="no tensor 'dense/kernal'.*\n.*close names: "
                                            "dense/kernel"):
        reader.get_tensor("dense/kernal")
    assert gc.train.list_variables(FIXTURE) == sorted((n, list(a.shape))
                                                      for n, a in values.items())
    np.testing.assert_array_equal(gc.train.load_variable(FIXTURE, "stats/big_counts"),
                                  values["stats/big_counts"])
    assert gc.train.load_checkpoint(PREFIX).get_tensor("global_step") == 1
    assert b"stats/flags (bool) [3]\n" in reader.debug_string()


def trained(backend="numpy"):
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, [None, 3], name="x")
        with gc.variable_scope("dense"):
            k = gc.get_variable("kernel", initializer=np.arange(6, dtype=np.float32)
                                .reshape(3, 2) / 7)
            b = gc.get_variable("bias", initializer=np.array([0.5, -1.0], np.float32))
        d = gc.Variable(np.array([[1 / 3, 2.0]]), name="stats/double")
        c = gc.Variable(np.array([3, -4], np.int32), name="stats/counts", trainable=False)
        f = gc.Variable(np.array([True, False]), name="stats/flags", trainable=False)
        loss = gc.reduce_sum(gc.square(gc.matmul(x, k) + b)) + gc.cast(
            gc.reduce_sum(d), gc.float32)
        train = gc.train.AdamOptimizer(0.1).minimize(
            loss, global_step=gc.train.get_or_create_global_step())
        init = gc.global_variables_initializer()
    sess = gc.Session(graph=g, backend=backend)
    sess.run(init)
    sess.run(train, {x: np.ones((2, 3), np.float32)})
    return g, sess, (x, k, b, c, f, train)


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_graphc_bundle_round_trip_and_reader(tmp_path, backend):
    g, sess, (x, k, b, c, f, train) = trained(backend)
    saved = {v.op.name: a.copy() for v, a in sess.values.items()}
    prefix = gc.train.Saver().save(sess, tmp_path / "run" / "model.ckpt", global_step=1,
                                   write_tf_checkpoint=True)
    assert prefix == str(tmp_path / "run" / "model.ckpt-1")
    assert sorted(os.listdir(tmp_path / "run")) == [
        "checkpoint", "model.ckpt-1.data-00000-of-00001", "model.ckpt-1.index",
        "model.ckpt-1.meta"]
    reader = gc.train.NewCheckpointReader(prefix)
    names = {n: tf1_name(n) for n in saved}  # the optimizer's variables under TF1's names
    assert names["dense/kernel/Adam/m"] == "dense/kernel/Adam"
    assert names["dense/kernel/Adam/v"] == "dense/kernel/Adam_1"
    assert names["Adam/beta2_power"] == "beta2_power"
    assert sorted(reader.get_variable_to_shape_map()) == sorted(names.values())
    for n, a in saved.items():
        got = reader.get_tensor(names[n])
        assert got.dtype == a.dtype, n
        np.testing.assert_array_equal(got, a)
    assert gc.train.latest_checkpoint(str(tmp_path / "run")) == prefix
    g2, sess2, (x2, *_, train2) = trained(backend)
    sess2.run(train2, {x2: np.ones((2, 3), np.float32)})
    gc.train.Saver().restore(sess2, prefix)
    for v, a in sess2.values.items():
        np.testing.assert_array_equal(a, saved[v.op.name])
        assert a.dtype == saved[v.op.name].dtype
    sess.run(train, {x: np.ones((2, 3), np.float32)})
    sess2.run(train2, {x2: np.ones((2, 3), np.float32)})
    np.testing.assert_array_equal(sess.run(k), sess2.run(g2.get_tensor_by_name("dense/kernel")))


def test_graphc_index_and_data_are_byte_identical_to_tensorflows(tmp_path):
    """TensorFlow's writer is deterministic (entries sorted by name, data in that order, the
    table's blocks closed at 256 KiB, no compression), so graphc writes the same bytes."""
    values = expected()
    index, ordered = tf_bundle.bundle_index(values)
    with open(PREFIX + ".index", "rb") as fh:
        assert index == fh.read()
    tf_bundle.write_bundle(str(tmp_path / "m"), index, ordered,
                           lambda p, w: durable.replace_file(p, w))
    with open(PREFIX + ".data-00000-of-00001", "rb") as a, \
            open(tmp_path / "m.data-00000-of-00001", "rb") as b:
        assert a.read() == b.read()


def data_blocks(table):
    """Number of data blocks in a table, from its index block."""
    meta_off, p = proto_wire.read_varint(table, len(table) - 48)
    _, p = proto_wire.read_varint(table, p)
    index_off, p = proto_wire.read_varint(table, p)
    index_size, _ = proto_wire.read_varint(table, p)
    block = table[index_off:index_off + index_size]
    restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    return restarts  # the index block restarts at every entry: one entry per data block


def test_fixture_exercises_shared_prefixes_and_several_blocks():
    with open(PREFIX + ".index", "rb") as fh:
        table = fh.read()
    assert data_blocks(table) >= 2
    names = [k for k, _ in sstable.read_table(table, "t")]
    assert len(names) == len(expected()) + 1  # and the header
    assert len(table) < sum(len(k) for k in names)  # keys stored prefix-compressed


def test_crc32c_known_values_and_lanes():
    assert crc32c(b"123456789") == 0xE3069283  # the check value of CRC-32C
    assert crc32c(b"") == 0 and crc32c(b"\0" * 32) == 0x8A9136AA  # RFC 3720 B.4
    data = np.random.default_rng(0).integers(0, 256, 70001, dtype=np.uint8).tobytes()
    assert crc32c(data) == _raw(0xFFFFFFFF, data) ^ 0xFFFFFFFF  # many lanes == one loop
    assert crc32c(data[1000:], crc32c(data[:1000])) == crc32c(data)
    assert unmask(mask(0x12345678)) == 0x12345678 and mask(0) == 0xA282EAD8


def test_table_round_trip_with_many_blocks():
    items = [(f"scope/{i:05d}".encode() * 3, bytes([i % 251]) * (i % 37)) for i in range(3000)]
    table = sstable.build_table(items, block_size=1024)
    assert data_blocks(table) > 10
    assert sstable.read_table(table, "t") == items
    with pytest.raises(ValueError, match="out of order"):
        sstable.build_table(items[::-1])


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_max_to_keep_removes_every_file_of_an_old_bundle(tmp_path, backend):
    g, sess, _ = trained(backend)
    saver = gc.train.Saver(max_to_keep=2, write_tf_checkpoint=True)
    paths = [saver.save(sess, tmp_path / "m", global_step=i) for i in (1, 2, 3)]
    assert sorted(os.listdir(tmp_path)) == ["checkpoint"] + sorted(
        f"m-{i}{ext}" for i in (2, 3) for ext in (".data-00000-of-00001", ".index", ".meta"))
    assert gc.train.get_checkpoint_state(str(tmp_path)).all_model_checkpoint_paths == paths[1:]
    with open(tmp_path / "checkpoint") as fh:
        assert fh.read().splitlines()[0] == 'model_checkpoint_path: "m-3"'
    # a new Saver (a restart) picks the list up and keeps deleting whole bundles
    gc.train.Saver(max_to_keep=2).save(sess, tmp_path / "m", global_step=4)
    left = sorted(os.listdir(tmp_path))
    assert not any(f.startswith("m-2") for f in left) and "m-4.npz" in left


def test_meta_graph_is_written_unless_asked_not_or_impossible(tmp_path):
    g, sess, _ = trained()
    prefix = gc.train.Saver().save(sess, tmp_path / "a")
    with open(prefix + ".meta") as fh:
        assert json.load(fh)["format"] == meta_graph.FORMAT
    gc.train.Saver().save(sess, tmp_path / "b", write_meta_graph=False)
    assert not os.path.exists(tmp_path / "b.meta")
    with g.as_default():  # a dataset iterator: the meta format cannot hold it
        gc.data.Dataset.from_tensor_slices(np.zeros((4, 2), np.float32)) \
            .make_one_shot_iterator().get_next()
    saver = gc.train.Saver()
    with pytest.warns(UserWarning, match="no meta graph written for .*c'.*IteratorGetNext"):
        saver.save(sess, tmp_path / "c")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per Saver
        saver.save(sess, tmp_path / "d")
    assert not os.path.exists(tmp_path / "c.meta") and not os.path.exists(tmp_path / "d.meta")
    gc.train.Saver().restore(sess, tmp_path / "c")
    with pytest.warns(UserWarning, match="no meta graph"):  # an older .meta is removed
        gc.train.Saver().save(sess, tmp_path / "a")
    assert not os.path.exists(tmp_path / "a.meta")


def test_compiled_step_saves_a_bundle_without_meta(tmp_path):
    with gc.Graph().as_default():
        w = gc.Variable(np.array([1.0, 2.0], np.float32), name="w")
        x = gc.placeholder(gc.float32, [2], name="x")
        train = gc.assign_sub(w, 0.5 * x)
        step = gc.compile([train], feeds=[x])
    step({x: np.ones(2, np.float32)})
    prefix = gc.train.Saver().save(step, tmp_path / "s", write_tf_checkpoint=True)
    assert sorted(os.listdir(tmp_path)) == ["s.data-00000-of-00001", "s.index"]
    np.testing.assert_array_equal(gc.train.load_variable(prefix, "w"), [0.5, 1.5])


def test_tensorflow_reads_graphc_bundle(tmp_path):
    """Runs only where TensorFlow is installed."""
    tf = pytest.importorskip("tensorflow")
    g, sess, _ = trained()
    saved = {v.name: a for v, a in sess.values.items()}
    prefix = gc.train.Saver().save(sess, tmp_path / "m.ckpt", write_tf_checkpoint=True)
    reader = tf.train.load_checkpoint(prefix)
    assert sorted(reader.get_variable_to_shape_map()) == sorted(map(tf1_name, saved))
    for n, a in saved.items():
        got = reader.get_tensor(tf1_name(n))
        assert got.dtype == a.dtype
        np.testing.assert_array_equal(got, a)


# -- damaged bundles ------------------------------------------------------------------------

def write_index(prefix, entries, header=tf_bundle.HEADER):
    """An index of hand-made entries: {name: BundleEntryProto bytes}."""
    items = [(b"", header)] + sorted((n.encode(), v) for n, v in entries.items())
    with open(prefix + ".index", "wb") as fh:
        fh.write(sstable.build_table(items))


def bundle(tmp_path, name="m"):
    """A small valid bundle; returns (prefix, its index bytes)."""
    prefix = str(tmp_path / name)
    arrays = {"a": np.arange(4, dtype=np.float32), "b": np.array(7, np.int64)}
    tf_bundle.write_bundle(prefix, *tf_bundle.bundle_index(arrays),
                           lambda p, w: durable.replace_file(p, w))
    with open(prefix + ".index", "rb") as fh:
        return prefix, fh.read()


def session_for(names):
    g = gc.Graph()
    with g.as_default():
        vs = {"a": gc.Variable(np.full(4, 9, np.float32), name="a"),
              "b": gc.Variable(np.array(9, np.int64), name="b")}
        made = [vs[n] for n in names]
    sess = gc.Session(graph=g)
    sess.run(gc.variables_initializer(made))
    return sess, made


def restore_fails(prefix, pattern, names=("a", "b")):
    sess, made = session_for(names)
    with pytest.raises(ArtifactError, match=pattern):
        gc.train.Saver(made).restore(sess, prefix)
    for v in made:  # nothing changed
        assert (sess.values[v] == 9).all()


def retyped(table, kind):
    """The table with its first data block's compression type set to ``kind`` (CRC redone)."""
    end = proto_wire.read_varint(table, len(table) - 48)[0] - 5  # the metaindex follows it
    out = bytearray(table)
    out[end] = kind
    out[end + 1:end + 5] = struct.pack("<I", mask(crc32c(bytes(out[:end + 1]))))
    return bytes(out)


def test_damaged_index_files(tmp_path):
    prefix, table = bundle(tmp_path)
    restore_fails(str(tmp_path / "none"), "no checkpoint at")
    cases = {
        "short": (table[:30], r"'.*short.index' is damaged: 30 bytes, shorter than"),
        "truncated": (table[:-60] + table[-48:], r"truncated.index' is damaged: .* runs past"),
        "magic": (table[:-1] + b"\x00", r"magic.index' is damaged: bad magic number"),
        "crc": (table[:3] + bytes([table[3] ^ 1]) + table[4:], r"crc.index' is damaged: "
                                                              r"a data block at byte 0: CRC"),
        "snappy": (retyped(table, 1), r"snappy.index' .*Snappy-compressed, which graphc"),
        "kind7": (retyped(table, 7), r"kind7.index' .*unknown compression type 7"),
    }
    for name, (data, pattern) in cases.items():
        shutil.copy(prefix + ".data-00000-of-00001", tmp_path / f"{name}.data-00000-of-00001")
        (tmp_path / f"{name}.index").write_bytes(data)
        restore_fails(str(tmp_path / name), pattern)
        with pytest.raises(ArtifactError, match=pattern):
            gc.train.NewCheckpointReader(str(tmp_path / name))


def entry(dtype=1, shape=(4,), offset=0, size=16, crc=0, shard=0):
    out = tf_bundle._entry(dtype, shape, offset, size, crc)
    return out + (proto_wire.field(3, shard) if shard else b"")


def test_damaged_entries_and_data_files(tmp_path):
    prefix, _ = bundle(tmp_path)
    data = prefix + ".data-00000-of-00001"
    good = pathlib.Path(data).read_bytes()
    crc_a = mask(crc32c(good[:16]))

    def case(name, entries, header=tf_bundle.HEADER, pattern="", data_bytes=good,
             names=("a",)):
        p = str(tmp_path / name)
        write_index(p, entries, header)
        if data_bytes is not None:
            with open(p + ".data-00000-of-00001", "wb") as fh:
                fh.write(data_bytes)
        restore_fails(p, pattern, names)

    case("past", {"a": entry(offset=16, size=16, crc=crc_a)},
         pattern=r"past.index': tensor 'a' is bytes 16..32 of '.*past.data-00000-of-00001', "
                 r"which has 24 bytes")
    case("huge", {"a": entry(shape=(2**59,), size=2**61, crc=crc_a)},
         pattern=r"tensor 'a' is bytes 0..2305843009213693952 of")  # refused, not allocated
    case("short_data", {"a": entry(crc=crc_a)}, data_bytes=good[:10],
         pattern="which has 10 bytes")
    case("dtype99", {"a": entry(dtype=99, crc=crc_a)},
         pattern=r"dtype99.index' does not match .*\n.*'a': dtype unknown \(TensorFlow dtype "
                 r"99\) in the checkpoint, which graphc does not read")
    case("string", {"a": entry(dtype=7, crc=crc_a)}, pattern=r"'a': dtype DT_STRING")
    case("size", {"a": entry(size=12, crc=crc_a)},
         pattern=r"tensor 'a': 12 bytes stored, 16 expected for float32\[4\]")
    case("bad_crc", {"a": entry(crc=crc_a ^ 1)},
         pattern=r"tensor 'a': CRC mismatch in '.*bad_crc.data-00000-of-00001' \(bytes 0..16\)")
    case("malformed", {"a": entry(crc=crc_a)[:-2]}, pattern=r"tensor 'a': malformed entry")
    two = proto_wire.field(1, 2) + proto_wire.field(3, proto_wire.field(1, 1), 2)
    case("sharded", {"a": entry(crc=crc_a), "b": entry(dtype=9, shape=(), size=8, shard=1)},
         header=two, data_bytes=None, names=("a", "b"),
         pattern=r"its data file '.*sharded.data-00000-of-00002' is missing \(shard 0 of 2\)")
    with open(tmp_path / "sharded.data-00000-of-00002", "wb") as fh:
        fh.write(good)
    restore_fails(str(tmp_path / "sharded"), r"'.*sharded.data-00001-of-00002' is missing "
                                             r"\(shard 1 of 2\)")
    case("noheader", {"a": entry(crc=crc_a)}, header=b"\x08",
         pattern=r"noheader.index': the header: malformed entry")
    future = proto_wire.field(1, 1) + proto_wire.field(
        3, proto_wire.field(1, 3) + proto_wire.field(2, 2), 2)
    case("future", {"a": entry(crc=crc_a)}, header=future,
         pattern=r"needs a reader of version 2 or newer")
    # the same bundle with a good entry restores (the cases above fail for their reason)
    case_ok = str(tmp_path / "ok")
    write_index(case_ok, {"a": entry(crc=crc_a)})
    shutil.copy(data, case_ok + ".data-00000-of-00001")
    sess, made = session_for(("a",))
    gc.train.Saver(made).restore(sess, case_ok)
    np.testing.assert_array_equal(sess.values[made[0]], np.arange(4, dtype=np.float32))


def test_big_endian_bundle_is_read_in_native_order(tmp_path):
    values = {"a": np.array([1.5, -2.0], ">f4"), "b": np.array([[2**40]], ">i8")}
    raw = [v.tobytes() for v in values.values()]
    big = proto_wire.field(1, 1) + proto_wire.field(2, tf_bundle.BIG) + proto_wire.field(
        3, proto_wire.field(1, 1), 2)
    p = str(tmp_path / "big")
    write_index(p, {"a": entry(crc=mask(crc32c(raw[0])), size=8, shape=(2,)),
                    "b": entry(dtype=9, shape=(1, 1), offset=8, size=8,
                               crc=mask(crc32c(raw[1])))}, big)
    with open(p + ".data-00000-of-00001", "wb") as fh:
        fh.write(b"".join(raw))
    reader = gc.train.NewCheckpointReader(p)
    for n, v in values.items():
        got = reader.get_tensor(n)
        assert got.dtype.isnative and got.dtype == v.dtype.newbyteorder("=")
        np.testing.assert_array_equal(got, v)


def test_unsupported_dtype_on_save_is_a_graph_error(tmp_path):
    class Holder:
        variables = {"w": np.array([1 + 2j], np.complex64), "s": np.array(["x"])}
    with pytest.raises(gc.errors.GraphError, match="'s': dtype <U1 has no TensorFlow"):
        gc.train.Saver().save(Holder(), tmp_path / "m", write_tf_checkpoint=True)
    assert not os.listdir(tmp_path)
    class Clash:
        variables = {"w/Adam/m": np.zeros(2, np.float32), "w/Adam": np.ones(2, np.float32)}
    with pytest.raises(gc.errors.GraphError, match="same TF1 name\n.*w/Adam/m and w/Adam -> "
                                                   "'w/Adam'|same TF1 name\n.*w/Adam and "
                                                   "w/Adam/m -> 'w/Adam'"):
        gc.train.Saver().save(Clash(), tmp_path / "m", write_tf_checkpoint=True)
    assert not os.listdir(tmp_path)


def test_saves_remove_stale_temporaries_of_bundles_and_meta_graphs(tmp_path):
    """What killed saves of either format leave: only their names, only when stale."""
    g, sess, _ = trained()
    names = [".m.index.abcd1234.tmp", ".m.data-00000-of-00001.abcd1234.tmp",
             ".m.meta.abcd1234.tmp", ".m.npz.abcd1234.tmp"]
    for n in names + [".fresh.index.abcd1234.tmp", "m.index.abcd1234.tmp.keep"]:
        (tmp_path / n).write_bytes(b"x")
    for n in names:
        os.utime(tmp_path / n, (1, 1))
    gc.train.Saver().save(sess, tmp_path / "m", write_tf_checkpoint=True)
    assert sorted(os.listdir(tmp_path)) == [".fresh.index.abcd1234.tmp", "m.data-00000-of-00001",
                                            "m.index", "m.index.abcd1234.tmp.keep", "m.meta"]


@pytest.mark.parametrize("seed", range(4))
def test_random_damage_is_refused_or_harmless_never_a_raw_error_or_a_changed_value(tmp_path,
                                                                                   seed):
    """Seeded damage to TensorFlow's files (bit flips, overwritten and zeroed runs, truncation,
    trailing bytes): reading every tensor either gives exactly the original values or raises
    ArtifactError (the CRCs and size checks see everything else)."""
    import random
    rng = random.Random(seed)
    ref = tf_bundle.BundleReader(PREFIX)
    want = {n: ref.read(n) for n in ref.names()}
    outcomes = {"same": 0, "refused": 0}
    for trial in range(25):
        folder = tmp_path / str(trial)
        shutil.copytree(FIXTURE, folder)
        path = folder / rng.choice(["model.ckpt-1.index", "model.ckpt-1.data-00000-of-00001"])
        data = bytearray(path.read_bytes())
        kind, i = rng.choice(["flip", "cut", "byte", "extend", "zero"]), rng.randrange(len(data))
        if kind == "flip":
            data[i] ^= 1 << rng.randrange(8)
        elif kind == "cut":
            del data[i:]
        elif kind == "byte":
            data[i] = (data[i] + rng.randrange(1, 256)) % 256
        elif kind == "extend":
            data += bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
        else:
            data[i:i + 64] = bytes(len(data[i:i + 64]))
        path.write_bytes(bytes(data))
        try:
            got = tf_bundle.BundleReader(str(folder / "model.ckpt-1"))
            values = {n: got.read(n) for n in got.names()}
        except gc.errors.ArtifactError:
            outcomes["refused"] += 1
            continue
        assert sorted(values) == sorted(want), (kind, path.name)
        for n, v in values.items():
            assert v.dtype == want[n].dtype and v.tobytes() == want[n].tobytes(), (kind, n)
        outcomes["same"] += 1
    assert outcomes["refused"] >= 10
