"""TF1 names a day-one program reaches for (issue 15, part 3): arg_min/arg_max, round, rint,
ceil, floor, device, ConfigProto & co, local/model variables, nn.top_k, sort, argsort,
add_check_numerics_ops, verify_tensor_all_finite, hessians, train.ExponentialMovingAverage,
layers.MaxPooling2D / AveragePooling2D / BatchNormalization and nn.moments on any axes.

Each is run on both backends against NumPy; differentiable ones are checked against float64
central differences, non-differentiable ones for a zero gradient.
"""
import numpy as np
import pytest

import graphc as gc
from graphc.errors import GraphError, NumericsError

from tests.support.checks import check_against_central_differences

BACKENDS = ("numpy", "llvm")


def run_on(backend, fetches, feeds=None, **session_args):
    with gc.Session(backend=backend, **session_args) as sess:
        if gc.global_variables():
            sess.run(gc.global_variables_initializer())
        return sess.run(fetches, feeds or {})


def scalar_of(backend, node):
    """f(feeds) -> float: ``node``'s value, for central differences."""
    sess = gc.Session(backend=backend)
    return lambda feeds: float(sess.run(node, feeds))


# -- rounding and the arg_min / arg_max aliases --------------------------------------------------
HALVES = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5, -2.7, -0.2, 0.2, 2.7, 7.0, -7.0,
                   1e15 + 0.5, np.inf, -np.inf])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_rounding_matches_numpy(backend, dtype):
    x = gc.placeholder(dtype, [len(HALVES)])
    value = HALVES.astype(dtype)
    got = run_on(backend, [gc.round(x), gc.rint(x), gc.ceil(x), gc.floor(x),
                           gc.math.round(x)], {x: value})
    for out, ref in zip(got, [np.round, np.rint, np.ceil, np.floor, np.round]):
        assert out.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(out, ref(value))


@pytest.mark.parametrize("backend", BACKENDS)
def test_rounding_integers_unchanged_and_gradient_zero(backend):
    i = gc.placeholder(gc.int32, [3])
    x = gc.placeholder(gc.float64, [4])
    loss = gc.reduce_sum(gc.round(x) + gc.ceil(x) + gc.rint(x) * x)
    (dx,) = gc.gradients(loss, [x], unconnected_gradients="zero")
    xv = np.array([0.3, 1.5, -2.5, 4.0])
    got_i, got_dx = run_on(backend, [gc.round(i) + gc.ceil(i), dx], {i: [1, -2, 3], x: xv})
    np.testing.assert_array_equal(got_i, [2, -4, 6])
    np.testing.assert_array_equal(got_dx, np.rint(xv))   # d(rint(x) * x) = rint(x)


@pytest.mark.parametrize("backend", BACKENDS)
def test_arg_min_arg_max_are_tf1_aliases(backend):
    x = gc.placeholder(gc.float32, [3, 4])
    xv = np.array([[1, 5, 5, 0], [2, 2, 1, 9], [-1, -3, -3, 4]], np.float32)
    got = run_on(backend, [gc.arg_min(x, 0), gc.arg_max(x, 1), gc.arg_max(x, dimension=0),
                           gc.arg_min(x, 1, output_type=gc.int32)], {x: xv})
    for out, ref in zip(got, [xv.argmin(0), xv.argmax(1), xv.argmax(0), xv.argmin(1)]):
        np.testing.assert_array_equal(out, ref)
    assert got[0].dtype == np.int64 and got[3].dtype == np.int32


# -- top_k, sort, argsort ------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_top_k_values_indices_and_ties(backend):
    x = gc.placeholder(gc.float32, [3, 6])
    xv = np.array([[1, 3, 3, 0, 5, -1], [2, 2, 2, 2, 2, 2], [-4, 0, 7, 7, 1, 7]], np.float32)
    top = gc.nn.top_k(x, k=3)
    values, indices = top
    assert top.values is values and top.indices is indices
    got_v, got_i, got_1 = run_on(backend, [values, indices, gc.nn.top_k(x).indices], {x: xv})
    order = np.argsort(-xv, axis=1, kind="stable")[:, :3]   # ties: the lower index first
    np.testing.assert_array_equal(got_i, order)
    np.testing.assert_array_equal(got_v, np.take_along_axis(xv, order, 1))
    np.testing.assert_array_equal(got_1, order[:, :1])
    assert got_i.dtype == np.int32


