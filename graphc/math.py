"""``gc.math``: TF1's ``tf.math`` namespace, the same functions as the top-level names
(``tf.math.log is tf.log``), for code written against either spelling.

Only functions graphc has are listed; a missing one is an AttributeError, never a stand-in.
"""
from .ops.array_ops import cumsum
from .ops.confusion_matrix import confusion_matrix
from .ops.indexing_ops import segment_sum, unsorted_segment_sum
from .ops.math_ops import (abs, add, add_n, argmax, argmin, ceil, div_no_nan,  # noqa: A004
                           divide, equal, exp, floor, floordiv, floormod, greater, greater_equal,
                           is_finite, is_inf, is_nan, less, less_equal, log, log1p, logical_and,
                           logical_not, logical_or, maximum, minimum, mod, multiply, negative,
                           not_equal, pow, reciprocal, rint, round, rsqrt, sigmoid, sign, sin,
                           cos, sqrt, square, squared_difference, subtract, tanh, truediv)
from .ops.math_ops import div_no_nan as divide_no_nan
from .ops.nn_impl import in_top_k, l2_normalize, softplus
from .ops.sort_ops import top_k
from .ops.reduction_ops import (count_nonzero, reduce_all, reduce_any, reduce_logsumexp,
                                reduce_max, reduce_mean, reduce_min, reduce_prod, reduce_std,
                                reduce_sum, reduce_variance)

__all__ = ["abs", "add", "add_n", "argmax", "argmin", "ceil", "rint", "round", "top_k",
           "confusion_matrix", "count_nonzero", "cumsum", "divide",
           "divide_no_nan", "div_no_nan", "equal", "exp", "is_inf", "is_nan", "reduce_std",
           "reduce_variance", "segment_sum", "unsorted_segment_sum",
           "floor", "floordiv", "floormod", "greater", "greater_equal", "in_top_k",
           "is_finite", "l2_normalize", "less", "less_equal", "log", "log1p", "logical_and",
           "logical_not", "logical_or", "maximum", "minimum", "mod", "multiply", "negative",
           "not_equal", "pow", "reciprocal", "reduce_all", "reduce_any", "reduce_logsumexp",
           "reduce_max", "reduce_mean", "reduce_min", "reduce_prod", "reduce_sum", "rsqrt",
           "sigmoid", "sign", "sin", "cos", "softplus", "sqrt", "square", "squared_difference",
           "subtract", "tanh", "truediv"]
