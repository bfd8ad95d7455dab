"""gc.while_loop, gc.map_fn, gc.scan, gc.foldl, gc.foldr, unrolled when the graph is built:
values against Python/NumPy loops on both backends, nested structures, maximum_iterations,
the where-frozen loop for data-dependent conds, gradients against float64 central
differences (and against an explicit unroll), and the refusals with the node and line."""
import collections

import numpy as np
import pytest

import graphc as gc
from graphc.ops import control_flow_ops as control_flow
from graphc.ops.control_flow_ops import MAX_UNROLL, StaticValues
from graphc.errors import DTypeError, GraphError, ShapeError

from tests.support.checks import check_against_central_differences

BACKENDS = [("numpy", False), ("numpy", True), ("llvm", False), ("llvm", True)]
BACKEND_IDS = [f"{b}-{'opt' if o else 'ref'}" for b, o in BACKENDS]
Pair = collections.namedtuple("Pair", "a b")


def _run(fetches, feeds=None, backend="numpy", optimize=False):
    with gc.Session(backend=backend, optimize=optimize) as sess:
        if gc.global_variables():
            sess.run(gc.global_variables_initializer())
        return sess.run(fetches, feeds or {})


# -- while_loop with a static trip count -------------------------------------------------------

@pytest.mark.parametrize("backend,optimize", BACKENDS, ids=BACKEND_IDS)
def test_while_loop_counts_to_n_like_a_python_loop(backend, optimize):
    x = gc.placeholder(gc.float32, [6, 3])
    i, acc = gc.while_loop(lambda i, acc: i < gc.shape(x)[0],
                           lambda i, acc: (i + 1, acc * 0.5 + gc.gather(x, i)),
                           (0, gc.zeros([3])))
    xv = np.random.default_rng(0).uniform(-1, 1, (6, 3)).astype(np.float32)
    expected = np.zeros(3, np.float32)
    for row in xv:
        expected = expected * 0.5 + row
    got_i, got = _run([i, acc], {x: xv}, backend, optimize)
    assert got_i == 6 and i.dtype == gc.int32
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


def test_while_loop_unrolls_exactly_the_trip_count():
    """The body is built once per iteration, so an impure op in it runs that many times
    (here: four independent random draws, as TF1's loop would make)."""
    calls = []

    def body(i, draws):
        calls.append(i)
        return i + 2, gc.concat([draws, gc.random_uniform([1], seed=len(calls))], 0)
    i, draws = gc.while_loop(lambda i, d: i < 9, body, [gc.constant(1), gc.zeros([0])],
                             shape_invariants=[gc.TensorShape([]), gc.TensorShape([None])])
    assert len(calls) == 4 and tuple(draws.shape) == (4,)  # i = 1, 3, 5, 7 -> 9
    ops = [op.node.op_name for op in gc.get_default_graph().get_operations()]
    assert ops.count("random_uniform") == 4
    got_i, got = _run([i, draws])
    assert got_i == 9 and len(set(got.tolist())) == 4


def test_while_loop_nested_structures_and_return_structure():
    x = gc.constant(np.arange(3.0, dtype=np.float32))
    loop_vars = (gc.constant(0), Pair(x, {"s": gc.constant(1.0), "p": gc.zeros([2])}))

    def body(i, pair):
        return [i + 1, Pair(pair.a * 2.0, {"s": pair.b["s"] + 1.0, "p": pair.b["p"] - 1.0})]
    i, pair = gc.while_loop(lambda i, pair: i < 3, body, loop_vars)
    assert isinstance(pair, Pair) and set(pair.b) == {"s", "p"}
    got = _run([i, pair.a, pair.b["s"], pair.b["p"]])
    assert got[0] == 3
    np.testing.assert_array_equal(got[1], np.arange(3.0) * 8)
    assert got[2] == 4.0
    np.testing.assert_array_equal(got[3], [-3.0, -3.0])
    lone = gc.while_loop(lambda i: i < 5, lambda i: i + 1, [0])
    assert isinstance(lone, gc.Tensor) and _run(lone) == 5
    same = gc.while_loop(lambda i: i < 5, lambda i: [i + 1], [0], return_same_structure=True)
    assert isinstance(same, list) and _run(same) == [5]


