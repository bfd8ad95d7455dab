"""Checkpoints: variables by name in one ``.npz`` file, saved atomically, restored strictly.

``save`` writes the whole archive to a temporary file in the target's folder, flushes it to
disk, then renames it over the target with ``os.replace`` (atomic on POSIX and Windows): a save
that is interrupted at any point leaves the previous checkpoint intact, and never a half file
under the checkpoint's name. ``restore`` checks every name, shape and dtype before it changes
anything, and lists every mismatch at once.

The file is fsynced before the rename and its folder after it, so a finished save survives a
power loss too; temporary files that interrupted saves left behind (``.<name>.npz.XXXXXXXX.tmp``,
older than ``STALE_SECONDS``) are removed by the next save into the folder. Files get the
mode the umask gives (as TF1's), not the temporary file's 0600. A full disk or a read-only
folder raises ``ArtifactError`` naming the file, and the previous checkpoint stays as it was.
Like TF1's Saver, a ``checkpoint`` state file in the folder lists the numbered checkpoints
kept, newest last: a new Saver (after a restart) picks the list up, so ``max_to_keep`` still
holds. ``restore`` checks member sizes from the zip directory before decompressing any.

Both work on anything that holds variable values, duck-typed:
- a ``gc.Session``: ``values`` maps variable nodes to arrays;
- a compiled step: ``variables`` maps variable names to arrays.
"""
import json
import os
import re
import zipfile

import numpy as np

from ..errors import ArtifactError, GraphError
from ..runtime import durable

FORMAT = "graphc-checkpoint"
VERSION = 1
_META = "__graphc_checkpoint__"
STATE = "checkpoint"  # TF1's name for the folder's list of kept checkpoints
STALE_SECONDS = durable.STALE_SECONDS  # untouched this long: a save that died
MAX_RATIO = 200  # uncompressed / compressed bytes of a member (Saver stores them uncompressed)
_TEMP = re.compile(r"\.(?P<name>.+\.npz)\.[a-z0-9_]{8}\.tmp")


def _as_dict(var_list):
    """{name: variable or None}: None means 'whatever the holder has under that name'."""
    if var_list is None:
        return None
    if isinstance(var_list, dict):
        return dict(var_list)
    out = {}
    for v in var_list:
        name = v if isinstance(v, str) else v.name
        if name in out:
            raise GraphError(f"Saver: variable name '{name}' appears twice in var_list")
        out[name] = None if isinstance(v, str) else v
    return out


class _Holder:
    """Uniform access to variable values of a Session or of a compiled step."""

    def __init__(self, obj):
        self.obj = obj
        if isinstance(getattr(obj, "values", None), dict) and hasattr(obj, "graph"):
            self.kind = "session"
        elif hasattr(obj, "variables") and hasattr(obj.variables, "keys"):
            self.kind = "step"
        else:
            raise TypeError(f"Saver: expected a gc.Session or a compiled step (an object with "
                            f"a 'variables' mapping), got {type(obj).__name__}")

    def default_vars(self):
        if self.kind == "session":
            return {v.name: v for v in self.obj.graph.get_collection("variables")}
        return {name: None for name in self.obj.variables.keys()}

    def get(self, name, var):
        if self.kind == "session":
            return self.obj.values.get(var)
        value = self.obj.variables.get(name)
        return None if value is None else np.asarray(value)

    def expected(self, name, var):
        """(shape, dtype) the holder wants for ``name``; None when it has no such variable."""
        if var is not None:
            return tuple(var.shape), np.dtype(var.dtype.np)
        value = self.get(name, var)
        return None if value is None else (value.shape, value.dtype)

    def set(self, name, var, value):
        if self.kind == "session":
            self.obj.values[var] = np.array(value, dtype=var.dtype.np)
            return
        # A compiled step hands out its live arrays (``variables`` may be a fresh dict of
        # them each time): write into them, so the step and its fast path see the values.
        current = self.obj.variables.get(name)
        if isinstance(current, np.ndarray) and current.shape == value.shape \
                and current.dtype == value.dtype and current.flags.writeable:
            np.copyto(current, value)
        else:
            self.obj.variables[name] = np.array(value)


