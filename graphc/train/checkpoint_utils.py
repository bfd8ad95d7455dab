"""TF1's checkpoint readers: ``NewCheckpointReader``, ``load_checkpoint``, ``list_variables``,
``load_variable``, on graphc's ``.npz`` checkpoints and TensorFlow's alike.

They look into a checkpoint without a graph or a session: which variables it holds, their
shapes and dtypes, and their values as NumPy arrays (read on request from a TensorFlow
checkpoint, each one's CRC checked).
"""
import difflib
import os

from ..errors import ArtifactError, DTypeError
from ..ir.dtypes import as_dtype
from .checkpoint_management import latest_checkpoint
from .saver import open_checkpoint


class CheckpointReader:
    """What ``NewCheckpointReader`` returns (TF1's ``CheckpointReader``).

    Args:
        prefix: a checkpoint's prefix, as ``Saver.save`` returned it or TensorFlow wrote it.
    Raises:
        ArtifactError: no checkpoint there, or an unreadable one.
    Example:
        >>> reader = gc.train.NewCheckpointReader("ckpt/model.ckpt-1000")
        >>> reader.get_variable_to_shape_map()["dense/kernel"]
        [784, 10]
    """

    def __init__(self, prefix):
        self._ckpt = open_checkpoint(prefix)

    def get_variable_to_shape_map(self):
        """{name: shape as a list of ints}."""
        return {n: list(self._ckpt.shape(n)) for n in self._ckpt.names()}

    def get_variable_to_dtype_map(self):
        """{name: dtype}: a graphc DType where graphc has it (``gc.float32``...), else the
        NumPy dtype (``float16``, ``uint16``...), or the TensorFlow dtype's name for one
        NumPy lacks (``"DT_STRING (TensorFlow dtype 7)"``)."""
        out = {}
        for n in self._ckpt.names():
            dtype = self._ckpt.dtype(n)
            if dtype is None:
                out[n] = self._ckpt.entries[n].dtype_name()
                continue
            try:
                out[n] = as_dtype(dtype)
            except DTypeError:
                out[n] = dtype
        return out

    def has_tensor(self, name):
        return _strip(name) in self._ckpt.entries

    def get_tensor(self, name):
        """The value of ``name`` (a new NumPy array).

        Raises:
            ArtifactError: no such tensor (close names are listed), or it cannot be read.
        """
        key = _strip(name)
        if key not in self._ckpt.entries:
            close = difflib.get_close_matches(key, self._ckpt.names(), n=5)
            raise ArtifactError(f"checkpoint '{self._ckpt.path}' has no tensor '{key}'",
                                [f"close names: {', '.join(close)}"] if close else (),
                                hint="list them with gc.train.list_variables(prefix)")
        return self._ckpt.read(key).copy()

    def debug_string(self):
        """One line per tensor: ``name (dtype) [shape]``, as bytes (TF1's)."""
        return "".join(f"{n} ({self._dtype_text(n)}) {list(self._ckpt.shape(n))}\n"
                       for n in self._ckpt.names()).encode("utf-8")

    def _dtype_text(self, name):
        dtype = self._ckpt.dtype(name)
        return dtype.name if dtype is not None else self._ckpt.entries[name].dtype_name()


def _strip(name):
    """TF1 accepts ``"dense/kernel:0"`` for the tensor ``dense/kernel``."""
    return name[:-2] if name.endswith(":0") else name


def NewCheckpointReader(filepattern):  # noqa: N802 (TF1's name)
    """A ``CheckpointReader`` of the checkpoint ``filepattern`` (a prefix).

    Example:
        >>> reader = gc.train.NewCheckpointReader(gc.train.latest_checkpoint("ckpt"))
        >>> w = reader.get_tensor("dense/kernel")
    """
    return CheckpointReader(os.fspath(filepattern))


def _resolve(ckpt_dir_or_file):
    path = os.fspath(ckpt_dir_or_file)
    if os.path.isdir(path):
        latest = latest_checkpoint(path)
        if latest is None:
            raise ArtifactError(f"no checkpoint in the folder '{path}'",
                                hint="pass a checkpoint's prefix, or the folder Saver.save "
                                     "wrote into")
        return latest
    return path


def load_checkpoint(ckpt_dir_or_file):
    """A ``CheckpointReader`` of a checkpoint, or of the newest one in a folder (TF1's
    ``tf.train.load_checkpoint``).

    Example:
        >>> gc.train.load_checkpoint("ckpt").get_tensor("global_step")
    """
    return CheckpointReader(_resolve(ckpt_dir_or_file))


def list_variables(ckpt_dir_or_file):
    """[(name, shape)] of a checkpoint (or a folder's newest), sorted by name.

    Example:
        >>> gc.train.list_variables("ckpt")
        [('dense/bias', [10]), ('dense/kernel', [784, 10]), ('global_step', [])]
    """
    shapes = load_checkpoint(ckpt_dir_or_file).get_variable_to_shape_map()
    return sorted(shapes.items())


def load_variable(ckpt_dir_or_file, name):
    """The value of the variable ``name`` in a checkpoint (or a folder's newest).

    Example:
        >>> kernel = gc.train.load_variable("ckpt", "dense/kernel")
    """
    return load_checkpoint(ckpt_dir_or_file).get_tensor(name)


__all__ = ["CheckpointReader", "NewCheckpointReader", "load_checkpoint", "list_variables",
           "load_variable"]
