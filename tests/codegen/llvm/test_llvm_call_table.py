"""Runs of kernel calls made from a table of records (``codegen.llvm.call_table``) compute the
same bits as the calls written out, in chunks too, compiled whole or in parts, and calls that
report a status still stop the step with their node's error. The records are a constant of
the module: nothing a saved artifact's data holds steers the calls."""
import re

import numpy as np
import pytest

import graphc as gc
from graphc.codegen.llvm import backend, call_table
from graphc.errors import InvalidArgumentError
from graphc.runtime import module_parts


def _deep_mlp(depth=24, width=16, batch=8, seed=0):
    """A deep narrow MLP's training step (~7 calls per layer): (step, feed)."""
    rng = np.random.default_rng(seed)
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, [batch, width], name="x")
        y = gc.placeholder(gc.int64, [batch], name="y")
        h = x
        for k in range(depth):
            w = gc.Variable((rng.standard_normal((width, width)) * 0.4).astype(np.float32),
                            name=f"w{k}")
            b = gc.Variable(np.full(width, 0.01 * k, np.float32), name=f"b{k}")
            h = gc.nn.relu(gc.matmul(h, w) + b) if k < depth - 1 else gc.matmul(h, w) + b
        loss = gc.reduce_mean(gc.nn.sparse_softmax_cross_entropy_with_logits(labels=y,
                                                                             logits=h))
        train = gc.train.GradientDescentOptimizer(0.05).minimize(loss)
        step = gc.compile([loss, train], feeds=[x, y], backend="llvm")
    feed = {x: rng.standard_normal((batch, width)).astype(np.float32),
            y: rng.integers(0, width, batch)}
    return step, feed


def _run(monkeypatch, min_calls, steps=3, **kw):
    monkeypatch.setattr(call_table, "MIN_CALLS", min_calls)
    step, feed = _deep_mlp(**kw)
    losses = [np.asarray(step(feed)[0]).tobytes() for _ in range(steps)]
    return losses, step.compiled.fn.llvm_ir, step


@pytest.mark.parametrize("chunks", [False, True])
def test_the_call_table_gives_the_bits_of_calls_written_out(monkeypatch, chunks):
    monkeypatch.setenv("GRAPHC_NO_CACHE", "1")
    if chunks:  # (every kernel that can runs in chunks on the pool: records of kind 1)
        monkeypatch.setenv("GRAPHC_PARALLEL_MIN_WORK", "1")
    out_losses, out_text, _ = _run(monkeypatch, 1 << 30)
    table_losses, table_text, step = _run(monkeypatch, 32)
    assert "@gc.run_calls" not in out_text
    step_text = table_text[table_text.index("define void @step("):]
    assert "@gc.run_calls" in step_text
    assert len(step_text) < len(out_text[out_text.index("define void @step("):]) / 3
    assert table_losses == out_losses
    line = next(x for x in table_text.splitlines() if x.startswith("@gc.call_records = "))
    records = [int(w) for w in re.findall(r"i32 (-?\d+)", line.split("] [", 1)[1])]
    assert f"[{len(records)} x i32]" in line  # (small words: half the bytes of i64's)
    assert "void @gc.run_calls.i32(" in table_text
    kinds = set()
    at = 0
    while at < len(records):  # every record well formed: a kind, then its pointer pairs
        kinds.add(int(records[at]) >> 8)
        at += call_table.HEAD + 2 * (int(records[at]) & 255)
    assert at == len(records)
    assert kinds == ({call_table.KERNEL, call_table.CHUNKED} if chunks else {call_table.KERNEL})


