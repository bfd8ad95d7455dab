"""``gc.nn`` layer functions with TF1 signatures: conv2d, pooling, moments and batch
normalization, dropout, embedding lookup.

Argument handling only: TF1's int / 2- / 4-element strides and window sizes, "SAME"/"VALID"
padding, NHWC or NCHW layouts (NCHW is transposed to NHWC around the op, so the ops and
kernels see one layout), keep_prob or rate. Semantics live in ``ir.ops.conv``, ``ir.ops.pool``
and ``ir.ops.random_ops``; batch normalization and dropout are compositions of graph ops.
"""
from ..errors import GraphError
from ..ir.graph import Node, get_default_graph
from ..ir.ops import apply, convert
from ..ir.source import user_location
from .math_ops import (cast, concat, expand_dims, floor, gather, minimum, reshape, rsqrt, sqrt,
                       square, squeeze, stack, zeros, zeros_like)
from .array_ops import scalar_arg
from .reduction_ops import reduce_mean, reduce_sum

_TO_NHWC, _TO_NCHW = (0, 2, 3, 1), (0, 3, 1, 2)


# -- argument normalization ----------------------------------------------------------------------
def _pair(value, what, fn, data_format):
    """TF1's int / [h, w] / 4-element [N, H, W, C] (or [N, C, H, W]) form to (h, w)."""
    if isinstance(value, int):
        return (value, value)
    value = tuple(int(v) for v in value)
    if len(value) == 1:
        return value * 2
    if len(value) == 2:
        return value
    if len(value) == 4:
        spatial = value[1:3] if data_format == "NHWC" else value[2:4]
        rest = (value[0], value[3]) if data_format == "NHWC" else value[:2]
        if rest != (1, 1):
            raise GraphError(f"{fn}: {what} {list(value)} move along the batch or channel "
                             f"axis; only the spatial entries may differ from 1",
                             hint=f"for {data_format}, pass [1, h, w, 1]" if data_format ==
                             "NHWC" else "for NCHW, pass [1, 1, h, w]")
        return spatial
    raise GraphError(f"{fn}: {what} must be an int or a list of 1, 2 or 4 ints, "
                     f"found {list(value)}")


def _padding(padding, fn):
    if isinstance(padding, str) and padding.upper() in ("VALID", "SAME"):
        return padding.upper()
    raise GraphError(f"{fn}: padding must be 'VALID' or 'SAME', found {padding!r}",
                     hint="explicit padding lists are not supported; pad with a concat of "
                          "zeros, or use 'SAME'")


def _data_format(data_format, fn):
    fmt = {"NHWC": "NHWC", "NCHW": "NCHW", "channels_last": "NHWC",
           "channels_first": "NCHW"}.get(data_format)
    if fmt is None:
        raise GraphError(f"{fn}: data_format must be 'NHWC' or 'NCHW', found {data_format!r}")
    return fmt


def _in_nhwc(x, data_format, build):
    """Run ``build`` on ``x`` in NHWC, transposing in and out for NCHW."""
    if data_format == "NHWC":
        return build(x)
    x = apply("transpose", [x], {"perm": _TO_NHWC})
    return apply("transpose", [build(x)], {"perm": _TO_NCHW})


# -- convolution and pooling -----------------------------------------------------------------------
def _conv_args(fn, filter, strides, padding, data_format, dilations):  # noqa: A002
    """(filter, layout, op attrs) of a convolution call, checked the way TF1 checks them."""
    if filter is None or strides is None or padding is None:
        raise GraphError(f"{fn}: filter, strides and padding are required")
    fmt = _data_format(data_format, fn)
    if dilations is not None and set(_pair(dilations, "dilations", fn, fmt)) != {1}:
        raise GraphError(f"{fn}: dilations other than 1 are not supported")
    return filter, fmt, {"strides": _pair(strides, "strides", fn, fmt),
                         "padding": _padding(padding, fn)}


