"""TF1's ``export_meta_graph`` / ``import_meta_graph`` for graphc's own graphs, as JSON.

A saved graph is rebuilt in a fresh process, restored with a ``Saver`` and run by fetching
tensors by name (``sess.run("loss:0")``). The file is one JSON object (UTF-8)::

    {"format": "graphc-meta-graph", "version": 1, "seed": null,
     "nodes": [{"name": "dense/MatMul", "op": "matmul", "inputs": [0, 3],
                "attrs": {"transpose_a": false, "transpose_b": false},
                "dtype": "float32", "shape": [null, 10], "loc": ["model.py", 12],
                "grad": false}, ...],
     "collections": {"variables": [{"node": 3}, ...], "train_op": [{"node": 57}],
                     "summaries": [{"summary": {"name": "loss", "entries": [
                         ["loss", ["scalar"], {"node": 40}]]}}]}}

Nodes are listed in creation order (a topological order: ``inputs`` are indices of earlier
nodes). An attribute is a JSON value (null, bool, number, string) or one tagged object:
``{"tuple": [...]}``, ``{"dtype": "int32"}``, ``{"shape": [2, null]}`` (a TensorShape),
``{"pending": [null, 3]}`` (a size known when the step is specialized) or ``{"npy": base64}``
(an array in NumPy's ``.npy`` format, read with ``allow_pickle=False``). A variable's node
carries ``"variable": {"initial_value": i, "trainable": b, "initializer": j or null}``; a
placeholder with a default carries ``"default": {"npy": ...}``. A collection holds nodes or
summaries; ``loc`` is the user's file and line, shown in errors when that file is present.

Loading never executes code from the file (no pickle, no eval): every field is checked
(known op, earlier inputs, attribute types) and each node's dtype and shape are recomputed by
its op's own rule and compared with the file's. Errors name the file and the node.

A loop node (``while_loop``, ``dynamic_rnn``, ``scan``...) carries its body as the attribute
``body``: ``{"loop_body": {"name": "rnn/while", "carried": [i...], "sliced": [...],
"counter": i or null, "next": [...], "stacked": [...], "cond": i or null, "captured": [...]}}``,
each entry the index of a node of the file (the body's nodes are ordinary nodes of the graph,
as in TF1's while contexts; its loop variables are placeholders). All are earlier nodes but the
stacked values a gradient added after the loop was built (later nodes, in increasing order).
On import the body is checked against the loop's roles (as many next values as carried ones,
each of its carried value's dtype; the captured nodes are the loop's last inputs; the loop
variables are placeholders; the condition a bool scalar).
"""
import base64
import io
import json
import os

import numpy as np

from ..errors import ArtifactError, GraphError
from ..ir import dtypes as D
from ..ir.graph import Node, get_default_graph
from ..ir.loops import LoopBody
from ..ir.ops import REGISTRY
from ..ir.shapes import RuleError, TensorShape, format_shape
from ..ir.source import Location
from ..ir.static import Pending

FORMAT = "graphc-meta-graph"
VERSION = 1
MAX_BYTES = 1 << 30  # a larger file is refused before it is parsed
_NODE_KEYS = {"name", "op", "inputs", "attrs", "dtype", "shape", "loc", "grad", "variable",
              "default"}
_COLLECTION_LEAVES = ("node", "summary")


def export_meta_graph(filename=None, graph=None, collection_list=None, **unused):
    """Write ``graph`` (default: the default graph) to ``filename`` as graphc's JSON meta graph.

    Args:
        filename: where to write (its folder is created); None: only return the text.
        graph: the graph to export.
        collection_list: the collections to keep (default: all).
    Returns:
        The JSON text written.
    Raises:
        GraphError: a node or collection entry the format cannot hold (a loop node, a dataset
            iterator), naming it and its source line.
    Example:
        >>> gc.train.export_meta_graph("ckpt/model.meta")
    """
    g = graph or get_default_graph()
    index = {id(n): i for i, n in enumerate(g.nodes)}
    nodes = [_export_node(n, index) for n in g.nodes]
    keys = sorted(g.collections) if collection_list is None else list(collection_list)
    collections = {k: [_export_item(k, v, index) for v in g.get_collection(k)] for k in keys}
    text = json.dumps({"format": FORMAT, "version": VERSION, "seed": g.seed, "nodes": nodes,
                       "collections": collections}, indent=None, separators=(",", ":"))
    if filename is not None:
        path = os.fspath(filename)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    return text


