"""gc.einsum against np.einsum on a table of equations, on the NumPy and LLVM backends
(unoptimized and optimized, every case of the table in one graph so each backend compiles
once), float64 gradients against central differences, and bad equations rejected with an
error naming the equation and the user's line."""
import numpy as np
import pytest

import graphc as gc
from graphc.errors import GraphcError, GraphError, ShapeError

from tests.support.checks import check_against_central_differences

# (equation, operand shapes)
CASES = [
    ("ij,jk->ik", [(3, 4), (4, 5)]),                       # matmul
    ("ij,jk", [(3, 4), (4, 2)]),                           # implicit output
    ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),              # batched matmul
    ("bi,bj,ij->b", [(4, 3), (4, 5), (3, 5)]),             # bilinear form, three operands
    ("i,j->ij", [(3,), (4,)]),                             # outer product
    ("ij->ji", [(3, 4)]),                                  # transpose
    ("ij->", [(3, 4)]),                                    # total sum
    ("ij->j", [(3, 4)]),                                   # column sums
    ("bqd,bkd->bqk", [(2, 3, 4), (2, 5, 4)]),              # attention logits
    ("bqk,bkd->bqd", [(2, 3, 5), (2, 5, 4)]),              # attention output
    ("abc,cd->dba", [(2, 3, 4), (4, 5)]),                  # output permuted
    ("bhqd,bhkd->bhqk", [(2, 2, 3, 4), (2, 2, 5, 4)]),     # two batch dims merged
    ("ijk,kj->i", [(2, 3, 4), (4, 3)]),                    # two contracted indices
    ("i,i->", [(5,), (5,)]),                               # dot product
    ("ab,cd->abcd", [(2, 3), (2, 2)]),                     # outer product, two free groups
    ("...ij,...jk->...ik", [(2, 3, 4), (4, 5)]),           # ellipsis broadcast (rank differs)
    ("...ij,...jk", [(2, 1, 3, 4), (3, 4, 2)]),            # size-1 ellipsis dim broadcasts
]
IDS = [eq for eq, _ in CASES]
RUNS = [("numpy", False), ("numpy", True), ("llvm", False), ("llvm", True)]


def _inputs(shapes, dtype, seed):
    rng = np.random.default_rng(seed)
    return [rng.uniform(-1.0, 1.0, s).astype(dtype) for s in shapes]


@pytest.fixture(scope="module")
def results():
    """{(dtype, backend, optimize): list of (expected, actual)} for every case."""
    out = {}
    for dtype in ("float32", "float64"):
        graph = gc.Graph()
        feeds, fetches, expected = {}, [], []
        with graph.as_default():
            for k, (eq, shapes) in enumerate(CASES):
                values = _inputs(shapes, dtype, k)
                phs = [gc.placeholder(dtype, s) for s in shapes]
                feeds.update(zip(phs, values))
                fetches.append(gc.einsum(eq, *phs))
                expected.append(np.einsum(eq, *[v.astype(np.float64) for v in values]))
        for backend, optimize in RUNS:
            with gc.Session(graph=graph, backend=backend, optimize=optimize) as sess:
                got = sess.run(fetches, feeds)
            out[(dtype, backend, optimize)] = list(zip(expected, got))
    return out


@pytest.mark.parametrize("run", RUNS, ids=[f"{b}-{'opt' if o else 'ref'}" for b, o in RUNS])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", range(len(CASES)), ids=IDS)
def test_einsum_matches_numpy(results, case, dtype, run):
    expected, actual = results[(dtype,) + run][case]
    assert np.shape(actual) == expected.shape
    assert np.asarray(actual).dtype == np.dtype(dtype)
    tol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("case", [0, 2, 3, 8, 11, 12, 15], ids=[IDS[i] for i in
                                                               (0, 2, 3, 8, 11, 12, 15)])
def test_einsum_gradients_match_central_differences(case, rng):
    eq, shapes = CASES[case]
    values = _inputs(shapes, "float64", case)
    phs = [gc.placeholder(gc.float64, s) for s in shapes]
    out = gc.einsum(eq, *phs)
    weights = rng.standard_normal(np.einsum(eq, *values).shape)
    loss = gc.reduce_sum(out * weights)
    grads = gc.gradients(loss, phs)
    feeds = dict(zip(phs, values))
    with gc.Session() as sess:
        analytic = sess.run(grads, feeds)
        check_against_central_differences(lambda f: float(sess.run(loss, f)), feeds, phs,
                                          analytic, rng, what=eq)


def test_unknown_batch_dim_is_specialized_from_the_feed():
    q = gc.placeholder(gc.float32, [None, 3, 4])
    k = gc.placeholder(gc.float32, [None, 5, 4])
    s = gc.einsum("bqd,bkd->bqk", q, k)
    assert s.shape == (None, 3, 5)
    qv, kv = _inputs([(6, 3, 4), (6, 5, 4)], "float32", 0)
    with gc.Session() as sess:
        np.testing.assert_allclose(sess.run(s, {q: qv, k: kv}),
                                   np.einsum("bqd,bkd->bqk", qv, kv), rtol=1e-5, atol=1e-6)


def test_operands_may_come_as_one_list_and_the_result_is_named():
    a, b = gc.ones([2, 3]), gc.ones([3, 4])
    out = gc.einsum("ij,jk->ik", [a, b], name="scores")
    assert out.op.name == "scores" and out.shape == (2, 4)


BAD = [
    ("ii->i", [(3, 3)], GraphError, r"index 'i' repeats in input term 0(.|\n)*diagonals"),
    ("ii", [(3, 3)], GraphError, r"index 'i' repeats"),
    ("ij->ii", [(3, 3)], GraphError, r"index 'i' repeats in the output"),
    ("ij,jk->ik", [(3, 4)], GraphError, r"2 input terms but 1 tensors"),
    ("ij->k", [(3, 4)], GraphError, r"output index 'k' appears in no input term"),
    ("ijk->i", [(3, 4)], ShapeError, r"term 'ijk' has 3 indices but .* is f32\[3,4\]"),
    ("ij,jk->ik", [(3, 4), (5, 2)], ShapeError, r"index 'j' has sizes \[4, 5\]"),
    ("i1,1k->ik", [(3, 4), (4, 2)], GraphError, r"indices must be letters"),
    ("i..j->ij", [(3, 4)], GraphError, r"bad ellipsis"),
]


@pytest.mark.parametrize("eq,shapes,cls,pattern", BAD, ids=[b[0] + "/" + b[3][:12]
                                                             for b in BAD])
def test_bad_equations_name_the_equation_and_the_line(eq, shapes, cls, pattern):
    phs = [gc.placeholder(gc.float32, s) for s in shapes]
    with pytest.raises(cls, match=pattern) as info:
        gc.einsum(eq, *phs)  # the line the error must name
    assert isinstance(info.value, GraphcError)
    assert f"equation '{eq}'" in str(info.value)
    assert "test_einsum.py" in str(info.value) and "gc.einsum(eq, *phs)" in str(info.value)
