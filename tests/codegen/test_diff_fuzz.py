"""The differential fuzzer (graphc.testing): a clean run within the CI budget finds nothing,
each known bug put back by a mutation is caught within the same budget, failures shrink, and
a seed always gives the same graph.

The numbers of graphs are budgets, not timings: the clean run is ``CI_GRAPHS`` graphs in
batches, each mutation run stops at its first failing graph.
"""
import dataclasses
import importlib

import numpy as np
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


def _products(recipe):
    """(m, n, k) of each plain matmul of ``recipe``, and each convolution's (taps x input
    channels, output channels)."""
    mats, convs = [], []
    for it in recipe.items:
        if not isinstance(it, graphs.Op):
            continue
        if it.kind == "matmul" and len(it.shape) == 2:
            a = recipe.items[it.inputs[0]].shape
            mats.append(it.shape + (a[0] if it.params["ta"] else a[1],))
        elif it.kind == "conv2d":
            kh, kw, c, cout = recipe.items[it.inputs[1]].shape
            convs.append((kh * kw * c, cout))
    return mats, convs


def test_large_graphs_reach_the_kernels_that_change_with_size():
    from graphc.codegen.llvm.kernels.conv import VECTOR_TAPS
    from graphc.codegen.llvm.kernels.gemm import PACK_WHOLE_BYTES
    from graphc.codegen.llvm.kernels.windows import VECTOR_CHANNELS
    seeds = range(100, 160)
    large = [_products(graphs.generate(s, large=True)) for s in seeds]
    mats = [m for ms, _ in large for m in ms]
    convs = [c for _, cs in large for c in cs]
    assert any(k * 64 > PACK_WHOLE_BYTES for _, _, k in mats)  # several packed K blocks
    assert any(n >= 512 for _, n, _ in mats)  # B's rows packed
    assert any(t > VECTOR_TAPS or c > VECTOR_CHANNELS for t, c in convs)  # implicit GEMM
    cells = [it.params["units"] for s in seeds for it in graphs.generate(s, large=True).items
             if isinstance(it, graphs.Op) and "units" in it.params]
    assert max(cells) >= 40  # cells (and loop bodies) with GEMMs past a register tile
    small = [_products(graphs.generate(s)) for s in seeds]
    assert max(max(m) for ms, _ in small for m in ms) <= max(graphs.kinds.F.GEMM_DIMS)


def test_a_large_run_finds_nothing_and_replays_with_its_flag(monkeypatch):
    # (as the command line does: a tuned step changes BLAS's threads between calls, and
    # OpenBLAS sums large GEMMs in another order on one thread than on two)
    monkeypatch.setenv("GRAPHC_BLAS_TUNING", "0")
    report = fuzz.run(8, seed=0, do_shrink=False, large=True)
    assert report.graphs == 8
    assert not report.findings, "\n".join(f.line() for x in report.findings
                                          for f in x.failures)
    assert fuzz.replay_command([7], None, large=True).endswith("--replay 7 --large")


def test_bits_that_change_with_the_pool_threads_are_a_finding(monkeypatch):
    """A native step's second run has the pool on one thread: results that depend on it (a
    split kernel whose chunks followed the threads) are reported as a repeat failure."""
    from graphc.runtime import parallel
    monkeypatch.setenv("GRAPHC_BLAS_TUNING", "0")
    monkeypatch.setenv("GRAPHC_NUM_THREADS", "2")
    recipe = graphs.generate(3)
    assert not check.Batch([recipe], configs=("llvm",)).run()
    if (parallel.threads() or 1) < 2:
        pytest.skip("one CPU: the pool has one thread either way")
    plain = check.call

    def thread_dependent(step, feeds):
        out = plain(step, feeds)
        one = parallel.threads() == 1 and step.backend == "llvm"
        return [np.nextafter(x, np.inf) if one and x.dtype.kind == "f" else x for x in out]
    monkeypatch.setattr(check, "call", thread_dependent)
    fails = check.Batch([recipe], configs=("llvm",)).run()
    assert fails and all(f.what == "repeat" for f in fails)
    assert all("one pool thread" in f.detail for f in fails)


def test_unknown_dims_graphs_declare_a_none_batch_and_run_clean(monkeypatch):
    """``--unknown-dims``: the same graphs, their placeholders declared with an unknown first
    dim (TF1's batch None) but those a filter or a cell's input is computed from; 8 of them
    pass every candidate, and a replay carries the flag."""
    monkeypatch.setenv("GRAPHC_BLAS_TUNING", "0")
    declared = []
    for seed in range(20):
        plain, unknown = graphs.generate(seed), graphs.generate(seed, unknown_dims=True)
        assert graphs.describe(plain) == graphs.describe(  # (the same draws)
            dataclasses.replace(unknown, unknown_dims=False))
        declared += [graphs.declared_shape(unknown, i)[0] for i in unknown.live()
                     if isinstance(unknown.items[i], graphs.Leaf) and unknown.items[i].shape]
    assert declared.count(None) > 0.7 * len(declared)
    report = fuzz.run(8, seed=0, do_shrink=False, unknown_dims=True)
    assert report.graphs == 8 and not report.findings
    assert fuzz.replay_command([3], None, unknown_dims=True).endswith("--unknown-dims")


