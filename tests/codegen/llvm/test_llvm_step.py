"""The LLVM backend as a whole: training steps agree with the NumPy reference over several
steps, results are bit-identical across runs, the object cache serves a second process and
survives corruption, variables are updated in place, errors are clear, dumps are written."""
import json
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import graphc as gc
from graphc.codegen.llvm import backend as llvm_backend
from graphc.codegen.llvm.registry import KERNELS
from graphc.errors import CompileError, InvalidArgumentError
from graphc.runtime.objcache import ObjectCache


def _mlp(seed=0, activation=gc.nn.relu, optimizer="sgd", clip=False):
    """A small MLP training step: (graph, x, y, loss, train, init)."""
    rng = np.random.default_rng(seed)
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, [None, 12], name="x")
        y = gc.placeholder(gc.int64, [None], name="y")
        w1 = gc.Variable(rng.standard_normal((12, 16)).astype(np.float32) * 0.3, name="w1")
        b1 = gc.Variable(np.zeros(16, np.float32), name="b1")
        w2 = gc.Variable(rng.standard_normal((16, 5)).astype(np.float32) * 0.3, name="w2")
        b2 = gc.Variable(np.zeros(5, np.float32), name="b2")
        logits = gc.matmul(activation(gc.matmul(x, w1) + b1), w2) + b2
        loss = gc.reduce_mean(gc.nn.sparse_softmax_cross_entropy_with_logits(
            labels=y, logits=logits))
        if optimizer == "adam":
            opt = gc.train.AdamOptimizer(0.01)
            grads, variables = zip(*opt.compute_gradients(loss))
            if clip:
                grads, _ = gc.clip_by_global_norm(list(grads), 1.0)
            train = opt.apply_gradients(list(zip(grads, variables)))
        else:
            train = gc.train.GradientDescentOptimizer(0.1).minimize(loss)
        init = gc.global_variables_initializer()
    return g, x, y, loss, train, init


def _cnn(seed=0):
    rng = np.random.default_rng(seed)
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, [None, 8, 8, 1], name="x")
        y = gc.placeholder(gc.int64, [None], name="y")
        k = gc.Variable(rng.standard_normal((3, 3, 1, 4)).astype(np.float32) * 0.3, name="k")
        bc = gc.Variable(np.array([0.1, -0.2, 0.0, 0.05], np.float32), name="bc")
        w = gc.Variable(rng.standard_normal((36, 3)).astype(np.float32) * 0.3, name="w")
        a = gc.nn.relu(gc.nn.conv2d(x, k, [1, 1, 1, 1], "VALID") + bc)
        p = gc.nn.max_pool(a, [1, 2, 2, 1], [1, 2, 2, 1], "VALID")
        logits = gc.matmul(gc.reshape(p, [-1, 36]), w)
        loss = gc.reduce_mean(gc.nn.sparse_softmax_cross_entropy_with_logits(
            labels=y, logits=logits))
        train = gc.train.GradientDescentOptimizer(0.1).minimize(loss)
        init = gc.global_variables_initializer()
    return g, x, y, loss, train, init


def _rnn(seed=0, steps=5):
    rng = np.random.default_rng(seed)
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, [steps, 4, 3], name="x")
        y = gc.placeholder(gc.int64, [4], name="y")
        wx = gc.Variable(rng.standard_normal((3, 6)).astype(np.float32) * 0.5, name="wx")
        wh = gc.Variable(rng.standard_normal((6, 6)).astype(np.float32) * 0.5, name="wh")
        wo = gc.Variable(rng.standard_normal((6, 2)).astype(np.float32) * 0.5, name="wo")
        h = gc.zeros([4, 6])
        for t in range(steps):
            h = gc.tanh(gc.matmul(x[t], wx) + gc.matmul(h, wh))
        loss = gc.reduce_mean(gc.nn.sparse_softmax_cross_entropy_with_logits(
            labels=y, logits=gc.matmul(h, wo)))
        train = gc.train.GradientDescentOptimizer(0.1).minimize(loss)
        init = gc.global_variables_initializer()
    return g, x, y, loss, train, init


