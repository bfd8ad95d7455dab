"""Splitting a step over parts of its batch (ir.passes.split): it happens where the rules
allow (an MLP, a time-major RNN, a CNN, Adam with clipping), the parts' results add up to the
whole step's (float64, NumPy and LLVM), per-example fetches come back whole, the parts run on
the thread pool with the bits they have in order, a failing part stops the step as any
failure does, and steps the rules cannot cut are left whole, saying why."""
import numpy as np
import pytest

import graphc as gc
from graphc.errors import CompileError, InvalidArgumentError
from graphc.runtime import parallel


@pytest.fixture
def parts(monkeypatch):
    """Turn splitting on: ``parts(n)`` cuts every step compiled after it in n parts."""
    monkeypatch.setenv("GRAPHC_SPLIT_MIN_WORK", "1")

    def set_parts(n):
        monkeypatch.setenv("GRAPHC_SPLIT_EXAMPLES", str(n))
    return set_parts


def _mlp(batch=8, dtype=np.float64, optimizer="sgd"):
    rng = np.random.default_rng(0)
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(dtype, [batch, 6], name="x")
        y = gc.placeholder(gc.int64, [batch], name="y")
        w0 = gc.Variable(rng.standard_normal((6, 5)).astype(dtype), name="w0")
        b0 = gc.Variable(np.zeros(5, dtype), name="b0")
        w1 = gc.Variable(rng.standard_normal((5, 3)).astype(dtype), name="w1")
        logits = gc.matmul(gc.tanh(gc.matmul(x, w0) + b0), w1)
        losses = gc.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
        loss = gc.reduce_mean(losses)
        if optimizer == "adam":
            opt = gc.train.AdamOptimizer(0.01)
            grads, variables = zip(*opt.compute_gradients(loss))
            clipped, _ = gc.clip_by_global_norm(list(grads), 1.0)
            train = opt.apply_gradients(list(zip(clipped, variables)))
        else:
            train = gc.train.GradientDescentOptimizer(0.1).minimize(loss)
    feeds = {x: rng.standard_normal((batch, 6)).astype(dtype),
             y: rng.integers(0, 3, batch)}
    return g, [loss, train, logits, losses], feeds


def _rnn(batch=6, steps_=5, hidden=7, dtype=np.float64):
    """Time-major: the examples lie along axis 1 of x."""
    rng = np.random.default_rng(1)
    steps = steps_
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(dtype, [steps, batch, 4], name="x")
        y = gc.placeholder(gc.int64, [batch], name="y")
        wx = gc.Variable(rng.standard_normal((4, hidden)).astype(dtype) * 0.5, name="wx")
        wh = gc.Variable((rng.standard_normal((hidden, hidden)) * 0.5 /
                          np.sqrt(hidden / 7)).astype(dtype), name="wh")
        wo = gc.Variable(rng.standard_normal((hidden, 3)).astype(dtype) * 0.5, name="wo")
        h = None
        for t in range(steps):
            pre = gc.matmul(x[t], wx)
            h = gc.tanh(pre if h is None else pre + gc.matmul(h, wh))
        loss = gc.reduce_mean(gc.nn.sparse_softmax_cross_entropy_with_logits(
            labels=y, logits=gc.matmul(h, wo)))
        train = gc.train.GradientDescentOptimizer(0.1).minimize(loss)
    feeds = {x: rng.standard_normal((steps, batch, 4)).astype(dtype),
             y: rng.integers(0, 3, batch)}
    return g, [loss, train], feeds


