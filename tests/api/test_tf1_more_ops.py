"""TF1 names built as compositions of existing ops: tile, pad, split, cumsum, reduce_any,
reduce_all, reduce_logsumexp, reduce_prod, nn.l2_normalize, nn.in_top_k and the ``tf.math``
namespace.

A table of cases is checked against NumPy (np.tile, np.pad, np.split, np.cumsum...) on the
NumPy and LLVM backends, unoptimized and optimized (all cases of one dtype in one graph, so
each backend compiles once per dtype); float64 gradients are compared across backends and
against central differences. Edge semantics and bad arguments have their own tests.
"""
import re
import zlib

import numpy as np
import pytest

import graphc as gc
from graphc.errors import DTypeError, GraphcError, GraphError, ShapeError

from tests.support.checks import check_against_central_differences

FLOATS = ("float32", "float64")
INTS = ("int32", "int64")
GROUPS = FLOATS + INTS + ("bool",)
RUNS = [("numpy", False), ("numpy", True), ("llvm", False), ("llvm", True)]


class In:
    """One input: static shape, kind ("num": the case's dtype; "int32"; "bool"), an optional
    fixed value, and a sampler for integer-valued floats (ties) when ``ties``."""

    def __init__(self, shape, kind="num", value=None, ties=False):
        self.shape, self.kind, self.value, self.ties = tuple(shape), kind, value, ties

    def dtype(self, dtype):
        return np.dtype(dtype if self.kind == "num" else self.kind)

    def sample(self, rng, dtype):
        dt = self.dtype(dtype)
        if self.value is not None:
            return np.asarray(self.value, dt)
        if dt.kind == "b":
            return rng.random(self.shape) < 0.5
        if dt.kind == "i" or self.ties:
            return rng.integers(-4, 5, self.shape).astype(dt)
        return rng.uniform(-2.0, 2.0, self.shape).astype(dt)


class Case:
    """A named build (placeholders -> node) with its NumPy reference and inputs; ``dynamic``
    leaves the first input's leading dim None; ``grad`` adds float64 gradient checks."""

    def __init__(self, name, build, ref, args, dtypes=FLOATS, grad=True, dynamic=False):
        self.name, self.build, self.ref, self.args = name, build, ref, args
        self.dtypes, self.dynamic = dtypes, dynamic
        self.grad = grad and "float64" in dtypes and any(a.kind == "num" for a in args)

    def instantiate(self, dtype):
        rng = np.random.default_rng(zlib.crc32(self.name.encode()))
        values = [a.sample(rng, dtype) for a in self.args]
        phs = [gc.placeholder(a.dtype(dtype), ((None,) + a.shape[1:]) if self.dynamic and i == 0
                              else a.shape, name=f"in{i}") for i, a in enumerate(self.args)]
        return phs, values, self.build(*phs)

    def expected(self, values):
        wide = [v.astype(np.float64) if v.dtype.kind == "f" else v for v in values]
        return np.asarray(self.ref(*wide))


def _np_in_top_k(p, t, k):
    ok = [0 <= j < p.shape[1] and np.isfinite(row).all() and (row > row[j]).sum() < k
          for row, j in zip(p, t)]
    return np.array(ok, bool)


def _l2n(x, axis):
    return x / np.sqrt(np.maximum((x * x).sum(axis=axis, keepdims=True), 1e-12))


def _lse(x, axis, keepdims=False):
    return np.log(np.exp(x).sum(axis=axis, keepdims=keepdims))


def _rev_cumsum(x, axis, exclusive):
    r = np.flip(np.cumsum(np.flip(x, axis), axis), axis)
    return r - x if exclusive else r


def _flip_concat(pieces, axis):
    """The pieces back together in reverse order (every piece reaches the output)."""
    return (gc.concat if isinstance(pieces[0], gc.Tensor) else np.concatenate)(
        pieces[::-1], axis)


