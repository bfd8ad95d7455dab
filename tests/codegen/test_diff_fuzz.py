"""The differential fuzzer (graphc.testing): a clean run within the CI budget finds nothing,
each known bug put back by a mutation is caught within the same budget, failures shrink, and
a seed always gives the same graph.

The numbers of graphs are budgets, not timings: the clean run is ``CI_GRAPHS`` graphs in
batches, each mutation run stops at its first failing graph.
"""
import importlib

import pytest

import graphc as gc
from graphc.testing import check, fuzz, graphs, mutations, shrink

CI_GRAPHS = 64
MUTATION_BUDGET = CI_GRAPHS
_CAUGHT = {}


def caught(name):
    """The report of fuzzing under mutation ``name`` until its first failing graph."""
    if name not in _CAUGHT:
        _CAUGHT[name] = fuzz.run(MUTATION_BUDGET, seed=0, mutate=name, stop_first=True,
                                 do_shrink=False)
    return _CAUGHT[name]


def test_a_clean_run_finds_nothing():
    report = fuzz.run(CI_GRAPHS, seed=0, do_shrink=False)
    assert report.graphs == CI_GRAPHS
    assert not report.findings, "\n".join(f.line() for x in report.findings
                                          for f in x.failures)


@pytest.mark.parametrize("name", sorted(mutations.MUTATIONS))
def test_each_mutation_is_caught(name):
    report = caught(name)
    assert report.findings, f"mutation {name} survived {report.graphs} graphs"
    finding = report.findings[0]
    assert any(f.what in ("mismatch", "repeat") for f in finding.failures)
    if name == "transpose_flag":  # only BLAS GEMMs drop the flag: all of llvm-blas's
        assert "llvm-blas" in {f.config for f in finding.failures}
        assert "numpy-opt" not in {f.config for f in finding.failures}


PATCHED = {"gemm_acc": ("graphc.codegen.llvm.kernels.gemm_acc", "summable_args"),
           "inplace_reader": ("graphc.ir.passes.inplace", "_State.readers"),
           "inplace_whole": ("graphc.ir.passes.inplace", "_reads_whole"),
           "transpose_flag": ("graphc.codegen.llvm.kernels.elementwise", "gemm_function")}


def _resolve(module, path):
    obj = importlib.import_module(module)
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


@pytest.mark.parametrize("name", sorted(mutations.MUTATIONS))
def test_a_mutation_patches_only_inside_its_block(name):
    before = _resolve(*PATCHED[name])
    with mutations.mutation(name):
        assert _resolve(*PATCHED[name]) is not before
    assert _resolve(*PATCHED[name]) is before


def test_a_failure_shrinks_to_a_small_graph():
    report = caught("gemm_acc")
    recipe = graphs.generate(report.findings[0].seeds[0])
    first = next(f for f in report.findings[0].failures if f.what == "mismatch")
    small, _ = shrink.shrink(recipe, first, "gemm_acc", budget=60)
    assert small.live_ops <= 3 < recipe.live_ops
    assert shrink.still_fails(small, first.config, "mismatch", "gemm_acc")
    assert not check.Batch([small]).run()  # the bug, not the graph


def test_a_seed_always_gives_the_same_graph():
    for seed in (3, 17):
        a, b = graphs.generate(seed), graphs.generate(seed)
        assert graphs.describe(a) == graphs.describe(b)
        assert fuzz.input_ir(a) == fuzz.input_ir(b)


def test_a_recipe_builds_with_the_public_api():
    recipe = graphs.generate(5)
    with gc.Graph().as_default():
        fetches, feeds = graphs.build(recipe)
        assert fetches and all(isinstance(p, gc.Tensor) for p in feeds)
