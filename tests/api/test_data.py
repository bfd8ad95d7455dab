"""graphc.data: the embedded digits, splitting, seeded and sharded batches, the IDX reader."""

import doctest
import gzip

import numpy as np
import pytest

import graphc.data as gd


def test_digits_shapes_dtypes_and_classes():
    x, y = gd.load_digits()
    assert x.shape == (1797, 64) and x.dtype == np.float32
    assert y.shape == (1797,) and y.dtype == np.int64
    assert x.min() == 0.0 and x.max() == 1.0
    counts = np.bincount(y)
    assert len(counts) == 10 and counts.min() >= 174 and counts.max() <= 183


def test_digits_raw_images():
    images, y = gd.load_digits(flatten=False, normalize=False, dtype=np.uint8)
    assert images.shape == (1797, 8, 8) and images.dtype == np.uint8
    assert images.max() == 16
    x, _ = gd.load_digits(dtype=np.float64)
    np.testing.assert_array_equal(x, images.reshape(1797, 64) / 16.0)


def test_train_test_split_is_a_seeded_partition():
    x = np.arange(100)[:, None] * np.ones((1, 3))
    y = np.arange(100)
    x_tr, x_te, y_tr, y_te = gd.train_test_split(x, y, test_fraction=0.2, seed=1)
    assert len(y_te) == 20 and len(y_tr) == 80
    assert sorted(np.concatenate([y_tr, y_te])) == list(range(100))
    np.testing.assert_array_equal(x_te[:, 0], y_te)  # rows stay paired with labels
    again = gd.train_test_split(x, y, test_fraction=0.2, seed=1)
    np.testing.assert_array_equal(again[3], y_te)
    with pytest.raises(ValueError, match="non-empty"):
        gd.train_test_split(x, y, test_fraction=0.0)
    with pytest.raises(ValueError, match="samples"):
        gd.train_test_split(x, y[:-1])


def _labels(gen):
    return [yb for _, yb in gen]


def test_batches_are_deterministic_for_a_seed():
    x, y = np.arange(50.0)[:, None], np.arange(50)
    first, second = _labels(gd.batches(x, y, 8, seed=3)), _labels(gd.batches(x, y, 8, seed=3))
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    assert [len(b) for b in first] == [8] * 6 + [2]
    assert sorted(np.concatenate(first)) == list(range(50))
    other = np.concatenate(_labels(gd.batches(x, y, 8, seed=4)))
    assert not np.array_equal(np.concatenate(first), other)
    plain = np.concatenate(_labels(gd.batches(x, y, 8, shuffle=False)))
    np.testing.assert_array_equal(plain, y)
    for xb, yb in gd.batches(x, y, 8, seed=3):
        np.testing.assert_array_equal(xb[:, 0], yb)


def test_drop_last():
    x, y = np.zeros((50, 2)), np.arange(50)
    assert [len(b) for b in _labels(gd.batches(x, y, 8, seed=0, drop_last=True))] == [8] * 6
    assert [len(b) for b in _labels(gd.batches(x, y, 10, seed=0, drop_last=True))] == [10] * 5


@pytest.mark.parametrize("n, drop_last", [(96, False), (100, False), (100, True), (7, False)])
def test_shards_are_disjoint_equal_and_match_the_global_batch(n, drop_last):
    x, y, size, bs = np.zeros((n, 1)), np.arange(n), 3, 4
    shards = [_labels(gd.batches(x, y, bs, seed=9, drop_last=drop_last, rank=r, size=size))
              for r in range(size)]
    single = _labels(gd.batches(x, y, bs * size, seed=9, drop_last=drop_last))
    assert len({len(s) for s in shards}) == 1  # every rank takes the same number of steps
    for k, global_batch in enumerate(single):
        local = [s[k] for s in shards]
        assert len({len(b) for b in local}) == 1  # ...of the same size
        joined = np.concatenate(local)
        np.testing.assert_array_equal(joined, global_batch[:len(joined)])
        assert len(global_batch) - len(joined) < size
    seen = np.concatenate([b for s in shards for b in s])
    assert len(np.unique(seen)) == len(seen)  # disjoint
    skipped = n - len(seen)
    if drop_last:
        assert skipped == n % (bs * size)
    else:
        assert skipped == (n % (bs * size)) % size  # covering, up to < size leftovers
    if n == 96:
        assert sorted(seen) == list(range(96))


