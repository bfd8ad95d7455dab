"""A native step whose kernels run in chunks, hit in a fresh process: its code and the thread
pool's come from the entry into one engine (or one shared library: ``runtime.shared_object``),
the pool's workers run its chunks, and the loss has the bits of the miss; an entry whose pool digest is not this process's pool loads the
pool as before; an engine kept open for the pool survives the step's close."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from graphc.runtime import jit, shared_object

CHILD = r"""
import json, sys
import numpy as np
import graphc as gc
from graphc.runtime import parallel, threads
graph = gc.Graph()
with graph.as_default():
    x = gc.placeholder(gc.float32, [256, 1024], name="x")
    w = gc.Variable(np.linspace(-1, 1, 1024, dtype=np.float32), name="w")
    loss = gc.reduce_sum(gc.tanh(x * w + 0.5))
    train = gc.train.GradientDescentOptimizer(0.01).minimize(loss)
step = gc.compile([loss, train], feeds=[x], backend="llvm")
fn = step.compiled.fn
xs = np.random.RandomState(0).standard_normal((256, 1024)).astype(np.float32)
losses = [float(step(x=xs)[0]).hex() for _ in range(3)]
print(json.dumps(dict(
    hit=bool(getattr(step.compiled, "cache_hit", False)),
    pooled=any(name == "parallel_for" for _, name in fn.layout.callbacks),
    shared=parallel._pool.get("module") is fn.loaded, workers=parallel.workers(),
    kind=type(fn.loaded).__name__, llvm="llvmlite.binding" in sys.modules,
    kernels="graphc.codegen.llvm.kernels" in sys.modules,
    threads=threads.policy_threads(),
    losses=losses)))
"""


def _child(cache, **env):
    env = dict(os.environ, GRAPHC_STEP_CACHE="1", GRAPHC_CACHE_DIR=str(cache),
               GRAPHC_NUM_THREADS="2", **env)
    env.pop("GRAPHC_NO_CACHE", None)
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True,
                         text=True, check=True, timeout=300).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="needs a POSIX host")
def test_a_fresh_hit_loads_the_step_and_the_pool_into_one_engine(tmp_path):
    """Through the entry's shared library where ``ld`` linked one (one library for both),
    and through MCJIT where shared steps are off (one engine for both): the same bits."""
    cold = _child(tmp_path / "cache")
    assert not cold["hit"] and cold["pooled"] and not cold["shared"]
    assert cold["kind"] == "LoadedModule"
    linked = shared_object._linker() is not None and shared_object.enabled()
    for env, kind in (({}, "SharedModule" if linked else "LoadedModule"),
                      ({"GRAPHC_SHARED_STEPS": "0"}, "LoadedModule")):
        warm = _child(tmp_path / "cache", **env)
        assert warm["hit"] and warm["pooled"] and warm["kind"] == kind
        # (a hit through the library imports neither LLVM nor the code generator)
        assert warm["llvm"] == (kind == "LoadedModule") and not warm["kernels"]
        assert warm["shared"]  # the pool runs from the step's library or engine
        assert warm["workers"] == warm["threads"] - 1  # (the caller and the workers started)
        assert warm["losses"] == cold["losses"]


def test_an_entry_written_without_a_linker_is_loaded_into_mcjit(tmp_path):
    cold = _child(tmp_path / "cache", GRAPHC_SHARED_STEPS="0")
    warm = _child(tmp_path / "cache")
    assert warm["hit"] and warm["kind"] == "LoadedModule" and warm["shared"]
    assert warm["losses"] == cold["losses"]


def test_a_pool_of_another_digest_is_not_used(tmp_path):
    """An entry written by a graphc whose pool IR differed (its digest is not this pool's):
    the hit loads the pool as a process without the entry's copy would."""
    from graphc.client import step_cache
    from graphc.runtime.objcache import ObjectCache
    cold = _child(tmp_path / "cache")
    cache = ObjectCache(tmp_path / "cache", enabled=True)
    rewritten = 0
    for path in (tmp_path / "cache").glob("*.gcobj"):
        entry = cache.get(path.stem)
        if entry is None or not entry.startswith(step_cache._MAGIC):
            continue
        assert step_cache._unpack(entry)["pool_code"]
        start = len(step_cache._MAGIC) + 8
        n = int.from_bytes(entry[len(step_cache._MAGIC):start], "little")
        header = json.loads(entry[start:start + n])
        header["pool"] = "0" * 64
        raw = json.dumps(header).encode()
        cache.put(path.stem, entry[:len(step_cache._MAGIC)] + len(raw).to_bytes(8, "little")
                  + raw + entry[start + n:])
        rewritten += 1
    assert rewritten == 1
    warm = _child(tmp_path / "cache")
    assert warm["hit"] and warm["pooled"] and not warm["shared"]
    assert warm["losses"] == cold["losses"]


def test_one_engine_runs_code_of_two_object_files_and_stays_open_when_kept():
    step_ir = "define i64 @answer() {\n  ret i64 42\n}\n"
    other_ir = "define i64 @other() {\n  ret i64 7\n}\n"
    loaded = jit.load_object(jit.compile_here(step_ir).object_code,
                             also=[jit.compile_here(other_ir).object_code])
    import ctypes
    call = ctypes.CFUNCTYPE(ctypes.c_int64)
    assert call(loaded.address("answer"))() == 42
    assert call(loaded.address("other"))() == 7
    loaded.keep_open()
    loaded.close()  # (the pool's code lives in it: nothing is freed)
    assert call(loaded.address("other"))() == 7
    assert np.int64(call(loaded.address("answer"))()) == 42


def test_a_library_this_process_cannot_open_is_not_kept(tmp_path, monkeypatch):
    """Where the loader refuses the linked library when the entry is written, the entry
    keeps only the object code (no failed attempt on every hit) and hits through MCJIT."""
    import graphc as gc
    from graphc.client import step_cache
    from graphc.errors import ArtifactError
    from graphc.runtime.objcache import ObjectCache
    monkeypatch.setenv("GRAPHC_STEP_CACHE", "1")
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("GRAPHC_NO_CACHE", raising=False)

    def refused(*args, **kwargs):
        raise ArtifactError("the dynamic loader refused a shared step: noexec")
    monkeypatch.setattr(shared_object, "load", refused)

    def build():
        graph = gc.Graph()
        with graph.as_default():
            x = gc.placeholder(gc.float32, [4, 3], name="x")
            w = gc.Variable(np.linspace(-1, 1, 6, dtype=np.float32).reshape(3, 2), name="w")
            loss = gc.reduce_sum(gc.tanh(gc.matmul(x, w)))
            train = gc.train.GradientDescentOptimizer(0.1).minimize(loss)
        return gc.compile([loss, train], feeds=[x], backend="llvm")
    xs = np.ones((4, 3), np.float32)
    cold = build()
    want = [float(cold(x=xs)[0]) for _ in range(2)]
    cache = ObjectCache(tmp_path, enabled=True)
    entries = [step_cache._unpack(e) for e in (cache.get(p.stem) for p in tmp_path.glob("*.gcobj"))
               if e is not None and e.startswith(step_cache._MAGIC)]
    assert len(entries) == 1 and not len(entries[0]["shared"])
    warm = build()
    assert warm.compiled.cache_hit and type(warm.compiled.fn.loaded).__name__ == "LoadedModule"
    assert [float(warm(x=xs)[0]) for _ in range(2)] == want
