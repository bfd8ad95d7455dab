"""Checkpoints: round trip (Session and compiled-step holders), atomic save under a failure
mid-write, and corrupted or mismatched checkpoints rejected with exact reasons."""
import os
import pathlib

import numpy as np
import pytest

import graphc as gc
from graphc.train import saver as saver_module

ArtifactError = gc.errors.ArtifactError


def model(graph, hidden=4, dtype=np.float32):
    with graph.as_default():
        x = gc.placeholder(gc.float32, [None, 3], name="x")
        with gc.name_scope("dense"):
            W = gc.Variable(gc.initializers.glorot_uniform(seed=0)([3, hidden], dtype), name="W")
            b = gc.Variable(np.zeros(hidden, dtype), name="b")
        loss = gc.reduce_sum(gc.square(gc.matmul(x, gc.cast(W, gc.float32)) +
                                       gc.cast(b, gc.float32)))
        train = gc.train.AdamOptimizer(0.1).minimize(
            loss, global_step=gc.train.get_or_create_global_step())
        init = gc.global_variables_initializer()
    return x, W, b, train, init


FEED = np.arange(6, dtype=np.float32).reshape(2, 3) / 6


def trained_session(steps=2, backend="numpy"):
    g = gc.Graph()
    x, W, b, train, init = model(g)
    sess = gc.Session(graph=g, backend=backend)
    sess.run(init)
    for _ in range(steps):
        sess.run(train, {x: FEED})
    return g, sess, (x, W, b, train, init)


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_round_trip_restores_every_variable_including_slots(tmp_path, backend):
    """The LLVM step updates variables in place: restored arrays must be the ones it uses."""
    g, sess, (x, W, b, train, init) = trained_session(backend=backend)
    saved = {v.op.name: a.copy() for v, a in sess.values.items()}
    path = gc.train.Saver().save(sess, tmp_path / "ckpt" / "model")
    assert path == str(tmp_path / "ckpt" / "model")  # TF1's prefix; the file is model.npz
    assert os.path.isfile(path + ".npz") and not os.path.exists(path)
    assert {"dense/W", "dense/b", "global_step", "dense/W/Adam/m", "Adam/beta1_power"} <= set(saved)

    g2, sess2, (x2, W2, b2, train2, init2) = trained_session(steps=3, backend=backend)
    gc.train.Saver().restore(sess2, path)
    for v, a in sess2.values.items():
        np.testing.assert_array_equal(a, saved[v.op.name])
        assert a.dtype == saved[v.op.name].dtype
    # training continues identically from the restored state
    sess.run(train, {x: FEED})
    sess2.run(train2, {x2: FEED})
    np.testing.assert_array_equal(sess.values[W], sess2.values[W2])


def test_global_step_suffix_max_to_keep_and_latest(tmp_path):
    g, sess, (x, W, b, train, init) = trained_session(steps=1)
    saver = gc.train.Saver(max_to_keep=2)
    paths = [saver.save(sess, tmp_path / "m", global_step=i) for i in (1, 2, 3)]
    assert [os.path.basename(p) for p in paths] == ["m-1", "m-2", "m-3"]
    assert not os.path.exists(paths[0] + ".npz") and os.path.exists(paths[2] + ".npz")
    assert saver.last_checkpoints == paths[1:]
    with g.as_default():
        step = gc.train.get_global_step()
    latest = saver.save(sess, tmp_path / "s", global_step=step)
    assert latest == str(tmp_path / "s-1")
    assert gc.train.latest_checkpoint(str(tmp_path)) == latest


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_save_returns_tf1_prefix_that_restore_and_latest_checkpoint_accept(tmp_path, backend):
    """TF1: saver.save(sess, "/tmp/model.ckpt") -> "/tmp/model.ckpt"; with global_step=1000
    -> "/tmp/model.ckpt-1000"; latest_checkpoint gives that prefix and restore takes it."""
    g, sess, (x, W, b, train, init) = trained_session(steps=2, backend=backend)
    saver = gc.train.Saver()
    prefix = str(tmp_path / "model.ckpt")
    assert saver.save(sess, prefix) == prefix
    assert saver.save(sess, prefix, global_step=1000) == prefix + "-1000"
    assert os.path.isfile(prefix + "-1000.npz")
    latest = gc.train.latest_checkpoint(str(tmp_path))
    assert latest == prefix + "-1000"
    assert gc.train.checkpoint_exists(latest)
    state = (tmp_path / "checkpoint").read_text()
    assert state.splitlines()[0] == 'model_checkpoint_path: "model.ckpt-1000"'
    saved_w = sess.values[W].copy()
    sess.run(train, {x: FEED})
    assert not np.array_equal(sess.values[W], saved_w)
    saver.restore(sess, latest)
    np.testing.assert_array_equal(sess.values[W], saved_w)


class FakeStep:
    """What a compiled step offers: ``variables``, a mapping of names to arrays."""

    def __init__(self, variables):
        self.variables = variables


def test_compiled_step_holder_round_trip_and_cross_restore(tmp_path):
    g, sess, _ = trained_session()
    path = gc.train.Saver().save(sess, tmp_path / "a.npz")
    step = FakeStep({v.op.name: np.zeros_like(a) for v, a in sess.values.items()})
    gc.train.Saver().restore(step, path)
    for v, a in sess.values.items():
        np.testing.assert_array_equal(step.variables[v.op.name], a)
    b = [v for v in sess.values if v.op.name == "dense/b"][0]
    step.variables["dense/b"] = step.variables["dense/b"] + 1
    path2 = gc.train.Saver(["dense/b"]).save(step, tmp_path / "b")
    gc.train.Saver([b]).restore(sess, path2)   # a subset, from a step's checkpoint
    np.testing.assert_array_equal(sess.values[b], step.variables["dense/b"])


