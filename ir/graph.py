"""Graph and Node: the IR's data structure.

A Graph owns its nodes in creation order; since a node's inputs exist before it, creation order
is always a topological order (the verifier checks it). A Node is one SSA value: an op, input
nodes, frozen attributes, a dtype, a static (possibly partial) shape, a scoped name and the
user's source location. Nodes double as the user's tensors: operators build new nodes.
"""
import contextlib
import threading

from graphc.errors import GraphError, UnknownNameError

from . import source
from .node_names import close_names, split_tensor_name
from .shapes import TensorShape, format_shape


# ``() -> module or None``, asked by each new Graph: the compile cache's running hash of its
# nodes (``graphc.client.node_digest`` while the cache is on), set by ``graphc.framework.graph``
# (a layer above)
digests = None


class Node:
    """One SSA value of a Graph: what TF1 calls a Tensor (``op`` gives its ``Operation``).

    Attributes:
        id: position in the graph's creation order.
        opdef: the op declaration (``ir.ops.registry.OpDef``), set once; ``op_name`` is its
            name (a plain attribute: passes read it for every node they visit).
        inputs: input nodes (a list; passes rewrite it on their private copies only).
        attrs: dict of hashable attribute values (frozen by convention).
        dtype: ``ir.dtypes.DType``, or None for ops that produce no value (``group``).
        shape: tuple of ints, with None for dims unknown until the step is specialized;
            None for an unknown rank (see ``ir.shapes``).
        node_name: scoped, unique name (``dense1/MatMul``); TF1's ``name`` adds ``:0``.
        loc: ``ir.source.Location`` of the user's line; gradient nodes keep the forward line.
        is_grad: True for nodes made by autodiff.
        key_desc: the compile cache's description of the node's op, dtype, shape and
            attributes, kept by the cache on first use (those never change once built).
        key_tainted: True where the compile cache's running hash of the graph cannot stand
            for a step that needs the node (``graphc.client.node_digest``).
    """

    __slots__ = ("graph", "id", "opdef", "op_name", "inputs", "attrs", "dtype", "shape",
                 "node_name", "loc", "is_grad", "meta", "key_desc", "key_tainted",
                 "__weakref__")
    __array_priority__ = 100  # so that ndarray + node defers to Node.__radd__

    def __init__(self, graph, opdef, inputs, attrs, dtype, shape, name, loc, is_grad=False):
        self.graph = graph
        self.id = -1
        self.opdef, self.op_name = opdef, opdef.name
        self.inputs = list(inputs)
        self.attrs = attrs
        self.dtype = dtype
        self.shape = shape
        self.node_name = name
        self.loc = loc
        self.is_grad = is_grad
        self.meta = {}  # pass annotations (buffer, in-place decision, fused body...)
        self.key_desc = None
        self.key_tainted = False

    # -- description ----------------------------------------------------------------------
    @property
    def name(self):
        """TF1's ``tensor.name``: ``"Mean:0"`` (the node name and its one output); an op
        without a value (``group``, ``no_op``) is named without an index, as TF1's ops are."""
        return self.node_name if self.dtype is None else self.node_name + ":0"

    @property
    def op(self):
        """TF1's ``tensor.op``: the ``Operation`` that computes this tensor (``op.name`` is
        ``"Mean"``)."""
        return Operation(self)

    @property
    def type(self):
        """TF1's ``op.type``: the TF1 name of this node's op (``MatMul``), else the op name."""
        return self.opdef.tf_name

    @property
    def outputs(self):
        """TF1's ``op.outputs``: the node itself, or nothing for an op without a value."""
        return [] if self.dtype is None else [self]

    value_index = 0  # TF1's ``tensor.value_index``: every node has one output

    @property
    def rank(self):
        """The number of dims. Raises ShapeError for an unknown rank (``shape`` None)."""
        if self.shape is None:
            from graphc.errors import ShapeError
            raise ShapeError(f"{self.describe()} has an unknown rank (shape {self.type_str()}) "
                             "where its rank must be known when the graph is built",
                             loc=source.user_location(),
                             hint="give the placeholder it comes from a shape (None for "
                                  "dims that vary), or gc.reshape it to a known rank")
        return len(self.shape)

    @property
    def size(self):
        n = 1
        for d in self.shape if self.rank else ():
            n *= d
        return n

    def get_shape(self):
        return TensorShape(self.shape)

    def type_str(self):
        if self.dtype is None:
            return "()"
        return f"{self.dtype.short}{format_shape(self.shape)}"

    def describe(self):
        """``add 'dense1/add'``: how error messages name a node."""
        return f"{self.op_name} '{self.node_name}'"

    def __repr__(self):
        return f"<gc.Tensor '{self.name}' {self.op_name} {self.type_str()}>"

    __hash__ = object.__hash__  # identity, at C speed (== builds a node, see operators)

    def __bool__(self):
        raise TypeError(f"the truth value of tensor '{self.node_name}' is not known while the "
                        "graph is built; use gc.where or compare values after Session.run")

    def __iter__(self):
        raise TypeError(f"tensor '{self.node_name}' is not iterable; use gc.unstack")

    # Operators (+, *, @, [], ==...) are attached by ir.ops.operators to keep this module free
    # of op knowledge.

    def eval(self, feed_dict=None, session=None):
        """Evaluate in ``session`` or the default session (TF1's ``Tensor.eval``)."""
        return _session_for(self, session).run(self, feed_dict=feed_dict)

    def run(self, feed_dict=None, session=None):
        """Run this op in ``session`` or the default session (TF1's ``Operation.run``)."""
        _session_for(self, session).run(self, feed_dict=feed_dict)


