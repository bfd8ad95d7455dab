"""The registry of op kinds the random graphs draw from: weight, drawer and builder per kind."""
import numpy as np

from . import families as F
from . import nn_families as N

# kind: (relative weight, drawer or None for kinds only shrinking or rescaling make, builder)
KINDS = {
    "unary": (10, F.draw_unary, F.build_unary),
    "binary": (12, F.draw_binary, F.build_binary),
    "reduce": (5, F.draw_reduce, F.build_reduce),
    "matmul": (6, F.draw_matmul, F.build_matmul),
    "matsum": (3, F.draw_matsum, F.build_matsum),
    "square_sum": (0, None, F.build_square_sum),
    "self_product": (2, F.draw_self_product, F.build_self_product),
    "reshape": (3, F.draw_reshape, F.build_reshape),
    "transpose": (3, F.draw_transpose, F.build_transpose),
    "slice": (3, F.draw_slice, F.build_slice),
    "strided": (0, None, F.build_strided),
    "concat": (3, F.draw_concat, F.build_concat),
    "gather": (2, F.draw_gather, F.build_gather),
    "scatter_nd": (2, F.draw_scatter, F.build_scatter),
    "segment": (2, F.draw_segment, F.build_segment),
    "conv2d": (3, N.draw_conv, N.build_conv),
    "depthwise": (2, N.draw_depthwise, N.build_depthwise),
    "pool": (3, N.draw_pool, N.build_pool),
    "softmax": (2, N.draw_softmax, N.build_softmax),
    "xent": (3, N.draw_xent, N.build_xent),
    "sparse_xent": (0, None, N.build_sparse_xent),
    "onehot_xent": (0, None, N.build_onehot_xent),
    "where": (2, N.draw_where, N.build_where),
    "cond": (2, N.draw_cond, N.build_cond),
    "rnn": (2, N.draw_rnn, N.build_rnn),
    "loop": (2, N.draw_loop, N.build_loop),
    "grad": (5, N.draw_grad, N.build_grad),
    "hvp": (2, N.draw_hvp, N.build_hvp),
    "assign": (2, N.draw_assign, N.build_assign),
    "scale": (0, None, F.build_scale),
    "identity": (0, None, F.build_identity),
    "conv_block": (2, N.draw_conv_block, N.build_conv_block),
    "optimizer": (2, N.draw_optimizer, N.build_optimizer),
    "batch_norm": (2, N.draw_batch_norm, N.build_batch_norm),
}
# Kinds that update variables: a step's second call sees the first's updates. (Random ops
# are not drawn: the NumPy backend draws from NumPy's generators, LLVM from its own.)
STATEFUL = frozenset({"assign", "optimizer"})
BUILDERS = {k: b for k, (_, _, b) in KINDS.items()}
DRAWERS = {k: d for k, (_, d, _) in KINDS.items() if d is not None}
WEIGHTS = {k: w for k, (w, d, _) in KINDS.items() if d is not None}
# ``--large`` graphs: the kinds whose kernels change with size (GEMM blocking, packing and
# threads; implicit-GEMM convolutions) twice as likely.
LARGE_WEIGHTS = {k: w * (2 if k in ("matmul", "matsum", "self_product", "conv2d", "depthwise")
                         else 1) for k, w in WEIGHTS.items()}


def describe_params(params):
    """``key=value`` for the scalar params; arrays by shape (their values are in the recipe)."""
    out = []
    for k, v in params.items():
        if isinstance(v, np.ndarray):
            v = f"<{v.dtype}{list(v.shape)}>" if v.size > 6 else v.tolist()
        out.append(f"{k}={v}")
    return ", ".join(out)