C = Case
_BOOL = In((2, 3, 4), "bool")
_TIES = [[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0], [5.0, -1.0, 4.0, 4.0]]
CASES = [
    # tile: static (reshape/broadcast/reshape) and dynamic (concat doubling)
    C("tile[2d]", lambda x: gc.tile(x, [2, 3]), lambda x: np.tile(x, [2, 3]), [In((3, 4))]),
    C("tile[3d,1,5,2]", lambda x: gc.tile(x, [1, 5, 2]), lambda x: np.tile(x, [1, 5, 2]),
      [In((2, 3, 1))]),
    C("tile[zero]", lambda x: gc.tile(x, [0, 2]), lambda x: np.tile(x, [0, 2]), [In((3, 2))]),
    C("tile[dynamic]", lambda x: gc.tile(x, [3, 5]), lambda x: np.tile(x, [3, 5]),
      [In((2, 3))], dynamic=True),
    C("tile[int]", lambda x: gc.tile(x, [2, 1]), lambda x: np.tile(x, [2, 1]), [In((3, 2))],
      dtypes=INTS),
    C("tile[bool]", lambda x: gc.tile(x, [2, 1, 2]), lambda x: np.tile(x, [2, 1, 2]),
      [_BOOL], dtypes=("bool",)),
    # pad
    C("pad[constant]", lambda x: gc.pad(x, [[1, 2], [0, 3]]),
      lambda x: np.pad(x, [[1, 2], [0, 3]]), [In((3, 4))]),
    C("pad[constant_values]", lambda x: gc.pad(x, [[0, 1], [2, 0]], constant_values=1.5),
      lambda x: np.pad(x, [[0, 1], [2, 0]], constant_values=1.5), [In((3, 4))]),
    C("pad[constant_values tensor]", lambda x, c: gc.pad(x, [[1, 1], [1, 0]], constant_values=c),
      lambda x, c: np.pad(x, [[1, 1], [1, 0]], constant_values=c), [In((2, 3)), In(())]),
    C("pad[dynamic]", lambda x: gc.pad(x, [[1, 2], [2, 1]]),
      lambda x: np.pad(x, [[1, 2], [2, 1]]), [In((3, 3))], dynamic=True),
    C("pad[reflect]", lambda x: gc.pad(x, [[2, 1], [3, 0]], "REFLECT"),
      lambda x: np.pad(x, [[2, 1], [3, 0]], "reflect"), [In((3, 4))]),
    C("pad[symmetric]", lambda x: gc.pad(x, [[3, 1], [2, 4]], mode="symmetric"),
      lambda x: np.pad(x, [[3, 1], [2, 4]], "symmetric"), [In((3, 4))]),
    C("pad[reflect,3d,dynamic]", lambda x: gc.pad(x, [[0, 0], [1, 2], [3, 3]], "REFLECT"),
      lambda x: np.pad(x, [[0, 0], [1, 2], [3, 3]], "reflect"), [In((2, 3, 4))],
      dynamic=True),
    C("pad[int]", lambda x: gc.pad(x, [[1, 1], [2, 0]], constant_values=9),
      lambda x: np.pad(x, [[1, 1], [2, 0]], constant_values=9), [In((2, 3))], dtypes=INTS),
    C("pad[none]", lambda x: gc.pad(x, [[0, 0], [0, 0]]), lambda x: x, [In((2, 3))]),
    # split
    C("split[3 equal]", lambda x: _flip_concat(gc.split(x, 3, axis=1), 1),
      lambda x: _flip_concat(np.split(x, 3, axis=1), 1), [In((4, 6))]),
    C("split[sizes,-1]", lambda x: _flip_concat(gc.split(x, [2, -1, 1]), 0),
      lambda x: _flip_concat(np.split(x, [2, 4]), 0), [In((5, 3))]),
    C("split[one piece]", lambda x: gc.split(x, 3, axis=-1)[1] * 2.0,
      lambda x: np.split(x, 3, axis=-1)[1] * 2.0, [In((2, 6))]),
    C("split[dynamic axis, -1 last]", lambda x: _flip_concat(gc.split(x, [1, -1]), 0),
      lambda x: _flip_concat(np.split(x, [1]), 0), [In((4, 3))], dynamic=True),
    C("split[int]", lambda x: _flip_concat(gc.split(x, [1, 2], axis=1), 1),
      lambda x: _flip_concat(np.split(x, [1], axis=1), 1), [In((2, 3))], dtypes=INTS),
    # cumsum: log-step scans
    C("cumsum[axis=0]", lambda x: gc.cumsum(x), lambda x: np.cumsum(x, 0), [In((5, 3))]),
    C("cumsum[exclusive]", lambda x: gc.cumsum(x, axis=1, exclusive=True),
      lambda x: np.cumsum(x, 1) - x, [In((3, 6))]),
    C("cumsum[reverse]", lambda x: gc.cumsum(x, axis=-1, reverse=True),
      lambda x: _rev_cumsum(x, -1, False), [In((3, 7))]),
    C("cumsum[exclusive,reverse]", lambda x: gc.cumsum(x, 1, exclusive=True, reverse=True),
      lambda x: _rev_cumsum(x, 1, True), [In((2, 5, 3))]),
    C("cumsum[dynamic]", lambda x: gc.cumsum(x, axis=1), lambda x: np.cumsum(x, 1),
      [In((2, 9))], dynamic=True),
    C("cumsum[length 1]", lambda x: gc.cumsum(x, axis=1) + gc.cumsum(x, 1, exclusive=True),
      lambda x: x, [In((3, 1))]),
    C("cumsum[int]", lambda x: gc.cumsum(x, axis=1, reverse=True),
      lambda x: _rev_cumsum(x, 1, False), [In((3, 5))], dtypes=INTS),
    # reductions
    C("reduce_any[axis=1]", lambda x: gc.reduce_any(x, axis=1), lambda x: x.any(1), [_BOOL],
      dtypes=("bool",)),
    C("reduce_any[all axes]", lambda x: gc.reduce_any(x), lambda x: x.any(), [_BOOL],
      dtypes=("bool",)),
    C("reduce_all[(0,2),keepdims]", lambda x: gc.reduce_all(x, [0, 2], keepdims=True),
      lambda x: x.all((0, 2), keepdims=True), [_BOOL], dtypes=("bool",)),
    C("reduce_all[reduction_indices]", lambda x: gc.reduce_all(x, reduction_indices=-1),
      lambda x: x.all(-1), [_BOOL], dtypes=("bool",)),
    C("reduce_any[from compare]", lambda x: gc.reduce_any(x > 1.0, axis=0, keep_dims=True),
      lambda x: (x > 1.0).any(0, keepdims=True), [In((3, 4))], grad=False),
    C("reduce_logsumexp[all]", lambda x: gc.reduce_logsumexp(x), lambda x: _lse(x, None),
      [In((3, 4))]),
    C("reduce_logsumexp[axis=1,keepdims]", lambda x: gc.reduce_logsumexp(x, 1, keepdims=True),
      lambda x: _lse(x, 1, True), [In((3, 4))]),
    C("reduce_logsumexp[(0,2),dynamic]", lambda x: gc.reduce_logsumexp(x, [0, 2]),
      lambda x: _lse(x, (0, 2)), [In((2, 3, 4))], dynamic=True),
    C("reduce_prod[all]", lambda x: gc.reduce_prod(x), lambda x: np.prod(x), [In((3, 4))]),
    C("reduce_prod[axis=1 of 7]", lambda x: gc.reduce_prod(x, axis=1),
      lambda x: np.prod(x, 1), [In((2, 7))]),
    C("reduce_prod[(0,2),keepdims]",
      lambda x: gc.reduce_prod(x, [0, 2], keepdims=True),
      lambda x: np.prod(x, (0, 2), keepdims=True), [In((3, 2, 5))]),
    C("reduce_prod[int]", lambda x: gc.reduce_prod(x, -1), lambda x: np.prod(x, -1),
      [In((3, 5))], dtypes=INTS),
    C("reduce_prod[size 1]", lambda x: gc.reduce_prod(x, 0), lambda x: np.prod(x, 0),
      [In((1, 3))]),
    # nn
    C("l2_normalize[axis=1]", lambda x: gc.nn.l2_normalize(x, axis=1), lambda x: _l2n(x, 1),
      [In((3, 4))]),
    C("l2_normalize[all, dim]", lambda x: gc.math.l2_normalize(x), lambda x: _l2n(x, None),
      [In((3, 4))]),
    C("l2_normalize[(0,2),dynamic]", lambda x: gc.nn.l2_normalize(x, dim=[0, 2]),
      lambda x: _l2n(x, (0, 2)), [In((2, 3, 2))], dynamic=True),
    C("in_top_k[k=1,2,3 ties]",
      lambda p, t: gc.stack([gc.nn.in_top_k(p, t, k) for k in (1, 2, 3)]),
      lambda p, t: np.stack([_np_in_top_k(p, t, k) for k in (1, 2, 3)]),
      [In((3, 4), value=_TIES), In((3,), "int32", value=[1, 0, 3])], grad=False),
    C("in_top_k[random, int64]", lambda p, t: gc.math.in_top_k(p, t, 2),
      lambda p, t: _np_in_top_k(p, t, 2), [In((6, 5), ties=True), In((6,), "int64",
                                                                    value=[0, 1, 2, 3, 4, 0])],
      grad=False, dynamic=True),
]


