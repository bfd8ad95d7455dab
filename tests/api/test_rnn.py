"""RNNs unrolled: each cell against a hand-unrolled NumPy reference, backpropagation
through time against central differences and against the hand-derived BPTT of the W3
baseline, shared weights, sequence_length masking, bidirectional and dynamic forms."""
import sys
from pathlib import Path

import numpy as np
import pytest

import graphc as gc
from graphc.errors import GraphError

from tests.support.checks import run_both
from tests.support.layer_testing import check_gradients, open_session
from tests.support.paths import ROOT

F64 = gc.float64
rnn_cell = gc.nn.rnn_cell


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


# -- hand-unrolled NumPy cells (TF1 layouts), weights as the session holds them ----------------
def np_basic_rnn(w, x, h):
    out = np.tanh(np.concatenate([x, h], 1) @ w[0] + w[1])
    return out, out


def np_basic_lstm(w, x, state, forget_bias=1.0):
    c, h = state
    i, j, f, o = np.split(np.concatenate([x, h], 1) @ w[0] + w[1], 4, axis=1)
    c = c * _sigmoid(f + forget_bias) + _sigmoid(i) * np.tanh(j)
    h = np.tanh(c) * _sigmoid(o)
    return h, (c, h)


def np_lstm_peephole_proj(w, x, state, clip=0.5, proj_clip=0.3):
    kernel, bias, wf, wi, wo, proj = w
    c, m = state
    i, j, f, o = np.split(np.concatenate([x, m], 1) @ kernel + bias, 4, axis=1)
    c = _sigmoid(f + 1.0 + wf * c) * c + _sigmoid(i + wi * c) * np.tanh(j)
    c = np.clip(c, -clip, clip)
    m = np.clip((_sigmoid(o + wo * c) * np.tanh(c)) @ proj, -proj_clip, proj_clip)
    return m, (c, m)


def np_gru(w, x, h):
    gk, gb, ck, cb = w
    r, u = np.split(_sigmoid(np.concatenate([x, h], 1) @ gk + gb), 2, axis=1)
    c = np.tanh(np.concatenate([x, r * h], 1) @ ck + cb)
    new = u * h + (1 - u) * c
    return new, new


CELLS = {
    "BasicRNNCell": (lambda: rnn_cell.BasicRNNCell(4), np_basic_rnn),
    "BasicLSTMCell": (lambda: rnn_cell.BasicLSTMCell(4), np_basic_lstm),
    "LSTMCell[peepholes,proj,clip]": (
        lambda: rnn_cell.LSTMCell(4, use_peepholes=True, cell_clip=0.5, num_proj=3,
                                  proj_clip=0.3), np_lstm_peephole_proj),
    "GRUCell": (lambda: rnn_cell.GRUCell(4), np_gru),
}


def _zero_state(cell, batch):
    def zeros(size):
        return np.zeros((batch, size))
    size = cell.state_size
    return tuple(zeros(s) for s in size) if isinstance(size, tuple) else zeros(size)


def np_unroll(step, weights, xs, state, lengths=None):
    """Run a NumPy cell over steps, masking as TF1 does (zero outputs, state carried)."""
    outputs = []
    for t, x in enumerate(xs):
        out, new = step(weights, x, state)
        if lengths is not None:
            done = (t >= lengths)[:, None]
            out = np.where(done, 0.0, out)
            new = tuple(np.where(done, o, n) for o, n in zip(state, new)) \
                if isinstance(new, tuple) else np.where(done, state, new)
        outputs.append(out)
        state = new
    return outputs, state


def _build(name, batch=2, steps=3, depth=3, lengths=False):
    make, step = CELLS[name]
    cell = make()
    xs = [gc.placeholder(F64, [None, depth], name=f"x{t}") for t in range(steps)]
    seq = gc.placeholder(gc.int32, [None], name="len") if lengths else None
    outputs, state = gc.nn.static_rnn(cell, xs, dtype=F64, sequence_length=seq)
    return cell, step, xs, seq, outputs, state