@pytest.mark.parametrize("backend", BACKENDS)
def test_sort_and_argsort(backend):
    x = gc.placeholder(gc.float64, [4, 5])
    i = gc.placeholder(gc.int32, [6])
    rng = np.random.default_rng(0)
    xv = rng.integers(-3, 4, (4, 5)).astype(np.float64)
    iv = np.array([3, -1, 3, 0, 2, -1], np.int32)
    got = run_on(backend, [gc.sort(x), gc.sort(x, direction="DESCENDING"), gc.sort(x, axis=0),
                           gc.argsort(x), gc.argsort(x, axis=0, direction="DESCENDING"),
                           gc.sort(i), gc.argsort(i)], {x: xv, i: iv})
    refs = [np.sort(xv, 1), -np.sort(-xv, 1), np.sort(xv, 0),
            np.argsort(xv, 1, kind="stable"), np.argsort(-xv, 0, kind="stable"),
            np.sort(iv), np.argsort(iv, kind="stable")]
    for out, ref in zip(got, refs):
        np.testing.assert_array_equal(out, ref)


@pytest.mark.parametrize("backend", BACKENDS)
def test_top_k_gradient_reaches_the_selected_positions(backend, rng):
    x = gc.placeholder(gc.float64, [2, 5])
    weights = gc.constant(np.array([[1.0, -2.0, 0.5], [3.0, 0.25, -1.0]]))
    values, _ = gc.nn.top_k(x, 3)
    loss = gc.reduce_sum(values * weights) + gc.reduce_sum(gc.sort(x) * 0.5)
    (dx,) = gc.gradients(loss, [x])
    xv = rng.permutation(10).reshape(2, 5) + rng.uniform(0, 0.5, (2, 5))   # no ties
    (got,) = run_on(backend, [dx], {x: xv})
    order = np.argsort(-xv, axis=1)[:, :3]
    expected = np.full_like(xv, 0.5)
    for row in range(2):
        expected[row, order[row]] += [[1.0, -2.0, 0.5], [3.0, 0.25, -1.0]][row]
    np.testing.assert_allclose(got, expected)
    check_against_central_differences(scalar_of(backend, loss), {x: xv}, [x], [got], rng,
                                      "top_k")


def test_top_k_refuses_bad_k():
    x = gc.placeholder(gc.float32, [2, 4])
    with pytest.raises(GraphError, match=r"top_k: k = 5 is outside \[0, 4\]"):
        gc.nn.top_k(x, 5)
    with pytest.raises(GraphError, match="k must be a static int"):
        gc.nn.top_k(x, gc.placeholder(gc.int32, []))
    with pytest.raises(GraphError, match="last axis .* must be static"):
        gc.nn.top_k(gc.placeholder(gc.float32, [2, None]), 1)


# -- accepted and ignored: device, session configuration ----------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_device_config_and_run_options_are_accepted(backend):
    with gc.device("/gpu:0"):
        x = gc.placeholder(gc.float32, [2])
        y = x * 2.0
    config = gc.ConfigProto(allow_soft_placement=True, log_device_placement=False,
                            gpu_options=gc.GPUOptions(per_process_gpu_memory_fraction=0.5))
    config.gpu_options.allow_growth = True
    assert config.intra_op_parallelism_threads is None   # unset fields read as their default
    metadata = gc.RunMetadata()
    with gc.Session(config=config, backend=backend) as sess:
        got = sess.run(y, {x: [1.0, 2.0]},
                       options=gc.RunOptions(trace_level=gc.RunOptions.FULL_TRACE),
                       run_metadata=metadata)
    np.testing.assert_array_equal(got, [2.0, 4.0])
    assert "allow_growth=True" in repr(gc.ConfigProto(gpu_options=config.gpu_options))


# -- collections ---------------------------------------------------------------------------------
def test_local_and_model_variables():
    labels = gc.placeholder(gc.int64, [4])
    x = gc.placeholder(gc.float32, [4, 3])
    logits = gc.contrib.layers.fully_connected(x, 2, activation_fn=None)
    _, _ = gc.metrics.accuracy(labels, gc.argmax(logits, 1))
    assert gc.local_variables() and all(not v.trainable for v in gc.local_variables())
    assert set(gc.local_variables()) == set(gc.get_collection(gc.GraphKeys.LOCAL_VARIABLES))
    names = sorted(v.op.name for v in gc.model_variables())
    assert names == ["fully_connected/biases", "fully_connected/weights"]
    assert gc.model_variables("nothing") == []


# -- numerics checks -----------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_add_check_numerics_ops_and_verify_tensor_all_finite(backend):
    x = gc.placeholder(gc.float32, [3])
    W = gc.Variable([1.0, 1.0, 1.0], name="W")
    y = gc.verify_tensor_all_finite(gc.log(x) * W, "log of x")
    check = gc.add_check_numerics_ops()
    with gc.Session(backend=backend) as sess:
        sess.run(gc.global_variables_initializer())
        got, none = sess.run([y, check], {x: [1.0, 2.0, 3.0]})
        np.testing.assert_allclose(got, np.log([1.0, 2.0, 3.0]), rtol=1e-6)
        assert none is None
        with pytest.raises(NumericsError, match="NaN or Inf"):
            sess.run(check, {x: [1.0, -2.0, 3.0]})
        with pytest.raises(NumericsError, match="log of x"):
            sess.run(y, {x: [0.0, 2.0, 3.0]})