def _group(dtype):
    return [c for c in CASES if dtype in c.dtypes]


def _build(dtype):
    """(graph, feeds, {key: (fetch, expected or None)}); float64 cases add the gradients of
    a random projection of their output (expected None: compared across runs only)."""
    graph, feeds, fetches = gc.Graph(), {}, {}
    with graph.as_default():
        for c in _group(dtype):
            phs, values, out = c.instantiate(dtype)
            feeds.update(zip(phs, values))
            fetches[c.name] = (out, c.expected(values))
            if dtype == "float64" and c.grad:
                xs = [p for p, a in zip(phs, c.args) if a.kind == "num"]
                w = np.random.default_rng(7).standard_normal(fetches[c.name][1].shape)
                for x, g in zip(xs, gc.gradients(gc.reduce_sum(out * w), xs)):
                    fetches[f"{c.name}/d{x.op.name}"] = (g, None)
    return graph, feeds, fetches


@pytest.fixture(scope="module")
def results():
    """{dtype: {key: (expected, [value per run in RUNS])}}."""
    out = {}
    for dtype in GROUPS:
        graph, feeds, fetches = _build(dtype)
        keys = list(fetches)
        runs = []
        for backend, optimize in RUNS:
            with gc.Session(graph=graph, backend=backend, optimize=optimize) as sess:
                runs.append(sess.run([fetches[k][0] for k in keys], feeds))
        out[dtype] = {k: (fetches[k][1], [r[i] for r in runs]) for i, k in enumerate(keys)}
    return out


