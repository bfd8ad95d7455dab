"""TF1 habits that must work after ``import graphc as tf``: graphs and scopes, leaves and their
dtypes, feeds and fetches, the default session, random ops, TF1 aliases, state updates, and the
text IR."""
import collections
import re

import numpy as np
import pytest

import graphc as gc
from graphc.errors import GraphError

from tests.support.checks import run, run_both


# -- graphs, scopes, names -------------------------------------------------------------------

def test_graph_as_default_and_session_graph():
    g = gc.Graph()
    with g.as_default():
        assert gc.get_default_graph() is g
        c = gc.constant([1.0, 2.0]) * 3.0
        with pytest.raises(GraphError):
            gc.reset_default_graph()
    assert gc.get_default_graph() is not g and c.graph is g
    with gc.Session(graph=g) as sess:
        np.testing.assert_array_equal(sess.run(c), [3.0, 6.0])


def test_name_scopes_prefix_names_and_gradients_get_grad_prefix():
    x = gc.placeholder(gc.float32, [None, 3], name="x")
    with gc.name_scope("dense1"):
        w = gc.Variable(np.ones((3, 2), np.float32), name="W")
        h = gc.matmul(x, w)
        with gc.name_scope("act"):
            r = gc.nn.relu(h)
    h2 = gc.matmul(x, w)
    assert (w.op.name, h.op.name, r.op.name, h2.op.name) == ("dense1/W", "dense1/MatMul",
                                                  "dense1/act/Relu", "MatMul")
    assert gc.get_default_graph().get_tensor_by_name("dense1/act/Relu:0") is r
    g, = gc.gradients(gc.reduce_sum(r), [w])
    assert g.op.name.startswith("grad/dense1/")


def test_tensor_attributes():
    x = gc.placeholder(np.float64, [None, 3], name="inputs")
    assert x.shape == (None, 3) and x.dtype == gc.float64 and x.op.name == "inputs"
    assert x.get_shape().as_list() == [None, 3] and x.get_shape().ndims == 2
    assert x.name == "inputs:0" and x.op.outputs == [x] and x.op.type == "Placeholder"
    y = gc.reduce_sum(x, axis=1)
    assert y.get_shape().as_list() == [None]


@pytest.mark.parametrize("name,want", [("float", gc.float32), ("float32", gc.float32),
                                       ("double", gc.float64), ("float64", gc.float64),
                                       ("int32", gc.int32), ("int64", gc.int64),
                                       ("bool", gc.bool), ("uint8", gc.uint8),
                                       ("int8", gc.int8), ("int16", gc.int16)])
def test_dtype_names_as_strings(name, want):
    assert gc.placeholder(name, [2]).dtype == want
    assert gc.as_dtype(want.np) == want


def test_small_integer_data_casts_to_float():
    img = gc.placeholder(gc.uint8, [None, 2])
    x = gc.cast(img, gc.float32) / 255.0
    got = run(x, {img: np.array([[0, 255]], np.uint8)})
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, [[0.0, 1.0]])


def test_python_scalars_take_the_tensor_dtype():
    x = gc.placeholder(gc.float32, [2])
    k = gc.placeholder(gc.int32, [2])
    assert (x * 2.0).dtype == gc.float32 and (2 - x).dtype == gc.float32
    assert (k * 2).dtype == gc.int32 and (k + 1.0).dtype == gc.int32
    vx, vk = run([x * 2.0 + 1, k * 3 - 1], {x: [1.0, 2.0], k: [1, 2]})
    assert vx.dtype == np.float32 and vk.dtype == np.int32
    np.testing.assert_array_equal(vx, [3.0, 5.0])
    np.testing.assert_array_equal(vk, [2, 5])


def test_numpy_arrays_convert_to_the_tensor_dtype():
    """As TF1's convert_to_tensor(y, dtype=x.dtype): float64 and int arrays with a float32
    tensor become float32; a float array with an int tensor is refused."""
    x = gc.placeholder(gc.float32, [2])
    y = x * np.array([1.5, 2.0]) + np.array([1, 2])
    assert y.dtype == gc.float32
    np.testing.assert_array_equal(run(y, {x: [2.0, 1.0]}), [4.0, 4.0])
    assert gc.constant(np.ones(2)).dtype == gc.float64  # a lone array keeps its dtype
    with pytest.raises(gc.errors.DTypeError, match="int32 vs float64"):
        gc.placeholder(gc.int32, [2]) * np.array([1.5, 2.0])


