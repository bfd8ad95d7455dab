"""What every pass shares: use lists, rewiring, new nodes next to old ones, splat constants.

Passes rewrite the Program's private graph in place. Invariants they keep (the verifier and
``check_program`` check them): ``program.nodes`` is topological, every node's inputs are in
``program.nodes``, feeds and variables stay listed, ``program.fetches`` and
``program.updates`` name nodes of the program. Iteration is always in schedule order, never
over sets of nodes, so that two compilations of one graph make identical decisions.
"""
import contextlib
import itertools
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
        inputs = value_inputs(n) if values_only else n.inputs
        k = len(inputs)
        if k == 2:  # (most ops: two inputs, distinct unless x op x)
            if inputs[0] is inputs[1]:
                inputs = inputs[:1]
        elif k > 2:
            inputs = dict.fromkeys(inputs)  # (distinct, in order: nodes hash by identity)
        for x in inputs:
            if x in out:
                out[x].append(n)
            else:
                out[x] = [n]
    return out


def roots(program):
    """Nodes the step must compute: the fetches and every variable update."""
    out = [f for f in program.fetches if f is not None]
    out += [a for _, a in program.updates]
    return out


def live_nodes(program):
    """Nodes some root depends on, plus every feed and variable (kept for the signature)."""
    keep = set()  # (nodes hash by identity; only membership is asked, never an order)
    stack = list(roots(program))
    while stack:
        n = stack.pop()
        if n in keep:
            continue
        keep.add(n)
        stack.extend(n.inputs)
    keep.update(program.feeds)
    keep.update(program.variables)
    return [n for n in program.nodes if n in keep]


def refresh(program):
    """Recompute ``program.updates`` from the assign nodes still scheduled."""
    program.updates = [(n.inputs[0], n) for n in program.nodes if n.op_name == "assign"]


class UseIndex:
    """The users of every node, kept current through one pass's rewrites.

    A pass that replaces many nodes builds one index at its start and hands it to
    ``replace_uses``/``rewire``/``new_node``/``set_inputs``, so that each replacement touches
    only the users of the replaced node instead of sweeping the whole program (what keeps
    rewrites linear in the graph). Every change of a node's inputs during that pass must go
    through those functions. Entries are checked when read, so a user that no longer reads
    a node is never returned; nodes dropped from the schedule may still be listed.

    Example:
        >>> uses = UseIndex(program.nodes)
        >>> replace_uses(program, old, new, uses)     # touches old's users only
        >>> uses.users(new)
        [<gc.Tensor 'relu' relu f32[4,8]>]
    """

    def __init__(self, nodes=()):
        self._by_id = by_id = {}  # id(node) -> {user: None}, users in the order seen
        for n in nodes:  # (``add`` inlined: one index per pass, over every edge)
            for x in n.inputs:
                key = id(x)
                found = by_id.get(key)
                if found is None:
                    by_id[key] = {n: None}  # (nodes hash by identity)
                else:
                    found[n] = None

    def add(self, node):
        """Record ``node`` as a user of each of its inputs."""
        for x in node.inputs:
            self._by_id.setdefault(id(x), {})[node] = None

    def users_of_id(self, key):
        """The nodes reading the node whose id is ``key`` (each once)."""
        found = self._by_id.get(key)
        if not found:
            return []
        return [u for u in found if key in map(id, u.inputs)]

    def users(self, node):
        """The nodes reading ``node`` (each once)."""
        return self.users_of_id(id(node))

    def set_inputs(self, node, inputs):
        """Replace ``node``'s inputs, keeping the index current."""
        for x in node.inputs:
            found = self._by_id.get(id(x))
            if found is not None:
                found.pop(node, None)
        node.inputs = list(inputs)
        self.add(node)


@contextlib.contextmanager
def tracked_uses(program):
    """Keep ``program.uses``, a ``UseIndex``, current for the block (one pass's rewrites).

    Inside, ``replace_uses``, ``rewire`` and ``new_node`` use and update it without being
    told; a node's inputs change only through them and ``set_inputs``. Nested blocks share
    the outer index.

    Example:
        >>> with tracked_uses(program):
        ...     for n in list(program.nodes):
        ...         replace_uses(program, n, rewrite(n))
    """
    if getattr(program, "uses", None) is not None:
        yield program.uses
        return
    program.uses = UseIndex(program.nodes)
    try:
        yield program.uses
    finally:
        program.uses = None


def set_inputs(node, inputs, uses=None):
    """``node.inputs = inputs``, through ``uses`` (a ``UseIndex``) when a pass keeps one."""
    if uses is None:
        node.inputs = list(inputs)
    else:
        uses.set_inputs(node, inputs)


