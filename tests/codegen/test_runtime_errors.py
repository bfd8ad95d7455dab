"""Run-time failures: the same class and message on every backend, and no state changed.

A table of bad inputs (the op, a bad value, the error class, a message regex) runs through one
training step per configuration: NumPy optimized, NumPy unoptimized, LLVM optimized and
unoptimized. Each step trains two optimizers' variables (Adam's slots and beta powers,
Momentum's slot), increments ``global_step`` and an unrelated counter; a failed call must
leave every one of them bit for bit as it was, and the next good call must work. A saved
and loaded step raises the same error.
"""
import re

import numpy as np
import pytest

import graphc as gc
from graphc.errors import InvalidArgumentError, NumericsError, UnknownError

CONFIGS = [("numpy", True), ("numpy", False), ("llvm", True), ("llvm", False)]
CONFIG_IDS = ["numpy", "numpy-unoptimized", "llvm", "llvm-unoptimized"]

X = np.linspace(0.5, 1.5, 12, dtype=np.float32).reshape(4, 3)
LINE = r"\n  at test_runtime_errors\.py:\d+"


# -- the cases: each adds a failing op to the loss of a small model ------------------------------
def _xent(offset_kind=None):
    def make(m):
        if offset_kind != "argmax":
            y = gc.placeholder(gc.int32, [4], name="y")
            m.feeds.append(y)
            labels = y
        if offset_kind is not None:  # an index computed in the graph, not fed
            off = gc.placeholder(gc.int32, [], name="off")
            m.feeds.append(off)
            labels = y + off if offset_kind == "add" else \
                gc.cast(gc.argmax(m.h, 1), gc.int32) + off
        xent = gc.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=m.h,
                                                              name="xent")
        return gc.reduce_mean(xent)
    return make


def _gather(m):
    ids = gc.placeholder(gc.int32, [3], name="ids")
    m.feeds.append(ids)
    return gc.reduce_sum(gc.gather(m.W, ids, name="rows")) + gc.reduce_mean(m.h)


def _embedding(m):
    ids = gc.placeholder(gc.int64, [2, 2], name="ids")
    m.feeds.append(ids)
    rows = gc.nn.embedding_lookup(m.E, ids, name="embed")
    return gc.reduce_mean(rows) + gc.reduce_mean(m.h)


def _gather_nd(m):
    idx = gc.placeholder(gc.int32, [2, 2], name="idx")
    m.feeds.append(idx)
    return gc.reduce_sum(gc.gather_nd(m.W, idx, name="pick")) + gc.reduce_mean(m.h)


def _scatter_nd(m):
    idx = gc.placeholder(gc.int32, [2, 1], name="idx")
    m.feeds.append(idx)
    spread = gc.scatter_nd(idx, gc.reduce_sum(m.h, 1)[:2], [4], name="spread")
    return gc.reduce_sum(spread * gc.constant([1.0, 2.0, 3.0, 4.0]))


def _segments(m):
    ids = gc.placeholder(gc.int32, [4], name="ids")
    m.feeds.append(ids)
    return gc.reduce_sum(gc.unsorted_segment_sum(m.h, ids, 3, name="segs") ** 2)


def _assert(m):
    check = gc.Assert(gc.reduce_all(m.x > 0.0), ["x must be positive"], name="positive")
    with gc.control_dependencies([check]):
        return gc.reduce_mean(m.h * 1.0)


def _refuse_negatives(a):
    if (a < 0).any():
        raise ValueError("negative input")
    return a


def _py_func(m):
    y = gc.py_func(_refuse_negatives, [m.x], gc.float32, shape=[m.x], name="refuse")
    return gc.reduce_mean(m.h) + gc.reduce_sum(y)


def _check_numerics(m):
    return gc.reduce_mean(m.h) + gc.reduce_sum(gc.check_numerics(gc.sqrt(m.x), "sqrt of x"))