def conv2d(input, filter=None, strides=None, padding=None, use_cudnn_on_gpu=True,  # noqa: A002
           data_format="NHWC", dilations=None, name=None, filters=None):
    """2-D convolution (cross-correlation, as in TF) of ``input`` with ``filter``.

    Args:
        input: [batch, height, width, in] (NHWC) or [batch, in, height, width] (NCHW).
        filter: [kh, kw, in, out] (``filters=`` is TF2's name for it).
        strides: an int, [sh, sw], or TF1's 4-element form ([1, sh, sw, 1] for NHWC).
        padding: "VALID" (windows inside the input) or "SAME" (``ceil(size / stride)``
            outputs; the odd padding row/column goes after, as in TF).
        data_format: "NHWC" (default) or "NCHW".
        dilations: [1, rh, rw, 1] (NHWC) or an int: an atrous convolution (the filter's
            taps that far apart), with strides 1.
    Returns:
        The convolution, in ``data_format``.
    Raises:
        GraphError: bad strides, padding, layout or dilations; ShapeError from the op's rule.
    Example:
        >>> y = gc.nn.conv2d(x, W, strides=[1, 1, 1, 1], padding="SAME")
    """
    filter = filter if filter is not None else filters  # noqa: A001
    fmt = _data_format(data_format, "conv2d")
    rates = (1, 1) if dilations is None else _pair(dilations, "dilations", "conv2d", fmt)
    if rates != (1, 1) and strides is not None and \
            _pair(strides, "strides", "conv2d", fmt) != (1, 1):
        raise GraphError("conv2d: dilations other than 1 need strides of 1 (as in TF1)")
    filter, fmt, attrs = _conv_args("conv2d", filter, strides, padding, data_format, None)
    if rates != (1, 1):  # atrous: the taps ``rates`` apart (the op's ``dilations``)
        attrs["dilations"] = rates
    return _in_nhwc(convert(input), fmt,
                    lambda x: apply("conv2d", [x, convert(filter, x)], attrs, name=name))


def conv2d_transpose(value, filter=None, output_shape=None, strides=None,  # noqa: A002
                     padding="SAME", data_format="NHWC", name=None, filters=None,
                     dilations=None):
    """The transpose of ``conv2d`` (its gradient with respect to its input; "deconvolution").

    Args:
        value: [batch, height, width, in] (NHWC) or NCHW: the "output" side of a conv2d.
        filter: [kh, kw, out, in], as TF1 has it (the filter of the conv2d this transposes,
            whose input has ``out`` channels).
        output_shape: the result's shape, [batch, height, width, out] in ``data_format``:
            ints (the batch may be -1 or None: then it is ``value``'s).
        strides, padding, data_format: of that conv2d.
    Returns:
        Shaped ``output_shape``; ``conv2d`` of it with the same filter, strides and padding
        would have ``value``'s shape (checked).
    Raises:
        GraphError: output_shape missing or not ints, dilations other than 1; ShapeError when
            the shapes do not fit the convolution.
    Example:
        >>> up = gc.nn.conv2d_transpose(h, W, [32, 14, 14, 16], [1, 2, 2, 1], "SAME")
    """
    if output_shape is None:
        raise GraphError("conv2d_transpose: output_shape is required")
    filter, fmt, attrs = _conv_args("conv2d_transpose",  # noqa: A001
                                    filter if filter is not None else filters, strides,
                                    padding, data_format, dilations)
    try:
        out = [None if d is None or int(d) < 0 else int(d) for d in output_shape]
    except (TypeError, ValueError):
        raise GraphError("conv2d_transpose: output_shape must be 4 ints (the batch may be -1); "
                         f"found {output_shape!r}") from None
    if len(out) != 4:
        raise GraphError(f"conv2d_transpose: output_shape must have 4 entries, found {out}")
    spatial = out[1:] if fmt == "NHWC" else [out[2], out[3], out[1]]

    def build(x):
        _check_transpose_sizes(x, spatial, convert(filter, x), attrs)
        # The op reads only its third operand's shape: a zero splat with x's batch, which
        # constant folding turns into a zero-strided constant (no memory, no work).
        like = zeros_like(x)[:, :1, :1, :1] + zeros([1] + spatial, x.dtype)
        return apply("conv2d_backprop_input", [x, convert(filter, x), like], attrs, name=name)
    return _in_nhwc(convert(value), fmt, build)


def _ints(value):
    return [int(value)] if isinstance(value, int) else [int(v) for v in value]


