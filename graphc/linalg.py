"""``gc.linalg``: the TF1 ``tf.linalg`` functions graphc has (``tf.linalg.diag`` is
``tf.matrix_diag``, ...). A missing one is an AttributeError, never a stand-in."""
from .ops.linalg_ops import eye, norm, tensordot, trace
from .ops.linalg_ops import matrix_diag as diag
from .ops.linalg_ops import matrix_diag_part as diag_part
from .ops.math_ops import matmul
from .ops.special_math_ops import einsum

__all__ = ["diag", "diag_part", "einsum", "eye", "matmul", "norm", "tensordot", "trace"]
