"""The per-call path of ``step(feeds)`` and ``Session.run`` does per signature what it can
(feed order by name, fetch structure, feed targets, exact arrays taken as they are); these
tests pin the semantics those shortcuts must keep, on both backends."""
import numpy as np
import pytest

import graphc as gc

BACKENDS = ["numpy", "llvm"]


def _model():
    graph = gc.Graph()
    with graph.as_default():
        x = gc.placeholder(gc.float32, [2, 3], name="x")
        y = gc.placeholder(gc.float32, [3], name="y")
        w = gc.Variable(np.arange(6, dtype=np.float32).reshape(2, 3), name="w")
        out = gc.reduce_sum(x * w) + gc.reduce_sum(y)
        train = gc.assign(w, w * 0.5)
    return graph, x, y, w, out, train


@pytest.mark.parametrize("backend", BACKENDS)
def test_named_feeds_in_any_order_and_by_tensor_agree(backend):
    graph, x, y, w, out, train = _model()
    xv, yv = np.ones((2, 3), np.float32), np.full(3, 2.0, np.float32)
    step = gc.compile(out, feeds=[x, y], backend=backend)
    want = float((xv * np.arange(6).reshape(2, 3)).sum() + yv.sum())
    assert step(x=xv, y=yv) == want and step(y=yv, x=xv) == want
    assert step({x: xv, y: yv}) == want and step({"x:0": xv}, y=yv) == want
    with pytest.raises(gc.errors.FeedError, match="must be fed"):
        step(x=xv)
    with pytest.raises(gc.errors.FeedError, match="not a feed"):
        step(x=xv, z=yv)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_fed_view_of_a_variable_is_read_before_the_update(backend):
    graph, x, y, w, out, train = _model()
    step = gc.compile([out, train], feeds=[x, y], backend=backend)
    live = step.variables["w"]
    before = live.copy()
    (value, _) = step(x=live[:, :], y=np.zeros(3, np.float32))  # a view of w's own memory
    assert value == pytest.approx(float((before * before).sum()))
    np.testing.assert_array_equal(step.variables["w"], before * 0.5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_session_fetch_lists_and_feeds_are_checked_every_call(backend):
    graph, x, y, w, out, train = _model()
    xv, yv = np.ones((2, 3), np.float32), np.zeros(3, np.float32)
    with gc.Session(graph=graph, backend=backend) as sess:
        sess.run(gc.global_variables_initializer())
        fetches = [out]
        first = sess.run(fetches, {x: xv, y: yv})
        fetches.append(out * 2.0)  # the same list object, new contents: a new structure
        second = sess.run(fetches, {x: xv, y: yv})
        assert len(first) == 1 and len(second) == 2 and second[1] == 2 * second[0]
        # an exact array is taken as it is; anything else is still converted or refused
        assert sess.run(out, {x: xv.astype(np.float64), y: [0, 0, 0]}) == first[0]
        with pytest.raises(gc.errors.FeedError, match="expects f32"):
            sess.run(out, {x: np.ones((3, 2), np.float32), y: yv})


def test_feed_conversion_keeps_its_checks_beside_the_exact_array_shortcut():
    from graphc.client.feeds import convert_feed
    with gc.Graph().as_default():
        i = gc.placeholder(gc.int32, [None], name="i")
        exact = np.array([1, 2], np.int32)
        assert convert_feed(i, exact) is exact
        assert convert_feed(i, [1.7, 2.0]).tolist() == [1, 2]
        with pytest.raises(gc.errors.FeedError, match="NaN or Inf"):
            convert_feed(i, np.array([np.nan]))
        with pytest.raises(gc.errors.FeedError, match="expects i32"):
            convert_feed(i, np.zeros((2, 2), np.int32))
        strided = np.arange(4, dtype=np.int32)[::2]
        got = convert_feed(i, strided)
        assert got.flags.c_contiguous and got.tolist() == [0, 2]


@pytest.mark.parametrize("backend", BACKENDS)
def test_session_repeated_run_keeps_every_check_on_its_fast_path(backend):
    """After one full call, ``run`` with the same fetches and feed keys goes straight to the
    step when the arrays already fit it: results, updates, aliasing and errors as the full
    path gives them."""
    from graphc.client import session as session_module
    graph, x, y, w, out, train = _model()
    xv, yv = np.ones((2, 3), np.float32), np.full(3, 2.0, np.float32)
    with gc.Session(graph=graph, backend=backend) as sess:
        sess.run(gc.global_variables_initializer())
        w0 = sess.run(w)
        for k in range(3):  # fast after the first call: the same values and updates
            got, _ = sess.run([out, train], {x: xv, y: yv})
            assert got == pytest.approx(float((xv * w0 * 0.5 ** k).sum() + yv.sum()))
        assert len(sess._fast) >= 1
        np.testing.assert_array_equal(sess.run(w), w0 * 0.125)
        # a view of the variable's own storage is read before the update, on the fast path
        live = sess.values[w]
        before = live.copy()
        got, _ = sess.run([out, train], {x: live[:, :], y: yv})
        assert got == pytest.approx(float((before * before).sum() + yv.sum()))
        np.testing.assert_array_equal(sess.run(w), before * 0.5)
        # a fetched variable is the caller's copy, not the session's storage
        fetched = sess.run(w, {})
        fetched[...] = 99.0
        assert not (sess.run(w) == 99.0).any()
        # other dtypes and lists are converted; other shapes compile another step or are refused
        assert sess.run(out, {x: xv.astype(np.float64), y: [2, 2, 2]}) == \
            sess.run(out, {x: xv, y: yv})
        with pytest.raises(gc.errors.FeedError, match="expects f32"):
            sess.run(out, {x: np.ones((3, 2), np.float32), y: yv})
        with pytest.raises(gc.errors.FeedError, match="expects f32"):
            sess.run(out, {x: xv, y: np.ones(4, np.float32)})
        assert isinstance(sess._fast[session_module._run_key([out, train], {x: xv, y: yv})],
                          session_module._FastRun)
        # fetches and feeds by name take the fast path too, with the same results
        for _ in range(2):
            by_name = sess.run([f"{out.op.name}:0", out], {"x:0": xv, y: yv})
            assert by_name[0] == by_name[1] == sess.run(out, {x: xv, y: yv})
        assert session_module._run_key([f"{out.op.name}:0", out], {"x:0": xv, y: yv}) in sess._fast


@pytest.mark.parametrize("backend", BACKENDS)
def test_session_fast_path_with_defaults_and_unfed_keys(backend):
    graph = gc.Graph()
    with graph.as_default():
        x = gc.placeholder(gc.float32, [None], name="x")
        k = gc.placeholder_with_default(np.float32(2.0), shape=(), name="k")
        unused = gc.placeholder(gc.float32, [], name="unused")
        total = gc.reduce_sum(x) * k
    with gc.Session(graph=graph, backend=backend) as sess:
        for n in (3, 3, 5, 5):  # a new length is a new signature, then fast again
            xv = np.ones(n, np.float32)
            assert sess.run(total, {x: xv}) == 2.0 * n
            assert sess.run(total, {x: xv, k: np.float32(3.0)}) == 3.0 * n
            assert sess.run(total, {x: xv, unused: np.float32(1.0)}) == 2.0 * n


@pytest.mark.parametrize("backend", BACKENDS)
def test_session_sees_every_way_a_variable_gets_a_new_value(backend, tmp_path):
    """The variable arrays a step takes are listed once and reused until a value is stored in
    the session: a store (initializer, ``load``, ``Saver.restore``, an item set in
    ``sess.values``) and a change in place are all seen by the next run."""
    graph, x, y, w, out, train = _model()
    xv, yv = np.ones((2, 3), np.float32), np.zeros(3, np.float32)
    with graph.as_default(), gc.Session(backend=backend) as sess:
        sess.run(gc.global_variables_initializer())
        saver = gc.train.Saver()
        path = saver.save(sess, str(tmp_path / "ckpt"))
        assert sess.run(out, {x: xv, y: yv}) == 15.0
        sess.run(train)
        sess.run(train)  # w = arange / 4
        assert sess.run(out, {x: xv, y: yv}) == 3.75
        w.load(np.ones((2, 3), np.float32), sess)
        assert sess.run(out, {x: xv, y: yv}) == 6.0
        sess.values[w][...] = 2.0  # in place
        assert sess.run(out, {x: xv, y: yv}) == 12.0
        sess.values[w] = np.full((2, 3), 3.0, np.float32)
        assert sess.run(out, {x: xv, y: yv}) == 18.0
        saver.restore(sess, path)
        assert sess.run(out, {x: xv, y: yv}) == 15.0
        sess.run(train)
        sess.run(w.initializer)
        assert sess.run(out, {x: xv, y: yv}) == 15.0
        got = sess.run([out, w], {x: xv, y: yv})[1]
        got[...] = -1.0  # a fetched variable is the caller's copy
        assert sess.run(out, {x: xv, y: yv}) == 15.0


def test_the_native_step_function_refuses_a_wrong_argument_count_or_shape():
    graph, x, y, w, out, train = _model()
    step = gc.compile(out, feeds=[x, y], backend="llvm")
    fn = step.compiled.fn
    xv, yv = np.ones((2, 3), np.float32), np.ones(3, np.float32)
    wv = np.ones((2, 3), np.float32)
    assert float(fn(xv, yv, wv)[0][0]) == 9.0
    with pytest.raises(gc.errors.FeedError, match=r"native step takes 3 arrays \(feeds, then "
                                                  r"variables\), got 2"):
        fn(xv, yv)
    with pytest.raises(gc.errors.FeedError, match=r"feed 0 has shape \(3, 2\), the compiled "
                                                  r"step expects \(2, 3\)"):
        fn(np.ones((3, 2), np.float32), yv, wv)
    with pytest.raises(gc.errors.FeedError, match=r"native step takes 2 feeds, got 1"):
        fn.run([xv], (wv,))


@pytest.mark.parametrize("backend", BACKENDS)
def test_fresh_arrays_every_call_and_every_layout_give_the_reference_values(backend):
    """A training loop feeds new arrays each call: views of a dataset, copies, arrays in C
    order with other strides (a dimension of 1), other dtype objects of the same type,
    Fortran order, read-only arrays. Each must reach the step (bound again or converted)
    and give what the NumPy reference gives for the same feeds, call after call."""
    def run(make_step, feeds_seq):
        graph = gc.Graph()
        with graph.as_default():
            x = gc.placeholder(gc.float32, [4, 1], name="x")
            y = gc.placeholder(gc.float32, [1, 3], name="y")
            w = gc.Variable(np.linspace(-1, 1, 3, dtype=np.float32)[None, :], name="w")
            out = gc.reduce_sum(gc.matmul(x, w * y))
            train = gc.assign(w, w - 0.1 * gc.gradients(out, w)[0])
            step = make_step([out, train], [x, y])
            return [float(step({x: xv, y: yv})[0]) for xv, yv in feeds_seq], \
                step.variables["w"].copy()

    rng = np.random.default_rng(7)
    data = rng.standard_normal((40, 1)).astype(np.float32)
    ys = rng.standard_normal((8, 3)).astype(np.float32)
    odd = np.ndarray((1, 3), np.float32, buffer=ys[2].copy(), strides=(4, 4))  # C order
    frozen = ys[3:4].copy()
    frozen.flags.writeable = False
    feeds = [(data[0:4], ys[0:1]), (data[4:8].copy(), ys[1:2]), (data[8:12], odd),
             (data[12:16].astype(np.dtype("<f4")), frozen),
             (np.asfortranarray(data[16:20]), ys[4:5].astype(np.float64)),
             (data[0:4], ys[0:1])]
    assert odd.flags.c_contiguous and odd.strides != (12, 4)
    got = run(lambda f, p: gc.compile(f, feeds=p, backend=backend), feeds)
    want = run(lambda f, p: gc.compile(f, feeds=p, backend="numpy", optimize=False), feeds)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-5)
    assert len(set(got[0])) == len(feeds)  # every call saw its own feeds and new weights