MODELS = {
    "mlp_relu_sgd": (lambda: _mlp(), (10, 12), 5),
    "mlp_tanh_adam_clip": (lambda: _mlp(activation=gc.tanh, optimizer="adam", clip=True),
                           (10, 12), 5),
    "cnn_pool_sgd": (_cnn, (6, 8, 8, 1), 3),
    "rnn_bptt_sgd": (_rnn, (5, 4, 3), 2),
}


def _data(shape, classes, seed):
    rng = np.random.default_rng(seed)
    x = rng.random(shape).astype(np.float32)
    if len(shape) == 4:  # flat image regions: pooling windows with tied maxima
        x = np.round(x * 2) / 2
    return x, rng.integers(0, classes, shape[1] if len(shape) == 3 else shape[0])


def _train(model, backend, optimize, steps=4):
    build, shape, classes = MODELS[model]
    g, x, y, loss, train, init = build()
    with gc.Session(graph=g, backend=backend, optimize=optimize) as sess:
        sess.run(init)
        losses = []
        for t in range(steps):
            xb, yb = _data(shape, classes, t)
            losses.append(sess.run([loss, train], {x: xb, y: yb})[0])
        values = {v.op.name: np.array(sess.values[v]) for v in g.get_collection("variables")}
    return np.array(losses), values


@pytest.mark.parametrize("model", list(MODELS))
def test_training_steps_match_the_reference(model):
    """Several steps: in-place update bugs show only from the second step on."""
    ref_losses, ref_values = _train(model, "numpy", False)
    for optimize in (False, True):
        losses, values = _train(model, "llvm", optimize)
        np.testing.assert_allclose(losses, ref_losses, rtol=2e-5, atol=1e-6,
                                   err_msg=f"{model} optimize={optimize}")
        for name, want in ref_values.items():
            np.testing.assert_allclose(values[name], want, rtol=1e-4, atol=1e-6,
                                       err_msg=f"{model} {name} optimize={optimize}")


def test_two_runs_are_bit_identical():
    first = _train("mlp_tanh_adam_clip", "llvm", True)
    second = _train("mlp_tanh_adam_clip", "llvm", True)
    assert first[0].tobytes() == second[0].tobytes()
    for name, value in first[1].items():
        assert value.tobytes() == second[1][name].tobytes(), name


def test_variables_are_updated_in_place():
    g, x, y, loss, train, init = _mlp()
    xb, yb = _data((10, 12), 5, 0)
    with gc.Session(graph=g, backend="llvm") as sess:
        sess.run(init)
        arrays = {v: sess.values[v] for v in g.get_collection("variables")}
        before = {v: a.copy() for v, a in arrays.items()}
        sess.run(train, {x: xb, y: yb})
        for v, a in arrays.items():
            assert sess.values[v] is a, f"{v.name} was replaced, not updated in place"
            assert not np.array_equal(a, before[v]), f"{v.name} did not change"


_CHILD = textwrap.dedent("""
    import json, sys
    import numpy as np
    import graphc as gc
    x = gc.placeholder(gc.float32, [8], name="x")
    w = gc.Variable(np.linspace(-1, 1, 8).astype(np.float32), name="w")
    y = gc.reduce_sum(gc.tanh(x * w) + gc.exp(-x))
    with gc.Session(backend="llvm") as sess:
        sess.run(gc.global_variables_initializer())
        value = float(sess.run(y, {x: np.arange(8, dtype=np.float32) / 8}))
        step = next(iter(sess._cache.values())).fn
    print(json.dumps({"hit": step.artifacts.cache_hit, "value": value}))
""")


