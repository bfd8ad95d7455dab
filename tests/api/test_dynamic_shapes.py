"""Shapes and sizes known when the step is specialized (issue 15, part 1).

A placeholder without a shape has an unknown rank; values computed from ``gc.shape`` of fed
tensors, constants and Python numbers may stand wherever an op needs a static shape, size or
bound, and are resolved when the signature compiles. Each case runs on both backends (with
and without the optimizing passes) against NumPy; gradients through ops whose attributes were
resolved at specialization are checked against float64 central differences; data-dependent
sizes and data-shaped ops are refused with the argument, the line and what to do instead.
"""
import numpy as np
import pytest

import graphc as gc
from graphc.errors import FeedError, GraphError, ShapeError

from tests.support.checks import check_against_central_differences

BACKENDS = ("numpy", "llvm")
CONFIGS = [(b, o) for b in BACKENDS for o in (False, True)]


def run_on(backend, fetches, feeds=None, optimize=True):
    with gc.Session(backend=backend, optimize=optimize) as sess:
        if gc.global_variables():
            sess.run(gc.global_variables_initializer())
        return sess.run(fetches, feeds or {})


# -- unknown shapes ------------------------------------------------------------------------------
@pytest.mark.parametrize("backend,optimize", CONFIGS)
def test_placeholder_without_shape_takes_any_rank(backend, optimize):
    X = gc.placeholder("float")
    y = X * 2.0 + 1.0
    total = gc.reduce_sum(y)
    assert X.shape is None and y.shape is None and total.shape == ()
    with gc.Session(backend=backend, optimize=optimize) as sess:
        for value in (np.float32(3.0), np.arange(17, dtype=np.float32),
                      np.arange(6, dtype=np.float32).reshape(2, 3)):
            got_y, got_total = sess.run([y, total], {X: value})
            np.testing.assert_allclose(got_y, value * 2 + 1)
            assert np.shape(got_y) == np.shape(value)
            np.testing.assert_allclose(got_total, np.sum(value * 2 + 1))


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_static_slice_of_an_unknown_rank(backend):
    X = gc.placeholder("float")
    xv = np.arange(12, dtype=np.float32).reshape(4, 3)
    np.testing.assert_array_equal(run_on(backend, gc.slice(X, [1, 0], [2, -1]), {X: xv}),
                                  xv[1:3])


def test_unknown_rank_reads_as_tf1():
    X = gc.placeholder(gc.float32, shape=None, name="X")
    assert X.get_shape().ndims is None and not X.get_shape().is_fully_defined()
    assert X.type_str() == "f32[...]"
    with pytest.raises(ValueError, match="unknown TensorShape"):
        X.get_shape().as_list()
    with pytest.raises(ShapeError, match="unknown rank"):
        gc.unstack(X)
    with pytest.raises(GraphError, match=r"dense: the input's axis -1 \(f32\[\.\.\.\]\) must be"):
        gc.layers.dense(X, 3)


def test_shape_rules_keep_what_every_rank_agrees_on():
    X = gc.placeholder("float")
    assert gc.reduce_mean(X).shape == ()
    assert (X + gc.constant([1.0, 2.0, 3.0])).shape is None
    assert gc.reshape(X, [-1, 3]).shape == (None, 3)
    assert gc.shape(X).shape == (None,)
    assert gc.nn.conv2d(X, gc.zeros([3, 3, 2, 4]), [1, 1, 1, 1], "SAME").shape == \
        (None, None, None, 4)
    with pytest.raises(gc.errors.DTypeError):  # dtype rules hold whatever the rank
        gc.placeholder(gc.int32) + X


def test_unknown_rank_errors_come_at_specialization_with_the_users_line():
    X = gc.placeholder("float")
    y = gc.matmul(X, gc.zeros([3, 4]))  # every 2-D X [n, 3] fits
    with gc.Session(backend="numpy") as sess:
        assert sess.run(y, {X: np.ones((2, 3))}).shape == (2, 4)
        with pytest.raises(ShapeError, match=r"(?s)matmul.*with the fed shapes.*"
                                             r"test_dynamic_shapes.py:\d+ +y = gc.matmul"):
            sess.run(y, {X: np.ones((2, 5))})