# -- hessians ------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_hessians_against_closed_form_and_central_differences(backend, rng):
    A = rng.standard_normal((3, 3))
    x = gc.placeholder(gc.float64, [3])
    y = gc.placeholder(gc.float64, [2, 1])
    f = (gc.reduce_sum(x ** 3) + gc.reduce_sum(x * gc.matmul(gc.constant(A),
                                                             gc.reshape(x, [3, 1]))[:, 0])
         + gc.reduce_sum(gc.tanh(y) * gc.reduce_sum(x)))
    H_x, H_y = gc.hessians(f, [x, y])
    assert H_x.shape == (3, 3) and H_y.shape == (2, 1, 2, 1)
    xv, yv = rng.standard_normal(3), rng.standard_normal((2, 1))
    got_x, got_y = run_on(backend, [H_x, H_y], {x: xv, y: yv})
    np.testing.assert_allclose(got_x, np.diag(6 * xv) + A + A.T, rtol=1e-10, atol=1e-12)
    t = np.tanh(yv[:, 0])
    np.testing.assert_allclose(got_y.reshape(2, 2), np.diag(-2 * t * (1 - t * t) * xv.sum()),
                               rtol=1e-10, atol=1e-12)
    (dx,) = gc.gradients(f, [x])
    for i in range(3):   # row i of H is the gradient of df/dx_i
        check_against_central_differences(scalar_of(backend, dx[i]), {x: xv, y: yv}, [x],
                                          [got_x[i]], rng, f"hessians row {i}")


def test_hessians_of_a_linear_function_are_zero_and_need_static_shapes():
    x = gc.placeholder(gc.float64, [2])
    (H,) = gc.hessians(gc.reduce_sum(3.0 * x), [x])
    np.testing.assert_array_equal(run_on("numpy", H, {x: [1.0, 2.0]}), np.zeros((2, 2)))
    p = gc.placeholder(gc.float64, [None])
    with pytest.raises(GraphError, match="hessians: the shape .* must be static"):
        gc.hessians(gc.reduce_sum(p ** 2), [p])


# -- train.ExponentialMovingAverage --------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_exponential_moving_average(backend):
    W = gc.Variable(np.array([1.0, 2.0]), name="W")
    b = gc.Variable(0.5, name="b")
    step = gc.Variable(0, trainable=False, name="step")
    ema = gc.train.ExponentialMovingAverage(0.9)
    debiased = gc.train.ExponentialMovingAverage(0.99, num_updates=step, name="Debiased")
    with gc.control_dependencies([ema.apply([W, b]), debiased.apply([W])]):
        train_op = gc.group(gc.assign(W, W * 2.0), gc.assign(b, b - 1.0),
                            gc.assign(step, step + 1))
    assert ema.average(W).op.name == ema.average_name(W) == "W/ExponentialMovingAverage"
    assert debiased.average(W).op.name == "W/Debiased" and ema.average(step) is None
    assert not ema.average(W).trainable
    assert set(gc.get_collection(gc.GraphKeys.MOVING_AVERAGE_VARIABLES)) == {
        ema.average(W), ema.average(b), debiased.average(W)}
    w, bv, s = np.array([1.0, 2.0]), 0.5, 0
    shadow_w, shadow_b, shadow_d = w.copy(), bv, w.copy()
    with gc.Session(backend=backend) as sess:
        sess.run(gc.global_variables_initializer())
        for _ in range(4):
            sess.run(train_op)
            shadow_w = shadow_w - 0.1 * (shadow_w - w)
            shadow_b = shadow_b - 0.1 * (shadow_b - bv)
            decay = min(0.99, (1.0 + s) / (10.0 + s))
            shadow_d = shadow_d - (1 - decay) * (shadow_d - w)
            w, bv, s = w * 2.0, bv - 1.0, s + 1
        got = sess.run([ema.average(W), ema.average(b), debiased.average(W)])
    for out, ref in zip(got, [shadow_w, shadow_b, shadow_d]):
        np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-6)   # b is float32
    restore = ema.variables_to_restore()
    assert restore["W/ExponentialMovingAverage"] is W and restore["step"] is step


# -- layer objects -------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_pooling_layer_objects(backend, rng):
    x = gc.placeholder(gc.float64, [2, 4, 4, 3])
    pool_max = gc.layers.MaxPooling2D(2, 2)
    pool_avg = gc.layers.AveragePooling2D(pool_size=(2, 2), strides=(2, 2), padding="same")
    xv = rng.standard_normal((2, 4, 4, 3))
    got_max, got_avg = run_on(backend, [pool_max(x), pool_avg(x)], {x: xv})
    blocks = xv.reshape(2, 2, 2, 2, 2, 3)
    np.testing.assert_allclose(got_max, blocks.max(axis=(2, 4)))
    np.testing.assert_allclose(got_avg, blocks.mean(axis=(2, 4)))


