"""TensorFlow op types -> graphc's public TF1 functions, for ``import_meta_graph``.

``OPS[op type](b, nd, ins)`` builds one TensorFlow node with graphc's own API (so every shape
and dtype rule and error of graphc applies): ``nd`` is the ``NodeDef`` (``nd.attr(key,
kind)``), ``ins`` the graphc nodes of its data inputs, and ``b.static(i)`` the value of input
``i`` when it is a TensorFlow ``Const`` (reduction axes, shapes, permutations, slice bounds),
else its graphc node (a size known when the step is specialized). A form graphc does not take
(NCHW, training-mode batch norm, a non-constant slice bound) raises ``Unsupported``: the node
is not imported, as an op graphc does not have. Variables, placeholders, constants and
``NoOp`` are built by ``tf_meta_graph`` itself.
"""
import numpy as np

from .. import nn


class Unsupported(Exception):
    """A node whose op or attributes graphc does not take; the message says why."""


def _get(name):
    import graphc
    return getattr(graphc, name)


def _unary(fn):
    return lambda b, nd, ins: fn(ins[0])


def _axis(b, i):
    v = b.static(i)
    return v.tolist() if isinstance(v, np.ndarray) else v


def _reduce(name):
    def build(b, nd, ins):
        return _get(name)(ins[0], axis=_axis(b, 1), keepdims=nd.attr("keep_dims", "b", False))
    return build


def _nhwc(nd):
    fmt = nd.attr("data_format", "s", "NHWC")
    if fmt not in ("NHWC", "N...C"):
        raise Unsupported(f"data_format {fmt}: graphc's {nd.op} takes NHWC (channels last)")


def _padding(nd):
    pad = nd.attr("padding", "s")
    if pad not in ("SAME", "VALID"):
        raise Unsupported(f"padding {pad}: graphc takes SAME or VALID")
    return pad


def _conv2d(b, nd, ins):
    _nhwc(nd)
    return nn.conv2d(ins[0], ins[1], strides=nd.attr("strides", "ints"), padding=_padding(nd),
                     dilations=nd.attr("dilations", "ints", [1, 1, 1, 1]))


def _depthwise(b, nd, ins):
    _nhwc(nd)
    return nn.depthwise_conv2d(ins[0], ins[1], strides=nd.attr("strides", "ints"),
                               padding=_padding(nd),
                               dilations=nd.attr("dilations", "ints", [1, 1, 1, 1]))


def _pool(fn):
    def build(b, nd, ins):
        _nhwc(nd)
        return fn(ins[0], nd.attr("ksize", "ints"), nd.attr("strides", "ints"), _padding(nd))
    return build


def _bias_add(b, nd, ins):
    _nhwc(nd)
    return nn.bias_add(ins[0], ins[1])


def _matmul(b, nd, ins):
    return _get("matmul")(ins[0], ins[1], transpose_a=nd.attr("transpose_a", "b", False),
                          transpose_b=nd.attr("transpose_b", "b", False))


def _batch_matmul(b, nd, ins):
    return _get("matmul")(ins[0], ins[1], transpose_a=nd.attr("adj_x", "b", False),
                          transpose_b=nd.attr("adj_y", "b", False))


def _fused_batch_norm(b, nd, ins):
    _nhwc(nd)
    if nd.attr("is_training", "b", True):
        raise Unsupported("is_training=True (batch statistics): graphc imports batch norm in "
                          "inference mode; rebuild training in graphc")
    return nn.fused_batch_norm(ins[0], ins[1], ins[2], ins[3], ins[4],
                               epsilon=nd.attr("epsilon", "f", 1e-4), is_training=False)[0]


def _strided_slice(b, nd, ins):
    bounds = [b.static(i) for i in (1, 2, 3)]
    if not all(isinstance(v, np.ndarray) and v.ndim == 1 for v in bounds) or \
            not len(bounds[0]) == len(bounds[1]) == len(bounds[2]):
        raise Unsupported("begin, end and strides are not constant vectors of one length")
    masks = {k: nd.attr(k, "i", 0) for k in ("begin_mask", "end_mask", "ellipsis_mask",
                                             "new_axis_mask", "shrink_axis_mask")}
    index = []
    for i, (lo, hi, step) in enumerate(zip(*(v.tolist() for v in bounds))):
        if masks["ellipsis_mask"] >> i & 1:
            index.append(Ellipsis)
        elif masks["new_axis_mask"] >> i & 1:
            index.append(None)
        elif masks["shrink_axis_mask"] >> i & 1:
            index.append(lo)
        else:
            index.append(slice(None if masks["begin_mask"] >> i & 1 else lo,
                               None if masks["end_mask"] >> i & 1 else hi, step))
    return ins[0][tuple(index)]


def _squeeze(b, nd, ins):
    axes = nd.attr("squeeze_dims", "ints", [])
    return _get("squeeze")(ins[0], axis=axes or None)


def _sparse_xent(b, nd, ins):
    return nn.sparse_softmax_cross_entropy_with_logits(labels=ins[1], logits=ins[0])


def _xent(b, nd, ins):
    return nn.softmax_cross_entropy_with_logits_v2(labels=ins[1], logits=ins[0])


def _arg(name):
    def build(b, nd, ins):
        return _get(name)(ins[0], axis=_axis(b, 1), output_type=nd.attr("output_type", "type",
                                                                       np.dtype(np.int64)))
    return build


def _gather(b, nd, ins):
    if nd.attr("batch_dims", "i", 0):
        raise Unsupported("batch_dims other than 0")
    return _get("gather")(ins[0], ins[1], axis=_axis(b, 2))


def _pad(b, nd, ins):
    value = b.static(2) if len(ins) > 2 else 0
    return _get("pad")(ins[0], _axis(b, 1), constant_values=value)