def _cnn(batch=4, dtype=np.float64):
    rng = np.random.default_rng(2)
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(dtype, [batch, 8, 8, 2], name="x")
        y = gc.placeholder(gc.int64, [batch], name="y")
        k = gc.Variable(rng.standard_normal((3, 3, 2, 4)).astype(dtype) * 0.3, name="k")
        b = gc.Variable(np.zeros(4, dtype), name="b")
        w = gc.Variable(rng.standard_normal((36, 3)).astype(dtype) * 0.2, name="w")
        a = gc.nn.relu(gc.nn.conv2d(x, k, [1, 1, 1, 1], "VALID") + b)
        p = gc.nn.max_pool(a, [1, 2, 2, 1], [1, 2, 2, 1], "VALID")
        logits = gc.matmul(gc.reshape(p, [batch, -1]), w)
        loss = gc.reduce_mean(gc.nn.sparse_softmax_cross_entropy_with_logits(
            labels=y, logits=logits))
        train = gc.train.MomentumOptimizer(0.1, 0.9).minimize(loss)
    feeds = {x: rng.standard_normal((batch, 8, 8, 2)).astype(dtype),
             y: rng.integers(0, 3, batch)}
    return g, [loss, train], feeds


def _run(build, backend, steps=3, **kw):
    """(fetched values of every step, final variables, the compiled program)."""
    g, fetches, feeds = build(**kw)
    with g.as_default():
        step = gc.compile(fetches, feeds=list(feeds), backend=backend)
    out = [step(feeds) for _ in range(steps)]
    return out, {k: v.copy() for k, v in step.variables.items()}, step.compiled.program


def _agree(a, b, rtol):
    (out_a, vars_a, _), (out_b, vars_b, _) = a, b
    for step_a, step_b in zip(out_a, out_b):
        for u, v in zip(step_a, step_b):
            if u is not None:
                np.testing.assert_allclose(v, u, rtol=rtol, atol=rtol)
    for name in vars_a:
        np.testing.assert_allclose(vars_b[name], vars_a[name], rtol=rtol, atol=rtol)


def _loops(program):
    return [n for n in program.nodes if n.op_name == "loop"]


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
@pytest.mark.parametrize("build", [_mlp, _rnn, _cnn], ids=["mlp", "rnn", "cnn"])
def test_split_steps_agree_with_whole_ones(parts, build, backend):
    parts(1)
    whole = _run(build, backend)
    parts(2)
    split = _run(build, backend)
    program = split[2]
    assert program.split_done[0] == 2 and len(_loops(program)) == 1
    assert not _loops(whole[2])
    _agree(whole, split, rtol=1e-12)


def test_the_sums_are_added_once_after_the_parts(parts):
    """An MLP's loss and its gradients come out of the parts as sums (the bias gradient's
    column sums, x^T dz...), each added once after the loop; the logits and the per-example
    losses, fetched, are put back together. A float sum reads each part's row where the loop
    wrote it, added in one fused kernel with the update reading it; the loss's mean reduces
    the stacked rows."""
    parts(2)
    _, _, program = _run(_mlp, "numpy", steps=1)
    loop = _loops(program)[0]
    outs = [n for n in program.nodes if n.op_name == "loop_output"]
    rows = {}
    for n in outs:
        rows.setdefault(n.attrs["index"], []).append(n.attrs.get("row"))
    assert sorted(rows) == list(range(len(loop.attrs["body"].stacked))) == list(range(6))
    summed = [k for k, r in rows.items() if r != [None]]
    assert len(summed) == 2 and all(sorted(rows[k]) == [0, 1] for k in summed)  # b0, w1
    for k in summed:  # both rows read by one kernel: the sum and the update in one pass
        ids = {id(n) for n in outs if n.attrs["index"] == k}
        readers = [u for u in program.nodes if any(id(x) in ids for x in u.inputs)]
        assert [u.op_name for u in readers] == ["fused"]
        assert {"add", "subtract"} <= set(readers[0].attrs["ops"])
    assert not [n for n in program.nodes if n.op_name == "reduce_sum"
                and n.inputs[0].op_name == "loop_output"]


def _grads(batch=8, dtype=np.float64):
    """The gradient sums fetched as they are, beside an update of one weight: what reads the
    parts' rows is no variable update."""
    g, (loss, _, logits, _), feeds = _mlp(batch, dtype)
    with g.as_default():
        w0, b0, w1 = gc.trainable_variables()
        dw0, db0, dw1 = gc.gradients(loss, [w0, b0, w1])
        train = gc.assign_sub(w1, 0.1 * dw1)
    return g, [loss, db0, dw1 * 1.0, dw0, train], feeds


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_summed_gradients_fetched_as_they_are_agree(parts, backend):
    parts(1)
    whole = _run(_grads, backend)
    parts(2)
    split = _run(_grads, backend)
    assert split[2].split_done[0] == 2
    _agree(whole, split, rtol=1e-12)