def test_static_shapes_stay_static():
    x = gc.placeholder(gc.float32, [4, 3])
    assert gc.zeros([2, 3]).op_name == "const"
    assert gc.zeros(gc.shape(x)).op_name == "const"  # known now: a constant, as before
    r = gc.reshape(x, [gc.shape(x)[1], -1])
    assert r.shape == (3, 4) and r.inputs == [x] and r.attrs["shape"] == (3, -1)
    with pytest.raises(ShapeError, match=r"(?s)cannot reshape f32\[4,3\].*test_dynamic_shapes"):
        gc.reshape(x, [5, -1])


# -- shapeless scalars: keep_prob, learning rates, training flags --------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_shapeless_scalar_placeholders_keep_the_model_shapes(backend):
    """TF1's keep_prob, learning-rate and is_training placeholders have no shape: what they
    scale or select keeps the other operand's shape, and the SGD step is exact."""
    x = gc.placeholder(gc.float64, [None, 4])
    keep_prob, lr, training = (gc.placeholder(gc.float64), gc.placeholder(gc.float64),
                               gc.placeholder(gc.bool))
    w0 = np.arange(12.0).reshape(4, 3) / 10
    W = gc.Variable(w0)
    h = gc.nn.dropout(x, keep_prob)
    d = gc.layers.dropout(x, 0.5, training=training)
    assert h.shape == (None, 4) and d.shape == (None, 4)
    logits = gc.matmul(h, W)
    loss = gc.reduce_sum(logits ** 2)
    train = gc.train.GradientDescentOptimizer(lr).minimize(loss)
    xv = np.linspace(-1, 1, 8).reshape(2, 4)
    with gc.Session(backend=backend) as sess:
        sess.run(gc.global_variables_initializer())
        got_d = sess.run(d, {x: xv, training: False})
        sess.run(train, {x: xv, keep_prob: 1.0, lr: 0.01})
        got_w = sess.run(W)
        with pytest.raises(ShapeError, match=r"(?s)reshape.*with the fed shapes"):
            sess.run(h, {x: xv, keep_prob: [0.5, 0.5]})  # TF1: keep_prob is a scalar
    np.testing.assert_array_equal(got_d, xv)
    np.testing.assert_allclose(got_w, w0 - 0.01 * xv.T @ (2 * xv @ w0), rtol=1e-12)


def test_assigning_a_value_of_unknown_rank_is_checked_when_specialized():
    v = gc.Variable(np.zeros(3), name="v")
    value = gc.placeholder(gc.float64)
    update = gc.assign(v, value)
    assert update.shape == (3,)
    with gc.Session(backend="numpy") as sess:
        sess.run(gc.global_variables_initializer())
        np.testing.assert_array_equal(sess.run(update, {value: [1.0, 2.0, 3.0]}), [1, 2, 3])
        with pytest.raises(ShapeError, match=r"value shape \[2\] differs from variable 'v'"):
            sess.run(update, {value: [1.0, 2.0]})


