"""Max pooling computed by the convolution's kernel (the LLVM fold ``folds.conv_pool``): the
convolution's output is never stored, each band of output rows is pooled from a stack buffer
and the argmax saved for the backward kernels. Values and gradients (first and second order)
agree exactly with the unoptimized NumPy reference on integer data (every sum exact, many
tied maxima, NaN and -inf), and bit for bit with the same step without the fold on random
data; the fold stays away where something else would read the convolution's output."""
import numpy as np
import pytest

import graphc as gc
from graphc.client.pipeline import compile_program
from graphc.codegen.llvm import folds
from tests.support.folds import watch_fold

# (name, x shape, filter (kh, kw, out), conv strides, conv padding, epilogue, pool ksize,
#  pool strides, pool padding)
CASES = [
    ("w4", (2, 10, 10, 1), (3, 3, 8), (1, 1), "VALID", "relu", (2, 2), (2, 2), "VALID"),
    ("rows_left_over", (2, 11, 12, 2), (3, 3, 4), (1, 1), "VALID", None, (2, 2), (2, 2),
     "VALID"),  # 9x10 conv rows: the ninth row and tenth column are pooled by no window
    ("three_by_three", (1, 11, 11, 1), (3, 3, 4), (1, 1), "VALID", "relu", (3, 3), (3, 3),
     "VALID"),
    ("one_by_two", (2, 6, 9, 1), (2, 2, 8), (1, 1), "VALID", "relu", (1, 2), (1, 2), "VALID"),
    ("strided_conv", (2, 13, 13, 1), (3, 3, 8), (2, 2), "VALID", "relu", (2, 2), (2, 2),
     "VALID"),  # the per-position kernel (not row-blocked)
    ("same_conv", (2, 8, 8, 1), (3, 3, 8), (1, 1), "SAME", "relu", (2, 2), (2, 2), "SAME"),
    ("sixteen_channels", (1, 6, 6, 1), (3, 3, 16), (1, 1), "VALID", "relu", (2, 2), (2, 2),
     "VALID"),
    ("forty_channels", (2, 8, 9, 1), (3, 3, 40), (1, 1), "VALID", "relu", (2, 2), (2, 2),
     "VALID"),  # rows of several vectors; 7 columns: the windows do not tile, and the
    # pooled ReLU's mask (written over the activation) folds as the argmax is saved
    ("one_tap_windows", (2, 6, 6, 2), (2, 2, 4), (1, 1), "VALID", "relu", (1, 1), (1, 1),
     "VALID"),  # a band of one row, the first tap alone
]


def _graph(case, dtype, grads=True, second=False):
    _, shape, (kh, kw, cout), cs, cpad, epilogue, ks, ps, ppad = case
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(dtype, list(shape), name="x")
        k = gc.placeholder(dtype, [kh, kw, shape[3], cout], name="k")
        b = gc.placeholder(dtype, [cout], name="b")
        a = gc.nn.conv2d(x, k, [1, *cs, 1], cpad)
        if epilogue is not None:
            a = a + b
        if epilogue == "relu":
            a = gc.nn.relu(a)
        p = gc.nn.max_pool(a, [1, *ks, 1], [1, *ps, 1], ppad)
        r = gc.placeholder(dtype, p.shape, name="r")
        fetches = [p]
        if grads:
            loss = gc.reduce_sum(p * p * 0.5 + p * r)  # dp = p + r
            wrt = [x, k] + ([b] if epilogue is not None else [])
            fetches += gc.gradients(loss, wrt)
        if second:  # d/dk of a function of dx: the ReLU's mask reads the activation again
            (ggk,) = gc.gradients(gc.reduce_sum(fetches[1] * x), [k])
            fetches.append(ggk)
    return g, (x, k, b, r), fetches


