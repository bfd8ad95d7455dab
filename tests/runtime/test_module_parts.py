"""A module compiled in parts (one in the compile worker): same results, a loadable bundle."""
import ast
import ctypes
import os
import time
from pathlib import Path

import numpy as np
import pytest

from graphc.errors import ArtifactError, CompileError
from graphc.runtime import compile_worker, jit, module_parts


def _kernel(k):
    """``out[i] = in[i] * (k + 2) + 1`` over 64 floats, with a task wrapper and a helper."""
    return f"""; kernel scale {k}
define internal void @k{k}_scale(ptr noalias %a, ptr noalias %b) noinline nounwind {{
entry:
  br label %loop
loop:
  %i = phi i64 [0, %entry], [%n, %loop]
  %pa = getelementptr inbounds float, ptr %a, i64 %i
  %v = load float, ptr %pa
  %w = fmul float %v, {float(k + 2)}
  %x = call float @gc.inc(float %w)
  %pb = getelementptr inbounds float, ptr %b, i64 %i
  store float %x, ptr %pb
  %n = add nuw nsw i64 %i, 1
  %d = icmp eq i64 %n, 64
  br i1 %d, label %exit, label %loop
exit:
  ret void
}}

define internal void @k{k}_scale.task(ptr noalias readonly %ctx, i64 %c) noinline nounwind {{
  %a = load ptr, ptr %ctx
  %pb = getelementptr ptr, ptr %ctx, i64 1
  %b = load ptr, ptr %pb
  call void @k{k}_scale(ptr %a, ptr %b)
  ret void
}}
"""


def module(kernels=6):
    """Kernels chained through buffers: table slot j holds buffer j; kernel k reads k and
    writes k + 1. The step stores the tasks' addresses and calls them (as graphc's does)."""
    parts = ["; a heading comment\n; over two lines\n"]
    parts += [_kernel(k) for k in range(kernels)]
    parts.append("""define internal float @gc.inc(float %a0) alwaysinline nounwind {
  %r = fadd float %a0, 1.0
  ret float %r
}""")
    body = ["define void @step(ptr noalias readonly %table) nounwind noinline optnone {",
            "entry:", f"  %kernels = alloca [{kernels} x ptr]", "  %ctx = alloca [2 x ptr]"]
    for k in range(kernels):
        body += [f"  %kp{k} = getelementptr inbounds ptr, ptr %kernels, i64 {k}",
                 f"  store ptr @k{k}_scale.task, ptr %kp{k}"]
    for k in range(kernels):
        body += [f"  %sa{k} = getelementptr ptr, ptr %table, i64 {k}",
                 f"  %a{k} = load ptr, ptr %sa{k}",
                 f"  %sb{k} = getelementptr ptr, ptr %table, i64 {k + 1}",
                 f"  %b{k} = load ptr, ptr %sb{k}",
                 f"  %c0{k} = getelementptr ptr, ptr %ctx, i64 0",
                 f"  store ptr %a{k}, ptr %c0{k}",
                 f"  %c1{k} = getelementptr ptr, ptr %ctx, i64 1",
                 f"  store ptr %b{k}, ptr %c1{k}",
                 f"  %f{k} = load ptr, ptr %kp{k}",
                 f"  call void %f{k}(ptr %ctx, i64 0)"]
    body += ["  ret void", "}"]
    parts.append("\n".join(body))
    parts.append("declare float @llvm.maxnum.f32(float, float)")
    return "\n\n".join(parts) + "\n"


def worker_first(monkeypatch):
    """This process waits for the worker's first part before taking its own (else a busy
    machine may leave the helper thread unscheduled until every part is taken)."""
    real, before = jit._compile_one, compile_worker.stats["worker_compiles"]
    monkeypatch.setitem(compile_worker._state, "broken", False)  # (an earlier test's worker)

    def patient(*args):
        deadline = time.monotonic() + 20
        while compile_worker.stats["worker_compiles"] == before and time.monotonic() < deadline:
            time.sleep(0.005)
        return real(*args)
    monkeypatch.setattr(jit, "_compile_one", patient)
    monkeypatch.setattr(compile_worker, "free_core", lambda cores: True)
    return before