# -- specialization-time values --------------------------------------------------------------------
def _spec_time_cases(x, batch):
    """(name, tensor, reference(xv)) for every op taking a specialization-time argument."""
    return [
        ("zeros", gc.zeros([batch, 3]), lambda v: np.zeros((len(v), 3))),
        ("fill", gc.fill([batch], 1.5), lambda v: np.full(len(v), 1.5)),
        ("ones_shape", gc.ones(gc.shape(x)), lambda v: np.ones(v.shape)),
        ("reshape", gc.reshape(x, [batch * 3]), lambda v: v.reshape(-1)),
        ("reshape_like", gc.reshape(x, gc.shape(gc.transpose(x))), lambda v: v.reshape(3, -1)),
        ("range", gc.range(0, batch) * 5 + 1, lambda v: np.arange(len(v)) * 5 + 1),
        ("range_float", gc.range(0.5, gc.cast(batch, gc.float32)),
         lambda v: np.arange(0.5, len(v), dtype=np.float32)),
        ("tile", gc.tile(x, [1, batch]), lambda v: np.tile(v, (1, len(v)))),
        ("tile_stack", gc.tile(x, gc.stack([batch, 1])), lambda v: np.tile(v, (len(v), 1))),
        ("slice", gc.slice(x, [1, 0], [batch - 1, 2]), lambda v: v[1:, :2]),
        ("slice_to_end", gc.slice(x, gc.stack([batch - 2, 1]), [-1, -1]), lambda v: v[-2:, 1:]),
        ("one_hot", gc.one_hot(gc.range(batch), batch + 1),
         lambda v: np.eye(len(v), len(v) + 1)),
        ("size", gc.size(x), lambda v: v.size),
        ("rank", gc.rank(x), lambda v: v.ndim),
        ("broadcast_to", gc.broadcast_to(x[:1], gc.shape(x)),
         lambda v: np.broadcast_to(v[:1], v.shape)),
    ]


@pytest.mark.parametrize("backend,optimize", CONFIGS)
def test_specialization_time_arguments_on_both_backends(backend, optimize):
    x = gc.placeholder(gc.float64, [None, 3])
    batch = gc.shape(x)[0]
    cases = _spec_time_cases(x, batch)
    assert cases[0][1].shape == (None, 3)  # what is known is kept when the graph is built
    with gc.Session(backend=backend, optimize=optimize) as sess:
        for rows in (4, 2):  # two signatures: each resolves its own sizes
            xv = np.arange(rows * 3, dtype=np.float64).reshape(rows, 3)
            got = sess.run([t for _, t, _ in cases], {x: xv})
            for (name, _, ref), value in zip(cases, got):
                want = ref(xv)
                assert np.shape(value) == np.shape(want), name
                np.testing.assert_allclose(value, want, err_msg=name)


@pytest.mark.parametrize("backend", BACKENDS)
def test_split_with_specialization_time_sizes(backend):
    x = gc.placeholder(gc.float64, [None, 2])
    n = gc.shape(x)[0]
    first, rest = gc.split(x, gc.stack([1, n - 1]))
    halves = gc.split(x, 2)  # n unknown when built: checked and sized when specialized
    head, tail = gc.split(x, gc.stack([n - 1, -1]))
    xv = np.arange(12.0).reshape(6, 2)
    got = run_on(backend, [first, rest, *halves, head, tail], {x: xv})
    for value, want in zip(got, [xv[:1], xv[1:], xv[:3], xv[3:], xv[:5], xv[5:]]):
        np.testing.assert_array_equal(value, want)
    with pytest.raises(ShapeError, match=r"reshape.*with the fed shapes"):
        run_on(backend, halves, {x: np.zeros((5, 2))})


@pytest.mark.parametrize("backend", BACKENDS)
def test_issue_snippets_last_relevant_output(backend):
    """The classic 'last relevant output' of a padded RNN batch: flat indices from
    ``tf.range(0, batch) * max_len + (seqlen - 1)``."""
    outputs = gc.placeholder(gc.float32, [None, 5, 2])
    seqlen = gc.placeholder(gc.int32, [None])
    batch = gc.shape(outputs)[0]
    max_len = gc.shape(outputs)[1]
    index = gc.range(0, batch) * max_len + (seqlen - 1)
    flat = gc.reshape(outputs, [-1, 2])
    last = gc.gather(flat, index)
    ov = np.arange(30, dtype=np.float32).reshape(3, 5, 2)
    lengths = np.array([5, 1, 3], np.int32)
    got = run_on(backend, last, {outputs: ov, seqlen: lengths})
    np.testing.assert_array_equal(got, ov[np.arange(3), lengths - 1])


