"""Feeding any tensor, as TF1's feed_dict allows: intermediate values (the fed value replaces
the node for everything downstream, gradients included; its upstream is not needed), the
char-RNN initial-state pattern (also a nested LSTM state fed as one key), Variables (reads
see the fed value, the stored value stays), the compile cache keyed by the fed set,
``gc.compile(feeds=[h])`` and clear errors."""
import numpy as np
import pytest

import graphc as gc
from graphc.errors import FeedError

BACKENDS = [("numpy", False), ("numpy", True), ("llvm", False), ("llvm", True)]
W1 = np.linspace(-1.0, 1.0, 12).reshape(3, 4)
W2 = np.linspace(0.5, -0.7, 8).reshape(4, 2)
H = np.array([[0.3, -0.2, 0.9, 0.1], [-0.5, 0.4, 0.0, 0.7]])
XB = np.array([[1.0, 2.0, -1.0], [0.5, 0.0, 0.25]])


def _head(h, w2):
    """What both graphs compute from the hidden layer: a loss and its gradients."""
    out = gc.tanh(gc.matmul(h, w2))
    loss = gc.reduce_sum(out * out)
    return loss, gc.gradients(loss, [w2, h])


def _two_layer(dtype=gc.float64):
    x = gc.placeholder(dtype, [None, 3], name="x")
    w1 = gc.Variable(W1.astype(dtype.np), name="W1")
    w2 = gc.Variable(W2.astype(dtype.np), name="W2")
    h = gc.nn.relu(gc.matmul(x, w1), name="h")
    loss, grads = _head(h, w2)
    return x, h, w1, w2, loss, grads


def _session(backend, optimize, graph=None):
    sess = gc.Session(graph=graph, backend=backend, optimize=optimize)
    with sess.graph.as_default():
        sess.run(gc.global_variables_initializer())
    return sess


@pytest.mark.parametrize("backend,optimize", BACKENDS)
def test_fed_intermediate_equals_a_placeholder_there(backend, optimize):
    x, h, w1, w2, loss, grads = _two_layer()
    sess = _session(backend, optimize)
    got = sess.run([loss] + grads, {h: H})  # x is not fed: only h needed it
    ref_graph = gc.Graph()
    with ref_graph.as_default():
        hp = gc.placeholder(gc.float64, [None, 4], name="hp")
        ref_loss, ref_grads = _head(hp, gc.Variable(W2, name="W2"))
        want = _session("numpy", False).run([ref_loss] + ref_grads, {hp: H})
    for name, a, b in zip(["loss", "dW2", "dh"], got, want):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14, err_msg=name)
    # dW2 really differs from the unfed step's: the feed was not ignored
    assert not np.allclose(sess.run(grads[0], {x: XB}), got[1])


def test_an_upstream_placeholder_is_needed_only_through_other_paths():
    x, h, w1, w2, loss, grads = _two_layer()
    sess = _session("numpy", True)
    dw1 = gc.gradients(loss, w1)[0]  # x^T dh: reads x besides h
    with pytest.raises(FeedError, match=r"1 placeholder\(s\) must be fed: x"):
        sess.run(dw1, {h: H})
    relu_mask = (XB @ W1 > 0)
    dh = sess.run(grads[1], {h: H})
    np.testing.assert_allclose(sess.run(dw1, {h: H, x: XB}), XB.T @ (dh * relu_mask),
                               rtol=1e-12)


@pytest.mark.parametrize("backend,optimize", [("numpy", True), ("llvm", True)])
def test_rnn_initial_state_fed_with_the_last_final_state(backend, optimize):
    batch, steps, depth, units = 2, 4, 3, 5
    inputs = gc.placeholder(gc.float32, [batch, steps, depth], name="inputs")
    cell = gc.nn.rnn_cell.BasicRNNCell(units)
    initial_state = cell.zero_state(batch, gc.float32)
    _, final_state = gc.nn.dynamic_rnn(cell, inputs, initial_state=initial_state)
    sess = _session(backend, optimize)
    kernel, bias = sess.run([cell.kernel, cell.bias])
    rng = np.random.default_rng(7)
    chunks = rng.standard_normal((3, batch, steps, depth)).astype(np.float32)
    state = sess.run(initial_state)
    manual = np.zeros((batch, units), np.float64)
    for chunk in chunks:
        state = sess.run(final_state, {inputs: chunk, initial_state: state})
        for t in range(steps):
            manual = np.tanh(np.concatenate([chunk[:, t], manual], 1) @ kernel + bias)
        np.testing.assert_allclose(state, manual, rtol=1e-5, atol=1e-6)
    assert np.abs(manual).max() > 0.1  # the state carried something


