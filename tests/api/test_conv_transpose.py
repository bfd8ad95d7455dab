"""``gc.nn.conv2d_transpose`` and ``gc.layers.conv2d_transpose``: the adjoint of conv2d
(<conv2d_transpose(v), x> = <v, conv2d(x)> for every v, x), gradients against float64 central
differences, both layouts and backends, TF1's output sizes, clear errors."""
import numpy as np
import pytest

import graphc as gc
from graphc.errors import GraphcError

CASES = [((2, 7, 7, 6), (3, 3, 4, 6), [-1, 14, 14, 4], 2, "SAME"),
         ((1, 4, 5, 3), (2, 2, 5, 3), [1, 8, 10, 5], 2, "VALID"),
         ((2, 6, 6, 8), (3, 3, 5, 8), [2, 8, 8, 5], 1, "VALID"),
         ((1, 5, 5, 2), (3, 3, 3, 2), [1, 9, 9, 3], 2, "SAME")]


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
@pytest.mark.parametrize("vshape,wshape,out,stride,pad", CASES, ids=lambda c: str(c))
def test_conv2d_transpose_is_the_adjoint_of_conv2d(vshape, wshape, out, stride, pad, backend):
    rng = np.random.default_rng(1)
    g = gc.Graph()
    with g.as_default():
        v = gc.placeholder(gc.float64, [None] + list(vshape[1:]))
        w = gc.constant(rng.standard_normal(wshape))
        y = gc.nn.conv2d_transpose(v, w, out, [1, stride, stride, 1], pad)
        x = gc.placeholder(gc.float64, [None] + list(out[1:]))
        c = gc.nn.conv2d(x, w, [1, stride, stride, 1], pad)
        vv = rng.standard_normal(vshape)
        xv = rng.standard_normal((vshape[0],) + tuple(out[1:]))
        yv, cv = gc.Session(backend=backend).run([y, c], {v: vv, x: xv})
    assert yv.shape == xv.shape and cv.shape == vv.shape
    np.testing.assert_allclose(np.sum(yv * xv), np.sum(cv * vv), rtol=1e-10)


def test_gradients_match_central_differences():
    rng = np.random.default_rng(2)
    g = gc.Graph()
    with g.as_default():
        v = gc.placeholder(gc.float64, [2, 3, 3, 4])
        w = gc.Variable(rng.standard_normal((3, 3, 2, 4)))
        y = gc.nn.conv2d_transpose(v, w, [2, 6, 6, 2], 2, "SAME")
        loss = gc.reduce_sum(gc.tanh(y) * rng.standard_normal((2, 6, 6, 2)))
        with gc.Session() as sess:
            sess.run(gc.global_variables_initializer())
            result = gc.check_gradients(loss, [v, w], {v: rng.standard_normal((2, 3, 3, 4))},
                                        session=sess)
    assert result.passed, str(result)


def test_nchw_equals_nhwc():
    rng = np.random.default_rng(3)
    vv, wv = rng.standard_normal((2, 5, 5, 3)), rng.standard_normal((3, 3, 4, 3))
    g = gc.Graph()
    with g.as_default():
        a = gc.nn.conv2d_transpose(gc.constant(vv), gc.constant(wv), [2, 10, 10, 4], 2, "SAME")
        b = gc.nn.conv2d_transpose(gc.constant(vv.transpose(0, 3, 1, 2)), gc.constant(wv),
                                   [2, 4, 10, 10], [1, 1, 2, 2], "SAME", data_format="NCHW")
        av, bv = gc.Session().run([a, b])
    np.testing.assert_allclose(bv, av.transpose(0, 3, 1, 2), rtol=1e-12)


@pytest.mark.parametrize("pad,size", [("same", 14), ("valid", 15)])
def test_layer_output_sizes_and_training(pad, size):
    rng = np.random.default_rng(4)
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, [None, 7, 7, 4])
        y = gc.layers.conv2d_transpose(x, 3, 3, strides=2, padding=pad)
        assert tuple(y.shape) == (None, size, size, 3)
        target = gc.placeholder(gc.float32, [None, size, size, 3])
        loss = gc.reduce_mean(gc.square(y - target))
        train = gc.train.AdamOptimizer(0.05).minimize(loss)
        step = gc.compile([loss, train], feeds=[x, target], backend="llvm")
    feed = {x: rng.standard_normal((5, 7, 7, 4)).astype(np.float32),
            target: rng.standard_normal((5, size, size, 3)).astype(np.float32) * 0.1}
    losses = [float(step(feed)[0]) for _ in range(30)]
    assert losses[-1] < 0.7 * losses[0]


def test_bad_output_shapes_are_refused():
    g = gc.Graph()
    with g.as_default():
        v = gc.placeholder(gc.float32, [2, 7, 7, 6])
        w = gc.constant(np.zeros((3, 3, 4, 6), np.float32))
        with pytest.raises(GraphcError, match="output_shape"):
            gc.nn.conv2d_transpose(v, w, [2, 14, 14], [1, 2, 2, 1])
        with pytest.raises(GraphcError, match="output_shape"):
            gc.nn.conv2d_transpose(v, w, None, [1, 2, 2, 1])
        with pytest.raises(GraphcError, match="does not fit.*gives 15 along axis 1.*has 7"):
            gc.nn.conv2d_transpose(v, w, [2, 30, 30, 4], [1, 2, 2, 1], "SAME")