@pytest.mark.parametrize("backend", BACKENDS)
def test_batch_normalization_layer_object(backend, rng):
    x = gc.placeholder(gc.float64, [8, 3])
    bn = gc.layers.BatchNormalization(momentum=0.5, epsilon=1e-3)
    train_out = bn(x, training=True)
    test_out = bn(x)
    other = gc.layers.BatchNormalization()
    other(x)
    names = sorted(v.op.name for v in gc.global_variables())
    assert names == sorted(f"{scope}/{v}" for scope in ("batch_normalization",
                                                         "batch_normalization_1")
                           for v in ("beta", "gamma", "moving_mean", "moving_variance"))
    assert len(bn.variables) == 4 and len(bn.trainable_variables) == 2
    updates = gc.get_collection(gc.GraphKeys.UPDATE_OPS)
    assert len(updates) == 2
    xv = rng.standard_normal((8, 3)) * 3 + 1
    with gc.Session(backend=backend) as sess:
        sess.run(gc.global_variables_initializer())
        got_train, _ = sess.run([train_out, updates], {x: xv})
        got_test, mean, var = sess.run([test_out, bn.moving_mean, bn.moving_variance], {x: xv})
    np.testing.assert_allclose(got_train, (xv - xv.mean(0)) / np.sqrt(xv.var(0) + 1e-3),
                               rtol=1e-10)
    np.testing.assert_allclose(mean, 0.5 * xv.mean(0), rtol=1e-10)
    np.testing.assert_allclose(var, 0.5 + 0.5 * xv.var(0), rtol=1e-10)
    np.testing.assert_allclose(got_test, (xv - mean) / np.sqrt(var + 1e-3), rtol=1e-10)


# -- nn.moments on any axes ----------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_moments_on_any_axes(backend, rng):
    x = gc.placeholder(gc.float64, [2, 3, 4])
    axes_list = ([0], [1, 2], [0, 2], [2], [0, 1, 2])
    moments = [gc.nn.moments(x, axes) for axes in axes_list]
    kept = gc.nn.moments(x, [0, 2], keep_dims=True)
    xv = rng.standard_normal((2, 3, 4))
    got = run_on(backend, [moments, kept], {x: xv})
    for axes, (mean, var) in zip(axes_list, got[0]):
        np.testing.assert_allclose(mean, xv.mean(tuple(axes)), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(var, xv.var(tuple(axes)), rtol=1e-12, atol=1e-14)
    assert got[1][0].shape == got[1][1].shape == (1, 3, 1)
    mean, var = gc.nn.moments(x, [0, 2])
    loss = gc.reduce_sum(mean * np.array([1.0, -2.0, 0.5])) + gc.reduce_sum(var * var)
    (dx,) = gc.gradients(loss, [x])
    (got_dx,) = run_on(backend, [dx], {x: xv})
    check_against_central_differences(scalar_of(backend, loss), {x: xv}, [x], [got_dx], rng,
                                      "moments")


# -- size, linspace, convert_to_tensor -----------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_size_linspace_and_convert_to_tensor(backend):
    x = gc.placeholder(gc.float32, [None, 3])
    static = gc.size(gc.ones([2, 5]), out_type=gc.int64)
    assert static.op_name == "const"
    start = gc.constant(1.0, gc.float64)
    got = run_on(backend, [gc.size(x), static, gc.linspace(0.0, 1.0, 5),
                           gc.linspace(start, 2.0, gc.constant(3)), gc.convert_to_tensor([1, 2]),
                           gc.convert_to_tensor([1, 2], gc.float32),
                           gc.convert_to_tensor(x) * 2.0], {x: np.ones((4, 3))})
    refs = [12, 10, np.linspace(0.0, 1.0, 5), np.linspace(1.0, 2.0, 3), [1, 2], [1.0, 2.0],
            np.full((4, 3), 2.0)]
    dtypes = [np.int32, np.int64, np.float32, np.float64, np.int32, np.float32, np.float32]
    for out, ref, dtype in zip(got, refs, dtypes):
        assert np.asarray(out).dtype == dtype
        np.testing.assert_allclose(out, ref, rtol=1e-6)
    with pytest.raises(gc.errors.DTypeError, match="convert_to_tensor: .* is float32, asked "
                                                   "for int32"):
        gc.convert_to_tensor(x, gc.int32)
    with pytest.raises(GraphError, match="linspace: num must be known when the graph is built"):
        gc.linspace(0.0, 1.0, gc.placeholder(gc.int32, []))
