"""Values known when the graph is built: constants and static shapes, through pure ops.

``x[i]`` with a tensor index, ``TensorArray`` indices, an unrolled ``while_loop``'s condition
and ``tf.data`` arguments all need to know whether a tensor's value is fixed before any data
is fed. ``static_value(node)`` answers with the op's reference semantics (``OpDef.evaluate``,
as constant folding uses), one memo per graph, so an unrolled counter costs one evaluation per
iteration. This is the graph layer's own evaluator: the API layer calls it, nothing installs it.

Specialization-time values
--------------------------
A value computed only from shapes of fed tensors, constants and Python numbers
(``gc.shape(x)[0] * 2``) is not known when the graph is built if those shapes are not, but it
is when ``ir.program.specialize`` copies the graph with the fed shapes. An op declares which
of its attributes may be such a value (``OpDef.static_args``: attr name -> kind, one of
``STATIC_KINDS``). ``split_static_args`` (called by ``ir.ops.apply``) stores a tensor given
for one of them as the attribute itself when ``static_value`` knows it (the graph is then what
a Python value would have built); otherwise the tensor becomes a trailing input of the node and
the attribute a ``Pending`` holding what is known of it (``(None, 3)`` for
``[gc.shape(x)[0], 3]``), which the op's rule sees in its place. ``resolve_pending`` (called by
``specialize``) evaluates those inputs on the specialized graph, where they are static, and
gives back the node's inputs and concrete attributes: specialized nodes never hold a
``Pending``. A tensor that depends on data (a feed's values, a Variable, a random op) is
refused where the graph is built (``data_dependency`` names it).
"""
import weakref

import numpy as np

from .graph import Node
from .graph import value_inputs as _value_inputs
from .shapes import RuleError, TensorShape, unknown_rank_infer

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
    if x.shape is None:
        return (x, f"whose rank is known only when the step is fed ({x.type_str()})")
    dims = np.array([-1 if d is None else d for d in x.shape], n.dtype.np)
    value = np.asarray(n.opdef.evaluate([dims], n.attrs))
    if np.all(value >= 0):
        return value.astype(n.dtype.np)
    return (x, f"whose shape {x.type_str()} is known only when the step is fed")


# -- specialization-time attributes -----------------------------------------------------------
class Pending:
    """An op attribute known when the step is specialized (see the module docstring).

    Attributes:
        partial: what is known when the graph is built: for an ``ints`` attribute a tuple
            with None for unknown entries (None when even its length is unknown), else None.
    """

    __slots__ = ("partial",)

    def __init__(self, partial=None):
        self.partial = partial

    def __eq__(self, other):
        return isinstance(other, Pending) and other.partial == self.partial

    def __hash__(self):
        return hash(("pending", self.partial))

    def __repr__(self):
        if self.partial is None:
            return "pending"
        return "pending[" + ",".join("?" if d is None else str(d) for d in self.partial) + "]"


def _ints(value, arg):
    arr = np.asarray(value)
    if arr.dtype.kind not in "iu" or arr.ndim > 1:
        raise RuleError(f"{arg} must be an integer scalar or vector, found {arr.dtype.name} of "
                        f"shape {list(arr.shape)}", kind="dtype" if arr.ndim <= 1 else "shape")
    return tuple(int(v) for v in arr.reshape(-1))


def _int(value, arg):
    arr = np.asarray(value)
    if arr.dtype.kind not in "iu" or arr.size != 1:
        raise RuleError(f"{arg} must be an integer scalar, found {arr.dtype.name} of shape "
                        f"{list(arr.shape)}", kind="dtype" if arr.size == 1 else "shape")
    return int(arr.reshape(()))


def _number(value, arg):
    arr = np.asarray(value)
    if arr.dtype.kind not in "iuf" or arr.size != 1:
        raise RuleError(f"{arg} must be a number, found {arr.dtype.name} of shape "
                        f"{list(arr.shape)}", kind="dtype" if arr.size == 1 else "shape")
    return arr.reshape(()).item()


def partial_ints(node):
    """What is known of an int vector when the graph is built: a tuple with None for entries
    known only when the step is specialized, or None when its length is not known either.

    Example:
        >>> partial_ints(gc.stack([gc.shape(x)[0], 3]))   # x: f32[?,5]
        (None, 3)
    """
    if node.shape is None or len(node.shape) > 1 or (node.shape and node.shape[0] is None):
        return None
    value = static_value(node)
    if value is not None:
        return tuple(int(v) for v in value.reshape(-1))
    if node.shape == ():
        return (None,)
    op = node.op_name
    if op == "shape_of" and node.inputs[0].shape is not None:
        return tuple(node.inputs[0].shape)
    if op == "stack":
        return tuple(None if v is None or v.size != 1 else int(v.reshape(()))
                     for v in map(static_value, node.inputs))
    if op == "concat":
        parts = [partial_ints(x) for x in node.inputs]
        if all(p is not None for p in parts):
            return sum(parts, ())
    if node.opdef.identity or op == "strided_slice" or (node.opdef.rearranges
                                                         and len(node.inputs) == 1):
        inner = partial_ints(node.inputs[0])
        if inner is not None:  # move the known entries as the op moves values
            moved = node.opdef.evaluate([np.array(inner, dtype=object)], node.attrs)
            return tuple(np.asarray(moved, dtype=object).reshape(-1).tolist())
    return (None,) * node.shape[0]


