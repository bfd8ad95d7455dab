"""graphc: a static-graph compiler for training steps, with TensorFlow 1.x's API.

``import graphc as gc`` (or ``as tf``) gives the public API; ``graphc.ir``, ``graphc.codegen``
and ``graphc.runtime`` are the compiler's layers. The runtime alone can load and run a saved
step, so the compiler's modules are imported only when present.
"""
__version__ = "0.1.0"

from . import errors  # noqa: F401  (a leaf: always available)
from .runtime import load  # noqa: F401  (saved steps run without the compiler)

try:
    from . import ir as _ir  # noqa: F401
except ImportError:  # a runtime-only environment: saved steps still load
    _ir = None

if _ir is not None:
    from .ir.dtypes import (DType, as_dtype, bool_ as bool, float32, float64, int8,  # noqa
                            int16, int32, int64, uint8)
    from .ir.graph import get_default_session  # noqa: F401
    from .ir.autodiff import hessian_vector_product  # noqa: F401
    from .ir.shapes import Dimension, TensorShape  # noqa: F401
    from .framework import *  # noqa: F401,F403
    from .framework import (Graph, Operation, Tensor, Variable, assign, assign_add,  # noqa
                            control_dependencies,
                            assign_sub, constant, get_default_graph,
                            global_variables, global_variables_initializer, group,
                            initialize_all_variables, local_variables_initializer, name_scope,
                            no_op, placeholder, placeholder_with_default,
                            reset_default_graph, set_random_seed, trainable_variables,
                            variables_initializer)
    from .math_ops import *  # noqa: F401,F403
    from .math_ops import (abs, add, add_n, argmax, argmin, broadcast_to, cast,  # noqa: F401
                           clip_by_value, concat, div, divide, equal, exp, expand_dims, fill,
                           floor, floordiv, floormod, mod, realdiv, truediv,
                           gather, greater, greater_equal, identity, less, less_equal, log,
                           log1p, logical_and, logical_not, logical_or, matmul, maximum,
                           minimum, multiply, negative, not_equal, one_hot, ones, ones_like,
                           pow, random_normal, random_uniform, range, rank, reciprocal,
                           reduce_max, reduce_mean, reduce_min, reduce_sum, reshape, rsqrt,
                           shape, sigmoid, sign, slice, sqrt, square, squeeze, stack,
                           stop_gradient, subtract, tanh, transpose, truncated_normal, unstack,
                           where, zeros, zeros_like)
    from .gradients import gradients  # noqa: F401
    from .variable_scope import (AUTO_REUSE, VariableScope, get_variable,  # noqa: F401
                                 get_variable_scope, variable_scope)
    from . import data, initializers, nn, train  # noqa: F401
    from .array_ops import cumsum, pad, split, tile  # noqa: F401
    from .einsum import einsum  # noqa: F401
    from .array_extra import (diag, diag_part, eye, matrix_diag, matrix_diag_part,  # noqa: F401
                              reverse, reverse_v2, sequence_mask, tensordot, trace)
    from .array_extra import (gather_nd, scatter_nd, segment_sum,  # noqa: F401
                              unsorted_segment_sum)
    from .math_extra import (clip_by_average_norm, count_nonzero, div_no_nan,  # noqa: F401
                             is_inf, is_nan, norm, reduce_std, reduce_variance, to_double,
                             to_int32, to_int64)
    from . import linalg_api as linalg  # noqa: F401  (tf.linalg.diag, trace, tensordot...)
    from .control_flow import case, cond, while_loop  # noqa: F401
    from .functional_ops import foldl, foldr, map_fn, scan  # noqa: F401
    from .tensor_array import TensorArray  # noqa: F401  (also: x[i] with build-time tensors)
    from .compat_shims import app, flags, logging  # noqa: F401  (a TF1 script's header)
    from . import compat  # noqa: F401  (tf.compat.v1 is graphc itself)
    from .compat import (disable_eager_execution, disable_v2_behavior,  # noqa: F401
                         executing_eagerly)
    from .math_reductions import (reduce_all, reduce_any, reduce_logsumexp,  # noqa: F401
                                  reduce_prod)
    from . import math_api as math  # noqa: F401  (tf.math.log, tf.math.reduce_any, ...)
    from .session import InteractiveSession, Session  # noqa: F401
    from .printing import dump_ir  # noqa: F401
    from .clip_ops import clip_by_global_norm, clip_by_norm, global_norm  # noqa: F401
    from .initializers import (constant_initializer, glorot_normal_initializer,  # noqa: F401
                               glorot_uniform_initializer, ones_initializer,
                               orthogonal_initializer, random_normal_initializer,
                               random_uniform_initializer, truncated_normal_initializer,
                               variance_scaling_initializer, zeros_initializer)
    from .gradcheck import check_gradients  # noqa: F401
    from . import diagnostics  # noqa: F401
    from . import layers  # noqa: F401
    from . import contrib  # noqa: F401  (contrib.layers and contrib.rnn only)
    from . import losses  # noqa: F401
    from . import image  # noqa: F401  (flips, standardization, resizing)
    from . import metrics  # noqa: F401  (tf.metrics.accuracy)
    from . import summary  # noqa: F401  (tf.summary: TensorBoard event files)
    from .summary_proto import HistogramProto, Summary  # noqa: F401
    from . import distributed  # noqa: F401  (gc.distributed: data-parallel over MPI)
    from .framework import GraphKeys, add_to_collection, get_collection  # noqa: F401
    from .compile_api import CompiledStep, check_numerics, compile  # noqa: F401,A004
    from .debug_ops import Assert, Print, numpy_function, py_func  # noqa: F401
    from .debug_ops import print_ as print  # noqa: F401,A001  (tf.print)
    from .debug_ops import (assert_equal, assert_less, assert_non_negative,  # noqa: F401
                            assert_positive, debugging_namespace)
    debugging = debugging_namespace()  # tf.debugging.assert_*, Assert, check_numerics
    newaxis = None


