"""``gc.linalg``: the TF1 ``tf.linalg`` functions graphc has (``tf.linalg.diag`` is
``tf.matrix_diag``, ...). A missing one is an AttributeError, never a stand-in."""
from .ops.array_extra import eye, tensordot, trace
from .ops.array_extra import matrix_diag as diag
from .ops.array_extra import matrix_diag_part as diag_part
from .ops.special_math_ops import einsum
from .ops.math_extra import norm
from .ops.math_ops import matmul

__all__ = ["diag", "diag_part", "einsum", "eye", "matmul", "norm", "tensordot", "trace"]
