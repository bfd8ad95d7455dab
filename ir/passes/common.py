"""What every pass shares: use lists, rewiring, new nodes next to old ones, splat constants.

Passes rewrite the Program's private graph in place. Invariants they keep (the verifier and
``check_program`` check them): ``program.nodes`` is topological, every node's inputs are in
``program.nodes``, feeds and variables stay listed, ``program.fetches`` and
``program.updates`` name nodes of the program. Iteration is always in schedule order, never
over sets of nodes, so that two compilations of one graph make identical decisions.
"""
import math

import numpy as np

from graphc.errors import GraphError

from ..graph import value_inputs  # noqa: F401  (passes read it from here)
from ..ops.registry import REGISTRY
from ..shapes import RuleError



def is_pure(node):
    """Pure nodes may be merged, folded, recomputed or dropped when unused."""
    return not node.opdef.impure and not node.opdef.external


def users(nodes, values_only=False):
    """{node: [distinct users in schedule order]} over ``nodes``."""
    out = {n: [] for n in nodes}
    for n in nodes:
        seen = []
        for x in (value_inputs(n) if values_only else n.inputs):
            if not any(s is x for s in seen):
                seen.append(x)
                out.setdefault(x, []).append(n)
    return out


def roots(program):
    """Nodes the step must compute: the fetches and every variable update."""
    out = [f for f in program.fetches if f is not None]
    out += [a for _, a in program.updates]
    return out


def live_nodes(program):
    """Nodes some root depends on, plus every feed and variable (kept for the signature)."""
    keep = {}
    stack = list(roots(program))
    while stack:
        n = stack.pop()
        if id(n) in keep:
            continue
        keep[id(n)] = n
        stack.extend(n.inputs)
    for n in program.feeds + program.variables:
        keep[id(n)] = n
    return [n for n in program.nodes if id(n) in keep]


def refresh(program):
    """Recompute ``program.updates`` from the assign nodes still scheduled."""
    program.updates = [(n.inputs[0], n) for n in program.nodes if n.op_name == "assign"]


def replace_uses(program, old, new):
    """Make every user of ``old`` (and the fetches) use ``new`` instead.

    Returns:
        The number of input slots rewired.
    """
    if old is new:
        return 0
    return rewire(program, {id(old): new})


def rewire(program, mapping):
    """Apply {id(old node): new node} to every input slot and fetch in one sweep.

    Chains (a -> b, b -> c) resolve to their end. Returns the number of slots rewired.
    """
    def final(x):
        seen = 0
        while id(x) in mapping and seen < len(mapping) + 1:
            x = mapping[id(x)]
            seen += 1
        return x
    count = 0
    for n in program.nodes:
        if not any(id(x) in mapping for x in n.inputs):
            continue
        if n.op_name == "assign" and id(n.inputs[0]) in mapping:
            raise GraphError(f"rewrite would retarget {n.describe()} away from a variable")
        n.inputs = [final(x) for x in n.inputs]
        count += 1
    program.fetches = [None if f is None else final(f) for f in program.fetches]
    return count


def new_node(program, like, op, inputs, attrs, before=None):
    """Create a node of ``op`` carrying ``like``'s name, line and gradient flag.

    It is scheduled right before ``before`` (default ``like``; at the end when ``like`` is not
    scheduled), which keeps the schedule topological when the inputs come before that point.
    Raises:
        GraphError: the op's shape rule rejects the rewrite (a pass bug, named).
    """
    opdef = REGISTRY[op] if isinstance(op, str) else op
    try:
        dtype, shape = opdef.infer(list(inputs), **attrs)
    except RuleError as e:
        raise GraphError(f"rewrite of {like.describe()} into {opdef.name} is ill-typed: "
                         f"{e.message}", loc=like.loc) from None
    g = program.graph
    n = g.add_node(opdef, list(inputs), dict(attrs), dtype, tuple(shape) if shape is not None
                   else None, loc=like.loc)
    n.name, n.is_grad = like.name, like.is_grad
    if before is None and not any(m is like for m in program.nodes):
        program.nodes.append(n)
    else:
        program.nodes.insert(index_of(program.nodes, before if before is not None else like), n)
    return n


