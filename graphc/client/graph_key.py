"""What the compile cache's key reads of the user's graph (``step_cache.step_key``).

``graph_rows(fetches, fed, labels)`` describes the nodes a step needs: one pass to find them
(every ancestor of the fetches, stopping at fed nodes), then columns read from every node at
C speed (``map`` over attribute getters), so that a hit's cost per node is a few dictionary
and list operations, not a Python function per node:

- each node's *description*: its op, dtype, declared shape and attributes (arrays by dtype,
  shape and content). It is built once per node and kept on it (``Node.key_desc``): these
  four fields never change once a node is built (``ir.graph``: attributes are frozen; passes
  rewrite private copies), so a second key of the same graph (another ``CompiledStep``,
  another ``Session.run`` fetch list) reads the kept ones. A node with an attribute that
  could change under it (a writable array, a list, a dict) is described again each time;
- a fed node's description adds "fed" and its concrete shape, and its inputs are not read;
- the edges, as positions among the needed nodes (in creation order): one count and the
  input positions per node, in two flat lists;
- with ``labels`` (the LLVM backend, whose object code holds them): each node's name, its
  ``is_grad`` flag and its source line, lines given by their text once each. Names and lines
  can change after a node is built (``Graph.rename``, importers), so they are never kept.

Rows hold only values ``marshal`` writes exactly (``_canon``), so the key is one ``marshal``
and one hash of one buffer. All of it but the labels is a function of what cannot change, so
the graph keeps it for each fetch list and feed shapes (``Graph.key_rows``: the needed nodes,
the descriptions' and edges' digest): a second key of the same step searches nothing and
hashes 32 bytes, and reads again only the labels and attributes that could have changed.
"""
import hashlib
import marshal
from itertools import chain, repeat
from operator import attrgetter, index, itemgetter

import numpy as np

from ..ir.dtypes import DType
from ..ir.program import user_needed_nodes
from ..ir.shapes import TensorShape
from ..ir.source import Location
from ..ir.static import Pending

# Attribute values written as they are: marshal writes exactly what they are.
_PLAIN = frozenset({int, float, str, bool, bytes, type(None)})
# Descriptions are serialized by ``marshal`` at this version: one C call, injective on the
# plain values they hold, the same bytes for the same values (versions 3 and up write back
# references and interned strings, which depend on objects' identity and history).
MARSHAL = 2
# Heads a described value (an array, a dtype...): no attribute can be it (``_canon`` refuses
# it), so a described value never reads like an attribute that is a plain tuple.
_DESCRIBED = Ellipsis
_NO_ATTRS = marshal.dumps((), MARSHAL)
_desc_of = attrgetter("key_desc")
_opdef_of = attrgetter("opdef")
_inputs_of = attrgetter("inputs")
_shape_of = attrgetter("shape")
_dtype_of = attrgetter("dtype")
_attrs_of = attrgetter("attrs")
_loc_of = attrgetter("loc")
_file_of = attrgetter("filename")
_lineno_of = attrgetter("lineno")
_name_of = attrgetter("node_name")
_grad_of = attrgetter("is_grad")


class Uncacheable(Exception):
    """The step holds something the key cannot describe."""


def graph_rows(fetches, fed, labels):
    """The rows describing what ``fetches`` need of the user's graph, and those nodes.

    Args:
        fetches: user nodes.
        fed: {user node fed: concrete shape as a tuple of ints}.
        labels: also describe names and source lines (module docstring).
    Returns:
        (rows, nodes): a list of plain values and the needed nodes in creation order (what
        an entry's positions refer to); (None, nodes) for a step that is not cached (a random
        op without a seed, a host call, a placeholder needed but not fed).
    Raises:
        Uncacheable: an attribute the key cannot describe.
    """
    memo = getattr(fetches[0].graph, "key_rows", None) if fetches else None
    key = (tuple(map(id, fetches)), frozenset([(id(n), s) for n, s in fed.items()]))
    found = memo.get(key) if memo is not None else None  # (ids: == builds a node)
    if found is None:
        found = _rows(fetches, fed)
        if memo is not None:
            if len(memo) >= 16:  # (a few fetch lists and feed shapes per graph)
                memo.clear()
            memo[key] = found
    nodes, digest, descs, again, edges = found
    if digest is None:
        return None, nodes
    if again:  # (attributes that could have changed since)
        descs = list(descs)
        for k, shape in again:
            n = nodes[k]
            descs[k] = describe(n) if shape is None else _head(n, shape) + _attrs_desc(n.attrs)
        digest = _digest(descs, edges)
    rows = [digest]
    if labels:
        rows.append(_labels(nodes))
    return rows, nodes