def _assert_matches(got, want, dtype, what):
    got = np.asarray(got)
    assert got.shape == want.shape, f"{what}: shape {got.shape} vs {want.shape}"
    # numeric results keep the input's dtype (NumPy's cumsum/prod widen int32; TF does not)
    dt = np.dtype(dtype) if want.dtype.kind in "fi" else want.dtype
    assert got.dtype == dt, f"{what}: dtype {got.dtype} vs {dt}"
    if dt.kind == "f":
        tol = 1e-5 if dtype == "float32" else 1e-12
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol, err_msg=what)
    else:
        np.testing.assert_array_equal(got, want, err_msg=what)


@pytest.mark.parametrize("dtype,name", [pytest.param(d, c.name, id=f"{c.name}-{d}")
                                        for d in GROUPS for c in _group(d)])
def test_forward_matches_numpy_on_both_backends(results, dtype, name):
    want, values = results[dtype][name]
    for (backend, optimize), got in zip(RUNS, values):
        _assert_matches(got, want, dtype, f"{name} ({backend}, optimize={optimize})")
    for key, (_, grads) in results[dtype].items():
        if key.startswith(name + "/d"):  # gradients: every run equals the reference
            for (backend, optimize), g in zip(RUNS[1:], grads[1:]):
                np.testing.assert_allclose(g, grads[0], rtol=1e-10, atol=1e-12,
                                           err_msg=f"{key} ({backend}, {optimize})")


