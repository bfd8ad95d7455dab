"""conv1d (gc.nn and gc.layers) against a NumPy loop reference with TF's SAME rule, its
gradients against central differences, on both backends; TF1's layer objects (Dense, Conv2D,
Flatten, Dropout): variables created on the first call and shared by later calls, values
equal to the functional layers."""
import numpy as np
import pytest

import graphc as gc
from graphc.errors import GraphError

from tests.support.layer_testing import check_gradients

F64 = gc.float64


def conv1d_ref(x, w, stride, padding):
    """[N, W, C] x [k, C, F] cross-correlation; SAME puts the odd padding column after."""
    n, width, _ = x.shape
    k = w.shape[0]
    if padding == "SAME":
        out = -(-width // stride)
        total = max((out - 1) * stride + k - width, 0)
        x = np.pad(x, ((0, 0), (total // 2, total - total // 2), (0, 0)))
    else:
        out = (width - k) // stride + 1
    y = np.zeros((n, out, w.shape[2]))
    for i in range(out):
        y[:, i, :] = np.einsum("nkc,kcf->nf", x[:, i * stride:i * stride + k, :], w)
    return y


CASES = [  # (x shape NWC, filter, stride as given, stride, padding, format)
    ((2, 9, 3), (3, 3, 4), 1, 1, "VALID", "NWC"),
    ((2, 9, 3), (4, 3, 2), 2, 2, "SAME", "NWC"),
    ((1, 8, 2), (2, 2, 3), [1, 3, 1], 3, "same", "NWC"),
    ((2, 7, 2), (3, 2, 2), [2], 2, "SAME", "NCW"),
]


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
@pytest.mark.parametrize("xs,ws,stride,s,padding,fmt", CASES)
def test_nn_conv1d_matches_numpy(xs, ws, stride, s, padding, fmt, backend, rng):
    xv, wv = rng.standard_normal(xs), rng.standard_normal(ws)
    expected = conv1d_ref(xv, wv, s, padding.upper())
    feed = xv if fmt == "NWC" else xv.transpose(0, 2, 1)
    with gc.Graph().as_default():
        x = gc.placeholder(F64, [None] + list(feed.shape[1:]))
        y = gc.nn.conv1d(x, gc.constant(wv), stride, padding, data_format=fmt)
        want = expected if fmt == "NWC" else expected.transpose(0, 2, 1)
        assert y.shape.as_list() == [None] + list(want.shape[1:])
        with gc.Session(backend=backend) as sess:
            np.testing.assert_allclose(sess.run(y, {x: feed}), want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("padding", ["VALID", "SAME"])
def test_nn_conv1d_gradients(padding, rng):
    with gc.Graph().as_default():
        x = gc.placeholder(F64, [2, 7, 2])
        w = gc.placeholder(F64, [3, 2, 3])
        y = gc.nn.conv1d(x, w, 2, padding)
        loss = gc.reduce_sum(y * gc.constant(rng.standard_normal(y.shape.as_list())))
        feeds = {x: rng.standard_normal((2, 7, 2)), w: rng.standard_normal((3, 2, 3))}
        check_gradients(loss, [x, w], feeds, rng, what=f"conv1d {padding}")


def test_nn_conv1d_bad_arguments():
    x, w = gc.constant(np.zeros((1, 5, 2))), gc.constant(np.zeros((2, 2, 1)))
    with pytest.raises(GraphError, match="batch or channel"):
        gc.nn.conv1d(x, w, [2, 1, 1], "VALID")
    with pytest.raises(GraphError, match="data_format"):
        gc.nn.conv1d(x, w, 1, "VALID", data_format="NHWC")
    with pytest.raises(GraphError, match="padding"):
        gc.nn.conv1d(x, w, 1, "FULL")


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_layers_conv1d_values_variables_and_gradient(backend, rng):
    xv = rng.standard_normal((3, 10, 2))
    with gc.Graph().as_default():
        x = gc.placeholder(F64, [None, 10, 2])
        y = gc.layers.conv1d(x, 4, 3, strides=2, padding="same", activation=gc.nn.relu,
                             bias_initializer=gc.constant_initializer(0.1))
        kernel, bias = gc.trainable_variables()
        assert kernel.op.name == "conv1d/kernel" and kernel.shape.as_list() == [3, 2, 4]
        assert bias.op.name == "conv1d/bias" and y.shape.as_list() == [None, 5, 4]
        with gc.Session(backend=backend) as sess:
            sess.run(gc.global_variables_initializer())
            wv = sess.run(kernel)
            want = np.maximum(conv1d_ref(xv, wv, 2, "SAME") + 0.1, 0.0)
            np.testing.assert_allclose(sess.run(y, {x: xv}), want, rtol=1e-10, atol=1e-12)
        loss = gc.reduce_sum(gc.square(y))
        check_gradients(loss, [x, kernel, bias], {x: xv}, rng, what="layers.conv1d")


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_dense_object_shares_variables_across_calls(backend, rng):
    a, b = rng.standard_normal((4, 3)), rng.standard_normal((2, 3))
    with gc.Graph().as_default():
        xa, xb = gc.placeholder(F64, [None, 3]), gc.placeholder(F64, [None, 3])
        layer = gc.layers.Dense(5, activation=gc.nn.tanh,
                                bias_initializer=gc.constant_initializer(0.5))
        assert layer.kernel is None and layer.variables == []
        ya = layer(xa)
        with gc.variable_scope("elsewhere"):
            yb = layer(xb)  # a later call in another scope still uses the first variables
        assert [v.op.name for v in gc.global_variables()] == ["dense/kernel", "dense/bias"]
        assert layer.variables == layer.trainable_variables == [layer.kernel, layer.bias]
        assert layer.kernel.shape.as_list() == [3, 5] and layer.name == "dense"
        with gc.Session(backend=backend) as sess:
            sess.run(gc.global_variables_initializer())
            w, bias = sess.run([layer.kernel, layer.bias])
            got_a, got_b = sess.run([ya, yb], {xa: a, xb: b})
        np.testing.assert_allclose(got_a, np.tanh(a @ w + bias), rtol=1e-12)
        np.testing.assert_allclose(got_b, np.tanh(b @ w + bias), rtol=1e-12)
        gb = gc.gradients(gc.reduce_sum(ya) + gc.reduce_sum(yb), [layer.kernel])[0]
        with gc.Session() as sess:  # the shared kernel's gradient sums both uses
            sess.run(gc.global_variables_initializer())
            w, bias = sess.run([layer.kernel, layer.bias])
            dz = [1 - np.tanh(v @ w + bias) ** 2 for v in (a, b)]
            np.testing.assert_allclose(sess.run(gb, {xa: a, xb: b}),
                                       a.T @ dz[0] + b.T @ dz[1], rtol=1e-10)


def test_dense_object_matches_functional_dense_and_names_scopes(rng):
    xv = rng.standard_normal((3, 4))
    with gc.Graph().as_default():
        x = gc.placeholder(F64, [None, 4])
        init = gc.constant_initializer(rng.standard_normal((4, 2)))
        y_fn = gc.layers.dense(x, 2, kernel_initializer=init, use_bias=False)
        layer = gc.layers.Dense(2, kernel_initializer=init, use_bias=False, trainable=False)
        y_obj = layer(x)
        assert layer.name == "dense_1" and layer.bias is None
        assert layer.trainable_variables == [] and layer.variables == [layer.kernel]
        with gc.Session() as sess:
            sess.run(gc.global_variables_initializer())
            a, b = sess.run([y_fn, y_obj], {x: xv})
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_conv2d_flatten_dropout_objects(rng):
    xv = rng.standard_normal((2, 5, 5, 3))
    with gc.Graph().as_default():
        x = gc.placeholder(F64, [None, 5, 5, 3])
        conv = gc.layers.Conv2D(4, 3, padding="same", activation=gc.nn.relu)
        h1, h2 = conv(x), conv(x * 2.0)
        assert len(gc.global_variables()) == 2 and conv.kernel.shape.as_list() == [3, 3, 3, 4]
        flat = gc.layers.Flatten()(h1)
        assert flat.shape.as_list() == [None, 100]
        drop = gc.layers.Dropout(0.5, seed=3)
        kept, dropped = drop(flat, training=False), drop(flat, training=True)
        with gc.Session() as sess:
            sess.run(gc.global_variables_initializer())
            w, b = sess.run([conv.kernel, conv.bias])
            v1, v2, f, k, d = sess.run([h1, h2, flat, kept, dropped], {x: xv})
        ref = gc.nn.conv2d(gc.constant(xv), gc.constant(w), 1, "SAME")
        with gc.Session(graph=ref.graph) as sess:
            want = np.maximum(sess.run(ref) + b, 0)
        np.testing.assert_allclose(v1, want, rtol=1e-12)
        np.testing.assert_allclose(v2, 2 * want, rtol=1e-12, atol=1e-12)  # relu is 1-homogeneous
        np.testing.assert_array_equal(f, v1.reshape(2, -1))
        np.testing.assert_array_equal(k, f)
        assert set(np.unique(np.round(d[f != 0] / f[f != 0], 12))) <= {0.0, 2.0}
