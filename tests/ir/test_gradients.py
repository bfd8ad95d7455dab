"""First-order gradients of every differentiable op in the table, in float64: against central
differences (eps 1e-6, atol 1e-5, rtol 1e-3; random projections for big inputs), with the
gradient's shape and dtype, zero upstream giving zero, bit-identical reruns, the optimized
pipeline agreeing with the reference, and None leading dims giving the same gradients."""
import zlib

import numpy as np
import pytest

import graphc as gc
from graphc.ir.program import needed_nodes
from graphc.ir.verifier import verify

from tests.support import optable
from tests.support.checks import check_against_central_differences, run_both

GRAD_ROWS = optable.rows(lambda r: r.grad)
# the table's non-differentiable ops (sign, floor...) have zero gradients; TF1's default
# for an x reached only through them is None, so ask for zeros
ZEROS = "zero"


def projected_loss(out, shape, seed):
    """sum(out * R) for a fixed random R: every output element matters, with its own weight."""
    r = np.random.default_rng(seed).standard_normal(shape)
    return gc.reduce_sum(out * gc.constant(r, dtype=out.dtype))


def build(r, dynamic=False):
    """(placeholders, values, output, differentiated placeholders, projected scalar loss)."""
    phs, values, out = optable.instantiate(r, "float64", dynamic=dynamic)
    assert out.dtype == gc.float64, f"{r.name}: gradient rows produce float64 in float64"
    xs = [p for p, a in zip(phs, r.args) if a.diff]
    shape = optable.reference(r, values)[0].shape
    loss = projected_loss(out, shape, zlib.crc32(r.name.encode()) + 1)
    return phs, values, out, xs, loss


@pytest.mark.parametrize("r", GRAD_ROWS, ids=optable.ids(GRAD_ROWS))
def test_gradient_matches_central_differences(r, rng):
    phs, values, out, xs, loss = build(r)
    grads = gc.gradients(loss, xs, unconnected_gradients=ZEROS)
    for x, g in zip(xs, grads):
        assert g.dtype == x.dtype, f"gradient of '{x.name}' has dtype {g.dtype}"
        assert tuple(g.shape) == tuple(x.shape), f"gradient of '{x.name}' has shape {g.shape}"
    verify(gc.get_default_graph().nodes)  # every adjoint node's recorded type is its rule's
    feeds = dict(zip(phs, values))
    with gc.Session(optimize=False) as sess:
        got = sess.run(grads, feeds)
        for x, g in zip(xs, got):
            assert np.asarray(g).dtype == np.float64 and np.shape(g) == feeds[x].shape
        check_against_central_differences(lambda fd: sess.run(loss, fd), feeds, xs, got, rng,
                                          r.name)
    with gc.Session() as sess:  # the optimized pipeline computes the same gradients
        for a, b in zip(got, sess.run(grads, feeds)):
            np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("r", GRAD_ROWS, ids=optable.ids(GRAD_ROWS))
def test_zero_upstream_gives_zero_gradient(r):
    phs, values, out, xs, _ = build(r)
    zero = gc.zeros_like(out)
    grads = gc.gradients(out, xs, grad_ys=zero, unconnected_gradients=ZEROS)
    for got in run_both(grads, dict(zip(phs, values))):
        for g in got:
            assert np.all(np.asarray(g) == 0.0), f"{r.name}: nonzero gradient {g}"


@pytest.mark.parametrize("r", GRAD_ROWS, ids=optable.ids(GRAD_ROWS))
def test_gradient_runs_are_bit_identical(r):
    phs, values, out, xs, loss = build(r)
    grads = gc.gradients(loss, xs, unconnected_gradients=ZEROS)
    feeds = dict(zip(phs, values))
    with gc.Session() as sess:
        first = sess.run(grads, feeds)
        second = sess.run(grads, feeds)
    with gc.Session() as sess:
        third = sess.run(grads, feeds)
    for a, b, c in zip(first, second, third):
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes() == np.asarray(c).tobytes()


DYNAMIC_ROWS = [r for r in GRAD_ROWS if r.dynamic]


@pytest.mark.parametrize("r", DYNAMIC_ROWS, ids=optable.ids(DYNAMIC_ROWS))
def test_unknown_leading_dims_give_the_same_gradients(r):
    """Gradients built while the batch dims are None, specialized from the feeds, equal the
    gradients of the fully static graph (shapes included)."""
    phs, values, _, xs, loss = build(r)
    grads = gc.gradients(loss, xs, unconnected_gradients=ZEROS)
    static = run_both(grads, dict(zip(phs, values)))[0]
    gc.reset_default_graph()
    phs, values, _, xs, loss = build(r, dynamic=True)
    grads = gc.gradients(loss, xs, unconnected_gradients=ZEROS)
    for got in run_both(grads, dict(zip(phs, values))):
        for a, b in zip(static, got):
            assert np.shape(b) == np.shape(a)
            np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-13)


def test_gradients_of_a_list_of_ys_are_summed():
    x = gc.placeholder(gc.float64, [3])
    y1, y2 = gc.reduce_sum(x * x), gc.reduce_sum(3.0 * x)
    xv = np.array([1.0, -2.0, 0.5])
    g, = run_both(gc.gradients([y1, y2], [x]), {x: xv})[0]
    np.testing.assert_allclose(g, 2 * xv + 3.0)