@pytest.mark.parametrize("case", [c for c in CASES if c.grad], ids=lambda c: c.name)
def test_gradients_match_central_differences(case, rng):
    phs, values, out = case.instantiate("float64")
    xs = [p for p, a in zip(phs, case.args) if a.kind == "num"]
    w = gc.constant(rng.standard_normal(case.expected(values).shape))
    loss = gc.reduce_sum(out * w)
    feeds = dict(zip(phs, values))
    with gc.Session(optimize=False) as sess:
        grads = sess.run(gc.gradients(loss, xs), feeds)
        check_against_central_differences(lambda f: float(sess.run(loss, f)), feeds, xs,
                                          grads, rng, what=case.name)


# -- second order: the compositions are differentiable again ----------------------------------

@pytest.mark.parametrize("build", [lambda x: gc.reduce_prod(x, axis=1),
                                   lambda x: gc.nn.l2_normalize(x, axis=1),
                                   lambda x: gc.reduce_logsumexp(gc.cumsum(x, 1) * x, 1)],
                         ids=["reduce_prod", "l2_normalize", "logsumexp of cumsum"])
def test_gradient_of_gradient_matches_central_differences(build, rng):
    x = gc.placeholder(gc.float64, [2, 3], name="x")
    u = gc.constant(rng.standard_normal((2, 3)))
    first, = gc.gradients(gc.reduce_sum(build(x) * 1.5), [x])
    probe = gc.reduce_sum(first * u)  # <grad, u>: its gradient is the Hessian times u
    feeds = {x: rng.uniform(0.5, 1.5, (2, 3))}
    with gc.Session(optimize=False) as sess:
        hu = sess.run(gc.gradients(probe, [x]), feeds)
        check_against_central_differences(lambda f: float(sess.run(probe, f)), feeds, [x], hu,
                                          rng, what="second order")


# -- edge semantics ---------------------------------------------------------------------------

def _both(fetches, feeds=None):
    """Values on the NumPy and LLVM backends (optimized), asserted equal (floats to an ulp
    or two: the backends' exp differ in the last bit), NumPy's returned."""
    out = []
    for backend in ("numpy", "llvm"):
        with gc.Session(backend=backend) as sess:
            out.append(sess.run(fetches, feeds or {}))
    for a, b in zip(out[0], out[1]):
        if a.dtype.kind == "f":
            np.testing.assert_allclose(b, a, rtol=1e-14, atol=0)
        else:
            np.testing.assert_array_equal(b, a)
    return out[0]


def test_reduce_prod_gradient_with_zero_factors_is_exact():
    x = gc.placeholder(gc.float64, [3, 5])
    v = np.array([[2.0, 0.0, 3.0, 1.0, -1.0], [0.0, 0.0, 4.0, 1.0, 2.0],
                  [1.0, 2.0, 3.0, 4.0, 5.0]])
    g, = gc.gradients(gc.reduce_sum(gc.reduce_prod(x, axis=1)), [x])
    want = np.array([[np.prod(np.delete(r, j)) for j in range(5)] for r in v])
    got, = _both([g], {x: v})
    np.testing.assert_array_equal(got, want)  # no division by a zero factor: no NaN


def test_reduce_prod_of_large_integers_is_exact_and_empty_product_is_one():
    v = np.array([[3037000499, 1, 1], [-7, 11, 13]], np.int64)
    x = gc.constant(v)
    empty = gc.placeholder(gc.float32, [2, 0])
    prod, ones = _both([gc.reduce_prod(x, 1), gc.reduce_prod(empty, axis=1)],
                       {empty: np.zeros((2, 0), np.float32)})
    np.testing.assert_array_equal(prod, np.prod(v, 1))
    np.testing.assert_array_equal(ones, [1.0, 1.0])


def test_reduce_logsumexp_is_stable_for_large_and_all_minus_inf_rows():
    v = np.array([[1000.0, 1000.0, -5.0], [-np.inf, -np.inf, -np.inf], [np.inf, 0.0, 1.0]])
    x = gc.placeholder(gc.float64, [3, 3])
    got, = _both([gc.reduce_logsumexp(x, axis=1)], {x: v})
    np.testing.assert_allclose(got[0], 1000.0 + np.log(2.0), rtol=1e-15)
    assert got[1] == -np.inf and got[2] == np.inf