class Saver:
    """Saves and restores variables (TF1's tf.train.Saver, in ``.npz`` files).

    Args:
        var_list: variables (or a {checkpoint name: variable} dict); default: every global
            variable of the session's graph (optimizer slots included) when saving from a
            Session, every variable of a compiled step.
        max_to_keep: keep at most this many of the most recent checkpoints written with a
            ``global_step`` suffix (None or 0: keep all).
    Example:
        >>> saver = gc.train.Saver()
        >>> path = saver.save(sess, "ckpt/model", global_step=100)   # "ckpt/model-100"
        >>> saver.restore(sess, path)                                 # reads ckpt/model-100.npz
    """

    def __init__(self, var_list=None, max_to_keep=5, **unused):
        self._vars = _as_dict(var_list)
        self.max_to_keep = max_to_keep
        self.last_checkpoints = []
        self._recovered = set()  # folders whose state file this Saver has read

    def _selection(self, holder):
        return self._vars if self._vars is not None else holder.default_vars()

    def save(self, sess, save_path, global_step=None, **unused):
        """Write the variables to ``save_path`` (``.npz`` appended if missing), atomically.

        Args:
            sess: a Session or a compiled step.
            save_path: the checkpoint's prefix, as TF1's (a path ending in ``.npz`` names
                the file itself); its folder is created if needed.
            global_step: an int (or int variable) appended as ``-<step>``.
        Returns:
            TF1's prefix: ``save_path``, or ``save_path-<step>`` with a global step
            (``"ckpt/model.ckpt-1000"``, the file being ``ckpt/model.ckpt-1000.npz``);
            ``restore``, ``latest_checkpoint`` and ``get_checkpoint_state`` use the same.
        Raises:
            GraphError: a variable without a value (not initialized).
        """
        holder = _Holder(sess)
        arrays, missing = {}, []
        for name, var in sorted(self._selection(holder).items()):
            value = holder.get(name, var)
            if value is None:
                missing.append(name)
            else:
                arrays[name] = np.array(value, order="C")  # ascontiguousarray makes 0-d 1-d
        if missing:
            raise GraphError(f"Saver.save: {len(missing)} variable(s) have no value: "
                             + ", ".join(missing),
                             hint="run gc.global_variables_initializer() first")
        prefix = _checkpoint_prefix(save_path, global_step, sess)
        path = _file_of(prefix)
        meta = {"format": FORMAT, "version": VERSION,
                "variables": {n: [list(a.shape), a.dtype.str] for n, a in arrays.items()}}
        arrays[_META] = np.array(json.dumps(meta))
        _write_atomically(path, arrays)
        self._remember(prefix, global_step is not None)
        return prefix

    def restore(self, sess, save_path):
        """Load the variables from ``save_path`` (the prefix ``save`` returned, or the
        ``.npz`` file itself) into ``sess`` after checking all of them.

        Entries of the checkpoint that this Saver does not ask for are ignored (restoring a
        subset is allowed); missing names, other shapes or other dtypes are errors.

        Raises:
            ArtifactError: unreadable file, or names/shapes/dtypes that do not match (every
                mismatch is listed); nothing is changed then.
        """
        holder = _Holder(sess)
        path = _existing_path(save_path)
        stored = _read_checkpoint(path)
        problems, plan = [], []
        for name, var in sorted(self._selection(holder).items()):
            want = holder.expected(name, var)
            if name not in stored:
                problems.append(f"'{name}': missing from the checkpoint")
                continue
            arr = stored[name]
            if want is not None and tuple(arr.shape) != tuple(want[0]):
                problems.append(f"'{name}': shape {list(arr.shape)} in the checkpoint, "
                                f"{list(want[0])} expected")
            elif want is not None and arr.dtype != want[1]:
                problems.append(f"'{name}': dtype {arr.dtype.name} in the checkpoint, "
                                f"{want[1].name} expected")
            else:
                plan.append((name, var, arr))
        if problems:
            extra = sorted(set(stored) - set(self._selection(holder)))
            details = problems + ([f"the checkpoint also holds: {', '.join(extra)}"]
                                  if extra else [])
            raise ArtifactError(f"Saver.restore: checkpoint '{path}' does not match "
                                f"({len(problems)} problem(s))", details,
                                hint="restore into the graph that wrote it, or pass "
                                     "var_list= to restore a subset")
        for name, var, arr in plan:
            holder.set(name, var, arr)

    def _remember(self, prefix, numbered):
        """Record the checkpoint just written (its prefix, as TF1's ``last_checkpoints``)."""
        folder = os.path.dirname(os.path.abspath(prefix))
        if numbered and folder not in self._recovered:  # a restart: the list is on disk
            self._recovered.add(folder)
            known = {os.path.abspath(p) for p in self.last_checkpoints}
            self.last_checkpoints[:0] = [p for p in _read_state(folder)
                                         if os.path.isfile(_file_of(p)) and p not in known]
        self.last_checkpoints = [p for p in self.last_checkpoints
                                 if os.path.abspath(p) != os.path.abspath(prefix)] + [prefix]
        if numbered and self.max_to_keep:
            while len(self.last_checkpoints) > self.max_to_keep:
                old = _file_of(self.last_checkpoints.pop(0))
                if os.path.exists(old):
                    os.remove(old)
        if numbered:
            _write_state(folder, [p for p in self.last_checkpoints
                                  if os.path.dirname(os.path.abspath(p)) == folder])


