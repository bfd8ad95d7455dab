"""Output channels that fill part of a vector share it with neighbouring positions
(codegen/llvm/kernels/conv_lanes.py): the forward pass keeps its bits, the filter and bias
gradients agree with float64 NumPy, for whole and partial groups, one and several input
channels, and on both vector widths (the IR is built for the unit named; LLVM legalizes it
on any host)."""
import numpy as np
import pytest

import graphc as gc
from graphc.codegen.llvm.kernels import conv as llvm_conv, conv_lanes, gemm as llvm_gemm
from graphc.codegen.llvm.kernels.windows import Geometry
from graphc.ir import dtypes as D
from tests.codegen.llvm import test_llvm_conv_pool as conv_pool_tests

AVX2, AVX512 = llvm_gemm.VectorUnit(32, 16), llvm_gemm.VectorUnit(64, 32)

# (batch, height, width, in channels, out channels, kernel (kh, kw)); VALID, stride 1
CASES = [
    (3, 8, 28, 1, 8, (3, 3)),   # W4's geometry: 26 positions a row, 13 whole pairs
    (2, 7, 13, 1, 8, (3, 3)),   # 11 a row: a partial last group
    (2, 5, 30, 1, 8, (3, 3)),   # 14 pairs: two blocks in a loop, then one more
    (2, 6, 12, 2, 4, (2, 3)),   # two input channels: windows gathered, 4 positions a vector
    (2, 5, 10, 1, 2, (3, 2)),   # 2 channels: 8 positions a vector on AVX-512
    (1, 4, 12, 3, 1, (1, 3)),   # one output channel: 8 positions a vector on AVX2
]


@pytest.fixture(params=[AVX2, AVX512], ids=["avx2", "avx512"])
def unit(request, monkeypatch):
    for module in (conv_lanes, llvm_conv):
        monkeypatch.setattr(module, "vector_unit", lambda: request.param)
    return request.param


def _geometry(case):
    n, h, w, cin, cout, k = case
    return Geometry((n, h, w, cin), k, (1, 1), "VALID")


def test_positions_share_a_vector_where_channels_fill_part_of_it():
    g = _geometry((1, 8, 28, 1, 8, (3, 3)))
    for unit, cout, p in [(AVX512, 8, 2), (AVX512, 4, 4), (AVX512, 16, 1), (AVX512, 6, 1),
                          (AVX512, 32, 1), (AVX2, 8, 1), (AVX2, 4, 2), (AVX2, 1, 8)]:
        conv_lanes.vector_unit = lambda: unit
        try:
            assert conv_lanes.lane_group(g, cout, D.float32, True) == p, (unit, cout)
            assert conv_lanes.lane_group(g, cout, D.float32, False) == 1  # not row-blocked
            if p > 1:
                assert conv_lanes.lane_group(g, cout, D.float64, True) == p // 2
        finally:
            conv_lanes.vector_unit = llvm_gemm.vector_unit
    narrow = _geometry((1, 8, 3, 1, 2, (3, 3)))  # one position a row: nothing to share
    assert conv_lanes.lane_group(narrow, 2, D.float32, True) == 1


def _model(case, dtype, pooled=False):
    n, h, w, cin, cout, k = case
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(dtype, [n, h, w, cin])
        f = gc.placeholder(dtype, [*k, cin, cout])
        b = gc.placeholder(dtype, [cout])
        y = gc.nn.relu(gc.nn.conv2d(x, f, [1, 1, 1, 1], "VALID") + b)
        if pooled:
            y = gc.nn.max_pool(y, [1, 2, 2, 1], [1, 2, 2, 1], "VALID")
        r = gc.placeholder(dtype, y.shape)
        df, db, dx = gc.gradients(gc.reduce_sum(y * r), [f, b, x])
    return g, (x, f, b, r), [y, df, db, dx]


def _run(case, dtype, backend, pooled=False, seed=0):
    """The model's values on random feeds (each placeholder's own static shape)."""
    g, feeds, fetches = _model(case, dtype, pooled)
    rng = np.random.default_rng(seed)
    with g.as_default():
        step = gc.compile(fetches, feeds=list(feeds), backend=backend)
    vals = {p: rng.standard_normal(tuple(p.shape)).astype(dtype.as_numpy_dtype())
            for p in feeds}
    return [np.asarray(v) for v in step(vals)], step


@pytest.mark.parametrize("pooled", [False, True], ids=["conv", "pooled"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c[:5])))
def test_shared_lanes_agree_with_the_reference_and_keep_the_forward_bits(case, pooled, unit,
                                                                         monkeypatch):
    n, h, w, cin, cout, k = case
    if pooled and ((h - k[0] + 1) < 2 or (w - k[1] + 1) < 2):
        pytest.skip("no whole pooling window")
    lanes = unit.bytes // 4 // cout
    lanes = lanes if lanes >= 2 and w - k[1] + 1 >= lanes else 1
    shared, step = _run(case, gc.float32, "llvm", pooled)
    assert conv_lanes.lane_group(_geometry(case), cout, D.float32, True) == lanes
    want, _ = _run(case, gc.float64, "numpy", pooled)
    for name, a, b in zip(("y", "dfilter", "dbias", "dx"), shared, want):
        np.testing.assert_allclose(a, b, rtol=0, atol=2e-5 * max(np.abs(b).max(), 1.0),
                                   err_msg=name)
    monkeypatch.setattr(conv_lanes, "SHARE_LANES", False)
    single, _ = _run(case, gc.float32, "llvm", pooled)
    np.testing.assert_array_equal(shared[0], single[0])  # y: each lane's FMA chain unchanged
    if lanes > 1:  # the interleaving shuffles are there
        vt = f"<{unit.bytes // 4} x float>"
        assert f"shufflevector {vt}" in str(step.compiled.source)


def test_float64_shares_lanes_too(unit):
    case = (2, 6, 11, 1, 4, (3, 3))  # AVX-512: 2 positions of 4 doubles a vector
    got, _ = _run(case, gc.float64, "llvm")
    want, _ = _run(case, gc.float64, "numpy")
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", [c for c in conv_pool_tests.CASES if c[0] in (
    "w4", "rows_left_over", "one_by_two", "three_by_three")], ids=lambda c: c[0])
def test_pooling_convolutions_sharing_lanes_keep_the_reference_exactly(case, unit):
    """The convolution that pools its band of rows (``folds.conv_pool``) with positions
    sharing vectors: integer data (tied maxima, NaN and -inf, every sum exact) gives the
    reference's bits on both vector widths."""
    got, fired = conv_pool_tests._run(case, "llvm")
    want, _ = conv_pool_tests._run(case, "numpy")
    assert "conv_pool" in fired
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)


def test_two_windows_share_a_vector_when_a_group_is_a_window(unit, monkeypatch):
    """P = kw = 2: the band holds two windows' taps side by side (``conv._pool_pairs``); an
    odd last window is scanned alone. W4's geometry on AVX-512 (8 channels), a 4-channel one
    with five windows a row on AVX2."""
    case = next(c for c in conv_pool_tests.CASES
                if c[0] == ("w4" if unit.bytes == 64 else "rows_left_over"))
    calls = []
    real = llvm_conv._pool_pairs
    monkeypatch.setattr(llvm_conv, "_pool_pairs", lambda *a: calls.append(a[2][0].ow) or
                        real(*a))
    got, _ = conv_pool_tests._run(case, "llvm")
    want, _ = conv_pool_tests._run(case, "numpy")
    assert calls and (unit.bytes == 64 or calls[0] % 2 == 1)  # (AVX2: 5 windows a row)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)