@pytest.fixture
def always_split(monkeypatch):
    monkeypatch.setattr(module_parts, "MIN_WORK", 0)
    # (in this process, whatever the compilations before: beyond IN_PROCESS the worker
    # takes every compilation)
    monkeypatch.setitem(compile_worker._state, "in_process", 0)


def run(object_code, kernels=6):
    bufs = [np.arange(64, dtype=np.float32)] + [np.zeros(64, np.float32)
                                                for _ in range(kernels)]
    table, keep = jit.pointer_table(bufs)
    jit.load_object(object_code).function("step")(table)
    return bufs[-1]


def test_split_keeps_groups_together_and_exports_what_crosses(always_split):
    text = module()
    where = module_parts.plan(text, 2)
    assert where["step"] == 0 and set(where.values()) == {0, 1}
    for k in range(6):  # a kernel and its task in one part; the helper in none (copied)
        assert where[f"k{k}_scale"] == where[f"k{k}_scale.task"]
    assert "gc.inc" not in where
    first, second = module_parts.split(text, 2)
    assert first.startswith("; a heading comment\n; over two lines\n")
    moved = [k for k in range(6) if where[f"k{k}_scale"] == 1]
    for k in moved:  # defined external in its part, declared in the step's
        assert f"\ndefine void @k{k}_scale.task(" in second
        assert f"declare void @k{k}_scale.task(ptr noalias readonly, i64)" in first
        assert f"define internal void @k{k}_scale(" in second  # (only its task calls it)
    assert "define internal float @gc.inc" in second
    assert module_parts.split(text, 2) == [first, second]  # a pure function of the text
    assert len(module_parts.split(text, 10)) == 6  # (one group per kernel at most)


def test_small_or_unsplittable_modules_stay_whole():
    text = module()
    assert module_parts.split(text, 2) == [text]  # less work than MIN_WORK
    assert module_parts.split(text, 1) == [text]
    with_global = "@g = global i64 0\n" + text
    assert module_parts.plan(with_global, 2) is None


def test_parts_compile_to_the_same_results_with_and_without_the_worker(always_split,
                                                                       monkeypatch):
    text = module()
    whole = jit.compile_ir(text)
    assert not module_parts.is_bundle(whole.object_code)
    expected = run(whole.object_code)
    assert expected[5] == pytest.approx(((((((5 * 2 + 1) * 3 + 1) * 4 + 1) * 5 + 1) * 6 + 1)
                                         * 7 + 1))
    monkeypatch.setenv("GRAPHC_COMPILE_WORKER", "0")
    alone = jit.compile_ir(text, parts=2)
    monkeypatch.setenv("GRAPHC_COMPILE_WORKER", "auto")
    before = worker_first(monkeypatch)
    beside = jit.compile_ir(text, parts=2)
    assert compile_worker.stats["worker_compiles"] == before + 1
    assert {"wait", "elsewhere"} <= set(beside.timings)
    assert module_parts.is_bundle(alone.object_code)
    assert alone.object_code == beside.object_code  # where it compiled changes nothing
    assert len(module_parts.unpack(alone.object_code)) == 2
    np.testing.assert_array_equal(run(alone.object_code), expected)
    assert alone.optimized_ir.count(jit.PART_MARK) == 1
    assert alone.assembly().count(jit.PART_MARK) == 1 and "step:" in alone.assembly()


def test_a_part_that_does_not_parse_is_a_compile_error(always_split):
    text = module().replace("%w = fmul float %v, 7.0", "%w = fmul float %nope, 7.0")
    with pytest.raises(CompileError, match="does not parse"):
        jit.compile_ir(text, parts=2)


def test_bundles_round_trip_and_damaged_ones_are_artifact_errors():
    objects = [b"\x7fELF-one", b"", b"\x7fELF-three"]
    packed = module_parts.pack(objects)
    assert module_parts.is_bundle(packed) and module_parts.unpack(packed) == objects
    for damaged in (packed[:-1], packed + b"x", packed[:len(module_parts.MAGIC) + 2],
                    module_parts.MAGIC + bytes(4)):
        with pytest.raises(ValueError):
            module_parts.unpack(damaged)
        with pytest.raises(ArtifactError, match="not loadable object code"):
            jit.load_object(damaged)
    with pytest.raises(ArtifactError, match="not a loadable object file"):
        jit.load_object(module_parts.pack([b"garbage"]))