def _child(cache_dir):
    env = dict(os.environ, GRAPHC_CACHE_DIR=str(cache_dir))
    env.pop("GRAPHC_NO_CACHE", None)
    out = subprocess.run([sys.executable, "-c", _CHILD], env=env, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_cache_is_hit_in_a_second_process(tmp_path):
    first, second = _child(tmp_path), _child(tmp_path)
    assert not first["hit"] and second["hit"]
    assert first["value"] == second["value"]
    assert len(list(tmp_path.glob("*.gcobj"))) >= 1  # (an initializer of constants is
    # copied by the session, not compiled: ``feeds.constant_assigns``)


def test_corrupted_cache_entry_is_recompiled_not_run(tmp_path, monkeypatch):
    cache = ObjectCache(tmp_path, enabled=True)
    monkeypatch.setattr(llvm_backend, "default_cache", lambda: cache)
    x = gc.placeholder(gc.float32, [5], name="x")
    y = gc.sqrt(x) * 3.0
    feed = {x: np.arange(5, dtype=np.float32)}
    with gc.Session(backend="llvm") as sess:
        want = sess.run(y, feed)
    (entry,) = tmp_path.glob("*.gcobj")
    data = bytearray(entry.read_bytes())
    data[-100:-90] = b"\xff" * 10  # damage the machine code, not the header
    entry.write_bytes(bytes(data))
    with gc.Session(backend="llvm") as sess:
        got = sess.run(y, feed)
    assert cache.corrupt == 1 and cache.hits == 0
    np.testing.assert_array_equal(got, want)
    with gc.Session(backend="llvm") as sess:  # rewritten: the next compile is a clean hit
        sess.run(y, feed)
    assert cache.hits == 1


def test_op_without_kernel_is_a_compile_error(monkeypatch):
    monkeypatch.delitem(KERNELS, "one_hot")
    i = gc.placeholder(gc.int32, [3], name="i")
    h = gc.one_hot(i, 4, name="hot")
    with gc.Session(backend="llvm") as sess:
        with pytest.raises(CompileError, match=r"one_hot 'hot'.*no kernel for op 'one_hot'"):
            sess.run(h, {i: np.array([0, 1, 2], np.int32)})


def test_out_of_range_indices_and_labels_raise():
    p = gc.placeholder(gc.float32, [4, 3], name="p")
    i = gc.placeholder(gc.int32, [2], name="i")
    z = gc.placeholder(gc.float32, [2, 3], name="z")
    y = gc.placeholder(gc.int64, [2], name="y")
    rows = gc.gather(p, i, name="rows")
    xent = gc.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=z, name="xent")
    pv, zv = np.ones((4, 3), np.float32), np.zeros((2, 3), np.float32)
    with gc.Session(backend="llvm") as sess:
        np.testing.assert_array_equal(sess.run(rows, {p: pv, i: np.array([3, 0], np.int32)}),
                                      pv[[3, 0]])
        with pytest.raises(InvalidArgumentError,  # negative too, as TF1 (runtime.step_errors)
                           match=r"gather 'rows': index -1 at \[1\] is outside \[0, 4\)"):
            sess.run(rows, {p: pv, i: np.array([3, -1], np.int32)})
        with pytest.raises(InvalidArgumentError, match=r"gather 'rows': index 7 at \[1\]"):
            sess.run(rows, {p: pv, i: np.array([0, 7], np.int32)})
        with pytest.raises(InvalidArgumentError,
                           match=r"sparse_softmax_xent 'xent': label 3 at \[1\] is outside"):
            sess.run(xent, {z: zv, y: np.array([0, 3])})
        np.testing.assert_allclose(sess.run(xent, {z: zv, y: np.array([0, 2])}),
                                   np.log(3.0) * np.ones(2), rtol=1e-6)