# -- creation ops, comparisons, TF1 aliases ----------------------------------------------------

def test_zeros_ones_range_shape_unstack_argmin():
    x = gc.placeholder(gc.float32, [None, 3])
    parts = gc.unstack(gc.constant([[1.0, 5.0], [4.0, 2.0], [0.5, 3.0]]), axis=1)
    fetches = [gc.zeros([2, 2]), gc.ones([3], gc.int32), gc.range(2, 8, 2), gc.shape(x),
               parts, gc.argmin(x, axis=1), gc.argmin(x, 0, output_type=gc.int32)]
    xv = np.array([[3.0, 1.0, 2.0], [0.0, 5.0, -1.0]], np.float32)
    for z, o, rg, sh, (p0, p1), am1, am0 in run_both(fetches, {x: xv}):
        assert z.dtype == np.float32 and o.dtype == np.int32 and rg.dtype == np.int32
        np.testing.assert_array_equal(z, np.zeros((2, 2)))
        np.testing.assert_array_equal(rg, [2, 4, 6])
        np.testing.assert_array_equal(sh, [2, 3])
        assert sh.dtype == np.int32
        np.testing.assert_array_equal(p0, [1.0, 4.0, 0.5])
        np.testing.assert_array_equal(p1, [5.0, 2.0, 3.0])
        np.testing.assert_array_equal(am1, [1, 2])
        assert am1.dtype == np.int64 and am0.dtype == np.int32
        np.testing.assert_array_equal(am0, [1, 0, 1])


def test_comparison_functions_and_logic():
    x = gc.placeholder(gc.float32, [4])
    y = gc.constant([1.0, 2.0, 3.0, 4.0])
    fns = [gc.equal, gc.not_equal, gc.less, gc.less_equal, gc.greater, gc.greater_equal]
    refs = [np.equal, np.not_equal, np.less, np.less_equal, np.greater, np.greater_equal]
    xv = np.array([1.0, 3.0, 3.0, 0.0], np.float32)
    both = gc.logical_and(gc.less(x, y), gc.logical_not(gc.equal(x, 0.0)))
    either = gc.logical_or(gc.greater(x, y), gc.equal(x, y))
    got = run([f(x, y) for f in fns] + [both, either], {x: xv})
    for g, ref in zip(got, refs):
        assert g.dtype == np.bool_
        np.testing.assert_array_equal(g, ref(xv, [1, 2, 3, 4]))
    np.testing.assert_array_equal(got[-2], [False, False, False, False])
    np.testing.assert_array_equal(got[-1], [True, True, True, False])


def test_reduction_aliases():
    x = gc.constant(np.arange(6.0).reshape(2, 3))
    a = gc.reduce_sum(x, reduction_indices=[1], keep_dims=True)
    b = gc.reduce_mean(x, reduction_indices=0)
    c = gc.reduce_max(x, axis=1, keepdims=False)
    va, vb, vc = run([a, b, c])
    np.testing.assert_array_equal(va, [[3.0], [12.0]])
    np.testing.assert_array_equal(vb, [1.5, 2.5, 3.5])
    np.testing.assert_array_equal(vc, [2.0, 5.0])
    assert gc.argmax(x, dimension=1).shape == (2,)


def test_empty_fetches_and_integer_means():
    with gc.Session() as sess:
        assert sess.run([]) == [] and sess.run({}) == {} and sess.run(()) == ()
    k = gc.constant([[1, 2], [-3, -6]])
    mean = gc.reduce_mean(k, axis=1)
    assert mean.dtype == gc.int32
    for got in run_both(mean):
        assert got.dtype == np.int32
        np.testing.assert_array_equal(got, [1, -4])  # truncated toward zero, as TF


