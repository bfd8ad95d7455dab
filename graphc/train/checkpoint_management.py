"""Where checkpoints are and which is newest: a checkpoint's files from its prefix, TF1's
``checkpoint`` state file, ``latest_checkpoint``, ``get_checkpoint_state`` and
``checkpoint_exists`` (TF1's ``checkpoint_management``).

A prefix names either kind of checkpoint: graphc's ``<prefix>.npz`` or TensorFlow's
``<prefix>.index`` with its ``<prefix>.data-*-of-*`` files; ``<prefix>.meta`` is its meta graph.
A folder's checkpoints are both kinds, ordered by when they were written; a ``checkpoint`` state
file (TF1's text format, which graphc's Saver keeps too) names the newest and the ones kept.
"""
import os
import re

from . import tf_bundle

STATE = "checkpoint"  # TF1's name for the folder's list of kept checkpoints


def file_of(prefix):
    """The ``.npz`` file holding the checkpoint ``prefix`` (a path ending in ``.npz`` is it)."""
    return prefix if prefix.endswith(".npz") else prefix + ".npz"


def prefix_of(path):
    return path.removesuffix(".npz")


def meta_file(prefix):
    return prefix_of(prefix) + ".meta"


def exists(prefix):
    """Whether a checkpoint (either kind) is at ``prefix``."""
    return os.path.isfile(file_of(prefix)) or os.path.isfile(tf_bundle.index_file(prefix))


def files_of(prefix):
    """Every file of the checkpoint ``prefix``: both kinds and its ``.meta``."""
    return [file_of(prefix), tf_bundle.index_file(prefix), meta_file(prefix)] \
        + tf_bundle.data_files(prefix)


def checkpoint_exists(checkpoint_prefix):
    """Whether a checkpoint ``Saver.restore`` can read is at ``checkpoint_prefix`` (the path
    ``Saver.save`` returned, or that path without ``.npz``; or a TensorFlow checkpoint's
    prefix), as TF1's ``tf.train.checkpoint_exists``.

    Example:
        >>> if gc.train.checkpoint_exists(path):
        ...     saver.restore(sess, path)
    """
    path = os.fspath(checkpoint_prefix)
    return any(os.path.isfile(p) for p in (path, path + ".npz", tf_bundle.index_file(path)))


def read_state(folder):
    """The checkpoints the folder's state file lists, oldest first (absolute prefixes); [] when
    there is none or it does not parse (it only decides what ``max_to_keep`` deletes). Lists
    written before ``save`` returned prefixes name the ``.npz`` files; those are read too."""
    out = []
    for name in _state_entries(folder, "all_model_checkpoint_paths"):
        path = os.path.join(folder, name)
        if os.path.basename(name) == name and exists(prefix_of(path)):  # ours
            out.append(prefix_of(path))
    return out


def write_state(folder, paths, replace_file):
    """TF1's ``checkpoint`` text file: the newest checkpoint and all kept ones, oldest first
    (names relative to the folder, as TF1 writes them)."""
    def quoted(p):
        return '"' + os.path.basename(p).replace("\\", "\\\\").replace('"', '\\"') + '"'
    if not paths:
        return
    lines = [f"model_checkpoint_path: {quoted(paths[-1])}"]
    lines += [f"all_model_checkpoint_paths: {quoted(p)}" for p in paths]
    replace_file(os.path.join(folder, STATE),
                  lambda f: f.write(("\n".join(lines) + "\n").encode("utf-8")))


def _checkpoints(directory):
    """The checkpoints in ``directory`` (``.npz`` files and TensorFlow ``.index`` files), as
    [(modification time, prefix)], oldest first."""
    if not os.path.isdir(directory):
        return []
    found = {}
    for f in os.listdir(directory):
        if f.startswith(".") or not f.endswith((".npz", ".index")):
            continue
        path = os.path.join(directory, f)
        prefix = path.removesuffix(".npz").removesuffix(".index") if f.endswith(".index") \
            else prefix_of(path)
        found[prefix] = max(found.get(prefix, -1), os.stat(path).st_mtime_ns)
    return sorted((t, p) for p, t in found.items())


def _state_latest(directory):
    """The checkpoint the folder's ``checkpoint`` file names as the newest
    (``model_checkpoint_path``, relative to the folder or absolute, as TensorFlow writes it),
    when it exists; else None."""
    names = _state_entries(directory, "model_checkpoint_path")
    prefix = prefix_of(os.path.join(directory, names[-1])) if names else None
    return prefix if prefix is not None and exists(prefix) else None


def _state_entries(folder, field):
    """The (unquoted) values of ``field`` in the folder's state file; [] when it cannot be
    read."""
    try:
        with open(os.path.join(folder, STATE), encoding="utf-8") as f:
            text = f.read(1 << 20)
    except (OSError, UnicodeDecodeError):
        return []
    names = re.findall(rf'^{field}: "((?:[^"\\]|\\.)*)"$', text, re.M)
    return [n.replace('\\"', '"').replace("\\\\", "\\") for n in names]


def latest_checkpoint(directory):
    """The prefix of the most recently written checkpoint in ``directory`` (as ``Saver.save``
    returned it: ``"ckpt/model-1000"``), or None. graphc's ``.npz`` checkpoints and
    TensorFlow's count alike; the one a TensorFlow ``checkpoint`` file names wins unless a
    checkpoint was written after it.

    Example:
        >>> saver.restore(sess, gc.train.latest_checkpoint("ckpt"))
    """
    directory = os.fspath(directory)
    found = _checkpoints(directory)
    named = _state_latest(directory)
    if named is not None and (not found or _mtime(named) >= found[-1][0]):
        return named
    return found[-1][1] if found else None


def _mtime(prefix):
    return max((os.stat(f).st_mtime_ns for f in (file_of(prefix), tf_bundle.index_file(prefix))
                if os.path.isfile(f)), default=-1)


class CheckpointState:
    """What ``get_checkpoint_state`` returns: TF1's two fields."""

    def __init__(self, model_checkpoint_path, all_model_checkpoint_paths):
        self.model_checkpoint_path = model_checkpoint_path
        self.all_model_checkpoint_paths = list(all_model_checkpoint_paths)

    def __repr__(self):
        return (f"CheckpointState(model_checkpoint_path={self.model_checkpoint_path!r}, "
                f"all_model_checkpoint_paths={self.all_model_checkpoint_paths!r})")


def get_checkpoint_state(checkpoint_dir, latest_filename=None):
    """TF1's ``tf.train.get_checkpoint_state`` over the checkpoints in a folder.

    The checkpoints are the folder's ``.npz`` files and TensorFlow checkpoints (``.index``),
    ordered by when they were written; the newest is ``latest_checkpoint``'s.

    Args:
        checkpoint_dir: the folder Saver.save wrote into.
        latest_filename: accepted for TF1 compatibility, unused.
    Returns:
        A ``CheckpointState`` (``model_checkpoint_path``: the newest,
        ``all_model_checkpoint_paths``: all, oldest first; prefixes, as ``Saver.save``
        returns them), or None when there is none.
    Example:
        >>> ckpt = gc.train.get_checkpoint_state("ckpt")
        >>> if ckpt: saver.restore(sess, ckpt.model_checkpoint_path)
    """
    directory = os.fspath(checkpoint_dir)
    latest = latest_checkpoint(directory)
    if latest is None:
        return None
    prefixes = [p for _, p in _checkpoints(directory) if p != latest]
    return CheckpointState(latest, prefixes + [latest])


__all__ = ["CheckpointState", "checkpoint_exists", "get_checkpoint_state", "latest_checkpoint"]
