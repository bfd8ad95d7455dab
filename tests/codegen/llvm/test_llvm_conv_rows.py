"""Direct vector convolutions blocked along output rows (codegen/llvm/kernels/conv.py,
``_row_taps``): a block of neighbouring positions loads each input value once for every tap
reading it. Forward and filter gradient agree with float64 NumPy, and with the same bits as
the per-position kernels (each sum keeps its order), for the geometries that block (width
stride and dilation 1, no padding) and beside those that do not."""
import re

import numpy as np
import pytest

import graphc as gc
from graphc.codegen.llvm.kernels import conv as llvm_conv, conv_lanes
from graphc.codegen.llvm.kernels.windows import Geometry
from graphc.ir import dtypes as D

# (batch, height, width, in channels, out channels, kernel (kh, kw), strides, padding)
CASES = [
    (3, 10, 28, 1, 8, (3, 3), (1, 1), "VALID"),   # W4's shape, smaller batch
    (2, 9, 11, 2, 8, (3, 3), (1, 1), "VALID"),    # a partial last block, two channels
    (2, 7, 9, 1, 4, (2, 4), (2, 1), "VALID"),     # strided rows, half a vector
    (1, 6, 5, 3, 16, (3, 2), (1, 1), "VALID"),    # rows of two registers on AVX2
    (2, 8, 8, 1, 8, (3, 3), (1, 1), "SAME"),      # padded: the per-position kernel
    (2, 9, 9, 1, 8, (3, 3), (1, 2), "VALID"),     # width stride 2: the per-position kernel
]


def _model(case, dtype):
    n, h, w, cin, cout, k, s, pad = case
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(dtype, [n, h, w, cin])
        f = gc.placeholder(dtype, [*k, cin, cout])
        b = gc.placeholder(dtype, [cout])
        y = gc.nn.relu(gc.nn.conv2d(x, f, [1, *s, 1], pad) + b)
        r = gc.placeholder(dtype, y.shape)
        loss = gc.reduce_sum(y * r)
        df, db = gc.gradients(loss, [f, b])
    return g, (x, f, b, r), [y, df, db]


def _run(case, dtype, backend, seed=0):
    n, h, w, cin, cout, k, s, pad = case
    g, feeds, fetches = _model(case, dtype)
    rng = np.random.default_rng(seed)
    np_dt = np.float32 if dtype == gc.float32 else np.float64
    with g.as_default():
        step = gc.compile(fetches, feeds=list(feeds), backend=backend)
    shapes = [(n, h, w, cin), (*k, cin, cout), (cout,), tuple(fetches[0].shape)]
    vals = {p: rng.standard_normal(shape).astype(np_dt) for p, shape in zip(feeds, shapes)}
    return [np.asarray(v) for v in step(vals)]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c[:5])) + c[-1])
def test_row_blocked_convolutions_agree_with_the_reference(case):
    got = _run(case, gc.float32, "llvm")
    want = _run(case, gc.float64, "numpy")
    for name, a, b in zip(("y", "dfilter", "dbias"), got, want):
        np.testing.assert_allclose(a, b, rtol=0, atol=2e-5 * max(np.abs(b).max(), 1.0),
                                   err_msg=name)


@pytest.mark.parametrize("case", CASES[:4], ids=lambda c: "x".join(map(str, c[:5])))
def test_row_blocks_keep_the_per_position_bits(case, monkeypatch):
    n, h, w, cin, cout, k, s, pad = case
    g = Geometry((n, h, w, cin), k, s, pad)
    assert llvm_conv._row_blocked(g)
    monkeypatch.setattr(conv_lanes, "SHARE_LANES", False)  # one position per vector
    blocked = _run(case, gc.float32, "llvm")
    monkeypatch.setattr(llvm_conv, "_row_blocked", lambda g: False)
    single = _run(case, gc.float32, "llvm")
    np.testing.assert_array_equal(blocked[0], single[0])  # y: the same FMA chains
    np.testing.assert_array_equal(blocked[1], single[1])  # dfilter: positions in order
    np.testing.assert_allclose(blocked[2], single[2], rtol=1e-5, atol=1e-5)


def test_padded_and_strided_rows_do_not_block():
    assert not llvm_conv._row_blocked(Geometry((1, 8, 8, 1), (3, 3), (1, 1), "SAME"))
    assert not llvm_conv._row_blocked(Geometry((1, 9, 9, 1), (3, 3), (1, 2), "VALID"))
    assert not llvm_conv._row_blocked(Geometry((1, 9, 9, 1), (3, 3), (1, 1), "VALID", (1, 2)))
    assert llvm_conv._row_blocked(Geometry((1, 9, 9, 1), (3, 3), (2, 1), "VALID"))


def test_block_width_leaves_registers_for_the_accumulators():
    assert llvm_conv._filter_positions(10, 8, D.float32) >= 2  # W4: 9 taps and the bias
    assert llvm_conv._filter_positions(32, 8, D.float32) == 0  # too many: passes instead
    assert llvm_conv._filter_positions(9, 32, D.float32) == 0  # rows of several registers


def test_relu_epilogue_keeps_nan_and_turns_negative_zero_positive():
    """The folded ReLU is a compare and select (``RELU_SELECT``): NaN stays NaN, -0 -> +0,
    as np.maximum(x, 0) has it."""
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, [2, 6, 12, 1])
        f = gc.placeholder(gc.float32, [3, 3, 1, 8])
        y = gc.nn.relu(-gc.nn.conv2d(x, f, [1, 1, 1, 1], "VALID"))  # -(+0) = -0 in the ReLU
        steps = [gc.compile([y], feeds=[x, f], backend=b) for b in ("llvm", "numpy")]
    xv = np.zeros((2, 6, 12, 1), np.float32)
    xv[0, 2, 5, 0] = np.nan
    xv[1, 1:4, 6:9, 0] = -1.0
    fv = np.random.default_rng(3).standard_normal((3, 3, 1, 8)).astype(np.float32)
    got, want = (np.asarray(s({x: xv, f: fv})[0]) for s in steps)
    assert np.isnan(got).any() and (got == 0).any()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got[~np.isnan(got)], want[~np.isnan(want)], rtol=1e-6)
    np.testing.assert_array_equal(got == 0, want == 0)
    assert not np.signbit(got[got == 0]).any() and not np.signbit(want[want == 0]).any()
    text = str(steps[0].compiled.source)
    assert re.search(r"fcmp ugt <(8|16) x float>", text) and "llvm.maximum" not in text
