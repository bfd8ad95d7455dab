"""Checkpoints: variables by name in one ``.npz`` file (or TensorFlow's format), saved
atomically, restored strictly.

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
holds (``checkpoint_management`` reads and writes it, and finds the newest checkpoint).
``restore`` checks member sizes from the zip directory before decompressing any.

TensorFlow's checkpoints (the V2 bundle: ``prefix.index`` + ``prefix.data-00000-of-00001``,
written by TF1's ``tf.train.Saver`` or TF 2's ``tf.compat.v1.train.Saver``) are restored the
same way, matching variables by name with the same checks (``tf_bundle``); ``save(...,
write_tf_checkpoint=True)`` writes one, which TensorFlow restores. ``latest_checkpoint`` and
``get_checkpoint_state`` see both kinds, and honour the newest checkpoint a TensorFlow folder's
``checkpoint`` file names. A save from a Session also writes TF1's ``prefix.meta`` (graphc's JSON
meta graph, ``export_meta_graph``) unless ``write_meta_graph=False``; ``max_to_keep`` removes
every file of an old checkpoint.

Both work on anything that holds variable values, duck-typed:
- a ``gc.Session``: ``values`` maps variable nodes to arrays;
- a compiled step: ``variables`` maps variable names to arrays.
"""
import json
import os
import re
import warnings
import zipfile

import numpy as np

from ..errors import ArtifactError, GraphError
from ..runtime import durable
from . import checkpoint_management as cm
from . import tf_bundle
from .checkpoint_management import (CheckpointState, checkpoint_exists,  # noqa: F401
                                    get_checkpoint_state, latest_checkpoint)

FORMAT = "graphc-checkpoint"
VERSION = 1
_META = "__graphc_checkpoint__"
STALE_SECONDS = durable.STALE_SECONDS  # untouched this long: a save that died
MAX_RATIO = 200  # uncompressed / compressed bytes of a member (Saver stores them uncompressed)
# graphc's optimizer variables -> TF1's names for them (TF1 numbers a variable's second slot
# "_1"). A TensorFlow checkpoint is written with TF1's names; restore falls back to them.
TF1_NAMES = [(re.compile(r"(.+)/Adam/m"), r"\1/Adam"), (re.compile(r"(.+)/Adam/v"), r"\1/Adam_1"),
             (re.compile(r"Adam/(beta[12]_power)"), r"\1"),
             (re.compile(r"(.+)/Momentum/momentum"), r"\1/Momentum"),
             (re.compile(r"(.+)/Adagrad/accumulator"), r"\1/Adagrad")]
# export_meta_graph, set by the package (graphc/train/__init__.py): meta_graph imports this
# module (import_meta_graph returns a Saver), so this one cannot import meta_graph
META_GRAPH_EXPORT = []
_TEMP = re.compile(r"\.(?P<name>.+\.(?:npz|index|meta|data-\d{5}-of-\d{5}))\.[a-z0-9_]{8}\.tmp")


def tf1_name(name):
    """TF1's name of graphc's optimizer variable ``name`` (``dense/kernel/Adam/m`` ->
    ``dense/kernel/Adam``, ``Adam/beta1_power`` -> ``beta1_power``); other names unchanged."""
    for pattern, replacement in TF1_NAMES:
        if pattern.fullmatch(name):
            return pattern.sub(replacement, name)
    return name


