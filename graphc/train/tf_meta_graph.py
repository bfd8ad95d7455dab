"""``import_meta_graph`` of TensorFlow's own ``.meta`` files (a binary ``MetaGraphDef``).

A TF1 model saved by TensorFlow (``model.ckpt.meta`` beside its V2 checkpoint) is rebuilt in
the default graph under the same names, node by node, through graphc's public TF1 functions
(``tf_ops_import.OPS``), so every shape and dtype rule of graphc applies. Variables
(``VariableV2``, ``Variable``, ``VarHandleOp``) become ``gc.Variable`` s whose initial values
are the file's (their ``Assign`` is their initializer; zeros, with a warning, where the initial
value comes from an op graphc does not have, such as a random initializer): ``Saver.restore``
fills them from the checkpoint and ``global_variables_initializer()`` works.

graphc imports TensorFlow graphs for inference: a node whose op is not in the table, or which
reads one (typically the training subgraph: ``gradients/...``, ``Apply*`` ops, the Saver's
``save/...`` nodes), or reads an output other than 0 of a many-output op, is not built. It is
recorded on the graph: fetching or feeding it names the op and says why, and the import warns
once with the count and the op types. Collections: ``variables`` and ``trainable_variables``
(the imported variables, trainable as in the file), and each list of node names whose nodes
were all built (a ``train_op`` of a skipped training subgraph is not).

Nodes are built with graphc's functions under the private scope ``_tf_import/<name>`` (a
function may add helper nodes there), then the node of the TensorFlow op takes its name.

Loading executes nothing from the file. A malformed file (bad wire format, unknown dtype,
a constant whose bytes do not fit its dtype and shape, an input naming no node, a cycle,
a node graphc's rules refuse) is an ``ArtifactError`` naming the file and the node.
"""
import collections
import os
import warnings

import networkx as nx

from ..errors import ArtifactError, GraphcError, GraphError
from ..ir.graph import get_default_graph
from .tf_graph_proto import DTypeNotHeld, MetaGraph
from .tf_ops_import import OPS, OUTPUTS, Unsupported

MAX_BYTES = 1 << 30
VARIABLES = ("VariableV2", "Variable", "VarHandleOp")
LEAVES = ("Placeholder", "PlaceholderWithDefault", "Const", "NoOp") + VARIABLES
ADVICE = "graphc imports TensorFlow graphs for inference (ops it has); rebuild training in graphc"


def is_tf_meta_graph(head):
    """Whether a file starting with bytes ``head`` is a binary MetaGraphDef (not JSON text)."""
    stripped = head.lstrip(b" \t\r\n\xef\xbb\xbf")
    return bool(stripped) and stripped[:1] != b"{"


def import_tf_meta_graph(path, import_scope=None):
    """Build the MetaGraphDef in ``path`` into the default graph.

    Args:
        path: a TensorFlow ``.meta`` file.
        import_scope: a name scope for the imported nodes (``"m"``: ``m/logits:0``).
    Returns:
        A ``gc.train.Saver`` over the imported variables under their names in the file (so a
        checkpoint written with the file restores into an ``import_scope`` too).
    Raises:
        ArtifactError: the file is malformed (names the file and the node).
    Example:
        >>> saver = gc.train.import_meta_graph("tf_run/model.ckpt.meta")  # dispatches here
    """
    from ..framework.graph import Variable
    from .saver import Saver
    built = _Importer(path, _read(path)).run(import_scope)
    return Saver({name: n for name, n in built.items() if isinstance(n, Variable)})


def _node_name(tensor_name):
    """``"dense/MatMul"`` of ``"dense/MatMul:0"``."""
    return tensor_name.rpartition(":")[0] if ":" in tensor_name else tensor_name


def _fail(path, message, node=None):
    where = f" (node '{node}')" if node is not None else ""
    return ArtifactError(f"import_meta_graph: '{path}'{where}: {message}",
                         hint="import a MetaGraphDef written by TensorFlow's "
                              "tf.train.Saver or export_meta_graph")


def _read(path):
    try:
        size = os.path.getsize(path)
        if size > MAX_BYTES:
            raise _fail(path, f"{size} bytes, more than a meta graph may hold")
        with open(path, "rb") as f:
            buf = f.read()
    except OSError as e:
        raise ArtifactError(f"import_meta_graph: cannot read '{path}': {e.strerror}") from None
    try:
        return MetaGraph(buf)
    except ValueError as e:  # WireError is a ValueError
        raise _fail(path, f"not a well-formed MetaGraphDef: {e}") from None
    except TypeError as e:
        raise _fail(path, f"not a well-formed MetaGraphDef: a field of another wire type "
                          f"than MetaGraphDef's ({e})") from None