def import_meta_graph(meta_graph_or_file, clear_devices=False, import_scope=None, **unused):
    """Rebuild the graph written by ``export_meta_graph`` into the default graph.

    Args:
        meta_graph_or_file: the file's path: graphc's JSON, or TensorFlow's binary
            MetaGraphDef (a TF1 ``.meta``, imported for inference by ``tf_meta_graph``).
        clear_devices: accepted for TF1 compatibility (graphc has no devices).
        import_scope: a name scope for the imported nodes (``"m"``: ``m/loss:0``).
    Returns:
        A ``gc.train.Saver`` over the imported variables, as TF1's (``saver.restore(sess,
        prefix)`` then ``sess.run("loss:0", feed)``).
    Raises:
        ArtifactError: the file cannot be read, is not a graphc meta graph, or a node in it is
            malformed (unknown op, bad input, attribute, dtype or shape); names the file and
            the node.
    Example:
        >>> saver = gc.train.import_meta_graph("ckpt/model.meta")
        >>> with gc.Session() as sess:
        ...     saver.restore(sess, gc.train.latest_checkpoint("ckpt"))
        ...     print(sess.run("loss:0", {"x:0": xs, "y:0": ys}))
    """
    path = os.fspath(meta_graph_or_file)
    if _is_tf_file(path):  # TensorFlow's binary MetaGraphDef (train/tf_meta_graph.py)
        from .tf_meta_graph import import_tf_meta_graph
        return import_tf_meta_graph(path, import_scope)
    doc = _read(path)
    g = get_default_graph()
    with g.name_scope(import_scope or ""):
        built = _Importer(path, g).nodes(doc["nodes"])
    _check(isinstance(doc.get("collections", {}), dict), path, "'collections' is not an object")
    for key, items in doc.get("collections", {}).items():
        _check(isinstance(key, str) and isinstance(items, list), path,
               f"collection {key!r} is not a list")
        for item in items:
            g.add_to_collection(key, _import_item(path, key, item, built, g))
    if doc.get("seed") is not None and g.seed is None:
        _check(isinstance(doc["seed"], int), path, "'seed' is not an integer")
        g.seed = doc["seed"]
    from .saver import Saver
    return Saver()


def _is_tf_file(path):
    from .tf_meta_graph import is_tf_meta_graph
    try:
        with open(path, "rb") as f:
            return is_tf_meta_graph(f.read(64))
    except OSError:
        return False  # _read names the file and the error


# -- export -------------------------------------------------------------------------------------

def _export_node(n, index):
    if set(n.meta) - {"initial_value", "trainable", "initializer", "default"}:
        what = ", ".join(sorted(set(n.meta) - {"initial_value", "trainable", "initializer",
                                               "default"}))
        raise GraphError(f"export_meta_graph: node '{n.node_name}' ({n.op_name}) carries {what}, "
                         "which a meta graph does not store", loc=n.loc,
                         hint="dataset iterators are rebuilt by the program; feed the tensors")
    out = {"name": n.node_name, "op": n.op_name, "inputs": [index[id(x)] for x in n.inputs],
           "attrs": {k: _encode(v, n, k, index) for k, v in n.attrs.items()},
           "dtype": None if n.dtype is None else n.dtype.name,
           "shape": _shape_json(n.shape),
           "loc": None if n.loc is None else [str(n.loc.filename), int(n.loc.lineno)],
           "grad": bool(n.is_grad)}
    if "initial_value" in n.meta:
        init = n.meta.get("initializer")
        out["variable"] = {"initial_value": index[id(n.meta["initial_value"])],
                           "trainable": bool(n.meta["trainable"]),
                           "initializer": None if init is None else index[id(init)]}
    if "default" in n.meta:
        out["default"] = _encode(n.meta["default"], n, "default")
    return out