def _as_dict(var_list):
    """{name: variable or None}: None means 'whatever the holder has under that name'."""
    if var_list is None:
        return None
    if isinstance(var_list, dict):
        return dict(var_list)
    out = {}
    for v in var_list:
        name = v if isinstance(v, str) else v.node_name
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
            return {v.node_name: v for v in self.obj.graph.get_collection("variables")}
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
    """Saves and restores variables (TF1's tf.train.Saver, in ``.npz`` files or TensorFlow's
    own checkpoint format).

    Args:
        var_list: variables (or a {checkpoint name: variable} dict); default: every global
            variable of the session's graph (optimizer slots included) when saving from a
            Session, every variable of a compiled step.
        max_to_keep: keep at most this many of the most recent checkpoints written with a
            ``global_step`` suffix (None or 0: keep all).
        write_tf_checkpoint: the default of ``save``'s argument of that name.
    Example:
        >>> saver = gc.train.Saver()
        >>> path = saver.save(sess, "ckpt/model", global_step=100)   # "ckpt/model-100"
        >>> saver.restore(sess, path)                                 # reads ckpt/model-100.npz
        >>> saver.restore(sess, "tf_run/model.ckpt-5000")  # written by TensorFlow
    """

    def __init__(self, var_list=None, max_to_keep=5, write_tf_checkpoint=False, **unused):
        self._vars = _as_dict(var_list)
        self.max_to_keep = max_to_keep
        self.write_tf_checkpoint = write_tf_checkpoint
        self.last_checkpoints = []
        self._recovered = set()  # folders whose state file this Saver has read
        self._meta_warned = False

    def _selection(self, holder):
        return self._vars if self._vars is not None else holder.default_vars()

    def save(self, sess, save_path, global_step=None, write_meta_graph=True,
             write_tf_checkpoint=None, **unused):
        """Write the variables to ``save_path`` (``.npz`` appended if missing), atomically.

        Args:
            sess: a Session or a compiled step.
            save_path: the checkpoint's prefix, as TF1's (a path ending in ``.npz`` names
                the file itself); its folder is created if needed.
            global_step: an int (or int variable) appended as ``-<step>``.
            write_meta_graph: also write ``<prefix>.meta``, the session's graph as
                ``export_meta_graph`` writes it (as TF1's Saver; nothing for a compiled
                step). A graph the meta format cannot hold gives a warning, once per Saver,
                and no ``.meta``; the checkpoint is written all the same.
            write_tf_checkpoint: write TensorFlow's checkpoint format instead of the
                ``.npz``: ``<prefix>.index`` and ``<prefix>.data-00000-of-00001``, which
                TensorFlow reads (``tf.train.load_checkpoint``, ``tf.compat.v1.train.Saver
                .restore``), optimizer variables under TF1's names (``tf1_name``); default:
                the Saver's ``write_tf_checkpoint``.
        Returns:
            TF1's prefix: ``save_path``, or ``save_path-<step>`` with a global step
            (``"ckpt/model.ckpt-1000"``, the file being ``ckpt/model.ckpt-1000.npz``);
            ``restore``, ``latest_checkpoint`` and ``get_checkpoint_state`` use the same.
        Raises:
            GraphError: a variable without a value (not initialized), or (TensorFlow's
                format) of a dtype that format does not have.
        Example:
            >>> saver.save(sess, "ckpt/model.ckpt", global_step=step, write_tf_checkpoint=True)
            'ckpt/model.ckpt-1000'
        """
        if write_tf_checkpoint is None:
            write_tf_checkpoint = self.write_tf_checkpoint
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
        if write_tf_checkpoint:
            renamed, sources = {}, {}
            for n, a in arrays.items():
                renamed[tf1_name(n)] = a
                sources.setdefault(tf1_name(n), []).append(n)
            clashes = [f"{' and '.join(v)} -> '{k}'" for k, v in sources.items() if len(v) > 1]
            if clashes:
                raise GraphError("Saver.save: variables that would have the same TF1 name",
                                 clashes, hint="rename one, or save graphc's .npz format")
            try:  # every dtype checked before any file is touched
                index, ordered = tf_bundle.bundle_index(renamed)
            except ValueError as e:
                raise GraphError(f"Saver.save: {e}", hint="cast it to a dtype TensorFlow "
                                 "checkpoints have, or save graphc's .npz format") from None
            _prepare_folder(tf_bundle.index_file(prefix))
            tf_bundle.write_bundle(prefix, index, ordered, _replace_file)
        else:
            meta = {"format": FORMAT, "version": VERSION,
                    "variables": {n: [list(a.shape), a.dtype.str] for n, a in arrays.items()}}
            arrays[_META] = np.array(json.dumps(meta))
            _write_atomically(cm.file_of(prefix), arrays)
        if write_meta_graph and holder.kind == "session":
            self._write_meta_graph(prefix, sess.graph)
        self._remember(prefix, global_step is not None)
        return prefix

    def _write_meta_graph(self, prefix, graph):
        """``<prefix>.meta`` (atomically); a graph the format cannot hold: a warning (once per
        Saver) and no file, and an older ``.meta`` of that prefix is removed (it would describe
        another graph)."""
        path = cm.meta_file(prefix)
        try:
            text = META_GRAPH_EXPORT[0](None, graph=graph)
        except GraphError as e:
            if not self._meta_warned:
                self._meta_warned = True
                warnings.warn(f"Saver.save: no meta graph written for '{prefix}' (the "
                              f"checkpoint is saved): {e.message}", stacklevel=3)
            if os.path.isfile(path):
                os.remove(path)
            return
        _replace_file(path, lambda f: f.write(text.encode("utf-8")))

    def restore(self, sess, save_path):
        """Load the variables from ``save_path`` (the prefix ``save`` returned, or the
        ``.npz`` file itself; or the prefix of a TensorFlow checkpoint, whose ``.index`` and
        ``.data-*`` files are there) into ``sess`` after checking all of them.

        Entries of the checkpoint that this Saver does not ask for are ignored (restoring a
        subset is allowed); missing names, other shapes or other dtypes are errors. Every
        value is read (and a TensorFlow checkpoint's CRCs checked) before any is assigned.
        An optimizer variable missing under graphc's name is looked up under TF1's
        (``tf1_name``: ``dense/kernel/Adam/m`` is TF1's ``dense/kernel/Adam``).

        Raises:
            ArtifactError: unreadable or damaged files, or names/shapes/dtypes that do not
                match (every mismatch is listed); nothing is changed then.
        Example:
            >>> gc.train.Saver().restore(sess, "tf_run/model.ckpt-5000")
        """
        holder = _Holder(sess)
        stored = open_checkpoint(save_path)
        path = stored.path
        problems, plan = [], []
        for name, var in sorted(self._selection(holder).items()):
            want = holder.expected(name, var)
            key = name if name in stored.entries else tf1_name(name)
            if key not in stored.entries:
                problems.append(f"'{name}': missing from the checkpoint")
                continue
            shape, dtype = tuple(stored.shape(key)), stored.dtype(key)
            if want is not None and shape != tuple(want[0]):
                problems.append(f"'{name}': shape {list(shape)} in the checkpoint, "
                                f"{list(want[0])} expected")
            elif dtype is None:
                problems.append(f"'{name}': dtype {stored.entries[key].dtype_name()} in the "
                                "checkpoint, which graphc does not read")
            elif want is not None and dtype != want[1]:
                problems.append(f"'{name}': dtype {dtype.name} in the checkpoint, "
                                f"{want[1].name} expected")
            else:
                plan.append((name, var, key))
        if problems:
            extra = sorted(set(stored.entries) - set(self._selection(holder))
                           - {key for _, _, key in plan})
            details = problems + ([f"the checkpoint also holds: {', '.join(extra)}"]
                                  if extra else [])
            raise ArtifactError(f"Saver.restore: checkpoint '{path}' does not match "
                                f"({len(problems)} problem(s))", details,
                                hint="restore into the graph that wrote it, or pass "
                                     "var_list= to restore a subset")
        values = [(name, var, stored.read(key)) for name, var, key in plan]
        for name, var, arr in values:
            holder.set(name, var, arr)

    def _remember(self, prefix, numbered):
        """Record the checkpoint just written (its prefix, as TF1's ``last_checkpoints``)."""
        folder = os.path.dirname(os.path.abspath(prefix))
        if numbered and folder not in self._recovered:  # a restart: the list is on disk
            self._recovered.add(folder)
            known = {os.path.abspath(p) for p in self.last_checkpoints}
            self.last_checkpoints[:0] = [p for p in cm.read_state(folder)
                                         if cm.exists(p) and p not in known]
        self.last_checkpoints = [p for p in self.last_checkpoints
                                 if os.path.abspath(p) != os.path.abspath(prefix)] + [prefix]
        if numbered and self.max_to_keep:
            while len(self.last_checkpoints) > self.max_to_keep:
                for old in cm.files_of(self.last_checkpoints.pop(0)):
                    if os.path.exists(old):
                        os.remove(old)
        if numbered:
            cm.write_state(folder, [p for p in self.last_checkpoints
                                    if os.path.dirname(os.path.abspath(p)) == folder],
                           _replace_file)


