"""``gc.compile``: the CompiledStep API (feeds by name or dict, owned variables, per-signature
cache for None dims, stats, IR stages, source), training over several steps against the
unoptimized reference, ``check_numerics`` and the NumPy backend's arena discipline."""
import re

import numpy as np
import pytest

import graphc as gc
from graphc.errors import CompileError, FeedError, NumericsError

from tests.support.pass_testing import mlp


def _pair(fetches, **kw):
    return gc.compile(fetches, **kw), gc.compile(fetches, optimize=False, **kw)


def test_training_agrees_with_the_reference_over_several_steps():
    x, y, loss, train, feeds = mlp(sizes=(7, 6, 5, 3), batch=4, lr=0.2, act="relu")
    step, ref = _pair([loss, train])
    rng = np.random.default_rng(3)
    for k in range(5):
        xb, yb = rng.standard_normal((4, 7)), rng.integers(0, 3, 4)
        a, _ = step(x=xb, y=yb)
        b, _ = ref({x: xb, y: yb})
        np.testing.assert_allclose(a, b, rtol=1e-12, err_msg=f"loss of step {k + 1}")
    for name, value in ref.variables.items():
        np.testing.assert_allclose(step.variables[name], value, rtol=1e-12, atol=1e-14,
                                   err_msg=name)


def test_variables_are_live_arrays_updated_in_place():
    x, y, loss, train, feeds = mlp()
    step = gc.compile([loss, train])
    w = step.variables["W0"]
    before = w.copy()
    step(feeds)
    assert step.variables["W0"] is w and not np.array_equal(w, before)
    assert step.stats["updates_in_place"] == 4


def test_initial_values_from_constants_random_ops_and_expressions():
    """Constant initializers are copied without a compile, the others computed: the
    values are the Session's, and the step's arrays never alias the graph's constants."""
    start = np.arange(6, dtype=np.float32).reshape(2, 3)
    a = gc.Variable(start, name="a")
    b = gc.Variable(gc.random_uniform([3], seed=4), name="b")
    c = gc.Variable(a.initial_value * 2.0, name="c")
    d = gc.Variable(np.zeros(3, np.float64), name="d")
    out = gc.reduce_sum(a) + gc.reduce_sum(b) + gc.reduce_sum(c) + gc.cast(gc.reduce_sum(d),
                                                                           gc.float32)
    step = gc.compile(out)
    with gc.Session() as sess:
        sess.run(gc.global_variables_initializer())
        expected = dict(zip("abcd", sess.run([a, b, c, d])))
    for name, value in expected.items():
        got = step.variables[name]
        assert got.dtype == value.dtype and got.tobytes() == value.tobytes(), name
        assert got.flags.writeable
    step.variables["a"][0, 0] = 42.0
    assert start[0, 0] == 0.0 and a.initial_value.attrs["value"][0, 0] == 0.0



def test_initial_values_are_arrays_of_their_own_on_lines_of_their_own():
    """Constant initial values are copied into one buffer (``runtime.aligned.aligned_copies``)
    yet each variable is its own writable array on a cache line, sharing no byte and no line
    with another (two Variables of one array too) nor with its source, and the updates of a
    few steps land where the Session's do."""
    rng = np.random.default_rng(5)
    start = rng.standard_normal((3, 4)).astype(np.float32)
    x = gc.placeholder(gc.float32, [2, 3], name="x")
    a = gc.Variable(start, name="a")
    b = gc.Variable(start, name="b")  # (the same array)
    c = gc.Variable(np.float32(0.5), name="c")
    big = gc.Variable(np.full(20000, 0.01, np.float32), name="big")  # (a buffer of its own)
    h = gc.tanh(gc.matmul(x, a)) * c + gc.matmul(x * x, b)
    loss = gc.reduce_sum(h * h) + gc.reduce_sum(big * big)
    train = gc.train.GradientDescentOptimizer(0.1).minimize(loss)
    step = gc.compile([loss, train], feeds=[x])
    values = step.variables
    start[0, 0] = 1e3  # (after the copy: never seen)
    for name, v in values.items():
        assert v.flags.writeable and v.__array_interface__["data"][0] % 64 == 0, name
    spans = sorted((v.__array_interface__["data"][0], v.nbytes) for v in values.values())
    assert all(p + n <= q for (p, n), (q, _) in zip(spans, spans[1:]))
    assert values["a"][0, 0] != 1e3 and np.array_equal(values["a"], values["b"])
    values["a"][...] += 1.0  # (one variable written: no other changes)
    assert not np.array_equal(values["a"], values["b"])
    values["a"][...] -= 1.0
    feeds = [rng.standard_normal((2, 3)).astype(np.float32) for _ in range(3)]
    with gc.Session() as sess:
        sess.run(gc.global_variables_initializer())
        for xb in feeds:
            expected = sess.run([loss, train], {x: xb})[0]
            assert step(x=xb)[0] == pytest.approx(expected, rel=1e-5)
        for v in (a, b, c, big):
            np.testing.assert_allclose(values[v.node_name], sess.run(v), rtol=1e-5,
                                       atol=1e-7)