def _session_for(node, session):
    session = session or get_default_session()
    if session is None:
        raise GraphError(f"{node.describe()}: no session to evaluate in",
                         hint="pass session=..., or call inside `with gc.Session() as sess:`")
    return session


class Operation:
    """TF1's Operation: what ``tensor.op``, ``get_operation_by_name`` and ``get_operations``
    return. A graphc node is one op with at most one output, so an Operation is a view of its
    node: ``name`` is the node name (``"Mean"``; the tensor is ``"Mean:0"``), ``outputs`` the
    node as a tensor. Fetching an Operation runs it and gives None, as in TF1; it is accepted
    wherever TF1 takes an op (``control_dependencies``, ``group``, ``Session.run``).
    """

    __slots__ = ("node",)

    def __init__(self, node):
        self.node = node

    name = property(lambda self: self.node.node_name, doc="the node name (``scope/Mean``)")
    type = property(lambda self: self.node.type, doc="TF1's op type (``MatMul``)")
    graph = property(lambda self: self.node.graph)
    inputs = property(lambda self: list(self.node.inputs), doc="the input tensors")
    outputs = property(lambda self: self.node.outputs, doc="``[tensor]``, or ``[]``")
    device = ""
    control_inputs = ()

    def values(self):
        return tuple(self.outputs)

    def get_attr(self, name):
        """The value of attribute ``name`` (graphc's attribute names, ``transpose_a``...)."""
        try:
            return self.node.attrs[name]
        except KeyError:
            raise ValueError(f"{self.node.describe()} has no attribute {name!r}; it has "
                             f"{sorted(self.node.attrs) or 'none'}") from None

    def run(self, feed_dict=None, session=None):
        """Run this op in ``session`` or the default session (TF1's ``Operation.run``)."""
        _session_for(self.node, session).run(self, feed_dict=feed_dict)

    def __eq__(self, other):
        return isinstance(other, Operation) and other.node is self.node

    def __hash__(self):
        return hash(self.node)

    def __repr__(self):
        return f"<gc.Operation '{self.name}' type={self.type}>"


def as_node(x):
    """``x``, or the node of an Operation (``tensor.op``): where TF1 takes ops or tensors."""
    return x.node if type(x) is Operation else x


