"""Helpers for the pass tests: build a Program, run chosen passes with the verifier after each,
run the result, and compare it with the unoptimized reference.

``check_passes(fetches, feeds, passes)`` is the workhorse: it compiles the same fetches twice
(no passes: the reference; ``passes``: the candidate, verified after every pass), runs both on
the same feed values and variable values for ``steps`` steps, and asserts every fetch and every
variable agree. It returns the optimized Program so the test can assert what the passes did.
"""
import numpy as np

import graphc as gc
from graphc.codegen.numpy.backend import emit_numpy, new_arena
from graphc.ir.passes import run_pipeline
from graphc.ir.passes.common import check_program, positions, value_inputs
from graphc.ir.program import build_program
from graphc.runtime.pystep import load_python_step

from graphc.ir.passes import DEFAULT_PIPELINE

FULL = None  # the default pipeline
# Every default pass but scale folding, which rounds differently: bit-for-bit comparisons.
EXACT = [p for p in DEFAULT_PIPELINE if p != "scale"]


def record(program, name):
    """The changes of pass ``name`` in ``program.records``."""
    return next(r["changes"] for r in program.records if r["name"] == name)


def program_of(fetches, feeds, passes=FULL, verify=True):
    """Build the Program of ``fetches`` for ``feeds`` ({placeholder: array}) and run passes."""
    program = build_program(list(fetches), {p: np.shape(v) for p, v in feeds.items()})
    check_program(program)
    run_pipeline(program, passes=passes, verify=verify)
    return program


def load(program, checks=()):
    """The callable step of a Program (planned when it has a plan)."""
    source, consts, seeds = emit_numpy(program, checks)
    fn, _ = load_python_step(source, consts, seeds, arena=new_arena(program))
    return fn, source


def initial_values(program):
    """Fresh copies of the variables' initial values (constants in these tests)."""
    out = []
    for v in program.variables:
        init = program.origin[v].meta["initial_value"]
        out.append(np.array(init.attrs["value"], dtype=v.dtype.np))
    return out


def run_steps(program, feed_list, steps=1, checks=()):
    """Run ``steps`` steps; returns ([fetch values per step], final variable values)."""
    fn, _ = load(program, checks)
    order = [program.origin[f] for f in program.feeds]
    values = initial_values(program)
    index = {id(v): i for i, v in enumerate(program.variables)}
    history = []
    for _ in range(steps):
        args = [np.ascontiguousarray(feed_list[p]) for p in order]
        fetched, updates = fn(*args, *values)
        history.append([None if x is None else np.array(x) for x in fetched])
        for (var, _), new in zip(program.updates, updates):
            i = index[id(var)]
            if new is not values[i]:
                values[i] = np.array(new)
    return history, [np.array(v) for v in values]


def assert_agree(ref, got, rtol=1e-12, atol=1e-12, what=""):
    for a, b in zip(ref, got):
        if a is None:
            assert b is None
            continue
        np.testing.assert_allclose(b, a, rtol=rtol, atol=atol, equal_nan=True, err_msg=what)


def check_passes(fetches, feeds, passes=FULL, steps=1, rtol=1e-12, atol=1e-12, checks=()):
    """Assert the optimized program agrees with the reference; returns the optimized Program."""
    ref = program_of(fetches, feeds, passes=[])
    opt = program_of(fetches, feeds, passes=passes)
    ref_hist, ref_vars = run_steps(ref, feeds, steps)
    opt_hist, opt_vars = run_steps(opt, feeds, steps, checks)
    for k, (a, b) in enumerate(zip(ref_hist, opt_hist)):
        assert_agree(a, b, rtol, atol, f"fetches of step {k + 1}")
    assert_agree(ref_vars, opt_vars, rtol, atol, "variables after the last step")
    if opt.plan is not None and opt.plan.planned:
        assert_plan_is_sound(opt)
    return opt


def assert_plan_is_sound(program):
    """No two arena buffers with intersecting live intervals share a byte; every value that
    is read lives until its last reader."""
    plan = program.plan
    items = list(plan.offsets.items())
    for i, (a, oa) in enumerate(items):
        fa, la = plan.intervals[a]
        assert oa % plan.alignment == 0 and oa + plan.nbytes[a] <= plan.arena_bytes
        for b, ob in items[i + 1:]:
            fb, lb = plan.intervals[b]
            if fa <= lb and fb <= la:
                assert oa + plan.nbytes[a] <= ob or ob + plan.nbytes[b] <= oa, \
                    f"'{a.name}' and '{b.name}' are live together and overlap"
    pos = positions(program.nodes)
    for n in program.nodes:
        for x in value_inputs(n):
            r = plan.root(x)
            if r in plan.intervals:
                assert plan.intervals[r][1] >= pos[id(n)], f"'{x.name}' dies before its reader"


def ops(program):
    """Op names of the scheduled nodes (leaves left out), in schedule order."""
    return [n.op_name for n in program.nodes if n.op_name not in ("placeholder", "variable")]


def mlp(sizes=(6, 5, 4), act="relu", batch=3, lr=0.1, seed=0, dtype=np.float64):
    """A small MLP with mean sparse cross-entropy and SGD: (x, y, loss, train, feeds)."""
    rng = np.random.default_rng(seed)
    gdt = gc.as_dtype(dtype)
    x = gc.placeholder(gdt, [None, sizes[0]], name="x")
    y = gc.placeholder(gc.int64, [None], name="y")
    h = x
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        w = gc.Variable(rng.uniform(-1, 1, (a, b)).astype(dtype), name=f"W{i}")
        bias = gc.Variable(rng.uniform(-0.1, 0.1, b).astype(dtype), name=f"b{i}")
        h = gc.matmul(h, w) + bias
        if i < len(sizes) - 2:
            h = gc.nn.relu(h) if act == "relu" else gc.tanh(h)
    loss = gc.reduce_mean(gc.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=h))
    train = gc.train.GradientDescentOptimizer(lr).minimize(loss)
    feeds = {x: rng.standard_normal((batch, sizes[0])).astype(dtype),
             y: rng.integers(0, sizes[-1], batch)}
    return x, y, loss, train, feeds