def _shape_json(shape):
    """A node's shape in the file: a list (None for unknown dims), null for an unknown rank."""
    if shape is None:
        return None
    shape = TensorShape(shape)
    return list(shape) if type(shape) is TensorShape else None


_BODY_LISTS = ("carried", "sliced", "next", "stacked", "captured")
_BODY_KEYS = {"name", "counter", "cond"} | set(_BODY_LISTS)


def _encode(value, node, attr, index=None):
    """One attribute value as JSON (the tagged forms of the module docstring)."""
    if isinstance(value, LoopBody) and index is not None:
        ref = (lambda x: None if x is None else index[id(x)])
        body = {key: [ref(x) for x in getattr(value, key)] for key in _BODY_LISTS}
        body.update(name=value.name, counter=ref(value.counter), cond=ref(value.cond))
        return {"loop_body": body}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, D.DType):
        return {"dtype": value.name}
    if isinstance(value, TensorShape):
        return {"shape": _shape_json(value)}
    if isinstance(value, Pending):
        return {"pending": None if value.partial is None else list(value.partial)}
    if isinstance(value, tuple):
        return {"tuple": [_encode(v, node, attr) for v in value]}
    if isinstance(value, np.ndarray) and value.dtype.kind in "biufU":
        buf = io.BytesIO()
        np.save(buf, value, allow_pickle=False)
        return {"npy": base64.b64encode(buf.getvalue()).decode("ascii")}
    if isinstance(value, np.generic):
        return _encode(value.item(), node, attr)
    if node is None:  # a summary's text
        raise GraphError(f"export_meta_graph: summary text '{attr}' is a {value.dtype} array")
    raise GraphError(f"export_meta_graph: node '{node.node_name}' ({node.op_name}): attribute "
                     f"'{attr}' is a {type(value).__name__}, which a meta graph does not store",
                     loc=node.loc, hint="save a compiled step instead: gc.compile(...).save(path)")


def _export_item(key, value, index):
    if isinstance(value, Node):
        return {"node": index[id(value)]}
    from ..summary import SummaryOp
    if isinstance(value, SummaryOp):
        entries = [[tag, list(kind), {"node": index[id(t)]} if isinstance(t, Node)
                    else _encode(np.asarray(t), None, tag)] for tag, kind, t in value.entries]
        return {"summary": {"name": value.name, "entries": entries}}
    raise GraphError(f"export_meta_graph: collection '{key}' holds a {type(value).__name__}, "
                     "which a meta graph does not store",
                     hint="pass collection_list= with the collections to keep")


# -- import -------------------------------------------------------------------------------------

def _check(cond, path, message, node=None):
    if not cond:
        where = f" (node {node})" if node is not None else ""
        raise ArtifactError(f"import_meta_graph: '{path}'{where}: {message}",
                            hint="import a file written by gc.train.export_meta_graph")


def _read(path):
    try:
        size = os.path.getsize(path)
        _check(size <= MAX_BYTES, path, f"{size} bytes, more than a meta graph may hold")
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except OSError as e:
        raise ArtifactError(f"import_meta_graph: cannot read '{path}': {e.strerror}") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise ArtifactError(f"import_meta_graph: '{path}' is not JSON: {e}",
                            hint="import a file written by gc.train.export_meta_graph") from None
    _check(isinstance(doc, dict) and doc.get("format") == FORMAT, path,
           f"not a graphc meta graph (no \"format\": \"{FORMAT}\")")
    _check(doc.get("version") == VERSION, path,
           f"version {doc.get('version')!r}, this graphc reads version {VERSION}")
    _check(isinstance(doc.get("nodes"), list), path, "'nodes' is not a list")
    return doc