def test_nested_lstm_state_fed_as_one_key_equals_one_long_sequence():
    batch, steps, depth = 2, 3, 4
    cell = gc.nn.rnn_cell.MultiRNNCell([gc.nn.rnn_cell.BasicLSTMCell(n) for n in (5, 3)])
    chunk = gc.placeholder(gc.float32, [batch, steps, depth], name="chunk")
    whole = gc.placeholder(gc.float32, [batch, 3 * steps, depth], name="whole")
    initial_state = cell.zero_state(batch, gc.float32)
    _, final_state = gc.nn.dynamic_rnn(cell, chunk, initial_state=initial_state)
    _, final_whole = gc.nn.dynamic_rnn(cell, whole, initial_state=initial_state)  # same weights
    xs = np.random.default_rng(3).standard_normal((batch, 3 * steps, depth)).astype(np.float32)
    sess = _session("numpy", True)
    step = gc.compile(final_state, feeds=[chunk, initial_state])
    for name, value in step.variables.items():  # the step initialized its own copy
        sess.load_variable(sess.graph.get_tensor_by_name(name), value)
    state = sess.run(initial_state)
    compiled_state = state
    for k in range(3):
        piece = xs[:, k * steps:(k + 1) * steps]
        state = sess.run(final_state, {chunk: piece, initial_state: state})
        compiled_state = step({chunk: piece, initial_state: compiled_state})
    want = sess.run(final_whole, {whole: xs})
    for got in (state, compiled_state):
        for (c, h), (wc, wh) in zip(got, want):
            np.testing.assert_allclose(c, wc, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(h, wh, rtol=1e-5, atol=1e-6)
    with pytest.raises(FeedError, match=r"a feed key of 2 tensors needs as many values, found "
                                        r"1 values"):
        sess.run(final_state, {chunk: xs[:, :steps], initial_state: [state[0]]})


@pytest.mark.parametrize("backend,optimize", BACKENDS)
def test_fed_variable_replaces_its_reads_and_keeps_its_value(backend, optimize):
    x, h, w1, w2, loss, grads = _two_layer()
    sess = _session(backend, optimize)
    other = 2.0 * W2
    got = sess.run([loss, w2], {x: XB, w2: other})
    want = np.sum(np.tanh(np.maximum(XB @ W1, 0) @ other) ** 2)
    np.testing.assert_allclose(got[0], want, rtol=1e-12)
    np.testing.assert_array_equal(got[1], other)
    np.testing.assert_array_equal(sess.run(w2), W2)  # the stored value is unchanged
    np.testing.assert_allclose(sess.run(loss, {x: XB}),
                               np.sum(np.tanh(np.maximum(XB @ W1, 0) @ W2) ** 2), rtol=1e-12)


@pytest.mark.parametrize("backend,optimize", BACKENDS)
def test_fed_variable_still_assigned_by_an_update_not_reading_it(backend, optimize):
    v = gc.Variable(np.arange(3.0), name="v")
    u = gc.Variable(np.zeros(3), name="u")
    reset = gc.assign(v, gc.constant(np.full(3, 7.0)))
    copy = gc.assign(u, v * 10.0)  # another variable updated from the fed read
    sess = _session(backend, optimize)
    fetched = sess.run([v * 1.0, reset, copy], {v: np.ones(3)})
    np.testing.assert_array_equal(fetched[0], np.ones(3))
    np.testing.assert_array_equal(sess.run(v), np.full(3, 7.0))
    np.testing.assert_array_equal(sess.run(u), np.full(3, 10.0))


def test_fed_variable_updated_from_its_own_value_is_refused():
    x, h, w1, w2, loss, grads = _two_layer()
    train = gc.train.GradientDescentOptimizer(0.1).minimize(loss, var_list=[w2])
    sess = _session("numpy", True)
    with pytest.raises(FeedError, match=r"cannot feed variable 'W2': assign '[^']*' in the "
                                        r"same step updates it from its value\n  the update "
                                        r"is at " + _line_of(train)):
        sess.run(train, {x: XB, w2: W2})
    sess.run(train, {x: XB, w1: W1})  # feeding the other variable is fine
    assert not np.allclose(sess.run(w2), W2) and np.array_equal(sess.run(w1), W1)


@pytest.mark.parametrize("backend,optimize", [("numpy", True), ("llvm", False)])
def test_compile_cache_is_keyed_by_the_fed_set(backend, optimize):
    x, h, w1, w2, loss, grads = _two_layer()
    sess = _session(backend, optimize)
    fed, fed_row = np.sum(np.tanh(H @ W2) ** 2), np.sum(np.tanh(H[:1] @ W2) ** 2)
    unfed = np.sum(np.tanh(np.maximum(XB @ W1, 0) @ W2) ** 2)
    for _ in range(2):
        np.testing.assert_allclose(sess.run(loss, {x: XB, h: H}), fed, rtol=1e-12)
        np.testing.assert_allclose(sess.run(loss, {x: XB}), unfed, rtol=1e-12)
        np.testing.assert_allclose(sess.run(loss, {h: H[:1]}), fed_row, rtol=1e-12)
    assert sum(1 for fetched, _ in sess._cache if fetched == (loss.id,)) == 3


def _line_of(node):
    return rf"test_feed_any_tensor\.py:{node.loc.lineno}"


def test_bad_feeds_name_the_node_and_its_line():
    x, h, w1, w2, loss, grads = _two_layer()
    sess = _session("numpy", True)
    with pytest.raises(FeedError, match=r"relu 'h' expects f64\[\?,4\], fed \[2,3\]\n  at "
                                        + _line_of(h)):
        sess.run(loss, {h: np.zeros((2, 3))})
    with pytest.raises(FeedError, match=r"variable 'W2' expects f64\[4,2\], fed \[2,4\]"):
        sess.run(loss, {x: XB, w2: np.zeros((2, 4))})
    with pytest.raises(FeedError, match=r"cannot feed a value of dtype <U1 to relu 'h'"):
        sess.run(loss, {h: [["a"] * 4]})
    n = gc.argmax(x, 1, name="n")
    with pytest.raises(FeedError, match=r"cannot feed a float64 value holding NaN or Inf to "
                                        r"int64 argmax 'n'\n  at " + _line_of(n)):
        sess.run(n * 2, {n: [1.0, np.inf]})
    np.testing.assert_array_equal(sess.run(n * 2, {n: [1.0, 2.0]}), [2, 4])   # as TF1
    other = gc.Graph()
    with other.as_default():
        alien = gc.constant(1.0, name="alien")
    with pytest.raises(FeedError, match=r"cannot feed const 'alien': it belongs to another "
                                        r"graph\n  at " + _line_of(alien)):
        sess.run(loss, {alien: 1.0, h: H})
    init = gc.global_variables_initializer()
    with pytest.raises(FeedError, match=r"cannot feed group '[^']*': it has no value"):
        sess.run(loss, {init: 0.0, h: H})


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_compile_with_an_intermediate_feed(backend):
    x, h, w1, w2, loss, grads = _two_layer()
    step = gc.compile([loss, grads[0]], feeds=[h], backend=backend)
    ref = gc.compile([loss, grads[0]], feeds=[x], optimize=False)
    a = step(h=H)
    b = step({h: np.maximum(XB @ W1, 0)})
    c = ref(x=XB)
    np.testing.assert_allclose(a[0], np.sum(np.tanh(H @ W2) ** 2), rtol=1e-12)
    for got, want in zip(b, c):
        np.testing.assert_allclose(got, want, rtol=1e-12)
    with pytest.raises(FeedError, match="not a feed of this step"):
        step(h=H, x=XB)
    with pytest.raises(FeedError, match=r"not in feeds: x"):
        gc.compile(gc.gradients(loss, w1)[0], feeds=[h])


def test_compile_with_a_fed_variable_leaves_its_array_alone():
    x, h, w1, w2, loss, grads = _two_layer()
    copy_w2 = gc.Variable(np.zeros((4, 2)), name="copy")
    save = gc.assign(copy_w2, w2 + 0.0)
    step = gc.compile([loss, save], feeds=[x, w2])
    got, saved = step(x=XB, W2=step.variables["W2"] * 3.0)
    np.testing.assert_allclose(got, np.sum(np.tanh(np.maximum(XB @ W1, 0) @ (3 * W2)) ** 2),
                               rtol=1e-12)
    np.testing.assert_array_equal(step.variables["copy"], 3 * W2)
    np.testing.assert_array_equal(step.variables["W2"], W2)
