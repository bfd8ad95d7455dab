"""The verifier: structural invariants every pass must preserve.

Checked: inputs precede their users in the given order and belong to the same graph; each
node's recorded dtype and shape equal what its op's rule infers now; value-less nodes (group,
loop) feed only groups and, for a loop, the ``loop_output`` nodes reading its results;
assign targets are variables; elementwise fused bodies are well-formed. A specialized loop's body program is verified too (recursively: loops in bodies), with its
results against the loop's structure: each next value has its carried value's type, the
condition is a bool scalar, the inputs are as many as the body's roles need.
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
                _fail(n, f"input '{inp.node_name}' is not part of the program")
            if position[inp] >= i:
                _fail(n, f"input '{inp.node_name}' is scheduled after its user")
            if inp.dtype is None and n.op_name != "group" and n.opdef.orders is None \
                    and not (n.op_name == "loop_output" and inp.op_name == "loop"):
                _fail(n, f"uses value-less node '{inp.node_name}' as data")
        if n.op_name == "assign" and n.inputs[0].op_name != "variable":
            _fail(n, "assign target is not a variable")
        _check_types(n)
        if n.op_name == "loop":
            _check_loop(n)
    return len(nodes)


def _check_loop(n):
    """The body of loop ``n`` against its roles; its program verified (once specialized)."""
    from .loops import body_program
    a, body = n.attrs, n.attrs["body"]
    want = (int(a["has_count"]) + int(body.cond is not None) + a["n_carried"]
            + a["n_sequences"] + len(body.captured))
    if len(n.inputs) != want:
        _fail(n, f"has {len(n.inputs)} inputs, its body's roles need {want}")
    if (len(body.carried), len(body.next), len(body.sliced)) != (a["n_carried"], a["n_carried"],
                                                                 a["n_sequences"]):
        _fail(n, f"body has {len(body.carried)} carried values, {len(body.next)} next values "
                 f"and {len(body.sliced)} sliced values; the node has {a['n_carried']} "
                 f"initial values and {a['n_sequences']} sequences")
    if any(x.shape is None or None in x.shape for x in n.inputs):
        return  # the body is a program once the step is specialized
    prog = body_program(n)
    try:
        verify(prog.nodes, prog.graph)
    except GraphError as e:
        _fail(n, f"body '{prog.name}': {e.message.removeprefix('verifier: ')}")
    init = n.inputs[int(a["has_count"]) + int(body.cond is not None):][:a["n_carried"]]
    for k, (x, f) in enumerate(zip(init, prog.fetches)):
        if f.dtype != x.dtype or tuple(f.shape) != tuple(x.shape):
            _fail(n, f"body '{prog.name}': next[{k}] ('{f.node_name}') is {f.type_str()}, its "
                     f"carried value ('{x.node_name}') is {x.type_str()}", loc=f.loc)
    if body.cond is not None:
        c = prog.fetches[len(body.next) + len(body.stacked)]
        if c.dtype is None or c.dtype.name != "bool" or tuple(c.shape) != ():
            _fail(n, f"body '{prog.name}': its condition ('{c.node_name}') is {c.type_str()}, "
                     "expected a bool scalar", loc=c.loc)


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


def _fail(n, what, loc=None):
    raise GraphError(f"verifier: {n.describe()} {what}", loc=loc or n.loc)