Y_OK = {"y": np.array([0, 1, 2, 3], np.int32)}
# (case id, model, good extra feeds, bad extra feeds, bad x or None, class, message regex)
CASES = [
    ("label -1", _xent(), Y_OK, {"y": np.array([0, 1, 2, -1], np.int32)}, None,
     InvalidArgumentError, r"sparse_softmax_xent 'xent': label -1 at \[3\] is outside \[0, 5\)"),
    ("label = classes", _xent(), Y_OK, {"y": np.array([0, 5, 2, 1], np.int32)}, None,
     InvalidArgumentError, r"sparse_softmax_xent 'xent': label 5 at \[1\] is outside \[0, 5\)"),
    ("computed label y + off", _xent("add"), dict(Y_OK, off=np.int32(1)),
     dict(Y_OK, off=np.int32(2)), None,
     InvalidArgumentError, r"sparse_softmax_xent 'xent': label 5 at \[3\] is outside \[0, 5\)"),
    ("computed label argmax + off", _xent("argmax"), {"off": np.int32(0)},
     {"off": np.int32(-9)}, None,
     InvalidArgumentError, r"sparse_softmax_xent 'xent': label -\d at \[0\] is outside \[0, 5\)"),
    ("gather index too large", _gather, {"ids": np.array([0, 2, 1], np.int32)},
     {"ids": np.array([0, 3, 1], np.int32)}, None,
     InvalidArgumentError, r"gather 'rows': index 3 at \[1\] is outside \[0, 3\)"),
    ("gather index negative", _gather, {"ids": np.array([0, 2, 1], np.int32)},
     {"ids": np.array([0, 1, -1], np.int32)}, None,
     InvalidArgumentError, r"gather 'rows': index -1 at \[2\] is outside \[0, 3\)"),
    ("embedding_lookup", _embedding, {"ids": np.array([[0, 1], [5, 2]])},
     {"ids": np.array([[0, 1], [6, 2]])}, None,
     InvalidArgumentError, r"gather 'embed': index 6 at \[1, 0\] is outside \[0, 6\)"),
    ("gather_nd", _gather_nd, {"idx": np.array([[0, 1], [2, 4]], np.int32)},
     {"idx": np.array([[0, 1], [1, 5]], np.int32)}, None,
     InvalidArgumentError, r"gather_nd 'pick': index 5 at \[1, 1\] is outside \[0, 5\)"),
    ("scatter_nd", _scatter_nd, {"idx": np.array([[1], [3]], np.int32)},
     {"idx": np.array([[1], [4]], np.int32)}, None,
     InvalidArgumentError, r"scatter_nd 'spread': index 4 at \[1, 0\] is outside \[0, 4\)"),
    ("segment id too large", _segments, {"ids": np.array([0, 1, 2, 0], np.int32)},
     {"ids": np.array([0, 1, 3, 0], np.int32)}, None,
     InvalidArgumentError,
     r"unsorted_segment_sum 'segs': segment id 3 at \[2\] is outside \[0, 3\)"),
    ("segment id negative", _segments, {"ids": np.array([0, 1, 2, 0], np.int32)},
     {"ids": np.array([-1, 1, 2, 0], np.int32)}, None,
     InvalidArgumentError,
     r"unsorted_segment_sum 'segs': segment id -1 at \[0\] is outside \[0, 3\)"),
    ("Assert fails", _assert, {}, {}, -X,
     InvalidArgumentError, r"Assert 'positive.*': assertion failed: x must be positive"),
    ("py_func raises", _py_func, {}, {}, -X, UnknownError, r"negative input"),
    ("check_numerics fails", _check_numerics, {}, {}, -X,
     NumericsError, r"check_numerics.*sqrt of x"),
]


class Model:
    """A step training W (Adam), b (Momentum) and E (Adam) on ``case``'s loss, counting
    global_step and an unrelated counter."""

    def __init__(self, make, backend, optimize):
        self.graph = gc.Graph()
        with self.graph.as_default():
            self.x = gc.placeholder(gc.float32, [4, 3], name="x")
            self.W = gc.Variable(np.linspace(-1, 1, 15, dtype=np.float32).reshape(3, 5),
                                 name="W")
            self.b = gc.Variable(np.zeros(5, np.float32), name="b")
            self.E = gc.Variable(np.linspace(0, 1, 30, dtype=np.float32).reshape(6, 5),
                                 name="E")
            self.h = gc.matmul(self.x, self.W) + self.b
            self.feeds = [self.x]
            loss = make(self) + 1e-3 * gc.reduce_mean(self.E)  # E is trained in every case
            gs = gc.train.get_or_create_global_step()
            counter = gc.Variable(0.0, name="counter", trainable=False)
            adam = gc.train.AdamOptimizer(0.05).minimize(loss, global_step=gs,
                                                         var_list=[self.W, self.E])
            momentum = gc.train.MomentumOptimizer(0.05, 0.9).minimize(loss, var_list=[self.b])
            bump = gc.assign_add(counter, 1.0)
            self.step = gc.compile([loss, adam, momentum, bump], feeds=self.feeds,
                                   backend=backend, optimize=optimize)

    def feed(self, extra, x=None):
        return dict({"x": X if x is None else x}, **extra)