def _random(name):
    """TensorFlow's random ops (initializers, dropout masks): graphc's generator, seeded by the
    op's ``seed2`` (else ``seed``); the values differ from TensorFlow's stream."""
    def build(b, nd, ins):
        seed = nd.attr("seed2", "i", 0) or nd.attr("seed", "i", 0) or None
        return _get(name)(_axis(b, 0), dtype=nd.attr("dtype", "type"), seed=seed)
    return build


_SIMPLE = {  # TensorFlow op type -> graphc function of the same inputs
    "Identity": "identity", "ReadVariableOp": "identity", "Snapshot": "identity",
    "StopGradient": "stop_gradient", "Assign": "assign", "AssignVariableOp": "assign",
    "Add": "add", "AddV2": "add", "Sub": "subtract", "Mul": "multiply", "RealDiv": "realdiv",
    "Maximum": "maximum", "Minimum": "minimum", "Pow": "pow", "FloorMod": "floormod",
    "FloorDiv": "floordiv", "SquaredDifference": "squared_difference",
    "Equal": "equal", "NotEqual": "not_equal", "Greater": "greater", "Less": "less",
    "GreaterEqual": "greater_equal", "LessEqual": "less_equal",
    "LogicalAnd": "logical_and", "LogicalNot": "logical_not", "SelectV2": "where",
    "Neg": "negative", "Abs": "abs", "Sign": "sign", "Floor": "floor", "Ceil": "ceil",
    "Reciprocal": "reciprocal", "Tanh": "tanh", "Sigmoid": "sigmoid",
    "Exp": "exp", "Log": "log", "Sqrt": "sqrt", "Rsqrt": "rsqrt", "Square": "square",
    "ZerosLike": "zeros_like", "OnesLike": "ones_like", "Rank": "rank",
}

OPS = {
    "MatMul": _matmul,
    "BatchMatMul": _batch_matmul, "BatchMatMulV2": _batch_matmul,
    "BatchMatMulV3": _batch_matmul,
    "BiasAdd": _bias_add,
    "Relu": _unary(nn.relu), "Relu6": _unary(nn.relu6), "Elu": _unary(nn.elu),
    "Softmax": _unary(nn.softmax), "LogSoftmax": _unary(nn.log_softmax),
    "Softplus": _unary(nn.softplus),
    "LeakyRelu": lambda b, nd, ins: nn.leaky_relu(ins[0], alpha=nd.attr("alpha", "f", 0.2)),
    "Mean": _reduce("reduce_mean"), "Sum": _reduce("reduce_sum"), "Max": _reduce("reduce_max"),
    "Min": _reduce("reduce_min"), "Prod": _reduce("reduce_prod"),
    "ArgMax": _arg("argmax"), "ArgMin": _arg("argmin"),
    "Cast": lambda b, nd, ins: _get("cast")(ins[0], nd.attr("DstT", "type")),
    "Reshape": lambda b, nd, ins: _get("reshape")(ins[0], _axis(b, 1)),
    "Shape": lambda b, nd, ins: _get("shape")(ins[0], out_type=nd.attr(
        "out_type", "type", np.dtype(np.int32))),
    "Squeeze": _squeeze,
    "ExpandDims": lambda b, nd, ins: _get("expand_dims")(ins[0], axis=_axis(b, 1)),
    "ConcatV2": lambda b, nd, ins: _get("concat")(ins[:-1], _axis(b, len(ins) - 1)),
    "Pack": lambda b, nd, ins: _get("stack")(ins, axis=nd.attr("axis", "i", 0)),
    "Transpose": lambda b, nd, ins: _get("transpose")(ins[0], _axis(b, 1)),
    "StridedSlice": _strided_slice,
    "Fill": lambda b, nd, ins: _get("fill")(_axis(b, 0), ins[1]),
    "Tile": lambda b, nd, ins: _get("tile")(ins[0], _axis(b, 1)),
    "Slice": lambda b, nd, ins: _get("slice")(ins[0], _axis(b, 1), _axis(b, 2)),
    "RandomUniform": _random("random_uniform"),
    "RandomStandardNormal": _random("random_normal"),
    "TruncatedNormal": _random("truncated_normal"),
    "GatherV2": _gather, "Pad": _pad, "PadV2": _pad,
    "AddN": lambda b, nd, ins: _get("add_n")(ins),
    "Size": lambda b, nd, ins: _get("size")(ins[0], out_type=nd.attr(
        "out_type", "type", np.dtype(np.int32))),
    "Conv2D": _conv2d, "DepthwiseConv2dNative": _depthwise,
    "MaxPool": _pool(nn.max_pool), "AvgPool": _pool(nn.avg_pool),
    "SparseSoftmaxCrossEntropyWithLogits": _sparse_xent,
    "SoftmaxCrossEntropyWithLogits": _xent,
    "FusedBatchNorm": _fused_batch_norm, "FusedBatchNormV3": _fused_batch_norm,
}

OPS.update({tf_op: (lambda name: lambda b, nd, ins: _get(name)(*ins))(fn)
            for tf_op, fn in _SIMPLE.items()})

# ops with more than one output: only output 0 is imported (graphc nodes have one output)
OUTPUTS = {"SparseSoftmaxCrossEntropyWithLogits": ("loss", "backprop"),
           "SoftmaxCrossEntropyWithLogits": ("loss", "backprop"),
           "FusedBatchNorm": ("y", "batch_mean", "batch_variance", "reserve_space_1",
                              "reserve_space_2"),
           "FusedBatchNormV3": ("y", "batch_mean", "batch_variance", "reserve_space_1",
                                "reserve_space_2", "reserve_space_3")}

__all__ = ["OPS", "OUTPUTS", "Unsupported"]