class _Importer:
    def __init__(self, path, meta):
        self.path, self.meta = path, meta
        self.nodes = {}
        for nd in meta.nodes:
            if nd.name in self.nodes:
                raise _fail(path, "two nodes have this name", nd.name)
            self.nodes[nd.name] = nd
        self.built, self.consts, self.skipped, self.zero_init = {}, {}, {}, []
        self.var_defs = {v["variable"]: v for v in meta.collections.get("variables", [])
                         if isinstance(v, dict)}
        trainable = meta.collections.get("trainable_variables")
        self.trainable = None if trainable is None else {
            t["variable"] if isinstance(t, dict) else _node_name(t)
            for t in trainable if t is not None}

    # -- order ----------------------------------------------------------------------------
    def initial_values(self):
        """{variable name: (its initializer Assign, its initial value node)}."""
        out = {}
        for nd in self.meta.nodes:
            if nd.op in ("Assign", "AssignVariableOp") and len(nd.inputs) >= 2:
                var, val = nd.inputs[0][0], nd.inputs[1][0]
                if var in self.nodes and self.nodes[var].op in VARIABLES and var not in out:
                    out[var] = (nd.name, val)
        for name, v in self.var_defs.items():  # the VariableDef names them exactly
            if name in self.nodes and v["initializer"] in self.nodes and \
                    v["initial_value"] in self.nodes:
                out[name] = (v["initializer"], v["initial_value"])
        return out

    def order(self, inits):
        g = nx.DiGraph()
        g.add_nodes_from(self.nodes)
        for nd in self.meta.nodes:
            for src, _, _ in nd.inputs:
                if src not in self.nodes:
                    raise _fail(self.path, f"input '{src}' is not a node of the graph", nd.name)
                g.add_edge(src, nd.name)
        for var, (_, value) in inits.items():
            g.add_edge(value, var)  # a variable is built with its initial value
        try:
            return list(nx.lexicographical_topological_sort(
                g, key=lambda n: self.position[n]))
        except nx.NetworkXUnfeasible:
            cycle = [e[0] for e in nx.find_cycle(g)]
            raise _fail(self.path, "the graph has a cycle: " + " -> ".join(cycle[:8]),
                        cycle[0]) from None

    # -- building -------------------------------------------------------------------------
    def run(self, import_scope):
        self.position = {nd.name: i for i, nd in enumerate(self.meta.nodes)}
        inits = self.initial_values()
        self.init_of = {var: assign for var, (assign, _) in inits.items()}
        self.value_of = {var: value for var, (_, value) in inits.items()}
        order = self.order(inits)
        self.graph = get_default_graph()
        self.scope = import_scope.rstrip("/") + "/" if import_scope else ""
        with self.graph.name_scope(import_scope or ""):
            for name in order:
                self.node(self.nodes[name])
        self.record_skipped()
        if self.zero_init:
            warnings.warn(
                f"import_meta_graph: {len(self.zero_init)} variables of '{self.path}' have "
                f"initializers that were not imported ({', '.join(self.zero_init[:4])}"
                f"{', ...' if len(self.zero_init) > 4 else ''}): their initializers give "
                "zeros; restore them from a checkpoint", stacklevel=4)
        self.node_collections()
        return self.built

    def node_collections(self):
        """The file's collections of node names (``train_op``, ``losses``...) whose nodes were
        all built; the variables' are filled by ``gc.Variable``."""
        for key, names in self.meta.collections.items():
            if key in ("variables", "trainable_variables") or not names or not all(
                    isinstance(n, str) for n in names):
                continue
            nodes = [self.built.get(_node_name(n)) for n in names]
            if all(n is not None for n in nodes):
                for n in nodes:
                    self.graph.add_to_collection(key, n)

    def node(self, nd):
        reason = self.why_not(nd)
        if reason is None:
            try:
                self.built[nd.name] = self.check_shape(self.build(nd), nd)
                return
            except (Unsupported, DTypeNotHeld) as e:
                reason = str(e)
            except (GraphcError, ValueError, TypeError, KeyError, IndexError, ArithmeticError,
                    AttributeError) as e:  # the file's attributes, inputs or values
                msg = e.message if isinstance(e, GraphcError) else str(e)
                msg = msg.replace(f"{self.scope}_tf_import/{nd.name}/", "")  # helpers' scope
                raise _fail(self.path, f"{nd.op}: {msg}", nd.name) from None
        self.skipped[nd.name] = (nd.op, reason)

    def why_not(self, nd):
        """Why ``nd`` cannot be built (None: it can)."""
        if nd.op not in OPS and nd.op not in LEAVES:
            return f"graphc does not have op {nd.op}"
        for src, index, _ in nd.inputs:
            if src in self.skipped:
                return f"it reads '{src}' ({self.skipped[src][0]}), which was not imported"
            if index > 0:
                op = self.nodes[src].op
                outs = OUTPUTS.get(op, ())
                label = f" ({outs[index]})" if index < len(outs) else ""
                return (f"it reads output {index}{label} of '{src}' ({op}); graphc nodes have "
                        f"one output, ':0'")
        return None

    def check_shape(self, node, nd):
        """``node``, if its shape agrees with the one TensorFlow recorded for output 0
        (``_output_shapes``, where both know a dim)."""
        recorded = nd.attr("_output_shapes", "shapes", []) if node.dtype is not None \
            and nd.op != "VarHandleOp" else []  # a resource variable's output is its handle
        mine = None if node.shape is None else tuple(node.shape)
        if recorded and recorded[0] is not None and mine is not None and (
                len(recorded[0]) != len(mine) or any(
                    a is not None and b is not None and a != b
                    for a, b in zip(recorded[0], mine))):
            raise ValueError(f"TensorFlow recorded the shape {list(recorded[0])}, graphc "
                             f"computed {node.type_str()}")
        return node

    def static(self, i):
        """Input ``i``'s constant value (a TensorFlow Const), else its graphc node."""
        src = self.current_data[i]
        return self.consts[src] if src in self.consts else self.built[src]

    def build(self, nd):
        self.current_data = [s for s, _, ctrl in nd.inputs if not ctrl]
        data = [self.built[s] for s in self.current_data]
        ctrl = [self.built[s] for s, _, c in nd.inputs if c]
        scope, _, base = nd.name.rpartition("/")
        g = self.graph
        if nd.op == "NoOp":
            from ..framework.graph import group
            with g.name_scope(scope):
                return self.named(group(*ctrl, name=base), nd)
        with g.control_dependencies(ctrl), g.name_scope(scope):
            if nd.op in VARIABLES:
                return self.variable(nd, base)
            if nd.op == "Const":
                from ..framework.graph import constant
                value = nd.attr("value", "tensor")
                if value.dtype != nd.attr("dtype", "type"):
                    raise ValueError(f"the value is {value.dtype}, the attribute dtype "
                                     f"{nd.attr('dtype', 'type')}")
                self.consts[nd.name] = value
                return self.named(constant(value, name=base), nd)
            if nd.op == "Placeholder":
                from ..framework.graph import placeholder
                shape = nd.attr("shape", "shape", ()) if nd.has("shape") else None
                return self.named(placeholder(nd.attr("dtype", "type"), shape, name=base), nd)
            if nd.op == "PlaceholderWithDefault":
                from ..framework.graph import placeholder_with_default
                if nd.inputs[0][0] not in self.consts:
                    raise Unsupported("its default is not a constant")
                return self.named(placeholder_with_default(
                    self.consts[nd.inputs[0][0]], nd.attr("shape", "shape"), name=base), nd)
        first = len(g.nodes)
        with g.control_dependencies(ctrl), g.name_scope("_tf_import/" + nd.name):
            out = OPS[nd.op](self, nd, data)
        if out.id < first:  # the function returned an input (a no-op cast, reshape...)
            from ..ops.math_ops import identity
            with g.name_scope("_tf_import/" + nd.name):
                out = identity(out)
        return self.rename(out, nd)

    def variable(self, nd, base):
        from ..framework.graph import Variable
        want = nd.attr("dtype", "type")
        value = self.built.get(self.value_of.get(nd.name))
        if value is None:  # a random initializer graphc does not have: zeros until restored
            shape = nd.attr("shape", "shape")
            if shape is None or None in shape:
                raise Unsupported(f"a variable of shape {shape} whose initial value was not "
                                  "imported")
            from ..ops.math_ops import zeros
            with self.graph.name_scope("_tf_import/" + nd.name):
                value = zeros(list(shape), dtype=want)
            self.zero_init.append(nd.name)
        if value.dtype.np != want:
            raise ValueError(f"initial value '{value.node_name}' is {value.type_str()}, the "
                             f"variable {want}")
        vdef = self.var_defs.get(nd.name)
        trainable = (nd.name in self.trainable if self.trainable is not None
                     else vdef is None or vdef["trainable"])
        var = self.named(Variable(value, trainable=trainable, name=base), nd)
        return var

    def named(self, node, nd):
        if node.node_name != self.scope + nd.name:
            raise ValueError(f"the name is taken in this graph (built as '{node.node_name}'); "
                             "pass import_scope=")
        return node

    def rename(self, node, nd):
        """Give ``node``, built under the private scope ``_tf_import/<name>``, its TF name."""
        name = self.scope + nd.name
        try:
            self.graph.rename(node, name)
        except GraphError:
            raise ValueError(f"the name '{name}' is taken in this graph; pass import_scope=") \
                from None
        if nd.op in ("Assign", "AssignVariableOp"):
            var = nd.inputs[0][0]
            if self.init_of.get(var) == nd.name:
                self.built[var].meta["initializer"] = node
                self.graph.initial_arrays.pop(self.built[var], None)  # (now the imported one)
        return node

    # -- what was not built -----------------------------------------------------------------
    def record_skipped(self):
        if not self.skipped:
            return
        file = os.path.basename(self.path)
        for name, (op, reason) in self.skipped.items():
            self.graph.not_built[self.scope + name] = (
                f"of op '{op}' was not imported from {file}: {ADVICE}",
                [f"not imported because {reason}", ADVICE])
        ops = collections.Counter(op for op, r in self.skipped.values()
                                  if r.startswith("graphc does not have"))
        warnings.warn(
            f"import_meta_graph: {len(self.skipped)} nodes of '{self.path}' were not imported: "
            f"ops graphc does not have ({', '.join(f'{op} x{n}' for op, n in sorted(ops.items()))})"
            f" and the nodes that read them; {ADVICE}", stacklevel=5)


__all__ = ["import_tf_meta_graph", "is_tf_meta_graph"]
