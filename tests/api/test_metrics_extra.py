"""gc.metrics mean, mean_squared_error, precision, recall: streaming over three batches
equals NumPy on their concatenation, on both backends; local_variables_initializer resets
them; 0 before anything is counted; shape errors."""
import numpy as np
import pytest

import graphc as gc

RNG = np.random.default_rng(5)
N = 6
LABELS = [RNG.integers(0, 2, N) for _ in range(3)]
PREDS = [RNG.integers(0, 2, N) for _ in range(3)]
VALUES = [RNG.standard_normal(N) for _ in range(3)]
WEIGHTS = [RNG.random(N) for _ in range(3)]


def _mean(v, y, p, w):
    return np.sum(v * w) / np.sum(w)


def _mse(v, y, p, w):
    return np.sum((y - v) ** 2 * w) / np.sum(w)


def _precision(v, y, p, w):
    return np.sum((y & p) * w) / np.sum(p * w)


def _recall(v, y, p, w):
    return np.sum((y & p) * w) / np.sum(y * w)


CASES = {  # name: (build(values, labels, preds, weights), NumPy on concatenated batches)
    "mean": (lambda v, y, p, w: gc.metrics.mean(v, weights=w), _mean),
    "mean_squared_error": (lambda v, y, p, w: gc.metrics.mean_squared_error(
        gc.cast(y, gc.float32), v, weights=w), _mse),
    "precision": (lambda v, y, p, w: gc.metrics.precision(y, p, weights=w), _precision),
    "recall": (lambda v, y, p, w: gc.metrics.recall(y, p, weights=w), _recall),
}


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("name", sorted(CASES))
def test_streaming_equals_numpy_on_the_concatenation(name, weighted, backend):
    build, reference = CASES[name]
    with gc.Graph().as_default():
        v = gc.placeholder(gc.float32, [N])
        y, p = gc.placeholder(gc.int64, [N]), gc.placeholder(gc.int64, [N])
        w = gc.placeholder(gc.float32, [N]) if weighted else None
        value, update = build(v, y, p, w)
        assert value.dtype == gc.float32 and value.shape.as_list() == []
        assert all(x.op.name.startswith(name + "/") for x in gc.get_collection("local_variables"))
        with gc.Session(backend=backend) as sess:
            sess.run(gc.local_variables_initializer())
            assert sess.run(value) == 0.0  # nothing counted: 0, not NaN
            for _ in range(2):  # the second pass checks the reset
                for k in range(3):
                    feed = {v: VALUES[k], y: LABELS[k], p: PREDS[k]}
                    if weighted:
                        feed[w] = WEIGHTS[k]
                    got = sess.run(update, feed)
                    cat = [np.concatenate(a[:k + 1]) for a in (VALUES, LABELS, PREDS)]
                    ws = np.concatenate(WEIGHTS[:k + 1]) if weighted else np.ones(N * (k + 1))
                    want = reference(*cat, ws)
                    np.testing.assert_allclose(got, want, rtol=1e-5)
                    np.testing.assert_allclose(sess.run(value), want, rtol=1e-5)
                sess.run(gc.local_variables_initializer())
                assert sess.run(value) == 0.0


def test_precision_and_recall_read_nonzero_as_true():
    y = np.array([0, 3, 1, 0, 2], np.int64)
    p = np.array([5, 1, 0, 0, 0], np.int64)  # tp 1 (index 1), fp 1, fn 2
    with gc.Graph().as_default():
        _, prec = gc.metrics.precision(gc.constant(y), gc.constant(p))
        _, rec = gc.metrics.recall(gc.constant(y), gc.constant(p))
        with gc.Session() as sess:
            sess.run(gc.local_variables_initializer())
            assert sess.run([prec, rec]) == pytest.approx([0.5, 1 / 3])


def test_collections_and_shape_errors():
    with gc.Graph().as_default():
        x = gc.placeholder(gc.float32, [4])
        value, update = gc.metrics.mean(x, metrics_collections=["m"],
                                        updates_collections=["u"])
        assert gc.get_collection("m") == [value] and gc.get_collection("u") == [update]
        for fn in (gc.metrics.mean_squared_error, gc.metrics.precision, gc.metrics.recall):
            with pytest.raises(gc.errors.ShapeError, match="same shape"):
                fn(gc.placeholder(gc.float32, [4]), gc.placeholder(gc.float32, [4, 1]))