def test_the_parts_rows_are_read_where_the_loop_wrote_them(parts):
    """On LLVM the rows a sum reads are the loop's own bytes: no kernel copies them out."""
    parts(2)
    g, fetches, feeds = _cnn()
    with g.as_default():
        step = gc.compile(fetches, feeds=list(feeds), backend="llvm")
    step(feeds)
    text = step.compiled.fn.llvm_ir
    rows = [n for n in step.compiled.program.nodes if n.op_name == "loop_output"
            and n.attrs.get("row") is not None]
    assert len(rows) == 4  # the filter's and the bias's gradients (the dense weight's is
    # computed after the loop, on the whole batch)
    for n in rows:
        assert f"loop_output '{n.node_name}'" not in text


def test_a_wide_weight_gradient_is_computed_after_the_parts(parts):
    """x^T dz of a 6 -> 5 layer is 30 numbers a part against dz's 8 x 5 put back together:
    the product runs after the loop, on the whole batch; the 5 -> 3 layer's (15 against
    h's 8 x 5 and dz's 8 x 3) stays in the parts, summed after."""
    parts(2)
    _, _, program = _run(_mlp, "numpy", steps=1)
    after = [tuple(n.shape) for n in program.nodes if n.op_name in ("matmul", "subtract_matmul")]
    assert (6, 5) in after and (5, 3) not in after


def test_a_recurrent_gradient_summed_over_the_steps_stays_in_the_parts(parts):
    parts(2)
    _, _, program = _run(_rnn, "numpy", steps=1)
    assert not [n for n in program.nodes if n.op_name in ("matmul", "subtract_matmul")]


def test_a_value_the_same_in_every_part_is_computed_once_before_the_loop(parts):
    """broadcast_to(mask, [batch, 3]) holds the batch's axis but reads no example: the
    part's copy (half the rows) is a captured input of the loop, scheduled before it."""
    parts(2)
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float64, [8, 3], name="x")
        m = gc.placeholder(gc.bool, [3], name="m")
        w = gc.Variable(np.ones((3, 2)), name="w")
        picked = gc.where(gc.broadcast_to(m, [8, 3]), x, -x)
        loss = gc.reduce_sum(gc.tanh(gc.matmul(picked, w)))
        train = gc.train.GradientDescentOptimizer(0.1).minimize(loss)
        feeds = {x: np.linspace(-1, 1, 24).reshape(8, 3), m: np.array([True, False, True])}
        step = gc.compile([loss, train], feeds=list(feeds), backend="numpy")
        got = [float(step(feeds)[0]) for _ in range(2)]
    assert step.compiled.program.split_done == (2, 8)
    w0, xs, ms = np.ones((3, 2)), feeds[x], feeds[m]
    for value in got:  # the reference, by hand
        p = np.where(ms, xs, -xs)
        t = np.tanh(p @ w0)
        assert abs(value - t.sum()) < 1e-12
        w0 = w0 - 0.1 * p.T @ (1 - t * t)


def test_time_major_examples_are_cut_along_their_axis(parts):
    parts(3)
    _, _, program = _run(_rnn, "numpy", steps=1)
    assert program.split_done == (3, 6)
    seq = _loops(program)[0].inputs[0]  # the cut x: [parts, T, batch / parts, 4]
    assert tuple(seq.shape) == (3, 5, 2, 4)


def test_the_batch_is_cut_in_the_most_parts_it_divides_into(parts):
    parts(4)  # a batch of 6: 3 parts
    _, _, program = _run(_rnn, "numpy", steps=1)
    assert program.split_done == (3, 6)