def test_nn_aliases_and_bias_add():
    x = gc.placeholder(gc.float32, [2, 3])
    b = gc.constant([1.0, -1.0, 0.5])
    xv = np.array([[-1.0, 0.0, 2.0], [0.5, -0.5, 1.0]], np.float32)
    got = run([gc.nn.relu(x), gc.nn.sigmoid(x), gc.nn.tanh(x), gc.nn.bias_add(x, b)], {x: xv})
    np.testing.assert_allclose(got[0], np.maximum(xv, 0))
    np.testing.assert_allclose(got[1], 1 / (1 + np.exp(-xv)), rtol=1e-6)
    np.testing.assert_allclose(got[2], np.tanh(xv), rtol=1e-6)
    np.testing.assert_allclose(got[3], xv + [1.0, -1.0, 0.5])


def test_slicing():
    x = gc.placeholder(gc.float32, [None, 4])
    xv = np.arange(12, dtype=np.float32).reshape(3, 4)
    a, b, c, d = run([x[:, 1:3], x[1], x[-1, ::-2], x[:, gc.newaxis, 2]], {x: xv})
    np.testing.assert_array_equal(a, xv[:, 1:3])
    np.testing.assert_array_equal(b, xv[1])
    np.testing.assert_array_equal(c, xv[-1, ::-2])
    np.testing.assert_array_equal(d, xv[:, None, 2])
    assert x[gc.newaxis].shape == (1, None, 4)


# -- feeds and fetches -------------------------------------------------------------------------

def test_nested_fetches_keep_their_structure():
    x = gc.placeholder(gc.float32, [2], name="x")
    y = x * 2.0
    pair = collections.namedtuple("pair", "value op")
    fetches = {"list": [x, (y, [y])], "tuple": (y,), "named": pair(y, gc.no_op()),
               "op": gc.group(y)}
    got = run(fetches, {x: [1.0, 2.0]})
    assert set(got) == {"list", "tuple", "named", "op"}
    assert isinstance(got["list"], list) and isinstance(got["list"][1], tuple)
    assert isinstance(got["list"][1][1], list) and isinstance(got["tuple"], tuple)
    assert isinstance(got["named"], pair) and got["named"].op is None and got["op"] is None
    np.testing.assert_array_equal(got["list"][1][1][0], [2.0, 4.0])
    np.testing.assert_array_equal(got["named"].value, [2.0, 4.0])


def test_feeding_and_fetching_by_name():
    x = gc.placeholder(gc.float32, [None], name="x")
    y = gc.identity(x * 3.0, name="y")
    with gc.Session() as sess:
        np.testing.assert_array_equal(sess.run("y:0", {"x:0": [1.0]}), [3.0])
        np.testing.assert_array_equal(sess.run("y", {"x": [2.0]}), [6.0])
        np.testing.assert_array_equal(sess.run(y, {x: [0.5]}), [1.5])


def test_feeds_convert_as_tf1():
    x = gc.placeholder(gc.float32, [None, 2])
    k = gc.placeholder(gc.int64, [2])
    s = gc.placeholder(gc.float32, [])
    vx, vk, vs = run([x, k, s], {x: np.array([[1.5, 2.0]]), k: [3, 4], s: 2})
    assert vx.dtype == np.float32 and vk.dtype == np.int64 and vs.dtype == np.float32
    assert np.shape(vs) == () and vs == 2.0
    vx, = run([x], {x: [[1, 2], [3, 4]]})  # Python lists of ints to a float placeholder
    assert vx.dtype == np.float32 and vx.shape == (2, 2)


def test_eval_and_run_use_the_default_session():
    v = gc.Variable(np.float32(1.0), name="v")
    inc = gc.assign_add(v, 1.0)
    with gc.Session() as sess:
        assert gc.get_default_session() is sess
        gc.global_variables_initializer().run()
        inc.op.run()
        assert v.eval() == 2.0
        assert inc.eval() == 3.0 and sess.run(v) == 3.0
        x = gc.placeholder(gc.float32, [])
        assert (x * v).eval(feed_dict={x: 2.0}) == 6.0
    assert gc.get_default_session() is None
    with pytest.raises(GraphError, match="no session"):
        v.eval()


