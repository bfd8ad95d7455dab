"""TF1 names built as compositions of existing ops: tile, pad, split, cumsum, reduce_any,
reduce_all, reduce_logsumexp, reduce_prod, nn.l2_normalize, nn.in_top_k and the ``tf.math``
namespace.

A table of cases is checked against NumPy (np.tile, np.pad, np.split, np.cumsum...) on the
NumPy and LLVM backends, unoptimized and optimized (all cases of one dtype in one graph, so
each backend compiles once per dtype); float64 gradients are compared across backends and
against central differences. Edge semantics and bad arguments have their own tests.
"""
import zlib

import numpy as np
import pytest

import graphc as gc
from graphc.errors import DTypeError, GraphcError, GraphError, ShapeError

from conftest import check_against_central_differences

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
                    fetches[f"{c.name}/d{x.name}"] = (g, None)
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
