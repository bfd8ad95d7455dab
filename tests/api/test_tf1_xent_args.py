"""``softmax_cross_entropy_with_logits(_v2)`` with TF1's argument rules (issue 15, part 2):
labels of another dtype are cast to the logits' dtype, labels and logits are each flattened to
``[-1, classes]``, the class axis may be any axis; v1 holds labels constant, v2 does not."""
import numpy as np
import pytest

import graphc as gc
from graphc.errors import DTypeError, ShapeError

from tests.support.checks import check_against_central_differences

BACKENDS = ("numpy", "llvm")
XENTS = (gc.nn.softmax_cross_entropy_with_logits, gc.nn.softmax_cross_entropy_with_logits_v2)


def reference(labels, logits, axis=-1):
    z = np.moveaxis(np.asarray(logits, np.float64), axis, -1)
    y = np.moveaxis(np.asarray(labels, np.float64), axis, -1)
    m = z.max(-1, keepdims=True)
    log_p = z - m - np.log(np.exp(z - m).sum(-1, keepdims=True))
    return -(y * log_p).sum(-1)


def run_on(backend, fetches, feeds):
    with gc.Session(backend=backend) as sess:
        return sess.run(fetches, feeds)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("xent", XENTS, ids=["v1", "v2"])
def test_labels_in_a_list_and_of_other_dtypes(backend, xent, rng):
    logits = gc.placeholder(gc.float32, [4, 3])
    onehot = gc.placeholder(gc.int32, [4, 3])
    soft = gc.placeholder(gc.float64, [4, 3])
    packed = xent(labels=[onehot], logits=logits)          # labels [1, 4, 3]: flattened
    cast = xent(labels=soft, logits=logits)                # float64 labels cast to float32
    z = rng.standard_normal((4, 3)).astype(np.float32)
    y = np.eye(3, dtype=np.int32)[[0, 2, 1, 2]]
    s = rng.dirichlet(np.ones(3), size=4)
    got_packed, got_cast = run_on(backend, [packed, cast], {logits: z, onehot: y, soft: s})
    assert packed.shape == (4,) and packed.dtype == gc.float32 and cast.dtype == gc.float32
    np.testing.assert_allclose(got_packed, reference(y, z), rtol=1e-5)
    np.testing.assert_allclose(got_cast, reference(s.astype(np.float32), z), rtol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_flattening_and_class_axis(backend, rng):
    logits3 = gc.placeholder(gc.float64, [2, 3, 5])
    rows = gc.placeholder(gc.float64, [6, 5])
    by_rows = gc.nn.softmax_cross_entropy_with_logits_v2(labels=rows, logits=logits3)
    batch_logits = gc.placeholder(gc.float64, [None, 3, 5])
    batch = gc.nn.softmax_cross_entropy_with_logits_v2(labels=rows, logits=batch_logits)
    first = gc.placeholder(gc.float64, [5, 4])
    first_labels = gc.placeholder(gc.float64, [5, 4])
    axis0 = gc.nn.softmax_cross_entropy_with_logits_v2(labels=first_labels, logits=first,
                                                       axis=0)
    dim0 = gc.nn.softmax_cross_entropy_with_logits(labels=first_labels, logits=first, dim=0)
    z3, y = rng.standard_normal((2, 3, 5)), rng.dirichlet(np.ones(5), size=6)
    zf, yf = rng.standard_normal((5, 4)), rng.dirichlet(np.ones(5), size=4).T
    got = run_on(backend, [by_rows, batch, axis0, dim0],
                 {logits3: z3, rows: y, batch_logits: z3, first: zf, first_labels: yf})
    assert by_rows.shape == (2, 3) and batch.shape == (None, 3) and axis0.shape == (4,)
    np.testing.assert_allclose(got[0], reference(y, z3.reshape(6, 5)).reshape(2, 3),
                               rtol=1e-12)
    np.testing.assert_allclose(got[1], got[0], rtol=1e-12)
    np.testing.assert_allclose(got[2], reference(yf, zf, axis=0), rtol=1e-12)
    np.testing.assert_allclose(got[3], got[2], rtol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradients_v2_reach_labels_and_v1_does_not(backend, rng):
    logits = gc.placeholder(gc.float64, [3, 4])
    labels = gc.placeholder(gc.float64, [1, 3, 4])
    weights = gc.constant(np.array([1.0, -0.5, 2.0]))
    loss2 = gc.reduce_sum(weights * gc.nn.softmax_cross_entropy_with_logits_v2(
        labels=labels, logits=logits))
    loss1 = gc.reduce_sum(weights * gc.nn.softmax_cross_entropy_with_logits(
        labels=labels, logits=logits))
    dz, dy = gc.gradients(loss2, [logits, labels])
    dz1, dy1 = gc.gradients(loss1, [logits, labels])
    assert dy1 is None
    z, y = rng.standard_normal((3, 4)), rng.dirichlet(np.ones(4), size=3)[None]
    feeds = {logits: z, labels: y}
    got_dz, got_dy, got_dz1 = run_on(backend, [dz, dy, dz1], feeds)
    np.testing.assert_allclose(got_dz1, got_dz, rtol=1e-12)
    sess = gc.Session(backend=backend)
    check_against_central_differences(lambda f: float(sess.run(loss2, f)), feeds,
                                      [logits, labels], [got_dz, got_dy], rng, "xent v2")


def test_bad_arguments_are_graphc_errors():
    logits = gc.placeholder(gc.float32, [4, 3])
    with pytest.raises(ShapeError, match=r"labels f32\[8\] do not flatten to the rows of "
                                         r"logits f32\[4,3\]"):
        gc.nn.softmax_cross_entropy_with_logits_v2(labels=gc.zeros([8]), logits=logits)
    with pytest.raises(ShapeError, match=r"labels f32\[2,4,3\] do not match logits"):
        gc.nn.softmax_cross_entropy_with_logits_v2(labels=gc.zeros([2, 4, 3]),
                                                   logits=gc.zeros([3, 4, 3]))
    with pytest.raises(ShapeError, match=r"labels f32\[5,3\] do not match logits f32\[4,3\]"):
        gc.nn.softmax_cross_entropy_with_logits_v2(labels=gc.zeros([1, 5, 3]), logits=logits)
    with pytest.raises(DTypeError, match=r"logits must be a floating tensor"):
        gc.nn.softmax_cross_entropy_with_logits_v2(labels=[[1, 0]], logits=[[1, 2]])
    with pytest.raises(ShapeError, match="axis 2 is out of range"):
        gc.nn.softmax_cross_entropy_with_logits(labels=gc.zeros([4, 3]), logits=logits, dim=2)
