"""The verifier: structural invariants every pass must preserve.

Checked: inputs precede their users in the given order and belong to the same graph; each
node's recorded dtype and shape equal what its op's rule infers now; value-less nodes (group)
feed only groups; assign targets are variables; elementwise fused bodies are well-formed.
"""
from graphc.errors import GraphError

from .shapes import RuleError


def verify(nodes, graph=None):
    """Raise GraphError naming the first broken invariant in ``nodes`` (a scheduled list).

    Returns:
        The number of nodes checked.
    """
    position = {n: i for i, n in enumerate(nodes)}
    for i, n in enumerate(nodes):
        if graph is not None and n.graph is not graph:
            _fail(n, "belongs to another graph")
        for inp in n.inputs:
            if inp not in position:
                _fail(n, f"input '{inp.name}' is not part of the program")
            if position[inp] >= i:
                _fail(n, f"input '{inp.name}' is scheduled after its user")
            if inp.dtype is None and n.op_name != "group" and n.opdef.orders is None:
                _fail(n, f"uses value-less node '{inp.name}' as data")
        if n.op_name == "assign" and n.inputs[0].op_name != "variable":
            _fail(n, "assign target is not a variable")
        _check_types(n)
    return len(nodes)


def _check_types(n):
    if n.op_name == "fused" or n.opdef.leaf:
        return
    try:
        dtype, shape = n.opdef.infer(n.inputs, **n.attrs)
    except RuleError as e:
        _fail(n, f"its shape rule fails: {e.message}")
    if dtype != n.dtype or (shape is not None and tuple(shape) != tuple(n.shape)):
        _fail(n, f"records {n.type_str()} but its rule infers "
                 f"{getattr(dtype, 'short', dtype)}{list(shape) if shape else shape}")


def _fail(n, what):
    raise GraphError(f"verifier: {n.describe()} {what}", loc=n.loc)