def _state(step):
    return {k: np.array(v, copy=True) for k, v in step.variables.items()}


def _assert_same_bits(before, after):
    assert before.keys() == after.keys()
    for k in before:
        assert before[k].dtype == after[k].dtype and before[k].tobytes() == after[k].tobytes(), k


def _fails_cleanly(step, feed, cls, pattern):
    """Call ``step`` with a bad ``feed``: ``cls`` matching ``pattern`` and the user's line,
    every variable bit for bit unchanged. Returns the message."""
    before = _state(step)
    with pytest.raises(cls) as info:
        step(feed)
    msg = str(info.value)
    assert re.search(pattern, msg), msg
    assert "Traceback" not in msg and "numpy" not in msg.split("\n")[0]
    _assert_same_bits(before, _state(step))
    return msg


@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_raises_and_changes_no_variable(case, config):
    name, make, good, bad, bad_x, cls, pattern = case
    m = Model(make, *config)
    m.step(m.feed(good))  # one good step: Adam slots, momentum and counters non-zero
    msg = _fails_cleanly(m.step, m.feed(bad, bad_x), cls, pattern)
    if cls is InvalidArgumentError and "Assert" not in name:
        assert re.search(LINE, msg), msg  # the user's line of the failing op
    before = _state(m.step)
    m.step(m.feed(good))  # the next good call works and trains
    after = _state(m.step)
    assert after["global_step"] == before["global_step"] + 1
    assert after["counter"] == before["counter"] + 1
    assert not np.array_equal(after["W"], before["W"])


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_same_message_on_every_backend(case):
    name, make, good, bad, bad_x, cls, pattern = case
    messages = set()
    for config in CONFIGS:
        m = Model(make, *config)
        with pytest.raises(cls) as info:
            m.step(m.feed(bad, bad_x))
        messages.add(str(info.value))
    assert len(messages) == 1, messages


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
@pytest.mark.parametrize("case", [c for c in CASES if c[0] in (
    "label -1", "gather index negative", "gather_nd", "scatter_nd", "segment id too large",
    "check_numerics fails")], ids=lambda c: c[0])
def test_a_loaded_step_raises_the_same(case, backend, tmp_path):
    name, make, good, bad, bad_x, cls, pattern = case
    m = Model(make, backend, True)
    m.step(m.feed(good))
    with pytest.raises(cls) as compiled_error:
        m.step(m.feed(bad, bad_x))
    path = str(tmp_path / "step.gcx")
    m.step.save(path)
    loaded = gc.load(path)
    msg = _fails_cleanly(loaded, m.feed(bad, bad_x), cls, pattern)
    assert msg == str(compiled_error.value)
    before = _state(loaded)
    loaded(m.feed(good))
    assert _state(loaded)["global_step"] == before["global_step"] + 1


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_a_session_run_that_fails_changes_no_variable(backend):
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, [4, 3], name="x")
        y = gc.placeholder(gc.int64, [4], name="y")
        W = gc.Variable(np.ones((3, 5), np.float32), name="W")
        gs = gc.train.get_or_create_global_step()
        xent = gc.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=gc.matmul(x, W),
                                                              name="xent")
        train = gc.train.AdamOptimizer(0.1).minimize(gc.reduce_mean(xent), global_step=gs)
        with gc.Session(backend=backend) as sess:
            sess.run(gc.global_variables_initializer())
            sess.run(train, {x: X, y: [0, 1, 2, 3]})
            before = sess.run(gc.global_variables())
            with pytest.raises(InvalidArgumentError,
                               match=r"sparse_softmax_xent 'xent': label 7 at \[2\]"):
                sess.run(train, {x: X, y: [0, 1, 7, 3]})
            after = sess.run(gc.global_variables())
            for a, b in zip(before, after):
                assert np.asarray(a).tobytes() == np.asarray(b).tobytes()


# -- what does not raise, as in TF1 ---------------------------------------------------------------
@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
def test_one_hot_out_of_range_is_a_row_of_off_values(config):
    g = gc.Graph()
    with g.as_default():
        i = gc.placeholder(gc.int32, [5], name="i")
        j = gc.placeholder(gc.int32, [], name="j")
        hot = gc.one_hot(i + j, 3, on_value=2.0, off_value=-1.0)
        step = gc.compile([hot], feeds=[i, j], backend=config[0], optimize=config[1])
    (out,) = step(i=np.array([0, 2, -1, 3, 1], np.int32), j=np.int32(0))
    expect = np.full((5, 3), -1.0, np.float32)
    expect[0, 0] = expect[1, 2] = expect[4, 1] = 2.0
    np.testing.assert_array_equal(out, expect)