class _Importer:
    """Builds the file's nodes one by one, checking each against its op's rule."""

    def __init__(self, path, graph):
        self.path, self.graph, self.built = path, graph, []
        self.late = {}  # node index -> [(loop body, label)]: stacked values built after it

    def nodes(self, entries):
        for i, entry in enumerate(entries):
            self.built.append(self.node(i, entry))
            for body, label in self.late.pop(i, ()):
                body.stacked.append(self.built[i])
        self.fail(not self.late, "a loop body's stacked value is not a node of the file",
                  "(loop body)")
        for i, entry in enumerate(entries):  # variables refer to later initializer nodes
            if "variable" in entry or self.built[i].op_name == "variable":
                self.variable(self.built[i], entry.get("variable"))
        return self.built

    def fail(self, cond, message, label):
        _check(cond, self.path, message, label)

    def node(self, i, e):
        label = f"#{i}"
        self.fail(isinstance(e, dict) and isinstance(e.get("name"), str), "not a node", label)
        label = f"#{i} '{e['name']}'"
        self.fail(not set(e) - _NODE_KEYS, f"unknown fields {sorted(set(e) - _NODE_KEYS)}",
                  label)
        opdef = REGISTRY.get(e.get("op")) if isinstance(e.get("op"), str) else None
        self.fail(opdef is not None, f"op {e.get('op')!r} is not an op graphc can import",
                  label)
        ins = e.get("inputs", [])
        self.fail(isinstance(ins, list) and all(
            type(j) is int and 0 <= j < i for j in ins), "inputs must be indices of earlier "
            "nodes", label)
        attrs = e.get("attrs", {})
        self.fail(isinstance(attrs, dict), "'attrs' is not an object", label)
        self.index = i
        attrs = {k: self.decode(v, label, k) for k, v in attrs.items()}
        inputs = [self.built[j] for j in ins]
        if opdef.name == "loop":
            self.check_loop(inputs, attrs, label)
        try:
            if opdef.name == "placeholder" and attrs.get("shape", ()) is None:
                dtype, shape = D.as_dtype(attrs["dtype"]), None  # TF1's unknown shape
            else:
                dtype, shape = opdef.infer(list(inputs), **attrs)
        except RuleError as err:
            self.fail(False, f"{opdef.name}: {err.message}", label)
        except (TypeError, KeyError, ValueError) as err:  # attributes the rule cannot take
            self.fail(False, f"{opdef.name}: attributes {sorted(attrs)} do not fit ({err})",
                      label)
        want = (e.get("dtype"), e.get("shape"))
        got = (None if dtype is None else dtype.name, _shape_json(shape))
        self.fail(want == got, f"dtype and shape {want} in the file, {got} computed by "
                  f"{opdef.name}'s rule", label)
        loc = e.get("loc")
        if loc is not None:
            self.fail(isinstance(loc, list) and len(loc) == 2 and isinstance(loc[0], str)
                      and type(loc[1]) is int, "'loc' is not [file, line]", label)
            loc = Location(loc[0], loc[1])
        base = e["name"].rsplit("/", 1)
        with self.graph.name_scope(base[0] if len(base) == 2 else ""):
            node = self.graph.add_node(opdef, inputs, attrs, dtype, shape, base[-1],
                                       loc or Location(self.path, 0))
        node.is_grad = bool(e.get("grad", False))
        if node.is_grad:
            self.graph.node_changed(node)
        if opdef.name == "loop_output":  # ir.loops.outputs finds it, as when it was built
            body = inputs[0].attrs["body"]
            body.projections.setdefault((inputs[0], attrs["role"], attrs["index"]), node)
        if "default" in e:
            default = self.decode(e["default"], label, "default")
            self.fail(isinstance(default, np.ndarray) and opdef.name == "placeholder",
                      "'default' must be an array, on a placeholder", label)
            node.meta["default"] = default
        return node

    def variable(self, node, v):
        from ..framework.graph import Variable
        label = f"'{node.node_name}'"
        self.fail(node.op_name == "variable" and isinstance(v, dict) and set(v) == {
            "initial_value", "trainable", "initializer"}, "a malformed variable entry", label)
        n = len(self.built)
        for key in ("initial_value", "initializer"):
            self.fail(v[key] is None and key == "initializer" or type(v[key]) is int
                      and 0 <= v[key] < n, f"variable's {key} is not a node index", label)
        self.fail(isinstance(v["trainable"], bool), "variable's 'trainable' is not a bool",
                  label)
        init = self.built[v["initial_value"]]
        self.fail(init.dtype == node.dtype and tuple(init.shape or ()) == tuple(node.shape),
                  f"the initial value '{init.node_name}' is {init.type_str()}, the variable "
                  f"{node.type_str()}", label)
        node.__class__ = Variable
        node.meta["initial_value"] = init
        node.graph.initial_arrays.pop(node, None)  # (its initializer is the one imported)
        node.meta["trainable"] = v["trainable"]
        if v["initializer"] is not None:
            node.meta["initializer"] = self.built[v["initializer"]]

    def loop_body(self, b, label):
        """The ``LoopBody`` of a ``{"loop_body": ...}`` attribute (see the module docstring)."""
        self.fail(isinstance(b, dict) and set(b) == _BODY_KEYS and isinstance(b["name"], str)
                  and all(isinstance(b[k], list) for k in _BODY_LISTS),
                  f"a malformed loop body (keys {sorted(_BODY_KEYS)})", label)
        here, n = self.index, len(self.built)

        def node(j, what):
            self.fail(type(j) is int and 0 <= j < n, f"loop body: {what} is not the index of "
                      f"an earlier node ({j!r})", label)
            return self.built[j]

        def opt(j, what):
            return None if j is None else node(j, what)

        stacked = b["stacked"]
        early = [j for j in stacked if type(j) is int and j < here]
        late = stacked[len(early):]
        self.fail(stacked[:len(early)] == early and all(
            type(j) is int and here < j for j in late) and late == sorted(set(late)),
            "loop body: stacked values built after the loop must come last, in order", label)
        body = LoopBody([node(j, "a carried value") for j in b["carried"]],
                        [node(j, "a sliced value") for j in b["sliced"]],
                        opt(b["counter"], "the counter"),
                        [node(j, "a next value") for j in b["next"]],
                        [node(j, "a stacked value") for j in early],
                        opt(b["cond"], "the condition"),
                        [node(j, "a captured value") for j in b["captured"]], b["name"])
        for j in late:
            self.late.setdefault(j, []).append((body, label))
        for v in body.vars:
            self.fail(v.op_name == "placeholder", f"loop body: loop variable '{v.node_name}' is a "
                      f"{v.op_name}, not a placeholder", label)
        for v, nx in zip(body.carried, body.next):
            self.fail(v.dtype == nx.dtype, f"loop body: next value '{nx.node_name}' is "
                      f"{nx.type_str()}, its carried value '{v.node_name}' {v.type_str()}", label)
        self.fail(body.cond is None or body.cond.dtype == D.bool_ and body.cond.shape == (),
                  "loop body: the condition is not a bool scalar", label)
        return body

    def check_loop(self, inputs, attrs, label):
        """A loop's body against its attributes and inputs (the verifier's rule, at import)."""
        body = attrs.get("body")
        self.fail(isinstance(body, LoopBody) and all(
            k in attrs for k in ("length", "reverse", "has_count", "n_carried", "n_sequences")),
            "a loop without its body or roles", label)
        self.fail(type(attrs["has_count"]) is bool and type(attrs["n_carried"]) is int
                  and type(attrs["n_sequences"]) is int, "a loop's roles are malformed", label)
        k = int(attrs["has_count"]) + int(body.cond is not None)
        want = k + attrs["n_carried"] + attrs["n_sequences"] + len(body.captured)
        self.fail(len(inputs) == want and len(body.carried) == len(body.next)
                  == attrs["n_carried"] and len(body.sliced) == attrs["n_sequences"]
                  and all(a is b for a, b in zip(inputs[want - len(body.captured):],
                                                 body.captured)),
                  f"the loop's {len(inputs)} inputs do not match its body's roles", label)
        init = inputs[k:k + attrs["n_carried"]]
        seqs = inputs[k + attrs["n_carried"]:want - len(body.captured)]
        pairs = [(v, x, x.shape) for v, x in zip(body.carried, init)] + [
            (v, s, None if s.shape is None else s.shape[1:]) for v, s in zip(body.sliced, seqs)]
        for v, x, shape in pairs:
            self.fail(v.dtype == x.dtype and _compatible(v.shape, shape), f"loop variable "
                      f"'{v.node_name}' is {v.type_str()}, the loop's input "
                      f"'{x.node_name}' gives it {x.dtype.short}{format_shape(shape)}", label)
        body.loop_attrs = {"has_count": attrs["has_count"]}

    def decode(self, value, label, attr):
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        self.fail(isinstance(value, dict) and len(value) == 1,
                  f"attribute '{attr}' is neither a JSON value nor a tagged object", label)
        (tag, body), = value.items()
        if tag == "loop_body" and attr == "body":
            return self.loop_body(body, label)
        if tag == "tuple" and isinstance(body, list):
            return tuple(self.decode(v, label, attr) for v in body)
        if tag == "dtype" and isinstance(body, str):
            try:
                return D.as_dtype(body)
            except Exception:  # as_dtype's DTypeError or a name it does not know
                self.fail(False, f"attribute '{attr}': unknown dtype {body!r}", label)
        ints = body is None or isinstance(body, list) and all(
            d is None or type(d) is int for d in body)
        if tag == "shape" and ints:
            return TensorShape(body)
        if tag == "pending" and ints:
            return Pending(None if body is None else tuple(body))
        if tag == "npy" and isinstance(body, str):
            try:
                arr = np.load(io.BytesIO(base64.b64decode(body, validate=True)),
                              allow_pickle=False)
            except (ValueError, OSError, EOFError) as err:
                self.fail(False, f"attribute '{attr}': not a .npy array ({err})", label)
            self.fail(isinstance(arr, np.ndarray) and arr.dtype.kind in "biufU",
                      f"attribute '{attr}': an array of an unsupported dtype", label)
            arr.setflags(write=False)
            return arr
        self.fail(False, f"attribute '{attr}': unknown form {tag!r}", label)