def test_records_with_a_word_past_32_bits_are_i64_and_give_the_same_bits(monkeypatch):
    assert call_table.word_type([[2, 0, 0, 0, 1, 2**31 - 1]]) == "i32"
    assert call_table.word_type([[2, 0, 0, 0, 1, 2**31]]) == "i64"
    assert call_table.word_type([[2, 0, 0, 0, 1, -2**31 - 1]]) == "i64"
    monkeypatch.setenv("GRAPHC_NO_CACHE", "1")
    small, small_text, _ = _run(monkeypatch, 32)
    monkeypatch.setattr(call_table, "word_type", lambda records: "i64")
    wide, wide_text, _ = _run(monkeypatch, 32)
    assert "x i32]" in small_text and "void @gc.run_calls(" not in small_text
    assert "x i64] [i64 " in wide_text and "void @gc.run_calls(" in wide_text
    assert wide == small


def test_a_small_step_keeps_its_calls_written_out(monkeypatch):
    monkeypatch.setenv("GRAPHC_NO_CACHE", "1")
    _, text, _ = _run(monkeypatch, call_table.MIN_CALLS, steps=1, depth=2)
    assert "@gc.run_calls" not in text


def test_the_call_table_compiles_in_parts(monkeypatch):
    monkeypatch.setenv("GRAPHC_NO_CACHE", "1")
    monkeypatch.setattr(backend, "PARTS", 1)
    whole, text, _ = _run(monkeypatch, 32, depth=40)
    monkeypatch.setattr(backend, "PARTS", 6)
    monkeypatch.setattr(module_parts, "MIN_WORK", 100)
    parts, _, _ = _run(monkeypatch, 32, depth=40)
    split = module_parts.split(text, 6)
    assert len(split) > 1
    assert sum(bool(re.search(r"define (internal )?void @gc\.run_calls\.i32\(", p))
               for p in split) == 1
    for part in split:  # the records go wherever they are read, defined once there
        if "@gc.call_records" in part:
            assert part.count("@gc.call_records = private unnamed_addr constant") == 1
    assert parts == whole


def test_a_status_inside_a_table_program_names_its_node(monkeypatch):
    monkeypatch.setenv("GRAPHC_NO_CACHE", "1")
    monkeypatch.setattr(call_table, "MIN_CALLS", 2)
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, [4, 3], name="x")
        y = gc.placeholder(gc.int64, [4], name="y")
        h = x
        for k in range(6):
            h = gc.tanh(h * (1.0 + k)) + gc.reduce_sum(h, axis=1, keepdims=True)
        loss = gc.reduce_mean(gc.nn.sparse_softmax_cross_entropy_with_logits(
            labels=y, logits=h, name="xent"))
        step = gc.compile([loss], feeds=[x, y], backend="llvm")
    assert "@gc.run_calls" in step.compiled.fn.llvm_ir
    xv = np.ones((4, 3), np.float32)
    assert np.isfinite(step({x: xv, y: np.array([0, 1, 2, 0])})[0])
    with pytest.raises(InvalidArgumentError, match=r"'xent': label 5 at \[2\] is outside"):
        step({x: xv, y: np.array([0, 1, 5, 0])})


def test_a_cut_steps_body_runs_its_calls_from_records_of_its_own(monkeypatch):
    """A step cut in two parts (``split``) runs its body's many calls from records of the
    body's own (``@gc.call_records.<body>``): the bits of the calls written out."""
    monkeypatch.setenv("GRAPHC_NO_CACHE", "1")
    monkeypatch.setenv("GRAPHC_SPLIT_MIN_WORK", "1")
    monkeypatch.setenv("GRAPHC_SPLIT_EXAMPLES", "2")
    out_losses, out_text, out_step = _run(monkeypatch, 1 << 30)
    table_losses, table_text, step = _run(monkeypatch, 32)
    assert any(n.op_name == "loop" for n in step.compiled.program.nodes)
    assert "@gc.call_records.body" not in out_text
    body = table_text[table_text.index("define internal void @body"):]
    body = body[:body.index("\n}\n")]
    assert "@gc.call_records.body" in table_text and "@gc.run_calls" in body
    assert body.count("call void") < 20  # (the runs' calls, not one per kernel)
    assert table_losses == out_losses
    for name, value in out_step.variables.items():
        np.testing.assert_array_equal(step.variables[name], value)
