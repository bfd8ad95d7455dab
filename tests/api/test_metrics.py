"""gc.metrics.accuracy: a running ratio over the batches run, reset by
gc.local_variables_initializer(), against the NumPy count, on both backends."""
import numpy as np
import pytest

import graphc as gc

RNG = np.random.default_rng(11)
BATCHES = [(RNG.integers(0, 3, 8), RNG.integers(0, 3, 8)) for _ in range(3)]
WEIGHTS = RNG.random(8)


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
@pytest.mark.parametrize("weighted", [False, True])
def test_accuracy_accumulates_and_resets(weighted, backend):
    with gc.Graph().as_default():
        y = gc.placeholder(gc.int64, [8], name="labels")
        p = gc.placeholder(gc.int64, [8], name="predictions")
        acc, update = gc.metrics.accuracy(y, p, weights=WEIGHTS if weighted else None)
        assert acc.dtype == gc.float32 and update.dtype == gc.float32
        assert len(gc.get_collection("local_variables")) == 2
        w = WEIGHTS if weighted else np.ones(8)
        with gc.Session(backend=backend) as sess:
            sess.run([gc.global_variables_initializer(), gc.local_variables_initializer()])
            assert sess.run(acc) == 0.0  # nothing counted yet: 0, not NaN
            hits = total = 0.0
            for yb, pb in BATCHES:
                before = sess.run(acc)
                got = sess.run(update, {y: yb, p: pb})
                hits += np.sum((yb == pb) * w)
                total += np.sum(w)
                np.testing.assert_allclose(got, hits / total, rtol=1e-6)
                np.testing.assert_allclose(sess.run(acc), hits / total, rtol=1e-6)
                assert before != got or hits / total == before  # the value lags the update
            sess.run(gc.local_variables_initializer())
            assert sess.run(acc) == 0.0


def test_accuracy_of_argmax_predictions_and_collections():
    logits = np.array([[0.1, 2.0], [3.0, -1.0], [0.5, 0.4], [0.0, 1.0]], np.float32)
    labels = np.array([1, 0, 1, 1])
    with gc.Graph().as_default():
        x = gc.placeholder(gc.float32, [None, 2])
        y = gc.placeholder(gc.int64, [None])
        acc, update = gc.metrics.accuracy(labels=y, predictions=gc.argmax(x, 1), name="acc",
                                          metrics_collections=["m"],
                                          updates_collections=["u"])
        assert gc.get_collection("m") == [acc] and gc.get_collection("u") == [update]
        assert all(v.op.name.startswith("acc/") for v in gc.get_collection("local_variables"))
        with gc.Session() as sess:
            sess.run(gc.global_variables_initializer())
            assert sess.run(update, {x: logits, y: labels}) == pytest.approx(0.75)


def test_accuracy_shape_mismatch_raises():
    with gc.Graph().as_default():
        with pytest.raises(gc.errors.ShapeError, match="same shape"):
            gc.metrics.accuracy(gc.placeholder(gc.int64, [4]),
                                gc.placeholder(gc.int64, [4, 1]))
