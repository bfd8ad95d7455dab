"""W5's optimizer tail on the LLVM backend: clip_by_global_norm's scaling runs inside Adam's
loop (the scheduler sinks it next to its readers, the loop does not store it), and Adam's
``m / (sqrt(v) + eps)`` in float32 uses refined estimates instead of the divider."""
import re

import numpy as np
import pytest

import graphc as gc
from graphc.ir.passes import schedule

from pass_testing import check_passes, record

SIZES = (12, 16, 5)


def _clip_adam(seed=0, dtype=np.float32):
    """An MLP step with gradients clipped by their global norm, then Adam."""
    rng = np.random.default_rng(seed)
    gdt = gc.as_dtype(dtype)
    x = gc.placeholder(gdt, [None, SIZES[0]], name="x")
    y = gc.placeholder(gc.int64, [None], name="y")
    h = x
    for k, (a, b) in enumerate(zip(SIZES, SIZES[1:])):
        w = gc.Variable((rng.standard_normal((a, b)) * 0.5).astype(dtype), name=f"w{k}")
        c = gc.Variable(np.zeros(b, dtype), name=f"c{k}")
        h = gc.matmul(h, w) + c
        if k + 2 < len(SIZES):
            h = gc.nn.relu(h)
    loss = gc.reduce_mean(gc.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=h))
    opt = gc.train.AdamOptimizer(0.01)
    grads, variables = zip(*opt.compute_gradients(loss))
    clipped, _ = gc.clip_by_global_norm(list(grads), 0.5)  # small: the scale is not 1
    train = opt.apply_gradients(list(zip(clipped, variables)))
    feeds = {x: rng.standard_normal((8, SIZES[0])).astype(dtype),
             y: rng.integers(0, SIZES[-1], 8)}
    return x, y, loss, train, feeds


def _run(backend, optimize, steps=3):
    with gc.Graph().as_default():
        x, y, loss, train, feeds = _clip_adam()
        step = gc.compile([loss, train], feeds=[x, y], backend=backend, optimize=optimize)
        losses = [step(feeds)[0] for _ in range(steps)]
        values = {k: np.array(a) for k, a in step.variables.items()}
    return step, np.array(losses), values


def test_the_schedule_sinks_each_clip_scaling_next_to_its_adam_update():
    with gc.Graph().as_default():
        x, y, loss, train, feeds = _clip_adam(dtype=np.float64)
        opt = check_passes([loss, train], feeds, steps=3)
    n_vars = 2 * (len(SIZES) - 1)
    assert record(opt, "schedule")["sunk"] >= n_vars
    scaled = 0
    for i, n in enumerate(opt.nodes):
        if n.op_name == "multiply" and any(x.shape == () for x in n.inputs) and \
                n.shape != ():
            nxt = opt.nodes[i + 1]
            assert any(x is n for x in nxt.inputs), f"'{n.name}' is apart from its reader"
            scaled += 1
    assert scaled == n_vars


def test_sinking_never_raises_the_live_peak():
    with gc.Graph().as_default():
        x, y, loss, train, feeds = _clip_adam(dtype=np.float64)
        opt = check_passes([loss, train], feeds)
    changes = record(opt, "schedule")
    assert changes["live_peak_after"] <= changes["live_peak_before"]


def test_clip_and_adam_share_one_loop_and_agree_with_the_reference(monkeypatch):
    _, ref_losses, ref_values = _run("numpy", False)
    step, losses, values = _run("llvm", True)
    np.testing.assert_allclose(losses, ref_losses, rtol=2e-5, atol=1e-6)
    for name, want in ref_values.items():
        np.testing.assert_allclose(values[name], want, rtol=1e-4, atol=1e-6, err_msg=name)
    sunk_calls = step.compiled.fn.artifacts.stats["kernel_calls"]
    monkeypatch.setattr(schedule, "_sink_into_readers", lambda order, *a: (order, 0))
    unsunk, _, _ = _run("llvm", True)
    n_vars = 2 * (len(SIZES) - 1)
    assert unsunk.compiled.fn.artifacts.stats["kernel_calls"] - sunk_calls >= n_vars


def test_the_adam_loop_does_not_store_the_scaled_gradient():
    step, _, _ = _run("llvm", True)
    text = step.compiled.fn.llvm_ir
    bodies = {m.group(1): m.group(0) for m in
              re.finditer(r"define internal void @(multiply_\w+)\(.*?\n}\n", text, re.S)}
    adam = [b for b in bodies.values() if "llvm.sqrt" in b or "fdiv" in b]
    assert len(adam) == 2 * (len(SIZES) - 1)  # one loop per variable: the scaling is in it
    for body in adam:  # m, v and the parameter; not g * scale
        assert body.count("store float") == 3, body
