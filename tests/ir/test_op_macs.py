"""``OpDef.macs``: the multiply-adds a GEMM or convolution does, counted as the products
the reference computes (the split pass weighs work by it, the benchmarks' floor counts it)."""
import numpy as np

import graphc as gc
from graphc.ir.ops import registry


def _macs(node):
    return node.opdef.multiply_adds(node)


def test_matmul_counts_output_elements_times_the_contracted_length():
    a = gc.placeholder(gc.float32, [5, 7, 3])
    b = gc.placeholder(gc.float32, [5, 7, 4])
    assert _macs(gc.matmul(a, b, transpose_a=True)) == 5 * 3 * 4 * 7
    c = gc.placeholder(gc.float32, [6, 7])
    assert _macs(gc.matmul(c, gc.placeholder(gc.float32, [7, 2]))) == 6 * 2 * 7
    w = gc.placeholder(gc.float32, [6, 2])
    sub = registry.apply("subtract_matmul", [w, c, gc.placeholder(gc.float32, [7, 2])], {})
    assert _macs(sub) == 6 * 2 * 7


def test_a_strided_convolution_and_its_gradients_do_the_same_products():
    """Stride 2, VALID: the forward's products, once each in both gradients (the input
    gradient is not its input's size times the taps)."""
    x = gc.placeholder(gc.float32, [2, 9, 9, 3])
    k = gc.constant(np.ones((3, 3, 3, 4), np.float32))
    y = gc.nn.conv2d(x, k, [1, 2, 2, 1], "VALID")  # 2 x 4 x 4 x 4
    forward = 2 * 4 * 4 * 4 * (3 * 3 * 3)
    assert _macs(y) == forward
    dx, dk = gc.gradients(gc.reduce_sum(y * y), [x, k])
    ops = {n.op_name: n for n in gc.get_default_graph().nodes}
    assert _macs(ops["conv2d_backprop_input"]) == forward
    assert _macs(ops["conv2d_backprop_filter"]) == forward


def test_other_ops_do_none():
    x = gc.placeholder(gc.float32, [4, 4])
    assert _macs(gc.tanh(x)) is None and _macs(gc.reduce_sum(x)) is None