def test_while_loop_maximum_iterations_stops_a_static_loop():
    i, s = gc.while_loop(lambda i, s: i < 100, lambda i, s: (i + 1, s + 2.0),
                         [0, gc.constant(0.0)], maximum_iterations=7)
    assert _run([i, s]) == [7, 14.0]
    zero = gc.while_loop(lambda i: i < 100, lambda i: i + 1, [3], maximum_iterations=0)
    assert _run(zero) == 3


def test_while_loop_shape_invariants_let_a_shape_grow():
    x = gc.ones([1, 2])
    i, y = gc.while_loop(lambda i, y: i < 3, lambda i, y: (i + 1, gc.concat([y, y], 0)),
                         [0, x], shape_invariants=[gc.TensorShape([]), gc.TensorShape([None, 2])])
    assert tuple(y.shape) == (8, 2)
    np.testing.assert_array_equal(_run(y), np.ones((8, 2)))
    free = gc.while_loop(lambda a, b: a < 4.0, lambda a, b: (a + 1.0, gc.concat([b, b], 0)),
                         [0.0, gc.ones([1])], shape_invariants=[None, None])[1]
    np.testing.assert_array_equal(_run(free), np.ones(16))
    with pytest.raises(GraphError, match=r"shape_invariants must have the structure of "
                       r"loop_vars \(2 shapes\)"):
        gc.while_loop(lambda i, y: i < 3, lambda i, y: (i + 1, y), [0, x],
                      shape_invariants=[gc.TensorShape([None, 2])])
    with pytest.raises(ShapeError, match=r"does not fit its shape invariant \[None, 3\]"):
        gc.while_loop(lambda i, y: i < 3, lambda i, y: (i + 1, y), [0, x],
                      shape_invariants=[gc.TensorShape([]), gc.TensorShape([None, 3])])
    with pytest.raises(ShapeError, match=r"while_loop: loop variable .* has shape \[1, 2\] "
                       r"but the body returns f32\[2,2\](.|\n)*shape_invariants"):
        gc.while_loop(lambda i, y: i < 3, lambda i, y: (i + 1, gc.concat([y, y], 0)), [0, x])


def test_gradient_through_an_unrolled_while_loop(rng):
    x = gc.placeholder(gc.float64, [3])
    w = gc.placeholder(gc.float64, [3, 3])

    def body(i, h):
        return i + 1, gc.tanh(gc.reshape(gc.matmul(gc.reshape(h, [1, 3]), w), [3]) + x)
    _, h = gc.while_loop(lambda i, h: i < 4, body, [0, x])
    loss = gc.reduce_sum(h * np.array([1.0, -2.0, 0.5]))
    gx, gw = gc.gradients(loss, [x, w])
    feeds = {x: rng.uniform(-1, 1, 3), w: rng.uniform(-0.8, 0.8, (3, 3))}
    with gc.Session() as sess:
        analytic = sess.run([gx, gw], feeds)
        check_against_central_differences(lambda f: float(sess.run(loss, f)), feeds, [x, w],
                                          analytic, rng, what="while_loop")


def test_back_prop_false_stops_the_gradient():
    x = gc.placeholder(gc.float64, [])
    y = gc.while_loop(lambda i, y: i < 3, lambda i, y: (i + 1, y * x), [0, x],
                      back_prop=False)[1]
    with gc.Session() as sess:
        assert sess.run(gc.gradients(x * y, [x])[0], {x: 2.0}) == 16.0  # y held constant


def test_static_values_fold_static_shapes_and_name_run_time_inputs():
    x = gc.placeholder(gc.float32, [5, None])
    static = StaticValues()
    assert static.value(gc.shape(x)[0] * 2 > 9) == np.True_
    node, why = static.value(gc.shape(x)[1] > 0)
    assert node is x and "known only when the step is fed" in why


# -- data-dependent conds ----------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_data_dependent_cond_runs_as_a_loop(backend):
    """A cond reading run-time data: a real loop, its trip count known when the step runs."""
    n = gc.placeholder(gc.int32, [], name="n_steps")
    i = gc.while_loop(lambda i: i < n, lambda i: i + 1, [0])
    v = gc.Variable(3.0, name="threshold")
    s = gc.while_loop(lambda s: s < v, lambda s: s + 1.0, [0.0])
    with gc.Session(backend=backend) as sess:
        sess.run(gc.global_variables_initializer())
        for steps in (0, 1, 5, 1000):
            assert sess.run(i, {n: steps}) == steps
        assert sess.run(s) == 3.0