def _compatible(a, b):
    """Whether shapes ``a`` and ``b`` (None: unknown rank; None dims: any size) can agree."""
    return a is None or b is None or len(a) == len(b) and all(
        x is None or y is None or x == y for x, y in zip(a, b))


def _import_item(path, key, item, built, graph):
    _check(isinstance(item, dict) and len(item) == 1 and next(iter(item)) in _COLLECTION_LEAVES,
           path, f"collection '{key}' holds a malformed entry")
    (tag, body), = item.items()

    def node(ref):
        _check(isinstance(ref, dict) and set(ref) == {"node"} and type(ref["node"]) is int
               and 0 <= ref["node"] < len(built), path,
               f"collection '{key}' refers to no node ({ref!r})")
        return built[ref["node"]]

    if tag == "node":
        return node(item)
    from ..summary import SummaryOp
    _check(isinstance(body, dict) and isinstance(body.get("name"), str)
           and isinstance(body.get("entries"), list), path, f"collection '{key}': a "
           "malformed summary")
    entries = []
    for entry in body["entries"]:
        _check(isinstance(entry, list) and len(entry) == 3 and isinstance(entry[0], str)
               and isinstance(entry[1], list) and entry[1] and isinstance(entry[1][0], str),
               path, f"collection '{key}': a malformed summary entry")
        tag_, kind, ref = entry
        kind = tuple(kind)
        if kind[0] == "text":
            value = _Importer(path, graph).decode(ref, f"summary '{body['name']}'", tag_)
            _check(isinstance(value, np.ndarray), path, f"summary '{body['name']}': its "
                   "text is not an array")
        else:
            value = node(ref)
        entries.append((tag_, kind, value))
    return SummaryOp(graph, body["name"], entries, Location(path, 0))