class Graph:
    """A dataflow graph. Use ``with g.as_default():`` to build into it (TF1 semantics)."""

    def __init__(self):
        self.nodes = []
        self._names = {}  # scoped name -> times taken (TF1's names_in_use)
        self._by_name = {}  # node name -> node
        self._scope = []
        self._prefix_of, self._prefix = None, ""  # _scope joined, "a/b/" (unique_name's memo)
        self.collections = {"variables": [], "trainable_variables": []}
        self.seed = None
        self._grad_ctx = None  # (forward loc) while autodiff builds nodes
        self._control_deps = []  # active gc.control_dependencies, innermost last
        # name -> (why it is not in this graph, details): an importer's nodes it did not build
        self.not_built = {}
        self.key_rows = {}  # the compile cache's memo of steps' rows (graphc.client.graph_key)
        # the compile cache's running hash of the nodes built (``graphc.client.node_digest``)
        # while the cache is on: each node is added when the next one is built (or a key is
        # read), so that a node renamed right after it is built is hashed as renamed;
        # ``key_stale``: a node hashed already changed since
        hashing = digests() if digests is not None else None
        self.digest_node = None if hashing is None else hashing.digest_new
        self.key_hash = None if hashing is None else hashing.new_hash()
        self.key_pending, self.key_stale = None, False
        self.needed_memo = {}  # ir.program.user_needed_nodes: a step's needed nodes
        # variable -> (its initial value's constant, that constant's array), for variables
        # made from an array (``graphc.framework.graph.Variable``): what ``gc.compile`` and
        # a session's initializer copy without reading the nodes again (a deep model's 1,110
        # in a fresh process: 1.4 ms, mostly cache misses). Whoever gives a variable another
        # initial value drops its entry.
        self.initial_arrays = {}

    # -- building ---------------------------------------------------------------------------
    def add_node(self, opdef, inputs, attrs, dtype, shape, name=None, loc=None):
        for x in inputs:
            if x.graph is not self:
                raise GraphError(
                    f"{opdef.name}: input '{x.node_name}' belongs to another graph",
                    loc=loc or source.user_location(),
                    hint="build all tensors of one step inside the same `with g.as_default()`")
        grad_loc = self._grad_ctx
        is_grad = grad_loc is not None
        if loc is None:
            loc = grad_loc if is_grad else source.user_location()
        if shape is not None and type(shape) is not TensorShape:
            # TensorShape(shape), without its unknown-rank test (a TensorShape is immutable:
            # nodes may share one)
            shape = tuple.__new__(TensorShape, shape)
        node = Node(self, opdef, inputs, attrs, dtype, shape,
                    self.unique_name(name or opdef.tf_name), loc, is_grad)
        nodes = self.nodes
        node.id = len(nodes)
        nodes.append(node)
        self._by_name[node.node_name] = node
        if self.digest_node is not None:
            if self.key_pending is not None:
                self.digest_node(self, self.key_pending)
            self.key_pending = node
        return node

    def key_flush(self):
        """Add the last node built to the running hash (``key_hash``), before it is read."""
        pending, self.key_pending = self.key_pending, None  # (taken once, then hashed)
        if pending is not None:
            self.digest_node(self, pending)

    def node_changed(self, node):
        """Say that ``node``'s name, line or ``is_grad`` changed after it was built: fine for
        the last node built (not hashed yet), else the running hash no longer says what the
        graph holds (``key_stale``: the compile cache reads the graph instead)."""
        if self.digest_node is not None and node is not self.key_pending:
            self.key_stale = True

    def node_name(self, opdef, name=None):
        """Take the unique scoped name of a new node of ``opdef``: ``name``, else TF1's name
        for the op, its ``tf_name`` (``MatMul``, ``Mean``; see ``ir.node_names``)."""
        return self.unique_name(name or opdef.tf_name)

    def unique_name(self, base, mark_as_used=True):
        """``base`` in the current scope, made unique as TF1 makes it: the second ``add`` is
        ``add_1``, and a suffixed name already taken (a user's ``add_1``) is skipped. Unlike
        TF1, case counts: ``Add`` and ``add`` are two names (TF1 folds case for file systems
        that do; here it would only rename summaries such as ``"mean"`` after a ``Mean``).

        Example:
            >>> g.unique_name("add"), g.unique_name("add"), g.unique_name("Add")
            ('add', 'add_1', 'Add')
        """
        scope = self._scope
        if scope:
            if scope is not self._prefix_of:  # (scopes are replaced, never mutated)
                self._prefix_of, self._prefix = scope, "/".join(scope) + "/"
            full = self._prefix + base
        else:
            full = base
        names = self._names
        i = names.get(full, 0)
        if mark_as_used:
            names[full] = i + 1
        if i == 0:
            return full
        name = f"{full}_{i}"  # (``full`` itself is taken: i > 0)
        while name in names:
            i += 1
            name = f"{full}_{i}"
        if mark_as_used:
            names[name] = 1
        return name

    def rename(self, node, name):
        """Give ``node`` the name ``name`` as is (no scope, no suffix): for importers, which
        build a node under a private scope and then give it the name its file gives it.

        Raises:
            GraphError: ``name`` is taken.
        """
        if name in self._by_name or name in self._names:
            raise GraphError(f"cannot rename {node.describe()} to {name!r}: the name is taken "
                             "in this graph")
        del self._by_name[node.node_name]
        node.node_name = name
        self._by_name[name] = node
        self._names[name] = 1
        self.node_changed(node)
        return node

    def next_name(self, base):
        """The name ``unique_name(base)`` would give now, without taking it."""
        return self.unique_name(base, mark_as_used=False)

    @contextlib.contextmanager
    def name_scope(self, name):
        parts = [p for p in name.rstrip("/").split("/") if p] if name else []
        saved = self._scope
        self._scope = saved + parts
        try:
            yield "/".join(self._scope) + "/"
        finally:
            self._scope = saved

    def gradient_context(self, forward_node):
        """Nodes built inside are gradient nodes: ``grad/`` names, the forward node's line.

        Example:
            >>> with g.gradient_context(y):   # autodiff, once per forward node
            ...     dy = F.ones_like(y)        # named grad/..., at y's line
        """
        return _GradientContext(self, forward_node)

    @contextlib.contextmanager
    def control_dependencies(self, deps):
        """Nodes built inside run after ``deps`` (TF1): ``None`` clears the outer ones."""
        saved = self._control_deps
        deps = None if deps is None else [as_node(d) for d in deps]
        self._control_deps = [] if deps is None else saved + [d for d in deps
                                                            if d not in saved]
        try:
            yield
        finally:
            self._control_deps = saved

    def add_to_collection(self, key, value):
        self.collections.setdefault(key, []).append(value)

    def get_collection(self, key):
        return list(self.collections.get(key, []))

    # -- TF1 context ------------------------------------------------------------------------
    @contextlib.contextmanager
    def as_default(self):
        _state.graphs.append(self)
        try:
            yield self
        finally:
            _state.graphs.pop()

    def get_operations(self):
        """TF1's ``get_operations``: every node as an ``Operation``, in creation order."""
        return [Operation(n) for n in self.nodes]

    def get_tensor_by_name(self, name):
        """The tensor named ``name`` (``"Mean:0"``; ``"Mean"``, its op's name, is accepted too,
        where TF1 raises).

        Raises:
            UnknownNameError: no node has that name (the message lists the closest names),
                or an output index other than 0 (graphc nodes have one output).
        Example:
            >>> loss = gc.reduce_mean(x)                    # named "Mean"
            >>> gc.get_default_graph().get_tensor_by_name("Mean:0") is loss
            True
        """
        return self._lookup(name, "tensor")

    def get_operation_by_name(self, name):
        """The ``Operation`` named ``name`` (``"train"``, ``"Mean"``).

        Raises:
            UnknownNameError: no node has that name (the message lists the closest names), or
                the name is a tensor's (``"Mean:0"``), as in TF1.
        """
        if isinstance(name, str) and ":" in name:
            raise UnknownNameError(
                f"get_operation_by_name: {name!r} names a tensor, not an operation",
                hint=f"get_tensor_by_name({name!r}), or get_operation_by_name("
                     f"{name.rpartition(':')[0]!r})")
        return Operation(self._lookup(name, "operation"))

    def as_graph_element(self, obj, allow_tensor=True, allow_operation=True):
        """TF1's ``as_graph_element``: a node of this graph, or the node a name names."""
        obj = as_node(obj)
        if isinstance(obj, Node):
            if obj.graph is not self:
                raise GraphError(f"{obj.describe()} belongs to another graph")
            return obj
        return self._lookup(obj, "tensor" if allow_tensor else "operation")

    def _lookup(self, name, kind):
        if not isinstance(name, str):
            raise TypeError(f"get_{kind}_by_name: a name is a str, found "
                            f"{type(name).__name__} {name!r}")
        try:
            base, index = split_tensor_name(name)
        except ValueError as e:
            raise UnknownNameError(f"get_{kind}_by_name: {e}") from None
        node = self._by_name.get(base)
        if node is not None and index not in (None, 0):
            raise UnknownNameError(
                f"get_{kind}_by_name: {node.describe()} has one output, '{base}:0'; "
                f"there is no {name!r}", loc=node.loc)
        if node is None and base in self.not_built:
            why, details = self.not_built[base]
            raise UnknownNameError(f"{kind} {name!r} {why}", details)
        if node is None:
            near = close_names(base, self._by_name)
            raise UnknownNameError(
                f"get_{kind}_by_name: no {kind} named {name!r} in this graph",
                [f"closest names: {', '.join(repr(m) for m in near)}"] if near else [],
                hint="a node built without name= takes its TF1 name (MatMul, add, Mean, "
                     "Placeholder...), with _1, _2... when taken; name it with name=...")
        return node

    def finalize(self):
        return self

    # ``str(graph)`` is the text IR: ``ir.printer`` sets ``Graph.__str__`` when imported (the
    # printer renders loop bodies through the passes, which build on this module).


