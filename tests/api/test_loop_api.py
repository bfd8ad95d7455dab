"""TF1's loop APIs on loop nodes (``ir.loops``): while_loop, scan, map_fn, foldl, foldr,
dynamic_rnn and bidirectional_dynamic_rnn, on both backends.

Values and gradients are checked against the same computation unrolled (``static_rnn``, a
Python loop of graph ops) and against float64 central differences; trip counts that depend on
data, zero and one iteration, and sequence lengths of 0 and T.
"""
import numpy as np
import pytest

import graphc as gc
from graphc.nn import rnn_cell
from tests.support.checks import check_against_central_differences


@pytest.fixture(autouse=True)
def loops_stay_loops(monkeypatch):
    """These tests check the loop machinery: short loops are not unrolled (ir.passes.unroll)."""
    monkeypatch.setenv("GRAPHC_UNROLL", "0")

F64 = gc.float64
BACKENDS = ["numpy", "llvm"]


def _run(fetches, feeds, backend, optimize=True):
    with gc.Session(backend=backend, optimize=optimize) as sess:
        if gc.global_variables():
            sess.run(gc.global_variables_initializer())
        return sess.run(fetches, feeds)


def _loops_in(fetches):
    """The loop nodes the fetches depend on (the API built real loops, not an unrolling)."""
    seen, stack, loops = set(), list(fetches), []
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        if n.op_name == "loop":
            loops.append(n)
        stack.extend(n.inputs)
    return loops


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("T", [0, 1, 7])
def test_scan_and_folds_match_numpy_with_gradients(backend, T, rng):
    x = gc.placeholder(F64, [None, 3], name="x")
    W = gc.placeholder(F64, [3, 3], name="W")
    h0 = gc.placeholder(F64, [3], name="h0")
    hs = gc.scan(lambda h, r: gc.tanh(gc.reshape(gc.matmul(gc.reshape(h, [1, 3]), W), [3]) + r),
                 x, initializer=h0)
    back = gc.scan(lambda a, r: a * 0.5 + r, x, initializer=h0, reverse=True)
    fl = gc.foldl(lambda a, r: a * r, x, initializer=h0)
    fr = gc.foldr(lambda a, r: a * 2.0 + r, x, initializer=h0)
    loss = gc.reduce_sum(hs * hs) + gc.reduce_sum(back) + gc.reduce_sum(fl) + \
        gc.reduce_sum(gc.sin(fr) if hasattr(gc, "sin") else fr * fr)
    grads = gc.gradients(loss, [x, W, h0])
    assert len(_loops_in([hs, back, fl, fr])) == 4
    xv, wv, hv = rng.standard_normal((T, 3)), rng.standard_normal((3, 3)) * 0.5, \
        rng.standard_normal(3)
    want = [np.zeros((T, 3)), np.zeros((T, 3)), hv.copy(), hv.copy()]
    h = hv
    for t in range(T):
        h = np.tanh(h @ wv + xv[t])
        want[0][t] = h
        want[2] = want[2] * xv[t]
    a = hv
    for t in reversed(range(T)):
        a = a * 0.5 + xv[t]
        want[1][t] = a
        want[3] = want[3] * 2.0 + xv[t]
    feeds = {x: xv, W: wv, h0: hv}
    got = _run([hs, back, fl, fr, loss] + grads, feeds, backend)
    for g, w in zip(got[:4], want):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12)
    step = gc.compile(loss, feeds=[x, W, h0], backend="numpy", optimize=False)
    check_against_central_differences(lambda v: float(step(v)), feeds, [x, W, h0], got[5:],
                                      rng, f"scan/fold T={T}")


