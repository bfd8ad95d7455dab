"""The compile cache keyed on the user's graph: a warm hit specializes nothing and runs no
pass (counted, not timed), gives bit-identical results to a miss on both backends, and
anything that changes behaviour (a constant, an attribute, a dtype, a shape, the fed set, the
pass list, the backend, for LLVM a name or line) changes the key, while a renamed NumPy graph
still hits and its errors name the current graph's node and line; entries keep constants,
bytecode and layouts exactly."""
import numpy as np
import pytest

import graphc as gc
from graphc.client import graph_key, step_cache
from graphc.ir import passes as P

BACKENDS = ["numpy", "llvm"]


@pytest.fixture
def runs(monkeypatch, tmp_path):
    """Turns the cache on in a private directory; counts the passes that run."""
    monkeypatch.setenv("GRAPHC_STEP_CACHE", "1")
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("GRAPHC_NO_CACHE", raising=False)
    count = {"passes": 0}
    for name, fn in list(P.PASSES.items()):
        def counted(program, fn=fn):
            count["passes"] += 1
            return fn(program)
        monkeypatch.setitem(P.PASSES, name, counted)
    return count


def _mlp(scale=0.5, dtype=gc.float32, batch=8, name="dense"):
    """A two-layer tanh MLP trained by SGD (momentum-free), in a graph of its own."""
    graph = gc.Graph()
    with graph.as_default():
        x = gc.placeholder(dtype, [batch, 6], name="x")
        y = gc.placeholder(gc.int64, [batch], name="y")
        rs = np.random.RandomState(0)
        w1 = gc.Variable(rs.randn(6, 5).astype(dtype.np) * 0.5, name=f"{name}/w1")
        w2 = gc.Variable(rs.randn(5, 3).astype(dtype.np) * 0.5, name=f"{name}/w2")
        h = gc.tanh(gc.matmul(x, w1, name=f"{name}/mm") * scale)
        logits = gc.matmul(h, w2)
        loss = gc.reduce_mean(gc.nn.sparse_softmax_cross_entropy_with_logits(
            labels=y, logits=logits))
        train = gc.train.GradientDescentOptimizer(0.1).minimize(loss)
    return graph, x, y, loss, train


def _data(dtype=np.float32, batch=8):
    rs = np.random.RandomState(1)
    return rs.randn(batch, 6).astype(dtype), rs.randint(0, 3, batch)


def _train(backend, steps=3, **kw):
    graph, x, y, loss, train = _mlp(**kw)
    step = gc.compile([loss, train], feeds=[x, y], backend=backend)
    xs, ys = _data(kw.get("dtype", gc.float32).np, kw.get("batch", 8))
    losses = [step(x=xs, y=ys)[0] for _ in range(steps)]
    return step, losses


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_warm_hit_runs_no_pass_and_gives_the_bits_of_the_miss(runs, backend):
    cold, cold_losses = _train(backend)
    ran = runs["passes"]
    assert ran >= len(P.DEFAULT_PIPELINE) and not getattr(cold.compiled, "cache_hit", False)
    warm, warm_losses = _train(backend)
    assert runs["passes"] == ran  # the hit ran no pass (nor the initializers' reference)
    assert warm.compiled.cache_hit
    for a, b in zip(cold_losses, warm_losses):
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes()
    for name, value in cold.variables.items():
        assert value.tobytes() == warm.variables[name].tobytes()
    # what the hit does not carry is compiled again on demand, from the current graph
    assert "fused" in warm.ir() and warm.stats["fused_groups"] >= 1
    assert runs["passes"] > ran


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_session_hits_the_cache_too(runs, backend):
    def run():
        graph, x, y, loss, train = _mlp()
        xs, ys = _data()
        with gc.Session(graph=graph, backend=backend) as sess:
            sess.run(gc.global_variables_initializer())
            return [sess.run([loss, train], {x: xs, y: ys})[0] for _ in range(2)]
    first = run()
    ran = runs["passes"]
    second = run()
    assert runs["passes"] == ran
    assert [a.tobytes() for a in first] == [b.tobytes() for b in second]


def _key(backend="numpy", passes=None, **kw):
    graph, x, y, loss, train = _mlp(**kw)
    batch = kw.get("batch", 8)
    names = list(P.DEFAULT_PIPELINE if passes is None else passes)
    key, nodes = step_cache.step_key([loss, train], {x: (batch, 6), y: (batch,)}, backend,
                                     names, ())
    return key


