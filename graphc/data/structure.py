"""tf.data's element structures: nests of tuples and dicts (a list is one value, as in TF),
component specs (dtype and shape), and what a pass over a dataset carries (``new_context``).
Shared by datasets and their iterators."""
import functools

import numpy as np

from ..framework import nest
from ..ir.shapes import TensorShape

# -- nests: tuples (namedtuples too) and dicts; a list is one value, as in TF ------
flatten = functools.partial(nest.flatten, lists=False)
pack = functools.partial(nest.pack_sequence_as, lists=False)


def map_nest(fn, value):
    return nest.map_structure(fn, value, lists=False)


class Spec:
    """A component's dtype (``ir.dtypes.DType``) and shape (ints, None where unknown)."""

    __slots__ = ("dtype", "shape")

    def __init__(self, dtype, shape):
        self.dtype, self.shape = dtype, tuple(shape)

    def __repr__(self):
        return f"Spec({self.dtype.name}, {list(self.shape)})"


class Structured:
    """TF1's ``output_types`` and ``output_shapes``, from a class's ``element_spec``."""

    @property
    def output_types(self):
        return map_nest(lambda s: s.dtype, self.element_spec)

    @property
    def output_shapes(self):
        return map_nest(lambda s: TensorShape(s.shape), self.element_spec)


def new_context():
    """The state of one pass: where shuffles draw entropy and how often each restarted."""
    return {"entropy": np.random.SeedSequence().entropy, "starts": {}}


def shape_leaves(shapes, like):
    """output_shapes as one tuple per leaf of ``like``; a TensorShape or list of
    dims is a leaf, not a nest."""
    def walk(s, t):
        if isinstance(t, dict):
            return [x for k in sorted(t) for x in walk(s[k], t[k])]
        if isinstance(t, tuple):
            return [x for sv, tv in zip(s, t) for x in walk(sv, tv)]
        return [tuple(s)]
    return walk(shapes, like)