def test_one_compiled_step_per_signature():
    x = gc.placeholder(gc.float32, [None, 2])
    y = gc.reduce_sum(x * 2.0)
    with gc.Session() as sess:
        sess.run(y, {x: np.ones((3, 2))})
        sess.run(y, {x: np.ones((3, 2), np.float64)})  # converted first: same signature
        first = sess.source(y, {x: np.ones((3, 2))})
        assert len(sess._cache) == 1
        sess.run(y, {x: np.ones((5, 2))})
        assert len(sess._cache) == 2
        assert sess.source(y, {x: np.ones((3, 2))}) == first
    assert "def " in first and "import numpy as np" in first


# -- random ops ------------------------------------------------------------------------------

def test_random_ops_are_fresh_each_run_and_within_their_ranges():
    n = gc.random_normal([2000], mean=1.0, stddev=2.0)
    u = gc.random_uniform([2000], minval=-1.0, maxval=3.0)
    t = gc.truncated_normal([2000], stddev=0.5)
    with gc.Session() as sess:
        a, b = sess.run([n, u]), sess.run([n, u])
        tv = sess.run(t)
    assert not np.array_equal(a[0], b[0]) and not np.array_equal(a[1], b[1])
    assert abs(a[0].mean() - 1.0) < 0.2 and abs(a[0].std() - 2.0) < 0.2
    assert a[1].min() >= -1.0 and a[1].max() < 3.0 and abs(a[1].mean() - 1.0) < 0.15
    assert np.abs(tv).max() <= 1.0 and tv.dtype == np.float32


def test_random_ops_are_seedable():
    def draw():
        gc.reset_default_graph()
        r = gc.random_normal([5], seed=42)
        with gc.Session() as sess:
            return sess.run(r), sess.run(r)
    (a1, a2), (b1, b2) = draw(), draw()
    np.testing.assert_array_equal(a1, b1)
    np.testing.assert_array_equal(a2, b2)
    assert not np.array_equal(a1, a2)

    def graph_seeded():
        gc.reset_default_graph()
        gc.set_random_seed(7)
        r1, r2 = gc.random_uniform([4]), gc.random_uniform([4])
        return run([r1, r2])
    (c1, c2), (d1, d2) = graph_seeded(), graph_seeded()
    np.testing.assert_array_equal(c1, d1)
    assert not np.array_equal(c1, c2)  # two ops of one graph seed draw differently


def test_identical_random_ops_are_not_merged_but_one_op_is_one_draw():
    a, b = gc.random_normal([50]), gc.random_normal([50])
    for va, vb, vsum in run_both([a, b, a + a]):
        assert not np.array_equal(va, vb)
        np.testing.assert_allclose(vsum, 2 * va)


def test_variable_initialized_from_a_random_tensor():
    w = gc.Variable(gc.random_normal([784, 16], stddev=0.1, seed=1), name="W")
    b = gc.Variable(gc.zeros([16]))
    assert w.shape == (784, 16) and w.dtype == gc.float32
    with gc.Session() as sess:
        sess.run(gc.global_variables_initializer())
        w1 = sess.run(w)
        assert abs(w1.std() - 0.1) < 0.01
        np.testing.assert_array_equal(sess.run(w), w1)  # reading does not redraw
        np.testing.assert_array_equal(sess.run(b), np.zeros(16))


# -- state -----------------------------------------------------------------------------------

def test_variables_assign_and_collections():
    v = gc.Variable([1.0, 2.0], name="v")
    frozen = gc.Variable(lambda: np.zeros(2, np.float32), trainable=False, name="frozen")
    assert gc.trainable_variables() == [v] and gc.global_variables() == [v, frozen]
    new = gc.assign(v, v * 10.0)
    read = v + 0.0
    with gc.Session() as sess:
        sess.run(gc.variables_initializer([v, frozen]))
        # reads in the same step see the value at step start; the assign's value is the new one
        before, after = sess.run([read, new])
        np.testing.assert_array_equal(before, [1.0, 2.0])
        np.testing.assert_array_equal(after, [10.0, 20.0])
        np.testing.assert_array_equal(sess.run(v), [10.0, 20.0])
        sess.run(gc.group(gc.assign_sub(v, [1.0, 1.0]), gc.assign_add(frozen, [1.0, 2.0])))
        np.testing.assert_array_equal(sess.run(v), [9.0, 19.0])
        np.testing.assert_array_equal(sess.run(frozen), [1.0, 2.0])