def test_grad_ys_seeds_the_cotangent():
    x = gc.placeholder(gc.float64, [2, 2])
    y = gc.exp(x)
    seed = np.array([[1.0, 2.0], [0.0, -1.0]])
    xv = np.array([[0.0, 1.0], [2.0, 0.5]])
    for got in run_both(gc.gradients(y, [x], grad_ys=[gc.constant(seed)]), {x: xv}):
        np.testing.assert_allclose(got[0], seed * np.exp(xv))
    g = gc.gradients(y, x, grad_ys=seed)[0]  # a NumPy cotangent takes y's dtype
    np.testing.assert_allclose(run_both(g, {x: xv})[0], seed * np.exp(xv))
    p32 = gc.placeholder(gc.float32, [2])
    g32 = gc.gradients(gc.exp(p32), p32, grad_ys=np.array([2.0, 1.0]))[0]
    assert g32.dtype == gc.float32
    np.testing.assert_allclose(run_both(g32, {p32: np.zeros(2, np.float32)})[0], [2.0, 1.0])


def test_gradient_with_respect_to_an_intermediate_and_a_stop():
    x = gc.placeholder(gc.float64, [3])
    h = gc.tanh(x)
    y = gc.reduce_sum(h * gc.stop_gradient(h) + x)
    gh, gx = gc.gradients(y, [h, x])
    xv = np.array([0.1, -0.4, 1.2])
    vh, vx = run_both([gh, gx], {x: xv})[0]
    np.testing.assert_allclose(vh, np.tanh(xv))
    np.testing.assert_allclose(vx, np.tanh(xv) * (1 - np.tanh(xv) ** 2) + 1.0)
    gs, = gc.gradients(y, [x], stop_gradients=[h])
    np.testing.assert_allclose(run_both(gs, {x: xv})[0], np.ones(3))


def test_fan_out_accumulates_across_ops_and_broadcasts():
    x = gc.placeholder(gc.float64, [2, 3])
    b = gc.placeholder(gc.float64, [3])
    y = gc.reduce_sum(gc.exp(x + b) * b + gc.reduce_sum(x * b, axis=0))
    gx, gb = gc.gradients(y, [x, b])
    xv = np.arange(6.0).reshape(2, 3) / 10
    bv = np.array([0.3, -0.1, 0.2])
    ex = np.exp(xv + bv)
    want_x = ex * bv + 2 * bv
    want_b = (ex * bv + ex).sum(0) + 2 * xv.sum(0)
    for vx, vb in run_both([gx, gb], {x: xv, b: bv}):
        np.testing.assert_allclose(vx, want_x, rtol=1e-12)
        np.testing.assert_allclose(vb, want_b, rtol=1e-12)


@pytest.mark.parametrize("labels", ["sparse", "dense"])
def test_cross_entropy_gradient_is_the_fused_kernel(labels):
    """d xent / d logits is one softmax-minus-labels kernel, not a chain of generic ops."""
    z = gc.placeholder(gc.float32, [None, 5])
    if labels == "sparse":
        xent = gc.nn.sparse_softmax_cross_entropy_with_logits(
            labels=gc.placeholder(gc.int64, [None]), logits=z)
    else:
        xent = gc.nn.softmax_cross_entropy_with_logits(
            labels=gc.placeholder(gc.float32, [None, 5]), logits=z)
    g, = gc.gradients(gc.reduce_mean(xent), [z])
    grad_ops = [n.op_name for n in needed_nodes([g]) if n.is_grad]
    kernel = "sparse_softmax_xent_grad" if labels == "sparse" else "softmax_xent_grad"
    assert grad_ops.count(kernel) == 1
    assert not {"softmax", "log_softmax", "exp", "log"} & set(grad_ops), grad_ops


def test_nodes_between_xs_and_ys_are_those_on_some_path():
    """The one-search `_between` (plain dicts) against a networkx search per x and per y on
    random DAGs with several xs and ys, some of them unreachable from each other."""
    import networkx as nx

    from graphc.ir.autodiff import _between

    def _dependency_graph(nodes):
        g = nx.DiGraph()
        g.add_nodes_from(nodes)
        g.add_edges_from((i, n) for n in nodes for i in n.inputs)
        return g

    connected = 0
    for seed in range(12):
        rng = np.random.default_rng(seed)
        with gc.Graph().as_default() as graph:
            pool = [gc.placeholder(gc.float64, [2], name=f"p{i}") for i in range(4)]
            for _ in range(40):
                a, b = (pool[i] for i in rng.integers(0, len(pool), 2))
                pool.append(a * b if rng.random() < 0.5 else gc.tanh(a) + b)
            xs = [pool[i] for i in rng.choice(len(pool) - 5, 4, replace=False)]
            ys = [pool[i] for i in rng.choice(range(10, len(pool)), 3, replace=False)]
            dag = _dependency_graph(graph.nodes)
            above = set(ys).union(*(nx.ancestors(dag, y) for y in ys))
            below = set(xs).union(*(nx.descendants(dag, x) for x in xs))
            want = sorted(above & below, key=lambda n: n.id)
            assert _between(ys, xs) == want, f"seed {seed}"
            connected += bool(want)
    assert connected >= 6, "most draws should connect some x to some y"
