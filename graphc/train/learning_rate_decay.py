"""TF1's learning-rate schedules: graph functions of ``global_step``, so the rate is computed
inside the compiled step (``exponential_decay``, ``piecewise_constant``, ``cosine_decay``...).
"""
import numpy as np

from ..framework.graph import constant
from ..ir import dtypes as D
from ..ir.graph import Node
from ..ops.math_ops import (cast, equal, exp, floor, less_equal, minimum, pow,  # noqa: A004
                            where)


def exponential_decay(learning_rate, global_step, decay_steps, decay_rate, staircase=False,
                      name=None):
    """``lr * decay_rate ** (global_step / decay_steps)`` as a float32 tensor (TF1's schedule).

    Args:
        learning_rate: initial rate (number or tensor).
        global_step: the step counter variable (integer).
        decay_steps, decay_rate: numbers.
        staircase: decay in whole steps of ``decay_steps`` (``floor`` of the exponent).
    Example:
        >>> step = gc.train.get_or_create_global_step()
        >>> lr = gc.train.exponential_decay(0.1, step, 100, 0.5, staircase=True)
        >>> opt = gc.train.GradientDescentOptimizer(lr)
    """
    if decay_steps <= 0:
        raise ValueError(f"exponential_decay: decay_steps must be positive, got {decay_steps}")
    p = cast(global_step, D.float32) / float(decay_steps)
    if staircase:
        p = floor(p)
    rate = pow(constant(float(decay_rate)), p)
    if isinstance(learning_rate, Node):
        return cast(learning_rate, D.float32) * rate
    return rate * float(learning_rate)


# -- more TF1 learning-rate schedules: float32 scalars computed from the step inside the step --
def _step_fraction(global_step, decay_steps, staircase, fn):
    """``global_step / decay_steps`` as float32, floored when ``staircase``."""
    if decay_steps <= 0:
        raise ValueError(f"{fn}: decay_steps must be positive, got {decay_steps}")
    p = cast(global_step, D.float32) / float(decay_steps)
    return floor(p) if staircase else p


def _scale_rate(learning_rate, factor):
    """``learning_rate * factor`` in float32 (the rate may be a number or a tensor)."""
    if isinstance(learning_rate, Node):
        return cast(learning_rate, D.float32) * factor
    return factor * float(learning_rate)


def piecewise_constant(x, boundaries, values, name=None):
    """``values[0]`` while ``x <= boundaries[0]``, ``values[i]`` while
    ``boundaries[i-1] < x <= boundaries[i]``, ``values[-1]`` after the last boundary (TF1).

    Args:
        x: the step (a scalar tensor).
        boundaries: increasing numbers; values: one more number (or scalar tensor) than
            boundaries, all of one kind.
    Returns:
        A scalar tensor (float32 for float values).
    Raises:
        ValueError: ``len(values) != len(boundaries) + 1``.
    Example:
        >>> lr = gc.train.piecewise_constant(step, [100, 200], [0.1, 0.01, 0.001])
    """
    if len(values) != len(boundaries) + 1:
        raise ValueError(f"piecewise_constant: needs len(values) == len(boundaries) + 1, got "
                         f"{len(values)} values and {len(boundaries)} boundaries")
    integral = all(isinstance(b, (int, np.integer)) for b in boundaries)
    if not (integral and x.dtype.is_integer):
        x = cast(x, D.float32)  # float boundaries compare with the step in float
    kind = D.float32 if any(isinstance(v, (float, np.floating)) for v in values) else None
    vals = [v if isinstance(v, Node) else constant(v, dtype=kind) for v in values]
    result = vals[-1]
    for b, v in zip(reversed(boundaries), reversed(vals[:-1])):  # the first match wins
        result = where(less_equal(x, constant(b, dtype=x.dtype)), v, result)
    return result


def polynomial_decay(learning_rate, global_step, decay_steps, end_learning_rate=0.0001,
                     power=1.0, cycle=False, name=None):
    """``(lr - end) * (1 - step / decay_steps) ** power + end``, the step capped at
    ``decay_steps``; with ``cycle`` the horizon grows to the first multiple of
    ``decay_steps`` at or past the step (one at step 0), as in TF1.

    Example:
        >>> lr = gc.train.polynomial_decay(0.1, step, 10000, 0.01, power=0.5)
    """
    if decay_steps <= 0:
        raise ValueError(f"polynomial_decay: decay_steps must be positive, got {decay_steps}")
    step = cast(global_step, D.float32)
    horizon = constant(float(decay_steps))
    if cycle:
        laps = -floor(-step / float(decay_steps))  # ceil
        horizon = horizon * where(equal(step, 0.0), constant(1.0), laps)
    else:
        step = minimum(step, horizon)
    frac = pow(1.0 - step / horizon, constant(float(power)))
    lr = (cast(learning_rate, D.float32) if isinstance(learning_rate, Node)
          else constant(float(learning_rate)))
    return (lr - float(end_learning_rate)) * frac + float(end_learning_rate)


def natural_exp_decay(learning_rate, global_step, decay_steps, decay_rate, staircase=False,
                      name=None):
    """``lr * exp(-decay_rate * step / decay_steps)`` (floored exponent with ``staircase``).

    Example:
        >>> lr = gc.train.natural_exp_decay(0.1, step, 100, 0.5, staircase=True)
    """
    p = _step_fraction(global_step, decay_steps, staircase, "natural_exp_decay")
    return _scale_rate(learning_rate, exp(p * -float(decay_rate)))


def inverse_time_decay(learning_rate, global_step, decay_steps, decay_rate, staircase=False,
                       name=None):
    """``lr / (1 + decay_rate * step / decay_steps)`` (floored fraction with ``staircase``).

    Example:
        >>> lr = gc.train.inverse_time_decay(0.1, step, 100, 0.5)
    """
    p = _step_fraction(global_step, decay_steps, staircase, "inverse_time_decay")
    return _scale_rate(learning_rate, 1.0 / (p * float(decay_rate) + 1.0))


def _cos_pi(p):
    """``cos(pi p)`` for p in [0, 1] as graph arithmetic (the op set has no cosine).

    ``cos(pi p) = -sin(u)`` with ``u = pi (p - 1/2)`` in [-pi/2, pi/2], where the Taylor
    series of sin through ``u^19`` is accurate to 1e-15, below float64's rounding.
    """
    u = (p - 0.5) * float(np.pi)
    u2 = u * u
    acc = constant(0.0)
    for k in range(9, -1, -1):  # Horner in u^2: sum (-1)^k u^(2k+1) / (2k+1)!
        acc = acc * u2 + (-1.0) ** k / float(np.prod(np.arange(1, 2 * k + 2)))
    return -(acc * u)


def cosine_decay(learning_rate, global_step, decay_steps, alpha=0.0, name=None):
    """``lr * ((1 - alpha) * 0.5 (1 + cos(pi min(step, decay_steps) / decay_steps)) + alpha)``.

    Example:
        >>> lr = gc.train.cosine_decay(0.1, step, 1000, alpha=0.01)
    """
    if decay_steps <= 0:
        raise ValueError(f"cosine_decay: decay_steps must be positive, got {decay_steps}")
    p = minimum(cast(global_step, D.float32), float(decay_steps)) / float(decay_steps)
    cosine = (_cos_pi(p) + 1.0) * 0.5
    return _scale_rate(learning_rate, cosine * (1.0 - float(alpha)) + float(alpha))