def test_two_callers_of_one_native_step_keep_their_own_variables():
    """``NativeStep.run`` checks a caller's variables tuple once; a call with other arrays
    (another tuple, or ``__call__``) binds those, and the next call binds back."""
    graph, x, y, w, out, train = _model()
    step = gc.compile([out, train], feeds=[x, y], backend="llvm")
    fn = step.compiled.fn
    xv, yv = np.ones((2, 3), np.float32), np.zeros(3, np.float32)
    mine, theirs = (np.ones((2, 3), np.float32),), (np.full((2, 3), 3.0, np.float32),)
    assert fn.run([xv, yv], mine)[0] == 6.0
    assert fn.run([xv, yv], theirs)[0] == 18.0
    assert fn(xv, yv, np.full((2, 3), 10.0, np.float32))[0][0] == 60.0
    assert fn.run([xv, yv], mine)[0] == 3.0  # halved once by the first call
    np.testing.assert_array_equal(mine[0], 0.25)
    np.testing.assert_array_equal(theirs[0], 1.5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_views_of_variables_fed_to_a_session_or_a_loaded_step_are_read_before_the_update(
        backend, tmp_path):
    graph, x, y, w, out, train = _model()
    zeros = np.zeros(3, np.float32)
    with gc.Session(graph=graph, backend=backend) as sess:
        sess.run(gc.global_variables_initializer())
        sess.run([out, train], {x: np.ones((2, 3), np.float32), y: zeros})  # the fast path
        live = sess.values[w]
        before = live.copy()
        value, _ = sess.run([out, train], {x: live[:, :], y: zeros})
        assert value == pytest.approx(float((before * before).sum()))
        np.testing.assert_array_equal(sess.values[w], before * 0.5)
    step = gc.compile([out, train], feeds=[x, y], backend=backend)
    step(x=np.ones((2, 3), np.float32), y=zeros)
    step.save(str(tmp_path / "s.gcx"))
    loaded = gc.load(str(tmp_path / "s.gcx"))
    live = loaded.variables["w"]
    before = live.copy()
    value, _ = loaded(x=live[::-1][::-1], y=zeros)  # a view, by name
    assert value == pytest.approx(float((before * before).sum()))
    value, _ = loaded({"x:0": np.ones((2, 3), np.float32), "y": zeros})
    assert value == pytest.approx(float(before.sum()) * 0.5)
    with pytest.raises(gc.errors.FeedError, match="not a placeholder of this step"):
        loaded(x=live, z=zeros)


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_threads_calling_one_step_and_one_session_with_their_own_arrays(backend):
    """Calls from two threads take turns: each call binds its own feeds and sees its own
    values; the variable receives every call's update exactly once."""
    import threading
    graph = gc.Graph()
    with graph.as_default():
        x = gc.placeholder(gc.float32, [64], name="x")
        total = gc.Variable(np.zeros((), np.float32), name="total")
        doubled = gc.reduce_sum(x * 2.0)
        bump = gc.assign_add(total, gc.reduce_sum(x))
        step = gc.compile([doubled, bump], feeds=[x], backend=backend)
        sess = gc.Session(graph=graph, backend=backend)
        sess.run(gc.global_variables_initializer())
    calls = 200
    got = {}

    def work(name, run):
        rng = np.random.default_rng(len(name))
        feeds = [rng.integers(0, 8, 64).astype(np.float32) for _ in range(calls)]
        got[name] = [(float(run(f)), float(f.sum() * 2)) for f in feeds]
        got[name + " sum"] = float(sum(f.sum() for f in feeds))

    runs = {"step a": lambda f: step({x: f})[0], "step b": lambda f: step(x=f.copy())[0],
            "sess a": lambda f: sess.run([doubled, bump], {x: f})[0],
            "sess b": lambda f: sess.run(doubled, {x: f})}
    threads = [threading.Thread(target=work, args=(k, r)) for k, r in runs.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for name in runs:
        assert all(a == b for a, b in got[name]), name
    assert float(step.variables["total"]) == got["step a sum"] + got["step b sum"]
    assert float(sess.run(total)) == got["sess a sum"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_feeds_that_are_not_a_dict_are_refused_by_name(backend, tmp_path):
    """An array or a list where TF1 takes {placeholder: value}: a FeedError saying what a
    call takes, from Session.run, a compiled step and a loaded step (not NumPy's "truth
    value of an array is ambiguous")."""
    x = gc.placeholder(gc.float32, [3], name="x")
    y = x * 2.0
    step = gc.compile([y], feeds=[x], backend=backend)
    step.save(str(tmp_path / "step"))
    loaded = gc.runtime.load(str(tmp_path / "step"))
    xv = np.ones(3, np.float32)
    with gc.Session() as sess:
        for call, who in ((lambda f: sess.run(y, f), "Session.run"), (step, r"step\(\)"),
                          (loaded, "a loaded step")):
            for bad in (xv, [xv], 3):
                with pytest.raises(gc.errors.FeedError,
                                   match=rf"{who} takes its feeds as a dict .* found "
                                         rf"{type(bad).__name__}"):
                    call(bad)
        np.testing.assert_array_equal(sess.run(y, {x: xv}), 2 * xv)
    np.testing.assert_array_equal(step({x: xv})[0], 2 * xv)
    np.testing.assert_array_equal(loaded({"x": xv})[0], 2 * xv)
