"""Values known when the graph is built: constants and static shapes, through pure ops.

``x[i]`` with a tensor index, ``TensorArray`` indices, an unrolled ``while_loop``'s condition
and ``tf.data`` arguments all need to know whether a tensor's value is fixed before any data
is fed. ``static_value(node)`` answers with the op's reference semantics (``OpDef.evaluate``,
as constant folding uses), one memo per graph, so an unrolled counter costs one evaluation per
iteration. This is the graph layer's own evaluator: the API layer calls it, nothing installs it.
"""
import weakref

import numpy as np

from .graph import value_inputs as _value_inputs

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
    value = evaluator(node.graph).value(node)
    return value if isinstance(value, np.ndarray) else None


def evaluator(graph):
    """The memoizing ``StaticValues`` of ``graph``."""
    ev = _EVALUATORS.get(graph)
    if ev is None:
        ev = _EVALUATORS[graph] = StaticValues()
    return ev


class StaticValues:
    """Values of nodes computable when the graph is built: constants and static shapes,
    through pure ops, with each op's reference semantics (``OpDef.evaluate``, as constant
    folding). Results are remembered, so a loop counter costs one evaluation per iteration.

    ``value(node)`` returns an ndarray, or ``(node, why)`` naming a node it depends on whose
    value (or shape) is known only at run time.
    Example:
        >>> StaticValues().value(gc.constant(3) < gc.shape(x)[0])   # x: f32[5, 2]
        array(True)
    """

    def __init__(self):
        self.memo = {}

    def value(self, node):
        stack = [node]
        while stack:  # iterative: an unrolled counter is a long chain of adds
            n = stack[-1]
            if n in self.memo:
                stack.pop()
                continue
            leaf = self._leaf(n)
            missing = [] if leaf is not None else \
                [x for x in _value_inputs(n) if x not in self.memo]
            if missing:
                stack.extend(missing)
                continue
            self.memo[n] = leaf if leaf is not None else self._evaluate(n)
            stack.pop()
        return self.memo[node]

    @staticmethod
    def _leaf(n):
        """The value (or run-time reason) of ``n`` without its inputs, else None."""
        if n.op_name == "const":
            return np.asarray(n.attrs["value"])
        if n.op_name == "placeholder":
            return (n, "a placeholder fed when the step runs")
        if n.op_name == "variable":
            return (n, "a Variable, whose value is known only when the step runs")
        if n.opdef.impure:
            return (n, "an impure op (random or stateful)")
        if n.op_name == "strided_slice" and n.inputs[0].op_name == "shape_of":
            return _static_dims(n)
        for i in n.opdef.shape_only:
            x = n.inputs[i]
            if x.shape is None or None in x.shape:
                return (x, f"whose shape {x.type_str()} is known only when the step is fed")
        return None

    def _evaluate(self, n):
        values = []
        for i, x in enumerate(n.inputs):
            if i in n.opdef.shape_only:
                values.append(np.zeros(x.shape, x.dtype.np))
                continue
            v = self.memo.get(x)
            if isinstance(v, tuple):
                return v
            values.append(v)
        if n.op_name == "after":
            return values[0]  # its other inputs only order the step
        try:
            with np.errstate(all="ignore"):
                return np.asarray(n.opdef.evaluate(values, n.attrs)).astype(n.dtype.np)
        except Exception as e:  # noqa: BLE001  (reported as not static, with the reason)
            return (n, f"which could not be evaluated when the graph is built ({e})")


def _static_dims(n):
    """``gc.shape(x)[k]`` (a slice of a shape): static when the dims it picks are, even if
    other dims of ``x`` are known only when the step is fed (they stand in as -1)."""
    x = n.inputs[0].inputs[0]
    dims = np.array([-1 if d is None else d for d in x.shape], n.dtype.np)
    value = np.asarray(n.opdef.evaluate([dims], n.attrs))
    if np.all(value >= 0):
        return value.astype(n.dtype.np)
    return (x, f"whose shape {x.type_str()} is known only when the step is fed")