def test_none_dims_specialize_per_signature_and_cache():
    x = gc.placeholder(gc.float64, [None, 3], name="x")
    y = gc.reduce_sum(gc.tanh(x) * 2.0, axis=1)
    step = gc.compile(y)
    for batch in (2, 5, 2):
        xb = np.arange(batch * 3.0).reshape(batch, 3) / 10
        np.testing.assert_allclose(step(x=xb), (np.tanh(xb) * 2.0).sum(1), rtol=1e-14)
    assert step.signatures() == [((2, 3),), ((5, 3),)]


def test_fetch_structure_feed_conversion_and_fresh_fetch_copies():
    x = gc.placeholder(gc.float32, [2], name="x")
    v = gc.Variable(np.array([1.0, 2.0], np.float32), name="v")
    out = {"double": x * 2.0, "pair": (v, gc.reduce_sum(x))}
    step = gc.compile(out)
    got = step({"x": [1, 2]})  # a list of ints: converted as Session.run would
    assert set(got) == {"double", "pair"} and got["double"].dtype == np.float32
    got["pair"][0][0] = 99.0
    assert step.variables["v"][0] == 1.0  # a fetched variable is a copy, not the storage
    again = step(x=np.ones(2, np.float32))
    assert again["double"] is not got["double"]


def test_bad_feeds_are_clear_errors():
    x = gc.placeholder(gc.float32, [None, 3], name="x")
    z = gc.placeholder(gc.float32, [3], name="z")
    step = gc.compile(x * 2.0 + z)
    with pytest.raises(FeedError, match="must be fed: z"):
        step(x=np.ones((1, 3), np.float32))
    with pytest.raises(FeedError, match="not a feed of this step"):
        step(x=np.ones((1, 3)), z=np.ones(3), w=1)
    with pytest.raises(FeedError, match=r"expects f32\[\?,3\], fed \[2,2\]"):
        step(x=np.ones((2, 2), np.float32), z=np.ones(3, np.float32))
    with pytest.raises(FeedError, match="not in feeds: z"):
        gc.compile(x * 2.0 + z, feeds=[x])


def test_stats_ir_stages_and_source():
    x, y, loss, train, feeds = mlp(sizes=(6, 5, 4))
    step = gc.compile([loss, train], feeds=[x, y])
    step(feeds)
    s = step.stats
    for key in ("nodes_before", "nodes_after", "fused_groups", "inplace_ops", "peak_bytes",
                "naive_bytes", "passes"):
        assert key in s
    assert s["nodes_after"] < s["nodes_before"] and s["fused_groups"] >= 2
    assert 0 < s["peak_bytes"] < s["naive_bytes"]
    assert [p["name"] for p in s["passes"]][:3] == ["unroll", "prune", "fold"]
    assert all(p["ms"] >= 0 and "changes" in p for p in s["passes"])
    assert "fused{" in step.ir("fuse") and "fused{" not in step.ir("input")
    assert step.ir() == step.ir("plan") and "arena" in step.ir()
    assert "def make_step" in step.source and "out=" in step.source
    with pytest.raises(CompileError, match="no IR stage 'fusion'"):
        step.ir("fusion")
    ref = gc.compile([loss, train], optimize=False)
    ref(feeds)
    assert ref.stats["passes"] == [] and ref.stats["fused_groups"] == 0
    assert "out=" not in ref.source


