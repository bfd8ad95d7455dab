"""Kernels made smaller for a faster cold compile (issue 16) compute the same bits as before:
softmax rows blocked 2 at a time instead of 8 (rows one by one: column blocks, which
``test_llvm_row_columns`` tests, off)."""
import numpy as np
import pytest

import graphc as gc
from graphc.codegen.llvm.kernels import nn, row_columns


def _xent_step(rows, classes):
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, [rows, classes], name="x")
        y = gc.placeholder(gc.int64, [rows], name="y")
        loss = gc.reduce_mean(gc.nn.sparse_softmax_cross_entropy_with_logits(labels=y,
                                                                             logits=x))
        (dx,) = gc.gradients(loss, [x])
        step = gc.compile([loss, dx, gc.nn.log_softmax(x)], feeds=[x, y], backend="llvm")
    rng = np.random.default_rng(rows * 31 + classes)
    feed = {x: (rng.standard_normal((rows, classes)) * 4).astype(np.float32),
            y: rng.integers(0, classes, rows)}
    return [np.asarray(v) for v in step(feed)], step.compiled.fn.llvm_ir


@pytest.mark.parametrize("rows,classes", [(1, 10), (7, 10), (128, 10), (33, 3), (20, 32)])
def test_row_blocks_give_the_bits_of_eight_rows_side_by_side(rows, classes, monkeypatch):
    monkeypatch.setenv("GRAPHC_NO_CACHE", "1")
    monkeypatch.setattr(row_columns, "COLUMN_BLOCKS", False)
    monkeypatch.setattr(nn, "ROW_BLOCK", 8)
    wide, wide_ir = _xent_step(rows, classes)
    monkeypatch.setattr(nn, "ROW_BLOCK", 2)
    narrow, narrow_ir = _xent_step(rows, classes)
    if rows >= 8:
        assert len(narrow_ir) < len(wide_ir)  # (the kernels were different)
    for a, b in zip(wide, narrow):
        assert a.tobytes() == b.tobytes()