@pytest.mark.parametrize("backend", BACKENDS)
def test_map_fn_over_a_batch_known_when_fed(backend, rng):
    x = gc.placeholder(F64, [None, 4], name="x")
    norms = gc.map_fn(lambda r: gc.sqrt(gc.reduce_sum(r * r)), x)
    (dx,) = gc.gradients(gc.reduce_sum(norms), [x])
    for n in (0, 1, 5):
        xv = rng.standard_normal((n, 4))
        got, gx = _run([norms, dx], {x: xv}, backend)
        np.testing.assert_allclose(got, np.linalg.norm(xv, axis=1), rtol=1e-13)
        np.testing.assert_allclose(gx, xv / np.linalg.norm(xv, axis=1, keepdims=True)
                                   if n else xv, rtol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_while_loop_with_a_data_dependent_trip_count_and_gradients(backend, rng):
    """Newton's iteration for sqrt(a) until converged (cond reads data), bounded for BPTT."""
    a = gc.placeholder(F64, [], name="a")
    i, y = gc.while_loop(lambda i, y: gc.abs(y * y - a) > 1e-10,
                         lambda i, y: (i + 1, 0.5 * (y + a / y)), (0, a),
                         maximum_iterations=50)
    (dy,) = gc.gradients(y, [a])
    for value in (2.0, 9.0, 1e6):  # (a = 1 runs no iteration: dy/da is then 1)
        n, root, d = _run([i, y, dy], {a: value}, backend)
        np.testing.assert_allclose(root, np.sqrt(value), rtol=1e-9)
        np.testing.assert_allclose(d, 0.5 / np.sqrt(value), rtol=1e-6)
        assert 0 < n < 50


def _cell_graph(kind, time_major, T, lengths_fed, rng, bidirectional=False):
    g = gc.Graph()
    with g.as_default():
        shape = [T, None, 2] if time_major else [None, T, 2]
        x = gc.placeholder(F64, shape, name="x")
        seq = gc.placeholder(gc.int32, [None], name="lengths") if lengths_fed else None
        make = {"lstm": lambda: rnn_cell.BasicLSTMCell(3),
                "gru": lambda: rnn_cell.GRUCell(3),
                "multi": lambda: rnn_cell.MultiRNNCell([rnn_cell.GRUCell(3),
                                                        rnn_cell.BasicLSTMCell(2)])}[kind]
        if bidirectional:
            fw, bw = make(), make()
            (of, ob), (sf, sb) = gc.nn.bidirectional_dynamic_rnn(
                fw, bw, x, sequence_length=seq, dtype=F64, time_major=time_major)
            outs, states = [of, ob], gc.nest.flatten([sf, sb]) if hasattr(gc, "nest") else \
                _flat([sf, sb])
            with gc.variable_scope("static"):
                steps = gc.unstack(x, axis=0 if time_major else 1)
                souts, ssf, ssb = gc.nn.static_bidirectional_rnn(fw, bw, steps,
                                                                 sequence_length=seq, dtype=F64)
            ref = [gc.stack(souts, axis=0 if time_major else 1), _flat([ssf, ssb])]
            got = [gc.concat(outs, 2), states]
        else:
            cell = make()
            out, state = gc.nn.dynamic_rnn(cell, x, sequence_length=seq, dtype=F64,
                                           time_major=time_major)
            steps = gc.unstack(x, axis=0 if time_major else 1)
            sout, sstate = gc.nn.static_rnn(cell, steps, sequence_length=seq, dtype=F64)
            got = [out, _flat(state)]
            ref = [gc.stack(sout, axis=0 if time_major else 1), _flat(sstate)]
        loss = gc.reduce_sum(got[0] * got[0]) + sum(gc.reduce_sum(s) for s in got[1])
        rloss = gc.reduce_sum(ref[0] * ref[0]) + sum(gc.reduce_sum(s) for s in ref[1])
        vs = gc.trainable_variables()
        grads, rgrads = gc.gradients(loss, vs + [x]), gc.gradients(rloss, vs + [x])
        assert _loops_in([loss])
    return g, x, seq, loss, rloss, grads, rgrads


def _flat(state):
    out = []
    for s in state if isinstance(state, (list, tuple)) else [state]:
        out += _flat(s) if isinstance(s, (list, tuple)) else [s]
    return out


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind,time_major,bidirectional", [
    ("lstm", False, False), ("gru", True, False), ("multi", False, False),
    ("lstm", False, True)])
def test_dynamic_rnn_equals_the_unrolled_rnn(backend, kind, time_major, bidirectional, rng):
    T, B = 6, 4
    g, x, seq, loss, rloss, grads, rgrads = _cell_graph(kind, time_major, T, True, rng,
                                                        bidirectional)
    xv = rng.standard_normal((T, B, 2) if time_major else (B, T, 2))
    feeds = {x: xv, seq: np.array([T, 0, 1, 3], np.int32)}  # lengths T, 0, 1 and between
    with gc.Session(graph=g, backend=backend) as sess:
        sess.run(gc.global_variables_initializer())
        got = sess.run([loss] + grads, feeds)
        want = sess.run([rloss] + rgrads, feeds)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_dynamic_rnn_gradients_match_central_differences(rng):
    T, B = 5, 2
    x = gc.placeholder(F64, [B, T, 2], name="x")
    seq = gc.constant([5, 2], gc.int32)
    out, state = gc.nn.dynamic_rnn(rnn_cell.BasicLSTMCell(3), x, sequence_length=seq,
                                   dtype=F64)
    loss = gc.reduce_sum(out * out) + gc.reduce_sum(state.h)
    (dx,) = gc.gradients(loss, [x])
    xv = rng.standard_normal((B, T, 2))
    with gc.Session() as sess:
        sess.run(gc.global_variables_initializer())
        got = sess.run(dx, {x: xv})
        check_against_central_differences(lambda v: float(sess.run(loss, v)), {x: xv}, [x],
                                          [got], rng, "dynamic_rnn")