def test_adam_with_global_norm_clipping_splits_before_the_norm(parts):
    """The norm squares the summed gradients: the parts' gradients are added first."""
    parts(1)
    whole = _run(_mlp, "llvm", optimizer="adam")
    parts(2)
    split = _run(_mlp, "llvm", optimizer="adam")
    assert split[2].split_done[0] == 2
    _agree(whole, split, rtol=1e-11)


def test_parts_on_the_pool_give_the_bits_of_parts_in_order(parts, monkeypatch):
    parts(2)
    results = []
    for on in ("0", "1"):
        monkeypatch.setenv("GRAPHC_PARALLEL_LOOPS", on)
        parallel.ensure_workers(2)
        parallel.set_threads(2)
        try:
            results.append(_run(_mlp, "llvm", dtype=np.float32, batch=64))
        finally:
            parallel.set_threads(1)
    (a, va, _), (b, vb, _) = results
    for step_a, step_b in zip(a, b):
        for u, v in zip(step_a, step_b):
            if u is not None:
                assert np.array_equal(u, v)
    assert all(np.array_equal(va[k], vb[k]) for k in va)


def test_a_failing_part_stops_the_step_and_keeps_the_variables(parts):
    """A label out of range in the second part: the step raises, naming the loss, and no
    variable changed (the parts run before any update)."""
    parts(2)
    g, fetches, feeds = _mlp(dtype=np.float32, batch=64)
    with g.as_default():
        step = gc.compile(fetches, feeds=list(feeds), backend="llvm")
    before = {k: v.copy() for k, v in step.variables.items()}
    y = next(p for p in feeds if p.node_name == "y")
    bad = dict(feeds)
    bad[y] = feeds[y].copy()
    bad[y][40] = 7
    parallel.ensure_workers(2)
    parallel.set_threads(2)
    try:
        with pytest.raises(InvalidArgumentError, match="label"):
            step(bad)
    finally:
        parallel.set_threads(1)
    assert all(np.array_equal(before[k], v) for k, v in step.variables.items())
    step(feeds)  # and the next good step runs
    assert not all(np.array_equal(before[k], v) for k, v in step.variables.items())


def _refused(parts, build_graph, feeds_of, batch):
    g = gc.Graph()
    with g.as_default():
        fetches, feeds = build_graph(batch)
        step = gc.compile(fetches, feeds=list(feeds), backend="numpy")
        step(feeds_of(feeds))
    program = step.compiled.program
    assert not _loops(program)
    return program.split_refused


def _plain(batch, transform, train=True):
    x = gc.placeholder(gc.float64, [batch, 3], name="x")
    w = gc.Variable(np.ones((3, 2)), name="w")
    loss = gc.reduce_sum(gc.tanh(gc.matmul(transform(x), w)))
    fetches = [loss, gc.train.GradientDescentOptimizer(0.1).minimize(loss)] if train else [loss]
    return fetches, {x: np.linspace(-1, 1, batch * 3).reshape(batch, 3)}


@pytest.mark.parametrize("transform, batch, train, why", [
    (lambda x: x - gc.reduce_mean(x, axis=0), 8, True, "batch statistic"),  # batch norm
    (lambda x: x - gc.reduce_mean(x, axis=0), 8, False, "batch statistic"),  # its forward
    (lambda x: x[1:], 8, True, "mixes"),                                       # rows picked
    (lambda x: gc.cumsum(x, axis=0) if hasattr(gc, "cumsum") else x[::-1], 8, True, "mixes"),
    (lambda x: x, 7, True, "does not cut in 2 parts or fewer"),
])
def test_steps_the_rules_cannot_cut_stay_whole(parts, transform, batch, train, why):
    parts(2)
    reason = _refused(parts, lambda b: _plain(b, transform, train), lambda f: f, batch)
    assert why in reason


def test_too_little_work_stays_whole(parts, monkeypatch):
    parts(2)
    monkeypatch.delenv("GRAPHC_SPLIT_MIN_WORK")
    reason = _refused(parts, lambda b: _plain(b, lambda x: x), lambda f: f, 8)
    assert "too little work" in reason