def conv1d(value=None, filters=None, stride=None, padding=None, use_cudnn_on_gpu=None,
           data_format="NWC", name=None, input=None, dilations=None):  # noqa: A002
    """1-D convolution: TF1's form, a conv2d over a height-1 image (expand_dims, conv2d,
    squeeze), so it shares conv2d's op, kernels and gradients.

    Args:
        value: [batch, width, in] ("NWC") or [batch, in, width] ("NCW"); ``input=`` is
            TF2's name for it.
        filters: [kw, in, out].
        stride: an int, or TF1's 1- or 3-element form ([1, s, 1] for NWC).
        padding: "VALID" or "SAME" (as conv2d).
        data_format: "NWC" (default) or "NCW".
    Returns:
        [batch, out_width, out] (or [batch, out, out_width] for "NCW").
    Raises:
        GraphError: bad stride, padding, layout or dilations.
    Example:
        >>> y = gc.nn.conv1d(x, W, stride=1, padding="SAME")  # x [N, W, C], W [k, C, F]
    """
    value = value if value is not None else input
    fmt = {"NWC": "NHWC", "NCW": "NCHW", "channels_last": "NHWC",
           "channels_first": "NCHW"}.get(data_format)
    if fmt is None:
        raise GraphError(f"conv1d: data_format must be 'NWC' or 'NCW', found {data_format!r}")
    if stride is None:
        raise GraphError("conv1d: stride is required")
    s = _ints(stride)
    if len(s) == 3:
        rest = (s[0], s[2]) if fmt == "NHWC" else (s[0], s[1])
        if rest != (1, 1):
            raise GraphError(f"conv1d: stride {s} moves along the batch or channel axis")
        s = [s[1] if fmt == "NHWC" else s[2]]
    if len(s) != 1:
        raise GraphError(f"conv1d: stride must be an int or a list of 1 or 3 ints, found {s}")
    if dilations is not None and set(_ints(dilations)) != {1}:
        raise GraphError("conv1d: dilations other than 1 are not supported")
    h_axis = 1 if fmt == "NHWC" else 2  # the inserted height-1 axis
    x = expand_dims(convert(value), h_axis)
    w = expand_dims(convert(filters, x), 0)
    y = conv2d(x, w, [1, s[0]], padding, data_format=fmt)
    return squeeze(y, [h_axis], name=name)