def test_reduce_logsumexp_gradient_is_softmax():
    x = gc.placeholder(gc.float64, [2, 4])
    v = np.array([[500.0, 499.0, 0.0, -3.0], [1.0, 2.0, 3.0, 4.0]])
    g, = gc.gradients(gc.reduce_sum(gc.reduce_logsumexp(x, 1)), [x])
    got, = _both([g], {x: v})
    e = np.exp(v - v.max(1, keepdims=True))
    np.testing.assert_allclose(got, e / e.sum(1, keepdims=True), rtol=1e-14)


def test_reduce_any_all_of_empty_axes():
    e = gc.placeholder(gc.bool, [2, 0])
    anys, alls = _both([gc.reduce_any(e, 1), gc.reduce_all(e, 1)],
                       {e: np.zeros((2, 0), bool)})
    np.testing.assert_array_equal(anys, [False, False])
    np.testing.assert_array_equal(alls, [True, True])


def test_cumsum_keeps_infinities_in_place():
    v = np.array([1.0, np.inf, 2.0, -1.0, 3.0])
    fwd, rev = _both([gc.cumsum(v), gc.cumsum(v, reverse=True, exclusive=True)])
    np.testing.assert_array_equal(fwd, np.cumsum(v))  # a matmul scan would give NaN (0 * inf)
    np.testing.assert_array_equal(rev, [np.inf, 4.0, 2.0, 3.0, 0.0])


def test_in_top_k_rows_with_non_finite_predictions_or_bad_targets_are_false():
    p = np.array([[1.0, 2.0, 3.0], [1.0, np.nan, 3.0], [np.inf, 1.0, 0.0], [1.0, 2.0, 3.0],
                  [1.0, 2.0, 3.0]], np.float32)
    t = np.array([2, 2, 0, 3, -1], np.int32)
    got, = _both([gc.nn.in_top_k(gc.constant(p), gc.constant(t), 3)])
    np.testing.assert_array_equal(got, [True, False, False, False, False])


def test_in_top_k_with_a_tensor_k():
    p = gc.placeholder(gc.float32, [None, 4])
    k = gc.placeholder(gc.int64, [])
    v = np.array([[4.0, 3.0, 2.0, 1.0]] * 4, np.float32)
    got, = _both([gc.nn.in_top_k(p, [0, 1, 2, 3], k)], {p: v, k: 2})
    np.testing.assert_array_equal(got, [True, True, False, False])


def test_l2_normalize_of_a_zero_vector_is_zero_with_a_finite_gradient():
    x = gc.placeholder(gc.float64, [2, 3])
    y = gc.nn.l2_normalize(x, axis=1)
    g, = gc.gradients(gc.reduce_sum(y), [x])
    got, grad = _both([y, g], {x: np.array([[0.0, 0.0, 0.0], [3.0, 0.0, 4.0]])})
    np.testing.assert_array_equal(got[0], 0.0)
    np.testing.assert_allclose(got[1], [0.6, 0.0, 0.8], rtol=1e-15)
    assert np.isfinite(grad).all() and np.allclose(grad[0], 1e6)  # 1 / sqrt(epsilon)


def test_split_returns_tf1_pieces_and_shapes():
    x = gc.placeholder(gc.float32, [None, 10])
    a, b, c = gc.split(x, [2, -1, 3], axis=1)
    assert (a.shape, b.shape, c.shape) == ((None, 2), (None, 5), (None, 3))
    assert [p.shape for p in gc.split(x, 5, 1)] == [(None, 2)] * 5


def test_tile_and_pad_shapes_with_an_unknown_batch():
    x = gc.placeholder(gc.float32, [None, 3, 2])
    assert gc.tile(x, [2, 1, 3]).shape == (None, 3, 6)
    assert gc.pad(x, [[1, 1], [0, 2], [1, 0]]).shape == (None, 5, 3)