@pytest.mark.parametrize("name", list(CELLS))
def test_cell_matches_hand_unrolled_numpy(name, rng):
    cell, step, xs, _, outputs, state = _build(name)
    values = [rng.standard_normal((2, 3)) for _ in xs]
    with open_session(False) as sess:
        weights = sess.run(cell.variables)
        got_out, got_state = sess.run([outputs, state], dict(zip(xs, values)))
    want_out, want_state = np_unroll(step, weights, values, _zero_state(cell, 2))
    np.testing.assert_allclose(got_out, want_out, rtol=1e-12, atol=1e-14)
    for got, want in zip(gc.nn.rnn_cell.flatten(got_state), gc.nn.rnn_cell.flatten(want_state)):
        np.testing.assert_allclose(got, want, rtol=1e-12)
    if isinstance(cell.state_size, tuple):
        assert type(got_state).__name__ == "LSTMStateTuple" and got_state.c.shape[0] == 2


@pytest.mark.parametrize("name", list(CELLS))
def test_bptt_gradients_match_central_differences(name, rng):
    """Gradients wrt every weight (shared by all steps: contributions summed) and input."""
    cell, _, xs, _, outputs, state = _build(name)
    loss = sum(gc.reduce_sum(o * rng.standard_normal((2, o.shape[1]))) for o in outputs)
    loss = loss + gc.reduce_sum(gc.square(gc.nn.rnn_cell.flatten(state)[0]))
    feeds = {x: rng.standard_normal((2, 3)) for x in xs}
    with open_session(False) as sess:
        values = {v: np.asarray(sess.run(v)) + 0.1 * rng.standard_normal(v.shape)
                  for v in cell.variables}
    check_gradients(loss, cell.variables + xs[:1], feeds, rng, values, what=name)


def test_weights_are_created_once_and_shared_by_all_steps():
    cell, _, xs, _, outputs, _ = _build("BasicLSTMCell", steps=5)
    assert [v.op.name for v in gc.trainable_variables()] == ["rnn/basic_lstm_cell/kernel",
                                                          "rnn/basic_lstm_cell/bias"]
    assert cell.variables == gc.trainable_variables() and len(outputs) == 5
    assert gc.trainable_variables()[0].shape == (3 + 4, 16)
    matmuls = [n for n in gc.get_default_graph().nodes if n.op_name == "matmul"]
    assert len(matmuls) == 5 and all(m.inputs[1] is cell.kernel for m in matmuls)


def _baselines():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import baselines
    return baselines


def test_bptt_matches_the_hand_derived_w3_baseline():
    """W3 (T=32 vanilla RNN, readout of the last state): static_rnn with BasicRNNCell, whose
    kernel is [Wx; Wh], gives the baseline's loss and hand-derived BPTT gradients."""
    B = _baselines()
    base = B.W3(seed=0, dtype=np.float64)
    base.params["b"][...] = 0.1 * np.random.default_rng(3).standard_normal(base.n_hidden)
    xv, yv = B.make_data("W3", seed=1, dtype=np.float64)
    want_loss = base.loss_and_grads(xv, yv)
    p = base.params
    x = gc.placeholder(F64, [base.T, None, base.n_in])
    y = gc.placeholder(gc.int64, [None])
    cell = rnn_cell.BasicRNNCell(base.n_hidden)
    _, last = gc.nn.static_rnn(cell, gc.unstack(x), dtype=F64)
    wo, bo = gc.Variable(p["Wo"].copy()), gc.Variable(p["bo"].copy())
    loss = gc.reduce_mean(gc.nn.sparse_softmax_cross_entropy_with_logits(
        labels=y, logits=gc.matmul(last, wo) + bo))
    grads = gc.gradients(loss, cell.variables + [wo, bo])
    kernel = np.concatenate([p["Wx"], p["Wh"]])
    with open_session(False, {cell.kernel: kernel, cell.bias: p["b"]}) as sess:
        got_loss, (dk, db, dwo, dbo) = sess.run([loss, grads], {x: xv, y: yv})
    assert abs(got_loss - want_loss) < 1e-12
    g = base.grads
    for got, want in [(dk, np.concatenate([g["Wx"], g["Wh"]])), (db, g["b"]), (dwo, g["Wo"]),
                      (dbo, g["bo"])]:
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-13)


