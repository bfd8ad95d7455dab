"""More of ``gc.nn``: TF1's weighted and Poisson losses and the selu / swish / crelu
activations, each a composition of existing graph ops (so both backends and the gradients
come for free). ``gc.nn`` re-exports every name here.
"""
import numpy as np

from ..errors import GraphError
from ..ir.ops import apply, convert
from .math_ops import (abs, concat, exp, greater, greater_equal, less_equal, log,  # noqa: A004
                       log1p, logical_and, minimum, sigmoid, where)

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def _relu(x):
    return apply("relu", [x])


def weighted_cross_entropy_with_logits(labels=None, logits=None, pos_weight=None, name=None,
                                       targets=None):
    """Sigmoid cross-entropy with the positive term weighted by ``pos_weight`` (TF1).

    ``(1 - z) x + (1 + (q - 1) z) (log1p(exp(-|x|)) + relu(-x))`` for labels ``z``, logits
    ``x`` and ``q = pos_weight``: equal to ``z (-log sigmoid(x)) q + (1 - z) (-log(1 -
    sigmoid(x)))`` but never overflows.

    Args:
        labels (or TF1's older ``targets``), logits: tensors of one shape.
        pos_weight: a number or tensor weighting the positive examples.
    Returns:
        The elementwise loss.
    Raises:
        GraphError: labels, logits or pos_weight missing.
    Example:
        >>> loss = gc.nn.weighted_cross_entropy_with_logits(labels=y, logits=x, pos_weight=3.0)
    """
    labels = targets if labels is None else labels
    if labels is None or logits is None or pos_weight is None:
        raise GraphError("weighted_cross_entropy_with_logits: pass labels= (or targets=), "
                         "logits= and pos_weight= by keyword")
    z = convert(labels, logits)
    log_weight = (convert(pos_weight, logits) - 1.0) * z + 1.0
    softplus_neg = log1p(exp(-abs(logits))) + _relu(-logits)
    return (1.0 - z) * logits + log_weight * softplus_neg


def log_poisson_loss(targets, log_input, compute_full_loss=False, name=None):
    """``exp(c) - c t`` for log-rate ``c`` and counts ``t`` (TF1's log_poisson_loss).

    With ``compute_full_loss`` the Stirling term ``t log t - t + 0.5 log(2 pi t)`` is added
    where ``t > 1`` (it is zero-ish and left out for ``0 <= t <= 1``, as in TF1).

    Example:
        >>> loss = gc.nn.log_poisson_loss(counts, log_rate, compute_full_loss=True)
    """
    t = convert(targets, log_input)
    loss = exp(log_input) - log_input * t
    if not compute_full_loss:
        return loss
    small = logical_and(greater_equal(t, 0.0), less_equal(t, 1.0))
    safe = where(small, t * 0.0 + 1.0, t)  # log sees no zero in the branch that is dropped
    stirling = safe * log(safe) - safe + log(safe * float(2.0 * np.pi)) * 0.5
    return loss + where(small, t * 0.0, stirling)


def selu(features, name=None):
    """``scale * x`` for x > 0, ``scale * alpha * (exp(x) - 1)`` otherwise (self-normalizing).

    Example:
        >>> h = gc.nn.selu(gc.matmul(x, w))
    """
    # exp sees min(x, 0): a large positive x makes no inf whose zero gradient turns into NaN
    negative = (exp(minimum(features, 0.0)) - 1.0) * (SELU_SCALE * SELU_ALPHA)
    return where(greater(features, 0.0), features * SELU_SCALE, negative)


def swish(features, name=None):
    """``x * sigmoid(x)`` (TF1's tf.nn.swish).

    Example:
        >>> h = gc.nn.swish(gc.matmul(x, w))
    """
    return features * sigmoid(features)


def crelu(features, name=None, axis=-1):
    """``concat([relu(x), relu(-x)], axis)``: twice the channels (TF1's concatenated ReLU).

    Example:
        >>> h = gc.nn.crelu(x)  # [batch, 2 * features]
    """
    return concat([_relu(features), _relu(-features)], axis)