def test_interrupted_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    g, sess, (x, W, b, train, init) = trained_session(steps=1)
    saver = gc.train.Saver()
    path = saver.save(sess, tmp_path / "model")
    before = pathlib.Path(path + ".npz").read_bytes()
    old_w = sess.values[W].copy()
    sess.run(train, {x: FEED})

    real_write = saver_module.np.lib.format.write_array
    calls = []

    def dying_write(fp, array, *args, **kwargs):  # dies after one array is half written
        calls.append(1)
        if len(calls) == 2:
            fp.write(b"\x93NUMPY partial")
            raise KeyboardInterrupt("simulated crash mid-write")
        return real_write(fp, array, *args, **kwargs)

    monkeypatch.setattr(saver_module.np.lib.format, "write_array", dying_write)
    with pytest.raises(KeyboardInterrupt):
        saver.save(sess, tmp_path / "model")
    monkeypatch.undo()
    assert len(calls) == 2
    assert pathlib.Path(path + ".npz").read_bytes() == before
    # no temporary file left behind (model.meta: the first save's meta graph)
    assert sorted(os.listdir(tmp_path)) == ["model.meta", "model.npz"]
    g2, sess2, (_, W2, _, _, _) = trained_session(steps=0)
    gc.train.Saver().restore(sess2, path)
    np.testing.assert_array_equal(sess2.values[W2], old_w)


def test_corrupted_and_foreign_files_are_rejected(tmp_path):
    g, sess, _ = trained_session(steps=1)
    path = gc.train.Saver().save(sess, tmp_path / "model")
    data = pathlib.Path(path + ".npz").read_bytes()
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactError, match="not a readable checkpoint.*\n.*truncated or "
                                            "corrupted"):
        gc.train.Saver().restore(sess, truncated)
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip at all")
    with pytest.raises(ArtifactError, match="not a readable checkpoint"):
        gc.train.Saver().restore(sess, garbage)
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, w=np.ones(3))
    with pytest.raises(ArtifactError, match="not a graphc checkpoint"):
        gc.train.Saver().restore(sess, foreign)
    with pytest.raises(ArtifactError, match="no checkpoint at"):
        gc.train.Saver().restore(sess, tmp_path / "missing")


def test_mismatched_checkpoint_lists_every_problem_and_changes_nothing(tmp_path):
    g, sess, _ = trained_session(steps=1)
    path = gc.train.Saver().save(sess, tmp_path / "model")
    g2 = gc.Graph()
    model(g2, hidden=5, dtype=np.float64)  # other shapes and dtypes
    with g2.as_default():
        extra = gc.Variable(np.zeros(2, np.float32), name="extra")
    sess2 = gc.Session(graph=g2)
    sess2.run(g2.get_tensor_by_name("init"))
    before = {v: a.copy() for v, a in sess2.values.items()}
    with pytest.raises(ArtifactError) as info:
        gc.train.Saver().restore(sess2, path)
    msg = str(info.value)
    assert "'dense/W': shape [3, 4] in the checkpoint, [3, 5] expected" in msg
    assert "'dense/b': shape [4] in the checkpoint, [5] expected" in msg
    assert "'extra': missing from the checkpoint" in msg
    assert "'dense/W/Adam/m': shape" in msg
    for v, a in sess2.values.items():
        np.testing.assert_array_equal(a, before[v])
    # same shapes, other dtype
    g3 = gc.Graph()
    model(g3, hidden=4, dtype=np.float64)
    sess3 = gc.Session(graph=g3)
    sess3.run(g3.get_tensor_by_name("init"))
    with pytest.raises(ArtifactError, match="'dense/W': dtype float32 in the checkpoint, "
                                            "float64 expected"):
        gc.train.Saver().restore(sess3, path)


def test_saving_uninitialized_variables_and_bad_holders_fail_clearly(tmp_path):
    g = gc.Graph()
    model(g)
    with pytest.raises(gc.errors.GraphError, match="have no value: .*dense/W"):
        gc.train.Saver().save(gc.Session(graph=g), tmp_path / "x")
    with pytest.raises(TypeError, match="expected a gc.Session or a compiled step"):
        gc.train.Saver().save(object(), tmp_path / "x")
    assert not os.listdir(tmp_path)


def test_gc_compile_step_round_trip(tmp_path):
    """A ``gc.compile`` step exposes live arrays: restore writes into them in place."""
    if not hasattr(gc, "compile"):
        pytest.skip("gc.compile is not part of this build")
    g = gc.Graph()
    x, W, b, train, init = model(g)
    step = gc.compile([train], feeds=[x])
    step({x: FEED})
    saved = {k: np.array(v) for k, v in step.variables.items()}
    path = gc.train.Saver().save(step, tmp_path / "step")
    step({x: FEED})
    assert not np.array_equal(step.variables["dense/W"], saved["dense/W"])
    gc.train.Saver().restore(step, path)
    for k, v in step.variables.items():
        np.testing.assert_array_equal(v, saved[k])
    # the next call starts from the restored values: same result as a session restored alike
    step({x: FEED})
    g2, sess2, (x2, W2, _, train2, _) = trained_session(steps=0)
    gc.train.Saver().restore(sess2, path)
    sess2.run(train2, {x2: FEED})
    np.testing.assert_allclose(step.variables["dense/W"], sess2.values[W2], rtol=1e-6)