def test_batches_reject_bad_arguments():
    x, y = np.zeros((10, 1)), np.arange(10)
    for kwargs, message in [
            (dict(batch_size=0), r"batch_size must be >= 1, got 0"),
            (dict(batch_size=2, rank=2, size=2), r"need 0 <= rank < size, got rank=2, size=2"),
            (dict(batch_size=2, size=2), r"sharding a shuffled epoch needs a seed")]:
        with pytest.raises(ValueError, match=message):
            next(gd.batches(x, y, **kwargs))


def test_one_hot():
    np.testing.assert_array_equal(gd.one_hot(np.array([1, 0, 2]), 3),
                                  [[0, 1, 0], [1, 0, 0], [0, 0, 1]])
    assert gd.one_hot(np.zeros((2, 5), np.int64), 4).shape == (2, 5, 4)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        gd.one_hot(np.array([3]), 3)


def _write_idx(path, array, compress):
    codes = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C}
    header = bytes([0, 0, codes[array.dtype], array.ndim])
    header += np.array(array.shape, ">u4").tobytes()
    with (gzip.open if compress else open)(path, "wb") as f:
        f.write(header + array.tobytes())


def _fake_mnist(directory, compress, n_train=5, n_test=3):
    rng = np.random.default_rng(0)
    parts = {}
    for prefix, n in [("train", n_train), ("t10k", n_test)]:
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        ext = ".gz" if compress else ""
        _write_idx(directory / f"{prefix}-images-idx3-ubyte{ext}", images, compress)
        _write_idx(directory / f"{prefix}-labels-idx1-ubyte{ext}", labels, compress)
        parts[prefix] = images, labels
    return parts


@pytest.mark.parametrize("compress", [False, True])
def test_load_mnist_idx(tmp_path, compress):
    parts = _fake_mnist(tmp_path, compress)
    (x, y), (x_test, y_test) = gd.load_mnist_idx(tmp_path)
    images, labels = parts["train"]
    assert x.shape == (5, 784) and x.dtype == np.float32 and y.dtype == np.int64
    np.testing.assert_allclose(x, images.reshape(5, 784) / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(y, labels)
    assert x_test.shape == (3, 784) and y_test.shape == (3,)
    (raw, _), _ = gd.load_mnist_idx(str(tmp_path), flatten=False, normalize=False,
                                    dtype=np.uint8)
    np.testing.assert_array_equal(raw, images)


def test_idx_reader_handles_wider_types(tmp_path):
    values = np.arange(-3, 9, dtype=">i4").reshape(3, 4)
    _write_idx(tmp_path / "wide", values, compress=False)
    read = gd._read_idx(str(tmp_path / "wide"))
    np.testing.assert_array_equal(read, values)
    assert read.dtype == np.int32 and read.dtype.isnative


def test_load_mnist_idx_missing_files(tmp_path):
    _fake_mnist(tmp_path, compress=False)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError) as err:
        gd.load_mnist_idx(tmp_path)
    message = str(err.value)
    assert "test labels" in message and "t10k-labels-idx1-ubyte.gz" in message
    assert "train images" not in message  # only what is missing is listed
    with pytest.raises(FileNotFoundError, match="(?s)train images.*never downloads"):
        gd.load_mnist_idx(tmp_path / "nowhere")


def test_load_mnist_idx_rejects_corrupt_files(tmp_path):
    _fake_mnist(tmp_path, compress=False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ValueError, match="bytes"):
        gd.load_mnist_idx(tmp_path)
    path.write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="not an IDX file"):
        gd.load_mnist_idx(tmp_path)


def test_docstring_examples():
    assert doctest.testmod(gd).failed == 0