@pytest.mark.parametrize("backend", BACKENDS)
def test_issue_snippets_random_with_tensor_parameters(backend):
    z_std = gc.placeholder(gc.float32, [None, 4])
    eps = gc.random_normal(gc.shape(z_std), dtype=gc.float32, mean=0., stddev=1.0)
    shape = [400, 300]
    w = gc.random_normal(shape=shape, stddev=1. / gc.sqrt(shape[0] / 2.))
    assert w.op_name == "random_normal" and w.attrs["stddev"] == pytest.approx(1 / np.sqrt(200))
    got_eps, got_w = run_on(backend, [eps, w], {z_std: np.zeros((5000, 4), np.float32)})
    assert got_eps.shape == (5000, 4) and abs(got_eps.mean()) < 0.03
    assert abs(got_eps.std() - 1.0) < 0.03
    assert abs(got_w.std() * np.sqrt(200) - 1.0) < 0.03


@pytest.mark.parametrize("backend", BACKENDS)
def test_random_parameters_may_be_run_time_tensors(backend):
    """TF1 takes any tensor for mean/stddev (and minval/maxval): draws are scaled and shifted;
    the gradient reaches a fed stddev (d sum(z s + m) / ds = sum(z))."""
    m = gc.placeholder(gc.float64, [])
    s = gc.placeholder(gc.float64, [])
    x = gc.placeholder(gc.float64, [None])
    normal = gc.random_normal(gc.shape(x), mean=m, stddev=s, dtype=gc.float64)
    uniform = gc.random_uniform(gc.shape(x), minval=m, maxval=m + s, dtype=gc.float64)
    ds, dm = gc.gradients(gc.reduce_sum(normal), [s, m])
    feeds = {m: 3.0, s: 0.5, x: np.zeros(20000)}
    got_n, got_u, got_ds, got_dm = run_on(backend, [normal, uniform, ds, dm], feeds)
    assert abs(got_n.mean() - 3.0) < 0.02 and abs(got_n.std() - 0.5) < 0.02
    assert got_u.min() >= 3.0 and got_u.max() < 3.5 and abs(got_u.mean() - 3.25) < 0.01
    assert got_dm == pytest.approx(20000)
    # the same draws give both the value and the gradient: ds = sum((normal - m) / s)
    sess = gc.Session(backend=backend)
    got_n, got_ds = sess.run([normal, ds], feeds)
    assert got_ds == pytest.approx(np.sum((got_n - 3.0) / 0.5), rel=1e-9)


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradients_through_ops_resolved_at_specialization(backend, rng):
    x = gc.placeholder(gc.float64, [None, 3])
    n = gc.shape(x)[0]
    c = gc.range(0, n * 3 * n)  # weights sized like the tiled tensor
    weights = gc.reshape(gc.cast(c, gc.float64) * 0.1, [n, 3 * n])
    first, rest = gc.split(x, gc.stack([1, n - 1]))
    loss = (gc.reduce_sum(gc.reshape(x, [n * 3]) ** 2)
            + gc.reduce_sum(gc.tile(x, [1, n]) * weights)
            + gc.reduce_sum(gc.slice(x, [1, 0], [n - 1, 2]) ** 3)
            + gc.reduce_sum(gc.tanh(rest)) * gc.reduce_sum(first)
            + gc.reduce_sum(gc.ones(gc.shape(x), gc.float64) * gc.exp(x)))
    (dx,) = gc.gradients(loss, [x])
    xv = rng.standard_normal((4, 3))
    sess = gc.Session(backend=backend)
    got = sess.run(dx, {x: xv})
    check_against_central_differences(lambda f: float(sess.run(loss, f)), {x: xv}, [x], [got],
                                      rng, what=backend)


