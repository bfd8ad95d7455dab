"""The LLVM backend against the NumPy reference on every row of the op table.

Compiling is the expensive part, so all rows of one dtype go into ONE graph and one step per
backend (a module-scoped fixture); each row is then its own test case comparing its fetch.
float64 groups also fetch every gradient row's gradients (of a random projection of the
output), so each differentiable op's backward kernels are compared too.
"""
import zlib

import numpy as np
import pytest

import graphc as gc

from tests.support import optable
from tests.support.checks import assert_close

DTYPES = ("float32", "float64", "int32", "int64", "bool")


def _rows(dtype):
    return [r for r in optable.ROWS if dtype in r.dtypes]


def _build_group(dtype):
    """(graph, feeds, {case id: (fetch node, kind)}) for every row that runs in ``dtype``."""
    graph = gc.Graph()
    feeds, cases = {}, {}
    with graph.as_default():
        for r in _rows(dtype):
            phs, values, out = optable.instantiate(r, dtype)
            feeds.update(zip(phs, values))
            cases[r.name] = out
            if dtype == "float64" and r.grad:
                xs = [p for p, a in zip(phs, r.args) if a.diff]
                weights = np.random.default_rng(zlib.crc32(r.name.encode())).standard_normal(
                    tuple(np.shape(optable.reference(r, values)[0])))
                loss = gc.reduce_sum(out * gc.constant(weights, dtype=out.dtype))
                # zeros, not None, for the ops without a gradient (sign, floor...)
                for x, g in zip(xs, gc.gradients(loss, xs, unconnected_gradients="zero")):
                    cases[f"{r.name}/d{x.op.name}"] = g
    return graph, feeds, cases


def _run(graph, feeds, fetches, backend, optimize=False):
    with gc.Session(graph=graph, backend=backend, optimize=optimize) as sess:
        return sess.run(fetches, feeds)


@pytest.fixture(scope="module")
def results():
    """Per dtype: {case id: (NumPy reference, LLVM unoptimized, LLVM optimized)}: the
    unplanned layout and the planned one (fused bodies, in-place writes, arena reuse)."""
    out = {}
    for dtype in DTYPES:
        graph, feeds, cases = _build_group(dtype)
        names = list(cases)
        fetches = [cases[k] for k in names]
        ref = _run(graph, feeds, fetches, "numpy")
        plain = _run(graph, feeds, fetches, "llvm")
        opt = _run(graph, feeds, fetches, "llvm", optimize=True)
        out[dtype] = {k: v for k, *v in zip(names, ref, plain, opt)}
    return out


def _case_ids():
    for dtype in DTYPES:
        for r in _rows(dtype):
            yield pytest.param(dtype, r.name, id=f"{r.name}-{dtype}")


@pytest.mark.parametrize("dtype,name", list(_case_ids()))
def test_llvm_matches_numpy(results, dtype, name):
    matching = {k: v for k, v in results[dtype].items() if k == name or
                k.startswith(name + "/")}
    assert matching, name
    for key, (want, *gots) in matching.items():
        want = np.asarray(want)
        for label, got in zip(("unoptimized", "optimized"), gots):
            got, what = np.asarray(got), f"{key} ({label})"
            assert got.dtype == want.dtype and got.shape == want.shape, \
                f"{what}: {got.dtype}{got.shape} vs {want.dtype}{want.shape}"
            if want.dtype.kind in "biu":
                np.testing.assert_array_equal(got, want, err_msg=what)
            else:
                assert_close(got, want, dtype, what)