def _no_partial(node):
    return None


# kind -> (value from an ndarray, partial value of a tensor when the graph is built)
STATIC_KINDS = {"ints": (_ints, partial_ints), "int": (_int, _no_partial),
                "number": (_number, _no_partial)}


def data_dependency(node):
    """The first node ``node``'s value depends on whose value is data (a placeholder, a
    Variable or an impure op), with why, following value inputs only (a shape read by
    ``gc.shape`` is not data); None when it depends on shapes and constants alone.

    Example:
        >>> data_dependency(gc.shape(x)[0] + n)      # n: a placeholder
        (<gc.Tensor 'n' placeholder i32[]>, 'the value fed to placeholder ...')
    """
    seen, stack = set(), [node]
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        if n.op_name == "placeholder":
            return n, f"the value fed to {n.describe()}"
        if n.op_name == "variable":
            return n, f"the value of Variable '{n.node_name}'"
        if n.opdef.impure:
            return n, f"{n.describe()}, whose value changes every run"
        stack.extend(_value_inputs(n))
    return None


def require_specialization_time(arg, tensor):
    """Refuse ``tensor`` as argument ``arg`` when its value depends on data.

    Raises:
        RuleError: kind "graph", naming the argument, the tensor, what it depends on, and
            what to do instead.
    """
    dep = data_dependency(tensor)
    if dep is not None:
        raise RuleError(
            f"{arg} must be known when the step is specialized, but tensor '{tensor.node_name}' "
            f"depends on {dep[1]}",
            [f"{arg} may be computed from gc.shape/gc.size/gc.rank of fed tensors, constants "
             "and Python numbers"],
            "use gc.shape(x) of the tensor whose size it is (or a Python number); to use a "
            "value known only when the step runs, feed an array of that shape instead",
            kind="graph")


def split_static_args(opdef, attrs):
    """Resolve the attributes of ``opdef`` given as tensors (see the module docstring).

    Args:
        opdef: the op.
        attrs: its attributes (a dict, updated in place): a tensor for a ``static_args``
            entry becomes its value, or a ``Pending``.
    Returns:
        The tensors left pending, in ``static_args`` order: the node's trailing inputs.
    Raises:
        RuleError: kind "graph" for a tensor that depends on data, "dtype" or "shape" for a
            value of the wrong kind.
    """
    pending = []
    for arg, kind in opdef.static_args.items():
        tensor = attrs.get(arg)
        if not isinstance(tensor, Node):
            continue
        convert, partial = STATIC_KINDS[kind]
        value = static_value(tensor)
        if value is not None:
            attrs[arg] = convert(value, arg)
            continue
        require_specialization_time(arg, tensor)
        if tensor.dtype is None or (kind != "number" and not tensor.dtype.is_integer):
            raise RuleError(f"{arg} must be an integer tensor, found {tensor.type_str()}",
                            kind="dtype")
        attrs[arg] = Pending(partial(tensor))
        pending.append(tensor)
    return pending


def _pending_names(opdef, attrs):
    if not opdef.static_args:  # (most ops: one test instead of a list built per node)
        return ()
    return [a for a in opdef.static_args if isinstance(attrs.get(a), Pending)]


def resolve_pending(opdef, inputs, attrs):
    """The inputs and attributes of a node once its pending attributes are known.

    Called on a node of a specialized graph (its inputs have concrete shapes).

    Returns:
        (value inputs, attrs with every ``Pending`` replaced by its value).
    Raises:
        RuleError: a pending attribute still unknown, or of the wrong kind.
    """
    names = _pending_names(opdef, attrs)
    if not names:
        return inputs, attrs
    attrs = dict(attrs)
    values = inputs[len(inputs) - len(names):]
    for arg, tensor in zip(names, values):
        value = static_value(tensor)
        if value is None:
            raise RuleError(f"{arg} ('{tensor.node_name}') is still unknown with the fed shapes")
        attrs[arg] = STATIC_KINDS[opdef.static_args[arg]][0](value, arg)
    return list(inputs[:len(inputs) - len(names)]), attrs


def infer_node(opdef, nodes, attrs):
    """``opdef``'s shape/dtype rule on ``nodes`` (``OpDef.infer``): pending attributes are
    seen as their partial values (and their trailing inputs left out), unknown-rank inputs
    through ``ir.shapes.unknown_rank_infer``."""
    names = _pending_names(opdef, attrs) if opdef.static_args else ()
    if names:
        nodes = list(nodes)[:len(nodes) - len(names)]
        attrs = {k: v.partial if isinstance(v, Pending) else v for k, v in attrs.items()}
    for n in nodes:
        if n.shape is None and n.dtype is not None:
            return unknown_rank_infer(opdef.rule, nodes, attrs, _stand_in)
    return opdef.rule(nodes, **attrs)


def _stand_in(node, rank):
    """A node like ``node`` with ``rank`` unknown dims (outside any graph's node list)."""
    return Node(node.graph, node.opdef, node.inputs, node.attrs, node.dtype,
                TensorShape((None,) * rank), node.node_name, node.loc)