# -- sequence_length ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["BasicLSTMCell", "GRUCell"])
def test_sequence_length_masks_steps_past_the_end(name, rng):
    cell, step, xs, seq, outputs, state = _build(name, batch=3, steps=4, lengths=True)
    values = [rng.standard_normal((3, 3)) for _ in xs]
    lengths = np.array([2, 4, 0], np.int32)
    feeds = {**dict(zip(xs, values)), seq: lengths}
    with open_session(False) as sess:
        weights = sess.run(cell.variables)
    for got_out, got_state in run_both([outputs, state], feeds):
        want_out, want_state = np_unroll(step, weights, values, _zero_state(cell, 3), lengths)
        np.testing.assert_allclose(got_out, want_out, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(np.asarray(got_state), np.asarray(want_state), rtol=1e-12)
        assert not np.any(np.asarray(got_out)[2:, 0]) and not np.any(np.asarray(got_out)[:, 2])
        # The final state of sequence 0 is its state after step 2 of 4.
        short = np_unroll(step, weights, [v[:1] for v in values[:2]], _zero_state(cell, 1))[1]
        np.testing.assert_allclose(np.asarray(got_state)[..., 0, :], np.asarray(short)[..., 0, :],
                                   rtol=1e-12)


def test_sequence_length_gradients(rng):
    """Masked steps pass no gradient to their inputs; the rest match central differences."""
    cell, _, xs, seq, outputs, state = _build("BasicRNNCell", batch=2, steps=3, lengths=True)
    loss = sum(gc.reduce_sum(gc.tanh(o) * float(k + 1)) for k, o in enumerate(outputs))
    loss = loss + gc.reduce_sum(state * state)
    feeds = {**{x: rng.standard_normal((2, 3)) for x in xs}, seq: np.array([1, 3], np.int32)}
    grads = check_gradients(loss, cell.variables + xs, feeds, rng, what="masked")
    dx = grads[len(cell.variables):]
    assert not dx[1][0].any() and not dx[2][0].any() and dx[1][1].any() and dx[0][0].any()


# -- bidirectional and dynamic ---------------------------------------------------------------------
def test_static_bidirectional_rnn_reverses_within_each_length(rng):
    fw, bw = rnn_cell.GRUCell(3), rnn_cell.BasicRNNCell(2)
    xs = [gc.placeholder(F64, [None, 2]) for _ in range(4)]
    seq = gc.placeholder(gc.int32, [None])
    outputs, fw_state, bw_state = gc.nn.static_bidirectional_rnn(fw, bw, xs, dtype=F64,
                                                                sequence_length=seq)
    assert [v.op.name.split("/")[:2] for v in gc.trainable_variables()][0] == \
        ["bidirectional_rnn", "fw"]
    values = [rng.standard_normal((2, 2)) for _ in xs]
    lengths = np.array([3, 4], np.int32)
    with open_session(False) as sess:
        wf, wb = sess.run(fw.variables), sess.run(bw.variables)
    got = run_both([outputs, fw_state, bw_state], {**dict(zip(xs, values)), seq: lengths})
    f_out, f_state = np_unroll(np_gru, wf, values, np.zeros((2, 3)), lengths)
    for b, n in enumerate(lengths):  # the backward cell sees example b reversed within n
        rev = [v[b:b + 1] for v in values[:n][::-1]]
        b_out, b_state = np_unroll(np_basic_rnn, wb, rev, np.zeros((1, 2)))
        for outs, _, bstate in got:
            np.testing.assert_allclose(bstate[b], b_state[0], rtol=1e-12)
            for t in range(4):
                want_bw = b_out[n - 1 - t][0] if t < n else np.zeros(2)
                np.testing.assert_allclose(outs[t][b], np.concatenate([f_out[t][b], want_bw]),
                                           rtol=1e-12, atol=1e-14)
    for _, fstate, _ in got:
        np.testing.assert_allclose(fstate, f_state, rtol=1e-12)


@pytest.mark.parametrize("time_major", [False, True])
def test_dynamic_rnn_equals_static_rnn(time_major, rng):
    cell = rnn_cell.BasicLSTMCell(3)
    shape = [5, None, 2] if time_major else [None, 5, 2]
    x = gc.placeholder(F64, shape)
    seq = gc.placeholder(gc.int64, [None])
    out, state = gc.nn.dynamic_rnn(cell, x, sequence_length=seq, dtype=F64,
                                   time_major=time_major)
    steps = gc.unstack(x, axis=0 if time_major else 1)
    static_out, static_state = gc.nn.static_rnn(cell, steps, sequence_length=seq, dtype=F64)
    assert len(gc.trainable_variables()) == 2  # the second call reused the cell's weights
    xv = rng.standard_normal((5, 2, 2) if time_major else (2, 5, 2))
    feeds = {x: xv, seq: np.array([5, 3])}
    (o, s, so, ss), _ = run_both([out, state, static_out, static_state], feeds)
    np.testing.assert_allclose(o, np.stack(so, axis=0 if time_major else 1), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(s), np.asarray(ss), rtol=1e-12)
    assert o.shape == xv.shape[:2] + (3,)


def test_multi_rnn_cell_and_zero_state_from_the_batch_size(rng):
    cells = rnn_cell.MultiRNNCell([rnn_cell.GRUCell(3), rnn_cell.BasicLSTMCell(2)])
    x = gc.placeholder(F64, [None, 4, 2])
    init = cells.zero_state(gc.shape(x)[0], F64)
    out, state = gc.nn.dynamic_rnn(cells, x, initial_state=init)
    names = [v.op.name for v in gc.trainable_variables()]
    assert names[0] == "rnn/multi_rnn_cell/cell_0/gru_cell/gates/kernel" and len(names) == 6
    got_out, got_state, got_init = run_both([out, state, init], {x: rng.random((3, 4, 2))})[0]
    assert got_out.shape == (3, 4, 2) and got_state[1].h.shape == (3, 2)
    assert got_init[0].shape == (3, 3) and not got_init[1].c.any()


def test_rnn_errors_are_clear():
    cell = rnn_cell.BasicRNNCell(2)
    x = gc.placeholder(gc.float32, [None, 4, 3])
    with pytest.raises(GraphError, match="list of"):
        gc.nn.static_rnn(cell, x, dtype=gc.float32)
    with pytest.raises(GraphError, match="3-D tensor"):
        gc.nn.dynamic_rnn(cell, gc.placeholder(gc.float32, [None, 3]), dtype=gc.float32)
    with pytest.raises(GraphError, match="sequence_length"):
        gc.nn.static_rnn(cell, gc.unstack(x, axis=1), sequence_length=gc.placeholder(
            gc.float32, [None]))
    with pytest.raises(GraphError, match="batch_size"):
        cell.zero_state(gc.reduce_sum(x), gc.float32)


def test_truncated_bptt_carries_the_state_in_a_variable(rng):
    """Two windows of 3 steps, the state carried by a non-trainable variable assigned at the
    end of each step, reproduce the outputs of one 6-step unroll. The gradient stops at the
    window edge: the carried state is a leaf of the step (its gradient exists, but it is not
    trainable, so no optimizer follows it into the previous window)."""
    cell = rnn_cell.BasicRNNCell(4)
    xs = [gc.placeholder(F64, [2, 3]) for _ in range(3)]
    carried = gc.Variable(np.zeros((2, 4)), trainable=False, name="carried_state")
    outputs, final = gc.nn.static_rnn(cell, xs, initial_state=carried)
    step = gc.group(gc.assign(carried, final))
    loss = gc.reduce_sum(outputs[-1])
    assert gc.gradients(loss, [carried], unconnected_gradients="none")[0] is not None
    assert carried not in gc.trainable_variables()
    full = [gc.placeholder(F64, [2, 3]) for _ in range(6)]
    full_out, _ = gc.nn.static_rnn(cell, full, dtype=F64)
    values = [rng.standard_normal((2, 3)) for _ in range(6)]
    with open_session(False) as sess:
        first, _ = sess.run([outputs, step], dict(zip(xs, values[:3])))
        second, _ = sess.run([outputs, step], dict(zip(xs, values[3:])))
        want = sess.run(full_out, dict(zip(full, values)))
    np.testing.assert_allclose(first + second, want, rtol=1e-12)