def test_tf_math_namespace_holds_the_same_functions():
    for n in ("log", "exp", "sqrt", "square", "abs", "maximum", "reduce_sum", "reduce_mean",
              "sigmoid", "tanh", "equal", "divide", "squared_difference", "reduce_prod",
              "reduce_any", "cumsum", "is_finite"):
        assert getattr(gc.math, n) is getattr(gc, n), n
    assert gc.math.in_top_k is gc.nn.in_top_k and gc.math.l2_normalize is gc.nn.l2_normalize
    assert gc.math.softplus is gc.nn.softplus
    assert gc.math.top_k is gc.nn.top_k and gc.math.round is gc.round
    with pytest.raises(AttributeError):
        gc.math.lgamma  # not provided: an AttributeError, never a stand-in


def test_training_step_through_the_new_ops_on_both_backends():
    """A tiny model using tile, pad, split, cumsum and logsumexp trains the same on both."""
    def train(backend):
        g = gc.Graph()
        with g.as_default():
            x = gc.placeholder(gc.float32, [None, 3])
            w = gc.Variable(np.linspace(-1, 1, 12, dtype=np.float32).reshape(6, 2))
            h = gc.pad(gc.tile(x, [1, 2]), [[0, 0], [1, 1]])
            left, right = gc.split(gc.cumsum(h, axis=1), [4, -1], axis=1)
            z = gc.matmul(gc.concat([left * 0.1, right], 1)[:, :6], w)
            loss = gc.reduce_mean(gc.reduce_logsumexp(z, axis=1))
            step = gc.train.GradientDescentOptimizer(0.1).minimize(loss)
            with gc.Session(backend=backend) as sess:
                sess.run(gc.global_variables_initializer())
                feed = {x: np.arange(12, dtype=np.float32).reshape(4, 3) / 10}
                losses = [sess.run([loss, step], feed)[0] for _ in range(3)]
                return losses, sess.run(w)
    (l1, w1), (l2, w2) = train("numpy"), train("llvm")
    assert l1[2] < l1[0]
    np.testing.assert_allclose(l2, l1, rtol=1e-5)
    np.testing.assert_allclose(w2, w1, rtol=1e-5, atol=1e-6)


# -- bad arguments: the argument named, the user's line -------------------------------------