def test_gradients_of_an_unbounded_data_dependent_loop_need_maximum_iterations():
    n = gc.placeholder(gc.float32, [], name="limit")
    x = gc.placeholder(gc.float32, [], name="x")
    s = gc.while_loop(lambda s: s < n, lambda s: s * x, [1.0])
    with pytest.raises(gc.errors.GradientError, match=r"need maximum_iterations"
                       r"(.|\n)*test_loops.py:\d+"):
        gc.gradients(s, [x])


@pytest.mark.parametrize("backend,optimize", BACKENDS, ids=BACKEND_IDS)
def test_frozen_loop_with_maximum_iterations_matches_a_numpy_loop(backend, optimize):
    """Collatz-like iteration with a run-time stopping rule: the where-frozen unroll."""
    x = gc.placeholder(gc.float32, [])
    y = gc.placeholder(gc.float32, [2])
    i, v, w = gc.while_loop(lambda i, v, w: v > 1.0,
                            lambda i, v, w: (i + 1, v * 0.5, w + v), [0, x, y],
                            maximum_iterations=12)

    def numpy_loop(v, w):
        i = 0
        while v > 1.0 and i < 12:
            i, v, w = i + 1, v * np.float32(0.5), w + v
        return i, v, w
    yv = np.array([0.25, -1.0], np.float32)
    for xv in (0.5, 3.0, 100.0, 1e6):
        got = _run([i, v, w], {x: xv, y: yv}, backend, optimize)
        expected = numpy_loop(np.float32(xv), yv)
        assert got[0] == expected[0], xv
        np.testing.assert_allclose(got[1], expected[1], rtol=1e-6)
        np.testing.assert_allclose(got[2], expected[2], rtol=1e-6)


def test_frozen_loop_gradient_matches_central_differences(rng):
    x = gc.placeholder(gc.float64, [])
    w = gc.placeholder(gc.float64, [3])
    _, s = gc.while_loop(lambda i, s: gc.reduce_sum(s) < x,
                         lambda i, s: (i + 1, s * 1.5 + w), [0, w], maximum_iterations=6)
    loss = gc.reduce_sum(gc.tanh(s))
    (gw,) = gc.gradients(loss, [w])
    with gc.Session() as sess:
        for xv in (0.5, 4.0, 50.0):  # 0..6 iterations taken
            feeds = {x: np.float64(xv), w: np.array([0.3, 0.2, 0.1])}
            analytic = sess.run([gw], feeds)
            check_against_central_differences(lambda f: float(sess.run(loss, f)), feeds, [w],
                                              analytic, rng, what=f"x={xv}")


def test_frozen_loop_refuses_impure_bodies():
    n = gc.placeholder(gc.int32, [])

    def body(i):
        return i + gc.cast(gc.random_uniform([]) > 2.0, gc.int32) + 1
    with pytest.raises(GraphError, match=r"while_loop: the body \(or cond\) creates impure "
                       r"node random_uniform(.|\n)*every one(.|\n)*created at test_loops.py"):
        gc.while_loop(lambda i: i < n, body, [0], maximum_iterations=4)


def test_runaway_loops_stop_at_max_unroll(monkeypatch):
    assert MAX_UNROLL == 10000
    monkeypatch.setattr(control_flow, "MAX_UNROLL", 50)
    assert _run(gc.while_loop(lambda i: i < 50, lambda i: i + 1, [0], unroll=True)) == 50
    with pytest.raises(GraphError, match=r"cond still holds after 50 unrolled(.|\n)*"
                       r"test_loops.py:\d+"):
        gc.while_loop(lambda i: i < 51, lambda i: i + 1, [0], unroll=True)
    with pytest.raises(GraphError, match=r"maximum_iterations=51 is more than graphc "
                       r"unrolls \(50\)"):
        gc.while_loop(lambda i: i < gc.placeholder(gc.int32, []), lambda i: i + 1, [0],
                      maximum_iterations=51, unroll=True)
    assert _run(gc.while_loop(lambda i: i < 51, lambda i: i + 1, [0])) == 51  # a real loop