def _read_state(folder):
    """The checkpoints the folder's state file lists, oldest first (absolute prefixes); [] when
    there is none or it does not parse (it only decides what ``max_to_keep`` deletes). Lists
    written before ``save`` returned prefixes name the ``.npz`` files; those are read too."""
    try:
        with open(os.path.join(folder, STATE), encoding="utf-8") as f:
            text = f.read(1 << 20)
    except (OSError, UnicodeDecodeError):
        return []
    names = re.findall(r'^all_model_checkpoint_paths: "((?:[^"\\]|\\.)*)"$', text, re.M)
    out = []
    for name in names:
        name = name.replace('\\"', '"').replace("\\\\", "\\")
        path = os.path.join(folder, name)
        if os.path.basename(name) == name and os.path.isfile(_file_of(path)):  # ours
            out.append(_prefix_of(path))
    return out


def _write_state(folder, paths):
    """TF1's ``checkpoint`` text file: the newest checkpoint and all kept ones, oldest first
    (names relative to the folder, as TF1 writes them)."""
    def quoted(p):
        return '"' + os.path.basename(p).replace("\\", "\\\\").replace('"', '\\"') + '"'
    if not paths:
        return
    lines = [f"model_checkpoint_path: {quoted(paths[-1])}"]
    lines += [f"all_model_checkpoint_paths: {quoted(p)}" for p in paths]
    _replace_file(os.path.join(folder, STATE),
                  lambda f: f.write(("\n".join(lines) + "\n").encode("utf-8")))


def _checkpoints(directory):
    """The ``.npz`` checkpoints in ``directory``, oldest first (by modification time)."""
    if not os.path.isdir(directory):
        return []
    files = [os.path.join(directory, f) for f in os.listdir(directory)
             if f.endswith(".npz") and not f.startswith(".")]
    return sorted(files, key=lambda f: (os.stat(f).st_mtime_ns, f))


def latest_checkpoint(directory):
    """The prefix of the most recently written checkpoint in ``directory`` (as ``Saver.save``
    returned it: ``"ckpt/model-1000"``), or None.

    Example:
        >>> saver.restore(sess, gc.train.latest_checkpoint("ckpt"))
    """
    files = _checkpoints(directory)
    return _prefix_of(files[-1]) if files else None


class CheckpointState:
    """What ``get_checkpoint_state`` returns: TF1's two fields."""

    def __init__(self, model_checkpoint_path, all_model_checkpoint_paths):
        self.model_checkpoint_path = model_checkpoint_path
        self.all_model_checkpoint_paths = list(all_model_checkpoint_paths)

    def __repr__(self):
        return (f"CheckpointState(model_checkpoint_path={self.model_checkpoint_path!r}, "
                f"all_model_checkpoint_paths={self.all_model_checkpoint_paths!r})")


