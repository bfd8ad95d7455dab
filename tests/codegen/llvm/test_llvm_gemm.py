"""Native GEMM loops and register-block transposes of the LLVM backend (codegen/llvm/kernels/gemm.py,
codegen/llvm/kernels/transpose.py): they agree with float64 NumPy on every shape class (full and
partial register blocks, partial vectors, transposed operands, batches, accumulation), the
lowering counts which GEMMs went native, and the size rule depends on BLAS's threads."""
import numpy as np
import pytest

import graphc as gc
from graphc.codegen.llvm.kernels import gemm as llvm_gemm
from graphc.ir import dtypes as D
from graphc.runtime import parallel

NATIVE = llvm_gemm.vector_unit() is not None
needs_vectors = pytest.mark.skipif(not NATIVE, reason="host has no AVX2+FMA / AVX-512")

# (M, N, K, transpose_a, transpose_b): full 12-row blocks and the remainder rows, 2-vector
# column panels, a lone partial vector (N=10, N=5), N=1, K=1, odd everything.
SHAPES = [
    (32, 128, 128, False, False), (32, 128, 32, True, False), (128, 128, 32, True, False),
    (13, 40, 7, False, False), (1, 1, 1, False, False), (25, 10, 64, False, False),
    (7, 33, 5, True, False), (12, 16, 3, False, False), (3, 5, 9, False, False),
    (40, 17, 1, False, False), (20, 48, 30, False, True), (9, 10, 70, False, True),
    (24, 64, 16, True, True),
]


def _matmul_step(shape_a, shape_b, ta, tb, dtype, seed=0):
    rng = np.random.default_rng(seed)
    g = gc.Graph()
    with g.as_default():
        a = gc.placeholder(dtype, shape_a, name="a")
        b = gc.placeholder(dtype, shape_b, name="b")
        c = gc.matmul(a, b, transpose_a=ta, transpose_b=tb)
        step = gc.compile([c], feeds=[a, b], backend="llvm")
    np_dt = np.float32 if dtype == gc.float32 else np.float64
    feed = {a: rng.standard_normal(shape_a).astype(np_dt),
            b: rng.standard_normal(shape_b).astype(np_dt)}
    return step, feed


def _reference(av, bv, ta, tb):
    a64, b64 = av.astype(np.float64), bv.astype(np.float64)
    return np.matmul(np.swapaxes(a64, -1, -2) if ta else a64,
                     np.swapaxes(b64, -1, -2) if tb else b64)


# The host's vector unit, and AVX2's (16 registers of 256 bits: 6x2 blocks), which every
# AVX-512 host also runs: the CI machine may have either.
UNITS = [llvm_gemm.VectorUnit(32, 16)] + ([llvm_gemm.vector_unit()] if NATIVE and
                                          llvm_gemm.vector_unit().bytes > 32 else [])


@pytest.fixture(params=UNITS if NATIVE else [None], ids=lambda u: f"{u.bytes * 8}bit" if u
                else "no-vectors")
def unit(request, monkeypatch):
    if request.param is not None:
        monkeypatch.setattr(llvm_gemm, "vector_unit", lambda: request.param)
    return request.param