def test_random_ops_fresh_seeded_and_distributed():
    g = gc.Graph()
    with g.as_default():
        u = gc.random_uniform([200, 100], minval=-1.0, maxval=3.0, seed=5)
        n = gc.random_normal([200, 100], mean=1.0, stddev=2.0, seed=7)
        t = gc.truncated_normal([200, 100], dtype=gc.float64, seed=9)
    with gc.Session(graph=g, backend="llvm") as sess:
        a, b, c = sess.run([u, n, t])
        a2 = sess.run([u, n, t])[0]
    with gc.Session(graph=g, backend="llvm") as sess:
        a3 = sess.run([u, n, t])[0]
    assert a.dtype == np.float32 and c.dtype == np.float64
    assert not np.array_equal(a, a2), "each run draws fresh values"
    assert np.array_equal(a, a3), "a fixed seed reproduces the sequence in a new session"
    assert -1.0 <= a.min() and a.max() < 3.0 and abs(a.mean() - 1.0) < 0.05
    assert abs(a.var() - 16 / 12) < 0.05
    assert abs(b.mean() - 1.0) < 0.05 and abs(b.std() - 2.0) < 0.05
    assert np.abs(c).max() <= 2.0 and abs(c.std() - 0.8796) < 0.02
    # neighbouring elements are uncorrelated
    flat = b.reshape(-1)
    assert abs(np.corrcoef(flat[:-1], flat[1:])[0, 1]) < 0.02


def test_max_pool_gradient_goes_to_the_first_tied_maximum():
    x = gc.placeholder(gc.float32, [1, 2, 4, 1], name="x")
    y = gc.nn.max_pool(x, [1, 2, 2, 1], [1, 2, 2, 1], "VALID")
    (g,) = gc.gradients(gc.reduce_sum(y * 3.0), [x])
    xv = np.array([[1, 1, 0, 2], [1, 0, 2, 2]], np.float32).reshape(1, 2, 4, 1)
    want = np.array([[3, 0, 0, 3], [0, 0, 0, 0]], np.float32).reshape(1, 2, 4, 1)
    for optimize in (False, True):
        with gc.Session(backend="llvm", optimize=optimize) as sess:
            np.testing.assert_array_equal(sess.run(g, {x: xv}), want)


