"""A step compiled as several LLVM modules (``runtime.module_parts``, some in the compile worker)
computes the same bits as the step compiled whole, saves and loads as one artifact, and keys
the object cache apart from it."""
import re

import numpy as np
import pytest

import graphc as gc
from graphc.codegen.llvm import backend as llvm_backend
from graphc.codegen.llvm.ir import VECTOR_CODE
from graphc.codegen.llvm.kernels import gemm
from graphc.runtime import compile_worker, module_parts
from tests.runtime.test_module_parts import worker_first


def _mlp(depth=4, width=24, seed=0):
    rng = np.random.default_rng(seed)
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, [16, 20], name="x")
        y = gc.placeholder(gc.int64, [16], name="y")
        h, fan_in = x, 20
        for k in range(depth):
            w = gc.Variable(rng.standard_normal((fan_in, width)).astype(np.float32) * 0.3,
                            name=f"w{k}")
            b = gc.Variable(np.full(width, 0.01 * k, np.float32), name=f"b{k}")
            h, fan_in = gc.tanh(gc.matmul(h, w) + b), width
        w = gc.Variable(rng.standard_normal((width, 5)).astype(np.float32) * 0.3, name="wo")
        loss = gc.reduce_mean(gc.nn.sparse_softmax_cross_entropy_with_logits(
            labels=y, logits=gc.matmul(h, w)))
        train = gc.train.AdamOptimizer(0.01).minimize(loss)
        init = gc.global_variables_initializer()
    return g, x, y, loss, train, init


def _train(parts, monkeypatch, steps=3, save_to=None):
    monkeypatch.setattr(llvm_backend, "PARTS", parts)
    g, x, y, loss, train, _ = _mlp()
    rng = np.random.default_rng(1)
    batches = [(rng.random((16, 20), np.float32), rng.integers(0, 5, 16))
               for _ in range(steps)]
    with g.as_default():
        step = gc.compile([loss, train], feeds=[x, y], backend="llvm")
        losses = [step({x: xb, y: yb})[0] for xb, yb in batches]
        if save_to is not None:
            step.save(save_to)
        values = [np.array(v) for _, v in sorted(step.variables.items())]
    return np.array(losses), values, step, batches


@pytest.fixture
def always_split(monkeypatch):
    monkeypatch.setenv("GRAPHC_NO_CACHE", "1")
    monkeypatch.setattr(module_parts, "MIN_WORK", 0)
    # (in this process, whatever the compilations before: beyond IN_PROCESS the worker
    # takes every compilation)
    monkeypatch.setitem(compile_worker._state, "in_process", 0)


@pytest.mark.parametrize("worker", ["auto", "0"])
def test_a_step_in_parts_computes_the_same_bits(always_split, monkeypatch, worker):
    monkeypatch.setenv("GRAPHC_COMPILE_WORKER", worker)
    whole_losses, whole_values, whole, _ = _train(1, monkeypatch)
    before = compile_worker.stats["worker_compiles"]
    if worker == "auto":
        worker_first(monkeypatch)
    losses, values, step, _ = _train(6, monkeypatch)
    code = step.compiled.fn.artifacts
    assert not module_parts.is_bundle(whole.compiled.fn.loaded.object_code)
    assert module_parts.is_bundle(step.compiled.fn.loaded.object_code)
    if worker == "auto":
        assert compile_worker.stats["worker_compiles"] > before
        assert code.timings["llvm_elsewhere"] > 0
    else:
        assert compile_worker.stats["worker_compiles"] == before
    assert losses.tobytes() == whole_losses.tobytes()
    for got, want in zip(values, whole_values):
        assert got.tobytes() == want.tobytes()
    assert code.key != whole.compiled.fn.artifacts.key  # the split is in the cache key
    assert "step:" in step.compiled.fn.assembly()


def test_gemm_kernels_compile_with_their_own_pipeline(always_split, monkeypatch):
    """The native GEMMs (written as vector code) go to parts of the ``vector`` pipeline, every
    other kernel to O2 parts; ``test_a_step_in_parts_computes_the_same_bits`` checks the bits
    against the step compiled whole at O2."""
    if gemm.vector_unit() is None:
        pytest.skip("no native GEMMs on this CPU")
    _, _, step, _ = _train(6, monkeypatch, steps=1)
    sources = step.compiled.fn.artifacts._compiled.sources
    names = [module_parts.pipeline_of(s) for s in sources]
    # part 0 (the step) is O2's; the other parts go to each pipeline by its share of the work
    assert names[0] is None and "vector" in names and len(names) == 6
    gemms = 0
    for source, name in zip(sources, names):
        heads = re.findall(r"^define [^@]*@([\w.]+)\(.*\{$", source, re.M)
        for fn, head in zip(heads, re.findall(r"^define .*\{$", source, re.M)):
            vector = VECTOR_CODE.strip() in head
            gemms += vector
            if name == "vector":  # a GEMM, or the thread-pool task of one
                assert vector or ".task." in fn, fn
            else:
                assert not vector, fn
    assert gemms >= 3  # (the forward and gradient GEMMs of the MLP, deduplicated)


def test_a_step_in_parts_saves_and_loads(always_split, monkeypatch, tmp_path):
    path = str(tmp_path / "step.gcs")
    _train(2, monkeypatch, steps=1, save_to=path)  # trained one step, then saved
    losses, _, step, batches = _train(2, monkeypatch, steps=2)
    loaded = gc.load(path)
    assert module_parts.is_bundle(step.compiled.fn.loaded.object_code)  # (saved as is)
    x, y = batches[1]
    assert np.float32(loaded(x=x, y=y)[0]).tobytes() == np.float32(losses[1]).tobytes()


def test_no_cache_set_after_a_compile_turns_the_object_cache_off(monkeypatch, tmp_path):
    """(The process-wide cache was kept while its directory stayed the same: a test that set
    GRAPHC_NO_CACHE after another compiled could load an old object.)"""
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("GRAPHC_NO_CACHE", raising=False)
    assert llvm_backend.default_cache().enabled
    monkeypatch.setenv("GRAPHC_NO_CACHE", "1")
    assert not llvm_backend.default_cache().enabled