def test_bad_settings_are_refused(monkeypatch):
    monkeypatch.setenv("GRAPHC_SPLIT_EXAMPLES", "two")
    g, fetches, feeds = _mlp()
    with g.as_default(), pytest.raises(CompileError, match="GRAPHC_SPLIT_EXAMPLES"):
        gc.compile(fetches, feeds=list(feeds), backend="numpy")(feeds)


@pytest.mark.parametrize("threads, backend, cut", [(2, "llvm", True), (1, "llvm", False),
                                                   (2, "numpy", False)])
def test_auto_cuts_an_rnn_on_llvm_with_threads(monkeypatch, threads, backend, cut):
    """An RNN's many small GEMMs each hand off between the threads when run in chunks: cut
    in parts instead, where there are threads (the default, "auto")."""
    monkeypatch.delenv("GRAPHC_SPLIT_EXAMPLES", raising=False)
    monkeypatch.setenv("GRAPHC_NUM_THREADS", str(threads))
    from graphc.runtime.threads import available_cores
    if available_cores() < threads:
        pytest.skip("needs more cores")
    _, _, program = _run(_rnn, backend, steps=1, batch=32, steps_=16, hidden=128,
                         dtype=np.float32)
    assert (getattr(program, "split_done", None) == (threads, 32)) == cut


def test_auto_leaves_an_mlp_of_big_gemms_in_chunks(monkeypatch):
    monkeypatch.delenv("GRAPHC_SPLIT_EXAMPLES", raising=False)
    monkeypatch.setenv("GRAPHC_NUM_THREADS", "2")
    from graphc.runtime.threads import available_cores
    if available_cores() < 2:
        pytest.skip("needs more cores")
    rng = np.random.default_rng(0)
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, [128, 512], name="x")
        w = gc.Variable(rng.standard_normal((512, 512)).astype(np.float32) * 0.05, name="w")
        loss = gc.reduce_mean(gc.tanh(gc.matmul(gc.tanh(gc.matmul(x, w)), w)))
        train = gc.train.GradientDescentOptimizer(0.1).minimize(loss)
        step = gc.compile([loss, train], feeds=[x], backend="llvm")
        step({x: rng.standard_normal((128, 512)).astype(np.float32)})
    assert "not faster" in step.compiled.program.split_refused


def test_cut_and_whole_steps_have_their_own_cache_entries(parts, monkeypatch, tmp_path):
    """Cut in 2, whole, cut in 2 again: the whole step is compiled (no hit on the cut one's
    entry), the third is a hit."""
    monkeypatch.setenv("GRAPHC_STEP_CACHE", "1")
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("GRAPHC_NO_CACHE", raising=False)
    hits = []
    for n in (2, 1, 2):
        parts(n)
        g, fetches, feeds = _mlp()
        with g.as_default():
            step = gc.compile(fetches, feeds=list(feeds), backend="llvm")
            step(feeds)
        hits.append("specialize" not in step.compiled.timings)
    assert hits == [False, False, True]


def test_parts_calling_blas_run_in_order(parts, monkeypatch):
    """BLAS has threads of its own: a body calling it runs its parts one after the other."""
    parts(2)
    monkeypatch.setenv("GRAPHC_NATIVE_GEMM", "0")
    monkeypatch.setenv("GRAPHC_NO_CACHE", "1")
    whole_parts = []
    for looped in (True, False):
        monkeypatch.setenv("GRAPHC_PARALLEL_LOOPS", "1" if looped else "0")
        g, fetches, feeds = _mlp(dtype=np.float32, batch=64)
        with g.as_default():
            step = gc.compile(fetches, feeds=list(feeds), backend="llvm")
        whole_parts.append(step.compiled.fn.llvm_ir)
        assert step.compiled.program.split_done == (2, 64)
        assert step.compiled.fn.layout.blas  # (the GEMMs are BLAS's)
    assert all(".iteration" not in text for text in whole_parts)