BAD = [
    ("tile multiples from data", lambda x: gc.tile(x, gc.cast(x[0, :2], gc.int32)), GraphError,
     r"tile: multiples must be known when the step is specialized, but tensor '.*' depends on "
     r"the value fed to placeholder 'x'\n.*\n.*\n  hint: use gc.shape\(x\)"),
    ("tile multiples length", lambda x: gc.tile(x, [2]), ShapeError,
     r"tile: multiples must have shape \[2\], found \[1\]"),
    ("tile negative", lambda x: gc.tile(x, [1, -2]), GraphError, r"multiples must be >= 0"),
    ("tile float multiples", lambda x: gc.tile(x, [1.5, 2]), GraphError,
     r"multiples must hold ints"),
    ("pad unknown mode", lambda x: gc.pad(x, [[1, 1], [0, 0]], mode="WRAP"), GraphError,
     r"pad: unknown mode 'WRAP'\n  expected one of CONSTANT, REFLECT, SYMMETRIC"),
    ("pad paddings shape", lambda x: gc.pad(x, [1, 1]), ShapeError,
     r"paddings must have shape \[2, 2\], found \[2\]"),
    ("pad reflect too large", lambda x: gc.pad(x, [[3, 0], [0, 0]], "REFLECT"), ShapeError,
     r"paddings \[3, 0\] on axis 0 are too large for mode REFLECT and size 3"),
    ("pad symmetric too large", lambda x: gc.pad(x, [[0, 0], [0, 5]], "SYMMETRIC"),
     ShapeError, r"expected at most 4 per side"),
    ("pad int value float tensor", lambda x: gc.pad(gc.cast(x, gc.int32), [[1, 0], [0, 0]],
                                                    constant_values=0.5),
     DTypeError, r"cannot use the float value 0.5"),
    ("pad value not scalar", lambda x: gc.pad(x, [[1, 0], [0, 0]], constant_values=[1.0, 2.0]),
     ShapeError, r"constant_values must be a scalar"),
    ("split not divisible", lambda x: gc.split(x, 3, axis=1), ShapeError,
     r"split: cannot split axis 1 of f32\[3,4\] into 3 equal pieces"),
    ("split sizes sum", lambda x: gc.split(x, [1, 2], axis=1), ShapeError,
     r"sizes \[1, 2\] do not add up to the size 4 of axis 1"),
    ("split two -1", lambda x: gc.split(x, [-1, -1], axis=1), GraphError,
     r"at most one -1"),
    ("split sizes from data", lambda x: gc.split(x, gc.cast(x[0, :2], gc.int32), 1),
     GraphError, r"num_or_size_splits must be known when the step is specialized"),
    ("split axis tensor", lambda x: gc.split(x, 2, axis=gc.constant(1)), GraphError,
     r"split: axis must be a Python int, found tensor"),
    ("split axis range", lambda x: gc.split(x, 2, axis=2), ShapeError,
     r"axis 2 is out of range for f32\[3,4\]"),
    ("cumsum bool", lambda x: gc.cumsum(x > 0.0, axis=1), DTypeError,
     r"cumsum: expected a float or integer tensor, found bool"),
    ("reduce_any float", lambda x: gc.reduce_any(x), DTypeError,
     r"reduce_any: input_tensor must be bool, found f32\[3,4\]"),
    ("reduce_all axis tensor", lambda x: gc.reduce_all(x > 0.0, axis=gc.constant(0)),
     GraphError, r"reduce_all: axis must be static"),
    ("reduce_prod bad axis", lambda x: gc.reduce_prod(x, axis=3), ShapeError,
     r"reduce_prod: axis 3 does not fit f32\[3,4\]"),
    ("reduce_logsumexp int", lambda x: gc.reduce_logsumexp(gc.cast(x, gc.int32)),
     DTypeError, r"reduce_logsumexp: input_tensor must be floating"),
    ("in_top_k ranks", lambda x: gc.nn.in_top_k(x, gc.constant([[1]]), 1), ShapeError,
     r"in_top_k: expected predictions \[batch, classes\] and targets \[batch\]"),
    ("in_top_k float targets", lambda x: gc.nn.in_top_k(x, gc.constant([1.0, 0.0, 2.0]), 1),
     DTypeError, r"targets must be int32 or int64, found f32\[3\]"),
]
DYNAMIC_BAD = [
    ("cumsum unknown axis", lambda x: gc.cumsum(x, axis=0), ShapeError,
     r"cumsum: axis 0 of f32\[\?,4\] has an unknown size"),
    ("reduce_prod unknown axis", lambda x: gc.reduce_prod(x), ShapeError,
     r"reduce_prod: axis 0 of f32\[\?,4\] has an unknown size"),
    ("split -1 first, unknown axis", lambda x: gc.split(x, [-1, 2]), ShapeError,
     r"the -1 in num_or_size_splits \[-1, 2\] needs a static size.*\n.*\n  hint: put the -1"),
    ("split sizes, unknown axis", lambda x: gc.split(x, [1, 2]), ShapeError,
     r"cannot be checked against the unknown size"),
    ("pad reflect unknown axis", lambda x: gc.pad(x, [[1, 1], [0, 0]], "REFLECT"), ShapeError,
     r"mode REFLECT needs a static size on axis 0"),
    ("in_top_k unknown classes", lambda x: gc.nn.in_top_k(gc.transpose(x), [0], 1),
     ShapeError, r"the number of classes of f32\[4,\?\] is unknown"),
]


@pytest.mark.parametrize("shape,cases", [((3, 4), BAD), ((None, 4), DYNAMIC_BAD)],
                         ids=["static", "unknown batch"])
def test_bad_arguments_raise_naming_the_argument_and_the_users_line(shape, cases):
    x = gc.placeholder(gc.float32, shape, name="x")
    for what, build, cls, pattern in cases:
        with pytest.raises(cls) as info:
            build(x)
        err = info.value
        assert isinstance(err, GraphcError) and re.search(pattern, str(err)), (what, str(err))
        assert err.loc is not None and err.loc.lineno == build.__code__.co_firstlineno and \
            err.loc.filename == __file__, (what, str(err))
