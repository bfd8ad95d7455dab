"""Elementwise fusion: chains and DAGs become one fused node (with broadcasts and reduction
epilogues), values stay the reference's, nothing expensive is computed twice, and no cycle forms
through a non-fusable node."""
import numpy as np

import graphc as gc
from graphc.ir import scalar as S

from tests.support.pass_testing import EXACT, check_passes, mlp, ops, record

X = np.array([[0.5, -1.0, 2.0, 0.0], [1.5, 0.25, -3.0, 4.0], [-0.5, 1.0, 0.0, -2.0]])
B = np.array([0.1, -0.2, 0.3, 0.0])


def _feeds():
    x = gc.placeholder(gc.float64, [3, 4], name="x")
    b = gc.placeholder(gc.float64, [4], name="b")
    return x, b, {x: X, b: B}


def _fused(program):
    return [n for n in program.nodes if n.op_name == "fused"]


def test_bias_add_and_activation_become_one_group_with_the_bias_broadcast():
    x, b, feeds = _feeds()
    out = gc.tanh(x + b) * 2.0
    opt = check_passes([out], feeds, passes=["fuse"])
    (f,) = _fused(opt)
    assert f.attrs["ops"] == ("add", "tanh", "multiply")
    assert [i.op.name for i in f.inputs] == ["x", "b"]  # the constant 2.0 is inlined
    assert opt.records[0]["changes"]["groups"] == 1 and ops(opt) == ["fused"]


def test_a_dag_with_shared_subexpressions_and_duplicated_inputs_fuses_whole():
    x, b, feeds = _feeds()
    s = gc.sigmoid(x)
    out = s * (1.0 - s) + x * x + gc.maximum(x, b)
    opt = check_passes([out], feeds, passes=["fuse"])
    (f,) = _fused(opt)
    assert len(f.inputs) == 2  # x once, although x is read by four ops
    body_ops = [e.op for e in f.attrs["body"].walk()]
    assert body_ops.count("exp") == 1  # the shared sigmoid is computed once per element


def test_a_value_needed_outside_the_group_is_not_recomputed():
    x, b, feeds = _feeds()
    e = gc.exp(x + b)  # expensive, used by two groups separated by a matmul
    w = gc.constant(np.ones((4, 2)))
    out = gc.tanh(gc.matmul(e, w)) + gc.reduce_sum(e * 3.0)
    opt = check_passes([out], feeds, passes=["fuse"])
    exps = sum(1 for f in _fused(opt) for e_ in f.attrs["body"].walk() if e_.op == "exp")
    exps += ops(opt).count("exp")
    assert exps == 1


def test_no_cycle_through_a_matmul_between_producer_and_consumer():
    x, b, feeds = _feeds()
    h = x * 2.0
    m = gc.matmul(h, gc.constant(np.eye(4)))
    out = h + m  # h feeds both m and the add: fusing h into the add would need m first
    opt = check_passes([out], feeds, passes=["fuse"])
    pos = {id(n): i for i, n in enumerate(opt.nodes)}
    for n in opt.nodes:
        assert all(pos[id(i)] < pos[id(n)] for i in n.inputs)


def test_reduction_epilogue_fuses_the_squared_error_and_its_bias_gradient():
    x, b, feeds = _feeds()
    loss = gc.reduce_sum((x - b) * (x - b))
    g_b, = gc.gradients(loss, [b])
    opt = check_passes([loss, g_b], feeds)
    reduced = [f for f in _fused(opt) if f.attrs["reduce"] is not None]
    assert any(f.attrs["reduce"][0] == "sum" and f.shape == () for f in reduced)
    assert record(opt, "fuse")["epilogues"] >= 1


def test_fetched_intermediates_stay_materialized():
    x, b, feeds = _feeds()
    h = x + b
    out = gc.tanh(h)
    opt = check_passes([out, h], feeds, passes=["fuse"])
    assert "add" in ops(opt) or any(f.attrs["ops"] == ("add",) for f in _fused(opt))


def test_training_step_groups_and_bitwise_agreement_over_steps():
    x, y, loss, train, feeds = mlp(sizes=(5, 4, 4, 3), act="relu")
    opt = check_passes([loss, train], feeds, passes=EXACT, steps=3, rtol=0, atol=0)
    groups = _fused(opt)
    assert sum(1 for f in groups if f.attrs["ops"] == ("add", "relu")) == 2
    assert sum(1 for f in groups if f.attrs["ops"] == ("multiply", "subtract")) == 6


def test_fused_body_refers_to_inputs_with_their_dtypes():
    x, b, feeds = _feeds()
    k = gc.placeholder(gc.int32, [4], name="k")
    feeds[k] = np.array([1, 0, 2, -1], np.int32)
    out = gc.where(k > 0, x * 2.0, gc.cast(k, gc.float64)) + b
    opt = check_passes([out], feeds, passes=["fuse"])
    (f,) = _fused(opt)
    for e in f.attrs["body"].walk():
        if e.op == "arg":
            assert e.dtype == f.inputs[e.value].dtype
    assert isinstance(f.attrs["body"], S.Expr)