def test_zero_state_takes_any_specialization_time_batch_size():
    cell = gc.nn.rnn_cell.BasicLSTMCell(2)
    x = gc.placeholder(gc.float32, [None, 6])
    state = cell.zero_state(gc.size(x) // 6, gc.float32)
    assert state.c.shape == (None, 2)
    c, h = run_on("numpy", [state.c, state.h], {x: np.ones((5, 6), np.float32)})
    assert c.shape == h.shape == (5, 2) and not c.any()
    assert cell.zero_state(gc.shape(gc.zeros([3, 1]))[0], gc.float32).c.shape == (3, 2)


# -- refusals -------------------------------------------------------------------------------------
def _refusals(n, v, x):
    return {
        "shape": lambda: gc.zeros([n, 3]),
        "limit": lambda: gc.range(0, n),
        "depth": lambda: gc.one_hot([0, 1], n),
        "multiples": lambda: gc.tile(x, [n, 1]),
        "size": lambda: gc.slice(x, [0, 0], [n, 1]),
        "num_or_size_splits": lambda: gc.split(x, gc.stack([n, 1])),
        "batch_size": lambda: gc.nn.rnn_cell.BasicRNNCell(2).zero_state(n, gc.float32),
        "shape ": lambda: gc.reshape(x, [v, -1]),
        "shape  ": lambda: gc.random_normal(gc.stack([n])),
    }


@pytest.mark.parametrize("arg", list(_refusals(None, None, None)))
def test_data_dependent_sizes_are_refused_where_the_graph_is_built(arg):
    n = gc.placeholder(gc.int32, [], name="n")
    v = gc.Variable(3, name="v")
    x = gc.placeholder(gc.float32, [None, 3])
    build = _refusals(n, v, x)[arg]
    with pytest.raises(GraphError) as info:
        build()
    text = str(info.value)
    assert f"{arg.strip()} must be known when the step is specialized" in text
    assert ("placeholder 'n'" in text) or ("Variable 'v'" in text)
    assert "at test_dynamic_shapes.py:" in text
    assert "gc.shape(x)" in text


def test_unknown_dims_in_a_static_shape_are_refused():
    with pytest.raises(ShapeError, match=r"zeros: shape \[None, 3\] has unknown dims"):
        gc.zeros([None, 3])


@pytest.mark.parametrize("name", ["boolean_mask", "unique", "dynamic_partition"])
def test_data_shaped_ops_are_refused_with_the_idiom(name):
    if name == "boolean_mask" and hasattr(gc, "boolean_mask"):
        pytest.skip("boolean_mask is supported")
    with pytest.raises(AttributeError, match=r"depends on the data.*gc\.(where|equal)"):
        getattr(gc, name)


def test_where_with_one_argument_is_refused_with_the_idiom():
    x = gc.placeholder(gc.float32, [None])
    with pytest.raises(GraphError, match=r"(?s)depends on the data.*hint: keep the shape"):
        gc.where(x > 0)


def test_a_feed_still_must_fit_a_known_shape():
    x = gc.placeholder(gc.float32, [None, 3])
    with gc.Session(backend="numpy") as sess, pytest.raises(FeedError, match=r"f32\[\?,3\]"):
        sess.run(x * 2, {x: np.ones((2, 4))})


@pytest.mark.parametrize("backend", BACKENDS)
def test_linear_regression_with_shapeless_placeholders_trains(backend):
    X, Y = gc.placeholder("float"), gc.placeholder("float")
    W, b = gc.Variable(0.5, name="weight"), gc.Variable(0.1, name="bias")
    cost = gc.reduce_sum(gc.pow(X * W + b - Y, 2)) / (2 * 17)
    train = gc.train.GradientDescentOptimizer(0.01).minimize(cost)
    with gc.Session(backend=backend) as sess:
        sess.run(gc.global_variables_initializer())
        for xv, yv in ((1.0, 2.0), (2.0, 4.0)):  # one sample at a time: scalars
            sess.run(train, {X: xv, Y: yv})
        w, bias = sess.run([W, b])
        cost_all = sess.run(cost, {X: np.arange(17.0), Y: 2 * np.arange(17.0)})
    w_ref, b_ref = 0.5, 0.1
    for xv, yv in ((1.0, 2.0), (2.0, 4.0)):
        err = w_ref * xv + b_ref - yv
        w_ref, b_ref = w_ref - 0.01 * err * xv / 17, b_ref - 0.01 * err / 17
    assert (w, bias) == (pytest.approx(w_ref, rel=1e-5), pytest.approx(b_ref, rel=1e-5))
    assert cost_all == pytest.approx(np.sum((w_ref * np.arange(17) + b_ref
                                             - 2 * np.arange(17)) ** 2) / 34, rel=1e-5)


def test_the_command_line_takes_a_shape_for_an_unknown_rank():
    from graphc.cli.model import concrete_shapes
    X = gc.placeholder("float", name="X")
    x = gc.placeholder(gc.float32, [None, 3], name="x")
    assert concrete_shapes([X, x], {"X": (4,), "x": (2, 3)}) == {X: (4,), x: (2, 3)}
    with pytest.raises(FeedError, match=r"(?s)keep None dims: X.*--shape X=32"):
        concrete_shapes([X, x], {"x": (2, 3)})


@pytest.mark.parametrize("backend", BACKENDS)
def test_tf1_getting_started_linear_model(backend):
    """TF 1.x's 'Getting Started' program: its documented result is W -0.9999969,
    b 0.99999082, loss 5.69997e-11."""
    W = gc.Variable([.3], dtype=gc.float32)
    b = gc.Variable([-.3], dtype=gc.float32)
    x, y = gc.placeholder(gc.float32), gc.placeholder(gc.float32)
    loss = gc.reduce_sum(gc.square(W * x + b - y))
    train = gc.train.GradientDescentOptimizer(0.01).minimize(loss)
    feeds = {x: [1, 2, 3, 4], y: [0, -1, -2, -3]}
    with gc.Session(backend=backend) as sess:
        sess.run(gc.global_variables_initializer())
        for _ in range(1000):
            sess.run(train, feeds)
        got_w, got_b, got_loss = sess.run([W, b, loss], feeds)
    np.testing.assert_allclose(got_w, [-0.9999969], rtol=1e-5)
    np.testing.assert_allclose(got_b, [0.99999082], rtol=1e-5)
    assert got_loss < 1e-9


@pytest.mark.parametrize("backend", BACKENDS)
def test_scatter_and_segment_sums_take_dims_known_when_fed(backend):
    """TF1 builds scatter_nd of updates [None] and segment sums of data [None, 3]: their
    sizes must match the indices only once fed. A feed that does not match is a ShapeError
    naming the line, on both backends (the op's rule checks it at specialization; before
    that rule the LLVM step ran such a feed without a word)."""
    u = gc.placeholder(gc.float32, [None])
    y = gc.scatter_nd([[1], [3]], u, [5])
    d = gc.placeholder(gc.float32, [None, 3])
    z = gc.unsorted_segment_sum(d, [0, 1, 0], 2)
    with gc.Session(backend=backend) as sess:
        np.testing.assert_array_equal(sess.run(y, {u: np.array([2.0, 3.0], np.float32)}),
                                      [0, 2, 0, 3, 0])
        np.testing.assert_array_equal(sess.run(z, {d: np.ones((3, 3), np.float32)}),
                                      [[2, 2, 2], [1, 1, 1]])
        for fetch, feed, want in ((y, {u: np.ones(3, np.float32)}, r"shape \[2\].*f32\[3\]"),
                                  (z, {d: np.ones((4, 3), np.float32)},
                                   r"shape \[3,3\].*segment ids.*f32\[4,3\]")):
            with pytest.raises(ShapeError, match=want) as err:
                sess.run(fetch, feed)
            assert "test_dynamic_shapes.py" in str(err.value)
    with pytest.raises(ShapeError, match="segment_ids i32\\[1,2\\] must be a prefix"):
        gc.unsorted_segment_sum(gc.placeholder(gc.float32, [None, 3]), [[0, 1]], 2)
    w = gc.placeholder(gc.float32, [None, None])  # (the sums' shape known once fed)
    with gc.Session(backend=backend) as sess:
        np.testing.assert_array_equal(
            sess.run(gc.unsorted_segment_sum(w, [0, 1, 0], 2), {w: np.ones((3, 2), np.float32)}),
            [[2, 2], [1, 1]])
