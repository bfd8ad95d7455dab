"""Datasets and minibatching for examples, tests and benchmarks; NumPy only, never the network.

The layer's contract: every function here works offline and returns plain NumPy arrays. The
8x8 digits ship inside the package (``digits.npz``: the 1797-sample UCI optdigits test set,
the same samples scikit-learn distributes as ``digits.csv.gz``; see ``DIGITS_LICENSE.txt``).
MNIST is read from IDX files the user already has. ``Dataset`` and its iterators (TF1's
tf.data) run input pipelines on the host and feed their elements to ``Session.run``.
"""

import gzip
import os

import numpy as np

from .dataset import AUTOTUNE, Dataset, experimental  # noqa: F401
from .iterator import Iterator, make_initializable_iterator, make_one_shot_iterator  # noqa

__all__ = ["load_digits", "train_test_split", "batches", "one_hot", "load_mnist_idx",
           "Dataset", "Iterator", "make_one_shot_iterator", "make_initializable_iterator"]

_HERE = os.path.dirname(os.path.abspath(__file__))


def _as_features(images, flatten, normalize, dtype, scale):
    x = images.reshape(len(images), -1) if flatten else images
    x = x.astype(dtype)
    if normalize:
        x /= scale
    return x


def load_digits(flatten=True, normalize=True, dtype=np.float32):
    """Load the 1797 embedded 8x8 handwritten digits (10 classes).

    Args:
        flatten: return images as [1797, 64] rather than [1797, 8, 8].
        normalize: divide the pixel counts (0..16) by 16, giving values in [0, 1].
        dtype: dtype of the images.

    Returns:
        (x, y): x of `dtype`, y int64 labels 0..9 of shape [1797].

    Example:
        >>> x, y = load_digits()
        >>> x.shape, y[:3]
        ((1797, 64), array([0, 1, 2]))
    """
    with np.load(os.path.join(_HERE, "digits.npz")) as archive:
        images, labels = archive["images"], archive["labels"]
    return _as_features(images, flatten, normalize, dtype, 16.0), labels.astype(np.int64)


def train_test_split(x, y, test_fraction=0.2, seed=0):
    """Split samples into a random train part and test part (sklearn's return order).

    Args:
        x, y: arrays with the same first dimension n.
        test_fraction: share of samples in the test part, rounded to the nearest count.
        seed: seed of the permutation; the same seed gives the same split.

    Returns:
        (x_train, x_test, y_train, y_test)

    Raises:
        ValueError: if x and y differ in length or either part would be empty.

    Example:
        >>> x_tr, x_te, y_tr, y_te = train_test_split(*load_digits(), test_fraction=0.25)
        >>> len(x_tr), len(x_te)
        (1348, 449)
    """
    n = _common_length(x, y)
    n_test = int(round(n * test_fraction))
    if not 0 < n_test < n:
        raise ValueError(f"train_test_split: test_fraction={test_fraction} of {n} samples "
                         f"gives {n_test} test samples; both parts must be non-empty")
    order = np.random.default_rng(seed).permutation(n)
    test, train = order[:n_test], order[n_test:]
    return x[train], x[test], y[train], y[test]


def batches(x, y, batch_size, seed=None, shuffle=True, drop_last=False, rank=0, size=1):
    """Yield one epoch of minibatches ``(x_batch, y_batch)``, optionally sharded over ranks.

    Sharding: every rank computes the same permutation of the n samples and cuts it into
    global batches of ``batch_size * size`` samples; rank ``r`` takes the ``r``-th run of
    ``batch_size`` samples of each global batch. Hence, in rank order, the ranks' k-th batches
    concatenate to exactly the k-th batch of
    ``batches(x, y, batch_size * size, seed, shuffle, drop_last)``, shares are disjoint, and
    all ranks take the same number of steps of equal size, so averaging the ranks' mean
    gradients gives the single-process mean gradient.

    The last global batch, if partial (m samples): dropped when ``drop_last``; otherwise each
    rank takes its run of ``m // size`` samples of it, and the ``m % size`` (< size) samples
    left over are skipped this epoch (none are when size == 1), keeping shares equal.

    One call is one epoch; pass ``seed + epoch`` to reshuffle each epoch.

    Args:
        x, y: arrays with the same first dimension n.
        batch_size: samples per batch on each rank.
        seed: permutation seed; None draws fresh entropy (only allowed when size == 1).
        shuffle: if False, samples come in their stored order.
        drop_last: skip a final batch smaller than batch_size.
        rank, size: this process's index and the number of processes.

    Yields:
        (x_batch, y_batch): copies, first dimension batch_size (or smaller for the last one).

    Raises:
        ValueError: on a bad batch_size/rank/size, mismatched lengths, or a shuffled shard
            without a seed (ranks would disagree on the permutation).

    Example:
        >>> x, y = load_digits()
        >>> for xb, yb in batches(x, y, 32, seed=0, rank=1, size=4):
        ...     pass  # 1/4 of each global batch of 128
    """
    n = _common_length(x, y)
    if batch_size < 1:
        raise ValueError(f"batches: batch_size must be >= 1, got {batch_size}")
    if size < 1 or not 0 <= rank < size:
        raise ValueError(f"batches: need 0 <= rank < size, got rank={rank}, size={size}")
    if shuffle and seed is None and size > 1:
        raise ValueError("batches: sharding a shuffled epoch needs a seed shared by all ranks")
    order = np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)
    global_size = batch_size * size
    for start in range(0, n, global_size):
        local = min(global_size, n - start) // size
        if local == 0 or (drop_last and local < batch_size):
            break
        first = start + rank * local
        idx = order[first:first + local]
        yield x[idx], y[idx]