def replace_uses(program, old, new, uses=None):
    """Make every user of ``old`` (and the fetches) use ``new`` instead.

    Args:
        uses: the pass's ``UseIndex`` (default ``program.uses``, see ``tracked_uses``; None
            there too: find the users by one sweep of the program).
    Returns:
        The number of nodes rewired.
    """
    if old is new:
        return 0
    return rewire(program, {id(old): new}, uses)


def rewire(program, mapping, uses=None):
    """Apply {id(old node): new node} to every input slot and fetch.

    Chains (a -> b, b -> c) resolve to their end. With ``uses`` (a ``UseIndex``) only the
    users of the replaced nodes are visited, and the index is updated; without it, one
    sweep of the program. Returns the number of nodes rewired.
    Raises:
        GraphError: a rewrite would retarget an assign away from its variable.
    """
    uses = uses if uses is not None else getattr(program, "uses", None)

    def final(x):
        seen = 0
        while id(x) in mapping and seen < len(mapping) + 1:
            x = mapping[id(x)]
            seen += 1
        return x
    if uses is None:
        changed = [n for n in program.nodes if any(id(x) in mapping for x in n.inputs)]
    else:  # (the index returns only nodes that read a replaced node)
        changed = {}
        for key in mapping:
            for u in uses.users_of_id(key):
                changed[u] = None
    for n in changed:
        if n.op_name == "assign" and id(n.inputs[0]) in mapping:
            raise GraphError(f"rewrite would retarget {n.describe()} away from a variable")
    for n in changed:
        set_inputs(n, [final(x) for x in n.inputs], uses)
    # (the fetches checked at C speed: a cut step's body of 550 dense layers has 2,200
    # fetches and its passes rewire 4,400 times; a generator over them took 1.7x as long)
    if not mapping.keys().isdisjoint(map(id, program.fetches)):
        program.fetches = [None if f is None else final(f) for f in program.fetches]
    return len(changed)


def new_node(program, like, op, inputs, attrs, before=None, uses=None, schedule=True):
    """Create a node of ``op`` carrying ``like``'s name, line and gradient flag.

    It is scheduled right before ``before`` (default ``like``; at the end when ``like`` is not
    scheduled), which keeps the schedule topological when the inputs come before that point.
    ``schedule=False`` leaves the placing to the caller (a pass making many nodes rebuilds
    the schedule once: finding a position is a walk of the schedule). ``uses``: the pass's
    ``UseIndex`` (default ``program.uses``), which learns the new node's inputs.
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
    n.node_name, n.is_grad = like.node_name, like.is_grad
    uses = uses if uses is not None else getattr(program, "uses", None)
    if uses is not None:
        uses.add(n)
    if not schedule:
        return n
    at = before if before is not None else like
    nodes = program.nodes
    # The walk starts where the last node was placed and wraps around: a pass that rewrites
    # in schedule order finds each place a few steps on (linear), wherever it is found.
    start = min(getattr(program, "placed_at", 0), len(nodes))
    for i in itertools.chain(range(start, len(nodes)), range(start)):
        if nodes[i] is at:
            nodes.insert(i, n)
            program.placed_at = i
            return n
    if before is not None:
        raise GraphError(f"node '{before.node_name}' is not scheduled")
    program.nodes.append(n)
    return n


def placed_before(nodes, placed):
    """``nodes`` with each node ``placed[id(n)]`` scheduled right before ``n`` (the new nodes a
    pass made with ``new_node(schedule=False)``, in one rebuild instead of a walk each)."""
    return [m for n in nodes for m in ((placed[id(n)], n) if id(n) in placed else (n,))]


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


def index_of(nodes, node, start=0):
    """The position of ``node`` in the schedule ``nodes`` (searched from ``start`` on)."""
    for i in range(start, len(nodes)):
        if nodes[i] is node:
            return i
    raise GraphError(f"node '{node.node_name}' is not scheduled")


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
            raise GraphError(f"verifier: fetch '{f.node_name}' is not scheduled")
    for var, a in program.updates:
        if id(a) not in pos or var.op_name != "variable":
            raise GraphError(f"verifier: update of '{var.node_name}' is broken")
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
            raise GraphError(f"verifier: {n.describe()} input '{x.node_name}' {x.type_str()} does "
                             f"not broadcast to {shape}", loc=n.loc) from None
        if np.broadcast_shapes(x.shape, shape) != shape:
            raise GraphError(f"verifier: {n.describe()} input '{x.node_name}' is larger than the "
                             f"elementwise shape {shape}", loc=n.loc)
    if body.dtype != n.dtype and n.attrs.get("reduce") is None:
        raise GraphError(f"verifier: {n.describe()} body is {body.dtype.name}, node is "
                         f"{n.dtype.name}", loc=n.loc)