def _check_transpose_sizes(x, spatial, w, attrs):
    """conv2d of the requested output must give ``x``'s height and width (static dims)."""
    (sh, sw), same = attrs["strides"], attrs["padding"] == "SAME"
    for axis, size, k, s in ((1, spatial[0], w.shape[0], sh), (2, spatial[1], w.shape[1], sw)):
        if x.shape[axis] is None or k is None:
            continue
        conv = -(-size // s) if same else (size - k) // s + 1
        if conv != x.shape[axis]:
            raise GraphError(
                f"conv2d_transpose: output_shape {spatial[0]}x{spatial[1]} does not fit: "
                f"conv2d of it ({attrs['padding']}, strides {sh}x{sw}, a {w.shape[0]}x"
                f"{w.shape[1]} filter) gives {conv} along axis {axis}, the value has "
                f"{x.shape[axis]}", loc=user_location())


def _pool(op, fn, value, ksize, strides, padding, data_format, name):
    fmt = _data_format(data_format, fn)
    attrs = {"ksize": _pair(ksize, "ksize", fn, fmt), "strides": _pair(strides, "strides", fn, fmt),
             "padding": _padding(padding, fn)}
    return _in_nhwc(convert(value), fmt, lambda x: apply(op, [x], attrs, name=name))


def max_pool2d(input, ksize, strides, padding, data_format="NHWC", name=None):  # noqa: A002
    """Max over each window. The gradient of a window goes whole to its FIRST maximum in
    row-major order (ties: the top-left-most equal element wins; see ``ir.ops.pool``).

    Args:
        input: 4-D, in ``data_format`` ("NHWC" or "NCHW").
        ksize, strides: an int, [h, w], or TF1's 4-element form ([1, h, w, 1] for NHWC).
        padding: "VALID" or "SAME" (padding never wins a window).
    Example:
        >>> p = gc.nn.max_pool(h, ksize=[1, 2, 2, 1], strides=[1, 2, 2, 1], padding="VALID")
    """
    return _pool("max_pool", "max_pool2d", input, ksize, strides, padding, data_format, name)


def avg_pool2d(input, ksize, strides, padding, data_format="NHWC", name=None):  # noqa: A002
    """Mean of each window; with SAME padding, of the window's real elements only (as TF).

    Same arguments as ``max_pool2d``.
    """
    return _pool("avg_pool", "avg_pool2d", input, ksize, strides, padding, data_format, name)


def max_pool(value, ksize, strides, padding, data_format="NHWC", name=None, input=None):  # noqa
    """TF1's ``tf.nn.max_pool`` (``value`` or ``input``): see ``max_pool2d``."""
    return max_pool2d(value if input is None else input, ksize, strides, padding, data_format,
                      name)


def avg_pool(value, ksize, strides, padding, data_format="NHWC", name=None, input=None):  # noqa
    """TF1's ``tf.nn.avg_pool``: see ``avg_pool2d``."""
    return avg_pool2d(value if input is None else input, ksize, strides, padding, data_format,
                      name)


# -- moments and batch normalization -----------------------------------------------------------
def moments(x, axes, shift=None, name=None, keep_dims=None, keepdims=None):
    """Mean and (biased) variance of ``x`` over ``axes`` (TF1's tf.nn.moments).

    Unlike TF, the mean is not wrapped in stop_gradient inside the variance: the first
    derivative is the same (the variance's derivative in the mean is sum(x - mean) = 0), but
    the second derivative stays exact, which Hessian-vector products need.

    Returns:
        (mean, variance), with the reduced axes kept as size 1 when ``keepdims``.
    Example:
        >>> mean, var = gc.nn.moments(x, axes=[0])
    """
    kd = bool(keepdims if keepdims is not None else keep_dims)
    axes = tuple(int(a) for a in axes)
    mean = reduce_mean(x, axis=axes, keepdims=True)
    variance = reduce_mean(square(x - mean), axis=axes, keepdims=kd)
    return (mean if kd else reduce_mean(x, axis=axes)), variance


def batch_normalization(x, mean, variance, offset, scale, variance_epsilon, name=None):
    """``scale * (x - mean) / sqrt(variance + eps) + offset`` (TF1's tf.nn.batch_normalization).

    ``offset`` and ``scale`` may be None. Computed as ``x * inv + (offset - mean * inv)`` with
    ``inv = scale * rsqrt(variance + eps)``, as TF does, so the per-channel factors are
    computed once and the [batch, ...] work is one multiply-add.

    Example:
        >>> y = gc.nn.batch_normalization(x, mean, var, beta, gamma, 1e-3)
    """
    inv = rsqrt(variance + float(variance_epsilon))
    if scale is not None:
        inv = inv * scale
    shift = -(mean * inv) if offset is None else offset - mean * inv
    return apply("add", [x * inv, shift], name=name)


def fused_batch_norm(x, scale, offset, mean=None, variance=None, epsilon=0.001,
                     data_format="NHWC", is_training=True, name=None):
    """TF1's ``tf.nn.fused_batch_norm``: returns (y, batch mean, batch variance).

    Training normalizes with the batch statistics over all axes but the channel axis;
    inference uses ``mean`` and ``variance``. Built from graph ops (not a fused kernel).
    """
    fmt = _data_format(data_format, "fused_batch_norm")
    axes = [0, 1, 2] if fmt == "NHWC" else [0, 2, 3]
    if is_training:
        mean, variance = moments(x, axes)
    elif mean is None or variance is None:
        raise GraphError("fused_batch_norm: inference (is_training=False) needs mean and "
                         "variance")
    if fmt == "NCHW":
        shape = [1, -1, 1, 1]
        y = batch_normalization(x, reshape(mean, shape), reshape(variance, shape),
                                reshape(offset, shape), reshape(scale, shape), epsilon, name)
    else:
        y = batch_normalization(x, mean, variance, offset, scale, epsilon, name)
    return y, mean, variance


# -- dropout ---------------------------------------------------------------------------------------
def _op_seed(seed):
    """The op seed: given, or derived from the graph seed (as TF1), or None (random)."""
    g = get_default_graph()
    if seed is not None:
        return int(seed)
    return None if g.seed is None else hash((g.seed, len(g.nodes))) & 0x7FFFFFFF


def dropout(x, keep_prob=None, noise_shape=None, seed=None, name=None, rate=None):
    """Zero each element with probability ``1 - keep_prob`` and scale the rest by
    ``1 / keep_prob`` (TF1's tf.nn.dropout; pass ``keep_prob`` or TF2's ``rate``).

    The mask is one impure node (``floor(keep_prob + random_uniform_like)``): a fresh mask
    every run, reproducible with ``seed`` (or the graph seed), never merged with another by
    CSE, and the same node feeds the forward value and the gradient, so backpropagation
    uses exactly the forward mask.

    Args:
        x: a floating tensor.
        keep_prob: a number in (0, 1] or a scalar tensor (a fed placeholder: 1.0 at test time).
        noise_shape: a shape broadcastable to x's, to share the mask (e.g. [batch, 1]).
        seed: op seed.
        rate: ``1 - keep_prob`` (give one of the two).
    Raises:
        GraphError: neither or both of keep_prob and rate, or a constant outside (0, 1].
    Example:
        >>> keep = gc.placeholder(gc.float32, [])   # feed 0.5 to train, 1.0 to test
        >>> h = gc.nn.dropout(h, keep_prob=keep)
    """
    if (keep_prob is None) == (rate is None):
        raise GraphError("dropout: pass exactly one of keep_prob and rate")
    x = convert(x)
    if keep_prob is None:
        keep_prob = 1.0 - (rate if isinstance(rate, Node) else float(rate))
    if not isinstance(keep_prob, Node):
        if not 0.0 < float(keep_prob) <= 1.0:
            raise GraphError(f"dropout: keep_prob must be in (0, 1], found {keep_prob}")
        if float(keep_prob) == 1.0:
            return x  # as TF1: no mask, no randomness
    keep_prob = cast(scalar_arg(convert(keep_prob, x)), x.dtype)
    like = x if noise_shape is None else _noise_like(x, noise_shape)
    uniform = apply("random_uniform_like", [like], {"dtype": x.dtype, "seed": _op_seed(seed)})
    mask = floor(keep_prob + uniform)
    return apply("multiply", [x / keep_prob, mask], name=name or "dropout")


def _noise_like(x, noise_shape):
    """A tensor shaped like ``noise_shape`` (None or x's dim for unknown dims), for the mask."""
    spec = []
    for i, d in enumerate(noise_shape):
        if d == 1 and x.shape[i] != 1:
            spec.append(("s", 0, 1, None))
        else:
            spec.append(("s", None, None, None))
    return apply("strided_slice", [x], {"spec": tuple(spec)})


# -- embeddings ------------------------------------------------------------------------------------
def embedding_lookup(params, ids, partition_strategy="mod", name=None, validate_indices=True,
                     max_norm=None):
    """Rows of ``params`` at ``ids`` (a gather; its gradient is a scatter-add of the rows).

    Args:
        params: [vocab, dim] tensor, or a list of shards (TF1's partitioned tables): "div"
            shards are concatenated; "mod" shards must be of equal size and are interleaved.
        ids: integer tensor of any shape; the result is ids.shape + params.shape[1:].
        max_norm: if given, each looked-up row is rescaled to at most this L2 norm.
    Example:
        >>> vectors = gc.nn.embedding_lookup(embeddings, word_ids)
    """
    if isinstance(params, (list, tuple)):
        params = _merge_shards(list(params), partition_strategy)
    rows = gather(params, ids, name=name)
    if max_norm is not None:
        norm = sqrt(reduce_sum(square(rows), axis=-1, keepdims=True))
        rows = rows * minimum(1.0, float(max_norm) / (norm + 1e-12))
    return rows


def _merge_shards(shards, strategy):
    if len(shards) == 1:
        return shards[0]
    if strategy == "div":
        return concat(shards, axis=0)
    sizes = {s.shape[0] for s in shards}
    if strategy != "mod" or len(sizes) != 1 or None in sizes:
        raise GraphError(f"embedding_lookup: {len(shards)} shards with sizes "
                         f"{[s.shape[0] for s in shards]} and partition_strategy="
                         f"{strategy!r}: 'mod' needs equal static shard sizes",
                         hint="pass one table, or partition_strategy='div'")
    # Row i lives in shard i % n at position i // n: stack on axis 1 and flatten the two.
    merged = stack(shards, axis=1)
    return reshape(merged, [-1] + list(shards[0].shape[1:]))


__all__ = ["conv1d", "conv2d", "max_pool2d", "avg_pool2d", "max_pool", "avg_pool", "moments",
           "batch_normalization", "fused_batch_norm", "dropout", "embedding_lookup"]