@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
def test_in_top_k_target_out_of_range_is_false(config):
    g = gc.Graph()
    with g.as_default():
        p = gc.placeholder(gc.float32, [4, 3], name="p")
        t = gc.placeholder(gc.int32, [4], name="t")
        hit = gc.nn.in_top_k(p, t, 2)
        step = gc.compile([hit], feeds=[p, t], backend=config[0], optimize=config[1])
    (out,) = step(p=X, t=np.array([2, -1, 3, 1], np.int32))
    np.testing.assert_array_equal(out, [True, False, False, True])


# -- check_numerics mode: a NaN in an update output -----------------------------------------------
@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_numerics_mode_failure_in_an_update_restores_the_variables(backend):
    """In check_numerics mode every value is checked after it is computed, updates too: the
    snapshot (ir.rollback) puts back what was written before the failing check."""
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, [4, 3], name="x")
        lr = gc.placeholder(gc.float32, [], name="lr")
        W = gc.Variable(np.ones((3, 5), np.float32), name="W")
        b = gc.Variable(np.ones(5, np.float32), name="b")
        gs = gc.train.get_or_create_global_step()
        loss = gc.reduce_mean(gc.matmul(x, W) + b)
        train = gc.train.GradientDescentOptimizer(lr).minimize(loss, global_step=gs)
        step = gc.compile([loss, train], feeds=[x, lr], check_numerics=True, backend=backend)
    step(x=X, lr=np.float32(0.1))
    assert step.program.snapshot  # the updates are checked after they are written
    before = _state(step)
    with pytest.raises(NumericsError):
        step(x=X, lr=np.float32(np.inf))
    _assert_same_bits(before, _state(step))
    step(x=X, lr=np.float32(0.1))
    assert step.variables["global_step"] == before["global_step"] + 1


# -- the compiler's side: may-fail ops run before variable writes ---------------------------------
@pytest.mark.parametrize("optimize", [True, False], ids=["optimized", "unoptimized"])
def test_failing_ops_are_scheduled_before_every_variable_write(optimize):
    """No snapshot is needed when the check does not depend on an update: the schedulers
    (the schedule pass, and the unoptimized order) put every may-fail node before every write
    into a variable's buffer; the pass counts the orderings it added."""
    m = Model(_xent(), "numpy", optimize)
    m.step(m.feed(Y_OK))
    p = m.step.program
    assert p.snapshot == []
    pos = {id(n): k for k, n in enumerate(p.nodes)}
    last_check = max(pos[id(n)] for n in p.nodes if n.opdef.may_fail)
    writes = [n for n in p.nodes if n.op_name == "assign" or (
        p.plan is not None and n in p.plan.inplace and p.plan.root(n).op_name == "variable")]
    assert writes and all(pos[id(a)] > last_check for a in writes)
    if not optimize:
        return
    (record,) = [r for r in m.step.stats["passes"] if r["name"] == "schedule"]
    assert record["changes"]["failure_edges"] > 0  # global_step, the counter, beta powers
    # the loss and its gradient read the same labels: checked once, one compare per label
    assert m.step.source.count("_index_fault(f_y") == 1 and ".view(np.uint32).max() >= 5" \
        in m.step.source


@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
def test_a_check_that_reads_an_updated_value_snapshots_that_variable(config):
    """The order is impossible here (the index is the updated value): the program records
    ``k`` to be saved, and the runtime puts it back (the unoptimized NumPy step writes no
    variable in place: it needs no snapshot)."""
    g = gc.Graph()
    with g.as_default():
        ids = gc.placeholder(gc.int32, [2], name="ids")
        v = gc.Variable(np.arange(4, dtype=np.float32), name="v")
        k = gc.Variable(np.int32(0), name="k")
        bumped = gc.assign_add(k, 1)  # the gather index depends on the update
        rows = gc.gather(v, ids + bumped, name="rows")
        step = gc.compile([rows], feeds=[ids], backend=config[0], optimize=config[1])
    step(ids=np.array([0, 1], np.int32))
    if config != ("numpy", False):
        assert [n.op.name for n in step.program.snapshot] == ["k"]
    before = _state(step)
    with pytest.raises(InvalidArgumentError, match=r"gather 'rows': index 5 at \[1\]"):
        step(ids=np.array([0, 3], np.int32))
    _assert_same_bits(before, _state(step))
    np.testing.assert_array_equal(step(ids=np.array([0, 1], np.int32))[0], [2.0, 3.0])