@pytest.mark.parametrize("dtype", [gc.float32, gc.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("m,n,k,ta,tb", SHAPES, ids=lambda v: str(v))
def test_native_gemm_agrees_with_float64_numpy(m, n, k, ta, tb, dtype, unit, monkeypatch):
    monkeypatch.setenv("GRAPHC_NATIVE_GEMM", "1")
    step, feed = _matmul_step((k, m) if ta else (m, k), (n, k) if tb else (k, n), ta, tb,
                              dtype)
    out = step(feed)[0]
    ref = _reference(*feed.values(), ta, tb)
    tol = 2e-6 if dtype == gc.float32 else 1e-13
    assert out.shape == ref.shape
    np.testing.assert_allclose(out, ref, rtol=0, atol=tol * k * max(np.abs(ref).max(), 1))
    np.testing.assert_array_equal(step(feed)[0], out)  # deterministic
    stats = step.compiled.fn.artifacts.stats
    expect_native = llvm_gemm.native_gemm_ok(D.float32 if dtype == gc.float32 else D.float64,
                                             (m, n, k, 0, 0), (ta, False), threads=1)
    assert stats["native_gemms"] == (1 if expect_native else 0)
    assert stats["native_gemms"] + stats["blas_gemms"] == 1


@needs_vectors
def test_batched_matmul_runs_natively_per_batch_entry(monkeypatch):
    monkeypatch.setenv("GRAPHC_NATIVE_GEMM", "1")
    step, feed = _matmul_step((3, 2, 14, 9), (3, 2, 9, 20), False, False, gc.float32)
    out = step(feed)[0]
    np.testing.assert_allclose(out, _reference(*feed.values(), False, False), atol=1e-4)
    assert step.compiled.fn.artifacts.stats["native_gemms"] == 1


def test_blas_and_native_steps_train_an_rnn_alike(monkeypatch):
    """BPTT through an unrolled RNN (GEMMs accumulating with beta = 1, a transposed Wh copy,
    a transposed readout) on native loops and on BLAS: the same losses and weights."""
    results = []
    for native in ("1", "0"):
        monkeypatch.setenv("GRAPHC_NATIVE_GEMM", native)
        rng = np.random.default_rng(3)
        g = gc.Graph()
        with g.as_default():
            x = gc.placeholder(gc.float32, [6, 8, 5], name="x")
            y = gc.placeholder(gc.int64, [8], name="y")
            wx = gc.Variable(rng.standard_normal((5, 24)).astype(np.float32) * 0.3)
            wh = gc.Variable(rng.standard_normal((24, 24)).astype(np.float32) * 0.2)
            wo = gc.Variable(rng.standard_normal((24, 3)).astype(np.float32) * 0.3)
            h = None
            for t in range(6):
                pre = gc.matmul(x[t], wx)
                h = gc.tanh(pre if h is None else pre + gc.matmul(h, wh))
            loss = gc.reduce_mean(gc.nn.sparse_softmax_cross_entropy_with_logits(
                labels=y, logits=gc.matmul(h, wo)))
            train = gc.train.GradientDescentOptimizer(0.5).minimize(loss)
            step = gc.compile([loss, train], feeds=[x, y], backend="llvm")
        feed = {x: rng.standard_normal((6, 8, 5)).astype(np.float32),
                y: rng.integers(0, 3, 8)}
        losses = [float(step(feed)[0]) for _ in range(5)]
        results.append((losses, {k: v.copy() for k, v in step.variables.items()},
                        step.compiled.fn.artifacts.stats))
    (l1, v1, s1), (l2, v2, s2) = results
    np.testing.assert_allclose(l1, l2, rtol=1e-5)
    assert l1[-1] < l1[0]
    for name in v1:
        np.testing.assert_allclose(v1[name], v2[name], rtol=1e-4, atol=1e-6)
    assert s2["native_gemms"] == 0
    if NATIVE:
        assert s1["native_gemms"] >= 6 + 5 + 5 and s1["native_gemms"] > s1["blas_gemms"]


@needs_vectors
def test_size_rule_follows_blas_threads_and_switch(unit, monkeypatch):
    if unit is None:
        pytest.skip("no vector unit: BLAS does every GEMM")
    monkeypatch.setattr(llvm_gemm, "blas_vector_bytes", lambda: unit.bytes)  # BLAS as wide
    f32 = D.float32
    few = unit.bytes // 4 - 1  # fewer columns than one vector holds
    small, big, huge = (32, 128, 128, 0, 0), (128, 256, 784, 0, 0), (128, 1024, 1024, 0, 0)
    assert llvm_gemm.native_gemm_ok(f32, small, (False, False), threads=2)
    assert llvm_gemm.native_gemm_ok(f32, big, (False, False), threads=2)  # split on the pool
    assert llvm_gemm.native_gemm_ok(f32, big, (False, False), threads=1)
    for threads in (1, 2):
        assert not llvm_gemm.native_gemm_ok(f32, huge, (False, False), threads=threads)
    # on threads, up to 4x the size where no side is wider than (1024, 256, 1024): the
    # batch-1024 MLP's forward and weight-gradient GEMMs, not wider or deeper ones
    for dims in [(1024, 256, 784, 0, 0), (784, 256, 1024, 0, 0)]:
        assert llvm_gemm.native_gemm_ok(f32, dims, (False, False), threads=2)
        assert not llvm_gemm.native_gemm_ok(f32, dims, (False, False), threads=1)
    for dims in [(128, 1024, 784, 0, 0), (2048, 256, 256, 0, 0), (256, 256, 2048, 0, 0),
                 (1024, 256, 1025, 0, 0)]:
        assert not llvm_gemm.native_gemm_ok(f32, dims, (False, False), threads=2)
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(llvm_gemm.NATIVE_MAX_MACS, "threads", 1 << 20)
        assert not llvm_gemm.native_gemm_ok(f32, big, (False, False), threads=2)
        assert llvm_gemm.native_gemm_ok(f32, big, (False, False), threads=1)
    assert llvm_gemm.native_gemm_ok(f32, small, (False, True), threads=1)  # B^T packed
    panel = (32, unit.bytes // 2, 128, 0, 0)  # one column panel: B^T copied first
    assert not llvm_gemm.native_gemm_ok(f32, panel, (False, True), threads=1)
    for n in (few, few + 1):  # a few columns of A^T: native too (a partial vector)
        assert llvm_gemm.native_gemm_ok(f32, (256, n, 128, 0, 0), (True, False), threads=2)
    assert not llvm_gemm.native_gemm_ok(f32, small, (False, False), enabled=False)
    assert not llvm_gemm.native_gemm_ok(D.int32, small, (False, False))


@needs_vectors
def test_where_blas_vectors_are_narrower_every_gemm_is_native(unit, monkeypatch):
    """A BLAS computing with narrower vectors than the host (NumPy's OpenBLAS picks its
    256-bit kernels on some AVX-512 CPUs) gets no GEMM up to ``WIDE_HOST_MAX_MACS`` (every
    one), at one thread or several; a BLAS as wide, or of unknown width, keeps the usual
    rule."""
    if unit is None:
        pytest.skip("no vector unit: BLAS does every GEMM")
    f32, huge = D.float32, (128, 4096, 4096, 0, 0)
    wider = (1024, 256, 784, 0, 0), (128, 1024, 1024, 0, 0)
    for width, native in ((unit.bytes // 2, True), (unit.bytes, False), (None, False)):
        monkeypatch.setattr(llvm_gemm, "blas_vector_bytes", lambda: width)
        assert llvm_gemm.native_gemm_ok(f32, huge, (False, False), threads=1) is native
        assert llvm_gemm.native_gemm_ok(f32, huge, (False, False), threads=2) is native
        for dims in wider:
            assert llvm_gemm.native_gemm_ok(f32, dims, (False, False), threads=2) is \
                (native or dims[1] <= 256), dims


def test_blas_kernel_width_is_read_off_openblas():
    from graphc.runtime import blas
    width = blas.kernel_vector_bytes()
    assert width in (None, 32, 64)
    name = blas.openblas_function("scipy_openblas_get_corename64_", "openblas_get_corename64_",
                                  "openblas_get_corename")
    if name is not None and name().decode().lower() in ("haswell", "zen"):
        assert width == 32


def test_switch_off_sends_every_gemm_to_blas(monkeypatch):
    monkeypatch.setenv("GRAPHC_NATIVE_GEMM", "0")
    step, feed = _matmul_step((32, 64), (64, 48), False, False, gc.float32)
    np.testing.assert_allclose(step(feed)[0], _reference(*feed.values(), False, False),
                               atol=1e-4)
    stats = step.compiled.fn.artifacts.stats
    assert (stats["native_gemms"], stats["blas_gemms"]) == (0, 1)


@pytest.mark.parametrize("rows,cols", [(1, 1), (3, 5), (16, 16), (17, 33), (64, 48),
                                       (8, 40), (256, 256)])
@pytest.mark.parametrize("dtype", [gc.float32, gc.float64], ids=["f32", "f64"])
def test_register_block_transpose_is_exact(rows, cols, dtype, unit):
    rng = np.random.default_rng(1)
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(dtype, [rows, cols])
        y = gc.transpose(x * 2.0)  # not a feed: the transpose reads an arena buffer
        step = gc.compile([y], feeds=[x], backend="llvm")
    xv = rng.standard_normal((rows, cols)).astype(np.float32 if dtype == gc.float32
                                                  else np.float64)
    np.testing.assert_array_equal(step({x: xv})[0], (xv * 2).T)


@pytest.mark.parametrize("rows,cols", [(32, 32), (64, 48), (17, 70)])
@pytest.mark.parametrize("dtype", [gc.bool, gc.int32], ids=["bool", "i32"])
def test_register_block_transpose_moves_bools_and_integers_exactly(rows, cols, dtype, unit):
    """(Bools are bytes in memory: a register block of them is a vector of bytes, never of
    bits.)"""
    rng = np.random.default_rng(2)
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(dtype, [rows, cols])
        y = gc.transpose(gc.logical_not(x) if dtype == gc.bool else x * 3)
        step = gc.compile([y], feeds=[x], backend="llvm")
    xv = rng.integers(0, 2 if dtype == gc.bool else 1000, (rows, cols))
    xv = xv.astype(bool if dtype == gc.bool else np.int32)
    want = ~xv.T if dtype == gc.bool else (xv * 3).T
    np.testing.assert_array_equal(step({x: xv})[0], want)


# -- random shapes --------------------------------------------------------------------------------
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@needs_vectors
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(m=st.integers(1, 40), n=st.integers(1, 70), k=st.integers(1, 50),
       ta=st.booleans(), tb=st.booleans(), accumulate=st.booleans(),
       seed=st.integers(0, 2 ** 16))
def test_random_shapes_agree_with_float64(m, n, k, ta, tb, accumulate, seed):
    """Any shape, either operand transposed, alone or summed with another product (the sum
    makes the lowering accumulate into one buffer, beta = 1): float64 NumPy agrees."""
    rng = np.random.default_rng(seed)
    g = gc.Graph()
    with g.as_default():
        a = gc.placeholder(gc.float32, [k, m] if ta else [m, k])
        b = gc.placeholder(gc.float32, [n, k] if tb else [k, n])
        c = gc.placeholder(gc.float32, [m, k])
        d = gc.placeholder(gc.float32, [k, n])
        out = gc.matmul(a, b, transpose_a=ta, transpose_b=tb)
        feeds = [a, b] + ([c, d] if accumulate else [])
        if accumulate:
            out = gc.tanh(out + gc.matmul(c, d))
        step = gc.compile([out], feeds=feeds, backend="llvm")
    feed = {p: rng.standard_normal(tuple(p.shape)).astype(np.float32) for p in (a, b, c, d)}
    ref = _reference(feed[a], feed[b], ta, tb)
    if accumulate:
        ref = np.tanh(ref + feed[c].astype(np.float64) @ feed[d])
    got = step({p: feed[p] for p in feeds})[0]
    np.testing.assert_allclose(got, ref, rtol=0, atol=3e-6 * k * max(
        np.abs(ref).max(), 1))


# -- packed B panels ------------------------------------------------------------------------------
# (M, N, K, transpose_a): several K blocks with a shorter last one (K=600: 200 x 3; 513:
# 171 x 3), one block (K=100), edge rows (M=13, 7), a narrow last panel of partial vectors
# (N=40, 33), a transposed A.
PACKED = [(13, 40, 600, False), (7, 33, 513, True), (25, 64, 100, False), (30, 17, 257, True)]


def _packed_pair(monkeypatch, m, n, k, ta, dtype, accumulate, threads=None):
    """(packed result, in-place result, float64 reference, packed step's IR)."""
    rng = np.random.default_rng(m * n + k)
    np_dt = np.float32 if dtype == gc.float32 else np.float64
    shapes = [(k, m) if ta else (m, k), (k, n), (m, 5), (5, n)]
    values = [rng.standard_normal(s).astype(np_dt) for s in shapes]
    outs = []
    for row_bytes in (0, 1 << 40):  # every B packed / none
        monkeypatch.setattr(llvm_gemm, "PACK_ROW_BYTES", row_bytes)
        g = gc.Graph()
        with g.as_default():
            a, b, c, d = (gc.placeholder(dtype, s) for s in shapes)
            out = gc.matmul(a, b, transpose_a=ta)
            if accumulate:  # a sum of products: the GEMMs add into one buffer (beta = 1)
                out = gc.tanh(gc.matmul(c, d) + out)
            feeds = [a, b, c, d][:4 if accumulate else 2]
            step = gc.compile([out], feeds=feeds, backend="llvm")
        feed = dict(zip(feeds, values))
        if threads is not None:
            step(feed)
            parallel.ensure_workers(threads)
            parallel.set_threads(threads)
        outs.append((step(feed)[0], step.compiled.fn.llvm_ir))
    ref = _reference(values[0], values[1], ta, False)
    if accumulate:
        ref = np.tanh(values[2].astype(np.float64) @ values[3] + ref)
    return outs[0][0], outs[1][0], ref, outs[0][1]


@needs_vectors
@pytest.mark.parametrize("whole", [0, 1 << 20], ids=["K-blocks", "one-block"])
@pytest.mark.parametrize("accumulate", [False, True], ids=["write", "accumulate"])
@pytest.mark.parametrize("dtype", [gc.float32, gc.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("m,n,k,ta", PACKED, ids=lambda v: str(v))
def test_packed_b_panels_give_the_bits_of_b_read_in_place(m, n, k, ta, dtype, accumulate,
                                                          whole, unit, monkeypatch):
    """K-blocking keeps every element's sum in order k = 0, 1, ...: the partial sums wait in
    C between blocks, so packing changes no bit (in blocks of ``PACK_DEPTH``, or the whole
    panel in one block: ``PACK_WHOLE_BYTES``)."""
    monkeypatch.setenv("GRAPHC_NATIVE_GEMM", "1")
    monkeypatch.setenv("GRAPHC_NO_CACHE", "1")
    monkeypatch.setattr(llvm_gemm, "PACK_WHOLE_BYTES", whole)
    packed, in_place, ref, text = _packed_pair(monkeypatch, m, n, k, ta, dtype, accumulate)
    blk = llvm_gemm.blocking(dtype, n, unit)  # (one panel of 512-bit vectors holds N=17)
    assert ("%bpack = alloca" in text) == (n > blk.nv * blk.lanes)
    np.testing.assert_array_equal(packed, in_place)
    tol = 2e-6 if dtype == gc.float32 else 1e-13
    np.testing.assert_allclose(packed, ref, rtol=0, atol=tol * k * max(np.abs(ref).max(), 1))


@needs_vectors
@pytest.mark.parametrize("m,n,k,ta", [(50, 100, 300, False),    # over column panels
                                      (200, 40, 30, True),      # over row blocks (tall)
                                      (107, 33, 20, False)],    # rows, with edges
                         ids=lambda v: str(v))
def test_split_gemms_give_the_same_bits_at_one_and_two_threads(m, n, k, ta, monkeypatch):
    monkeypatch.setenv("GRAPHC_SPLIT_EXAMPLES", "0")  # (kernels in chunks, no step cut)
    monkeypatch.setenv("GRAPHC_NATIVE_GEMM", "1")
    monkeypatch.setenv("GRAPHC_NO_CACHE", "1")
    monkeypatch.setenv("GRAPHC_PARALLEL_MIN_WORK", "1")
    monkeypatch.setenv("GRAPHC_BLAS_TUNING", "0")
    before = parallel.threads()
    try:
        one = _packed_pair(monkeypatch, m, n, k, ta, gc.float32, True, threads=1)
        two = _packed_pair(monkeypatch, m, n, k, ta, gc.float32, True, threads=2)
    finally:
        parallel.set_threads(before or 1)
    assert ".task" in one[3]  # split into chunks
    for x, y in zip(one[:2], two[:2]):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(two[0], two[1])  # packed or not
    np.testing.assert_allclose(two[0], two[2], rtol=0, atol=2e-6 * k * max(
        np.abs(two[2]).max(), 1))


def test_a_small_remainder_of_rows_shares_the_last_full_block():
    assert llvm_gemm.tail_rows(32, 6) == (4, [4, 4])
    assert llvm_gemm.tail_rows(13, 6) == (1, [4, 3])
    assert llvm_gemm.tail_rows(7, 6) == (0, [4, 3])
    assert llvm_gemm.tail_rows(34, 6) == (5, [4])  # 4 of 6: a block of its own
    assert llvm_gemm.tail_rows(36, 6) == (6, [])
    assert llvm_gemm.tail_rows(2, 6) == (0, [2])
    assert llvm_gemm.tail_rows(25, 12) == (1, [7, 6])
    for m in range(1, 40):
        for mr in (4, 6, 12):
            full, tail = llvm_gemm.tail_rows(m, mr)
            assert full * mr + sum(tail) == m and all(0 < r <= mr for r in tail)


def test_packing_rule():
    avx2, avx512 = llvm_gemm.VectorUnit(32, 16), llvm_gemm.VectorUnit(64, 32)
    f32, f64 = D.float32, D.float64

    def depth(dtype, dims, unit=avx2):
        return llvm_gemm.packed_depth(dtype, dims, llvm_gemm.blocking(dtype, dims[1], unit))
    assert depth(f32, (128, 512, 784, 784, 512)) == 784  # 50 KiB: one block
    assert depth(f32, (128, 512, 1100, 1100, 512)) == 220  # 69 KiB: 5 blocks
    assert depth(f32, (128, 512, 256, 256, 512)) == 256
    assert depth(f64, (128, 256, 100, 100, 256)) == 100  # 2 KiB
    assert depth(f32, (128, 16, 999, 999, 1024)) == 0  # one panel
    # rows 1 KiB apart: packed where at least 5 row blocks of 6 reuse the panel
    assert depth(f32, (128, 256, 784, 784, 256)) == 784
    assert depth(f32, (25, 256, 784, 784, 256)) == 784
    assert depth(f32, (24, 256, 784, 784, 256)) == 0
    assert depth(f32, (128, 128, 784, 784, 128)) == 0  # 512 bytes
    # 512-bit vectors: rows 2 KiB apart only; a panel row is 128 bytes
    assert depth(f32, (128, 256, 784, 784, 256), avx512) == 0
    assert depth(f32, (128, 512, 784, 784, 512), avx512) == 196  # 98 KiB: 4 blocks
    assert depth(f32, (128, 512, 500, 500, 512), avx512) == 500
    # ...and rows 1 KiB apart where a panel of K rows passes 512 KiB (L2 would not keep it
    # for the next row block): K = 4096 and more, in blocks of 256 rows
    assert depth(f32, (784, 256, 8192, 784, 256), avx512) == 256
    assert depth(f32, (128, 256, 4096, 4096, 256), avx512) == 256
    assert depth(f32, (128, 256, 4095, 4095, 256), avx512) == 0
    assert depth(f32, (48, 256, 8192, 8192, 256), avx512) == 0  # 4 row blocks reuse it


@needs_vectors
def test_a_panel_past_l2_packed_in_blocks_keeps_the_bits(unit, monkeypatch):
    """W1's weight gradient at batch 8192 in small: A^T B with B's rows 1 KiB apart and K
    = 4100 (a panel of 512 KiB on 512-bit vectors): packed in blocks of K (``PANEL_PAST_L2``)
    on both vector widths, the bits of the same GEMM read in place."""
    monkeypatch.setenv("GRAPHC_NO_CACHE", "1")
    m, n, k = 70, 256, 4100
    rng = np.random.default_rng(5)
    av = rng.standard_normal((k, m)).astype(np.float32)
    bv = rng.standard_normal((k, n)).astype(np.float32)
    blk = llvm_gemm.blocking(D.float32, n, unit)
    assert llvm_gemm.packed_depth(D.float32, (m, n, k, m, n), blk) == 4100 // 17 + 1

    def run(past_l2):
        monkeypatch.setattr(llvm_gemm, "PANEL_PAST_L2", past_l2)
        monkeypatch.setattr(llvm_gemm, "PACK_ROW_BYTES", 2048)
        g = gc.Graph()
        with g.as_default():
            a, b = gc.placeholder(gc.float32, (k, m)), gc.placeholder(gc.float32, (k, n))
            step = gc.compile([gc.matmul(a, b, transpose_a=True)], feeds=[a, b],
                              backend="llvm")
        assert ("%bpack = alloca" in step.compiled.fn.llvm_ir) == (past_l2 < 1 << 40) or \
            unit.bytes == 32
        return np.asarray(step({a: av, b: bv})[0])
    packed, in_place = run(512 << 10), run(1 << 62)
    if unit.bytes == 64:
        np.testing.assert_array_equal(packed, in_place)
    ref = _reference(av, bv, True, False)
    np.testing.assert_allclose(packed, ref, rtol=0, atol=2e-6 * k * np.abs(ref).max())


@needs_vectors
@pytest.mark.parametrize("dtype", [gc.float32, gc.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("m,n,k,ta,batch", [(13, 40, 600, False, ()), (7, 33, 21, True, ()),
                                            (30, 17, 257, False, ()), (5, 64, 8, True, (3,)),
                                            (9, 40, 70, False, (2, 2)),
                                            # K shorter than a vector: one transpose a block
                                            (64, 203, 10, False, ()), (12, 70, 3, True, ()),
                                            (5, 48, 2, False, (2,))], ids=lambda v: str(v))
def test_b_transposed_while_packing_gives_the_bits_of_a_contiguous_b(m, n, k, ta, batch,
                                                                     dtype, unit, monkeypatch):
    """``A B^T`` with more than one column panel packs B^T itself (register-block transposes,
    edges element by element): the same sums in the same order as ``A B`` with B fed
    contiguous, so the same bits."""
    monkeypatch.setenv("GRAPHC_NATIVE_GEMM", "1")
    monkeypatch.setenv("GRAPHC_NO_CACHE", "1")
    rng = np.random.default_rng(k)
    np_dt = np.float32 if dtype == gc.float32 else np.float64
    sa = batch + ((k, m) if ta else (m, k))
    av = rng.standard_normal(sa).astype(np_dt)
    btv = rng.standard_normal(batch + (n, k)).astype(np_dt)
    g = gc.Graph()
    with g.as_default():
        a, bt = gc.placeholder(dtype, sa), gc.placeholder(dtype, batch + (n, k))
        b = gc.placeholder(dtype, batch + (k, n))
        step = gc.compile([gc.matmul(a, bt, transpose_a=ta, transpose_b=True),
                           gc.matmul(a, b, transpose_a=ta)], feeds=[a, bt, b], backend="llvm")
    packed, contiguous = step({a: av, bt: btv, b: np.ascontiguousarray(np.swapaxes(btv, -1, -2))})
    np.testing.assert_array_equal(packed, contiguous)
    ref = _reference(av, btv, ta, True)
    tol = 2e-6 if dtype == gc.float32 else 1e-13
    np.testing.assert_allclose(packed, ref, rtol=0, atol=tol * k * max(np.abs(ref).max(), 1))
    stats = step.compiled.fn.artifacts.stats
    assert (stats["native_gemms"], stats["blas_gemms"]) == (2, 0)
    blk = llvm_gemm.blocking(dtype, n, unit)  # (one panel of 512-bit vectors holds N=17, 24)
    assert ("%bpack = alloca" in step.compiled.fn.llvm_ir) == (n > blk.nv * blk.lanes)
    if n > blk.nv * blk.lanes and 2 <= k < blk.lanes:  # rows of B^T read as <k x t> vectors
        assert f"load <{k} x {'float' if dtype == gc.float32 else 'double'}>" in \
            step.compiled.fn.llvm_ir


@needs_vectors
@pytest.mark.parametrize("m,n,k,ta", [(64, 16, 3, True), (64, 32, 10, False),
                                      (90, 10, 40, True)], ids=lambda v: str(v))
def test_a_one_panel_transposed_b_split_over_row_blocks_is_packed(m, n, k, ta, monkeypatch):
    """``op(A) B^T`` with one column panel in the body of a cut step (where every GEMM the
    vectors can do is native): B^T is packed panel by panel, so the kernel splits over
    panels only. It used to split over row blocks, which read B as if it lay in place:
    wrong numbers in every row (found by the fuzzer with every kernel split and every step
    cut)."""
    monkeypatch.setenv("GRAPHC_NO_CACHE", "1")
    monkeypatch.setenv("GRAPHC_PARALLEL_MIN_WORK", "1")
    monkeypatch.setenv("GRAPHC_SPLIT_EXAMPLES", "2")
    monkeypatch.setenv("GRAPHC_SPLIT_MIN_WORK", "1")
    rng = np.random.default_rng(m + n + k)
    av = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
    bv = rng.standard_normal((n, k)).astype(np.float32)
    g = gc.Graph()
    with g.as_default():
        a, b = gc.placeholder(gc.float32, av.shape), gc.placeholder(gc.float32, bv.shape)
        step = gc.compile([gc.matmul(gc.identity(a), b, transpose_a=ta, transpose_b=True)],
                          feeds=[a, b], backend="llvm")
    assert "loop 'examples'" in step.ir()  # (the body holds the GEMM)
    got = np.asarray(step({a: av, b: bv})[0])
    want = (av.T if ta else av).astype(np.float64) @ bv.T.astype(np.float64)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_a_cut_mlp_step_with_a_narrow_layer_gives_the_references_gradients(monkeypatch):
    """The same at the default split threshold: an MLP 784-32-10 at batch 2048 cut in two
    halves, whose hidden gradient G W2^T (N = 32, 1024 x 32 x 10 multiply-adds a half) is a
    one-panel transposed B in the body."""
    monkeypatch.setenv("GRAPHC_NO_CACHE", "1")
    monkeypatch.delenv("GRAPHC_PARALLEL_MIN_WORK", raising=False)
    monkeypatch.setenv("GRAPHC_SPLIT_EXAMPLES", "2")
    monkeypatch.setenv("GRAPHC_SPLIT_MIN_WORK", "1")
    rng = np.random.default_rng(0)
    w1 = (rng.standard_normal((784, 32)) * 0.05).astype(np.float32)
    w2 = (rng.standard_normal((32, 10)) * 0.2).astype(np.float32)
    xs, ys = rng.random((2048, 784)).astype(np.float32), rng.integers(0, 10, 2048)
    out = {}
    for backend in ("llvm", "numpy"):
        g = gc.Graph()
        with g.as_default():
            x, y = gc.placeholder(gc.float32, [2048, 784]), gc.placeholder(gc.int64, [2048])
            v1, v2 = gc.Variable(w1), gc.Variable(w2)
            logits = gc.matmul(gc.nn.relu(gc.matmul(x, v1)), v2)
            loss = gc.reduce_mean(gc.nn.sparse_softmax_cross_entropy_with_logits(
                labels=y, logits=logits))
            step = gc.compile([loss] + gc.gradients(loss, [v1, v2]), feeds=[x, y],
                              backend=backend)
        if backend == "llvm":
            assert "loop 'examples'" in step.ir()
        out[backend] = [np.asarray(v) for v in step({x: xs, y: ys})]
    for got, want in zip(out["llvm"], out["numpy"]):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


@needs_vectors
@pytest.mark.parametrize("m,n,k", [(70, 10, 33), (32, 2, 64), (5, 12, 17), (45, 6, 1),
                                   (40, 7, 9)],
                         ids=lambda v: str(v))
def test_a_transposed_product_narrower_than_a_vector_is_computed_transposed(m, n, k, unit,
                                                                            monkeypatch):
    """A^T B with fewer columns than a vector (a weight gradient into a classifier's
    outputs) as C^T = B^T A (``_narrow_transposed``): whole and partial tiles, alone and with
    an SGD update folded in (``subtract_matmul`` or the epilogue), against float64 NumPy."""
    monkeypatch.setenv("GRAPHC_NO_CACHE", "1")
    calls = []
    real = llvm_gemm._narrow_transposed
    monkeypatch.setattr(llvm_gemm, "_narrow_transposed",
                        lambda fn, g, blk, bases, mm, nn: calls.append((mm, nn)) or
                        real(fn, g, blk, bases, mm, nn))
    rng = np.random.default_rng(m * n + k)
    xv = rng.standard_normal((k, m)).astype(np.float32)
    dv = rng.standard_normal((k, n)).astype(np.float32)
    wv = rng.standard_normal((m, n)).astype(np.float32)
    g = gc.Graph()
    with g.as_default():
        x, d = gc.placeholder(gc.float32, (k, m)), gc.placeholder(gc.float32, (k, n))
        w = gc.Variable(wv)
        product = gc.matmul(x, d, transpose_a=True)
        update = gc.assign_sub(w, 0.1 * gc.matmul(x, d, transpose_a=True))
        step = gc.compile([product, update], feeds=[x, d], backend="llvm")
    got, updated = (np.asarray(v) for v in step({x: xv, d: dv}))
    ref = _reference(xv, dv, True, False)
    tol = 2e-6 * max(k, 1) * max(np.abs(ref).max(), 1)
    np.testing.assert_allclose(got, ref, rtol=0, atol=tol)
    np.testing.assert_allclose(updated, wv - 0.1 * ref, rtol=0, atol=tol)
    if n < unit.bytes // 4 and 2 * n + 4 <= unit.registers:  # 2n accumulators, 4 more
        assert (m, n) in calls
    else:
        assert not calls


def _tall(m, n, k, ta, mode, threads=None, seed=0):
    """(result, IR, float64 reference) of a tall GEMM with a big B: the product alone, under
    a bias and ReLU (an epilogue), added to another product (beta = 1), or under an
    elementwise operand of C's shape that the output may overwrite in place."""
    rng = np.random.default_rng(seed)
    sa = (k, m) if ta else (m, k)
    values = {"a": rng.standard_normal(sa), "b": rng.standard_normal((k, n)),
              "bias": rng.standard_normal(n), "c": rng.standard_normal((m, 5)),
              "d": rng.standard_normal((5, n)), "e": rng.standard_normal((n, m))}
    values = {key: v.astype(np.float32) for key, v in values.items()}
    g = gc.Graph()
    with g.as_default():
        ph = {key: gc.placeholder(gc.float32, v.shape, name=key) for key, v in values.items()}
        p = gc.matmul(ph["a"], ph["b"], transpose_a=ta)
        out, used = {
            "plain": (p, "ab"), "relu": (gc.nn.relu(p + ph["bias"]), ("a", "b", "bias")),
            "accumulate": (gc.tanh(gc.matmul(ph["c"], ph["d"]) + p), "abcd"),
            # (a transpose is computed into a buffer of its own, which dies here)
            "in_place": (gc.nn.relu(p + gc.transpose(ph["e"])), "abe")}[mode]
        feeds = [ph[key] for key in used]
        step = gc.compile([out], feeds=feeds, backend="llvm")
    feed = {ph[key]: values[key] for key in used}
    if threads is not None:
        step(feed)
        parallel.ensure_workers(threads)
        parallel.set_threads(threads)
    got = np.asarray(step(feed)[0])
    v64 = {key: v.astype(np.float64) for key, v in values.items()}
    prod = _reference(values["a"], values["b"], ta, False)
    ref = {"plain": prod, "relu": np.maximum(prod + v64["bias"], 0),
           "accumulate": np.tanh(v64["c"] @ v64["d"] + prod),
           "in_place": np.maximum(prod + v64["e"].T, 0)}[mode]
    return got, step.compiled.fn.llvm_ir, ref


@needs_vectors
@pytest.mark.parametrize("mode", ["plain", "relu", "accumulate", "in_place"])
@pytest.mark.parametrize("m,n,k,ta", [(600, 64, 1100, False), (601, 70, 2000, True),
                                      (250, 100, 700, True)], ids=lambda v: str(v))
def test_tall_gemms_with_a_big_b_run_in_row_chunks_with_the_bits_of_one_pass(
        m, n, k, ta, mode, unit, monkeypatch):
    """A GEMM taller than wide whose B passes the row split's budget runs in chunks of rows,
    K block by K block (``_row_chunks``): the partial sums wait in C, so every bit is that of
    the GEMM in one pass over K (chunks off), an epilogue runs once on the whole sum, and an
    output written over the epilogue's operand keeps one pass."""
    monkeypatch.setenv("GRAPHC_NATIVE_GEMM", "1")
    monkeypatch.setenv("GRAPHC_NO_CACHE", "1")
    monkeypatch.setattr(llvm_gemm, "NATIVE_MAX_MACS", {1: 1 << 40, "threads": 1 << 40})
    chunked, text, ref = _tall(m, n, k, ta, mode)
    if mode != "in_place":
        assert "%ch." in text
    assert k * n * 4 > llvm_gemm.ROW_SPLIT_MAX_B_BYTES
    monkeypatch.setattr(llvm_gemm, "_k_blocked_rows", lambda *a: False)
    one_pass, text_off, _ = _tall(m, n, k, ta, mode)
    assert "%ch." not in text_off
    np.testing.assert_array_equal(chunked, one_pass)
    np.testing.assert_allclose(chunked, ref, rtol=0, atol=2e-6 * k * max(np.abs(ref).max(), 1))


@needs_vectors
def test_row_chunks_give_the_same_bits_at_one_and_two_threads(monkeypatch):
    monkeypatch.setenv("GRAPHC_SPLIT_EXAMPLES", "0")
    monkeypatch.setenv("GRAPHC_NATIVE_GEMM", "1")
    monkeypatch.setenv("GRAPHC_NO_CACHE", "1")
    monkeypatch.setenv("GRAPHC_BLAS_TUNING", "0")
    monkeypatch.setattr(llvm_gemm, "NATIVE_MAX_MACS", {1: 1 << 40, "threads": 1 << 40})
    before = parallel.threads()
    try:
        one, text, ref = _tall(601, 70, 2000, False, "relu", threads=1)
        two, _, _ = _tall(601, 70, 2000, False, "relu", threads=2)
    finally:
        parallel.set_threads(before or 1)
    assert "%ch." in text and ".task" in text
    np.testing.assert_array_equal(one, two)