def test_dumps_hold_ir_optimized_ir_and_assembly(tmp_path):
    x = gc.placeholder(gc.float32, [64], name="x")
    y = gc.reduce_sum(gc.exp(x) * 2.0)
    with gc.Session(backend="llvm", dump_dir=str(tmp_path)) as sess:
        sess.run(y, {x: np.zeros(64, np.float32)})
    (d,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    ir = (d / "step.ll").read_text()
    assert "define void @step(ptr" in ir and "noinline" in ir
    assert "<8 x float>" in (d / "step.opt.ll").read_text() or \
        "<16 x float>" in (d / "step.opt.ll").read_text(), "the fused loop is vectorized"
    assert "step:" in (d / "step.s").read_text()


def test_check_numerics_stops_the_step_with_numerics_error():
    x = gc.placeholder(gc.float32, [4], name="x")
    y = gc.check_numerics(gc.log(x), "log of x") * 2.0
    for optimize in (False, True):
        with gc.Session(backend="llvm", optimize=optimize) as sess:
            np.testing.assert_array_equal(sess.run(y, {x: np.ones(4, np.float32)}), 0.0)
            with pytest.raises(gc.errors.NumericsError,
                               match=r"(?s)flat index 1\).*message: log of x"):
                sess.run(y, {x: np.array([1, 0, 1, 1], np.float32)})


def test_allreduce_mean_in_one_process_is_the_identity():
    from graphc.ir.ops import F
    x = gc.placeholder(gc.float32, [6], name="x")
    y = F.allreduce_mean(x * 2.0) + 1.0
    xv = np.arange(6, dtype=np.float32)
    with gc.Session(backend="llvm") as sess:
        np.testing.assert_array_equal(sess.run(y, {x: xv}), xv * 2 + 1)


@pytest.mark.parametrize("batch", [False, True], ids=["accumulate", "batch"])
def test_lowering_merges_loops_and_accumulates_gemms(batch, monkeypatch):
    """What the lowering did, counted: the RNN's products accumulate by BLAS (beta = 1) or,
    batched, its input projections and weight-gradient sums become single GEMMs; Adam's three
    updates per variable share one loop."""
    from graphc.codegen.llvm.kernels import gemm_acc as llvm_gemm_acc
    from graphc.client.pipeline import compile_program
    monkeypatch.setattr(llvm_gemm_acc, "BATCH", batch)
    g, x, y, loss, train, _ = _rnn(steps=5)
    stats = compile_program([loss, train], {x: (5, 4, 3), y: (4,)}, "llvm").fn.artifacts.stats
    if batch:  # x_t Wx for all t, d/d Wx (5 products), d/d Wh (4): three GEMMs
        assert stats["batched_matmuls"] >= 5 + 5 + 4 and stats["accumulated_matmuls"] >= 4
    else:  # d/d Wx sums 5 products, d/d Wh 4, and later forward steps add h Wh to x_t Wx
        assert stats["batched_matmuls"] == 0 and stats["accumulated_matmuls"] >= 9 + 4
    assert stats["kernel_functions"] < stats["kernel_calls"], "time steps share kernels"
    assert stats["transposed_operands"] == 1, "dh = da Wh^T reads one contiguous Wh^T copy"
    g, x, y, loss, train, _ = _mlp(optimizer="adam")
    stats = compile_program([loss, train], {x: (10, 12), y: (10,)}, "llvm").fn.artifacts.stats
    # m, v and the parameter: one loop per variable (w2's parameter update follows the GEMM of
    # dh, so 7 of the 8 merges; the beta powers' scalar updates wait for the loss's label check)
    assert stats["merged_loops"] >= 2 * 4 - 1, "m, v and the parameter: one loop per variable"


def test_rnn_with_batched_gemms_matches_the_reference(monkeypatch):
    from graphc.codegen.llvm.kernels import gemm_acc as llvm_gemm_acc
    monkeypatch.setattr(llvm_gemm_acc, "BATCH", True)
    ref_losses, ref_values = _train("rnn_bptt_sgd", "numpy", False)
    losses, values = _train("rnn_bptt_sgd", "llvm", True)
    np.testing.assert_allclose(losses, ref_losses, rtol=2e-5, atol=1e-6)
    for name, want in ref_values.items():
        np.testing.assert_allclose(values[name], want, rtol=1e-4, atol=1e-6, err_msg=name)


def test_conv_epilogue_and_pooled_relu_mask_fold_into_kernels():
    """relu(conv + b) is applied by the convolution's kernel to each output row, which also
    pools them, where(a > 0, max_pool_grad(a, dy), 0) is computed by the pool gradient's
    kernel, and the bias gradient by the filter gradient's (the values themselves are checked
    by test_training_steps_match_the_reference)."""
    from graphc.client.pipeline import compile_program
    g, x, y, loss, train, _ = _cnn()
    stats = compile_program([loss, train], {x: (6, 8, 8, 1), y: (6,)}, "llvm").fn.artifacts.stats
    assert stats["folded_nodes"] == 4  # (3 before conv_pool folded the pool)


def test_folds_show_in_the_stats_the_ir_and_the_dump_directory(tmp_path):
    """Each fold that fired is named, with its nodes and the user's line, in the lowering's
    stats, at the top of step.ll and in folds.txt."""
    from graphc.client.pipeline import compile_program, step_stats
    g, x, y, loss, train, _ = _cnn()
    compiled = compile_program([loss, train], {x: (6, 8, 8, 1), y: (6,)}, "llvm",
                               dump_dir=str(tmp_path))
    notes = compiled.fn.artifacts.stats["folds"]
    assert sorted(n.split(":")[0] for n in notes) == ["bias_gradient", "conv_epilogue",
                                                      "conv_pool", "relu_mask"]
    epilogue = next(n for n in notes if n.startswith("conv_epilogue"))
    assert re.match(r"conv_epilogue: conv2d '[^']+' test_llvm_step\.py:\d+ \+ fused '", epilogue)
    text = str(compiled.source)
    assert all(f"; fold {n}\n" in text for n in notes)
    assert (tmp_path / "folds.txt").read_text().splitlines() == notes
    assert step_stats(compiled)["folds"] == notes


def _three_dense(dtype=gc.float32):
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(dtype, [4, 8], name="x")
        ys = [gc.matmul(x, gc.constant(np.full((8, 5), k + 1.0), dtype), name=f"dense{k}/matmul")
              for k in range(3)]
    return x, ys


def test_kernels_are_named_after_their_nodes_with_the_users_line():
    """``@k<N>_<node name>`` symbols; a comment naming the op, the node and the user's line
    before each kernel and each call; a kernel shared by identical nodes is named after the
    first and lists the others; compiling again gives the same text (the object cache key)."""
    from graphc.client.pipeline import compile_program
    texts = []
    for _ in range(2):
        x, ys = _three_dense()
        texts.append(str(compile_program(ys, {x: (4, 8)}, "llvm").source))
    assert texts[0] == texts[1]
    text = texts[0]
    line = re.search(r"; kernel matmul 'dense0/matmul' test_llvm_step\.py:(\d+)\n"
                     r";   also matmul 'dense1/matmul' test_llvm_step\.py:\1\n"
                     r";   also matmul 'dense2/matmul' test_llvm_step\.py:\1\n"
                     r"define internal void @(k\d+_dense0_matmul)\(", text)
    assert line is not None, text[:3000]
    symbol = line.group(2)
    # (the step calls each kernel through its address, loaded into a value named after it)
    calls = re.findall(r"  ; matmul '(dense\d)/matmul' test_llvm_step\.py:\d+\n"
                       r"(?:  %[\w.]+ = (?:load|getelementptr) .*\n)*"
                       r"  call void %(\w+)\.\d+\(", text)
    assert calls == [(f"dense{k}", symbol) for k in range(3)]
    assert not re.search(r"@fused_[0-9a-f]{12}|@matmul_[0-9a-f]{12}", text)


@pytest.mark.parametrize("rows", [3, 37, 64])
def test_column_reductions_of_many_rows(rows):
    """Bias-gradient reductions ([rows, C] -> [C]) run on vector accumulators with a tail."""
    x = gc.placeholder(gc.float32, [rows, 5], name="x")
    outs = [gc.reduce_sum(x, axis=0), gc.reduce_max(x, axis=0), gc.reduce_mean(x, axis=0)]
    xv = np.random.default_rng(rows).standard_normal((rows, 5)).astype(np.float32)
    xv[rows // 2, 1] = np.nan
    with gc.Session(backend="llvm") as sess:
        got = sess.run(outs, {x: xv})
    for g, want in zip(got, [xv.sum(0), xv.max(0), xv.mean(0)]):
        np.testing.assert_allclose(g, want, rtol=2e-6, atol=1e-6, equal_nan=True)


def test_empty_operands():
    """Zero-size tensors: empty products are zeros, empty outputs are empty (no BLAS call)."""
    a = gc.placeholder(gc.float32, [None, 4], name="a")
    b = gc.placeholder(gc.float32, [4, None], name="b")
    c = gc.placeholder(gc.float32, [3, None], name="c")
    d = gc.placeholder(gc.float32, [None, 2], name="d")
    prod, empty_sum = gc.matmul(a, b), gc.matmul(c, d)
    total = gc.reduce_sum(gc.exp(a), axis=0)
    with gc.Session(backend="llvm") as sess:
        p, e, t = sess.run([prod, empty_sum, total], {
            a: np.zeros((0, 4), np.float32), b: np.ones((4, 5), np.float32),
            c: np.ones((3, 0), np.float32), d: np.ones((0, 2), np.float32)})
    assert p.shape == (0, 5) and e.shape == (3, 2) and np.all(e == 0)
    np.testing.assert_array_equal(t, np.zeros(4, np.float32))


def test_concurrent_calls_take_turns():
    import threading
    x = gc.placeholder(gc.float32, [1000], name="x")
    y = gc.reduce_sum(gc.exp(x) * 2.0)
    with gc.Session(backend="llvm") as sess:
        feeds = [np.full(1000, k / 10, np.float32) for k in range(4)]
        want = [sess.run(y, {x: f}) for f in feeds]
        got = [[] for _ in feeds]

        def work(k):
            for _ in range(50):
                got[k].append(sess.run(y, {x: feeds[k]}))
        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    for k in range(4):
        assert all(v == want[k] for v in got[k])


def test_identical_kernels_are_built_once_and_the_step_is_glue(monkeypatch):
    """Three identical dense layers: the GEMM kernel is built once (``Lowering.built``) and
    called three times; the exported step is not optimized (``optnone``), allocates its
    context arrays (of kernels run in chunks) at entry, loads the pointers each call passes
    and calls kernels through their addresses (stored once, at entry)."""
    from graphc.client.pipeline import compile_program
    from graphc.codegen.llvm.kernels import elementwise
    built = []
    real = elementwise.gemm_kernel
    monkeypatch.setattr(elementwise, "gemm_kernel", lambda *a: built.append(a) or real(*a))
    monkeypatch.setenv("GRAPHC_PARALLEL_MIN_WORK", "1")  # (GEMMs in chunks: context arrays)
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, [32, 64], name="x")
        ws = [np.full((64, 64), k + 1.0, np.float32) for k in range(3)]
        ys = [gc.matmul(x, gc.constant(w), name=f"dense{k}/matmul") for k, w in enumerate(ws)]
    compiled = compile_program(ys, {x: (32, 64)}, "llvm")
    text = str(compiled.source)
    assert len(built) == 1
    step = text[text.index("define void @step("):]
    assert step.splitlines()[0].endswith("nounwind noinline optnone {")
    assert len(re.findall(r"call void %s\.\d+\(ptr %k\d+_dense0_matmul\.task", step)) == 3
    body = step.splitlines()[2:]
    allocas = [i for i, line in enumerate(body) if " = alloca " in line]
    assert sum("%ctx" in body[i] for i in allocas) == 3
    assert allocas == list(range(len(allocas))), "allocas open the entry block"
    assert len(re.findall(r"  store ptr @k\d+_dense0_matmul\.task", step)) == 1
    assert not re.search(r"call void @k", step), "kernels are called through their addresses"
    xv = np.random.default_rng(0).standard_normal((32, 64)).astype(np.float32)
    got, _ = compiled.fn(xv)
    for y, w in zip(got, ws):
        np.testing.assert_allclose(y, xv @ w, rtol=1e-5)


@pytest.mark.parametrize("zero_first", [True, False], ids=["max(0,x)", "max(x,0)"])
def test_relu_written_as_maximum_of_zero_in_gemm_and_conv_epilogues(zero_first):
    """``maximum(0, x)`` is a ReLU whichever side the zero is on: in a GEMM's epilogue and in
    a convolution's it is written as a select, and a zero on the left used to crash the
    compile (the fuzzer, seed 81416: a NumPy bool used as an index)."""
    rng = np.random.default_rng(3)
    av, bv = rng.standard_normal((4, 6)).astype(np.float32), rng.standard_normal((6, 40)).astype(
        np.float32)
    xv = rng.standard_normal((2, 6, 6, 1)).astype(np.float32)
    kv = rng.standard_normal((3, 3, 1, 8)).astype(np.float32)
    out = {}
    for backend in ("llvm", "numpy"):
        g = gc.Graph()
        with g.as_default():
            a, b = gc.placeholder(gc.float32, av.shape), gc.placeholder(gc.float32, bv.shape)
            x, k = gc.placeholder(gc.float32, xv.shape), gc.placeholder(gc.float32, kv.shape)

            def relu(t):
                return gc.maximum(0.0, t) if zero_first else gc.maximum(t, 0.0)
            fetches = [relu(gc.matmul(gc.identity(a), b)),
                       relu(gc.nn.conv2d(x, k, [1, 1, 1, 1], "VALID") + 0.25)]
            step = gc.compile(fetches, feeds=[a, b, x, k], backend=backend)
        out[backend] = [np.asarray(v) for v in step({a: av, b: bv, x: xv, k: kv})]
    for got, want in zip(out["llvm"], out["numpy"]):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
