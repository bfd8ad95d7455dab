"""The unroll pass (ir.passes.unroll): short static loops become copies of their bodies,
semantics preserved (against the reference, where loops stay loops), counted, and only
where the rule allows."""
import numpy as np
import pytest

import graphc as gc
from graphc.nn import rnn_cell

F64 = gc.float64


def _rnn(T, reverse=False):
    x = gc.placeholder(F64, [3, T, 2], name="x")
    out, state = gc.nn.dynamic_rnn(rnn_cell.GRUCell(4), x, dtype=F64)
    back = gc.scan(lambda a, r: a * 0.5 + r, gc.transpose(x, [1, 0, 2]),
                   initializer=gc.zeros([3, 2], F64), reverse=True)
    loss = gc.reduce_sum(out * out) + gc.reduce_sum(state) + gc.reduce_sum(back * back)
    grads = gc.gradients(loss, [x] + gc.trainable_variables())
    return x, [loss] + grads


def _loops(step):
    return sum(n.op_name == "loop" for n in step.program.nodes)


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_short_loops_are_unrolled_with_the_same_values(backend, monkeypatch):
    monkeypatch.delenv("GRAPHC_UNROLL", raising=False)
    x, fetches = _rnn(T=5)
    xv = np.random.default_rng(0).normal(size=(3, 5, 2))
    with gc.Session(backend=backend) as sess:
        sess.run(gc.global_variables_initializer())
        got = sess.run(fetches, {x: xv})
    with gc.Session(backend="numpy", optimize=False) as sess:  # the reference: real loops
        sess.run(gc.global_variables_initializer())
        want = sess.run(fetches, {x: xv})
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    step = gc.compile(fetches, feeds=[x], backend=backend)
    step({x: xv})
    record = next(r for r in step.stats["passes"] if r["name"] == "unroll")
    assert record["changes"]["unrolled"] == 4  # dynamic_rnn, scan and their adjoints
    assert _loops(step) == 0


def test_the_rule_keeps_long_loops_and_data_dependent_ones(monkeypatch):
    monkeypatch.delenv("GRAPHC_UNROLL", raising=False)
    from graphc.ir.passes.unroll import UNROLL_AT_MOST
    x, fetches = _rnn(T=UNROLL_AT_MOST + 1)
    step = gc.compile(fetches, feeds=[x])
    step({x: np.ones((3, UNROLL_AT_MOST + 1, 2))})
    assert _loops(step) == 4
    n = gc.placeholder(gc.int32, [], name="n")
    i = gc.while_loop(lambda i: i < n, lambda i: i + 1, [0], maximum_iterations=3)
    step = gc.compile(i, feeds=[n])
    assert step({n: 2}) == 2 and _loops(step) == 1


def test_graphc_unroll_zero_keeps_every_loop(monkeypatch):
    monkeypatch.setenv("GRAPHC_UNROLL", "0")
    x, fetches = _rnn(T=3)
    step = gc.compile(fetches, feeds=[x])
    step({x: np.ones((3, 3, 2))})
    assert _loops(step) == 4