def test_what_changes_behaviour_changes_the_key():
    base = _key()
    assert base is not None and base == _key()  # deterministic
    assert _key(scale=0.25) != base              # a constant of the step
    assert _key(dtype=gc.float64) != base        # a dtype
    assert _key(batch=4) != base                 # a shape
    assert _key(passes=["cse", "fuse"]) != base  # the pass list
    assert _key(backend="llvm") != base          # the backend


def test_names_do_not_split_the_numpy_key_but_split_the_llvm_one():
    assert _key(name="other") == _key(name="dense")
    assert _key(backend="llvm", name="other") != _key(backend="llvm", name="dense")


def test_a_random_op_without_a_seed_is_not_cached():
    with gc.Graph().as_default():
        x = gc.placeholder(gc.float32, [3], name="x")
        noisy = x + gc.random_uniform([3])
        seeded = x + gc.random_uniform([3], seed=7)
        assert step_cache.step_key([noisy], {x: (3,)}, "numpy", [], ()) == (None, None)
        assert step_cache.step_key([seeded], {x: (3,)}, "numpy", [], ())[0] is not None


def _gather_step(name):
    graph = gc.Graph()
    with graph.as_default():
        params = gc.placeholder(gc.float32, [4, 2], name="params")
        idx = gc.placeholder(gc.int32, [3], name="idx")
        out = gc.gather(params, idx, name=name) * 2.0
    return gc.compile([out], feeds=[params, idx], backend="numpy"), out


def test_a_hit_names_the_current_graphs_node_and_line_when_it_fails(runs):
    first, _ = _gather_step("first_gather")
    ran = runs["passes"]
    second, out = _gather_step("second_gather")
    assert runs["passes"] == ran and second.compiled.cache_hit
    params = np.arange(8, dtype=np.float32).reshape(4, 2)
    np.testing.assert_array_equal(second(params=params, idx=np.array([3, 0, 1], np.int32))[0],
                                  params[[3, 0, 1]] * 2.0)
    with pytest.raises(gc.errors.InvalidArgumentError) as info:
        second(params=params, idx=np.array([0, 9, 1], np.int32))
    message = str(info.value)
    assert "second_gather" in message and "first_gather" not in message
    assert "test_compile_cache.py" in message


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_hit_saves_and_the_loaded_step_continues_with_the_same_bits(runs, backend, tmp_path):
    _train(backend, steps=1)
    hit, _ = _train(backend, steps=1)
    assert hit.compiled.cache_hit
    path = tmp_path / "step.gcx"
    hit.save(str(path))  # the random state and code of the running (cached) step
    loaded = gc.load(str(path))
    xs, ys = _data()
    for _ in range(2):
        assert hit(x=xs, y=ys)[0].tobytes() == loaded(x=xs, y=ys)[0].tobytes()
    for name, value in hit.variables.items():
        assert value.tobytes() == loaded.variables[name].tobytes()


# -- the key, read from the user's graph ------------------------------------------------------
def test_values_that_print_alike_describe_differently():
    from graphc.ir.shapes import TensorShape
    values = [1, 1.0, True, "1", b"1", (1,), [1], np.array(1), np.array([1]), np.int64(1),
              np.array(1, np.int32), np.array(1.0), (1, 1), ((1,), 1), TensorShape(()),
              TensorShape(None), (), gc.int64, np.dtype("int64"), {"a": 1}, {"a": 1.0},
              np.zeros(100), np.ones(100), np.zeros((10, 10)), -0.0, 0.0]
    described = [step_cache.marshal.dumps(graph_key._canon(v), step_cache._MARSHAL)
                 for v in values]
    assert len(set(described)) == len(values)


def test_a_value_the_key_cannot_describe_is_not_cached():
    class Named(str):
        pass
    for value in [Named("x"), object(), np.array([object()]), {1: 0, "1": 0}]:
        with pytest.raises(graph_key.Uncacheable):
            graph_key._canon(value)


def _graph_keys(build, backend="numpy"):
    """The keys of ``build``'s fetches in two fresh graphs: (key, key of the second)."""
    keys = []
    for _ in range(2):
        with gc.Graph().as_default():
            fetches, shapes = build()
            keys.append(step_cache.step_key(fetches, shapes, backend, [], ())[0])
    return keys