def get_checkpoint_state(checkpoint_dir, latest_filename=None):
    """TF1's ``tf.train.get_checkpoint_state`` over the ``.npz`` files Saver writes.

    graphc keeps no separate index file: the checkpoints are the folder's ``.npz`` files,
    ordered by when they were written.

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
    prefixes = [_prefix_of(f) for f in _checkpoints(os.fspath(checkpoint_dir))]
    return CheckpointState(prefixes[-1], prefixes) if prefixes else None


def _checkpoint_prefix(save_path, global_step, sess):
    """TF1's checkpoint prefix: ``save_path``, with ``-<step>`` for a global step (put
    before a ``.npz`` that names the file: ``m.npz`` at step 3 is ``m-3``)."""
    path = os.fspath(save_path)
    if global_step is not None:
        if not isinstance(global_step, (int, np.integer)):
            global_step = int(sess.run(global_step))  # a step variable: its current value
        path = f"{path.removesuffix('.npz')}-{int(global_step)}"
    return path


def _file_of(prefix):
    """The ``.npz`` file holding the checkpoint ``prefix`` (a path ending in ``.npz`` is it)."""
    return prefix if prefix.endswith(".npz") else prefix + ".npz"


def _prefix_of(path):
    return path.removesuffix(".npz")


def checkpoint_exists(checkpoint_prefix):
    """Whether a checkpoint ``Saver.restore`` can read is at ``checkpoint_prefix`` (the path
    ``Saver.save`` returned, or that path without ``.npz``), as TF1's
    ``tf.train.checkpoint_exists``.

    Example:
        >>> if gc.train.checkpoint_exists(path):
        ...     saver.restore(sess, path)
    """
    path = os.fspath(checkpoint_prefix)
    return any(os.path.isfile(p) for p in (path, path + ".npz"))


def _existing_path(save_path):
    path = os.fspath(save_path)
    for candidate in (path, path + ".npz"):
        if os.path.isfile(candidate):
            return candidate
    raise ArtifactError(f"Saver.restore: no checkpoint at '{path}'",
                        hint="pass the path that Saver.save returned")


def _write_atomically(path, arrays):
    """Write an npz through ``runtime.durable.replace_file`` (temp file, fsync, rename, fsync
    of the folder, the umask's mode); first remove temp files that interrupted saves left."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise _save_error(path, e) from None
    remove_stale_temporaries(folder)
    _replace_file(path, lambda f: np.savez(f, **arrays))


def _replace_file(path, write):
    try:
        durable.replace_file(path, write, "checkpoint")
    except ArtifactError as e:
        raise ArtifactError("Saver.save: " + e.message, e.details, hint=e.hint) from None


def _save_error(path, e):
    err = durable.write_error(path, e, "checkpoint")
    return ArtifactError("Saver.save: " + err.message, err.details, hint=err.hint)


def remove_stale_temporaries(folder, older_than=None):
    """Remove the temp files of saves that died in ``folder``: only names Saver makes
    (``.<name>.npz.XXXXXXXX.tmp``, files owned by this user) and only ones untouched for
    ``older_than`` seconds (``STALE_SECONDS``), so a save running in another process keeps
    its file. Returns the paths removed."""
    return durable.remove_stale_temporaries(
        folder, _TEMP, STALE_SECONDS if older_than is None else older_than)


def _read_checkpoint(path):
    """{name: array} of a checkpoint; ArtifactError when it is not one."""
    try:
        _check_sizes(path)
        with np.load(path, allow_pickle=False) as archive:
            stored = {name: archive[name] for name in archive.files}
    except ArtifactError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as e:
        raise ArtifactError(f"Saver.restore: '{path}' is not a readable checkpoint "
                            f"({type(e).__name__}: {e})",
                            hint="the file is truncated or corrupted; restore an earlier "
                                 "checkpoint") from None
    meta = stored.pop(_META, None)
    if meta is None:
        raise ArtifactError(f"Saver.restore: '{path}' is an .npz file but not a graphc "
                            "checkpoint (no metadata entry)")
    info = _metadata(path, meta)
    if info.get("format") != FORMAT or info.get("version", 0) > VERSION:
        raise ArtifactError(f"Saver.restore: '{path}' has format {info.get('format')!r} "
                            f"version {info.get('version')}; this graphc reads {FORMAT!r} "
                            f"up to version {VERSION}")
    return stored


def _metadata(path, meta):
    """The checkpoint's metadata entry as a dict, or ArtifactError naming the file."""
    problem = None
    try:
        info = json.loads(str(meta[()]) if meta.ndim == 0 and meta.dtype.kind == "U" else "")
    except ValueError as e:  # JSONDecodeError included
        info, problem = None, f"not JSON ({e})"
    if problem is None and not isinstance(info, dict):
        problem = f"a JSON {type(info).__name__}, not an object"
    elif problem is None and (type(info.get("version", 0)) is not int):
        problem = f"version {info.get('version')!r} is not an integer"
    if problem is not None:
        raise ArtifactError(f"Saver.restore: '{path}' has unreadable checkpoint metadata: "
                            f"{problem}", hint="the file was not written by graphc's Saver, "
                                               "or was edited; restore an earlier checkpoint")
    return info


def _check_sizes(path):
    """Member sizes from the zip directory, before anything is decompressed."""
    with zipfile.ZipFile(path) as z:
        for info in z.infolist():
            if info.file_size > (1 << 16) and \
                    info.file_size > MAX_RATIO * max(info.compress_size, 1):
                raise ArtifactError(
                    f"Saver.restore: '{path}' member '{info.filename}' would expand from "
                    f"{info.compress_size} to {info.file_size} bytes (more than {MAX_RATIO}:1)"
                    ": refusing to decompress it",
                    hint="Saver stores arrays uncompressed; this file was not written by it")


__all__ = ["Saver", "CheckpointState", "checkpoint_exists", "get_checkpoint_state",
           "latest_checkpoint", "remove_stale_temporaries"]