def _rows(fetches, fed):
    """(nodes, digest of the rows but labels, descriptions, [(position, fed shape or None) to
    describe again], edges) of ``graph_rows``: kept on the graph for these fetches and feed
    shapes (nothing else in them can change: ``Node.key_desc``); digest None for a step not
    cached."""
    nodes = user_needed_nodes(fetches, fed)  # (the step's compile searched already)
    position = dict(zip(nodes, range(len(nodes))))
    ops = list(map(_opdef_of, nodes))
    if not _cacheable(nodes, ops, fed, position):
        return nodes, None, None, None, None
    descs = list(map(_desc_of, nodes))
    again = {}  # (all kept: none could change)
    if None in descs:
        descs, volatile = _describe_all(nodes, ops)
        again = dict.fromkeys(volatile)
    inputs = list(map(_inputs_of, nodes))
    for n, shape in fed.items():  # a leaf of the step: its inputs are not read
        k = position.get(n)
        if k is not None:
            descs[k] = _head(n, shape) + _attrs_desc(n.attrs)
            inputs[k] = ()
            if k in again:
                again[k] = shape
    edges = [list(map(len, inputs)), list(map(position.__getitem__, chain.from_iterable(inputs))),
             list(map(position.__getitem__, fetches))]
    return nodes, _digest(descs, edges), descs, list(again.items()), edges


def _digest(descs, edges):
    """SHA-256 of each description once (in the order nodes use them), each node's as a
    position among them, and ``edges``: what a second key of the step hashes again."""
    table = dict.fromkeys(descs)
    at = dict(zip(table, range(len(table))))
    rows = [list(table), list(map(at.__getitem__, descs))] + edges
    return hashlib.sha256(marshal.dumps(rows, MARSHAL)).digest()


def _cacheable(nodes, ops, fed, position):
    """False for a step a key cannot stand for: an op drawing fresh entropy at each compile
    (random without a seed), a host call (Python functions), or a placeholder needed but not
    fed (compiling says which)."""
    for op in set(ops):
        if op.family == "host":
            return False
        if op.random and any(n.attrs.get("seed") is None
                             for n, o in zip(nodes, ops) if o is op):
            return False
        if op.name == "placeholder":
            fed_here = sum(1 for n in fed if n.opdef is op and n in position)
            if ops.count(op) != fed_here:
                return False
    return True


def _describe_all(nodes, ops):
    """(every node's description (``describe``), the positions of those not kept): kept on
    the nodes, read as columns, each (op, dtype, shape, attributes) described once (most
    nodes are one of a few kinds)."""
    shapes = list(map(_shape_of, nodes))
    if not (_SHAPES.issuperset(map(type, shapes))
            and _DIMS.issuperset(map(type, chain.from_iterable(filter(None, shapes))))):
        descs = list(map(describe, nodes))  # (equal dims of other types: one at a time)
        return descs, [k for k, n in enumerate(nodes) if n.key_desc is None]
    volatile = []
    attrs = [_attrs_desc(a, volatile) if a else _NO_ATTRS for a in map(_attrs_of, nodes)]
    kinds = list(zip(ops, map(_dtype_of, nodes), shapes, attrs))
    new = set(kinds).difference(_known)  # (a kind holds all its head reads: no node needed)
    if new:
        if len(_known) > 10000:
            _known.clear()
            new = set(kinds)
        for kind in new:
            _known[kind] = _kind_head(*kind[:3]) + kind[3]
    descs = list(map(_known.__getitem__, kinds))
    list(map(setattr, nodes, repeat("key_desc"), descs))  # (C's loop: 0.35 ms, Python's 0.7)
    again = []
    if volatile:
        volatile = set(map(id, volatile))
        for k, n in enumerate(nodes):
            if id(n.attrs) in volatile:
                n.key_desc = None
                again.append(k)
    return descs, again


