"""Debugging ops: ``check_numerics`` (TF1's ``tf.debugging.check_numerics``).

``check_numerics(x, message)`` is ``x`` itself (its storage is ``x``'s: a view in the memory
plan) after checking that ``x`` holds no NaN or Inf; if it does, running the step raises
``graphc.errors.NumericsError`` naming the node, the user's line and ``message``. Its gradient
checks the incoming gradient the same way (as TF does), with "gradient of" in the message.
It is pure (CSE may merge two equal checks; an unused check is dropped, as in TF1) but never
folded away.
"""
import numpy as np

from .registry import F, defop


def check_numerics_impl(x, message=""):
    """Reference kernel: ``x`` unchanged, or FloatingPointError("check_numerics: ...") with
    the checked value as its ``value`` (the error names how many NaN and Inf, and where)."""
    x = np.asarray(x)
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        error = FloatingPointError(f"check_numerics: {message}")
        error.value = np.array(x)  # a copy: a failed step may restore the array it viewed
        raise error
    return x


def _check_infer(nodes, message=""):
    (x,) = nodes
    return x.dtype, x.shape


CHECK_NUMERICS = defop(
    "check_numerics", _check_infer,
    lambda g, out, x, message="": [F.check_numerics(g, message=f"gradient of: {message}")],
    impl=check_numerics_impl, family="debug", may_fail=True, view=True,
    doc="x unchanged, after checking it holds no NaN or Inf (raises NumericsError)",
    tf_name="CheckNumerics")