def _checkpoint_prefix(save_path, global_step, sess):
    """TF1's checkpoint prefix: ``save_path``, with ``-<step>`` for a global step (put
    before a ``.npz`` that names the file: ``m.npz`` at step 3 is ``m-3``)."""
    path = os.fspath(save_path)
    if global_step is not None:
        if not isinstance(global_step, (int, np.integer)):
            global_step = int(sess.run(global_step))  # a step variable: its current value
        path = f"{path.removesuffix('.npz')}-{int(global_step)}"
    return path


def open_checkpoint(save_path):
    """The checkpoint at ``save_path``: a ``tf_bundle.BundleReader`` for a TensorFlow
    checkpoint, else an ``NpzCheckpoint`` (both give ``path``, ``entries``, ``names()``,
    ``shape``, ``dtype`` and ``read``). When a prefix has both kinds, the newer is read.

    Raises:
        ArtifactError: nothing there, or a file that is not a readable checkpoint.
    """
    path = os.fspath(save_path)
    bundle = tf_bundle.index_file(path)
    candidates = [p for p in (path, path + ".npz", bundle) if os.path.isfile(p)]
    if not candidates:
        raise ArtifactError(f"Saver.restore: no checkpoint at '{path}'",
                            hint="pass the path that Saver.save returned")
    if candidates[-1] == bundle and (len(candidates) == 1 or os.stat(bundle).st_mtime_ns
                                     >= os.stat(candidates[0]).st_mtime_ns):
        return tf_bundle.BundleReader(path)
    return NpzCheckpoint(candidates[0])


class NpzCheckpoint:
    """A graphc ``.npz`` checkpoint, read whole, behind the interface of ``BundleReader``."""

    def __init__(self, path):
        self.path = path
        self.entries = _read_checkpoint(path)

    def names(self):
        return sorted(self.entries)

    def shape(self, name):
        return self.entries[name].shape

    def dtype(self, name):
        return self.entries[name].dtype

    def read(self, name):
        return self.entries[name]


def _prepare_folder(path):
    """Create ``path``'s folder; remove temp files that interrupted saves left there."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise _save_error(path, e) from None
    remove_stale_temporaries(folder)


def _write_atomically(path, arrays):
    """Write an npz through ``runtime.durable.replace_file`` (temp file, fsync, rename, fsync
    of the folder, the umask's mode)."""
    _prepare_folder(path)
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
           "latest_checkpoint", "open_checkpoint", "remove_stale_temporaries"]
