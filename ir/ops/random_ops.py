"""Random ops shaped like another tensor, for masks whose batch dim is known only when the
step is specialized (dropout on a ``[None, 128]`` activation).

``random_uniform_like(x)`` draws fresh uniform values shaped like ``x`` every run (``x``'s
value is never read). Like every random op it is impure: never merged by CSE, folded, or
recomputed, so a dropout mask built from it is ONE node that the forward pass and the
gradient both read. Its impl takes the step's RNG first (seeded from the ``seed`` attribute by
the backend), then the concrete shape, as the other random ops do.
"""
from .. import dtypes as D
from .registry import ZERO, defop, require


def _uniform_like_infer(nodes, dtype=D.float32, seed=None, minval=0.0, maxval=1.0):
    (like,) = nodes
    dt = D.as_dtype(dtype)
    require(dt.is_floating, f"random values must be floating, found {dt.name}", kind="dtype")
    return dt, like.shape


def random_uniform_like_impl(rng, shape, dtype="float32", seed=None, minval=0.0, maxval=1.0):
    """Uniform samples in [minval, maxval) of ``shape``; ``dtype`` a DType, NumPy type or name."""
    return rng.uniform(minval, maxval, shape).astype(getattr(dtype, "np", dtype))


RANDOM_UNIFORM_LIKE = defop("random_uniform_like", _uniform_like_infer, ZERO, random=True,
                            impl=random_uniform_like_impl, family="random",
                            shape_only=(0,))
