"""Checkpoints in operation: crafted metadata and bombs refused with ArtifactError naming the
file, temporary files of killed saves cleaned up, fsync of file and folder, max_to_keep across
restarts (TF1's ``checkpoint`` state file), the umask's mode, and a full disk or read-only
folder reported by path with the previous checkpoint intact.

Before: ``"version": "1"`` raised TypeError, metadata that is not JSON JSONDecodeError, a JSON
list AttributeError; a 64 MiB deflated member was decompressed whole; 120 killed saves left
their temp files forever; a restarted Saver(max_to_keep=3) kept every checkpoint; files were
0600 whatever the umask; ENOSPC / EROFS came out as raw OSError.
"""
import errno
import io
import json
import os
import pathlib
import stat
import time
import tracemalloc
import zipfile

import numpy as np
import pytest

import graphc as gc
from graphc.runtime import durable
from graphc.train import saver as saver_module

ArtifactError = gc.errors.ArtifactError


class Holder:
    """The smallest thing a Saver saves: a compiled step's ``variables`` mapping."""

    def __init__(self):
        self.variables = {"w": np.arange(6, dtype=np.float32).reshape(2, 3),
                          "b": np.zeros(3, np.float32)}


def write_npz(path, arrays, compress=False):
    (np.savez_compressed if compress else np.savez)(path, **arrays)
    return str(path)


# -- 4. crafted metadata and sizes ----------------------------------------------------------------
@pytest.mark.parametrize("meta, message", [
    (json.dumps({"format": "graphc-checkpoint", "version": "1"}), "version '1' is not an"),
    ("{not json", "not JSON"),
    (json.dumps(["graphc-checkpoint", 1]), "a JSON list, not an object"),
    (np.arange(3), "not JSON"),
])
def test_crafted_metadata_is_an_artifact_error_naming_the_file(tmp_path, meta, message):
    path = write_npz(tmp_path / "c.npz", {"w": np.zeros((2, 3), np.float32),
                                         "b": np.zeros(3, np.float32),
                                         "__graphc_checkpoint__": np.array(meta)})
    with pytest.raises(ArtifactError, match=f"'{path}' has unreadable checkpoint metadata: "
                                            f".*{message}"):
        gc.train.Saver().restore(Holder(), path)


def test_a_compressed_bomb_is_refused_before_decompression(tmp_path):
    meta = json.dumps({"format": "graphc-checkpoint", "version": 1, "variables": {}})
    path = write_npz(tmp_path / "bomb.npz", {"w": np.zeros((4096, 4096), np.float32),
                                            "__graphc_checkpoint__": np.array(meta)},
                     compress=True)
    assert os.path.getsize(path) < 1 << 20
    tracemalloc.start()
    with pytest.raises(ArtifactError, match="refusing to decompress"):
        gc.train.Saver(["w"]).restore(Holder(), path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 8 << 20


# -- 5. temporary files, fsync, max_to_keep, umask, errors -------------------------------------
def test_stale_temporaries_of_killed_saves_are_removed_only_ours_only_old(tmp_path):
    old = time.time() - 2 * saver_module.STALE_SECONDS
    names = {"stale": ".m-1.npz.abcd1234.tmp", "fresh": ".m-2.npz.efgh5678.tmp",
             "foreign": ".other.tmp", "no_dot": "m-3.npz.abcd1234.tmp",
             "not_npz": ".notes.txt.abcd1234.tmp"}
    for key, name in names.items():
        (tmp_path / name).write_bytes(b"x" * 100)
        if key != "fresh":
            os.utime(tmp_path / name, (old, old))
    gc.train.Saver().save(Holder(), tmp_path / "m", global_step=4)
    left = set(os.listdir(tmp_path))
    assert names["stale"] not in left
    assert {names[k] for k in ("fresh", "foreign", "no_dot", "not_npz")} <= left


def test_a_save_fsyncs_the_file_and_its_folder(tmp_path, monkeypatch):
    synced = []
    real = os.fsync

    def fsync(fd):
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        return real(fd)
    monkeypatch.setattr(saver_module.os, "fsync", fsync)
    gc.train.Saver().save(Holder(), tmp_path / "m")
    assert False in synced and True in synced  # the file, then the folder's entry


def test_max_to_keep_survives_a_restart(tmp_path):
    for step in range(5):
        gc.train.Saver(max_to_keep=3).save(Holder(), tmp_path / "m", global_step=step)
    saver = gc.train.Saver(max_to_keep=3)
    for step in range(5, 8):
        saver.save(Holder(), tmp_path / "m", global_step=step)
    kept = sorted(f for f in os.listdir(tmp_path) if f.endswith(".npz"))
    assert kept == ["m-5.npz", "m-6.npz", "m-7.npz"]
    state = (tmp_path / "checkpoint").read_text()
    assert state.splitlines()[0] == 'model_checkpoint_path: "m-7"'  # TF1's prefixes
    assert state.count("all_model_checkpoint_paths") == 3
    assert [os.path.basename(p) + ".npz" for p in saver.last_checkpoints] == kept
    ckpt = gc.train.get_checkpoint_state(str(tmp_path))
    assert ckpt.model_checkpoint_path == str(tmp_path / "m-7")


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_saved_files_honour_the_umask(tmp_path, mask, mode):
    old = os.umask(mask)
    try:
        path = gc.train.Saver().save(Holder(), tmp_path / "m", global_step=1)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path + ".npz").st_mode) == mode
    assert stat.S_IMODE(os.stat(tmp_path / "checkpoint").st_mode) == mode


