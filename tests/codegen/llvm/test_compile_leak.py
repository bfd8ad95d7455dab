"""LLVM compilation keeps a long-running process's memory bounded.

Measured (benchmarks/compile_leak.py): llvmlite leaks ~100 KB of native memory per
optimization pipeline (its pass builder's instrumentation callbacks are never freed), and a
full gc.compile on the LLVM backend grew the process by 139 KiB per compile over 300 new feed
shapes. Nothing of ours held it (no engine, module, context or Python object outlived its
compile), so compilation beyond the first few dozen runs in a helper process replaced every
100 compilations (runtime/compile_worker.py): 9 KiB per compile over the same 300.
"""
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

from graphc.errors import CompileError
from graphc.runtime import compile_worker, jit

IR = """
define void @step(ptr noalias %t) {{
  %p = load ptr, ptr %t
  %v = load float, ptr %p
  %w = fmul float %v, {value}
  store float %w, ptr %p
  ret void
}}
"""

GROWTH = """
import gc, os, sys
from graphc.runtime import jit
ir = open(sys.argv[1]).read()
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
for k in range(20):
    jit.compile_ir(ir.replace("STEP", f"step{k}"))
gc.collect(); before = rss()
for k in range(300):
    jit.compile_ir(ir.replace("STEP", f"s{k}"))
gc.collect()
print((rss() - before) / 300 / 1024)
"""


@pytest.fixture
def fresh_worker(monkeypatch):
    compile_worker._stop()
    monkeypatch.setitem(compile_worker._state, "broken", False)
    yield
    compile_worker._stop()


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads RSS from /proc")
def test_300_compiles_grow_the_process_by_little(tmp_path):
    ir = tmp_path / "big.ll"
    body = "".join(f"  %x{i} = fmul float %v, {float(i)}\n  store float %x{i}, ptr %p\n"
                   for i in range(200))
    ir.write_text("define void @STEP(ptr noalias %t) {\n  %p = load ptr, ptr %t\n"
                  "  %v = load float, ptr %p\n" + body + "  ret void\n}\n")
    env = dict(os.environ, GRAPHC_COMPILE_WORKER="auto")
    out = subprocess.run([sys.executable, "-c", GROWTH, str(ir)], env=env, check=True,
                         capture_output=True, text=True, timeout=600).stdout
    assert float(out) < 40, f"{float(out):.1f} KiB per compile"


def test_the_worker_gives_the_same_object_code(fresh_worker, monkeypatch):
    monkeypatch.setenv("GRAPHC_COMPILE_WORKER", "1")
    text = IR.format(value="2.0")
    started = compile_worker.stats["worker_compiles"]
    compiled = jit.compile_ir(text)
    assert compile_worker.stats["worker_compiles"] == started + 1
    here = jit.compile_here(text)
    assert compiled.object_code == here.object_code and compiled.functions == ("step",)
    out = np.full(1, 3.0, np.float32)
    table, keep = jit.pointer_table([out])
    jit.load_object(compiled.object_code).function("step")(table)
    assert out[0] == 6.0
    with pytest.raises(CompileError, match="does not parse"):
        jit.compile_ir("define void @broken(")


def test_the_worker_is_replaced_after_recycle_compilations(fresh_worker, monkeypatch):
    monkeypatch.setenv("GRAPHC_COMPILE_WORKER", "1")
    monkeypatch.setattr(compile_worker, "RECYCLE", 3)
    started = compile_worker.stats["workers_started"]
    for k in range(7):
        jit.compile_ir(IR.format(value=f"{k}.5"))
    assert compile_worker.stats["workers_started"] - started == 3


def test_auto_compiles_in_process_first(fresh_worker, monkeypatch):
    monkeypatch.setenv("GRAPHC_COMPILE_WORKER", "auto")
    monkeypatch.setitem(compile_worker._state, "in_process", 0)
    monkeypatch.setattr(compile_worker, "IN_PROCESS", 2)
    before = compile_worker.stats["worker_compiles"]
    for k in range(4):
        jit.compile_ir(IR.format(value=f"{k}.25"))
    assert compile_worker.stats["worker_compiles"] - before == 2


def test_a_worker_that_cannot_start_falls_back_to_the_process(fresh_worker, monkeypatch):
    monkeypatch.setenv("GRAPHC_COMPILE_WORKER", "1")

    def no_start():
        raise OSError("no processes here")
    monkeypatch.setattr(compile_worker, "_start", no_start)
    with pytest.warns(RuntimeWarning, match="compile worker failed"):
        compiled = jit.compile_ir(IR.format(value="4.0"))
    assert compiled.functions == ("step",)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        jit.compile_ir(IR.format(value="5.0"))  # once: then quietly in the process
