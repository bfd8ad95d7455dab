"""TF1's ``random_shuffle`` and ``random_crop``, composed from ``random_uniform``: a shuffle
is the gather of the order of uniform keys, a crop the gathers of sizes-long index ranges from
uniform offsets. Both run inside the step (a new draw each run), on both backends, and the
gradient reaches the entries picked."""
import numpy as np

from ..errors import ShapeError
from ..ir import dtypes as D
from ..ir.ops import convert
from ..ir.source import user_location
from .math_ops import cast, floor, gather, minimum, random_uniform
from .sort_ops import argsort


def _static_shape(fn, value):
    if value.shape is None or None in value.shape:
        raise ShapeError(f"{fn}: the shape of {value.describe()} must be static, found "
                         f"{value.type_str()}", loc=user_location(),
                         hint="give the placeholder a full shape")
    return list(value.shape)


def random_shuffle(value, seed=None, name=None):
    """``value`` with its first axis in a random order, drawn anew each run (TF1's
    ``tf.random_shuffle``).

    The order is that of ``n`` uniform keys (``argsort``, which compares every pair: n^2
    work, for the sizes a step shuffles).

    Raises:
        ShapeError: a scalar, or a first axis whose size is not static.
    Example:
        >>> batch = gc.random_shuffle(examples)   # the rows of examples, permuted
    """
    value = convert(value)
    if value.shape is None or not value.shape or value.shape[0] is None:
        raise ShapeError(f"random_shuffle: {value.describe()} : {value.type_str()} needs a "
                         f"first axis of static size", loc=user_location())
    order = argsort(random_uniform([value.shape[0]], dtype=D.float64, seed=seed))
    return gather(value, order, axis=0, name=name)


def random_crop(value, size, seed=None, name=None):
    """A random ``size``-shaped box of ``value``, each offset uniform over the positions the
    box fits (TF1's ``tf.random_crop``).

    Args:
        value: a tensor with a static shape.
        size: one int per axis, at most the axis' size.
    Raises:
        ShapeError: ``size`` of another rank than ``value``, or larger than it.
    Example:
        >>> patch = gc.random_crop(image, [24, 24, 3])
    """
    value = convert(value)
    dims, size = _static_shape("random_crop", value), [int(s) for s in size]
    if len(size) != len(dims) or any(not 0 <= s <= d for s, d in zip(size, dims)):
        raise ShapeError(f"random_crop: size {size} does not fit in {value.type_str()}",
                         loc=user_location(), hint="one size per axis, each at most the "
                                                   "axis' size")
    out = value
    for axis, (d, s) in enumerate(zip(dims, size)):
        if s == d:
            continue
        u = random_uniform([], dtype=D.float64, seed=None if seed is None else seed + axis)
        offset = cast(minimum(floor(u * float(d - s + 1)), float(d - s)), D.int32)
        out = gather(out, offset + np.arange(s, dtype=np.int32), axis=axis)
    return out