@pytest.mark.parametrize("where, err", [("write", errno.ENOSPC), ("create", errno.EROFS)])
def test_full_disk_or_read_only_folder_is_a_clear_error(tmp_path, monkeypatch, where, err):
    holder = Holder()
    path = gc.train.Saver().save(holder, tmp_path / "m") + ".npz"
    before = pathlib.Path(path).read_bytes()
    holder.variables["w"] += 1
    if where == "write":
        def savez(f, **arrays):
            f.write(b"partial")
            raise OSError(err, os.strerror(err))
        monkeypatch.setattr(saver_module.np, "savez", savez)
    else:
        def mkstemp(**kw):
            raise OSError(err, os.strerror(err), kw.get("dir"))
        monkeypatch.setattr(durable.tempfile, "mkstemp", mkstemp)
    with pytest.raises(ArtifactError, match=f"cannot write checkpoint '{path}': "
                                            f"{os.strerror(err)}"):
        gc.train.Saver().save(holder, tmp_path / "m")
    assert pathlib.Path(path).read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["m.npz"]


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root writes into read-only folders")
def test_a_real_read_only_folder(tmp_path):
    path = gc.train.Saver().save(Holder(), tmp_path / "m")
    os.chmod(tmp_path, 0o555)
    try:
        with pytest.raises(ArtifactError, match="cannot write checkpoint"):
            gc.train.Saver().save(Holder(), tmp_path / "m")
    finally:
        os.chmod(tmp_path, 0o755)
    assert os.path.isfile(path)


# -- saved steps go through the same writer -------------------------------------------------------
def test_saved_steps_are_written_as_checkpoints_are(tmp_path, monkeypatch):
    """Before: step.save left 0600 files and, when killed, its .gcx-XXXXXXXX temporaries."""
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, [2, 3], name="x")
        W = gc.Variable(np.ones((3, 2), np.float32), name="W")
        loss = gc.reduce_sum(gc.matmul(x, W))
        step = gc.compile([loss, gc.train.GradientDescentOptimizer(0.1).minimize(loss)],
                          feeds=[x])
    old = time.time() - 2 * durable.STALE_SECONDS
    for name in (".gcx-abcd1234", ".gcx-efgh5678.tmp", ".gcx-fresh123.tmp"):
        (tmp_path / name).write_bytes(b"x")
        if "fresh" not in name:
            os.utime(tmp_path / name, (old, old))
    mask = os.umask(0o022)
    try:
        step.save(str(tmp_path / "s.gcx"))
    finally:
        os.umask(mask)
    assert sorted(os.listdir(tmp_path)) == [".gcx-fresh123.tmp", "s.gcx"]
    assert stat.S_IMODE(os.stat(tmp_path / "s.gcx").st_mode) == 0o644

    def mkstemp(**kw):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(durable.tempfile, "mkstemp", mkstemp)
    with pytest.raises(ArtifactError, match=f"cannot write saved step '{tmp_path / 's.gcx'}'"):
        step.save(str(tmp_path / "s.gcx"))
    gc.load(str(tmp_path / "s.gcx"))  # the previous file is intact