def test_an_attribute_a_constant_or_the_fed_set_changes_the_key():
    def reduce(axis=0, transpose=False, scale=2.0, feed_h=False, extra=0):
        for _ in range(extra):  # nodes the step does not need, before and after its own
            gc.constant(1.0) + 1.0
        x = gc.placeholder(gc.float32, [4, 4], name="x")
        h = gc.matmul(x, x, transpose_a=transpose) * scale
        out = gc.reduce_sum(h, axis=axis)
        for _ in range(extra):
            gc.constant(1.0) * 3.0
        return [out], ({h: (4, 4)} if feed_h else {x: (4, 4)})
    base, again = _graph_keys(reduce)
    assert base is not None and base == again
    assert _graph_keys(lambda: reduce(extra=3))[0] == base  # positions among needed nodes
    for changed in [dict(axis=1), dict(transpose=True), dict(scale=3.0), dict(feed_h=True)]:
        assert _graph_keys(lambda: reduce(**changed))[0] != base, changed


def test_a_missing_or_odd_feed_shape_is_not_cached_and_compiling_says_so(runs):
    from graphc.client.pipeline import compile_program
    with gc.Graph().as_default():
        x = gc.placeholder(gc.float32, [3], name="x")
        y = gc.placeholder(gc.float32, [3], name="y")
        assert step_cache.step_key([x + y], {x: (3,)}, "numpy", [], ()) == (None, None)
        for dims in [(3.0,), (None,), None]:  # (only integer dims describe a shape)
            assert step_cache.step_key([x + y], {x: dims, y: (3,)}, "numpy", [], ()) \
                == (None, None)
        total = x + y
        assert step_cache.step_key([total], {x: (np.int64(3),), y: (3,)}, "numpy", [], ()) \
            == step_cache.step_key([total], {x: (3,), y: (3,)}, "numpy", [], ())
        with pytest.raises(KeyError):  # what compiling without the cache raises
            compile_program([x + y], {x: (3,)}, cache=True)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_hit_with_a_fed_intermediate_and_none_dims_gives_the_misses_numbers(runs, backend):
    from graphc.client.pipeline import compile_program

    def build():
        graph = gc.Graph()
        with graph.as_default():
            x = gc.placeholder(gc.float64, [None, 3], name="x")
            w = gc.Variable(np.linspace(-1, 1, 12).reshape(3, 4), name="w")
            h = gc.nn.relu(gc.matmul(x, w), name="h")
            loss = gc.reduce_sum(gc.tanh(h) * h)
            grad, = gc.gradients(loss, [w])
        return x, w, h, loss, grad

    rng = np.random.default_rng(5)
    xb, hb = rng.standard_normal((5, 3)), rng.standard_normal((2, 4))
    results = []
    for cache in (True, True, False):
        x, w, h, loss, grad = build()
        by_x = compile_program([loss, grad], {x: (5, 3)}, backend, cache=cache)
        by_h = compile_program([loss], {h: (2, 4)}, backend, cache=cache)
        wv = np.linspace(-1, 1, 12).reshape(3, 4)
        args = {"x": xb, "h": hb}
        got = []
        for compiled in (by_x, by_h):
            feeds = [args[n.node_name] for n in compiled.feed_nodes]
            fetched, _ = compiled.fn(*feeds, *[wv for _ in compiled.var_nodes])
            got.append([np.asarray(f) for f in fetched])
        results.append((getattr(by_x, "cache_hit", False), getattr(by_h, "cache_hit", False),
                        got))
    assert [r[:2] for r in results] == [(False, False), (True, True), (False, False)]
    for _, _, got in results[1:]:
        for want_step, got_step in zip(results[0][2], got):
            for a, b in zip(want_step, got_step):
                assert a.tobytes() == b.tobytes()


# -- the entry ---------------------------------------------------------------------------------
def test_constants_come_back_equal_writable_and_aligned_as_fresh_arrays():
    arrays = {"f": np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4),
              "strided": np.arange(20.0)[::3], "scalar": np.array(2.5), "empty": np.zeros((0, 3)),
              "i": np.array([[1, -2]], np.int64), "b": np.array([True, False]),
              "big_endian": np.arange(3, dtype=">i4")}
    table, data = step_cache._pack_arrays(arrays)
    back = step_cache._unpack_arrays(table, data)
    assert list(back) == list(arrays)
    for name, value in arrays.items():
        got = back[name]
        assert got.dtype == value.dtype and got.shape == value.shape, name
        np.testing.assert_array_equal(got, value)
        assert got.flags.writeable and got.flags.c_contiguous and got.flags.aligned
    with pytest.raises(ValueError):
        step_cache._pack_arrays({"objects": np.array([object()])})


