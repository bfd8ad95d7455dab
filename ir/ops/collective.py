"""Collective ops: data-parallel training's cross-process reductions, inside the step.

``allreduce_mean(buf)`` is the mean of ``buf`` over every process (MPI rank) running the
same step: a 1-D floating buffer in, the averaged buffer out. Data-parallel training packs
all gradients into ONE contiguous buffer (``concat`` of the flattened gradients), averages it
with one ``allreduce_mean`` per step, and slices the averaged gradients back out, so a step
makes one collective call whatever the number of variables.

It is impure: every rank must make the same calls in the same order, so it is never merged,
folded, or recomputed. Its VJP is ZERO: it sits after the gradients, in the update. Its kernel
works in place (the packed buffer is dead after it; the in-place pass lets the result take
the buffer's storage), and with one process it is the identity.
"""

from ..shapes import format_shape
from .registry import ZERO, defop, require


def _allreduce_infer(nodes):
    (x,) = nodes
    require(x.dtype.is_floating, f"allreduce_mean averages floating buffers, found "
            f"{x.dtype.name}", [f"'{x.node_name}': {x.type_str()}"], kind="dtype")
    require(x.shape is not None and len(x.shape) == 1,
            f"allreduce_mean takes one packed 1-D buffer, found {format_shape(x.shape)}",
            [f"'{x.node_name}': {x.type_str()}"], "flatten and concatenate the tensors first")
    return x.dtype, x.shape


ALLREDUCE_MEAN = defop(
    "allreduce_mean", _allreduce_infer, ZERO, impure=True,
    family="collective", destroys=(0,),
    doc="mean of a packed 1-D buffer over all processes (one MPI Allreduce); in place")