# (op, dtype, shape, attributes' description) -> description: shapes of exact ints only
_known = {}
_SHAPES = frozenset({TensorShape, type(None)})
_DIMS = frozenset({int, type(None)})


def describe(n):
    """``n``'s description: its op, dtype and declared shape (``_head``) and attributes
    (``_attrs_desc``) as ``marshal`` bytes; kept on the node unless an attribute could change
    under it (module docstring)."""
    volatile = []
    desc = _head(n) + _attrs_desc(n.attrs, volatile)
    if not volatile:
        n.key_desc = desc
    return desc


def _head(n, fed_shape=None):
    """(op, dtype, declared shape) of ``n``; ("fed", op, dtype, shape) when fed that shape."""
    if fed_shape is None:
        return _kind_head(n.opdef, n.dtype, n.shape)
    dtype = n.dtype
    return _marshalled(("fed", n.opdef.name, dtype if dtype is None else dtype.name,
                        fed_shape))


def _kind_head(op, dtype, shape):
    """``_head`` of a node of ``op``, ``dtype`` and declared ``shape``."""
    if dtype is not None:
        dtype = dtype.name
    if type(shape) is TensorShape:
        shape = tuple(shape)
    elif shape is not None:
        shape = _canon(shape)
    return _marshalled((op.name, dtype, shape))


def _marshalled(head):
    try:
        return marshal.dumps(head, MARSHAL)
    except ValueError:  # (a dim of a subclass of int...)
        raise Uncacheable() from None


def _attrs_desc(attrs, volatile=None):
    """``attrs`` as ``marshal`` bytes (self-delimiting: a head and attributes read back
    apart); ``attrs`` is appended to ``volatile`` when it could change (``_frozen``)."""
    if not attrs:
        return _NO_ATTRS
    if _PLAIN.issuperset(map(type, attrs.values())):
        items = attrs  # (a dict: in the op's order, one op writes them in one order)
    else:  # (some value is not plain, so these never read like a dict of plain values)
        items = {}
        for k, v in attrs.items():
            t = type(v)
            if t in _PLAIN or t is tuple and _plain_tuple(v):
                items[k] = v  # (what ``_canon`` gives back, and it cannot change)
            elif t is DType:  # (a variable's: what ``_canon`` gives, one call less)
                items[k] = (_DESCRIBED, "dtype", v.name)
            elif t is TensorShape:
                items[k] = (_DESCRIBED, "shape", tuple(v))
            elif t is np.ndarray:  # (a constant's)
                items[k] = _array_canon(v, "array")
                if volatile is not None and (v.flags.writeable or v.base is not None):
                    volatile.append(attrs)
            else:
                items[k] = _canon(v)
                if volatile is not None and not _frozen(v):
                    volatile.append(attrs)
    try:
        return marshal.dumps(items, MARSHAL)
    except ValueError:  # (a value of a subclass of str, int...)
        raise Uncacheable() from None


def _plain_tuple(v):
    """Whether the tuple ``v`` holds only plain values and tuples of them, at any depth (a
    slice spec, an axis list: ``_canon`` gives it back as it is)."""
    types = set(map(type, v))
    if types <= _PLAIN:
        return True
    return types <= _PLAIN_OR_TUPLE and all(map(_plain_tuple, filter(_is_tuple, v)))


_PLAIN_OR_TUPLE = _PLAIN | {tuple}
_is_tuple = tuple.__instancecheck__  # (below a types test: the values of type tuple)


def _frozen(v):
    """Whether ``v`` cannot change once built: not a list or dict, and an array only when it
    owns its data and is read-only (as ``const`` nodes' are)."""
    t = type(v)
    if t is np.ndarray:
        return not v.flags.writeable and v.base is None
    if t is tuple:
        return all(map(_frozen, v))
    return t is not list and t is not dict and not isinstance(v, np.ndarray)