def test_a_numpy_hit_runs_stored_bytecode_or_compiles_the_source_for_another_python(
        runs, monkeypatch):
    from graphc.runtime import pystep
    cold, cold_losses = _train("numpy")
    compiled = []
    monkeypatch.setattr(pystep, "compile_step",
                        lambda source, name="graphc_step": compiled.append(name) or compile(
                            source, f"<{name}>", "exec"))
    warm, warm_losses = _train("numpy")
    assert warm.compiled.cache_hit and compiled == []  # the stored bytecode ran
    monkeypatch.setattr(step_cache, "_BYTECODE", "0000")
    other, other_losses = _train("numpy")
    assert other.compiled.cache_hit and compiled == ["graphc_step"]  # the source compiled
    for a, b, c in zip(cold_losses, warm_losses, other_losses):
        assert a.tobytes() == b.tobytes() == c.tobytes()


def test_the_llvm_key_holds_each_nodes_line_and_its_text(tmp_path):
    from graphc.ir.source import Location
    script = tmp_path / "model.py"
    script.write_text("a = 1\nb = 2\n")

    def key(backend, line, text=None):
        if text is not None:
            script.write_text(text)
            import linecache
            linecache.checkcache(str(script))
        with gc.Graph().as_default():
            x = gc.placeholder(gc.float32, [3], name="x")
            y = gc.tanh(x) * 2.0
            y.loc = Location(str(script), line)
            return step_cache.step_key([y], {x: (3,)}, backend, [], ())[0]
    base = key("llvm", 1)
    assert key("llvm", 1) == base and key("llvm", 2) != base
    assert key("llvm", 1, "a = 1  # edited\nb = 2\n") != base  # the text the step reports
    assert key("numpy", 1) == key("numpy", 2)


@pytest.mark.parametrize("backend", BACKENDS)
def test_shapes_known_only_when_specialized_hit_per_feed_shape(runs, backend):
    """A reshape to ``[tf.shape(x)[0], -1]`` holds a pending attribute until the feed shape
    is known: each batch size has its own key and its hit computes that batch."""
    from graphc.client.pipeline import compile_program
    seen = {}
    for attempt in range(2):
        for batch in (4, 5):
            with gc.Graph().as_default():
                x = gc.placeholder(gc.float32, [None, 2, 3], name="x")
                flat = gc.reshape(x, [gc.shape(x)[0], -1])
                out = gc.reduce_sum(flat * np.arange(6, dtype=np.float32), axis=1)
                key = step_cache.step_key([out], {x: (batch, 2, 3)}, backend, [], ())[0]
                compiled = compile_program([out], {x: (batch, 2, 3)}, backend, cache=True)
            xb = np.arange(batch * 6, dtype=np.float32).reshape(batch, 2, 3)
            np.testing.assert_allclose(compiled.fn(xb)[0][0],
                                       (xb.reshape(batch, 6) * np.arange(6)).sum(1))
            assert getattr(compiled, "cache_hit", False) == (attempt == 1)
            seen.setdefault(batch, set()).add(key)
    assert len(seen[4]) == len(seen[5]) == 1 and seen[4] != seen[5]


@pytest.mark.parametrize("backend", BACKENDS)
def test_random_graphs_hit_and_give_the_bits_of_the_miss(runs, backend):
    """The fuzzer's random graphs (every op family; large GEMMs and convolutions in the
    second batch), eight to a step as the fuzzer compiles them: built again in a new graph,
    each batch hits its entry and computes the bits the miss computed, twice in a row (from
    the same initial variable values)."""
    from graphc.testing import check, graphs

    def cached(recipe):  # (a random op without a seed, a host call: never cached)
        batch = check.Batch([recipe])
        shapes = {p: v.shape for p, v in batch.feeds.items()}
        return step_cache.step_key(batch.fetches, shapes, backend, list(P.DEFAULT_PIPELINE),
                                   ())[0] is not None
    small = (graphs.generate(s) for s in range(100, 200))
    large = (graphs.generate(s, large=True) for s in range(200, 300))
    for recipes in ([r for r, _ in zip(filter(cached, small), range(8))],
                    [r for r, _ in zip(filter(cached, large), range(8))]):
        assert len(recipes) == 8
        results = []
        for attempt in range(2):
            batch = check.Batch(recipes)  # (a new graph each time)
            step = batch.step("numpy-opt" if backend == "numpy" else backend)
            assert getattr(step[0].compiled, "cache_hit", False) == (attempt == 1)
            results.append(batch.calls(step))
        assert all(check.same_bits(a, b) for a, b in zip(*results))
