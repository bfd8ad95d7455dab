"""Every op graphc knows, declared once per family module; ``REGISTRY`` maps names to OpDefs.

Importing this package registers all ops and attaches Python operators to nodes.
"""
from . import elementwise, indexing, linalg, nn, reduce, shape, state  # noqa: F401  (registers)
from . import conv, depthwise, pool, random_ops  # noqa: F401  (registers: layers, backward ops)
from . import debug  # noqa: F401  (registers check_numerics)
from . import collective  # noqa: F401  (registers allreduce_mean)
from . import host  # noqa: F401  (registers host_call, host_output)
from . import loop  # noqa: F401  (registers loop, loop_output)
from . import operators  # noqa: F401
from .registry import F, REGISTRY, ZERO, OpDef, apply, const_node, convert, get

__all__ = ["F", "REGISTRY", "ZERO", "OpDef", "apply", "const_node", "convert", "get"]