def test_chosen_passes_run_in_order():
    x, y, loss, train, feeds = mlp()
    step = gc.compile([loss, train], passes=["prune", "fold", "cse", "dce"])
    step(feeds)
    assert [p["name"] for p in step.stats["passes"]] == ["prune", "fold", "cse", "dce"]
    assert step.stats["fused_groups"] == 0


def test_optimized_step_allocates_nothing_per_step_but_small_fetch_copies():
    x, y, loss, train, feeds = mlp(sizes=(16, 32, 8), batch=8)
    step = gc.compile([loss, train])
    step(feeds)
    source = step.source
    body = source.split("    def step(")[1]
    # every value goes to a planned buffer: no assignment of a fresh array inside the step
    assert not re.search(r"^\s+t\d+ = ", body, re.M)
    assert "np.empty" not in body and "np.zeros" not in body


# -- check_numerics --------------------------------------------------------------------------
def test_check_numerics_names_the_first_forward_node():
    x = gc.placeholder(gc.float32, [4], name="x")
    w = gc.Variable(np.ones(4, np.float32), name="w")
    h = gc.log(x * w)  # the first NaN
    loss = gc.reduce_sum(gc.sqrt(h) * h)
    train = gc.train.GradientDescentOptimizer(0.1).minimize(loss)
    step = gc.compile([loss, train], check_numerics=True)
    with pytest.raises(NumericsError) as info:
        step(x=np.array([1, 2, -3, 4], np.float32))
    msg = str(info.value)
    assert msg.startswith("check_numerics: log 'Log' produced NaN")
    assert "1 NaN and 0 Inf" in msg and "index (2,)" in msg
    assert re.search(r"at test_compile\.py:\d+\s+h = gc\.log\(x \* w\)", msg)


def test_check_numerics_names_the_forward_line_of_a_gradient_node():
    x = gc.placeholder(gc.float64, [3], name="x")
    y = gc.sqrt(x)  # finite at 0, its gradient is not
    g, = gc.gradients(gc.reduce_sum(y), [x])
    for optimize in (True, False):
        step = gc.compile([y, g], check_numerics=True, optimize=optimize)
        with pytest.raises(NumericsError) as info:
            step(x=np.array([1.0, 0.0, 4.0]))
        msg = str(info.value)
        assert "'grad/" in msg and "a gradient node" in msg
        assert re.search(r"at test_compile\.py:\d+\s+y = gc\.sqrt\(x\)", msg)


def test_session_check_numerics_and_the_explicit_op():
    x = gc.placeholder(gc.float32, [3], name="x")
    checked = gc.check_numerics(gc.exp(x), "exp overflowed")
    with gc.Session(check_numerics=True) as sess:
        with pytest.raises(NumericsError, match="exp 'Exp' produced NaN or Inf"):
            sess.run(checked * 2.0, {x: np.array([1, 100, 2], np.float32)})
    for optimize in (True, False):
        with gc.Session(optimize=optimize) as sess:
            np.testing.assert_allclose(sess.run(checked, {x: np.zeros(3, np.float32)}), 1.0)
            with pytest.raises(NumericsError, match="(?s)check_numerics 'CheckNumerics' "
                                                    "found NaN or Inf.*exp overflowed"):
                sess.run(checked * 2.0, {x: np.array([1, 100, 2], np.float32)})


def test_check_numerics_gradient_passes_through_and_checks_the_gradient():
    x = gc.placeholder(gc.float64, [3], name="x")
    y = gc.check_numerics(x * x, "square")
    g, = gc.gradients(gc.reduce_sum(y), [x])
    step = gc.compile([g])
    np.testing.assert_allclose(step(x=np.array([1.0, -2.0, 3.0]))[0], [2.0, -4.0, 6.0])
    assert any(n.op_name == "check_numerics" and n.is_grad for n in step.program.nodes)


def test_numerics_check_feeds_and_costs_nothing_when_off():
    x = gc.placeholder(gc.float32, [2], name="x")
    step = gc.compile(x * 2.0, check_numerics=True)
    with pytest.raises(NumericsError, match="placeholder 'x' holds NaN or Inf"):
        step(x=np.array([np.nan, 1.0], np.float32))
    assert "_finite" not in gc.compile(x * 2.0).source