# -- TF1 names graphc does not have (PEP 562): a clear AttributeError saying what to do ------
_MISSING = {
    "keras": "graphc implements TF1's graph API, not Keras: use gc.layers (dense, conv2d, "
             "dropout, batch_normalization...), gc.losses and the gc.train optimizers",
    "estimator": "write the training loop with gc.Session and a gc.train optimizer "
                 "(minimize), feeding batches from gc.data.batches",
    "saved_model": "save variables with gc.train.Saver, or a whole compiled step with "
                   "gc.compile(...).save(path) (loads without the compiler: gc.load)",
    "lite": "graphc has no TFLite converter: gc.compile(...).save(path) saves a compiled step",
    "gfile": "use Python's open() and os",
    "SparseTensor": "graphc has dense tensors only: gc.gather / gc.nn.embedding_lookup cover "
                    "sparse lookups",
    "sparse": "graphc has dense tensors only: gc.gather / gc.nn.embedding_lookup cover sparse "
              "lookups",
    "data.TFRecordDataset": "read the records with NumPy and build a gc.data.Dataset "
                            "from_tensor_slices, or feed batches through feed_dict",
    "data.TextLineDataset": "parse the lines into numbers with Python or NumPy and build a "
                            "gc.data.Dataset from_tensor_slices of the arrays",
}


def missing_attribute(qualname, module, name):
    """The AttributeError for ``module.name``: with what to do instead when ``qualname`` is
    a TF1 name graphc lacks (``_MISSING``), else Python's usual message."""
    message = f"module {module!r} has no attribute {name!r}"
    advice = _MISSING.get(qualname)
    if advice is None:
        return AttributeError(message)
    return AttributeError(f"{message}: graphc does not have tf.{qualname}; {advice}")


def __getattr__(name):
    """``tf.while_loop``, ``tf.keras``, ... : say graphc lacks them, and what to use."""
    raise missing_attribute(name, __name__, name)