def test_calls_that_disturb_each_other_from_two_threads_are_a_finding(monkeypatch):
    """A native step is also called from two threads at once: a call whose outputs change
    while another call runs (a buffer shared between calls) is reported."""
    import threading
    import time
    monkeypatch.setenv("GRAPHC_BLAS_TUNING", "0")
    recipe = next(r for r in map(graphs.generate, range(50)) if not r.stateful)
    assert not check.Batch([recipe], configs=("llvm",)).run()
    plain, active, lock = check.call, [0], threading.Lock()

    def shared_buffer(step, feeds):
        with lock:
            active[0] += 1
        time.sleep(0.05)  # (the other call starts meanwhile)
        out = plain(step, feeds)
        with lock:
            both = active[0] > 1
        time.sleep(0.05)
        with lock:
            active[0] -= 1
        return [np.nextafter(x, np.inf) if both and x.dtype.kind == "f" else x for x in out]
    monkeypatch.setattr(check, "call", shared_buffer)
    fails = check.Batch([recipe], configs=("llvm",)).run()
    assert fails and all("two threads at once" in f.detail for f in fails)


def test_conv_blocks_reach_the_pooling_convolution(monkeypatch):
    """``conv_block`` recipes (conv2d, a bias per channel, ReLU or not, max pooling over
    windows side by side, as a TF1 CNN layer): the LLVM backend pools inside the
    convolution's kernel on them (``folds.conv_pool``), and 6 of them pass every candidate."""
    from tests.support.folds import watch_fold
    monkeypatch.setenv("GRAPHC_BLAS_TUNING", "0")
    recipes = [r for r in map(graphs.generate, range(200))
               if any(getattr(it, "kind", None) == "conv_block" for it in r.items)][:6]
    assert len(recipes) == 6
    fired = watch_fold(monkeypatch, "conv_pool")
    fails = check.Batch(recipes).run()
    assert not fails, "\n".join(f.line() for f in fails)
    assert sum(fired) >= 3


def test_optimizer_recipes_train_with_every_optimizer_and_pass(monkeypatch):
    """``optimizer`` recipes train a variable and a scalar with one of TF1's optimizers (with
    their slots), clipped by global norm or not: every optimizer is drawn, such recipes are
    stateful (their second call reads the updates: not a repeat failure), and 6 of them
    pass every candidate."""
    from graphc.testing import nn_families
    monkeypatch.setenv("GRAPHC_BLAS_TUNING", "0")
    drawn, clipped, recipes = set(), set(), []
    for recipe in map(graphs.generate, range(300)):
        ops = [it for it in recipe.items if getattr(it, "kind", None) == "optimizer"]
        drawn |= {it.params["opt"] for it in ops}
        clipped |= {it.params["clip"] for it in ops}
        if ops and recipe.stateful and len(recipes) < 6:
            recipes.append(recipe)
    assert drawn == set(nn_families.OPTIMIZERS) and clipped == {True, False}
    assert len(recipes) == 6
    fails = check.Batch(recipes).run()
    assert not fails, "\n".join(f.line() for f in fails)


def test_batch_norm_recipes_pass_with_their_gradients(monkeypatch):
    """``batch_norm`` recipes (the batch's own moments over every axis but the last, an
    offset and a scale per channel): 6 of them, some differentiated through the
    normalization, pass every candidate."""
    monkeypatch.setenv("GRAPHC_BLAS_TUNING", "0")

    def kinds_of(recipe):
        return [getattr(it, "kind", None) for it in recipe.items]

    def through_norm(recipe):  # a gradient of a value computed from a batch_norm
        for it in recipe.items:
            if getattr(it, "kind", None) in ("grad", "hvp"):
                stack, seen = [it.inputs[0]], set()
                while stack:
                    k = stack.pop()
                    if k not in seen:
                        seen.add(k)
                        stack += list(getattr(recipe.items[k], "inputs", ()))
                if "batch_norm" in {kinds_of(recipe)[k] for k in seen}:
                    return True
        return False
    recipes = [r for r in map(graphs.generate, range(300)) if "batch_norm" in kinds_of(r)]
    graded = [r for r in recipes if through_norm(r)]
    assert len(recipes) >= 6 and graded
    fails = check.Batch(graded[:2] + [r for r in recipes if r not in graded][:4]).run()
    assert not fails, "\n".join(f.line() for f in fails)


def test_no_drawn_value_holds_more_than_the_element_cap():
    """Seed 93232 of a large run once drew an outer product of two 21,353-long vectors, which
    with its float64 reference took 24 GB; values over ``MAX_ELEMENTS`` are not drawn."""
    recipe = graphs.generate(93232, known_bugs=True, large=True)
    sizes = [int(np.prod(op.shape)) for op in recipe.items if isinstance(op, graphs.Op)]
    assert sizes and max(sizes) <= graphs.MAX_ELEMENTS