def test_the_worker_program_imports_neither_graphc_nor_numpy():
    """The worker loads these two files by path: a quick start needs them to stay leaves."""
    here = Path(compile_worker.__file__).parent
    for name in ("compile_worker.py", "llvm_compile.py"):
        tree = ast.parse((here / name).read_text())
        top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        for node in top:
            names = [a.name for a in node.names] if isinstance(node, ast.Import) \
                else [node.module or ""]
            assert node.__class__ is ast.Import or node.level == 0, (name, ast.dump(node))
            assert not any(n.split(".")[0] in ("graphc", "numpy") for n in names), name


def test_step_addresses_resolve_across_the_bundle(always_split):
    """The loaded step calls kernels defined in the other object (one engine links them)."""
    compiled = jit.compile_ir(module(kernels=4), parts=2)
    loaded = jit.load_object(compiled.object_code)
    assert loaded.address("step")
    out = run(compiled.object_code, kernels=4)
    assert ctypes.c_float(out[1]).value == ((((1 * 2 + 1) * 3 + 1) * 4 + 1) * 5 + 1)


@pytest.mark.parametrize("line, free", [("0.40 0.30 0.20 1/120 999", True),
                                        ("1.70 0.90 0.50 1/120 999", True),  # busy a while ago
                                        ("0.40 0.30 0.20 2/120 999", False),  # busy now
                                        ("garbage", True)])
def test_a_free_core_is_judged_from_the_load(tmp_path, monkeypatch, line, free):
    monkeypatch.setattr(compile_worker, "_ours_runnable", lambda: 1)
    path = tmp_path / "loadavg"
    path.write_text(line + "\n")
    assert compile_worker.free_core(2, str(path)) is free
    assert compile_worker.free_core(1, str(path)) is False
    monkeypatch.setattr(compile_worker, "_ours_runnable", lambda: 2)  # (a thread of ours)
    assert compile_worker.free_core(2, str(path)) is (free or line.split()[3] == "2/120")


def test_no_free_core_compiles_every_part_here(always_split, monkeypatch):
    monkeypatch.setattr(compile_worker, "free_core", lambda cores: False)
    before = compile_worker.stats["worker_compiles"]
    compiled = jit.compile_ir(module(), parts=2)
    assert compile_worker.stats["worker_compiles"] == before
    assert len(module_parts.unpack(compiled.object_code)) == 2


def test_many_parts_shared_with_the_worker_give_the_same_bundle(always_split, monkeypatch):
    text = module()
    monkeypatch.setattr(compile_worker, "free_core", lambda cores: False)
    alone = jit.compile_ir(text, parts=4)
    before = worker_first(monkeypatch)
    shared = jit.compile_ir(text, parts=4)
    assert compile_worker.stats["worker_compiles"] > before  # (it took one part at least)
    assert shared.object_code == alone.object_code
    assert len(module_parts.unpack(shared.object_code)) == 4
    np.testing.assert_array_equal(run(shared.object_code), run(jit.compile_ir(text).object_code))

    def broken(*args):  # a worker that fails: its parts compile here
        return None
    monkeypatch.setattr(compile_worker, "compile_in_worker", broken)
    assert jit.compile_ir(text, parts=4).object_code == alone.object_code


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_starts_its_own_worker(monkeypatch):
    """A child forked while the parent's worker runs must not send on the parent's pipes."""
    monkeypatch.setenv("GRAPHC_COMPILE_WORKER", "1")
    text = "define void @step(ptr %t) {\n  ret void\n}\n"
    jit.compile_ir(text)
    parent_worker = compile_worker._state["proc"]
    assert parent_worker is not None and parent_worker.poll() is None
    pid = os.fork()
    if pid == 0:  # the child: compile, then report whether it used a worker of its own
        code = 1
        try:
            started = compile_worker.stats["workers_started"]
            jit.compile_ir(text)
            ok = compile_worker.stats["workers_started"] == started + 1
            code = 0 if ok and compile_worker._state["proc"] is not parent_worker else 2
            compile_worker._stop()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert parent_worker.poll() is None  # (the parent's worker still serves it)
    assert jit.compile_ir(text).functions == ("step",)