def one_hot(y, n, dtype=np.float32):
    """Encode integer labels as one-hot rows.

    Args:
        y: integer array of any shape with values in [0, n).
        n: number of classes.
        dtype: dtype of the result.

    Returns:
        Array of shape y.shape + (n,).

    Raises:
        ValueError: if a label lies outside [0, n).

    Example:
        >>> one_hot(np.array([2, 0]), 3)
        array([[0., 0., 1.],
               [1., 0., 0.]], dtype=float32)
    """
    y = np.asarray(y)
    if y.size and (y.min() < 0 or y.max() >= n):
        raise ValueError(f"one_hot: labels must lie in [0, {n}), found {y.min()}..{y.max()}")
    return (y[..., None] == np.arange(n)).astype(dtype)


# IDX element types (the third header byte), all stored big-endian.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

# Each MNIST part under the names its distributions use, raw or gzipped.
_MNIST_PARTS = {
    "train images": ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    "train labels": ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
    "test images": ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
    "test labels": ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"),
}


def _read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{path}: not an IDX file (bad magic {data[:4].hex()})")
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(data) != expected:
        raise ValueError(f"{path}: header says shape {shape} ({expected} bytes), "
                         f"file has {len(data)} bytes")
    array = np.frombuffer(data, dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="))


def load_mnist_idx(directory, flatten=True, normalize=True, dtype=np.float32):
    """Read MNIST from the four standard IDX files in a local directory (never downloads).

    Each part is found under its usual name, e.g. ``train-images-idx3-ubyte``, or with a dot
    (``train-images.idx3-ubyte``), each optionally gzipped (``.gz``).

    Args:
        directory: folder holding the files.
        flatten: return images as [N, 784] rather than [N, 28, 28].
        normalize: divide pixels by 255, giving values in [0, 1].
        dtype: dtype of the images.

    Returns:
        ((x_train, y_train), (x_test, y_test)), labels int64.

    Raises:
        FileNotFoundError: naming every missing part and the file names looked for.
        ValueError: if a file is not valid IDX or images and labels differ in count.

    Example:
        >>> (x, y), (x_test, y_test) = load_mnist_idx("~/data/mnist")  # doctest: +SKIP
    """
    directory = os.path.expanduser(os.fspath(directory))
    found, missing = {}, []
    for part, stems in _MNIST_PARTS.items():
        names = [stem + ext for stem in stems for ext in ("", ".gz")]
        paths = [os.path.join(directory, name) for name in names]
        found[part] = next((p for p in paths if os.path.isfile(p)), None)
        if found[part] is None:
            missing.append(f"  {part}: looked for {', '.join(names)}")
    if missing:
        raise FileNotFoundError(
            f"MNIST IDX files missing in {directory!r}:\n" + "\n".join(missing)
            + "\ngraphc never downloads data; put the four MNIST files in that directory.")

    def split(prefix):
        images, labels = _read_idx(found[prefix + " images"]), _read_idx(found[prefix + " labels"])
        if len(images) != len(labels):
            raise ValueError(f"MNIST {prefix}: {len(images)} images but {len(labels)} labels")
        x = _as_features(images, flatten, normalize, dtype, 255.0)
        return x, labels.astype(np.int64)

    return split("train"), split("test")


def _common_length(x, y):
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} samples but y has {len(y)}")
    return len(x)


def __getattr__(name):
    """``tf.data.Dataset`` and friends: a clear error (the table is in graphc/__init__.py)."""
    from .. import missing_attribute
    raise missing_attribute(f"data.{name}", __name__, name)
