"""``gc.TensorArray``: TF1's array of tensors for ``while_loop`` bodies, as a Python object.

graphc unrolls ``while_loop`` when the graph is built, so a TensorArray need not exist at run
time: it is a list of tensors, and each ``write`` returns a new TensorArray holding one more
(TF1's functional style: ``ta = ta.write(t, y)``). Indices must therefore be known when the
graph is built: Python ints, constants, or the counter of an unrolled loop (``StaticValues``
evaluates it); an index known only at run time is refused naming its node and line.

It is also where ``x[i]`` learns which tensors are build-time ints (``static_value``).
"""
import weakref

import numpy as np

from .control_flow import StaticValues
from .errors import GraphError
from .ir.graph import Node
from .ir.ops import operators
from .ir.source import user_location

# one evaluator per graph: its memo makes an unrolled counter cost one add per iteration
_EVALUATORS = weakref.WeakKeyDictionary()


def static_value(node):
    """The value of ``node`` if it is known when the graph is built, else None.

    Args:
        node: a graph node.
    Returns:
        An ndarray, or None when the value depends on a placeholder, a Variable, an impure
        op or a dim known only when the step is fed.
    Example:
        >>> static_value(gc.constant(2) + 1)
        array(3, dtype=int32)
    """
    value = _evaluator(node.graph).value(node)
    return value if isinstance(value, np.ndarray) else None


def _evaluator(graph):
    ev = _EVALUATORS.get(graph)
    if ev is None:
        ev = _EVALUATORS[graph] = StaticValues()
    return ev


operators.set_static_evaluator(static_value)