def test_bad_loops_give_clear_errors():
    with pytest.raises(GraphError, match=r"body returns another structure than loop_vars"):
        gc.while_loop(lambda i, s: i < 2, lambda i, s: (i + 1, (s, s)), [0, 1.0])
    with pytest.raises(DTypeError, match=r"enters as int32 but the body returns float32"):
        gc.while_loop(lambda i: i < 2, lambda i: gc.cast(i, gc.float32) + 1.0, [0])
    with pytest.raises(GraphError, match=r"cond and body must be callables"):
        gc.while_loop(True, lambda i: i, [0])
    n = gc.placeholder(gc.int32, [])
    with pytest.raises(GraphError, match=r"maximum_iterations must be an int known"):
        gc.while_loop(lambda i: i < 3, lambda i: i + 1, [0], maximum_iterations=n)


# -- map_fn, scan, foldl, foldr ----------------------------------------------------------------

@pytest.mark.parametrize("backend,optimize", BACKENDS, ids=BACKEND_IDS)
def test_map_scan_folds_match_numpy(backend, optimize):
    x = gc.placeholder(gc.float32, [5, 3])
    xv = np.random.default_rng(1).uniform(-1, 1, (5, 3)).astype(np.float32)
    fetches = {
        "map": gc.map_fn(lambda r: gc.reduce_sum(r * r), x),
        "map_pair": gc.map_fn(lambda p: (p[0] * 2.0, p[1][:1]), (x, x)),
        "cumsum": gc.scan(lambda a, r: a + r, x),
        "rev": gc.scan(lambda a, r: a * 0.5 + r, x, initializer=gc.zeros([3]), reverse=True),
        "foldl": gc.foldl(lambda a, r: a * 0.5 + r, x),
        "foldr": gc.foldr(lambda a, r: a * 0.5 + r, x, initializer=gc.ones([3])),
    }
    got = _run(fetches, {x: xv}, backend, optimize)
    rev, a = np.zeros_like(xv), np.zeros(3, np.float32)
    for k in range(4, -1, -1):
        a = a * 0.5 + xv[k]
        rev[k] = a
    fl = xv[0]
    for row in xv[1:]:
        fl = fl * 0.5 + row
    fr = np.ones(3, np.float32)
    for row in xv[::-1]:
        fr = fr * 0.5 + row
    tol = dict(rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["map"], (xv * xv).sum(1), **tol)
    np.testing.assert_allclose(got["map_pair"][0], xv * 2.0, **tol)
    np.testing.assert_allclose(got["map_pair"][1], xv[:, :1], **tol)
    np.testing.assert_allclose(got["cumsum"], np.cumsum(xv, 0), **tol)
    np.testing.assert_allclose(got["rev"], rev, **tol)
    np.testing.assert_allclose(got["foldl"], fl, **tol)
    np.testing.assert_allclose(got["foldr"], fr, **tol)


def test_scan_with_a_nested_accumulator_and_map_fn_dtype():
    x = gc.constant(np.arange(1.0, 5.0, dtype=np.float32))
    out = gc.scan(lambda acc, v: {"sum": acc["sum"] + v, "n": acc["n"] + 1}, x,
                  initializer={"sum": gc.constant(0.0), "n": gc.constant(0)})
    got = _run(out)
    np.testing.assert_array_equal(got["sum"], [1.0, 3.0, 6.0, 10.0])
    np.testing.assert_array_equal(got["n"], [1, 2, 3, 4])
    digits = gc.foldr(lambda a, d: a * 10 + d, gc.constant([1, 2, 3]))
    assert _run(digits) == 321  # 3, then 3*10 + 2, then 32*10 + 1
    idx = gc.map_fn(lambda v: (gc.cast(v, gc.int32), v), x, dtype=(gc.int32, gc.float32))
    np.testing.assert_array_equal(_run(idx[0]), [1, 2, 3, 4])
    with pytest.raises(DTypeError, match=r"map_fn: fn returns float32 where dtype says int32"):
        gc.map_fn(lambda v: v * 2.0, x, dtype=gc.int32)


