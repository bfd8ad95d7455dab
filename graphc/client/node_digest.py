"""The compile cache's key kept as the graph is built: a running hash of every node so far.

With the compile cache on (``GRAPHC_STEP_CACHE=1`` when the graph is made), ``Graph.add_node``
calls ``digest_new`` for each node: it adds the node's row to the graph's running hash
(``Graph.key_hash``), a row being its description (``graph_key.describe``: op, dtype, declared
shape, attributes), name, source line (file, number and text), ``is_grad`` flag and its
inputs' positions in creation order. Two graphs whose hashes are equal after N nodes hold the
same N nodes (but for large arrays, below), so a step is named by the hash, the graph's
length and its fetches' and fed nodes' positions (``fast_rows``): a warm hit reads no node
but those, where ``graph_key.graph_rows`` reads every node the step needs (2 us a node in
Python).

That says more than ``graph_rows`` says of a step (every node built before, needed or not),
never less, so it may miss where ``graph_rows`` hits (a graph that grew since, or that other
nodes precede): ``step_cache`` then keys the step by ``graph_rows`` and remembers the one
key under the other (``remember`` and ``recall``).

A node is marked ``key_tainted``, and so is every node downstream of it, where the running
hash cannot stand for a step that needs it, or where ``graph_rows`` refuses to cache: an
attribute that could change under it (a writable array, a list, a dict), one the key cannot
describe, a random op without a seed, a host call; and an array of more than ``EAGER_BYTES``,
whose row does not hold it (a variable's initial value, which the step that trains it does
not need: that step's key is still the running hash). The constant ``gc.Variable`` makes of
its initial value is left out whatever its size (``Variable`` marks it tainted as it is
built): initializers without a seed draw it afresh in every process, and a hash that held
it would name the same training step differently each time. A step whose fetches are tainted is
keyed by ``graph_rows`` alone. A graph whose built nodes change (``Graph.rename`` of a node built
before the last one, ``Graph.node_changed``) is marked ``key_stale`` and keyed by
``graph_rows`` from then on.
"""
import hashlib
import marshal
from operator import attrgetter

import numpy as np

from ..ir.dtypes import DType
from ..ir.shapes import TensorShape
from .graph_key import (_DIMS, _NO_ATTRS, _PLAIN, MARSHAL, Uncacheable, _array_canon,
                        _attrs_desc, _kind_head, _known, describe)

_id_of = attrgetter("id")
_tainted = attrgetter("key_tainted")
# (file, line number) -> what a row says of a source line: the text too, which errors quote
_LINES = {}
# A constant of more bytes is not hashed as it is built, and marks what needs it tainted: most
# large arrays are variables' initial values, which no training step needs (its variables
# are leaves), and hashing them all cost W5's build 3 ms (64 MB of weights would cost ~40).
EAGER_BYTES = 1 << 16
# attribute types that never change once built and are described without a case to check
_FROZEN = _PLAIN | {DType, TensorShape}


def digest_new(graph, n):
    """Add ``n``'s row to ``graph``'s running hash; mark ``n`` tainted (module docstring)."""
    inputs = n.inputs
    op = n.opdef
    desc = None if n.key_tainted else _description(n, op)  # (tainted as built: a variable's
    if (desc is None or op.family == "host" or op.random and n.attrs.get("seed") is None
            or inputs and any(map(_tainted, inputs))):  # initial value, not hashed)
        n.key_tainted = True
    loc = n.loc
    if loc is None:
        line = None
    else:
        where = (loc.filename, loc.lineno)
        line = _LINES.get(where)
        if line is None:
            line = _LINES[where] = where + (loc.text,)
    try:  # (marshal's bytes read back one way: rows one after another need no lengths)
        graph.key_hash.update(marshal.dumps((desc, n.node_name, line, n.is_grad,
                                             tuple(map(_id_of, inputs))), MARSHAL))
    except ValueError:  # (a name of a subclass of str...)
        graph.key_stale = True


def _description(n, op):
    """``graph_key.describe(n)``, kept on ``n``; None when an attribute could change under
    it or cannot be described. Each (op, dtype, shape, attributes) is described once."""
    attrs = n.attrs
    if not attrs:
        tail = _NO_ATTRS
    elif _PLAIN.issuperset(map(type, attrs.values())):
        tail = marshal.dumps(attrs, MARSHAL)  # (``_attrs_desc``'s, one call less)
    elif _FROZEN.issuperset(map(type, attrs.values())):  # (a variable's, a placeholder's)
        try:
            tail = _attrs_desc(attrs)
        except Uncacheable:  # (a shape of dims marshal cannot write)
            return None
    elif any(type(v) is np.ndarray and v.nbytes > EAGER_BYTES for v in attrs.values()):
        return None  # (a large array: hashed when a step that needs it is keyed, if ever)
    elif (len(attrs) == 1 and type(attrs.get("value")) is np.ndarray
          and attrs["value"].base is None and not attrs["value"].flags.writeable):
        try:  # (a constant's one array, read-only: ``_attrs_desc``'s, without its loop)
            tail = marshal.dumps({"value": _array_canon(attrs["value"], "array")}, MARSHAL)
        except (Uncacheable, ValueError):
            return None
    else:
        try:
            describe(n)
        except Uncacheable:
            return None
        return n.key_desc  # (None when an attribute could change)
    shape = n.shape
    kind = (op, n.dtype, shape, tail)
    desc = _known.get(kind)
    if desc is None:
        if shape is not None and not _DIMS.issuperset(map(type, shape)):
            return None  # (dims equal to ints of other types: not one kind)
        try:
            desc = _known[kind] = _kind_head(op, n.dtype, shape) + tail
        except Uncacheable:
            return None
    n.key_desc = desc
    return desc


def new_hash():
    """A graph's running hash before its first node."""
    return hashlib.blake2b(b"graphc graph", digest_size=32)


def fast_rows(fetches, fed):
    """The rows of a step's key made of its graph's running hash (module docstring), or None
    when the hash cannot stand for the step (``graph_key.graph_rows`` keys it instead).

    Args:
        fetches: user nodes of one graph.
        fed: {user node fed: concrete shape as a tuple of ints}.
    """
    if not fetches:
        return None
    graph = fetches[0].graph
    if graph.key_hash is not None:
        graph.key_flush()
    if graph.key_hash is None or graph.key_stale or any(map(_tainted, fetches)):
        return None
    return ["running hash", graph.key_hash.digest(), len(graph.nodes),
            list(map(_id_of, fetches)), sorted((n.id, shape) for n, shape in fed.items())]
