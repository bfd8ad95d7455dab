"""A seeded random-graph fuzzer: the full pass pipeline against the unoptimized reference.

Hypothesis draws small graphs of elementwise ops (broadcasting between [3,4], [4], [3,1],
[1,4] and scalars), reductions, matmuls, shared subexpressions and fan-out (operands are drawn
from everything built so far, the same one possibly twice), fetched intermediates, and state:
either variables assigned from expressions of themselves and read again after the assign (the
read must see the old value; the variable may itself be fetched), or an SGD training step on a
loss of the graph. Each graph runs two steps both ways, the optimized one with the write guard
on (any write into a buffer the plan did not give a kernel fails), and must agree.
"""
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import graphc as gc

from tests.support.pass_testing import check_passes

SHAPES = [(3, 4), (4,), (3, 1), (1, 4), ()]
UNARY = [gc.tanh, gc.sigmoid, gc.nn.relu, gc.negative, gc.abs,
         lambda t: gc.exp(gc.tanh(t)), lambda t: t * 0.5 + 1.0]
BINARY = [gc.add, gc.subtract, gc.multiply, gc.maximum, gc.minimum,
          lambda a, b: gc.where(a > b, a, b * 2.0), lambda a, b: (a + b) * (a - b)]


def _value(rng, shape):
    return rng.uniform(-1.5, 1.5, shape)


class Builder:
    """Builds one random graph from hypothesis draws; ``pool`` holds every tensor so far."""

    def __init__(self, draw, rng):
        self.draw, self.rng = draw, rng
        self.feeds, self.pool = {}, []
        for i in range(draw(st.integers(1, 3))):
            shape = draw(st.sampled_from(SHAPES[:4]))
            p = gc.placeholder(gc.float64, list(shape), name=f"p{i}")
            self.feeds[p] = _value(rng, shape)
            self.pool.append(p)

    def pick(self):
        return self.pool[self.draw(st.integers(0, len(self.pool) - 1))]

    def op(self):
        kind = self.draw(st.sampled_from(["unary", "binary", "binary", "reduce", "matmul",
                                          "broadcast", "duplicate"]))
        a = self.pick()
        if kind == "unary":
            return self.draw(st.sampled_from(UNARY))(a)
        if kind == "binary":
            return self.draw(st.sampled_from(BINARY))(a, self.pick())
        if kind == "duplicate":
            return a * a + a
        if kind == "reduce" and a.rank >= 1:
            axis = self.draw(st.sampled_from([0, -1, None]))
            fn = self.draw(st.sampled_from([gc.reduce_sum, gc.reduce_mean, gc.reduce_max]))
            keep = axis is not None
            return fn(a, axis=axis, keepdims=keep)
        if kind == "matmul" and tuple(a.shape) == (3, 4):
            return gc.matmul(a, gc.constant(_value(self.rng, (4, 4))))
        return gc.broadcast_to(a, [3, 4]) + 0.0 * 1.0

    def variables(self):
        out = []
        for i in range(self.draw(st.integers(1, 2))):
            shape = self.draw(st.sampled_from([(3, 4), (4,)]))
            v = gc.Variable(_value(self.rng, shape), name=f"v{i}")
            out.append(v)
            self.pool.append(v)
        return out

    def fits(self, shape):
        return [t for t in self.pool
                if np.broadcast_shapes(tuple(t.shape), shape) == tuple(shape)]


def _assign_variables(b, variables):
    fetches = []
    for v in variables:
        u = b.draw(st.sampled_from(b.fits(tuple(v.shape))))
        fetches.append(gc.assign(v, v - 0.1 * gc.tanh(u) * v))
        late = v * 1.5 + 1.0  # built after the assign: must read the old value
        b.pool.append(late)
        fetches.append(late)
        if b.draw(st.booleans()):  # a fetched variable (or a view of it) also assigned
            fetches.append(v if b.draw(st.booleans()) else gc.reshape(v, [-1]))
    return fetches


def _train(b, variables):
    loss = gc.reduce_sum(b.pool[-1])
    for v in variables:
        u = b.draw(st.sampled_from(b.fits(tuple(v.shape))))
        loss = loss + gc.reduce_sum(gc.tanh(v * u))
    return [loss, gc.train.GradientDescentOptimizer(0.05).minimize(loss)]


@settings(max_examples=100, deadline=None, derandomize=True, print_blob=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data())
def test_full_pipeline_agrees_with_the_reference(data):
    gc.reset_default_graph()
    seed = data.draw(st.integers(0, 2 ** 16))
    b = Builder(data.draw, np.random.default_rng(seed))
    variables = b.variables()
    for _ in range(data.draw(st.integers(2, 10))):
        b.pool.append(b.op())
    fetches = [b.pool[-1]] + [t for t in b.pool if t.op_name not in ("placeholder",
                                                                     "variable")][:2]
    if data.draw(st.booleans()):
        fetches += _assign_variables(b, variables)
    else:
        fetches += _train(b, variables)
    check_passes(fetches, b.feeds, steps=2, rtol=1e-10, atol=1e-12, checks=("writes",))
