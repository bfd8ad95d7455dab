"""What the LLVM kernels register into: a leaf module, imported by every kernel module and by
the driver (``lower``), importing nothing of the backend.

``KERNELS`` maps an op name to its lowering ``fn(L, node)`` (``@lowers("matmul")``): given the
lowering state ``L`` (``lower.Lowering``), it builds a kernel function and calls it with the
``Buf`` ranges it reads and writes. The package ``kernels`` imports every kernel module, so
whatever imports the driver or any kernel first, every lowering is registered. (Folds, where
one kernel also computes a neighbour node, are named in ``folds``.)
"""
from dataclasses import dataclass

KERNELS = {}


def lowers(*ops):
    """Register a lowering function ``fn(L, node)`` for ``ops``."""
    def register(fn):
        for op in ops:
            KERNELS[op] = fn
        return fn
    return register


@dataclass(frozen=True)
class Buf:
    """A byte range of one table slot."""
    slot: int
    offset: int = 0
    nbytes: int = 0

    def overlaps(self, other):
        return (self.slot == other.slot and self.offset < other.offset + max(other.nbytes, 1)
                and other.offset < self.offset + max(self.nbytes, 1))