def _labels(nodes):
    """(names, each node's line as a position in ``texts``, is_grad flags, texts): each line's
    text once (a graph has few lines and many nodes)."""
    locs = list(map(_loc_of, nodes))
    if None in locs:
        lines = [None if loc is None else (loc.filename, loc.lineno) for loc in locs]
    else:
        files = list(map(_file_of, locs))
        if files.count(files[0]) == len(files):  # (one file: its line numbers say it)
            lines = list(map(_lineno_of, locs))
            files = files[:1]
        else:
            lines = list(zip(files, map(_lineno_of, locs)))
            files = None
    first = dict.fromkeys(lines)
    texts = tuple(_line_text(line, files) for line in first)
    at = dict(zip(first, range(len(first))))
    grads = list(map(_grad_of, nodes))
    try:
        grads = bytes(grads)  # (bools as one byte each: marshal writes 5 a bool)
    except (TypeError, ValueError):
        pass
    return list(map(_name_of, nodes)), list(map(at.__getitem__, lines)), grads, texts


def _line_text(line, files):
    """What the step reports of ``line``: a (file, line number) pair, a line number of the
    one file ``files`` holds, or None (no location)."""
    if line is None:
        return None
    return (Location(files[0], line) if files else Location(*line)).format()


def _canon(v):
    """A plain value (or a tuple or list of them) that is the same exactly when ``v`` means
    the same.

    Plain values (``_PLAIN``) and tuples and lists of them stand for themselves (``marshal``
    tells 1, 1.0, True, "1", (1,) and [1] apart); anything else is described by a tuple
    headed by ``_DESCRIBED`` and a kind.

    Raises:
        Uncacheable: a value of a type the key cannot describe.
    """
    t = type(v)
    if t in _PLAIN:
        return v
    if t is tuple:
        if _PLAIN.issuperset(map(type, v)):
            return v
        return tuple([x if type(x) in _PLAIN else _canon(x) for x in v])
    if t is list:
        return [x if type(x) in _PLAIN else _canon(x) for x in v]
    if t is DType:
        return (_DESCRIBED, "dtype", v.name)
    if t is TensorShape:  # (a tuple of ints and None)
        return (_DESCRIBED, "shape", tuple(v))
    if t is np.ndarray:
        return _array_canon(v, "array")
    if isinstance(v, np.generic):
        return _array_canon(np.asarray(v), "numpy scalar")
    if isinstance(v, tuple):  # UnknownShape (the shape ``()`` of no rank), a namedtuple...
        return (_DESCRIBED, "tuple", f"{t.__module__}.{t.__qualname__}", _canon(tuple(v)))
    if isinstance(v, (DType, np.ndarray)):  # (subclasses)
        raise Uncacheable()
    if t is dict:
        items = {str(k): _canon(x) for k, x in v.items()}
        if len(items) != len(v):  # (keys 1 and "1")
            raise Uncacheable()
        return (_DESCRIBED, "dict", tuple(sorted(items.items(), key=itemgetter(0))))
    if isinstance(v, np.dtype):
        return (_DESCRIBED, "np.dtype", v.str)
    if t is Pending:
        return (_DESCRIBED, "pending", _canon(v.partial))
    raise Uncacheable()  # (a subclass of a plain type too: marshal refuses it)


def _array_canon(arr, kind):
    """``_canon`` of an array (``kind`` "array") or of a NumPy scalar (its 0-d array)."""
    dtype = arr.dtype
    if dtype.kind == "O":
        raise Uncacheable()
    if arr.nbytes <= 64:  # (the shape tells a digest from the bytes of a small array)
        data = arr.tobytes()  # (C order, whatever the strides)
    elif arr.flags.c_contiguous and dtype.kind not in "mM":  # (no copy)
        data = hashlib.sha256(arr).digest()
    else:
        data = hashlib.sha256(arr.tobytes()).digest()
    return (_DESCRIBED, kind, dtype.str, arr.shape, data)


def fed_shapes(feed_shapes):
    """{node: shape as a tuple of ints}, or None when a dim is not an integer (specializing
    says what is wrong)."""
    try:
        return {n: tuple(map(index, shape)) for n, shape in feed_shapes.items()}
    except TypeError:
        return None