def test_tiny_rnn_by_scan_has_the_gradient_of_an_explicit_unroll(rng):
    """h_t = tanh(h_{t-1} W + x_t U): scan's gradient equals the hand-unrolled loop's, and
    both match central differences."""
    xs = gc.placeholder(gc.float64, [4, 2, 3])  # time, batch, features
    w = gc.placeholder(gc.float64, [2, 2])
    u = gc.placeholder(gc.float64, [3, 2])
    h0 = gc.zeros([2, 2], gc.float64)

    def cell(h, x):
        return gc.tanh(gc.matmul(h, w) + gc.matmul(x, u))
    hs = gc.scan(cell, xs, initializer=h0)
    h, unrolled = h0, []
    for x_t in gc.unstack(xs):
        h = cell(h, x_t)
        unrolled.append(h)
    weights = rng.uniform(-1, 1, (4, 2, 2))
    loss_scan = gc.reduce_sum(hs * weights)
    loss_loop = gc.reduce_sum(gc.stack(unrolled) * weights)
    g_scan = gc.gradients(loss_scan, [xs, w, u])
    g_loop = gc.gradients(loss_loop, [xs, w, u])
    feeds = {xs: rng.uniform(-1, 1, (4, 2, 3)), w: rng.uniform(-1, 1, (2, 2)),
             u: rng.uniform(-1, 1, (3, 2))}
    with gc.Session() as sess:
        a, b = sess.run([g_scan, g_loop], feeds)
        for ga, gb in zip(a, b):
            np.testing.assert_allclose(ga, gb, rtol=1e-12, atol=1e-13)
        check_against_central_differences(lambda f: float(sess.run(loss_scan, f)), feeds,
                                          [xs, w, u], a, rng, what="scan rnn")


def test_map_fn_scan_bad_inputs_give_clear_errors():
    x = gc.placeholder(gc.float32, [None, 3], name="batch")
    rows = gc.map_fn(lambda r: gc.reduce_sum(r), x)  # a leading dim known when fed: a loop
    for n in (0, 1, 4):
        np.testing.assert_allclose(_run(rows, {x: np.ones((n, 3), np.float32)}), 3 * np.ones(n))
    with pytest.raises(ShapeError, match=r"scan: the tensors of elems have different leading "
                       r"dims \[2, 3\]"):
        gc.scan(lambda a, p: a, (gc.zeros([2]), gc.zeros([3])), initializer=gc.constant(0.0))
    with pytest.raises(ShapeError, match=r"is a scalar: loops slice axis 0"):
        gc.foldl(lambda a, v: a + v, gc.constant(1.0))
    y = gc.zeros([3, 2])
    with pytest.raises(GraphError, match=r"scan: fn\(accumulator, element\) returns another "
                       r"structure than the accumulator"):
        gc.scan(lambda a, v: (a, a), y, initializer=gc.zeros([2]))
    with pytest.raises(ShapeError, match=r"foldl: fn\(accumulator, element\) returns "
                       r"f32\[2,2\] where the accumulator has f32\[2\]"):
        gc.foldl(lambda a, v: a + gc.reshape(v, [2, 1]), y)

@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_a_tensor_kept_from_a_dropped_first_build_of_the_body_is_refused(backend):
    """A body that needs build-time values (a slice bound of the counter) is built once as a
    loop, dropped and unrolled; a tensor the body function kept from that first build is no
    longer in the graph (later nodes reuse its id), and using it says so, with its line."""
    kept = []
    x = gc.placeholder(gc.float32, [6])

    def body(i, acc):
        kept.append(gc.tanh(acc) * 2.0)
        return i + 1, acc + gc.reduce_sum(x[i:i + 2])
    _, acc = gc.while_loop(lambda i, acc: i < 3, body, [gc.constant(0), gc.constant(0.0)])
    feeds = {x: np.arange(6, dtype=np.float32)}
    first = kept[0]
    assert first.id < len(first.graph.nodes) and first.graph.nodes[first.id] is not first
    assert _run(acc, feeds, backend) == 0 + 1 + 1 + 2 + 2 + 3  # x[0:2] + x[1:3] + x[2:4]
    for fetch in (first, first + acc):
        with pytest.raises(GraphError, match="not in the graph any more") as err:
            _run(fetch, feeds, backend)
        assert first.node_name in str(err.value) and "kept.append" in str(err.value)
    np.testing.assert_allclose(_run(kept[1] + acc, feeds, backend), 9.0)  # (unrolled: kept)