def test_dynamic_rnn_is_one_body_whatever_the_length():
    """The graph does not grow with T: the cell is built once, the time dim may be unknown."""
    sizes = []
    for T in (4, 64, None):
        g = gc.Graph()
        with g.as_default():
            x = gc.placeholder(gc.float32, [8, T, 5])
            out, _ = gc.nn.dynamic_rnn(rnn_cell.GRUCell(6), x, dtype=gc.float32)
            (d,) = gc.gradients(gc.reduce_sum(out), [x])
            sizes.append(len(g.nodes))
    assert sizes[0] == sizes[1] == sizes[2]


@pytest.mark.parametrize("backend", BACKENDS)
def test_nested_loops_and_their_gradients(backend):
    """A while_loop inside scan's body: the outer adjoint saves the inner loop's results and
    runs the inner adjoint loop in its own body; it equals the unrolled graph."""
    x = gc.placeholder(F64, [4, 3], name="x")

    def fn(a, r):
        _, s = gc.while_loop(lambda i, s: i < 3, lambda i, s: (i + 1, gc.tanh(s) * 0.5 + r),
                             (0, a))
        return s
    hs = gc.scan(fn, x, initializer=gc.zeros([3], F64))
    loss = gc.reduce_sum(hs * hs)
    (g,) = gc.gradients(loss, [x])
    a, outs = gc.zeros([3], F64), []
    for t in range(4):
        for _ in range(3):
            a = gc.tanh(a) * 0.5 + x[t]
        outs.append(a)
    ref = gc.reduce_sum(gc.stack(outs) ** 2)
    (rg,) = gc.gradients(ref, [x])
    xv = np.random.default_rng(3).uniform(-1, 1, (4, 3))
    got = _run([loss, g, ref, rg], {x: xv}, backend)
    np.testing.assert_allclose(got[0], got[2], rtol=1e-12)
    np.testing.assert_allclose(got[1], got[3], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_body_that_changes_a_shape_known_only_when_fed_is_a_clear_error(backend):
    x = gc.placeholder(gc.float32, None, name="x")  # unknown rank: checked when fed
    _, y = gc.while_loop(lambda i, y: i < 3, lambda i, y: (i + 1, gc.concat([y, y], 0)), (0, x))
    with pytest.raises(gc.errors.ShapeError, match=r"the body returns f32\[4\] for loop "
                       r"variable .* of f32\[2\](.|\n)*test_loop_api.py:\d+"):
        _run(y, {x: np.ones(2, np.float32)}, backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_tensor_arrays_in_a_while_loop_run_as_a_loop(backend):
    """TF1's idiom: read an unstacked input at the counter, write the state at it, stack
    after the loop. The loop stays one node (the write becomes a stacked output), with
    values and gradients equal to the unrolled graph."""
    T = 6
    x = gc.placeholder(F64, [T, 3], name="x")
    xs = gc.TensorArray(F64, size=T).unstack(x)

    def body(t, h, ta):
        h = gc.tanh(h * 0.5 + xs.read(t))
        return t + 1, h, ta.write(t, h * 2.0)
    _, h, ta = gc.while_loop(lambda t, h, ta: t < T, body,
                             (0, gc.zeros([3], F64), gc.TensorArray(F64, size=T)))
    y = ta.stack()
    (g,) = gc.gradients(gc.reduce_sum(y * y) + gc.reduce_sum(h), [x])
    assert len(_loops_in([y])) == 1 and y.op_name == "loop_output"
    h2, ys = gc.zeros([3], F64), []
    for t in range(T):
        h2 = gc.tanh(h2 * 0.5 + x[t])
        ys.append(h2 * 2.0)
    y2 = gc.stack(ys)
    (g2,) = gc.gradients(gc.reduce_sum(y2 * y2) + gc.reduce_sum(h2), [x])
    xv = np.random.default_rng(4).normal(size=(T, 3))
    got = _run([y, g, y2, g2], {x: xv}, backend)
    np.testing.assert_allclose(got[0], got[2], rtol=1e-12)
    np.testing.assert_allclose(got[1], got[3], rtol=1e-12, atol=1e-14)
