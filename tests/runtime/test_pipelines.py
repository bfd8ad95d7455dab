"""Kernels that name a pipeline (``"graphc-pipeline"="vector"``) are compiled with it: in parts
of their own (``module_parts``), optimized by ``llvm_compile.PIPELINES``, with the same
results."""
import re

import numpy as np
import pytest

from graphc.errors import CompileError
from graphc.runtime import jit, llvm_compile, module_parts
from tests.runtime.test_module_parts import module, run

VECTOR = ' "graphc-pipeline"="vector"'


@pytest.fixture
def split_small(monkeypatch):
    monkeypatch.setattr(module_parts, "MIN_WORK", 0)  # (the test module is small)
    monkeypatch.setenv("GRAPHC_COMPILE_WORKER", "0")


def tagged(text, kernels):
    """``text`` with kernels ``kernels`` (not their tasks) naming the vector pipeline."""
    for k in kernels:
        text = text.replace(f"@k{k}_scale(ptr noalias %a, ptr noalias %b) noinline nounwind",
                            f"@k{k}_scale(ptr noalias %a, ptr noalias %b) noinline nounwind"
                            + VECTOR)
    return text


def defined(part):
    return set(re.findall(r"^define [^@]*@([\w.]+)\(", part, re.M))


def test_parts_hold_one_pipeline_each_and_say_which(split_small):
    text = tagged(module(), [0, 2, 4])
    where = module_parts.plan(text, 4)
    for k in range(6):  # a task goes with its kernel, whatever it names itself
        assert where[f"k{k}_scale"] == where[f"k{k}_scale.task"]
    vector_parts = {where[f"k{k}_scale"] for k in (0, 2, 4)}
    assert vector_parts.isdisjoint({where[f"k{k}_scale"] for k in (1, 3, 5)} | {0})
    texts = module_parts.split(text, 4)
    names = module_parts.pipelines(text, 4)
    assert names == [llvm_compile.pipeline_of(t) for t in texts]
    for part, name in zip(texts, names):
        kernels = {n for n in defined(part) if n.endswith("_scale")}
        if name == "vector":
            assert part.startswith(llvm_compile.PIPELINE_MARK + "vector\n")
            assert kernels <= {"k0_scale", "k2_scale", "k4_scale"} and kernels
        else:
            assert name is None and not kernels & {"k0_scale", "k2_scale", "k4_scale"}
    assert names[0] is None and "step" in defined(texts[0])
    assert names.count("vector") >= 1 and names.count(None) >= 2
    # not split (whole, or too little work): no pipeline named, O2 for all as before
    assert module_parts.pipelines(text, 1) == [None]


def test_every_kernel_named_leaves_the_step_its_own_part(split_small):
    text = tagged(module(), range(6))
    names = module_parts.pipelines(text, 3)
    assert names == [None, "vector", "vector"]
    assert defined(module_parts.split(text, 3)[0]) == {"step"}


def test_the_vector_pipeline_leaves_loops_alone_and_computes_the_same(split_small):
    """O2 vectorizes the scaling loop; the vector pipeline (for code written as vectors
    already) does not, and inlines the helper all the same."""
    text = tagged(module(), range(6))
    whole = jit.compile_ir(text)  # (whole: O2 everywhere)
    parts = jit.compile_ir(text, parts=3)
    assert [llvm_compile.pipeline_of(s) for s in parts.sources] == [None, "vector", "vector"]
    o2, vector = whole.optimized_ir, parts.optimized_ir.split(jit.PART_MARK)[1]
    assert re.search(r"<\d+ x float>", o2)  # (4, 8 or 16 wide, by the host's vectors)
    assert "x float>" not in vector and "@gc.inc" not in vector  # (inlined, then dropped)
    np.testing.assert_array_equal(run(parts.object_code), run(whole.object_code))


def test_an_unknown_pipeline_is_a_compile_error(split_small):
    text = llvm_compile.PIPELINE_MARK + "fastest\n" + module()
    with pytest.raises(CompileError, match="unknown pipeline 'fastest'"):
        jit.compile_ir(text)