class _GradientContext:
    """``Graph.gradient_context``: a plain class, as autodiff enters one per forward node."""

    __slots__ = ("graph", "node", "saved")

    def __init__(self, graph, node):
        self.graph, self.node = graph, node

    def __enter__(self):
        g, node = self.graph, self.node
        self.saved = g._grad_ctx, g._scope
        g._grad_ctx = node.loc
        g._scope = ["grad"] + node.node_name.split("/")[:-1]

    def __exit__(self, *exc):
        self.graph._grad_ctx, self.graph._scope = self.saved
        return False


class _State(threading.local):
    def __init__(self):
        self.graphs = []
        self.sessions = []
        self.default = None


_state = _State()


def get_default_graph():
    """The innermost ``as_default`` graph, else the global default graph."""
    if _state.graphs:
        return _state.graphs[-1]
    if _state.default is None:
        _state.default = Graph()
    return _state.default


def reset_default_graph():
    """Replace the global default graph by a new, empty one (TF1 semantics)."""
    if _state.graphs:
        raise GraphError("reset_default_graph: called inside a `with graph.as_default()` block")
    _state.default = Graph()


def push_default_session(sess):
    _state.sessions.append(sess)


def pop_default_session(sess):
    if _state.sessions and _state.sessions[-1] is sess:
        _state.sessions.pop()


def get_default_session():
    return _state.sessions[-1] if _state.sessions else None


def value_inputs(node):
    """The inputs whose values ``node`` reads (shape-only and ordering inputs left out), in
    order. Ops read every input unless their declaration says otherwise."""
    op = node.opdef
    skip = op.shape_only
    if node.op_name == "assign":
        skip = (0,)  # the target is written, not read
    elif op.orders is not None:
        return node.inputs[:op.orders]  # the rest only order the step (control dependencies)
    elif not skip:
        return node.inputs[:]  # (most ops: a copy, as below)
    return [x for i, x in enumerate(node.inputs) if i not in skip]