def _feeds(feeds, fetches, dtype, seed, integer=True):
    x, k, b, r = feeds
    rng = np.random.default_rng(seed)
    shapes = [tuple(x.shape), tuple(k.shape), tuple(b.shape), tuple(fetches[0].shape)]
    if integer:  # exact sums, tied maxima, and a few NaNs and -infs in the image
        vals = [rng.integers(-2, 3, s).astype(dtype) for s in shapes]
        flat = vals[0].reshape(-1)
        flat[rng.choice(flat.size, max(1, flat.size // 50), replace=False)] = np.nan
        flat[rng.choice(flat.size, max(1, flat.size // 50), replace=False)] = -np.inf
    else:
        vals = [rng.standard_normal(s).astype(dtype) for s in shapes]
    return dict(zip(feeds, vals))


def _run(case, backend, dtype=np.float32, seed=0, integer=True, grads=True, without=False,
         second=False):
    g, feeds, fetches = _graph(case, gc.float32 if dtype == np.float32 else gc.float64, grads,
                               second)
    saved = folds.FOLDS.pop("conv_pool") if without else None
    try:
        used = [f for f in feeds if (grads or f is not feeds[3]) and
                (case[5] is not None or f is not feeds[2])]
        with g.as_default():
            step = gc.compile(fetches, feeds=used, backend=backend,
                              optimize=backend == "llvm")
        folds_fired = []
        if backend == "llvm":
            folds_fired = [n.split(":")[0] for n in step.compiled.fn.artifacts.stats["folds"]]
        values = _feeds(feeds, fetches, dtype, seed, integer)
        return [np.asarray(v) for v in step({f: values[f] for f in used})], folds_fired
    finally:
        if saved is not None:
            folds.FOLDS["conv_pool"] = saved


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_pooling_convolutions_agree_exactly_with_the_reference(case, dtype):
    got, fired = _run(case, "llvm", dtype)
    assert "conv_pool" in fired
    want, _ = _run(case, "numpy", dtype)
    for name, a, b in zip(("pooled", "dx", "dk", "db"), got, want):
        np.testing.assert_array_equal(a, b, err_msg=name)


@pytest.mark.parametrize("case", CASES[:2], ids=[c[0] for c in CASES[:2]])
def test_second_order_reads_the_activation_so_the_fold_stays_away(case):
    """The gradient of dx needs the ReLU's mask at every position, not only at the argmax:
    the convolution's output is stored, and the values still agree."""
    got, fired = _run(case, "llvm", second=True)
    assert "conv_pool" not in fired
    want, _ = _run(case, "numpy", second=True)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_the_fold_changes_no_bit(case):
    got, fired = _run(case, "llvm", integer=False, seed=3)
    same, unfired = _run(case, "llvm", integer=False, seed=3, without=True)
    assert "conv_pool" in fired and "conv_pool" not in unfired
    for a, b in zip(got, same):
        np.testing.assert_array_equal(a, b)


def test_inference_pools_without_saving_the_argmax():
    """No backward op reads the argmax: the kernel stores only the pooled values."""
    case = CASES[0]
    g, feeds, fetches = _graph(case, gc.float32, grads=False)
    shapes = {f: tuple(f.shape) for f in feeds[:3]}
    stats = compile_program(fetches, shapes, "llvm").fn.artifacts.stats
    assert any(n.startswith("conv_pool") for n in stats["folds"])
    assert stats["saved_argmax"] == 0
    got, _ = _run(case, "llvm", grads=False)
    want, _ = _run(case, "numpy", grads=False)
    np.testing.assert_array_equal(got[0], want[0])


def test_split_kernels_pool_each_chunk_in_its_own_band(monkeypatch):
    """Every kernel in chunks on the pool (each chunk its own stack buffer): same bits."""
    monkeypatch.setenv("GRAPHC_PARALLEL_MIN_WORK", "1")
    case = ("w4_batch", (8, 10, 10, 1)) + CASES[0][2:]
    got, fired = _run(case, "llvm", integer=False, seed=4)
    same, _ = _run(case, "llvm", integer=False, seed=4, without=True)
    assert "conv_pool" in fired
    for a, b in zip(got, same):
        np.testing.assert_array_equal(a, b)


def _fold_names(fetches, feeds):
    shapes = {f: tuple(f.shape) for f in feeds}
    return [n.split(":")[0] for n in
            compile_program(fetches, shapes, "llvm").fn.artifacts.stats["folds"]]


def _conv_relu(pool=((2, 2), (2, 2), "VALID")):
    x = gc.placeholder(gc.float32, [2, 10, 10, 1], name="x")
    k = gc.placeholder(gc.float32, [3, 3, 1, 8], name="k")
    a = gc.nn.relu(gc.nn.conv2d(x, k, [1, 1, 1, 1], "VALID") + 0.5)  # (a fused epilogue)
    ks, ps, pad = pool
    return x, k, a, gc.nn.max_pool(a, [1, *ks, 1], [1, *ps, 1], pad)


def test_the_fold_stays_away_when_something_else_reads_the_convolution():
    with gc.Graph().as_default():
        x, k, a, p = _conv_relu()
        assert "conv_pool" in _fold_names([p], [x, k])
        assert "conv_pool" not in _fold_names([p, a], [x, k]), "the activation is fetched"
        s = gc.reduce_sum(a, axis=[1, 2])
        assert "conv_pool" not in _fold_names([p, s], [x, k]), "another op reads it"
        (dk,) = gc.gradients(gc.reduce_sum(p), [k])  # the pool gradient reads x itself...
        assert "conv_pool" in _fold_names([p, dk], [x, k])  # ...from the saved argmax


@pytest.mark.parametrize("pool", [((2, 2), (1, 1), "VALID"), ((3, 3), (3, 3), "SAME"),
                                  ((2, 2), (3, 3), "VALID")],
                         ids=["overlapping", "padded", "gaps"])
def test_the_fold_needs_windows_side_by_side_inside_the_image(pool):
    with gc.Graph().as_default():
        x, k, a, p = _conv_relu(pool)
        assert "conv_pool" not in _fold_names([p], [x, k])


def test_a_cut_steps_halves_pool_in_the_convolution_unless_the_activation_is_fetched(
        monkeypatch):
    """Every step cut in two halves (a loop over the batch): the body's convolution pools,
    and when the activation is fetched (a stacked result of the body) it is stored instead;
    values as the reference's either way."""
    monkeypatch.setenv("GRAPHC_SPLIT_EXAMPLES", "2")
    monkeypatch.setenv("GRAPHC_SPLIT_MIN_WORK", "1")
    fired = watch_fold(monkeypatch, "conv_pool")
    rng = np.random.default_rng(7)
    k0 = rng.standard_normal((3, 3, 1, 8)).astype(np.float32) * 0.3
    w0 = rng.standard_normal((128, 10)).astype(np.float32) * 0.1
    xv = rng.standard_normal((8, 10, 10, 1)).astype(np.float32)
    yv = rng.integers(0, 10, 8)

    def run(backend, fetch_activation):
        g = gc.Graph()
        with g.as_default():
            x = gc.placeholder(gc.float32, [8, 10, 10, 1])
            y = gc.placeholder(gc.int64, [8])
            k, w = gc.Variable(k0), gc.Variable(w0)
            a = gc.nn.relu(gc.nn.conv2d(x, k, [1, 1, 1, 1], "VALID") + 0.1)
            p = gc.nn.max_pool(a, [1, 2, 2, 1], [1, 2, 2, 1], "VALID")
            loss = gc.reduce_mean(gc.nn.sparse_softmax_cross_entropy_with_logits(
                labels=y, logits=gc.matmul(gc.reshape(p, [8, 128]), w)))
            train = gc.train.GradientDescentOptimizer(0.1).minimize(loss)
            fetches = [loss, a, train] if fetch_activation else [loss, train]
            step = gc.compile(fetches, feeds=[x, y], backend=backend)
            out = step({x: xv, y: yv})
            return [np.asarray(o) for o in out if o is not None], step.variables
    for fetch_activation in (False, True):
        fired.clear()
        got, got_vars = run("llvm", fetch_activation)
        assert fired == [not fetch_activation]
        want, want_vars = run("numpy", fetch_activation)
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
        for name in want_vars:
            np.testing.assert_allclose(got_vars[name], want_vars[name], rtol=1e-5, atol=1e-6)


def test_without_the_saved_argmax_the_mask_over_the_activation_does_not_fold(monkeypatch):
    """Windows that do not tile, and the pooled ReLU's mask planned over the activation: the
    mask folds into the pool gradient only when that reads the saved argmax; recomputing
    the argmax from the activation it would overwrite, it stays a loop of its own."""
    from graphc.codegen.llvm.kernels import pool
    case = next(c for c in CASES if c[0] == "forty_channels")
    monkeypatch.setattr(pool, "SAVE", False)
    got, fired = _run(case, "llvm")
    assert "relu_mask" not in fired and "conv_pool" not in fired
    want, _ = _run(case, "numpy")
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)
    monkeypatch.setattr(pool, "SAVE", True)
    assert {"relu_mask", "conv_pool"} <= set(_run(case, "llvm")[1])


def test_a_dilated_convolution_pools_too():
    """Taps two apart (the per-position kernel): pooled in the kernel, exact values and
    gradients on integer data."""
    rng = np.random.default_rng(1)
    xv = rng.integers(-2, 3, (2, 12, 12, 1)).astype(np.float32)
    kv = rng.integers(-2, 3, (3, 3, 1, 8)).astype(np.float32)
    rv = rng.integers(-2, 3, (2, 4, 4, 8)).astype(np.float32)
    out, fired = {}, []
    for backend in ("llvm", "numpy"):
        g = gc.Graph()
        with g.as_default():
            x, k = gc.placeholder(gc.float32, xv.shape), gc.placeholder(gc.float32, kv.shape)
            r = gc.placeholder(gc.float32, rv.shape)
            a = gc.nn.relu(gc.nn.conv2d(x, k, [1, 1, 1, 1], "VALID", dilations=[1, 2, 2, 1])
                           + 0.5)
            p = gc.nn.max_pool(a, [1, 2, 2, 1], [1, 2, 2, 1], "VALID")
            fetches = [p] + gc.gradients(gc.reduce_sum(p * r), [x, k])
            step = gc.compile(fetches, feeds=[x, k, r], backend=backend)
        if backend == "llvm":
            fired = [n.split(":")[0] for n in step.compiled.fn.artifacts.stats["folds"]]
        out[backend] = [np.asarray(v) for v in step({x: xv, k: kv, r: rv})]
    assert "conv_pool" in fired
    for a, b in zip(out["llvm"], out["numpy"]):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("split", [False, True], ids=["whole", "split"])
def test_the_pooled_output_never_overwrites_what_the_convolution_reads(split, monkeypatch):
    """max_pool -> conv -> max_pool: the plan puts the second pool's output over the
    convolution's input (dead once the convolution has run, unfused). The pooling
    convolution would write it while still reading that input, so the fold stays away there
    (found by the fuzzer, seed 85271: results changed from call to call with split
    kernels)."""
    if split:
        monkeypatch.setenv("GRAPHC_PARALLEL_MIN_WORK", "1")
    monkeypatch.setenv("GRAPHC_NO_CACHE", "1")
    overlaps = []  # (whenever the fold fires, the pooled output is apart)
    watch_fold(monkeypatch, "conv_pool", lambda L, n, hit: overlaps.extend(
        L.out(n).overlaps(L.buf(u)) for u in hit[0][0].inputs))
    rng = np.random.default_rng(0)
    xv, kv = rng.standard_normal((2, 8, 9, 8)), rng.standard_normal((2, 1, 8, 12))
    bv = rng.standard_normal(12)
    out = {}
    for backend in ("llvm", "numpy"):
        g = gc.Graph()
        with g.as_default():
            x = gc.placeholder(gc.float64, [None, 8, 9, 8])
            k, b = gc.placeholder(gc.float64, kv.shape), gc.placeholder(gc.float64, [None])
            p = gc.nn.max_pool(x, [1, 3, 3, 1], [1, 1, 1, 1], "VALID")
            a = gc.nn.relu(gc.nn.conv2d(p, k, [1, 1, 2, 1], "VALID") + b)
            q = gc.nn.max_pool(a, [1, 1, 2, 1], [1, 1, 2, 1], "VALID")
            step = gc.compile([gc.transpose(q, [0, 3, 1, 2])], feeds=[x, k, b],
                              backend=backend)
        out[backend] = [np.asarray(step({x: xv, k: kv, b: bv})[0]) for _ in range(20)]
    assert not any(overlaps)
    for got in out["llvm"]:
        np.testing.assert_allclose(got, out["numpy"][0], rtol=1e-12, atol=1e-12)