@pytest.mark.parametrize("optimize", [False, True])
def test_fetched_values_belong_to_the_caller(optimize):
    """A fetched variable (or a view of it, or a fed array) is a copy: writing into it, or
    later steps updating the variable, change nothing on the other side."""
    v = gc.Variable(np.array([1.0, 2.0], np.float32))
    x = gc.placeholder(gc.float32, [2])
    train = gc.train.GradientDescentOptimizer(0.5).minimize(gc.reduce_sum(v * v))
    xv = np.array([5.0, 6.0], np.float32)
    with gc.Session(optimize=optimize) as sess:
        sess.run(gc.global_variables_initializer())
        value, view, fed = sess.run([v, gc.reshape(v, [2, 1]), gc.identity(x)], {x: xv})
        value[0], view[1, 0], fed[0] = 100.0, 100.0, 100.0
        np.testing.assert_array_equal(sess.run(v), [1.0, 2.0])
        assert xv[0] == 5.0
        sess.run(train)
        np.testing.assert_array_equal(value, [100.0, 2.0])
        np.testing.assert_array_equal(sess.run(v), [0.0, 0.0])


def test_gradient_descent_minimize_updates_in_one_step():
    w = gc.Variable(np.array([1.0, -2.0]), name="w")
    x = gc.placeholder(gc.float64, [2])
    loss = gc.reduce_sum((w - x) ** 2.0)
    train = gc.train.GradientDescentOptimizer(0.25).minimize(loss)
    with gc.Session() as sess:
        sess.run(gc.global_variables_initializer())
        l0, _ = sess.run([loss, train], {x: [0.0, 0.0]})
        assert l0 == 5.0
        np.testing.assert_array_equal(sess.run(w), [0.5, -1.0])  # w - 0.25 * 2 w


# -- the text IR -----------------------------------------------------------------------------

def test_dump_ir_format():
    x = gc.placeholder(gc.float32, [None, 3], name="x")
    w = gc.Variable(np.ones((3, 2), np.float32), name="W")
    with gc.name_scope("dense"):
        h = gc.nn.relu(gc.matmul(x, w))
    g, = gc.gradients(gc.reduce_sum(h), [w])
    text = gc.dump_ir(g)
    lines = text.splitlines()
    assert lines[0] == "graph graph(%x: f32[?,3]; vars %W: f32[3,2]) {"
    assert lines[-1] == "}" and lines[-2].startswith("  return %")
    marker = lines.index("  ;; gradients")
    rows = [ln for ln in lines[1:-2] if ln.strip() != ";; gradients"]
    numbers = [int(re.match(r"  %(\d+) = ", ln).group(1)) for ln in rows]
    assert numbers == list(range(len(rows)))  # renumbered in print order
    assert re.fullmatch(r"  %0 = matmul\{.*\} %x, %W +: f32\[\?,2\] +# test_api_tf1\.py:\d+",
                        rows[0])
    assert re.search(r"relu %0 +: f32\[\?,2\] +# test_api_tf1\.py:\d+", rows[1])
    assert all("# grad/ test_api_tf1.py:" in r for r in lines[marker + 1:-2])
    assert not any("grad/" in r for r in lines[1:marker])
    assert len({ln.index(" : ") for ln in rows}) == 1  # types aligned in one column
    assert gc.dump_ir(g) == text  # stable


def test_str_graph_prints_every_node():
    x = gc.placeholder(gc.float32, [2], name="x")
    y = gc.exp(x) + 1.0
    text = str(gc.get_default_graph())
    assert text.startswith("graph graph(%x: f32[2]) {") and text.endswith("}")
    assert re.search(r"%0 = exp %x +: f32\[2\]", text)
    assert re.search(r"%1 = const 1\.0 +: f32\[\]", text)
    assert re.search(r"%2 = add %0, %1 +: f32\[2\]", text)
    assert y.op.name == "add"