def make_const(program, like, value, before=None):
    """A ``const`` node holding ``value`` (read-only; splats stay zero-strided views)."""
    arr = np.asarray(value)
    if arr.flags.writeable:
        arr = arr.copy()
        arr.setflags(write=False)
    return new_node(program, like, "const", [], {"value": arr}, before)


def splat_array(value, dtype, shape):
    """A read-only zero-strided array of ``shape`` whose every element is ``value``."""
    arr = np.broadcast_to(np.asarray(value, dtype=dtype), tuple(shape))
    if arr.flags.writeable:
        arr.setflags(write=False)
    return arr


def splat(node):
    """The Python scalar every element of const ``node`` equals, or None.

    A NaN splat is returned as a float NaN (all elements NaN counts as a splat).
    """
    if node.op_name != "const":
        return None
    v = node.attrs["value"]
    if v.size == 0:
        return None
    first = v.reshape(-1)[0] if v.ndim else v[()]
    if v.size > 1 and not all(s == 0 for s in v.strides):
        if first != first:
            if not np.all(np.isnan(v)):
                return None
        elif not np.all(v == first):
            return None
        if v.dtype.kind == "f" and first == 0 and np.any(np.signbit(v) != np.signbit(first)):
            return None  # mixed +0.0 / -0.0 is not one value
    return first.item()


def index_of(nodes, node):
    for i, n in enumerate(nodes):
        if n is node:
            return i
    raise GraphError(f"node '{node.name}' is not scheduled")


def positions(nodes):
    """{id(node): schedule index}: lookups by id keep sets of nodes out of decisions."""
    return {id(n): i for i, n in enumerate(nodes)}


def nbytes(node):
    if node.dtype is None or node.shape is None:
        return 0
    return int(math.prod(node.shape)) * node.dtype.itemsize  # no array round trip


def check_program(program):
    """Program-level invariants beyond the verifier's (fetches, updates, fused bodies).

    Raises:
        GraphError: naming the broken invariant.
    """
    from ..verifier import verify
    verify(program.nodes, program.graph)
    pos = positions(program.nodes)
    for f in program.fetches:
        if f is not None and id(f) not in pos:
            raise GraphError(f"verifier: fetch '{f.name}' is not scheduled")
    for var, a in program.updates:
        if id(a) not in pos or var.op_name != "variable":
            raise GraphError(f"verifier: update of '{var.name}' is broken")
    for n in program.nodes:
        if n.op_name == "fused":
            _check_fused(n)
    return len(program.nodes)


def _check_fused(n):
    body = n.attrs["body"]
    for e in body.walk():
        if e.op == "arg":
            if e.value >= len(n.inputs):
                raise GraphError(f"verifier: {n.describe()} body reads arg {e.value} of "
                                 f"{len(n.inputs)} inputs", loc=n.loc)
            if e.dtype != n.inputs[e.value].dtype:
                raise GraphError(f"verifier: {n.describe()} body arg {e.value} is "
                                 f"{e.dtype.name}, input is {n.inputs[e.value].dtype.name}",
                                 loc=n.loc)
    shape = tuple(n.attrs["shape"])
    for x in n.inputs:
        try:
            np.broadcast_shapes(x.shape, shape)
        except ValueError:
            raise GraphError(f"verifier: {n.describe()} input '{x.name}' {x.type_str()} does "
                             f"not broadcast to {shape}", loc=n.loc) from None
        if np.broadcast_shapes(x.shape, shape) != shape:
            raise GraphError(f"verifier: {n.describe()} input '{x.name}' is larger than the "
                             f"elementwise shape {shape}", loc=n.loc)
    if body.dtype != n.dtype and n.attrs.get("reduce") is None:
        raise GraphError(f"verifier: {n.describe()} body is {body.dtype.name}, node is "
                         f"{n.dtype.name}", loc=n.loc)