def test_parts_run_at_once_take_native_gemms_where_a_whole_step_calls_blas(parts,
                                                                             monkeypatch):
    """x w with 64 x 1024 x 1100 multiply-adds a part (above NATIVE_MAX_MACS): a whole step
    gives it to BLAS, which would make the parts run in order; a part runs on one core, so
    the body computes it natively and its parts run at once, with the whole step's numbers."""
    from graphc.codegen.llvm.kernels import gemm
    from graphc.codegen.llvm.kernels.gemm import NATIVE_MAX_MACS, vector_unit
    if vector_unit() is None:
        pytest.skip("host has no AVX2+FMA / AVX-512: every GEMM is BLAS's")
    assert 64 * 1024 * 1100 > max(NATIVE_MAX_MACS[1], NATIVE_MAX_MACS["threads"])
    monkeypatch.setattr(gemm, "blas_vector_bytes", lambda: None)  # (the usual size rule)
    monkeypatch.setenv("GRAPHC_NO_CACHE", "1")
    rng = np.random.default_rng(0)
    xv = rng.standard_normal((128, 1024)).astype(np.float32)
    wv = (rng.standard_normal((1024, 1100)) * 0.03).astype(np.float32)
    got = {}
    for n in (1, 2):
        parts(n)
        g = gc.Graph()
        with g.as_default():
            x = gc.placeholder(gc.float32, [128, 1024], name="x")
            w = gc.Variable(wv, name="w")
            loss = gc.reduce_mean(gc.tanh(gc.matmul(x, w)))
            train = gc.train.GradientDescentOptimizer(0.5).minimize(loss)
            step = gc.compile([loss, train], feeds=[x], backend="llvm")
            got[n] = step({x: xv})[0], step.variables["w"].copy()
        got[n, "blas"] = bool(step.compiled.fn.layout.blas)
        got[n, "ir"] = step.compiled.fn.llvm_ir
        assert getattr(step.compiled.program, "split_done", None) == ((2, 128) if n == 2
                                                                      else None)
    assert got[1, "blas"]  # (the cut step's weight gradient, after the loop, is BLAS's too)
    assert ".iteration" in got[2, "ir"] and ".iteration" not in got[1, "ir"]
    for whole, cut in zip(got[1], got[2]):
        np.testing.assert_allclose(cut, whole, rtol=1e-5, atol=1e-6)


def test_a_hand_off_costs_more_work_on_wider_vectors():
    """The estimate's hand-off is time on the host, counted in its work: twice the work where
    vectors are twice as wide (codegen.llvm.parallel.handoff_work)."""
    from graphc.codegen.llvm import parallel as P
    from graphc.codegen.llvm.kernels.gemm import VectorUnit
    sizes = {unit and unit.bytes: P.handoff_work(unit)
             for unit in (VectorUnit(32, 16), VectorUnit(64, 32), None)}
    assert sizes == {32: P.HANDOFF, 64: 2 * P.HANDOFF, None: P.HANDOFF}


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_a_cut_region_reading_a_variables_update(parts, backend):
    """The region reads the result of an update (``matmul(assign_add(v, 0.1 p), w)``, the
    fuzzer's seed 31116 shrunk): the loop reads the new value, so the update precedes it.
    It crashed twice: the reschedule ordered the update after the loop that reads it (a
    cycle), and the body, fed the update's value, was specialized as if it were an update."""
    rng = np.random.default_rng(5)
    results = []
    for n in (1, 2):
        parts(n)
        g = gc.Graph()
        with g.as_default():
            p = gc.placeholder(gc.float64, [8, 13], name="p")
            w = gc.placeholder(gc.float64, [13, 8], name="w")
            v = gc.Variable(np.linspace(-1, 1, 104).reshape(8, 13), name="v")
            out = gc.matmul(gc.assign_add(v, 0.1 * p), w)
            feeds = {p: np.ones((8, 13)), w: np.linspace(0, 1, 104).reshape(13, 8)}
            step = gc.compile([out], feeds=list(feeds), backend=backend)
            results.append([step(feeds)[0] for _ in range(2)])
    for a, b in zip(*results):
        np.testing.assert_allclose(b, a, rtol=1e-12)
    want = (np.linspace(-1, 1, 104).reshape(8, 13) + 0.1) @ feeds[w]
    np.testing.assert_allclose(results[1][0], want, rtol=1e-12)
