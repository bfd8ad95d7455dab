"""The op registry: every op is declared once, with ``defop``.

A declaration holds the op's shape/dtype rule, its VJP (written with graph ops, so gradients are
differentiable again), and either a scalar formula (elementwise ops: both backends render it and
fusion composes it) or a reference NumPy implementation ``impl`` (everything else: constant
folding evaluates it and the NumPy backend emits it; other backends implement the kernel named
by the op). Effects are data: ``impure`` ops are never merged, folded or recomputed.

Failure is data too: ``may_fail`` ops can stop a step at run time (an index out of range, a
host call raising, a NaN found by ``check_numerics``). The scheduler runs them before any
write into a variable's buffer, so that a failed step leaves every variable as it was
(``ir.rollback``). ``index_check(node) -> (input position, what, bound)`` declares an index
input that both backends check against ``[0, bound)`` (``bound``: an int, or a tuple of one
bound per entry of the input's last axis); it implies ``may_fail``.
"""
import numpy as np

from graphc.errors import DTypeError, GraphError, InvalidArgumentError, ShapeError

from .. import dtypes as D
from .. import examples
from .. import scalar as S
from ..graph import Node, get_default_graph
from ..shapes import RuleError, broadcast_shapes
from ..static import infer_node, split_static_args

REGISTRY = {}


class _Zero:
    """VJP marker: the op is not differentiable; its inputs receive no gradient (zero)."""

    def __repr__(self):
        return "ZERO"


ZERO = _Zero()


class OpDef:
    """The declaration of one op (see module docstring). Build with ``defop``.

    Besides the rules, a declaration carries the op's *properties*: what passes and backends
    may assume of every node of the op. Each has one meaning, and is read from here only
    (``node.opdef.view``); adding an op with a property touches its declaration alone.

    Attributes:
        leaf: no inputs; the value comes from outside the computation: fed (placeholder),
            stored across steps (variable) or written into the program (const). Leaves own
            no arena buffer and no kernel computes them.
        compile_time: the value is known when the signature compiles (const, and the shape
            queries dim_size and shape_of): backends bake it in as a constant.
        view: the output is input 0's bytes read with the output's shape (same dtype and
            element count): reshape, expand_dims, squeeze, reshape_like, after (input 0 once
            its other inputs ran) and check_numerics (input 0 after its check). Every stage
            stores it there: the memory plan gives it no buffer, no kernel writes it, in-place
            analysis and rollback follow it to the bytes it shares.
        identity: the output is input 0 unchanged and nothing else happens (identity,
            stop_gradient, which only stops gradients). Simplification replaces the node by
            its input, so an optimized program never plans one; where no pass ran (the
            unplanned LLVM layout) a backend may store it in input 0's bytes like a view, and
            rollback follows it as one. It is not a ``view`` because the NumPy reference and
            the memory plan of an unsimplified pipeline compute it as the elementwise op it is.
        orders: inputs from this position on only order the step (control dependencies):
            their values are never read (``after``: 1).
        rearranges: the output's elements are input 0's, moved or repeated, never computed
            (a splat input gives a splat output: constant folding evaluates one element).
        shape_only: input positions read for their static shape only, never their values
            (not a use for liveness; ``reshape_like``'s ``like``: (1,)).
        destroys: input positions the op's non-elementwise kernel may overwrite in place,
            read before written (PyTensor's ``destroy_map``; elementwise ops and fused groups
            may overwrite any same-typed input and need not list them). The in-place pass
            uses the position only when that buffer is dead afterwards.
        destroys_from: every input from this position on may be overwritten so too (a
            ``fused_matmul``'s epilogue operands, read at each output element's own index).
        product: (position of A, position of B) when the op computes the product
            ``op(A) op(B)`` of a matmul (attributes ``transpose_a``, ``transpose_b``), as
            matmul, ``subtract_matmul`` and ``fused_matmul`` do: what GEMM planning reads.
        random: draws from the step's RNG (its impl takes the Generator first); implies
            ``impure``.
        multi_output: the node has no value of its own but several results, each read by a
            node of a ``projects`` op (``loop``); its VJP takes {result node: cotangent}.
        projects: the node is one result of the ``multi_output`` node it reads
            (``loop_output``); the autodiff driver hands its cotangent to that node.
        linear: how the op is linear, which scale folding relies on: "first" (in input 0,
            the others fixed: op(c x, y) = c op(x, y)), "each" (in any one input, the others
            fixed: multiply, matmul), "all" (in all inputs together: add, subtract); None:
            not linear (or not declared so).
        reduce: the reduction kind of a reduce op over its ``axis`` ("sum", "mean", "max",
            "min"), None otherwise: fusion turns it into a fused group's epilogue.
        domain: for unary elementwise ops, the interval (lo, hi) where the op is smooth:
            the op table samples its input there (kinks and poles live in the edge-case
            table). Binary ops leave it None: their rows give each input's interval.
        static_args: {attr name: kind} of the attributes that may be given as a tensor
            known when the step is specialized (``ir.static``: kind "ints", "int" or
            "number"): a shape, a depth, a bound. Known when the graph is built, the tensor's
            value is stored as the attribute; else the tensor is a trailing input and the
            attribute a ``Pending`` until ``specialize`` resolves it. The rule, VJP and impl
            of such an op see value inputs first; the VJP takes ``*static`` after them.
        rule: the shape/dtype rule as declared; ``infer`` wraps it for pending attributes
            and unknown-rank inputs (``ir.static.infer_node``).
        loss_grad, loss_with_grad: for a loss whose gradient op recomputes what it does
            (the softmax cross-entropies): the gradient op's name, and the op computing both
            from one pass over the inputs, into which the fuse pass rewrites a loss and a
            gradient of the same inputs (``ir.passes.fuse_xent``); None otherwise.
        keeps_loss: a ``loss_with_grad`` op: its value is the gradient, and its kernel keeps
            the loss beside it for the ``kept_loss`` node reading it.
        examples: how the op carries an axis of independent examples, for splitting a step
            over parts of its batch (``ir.examples``: f(node) -> [(input position, input
            axis, output axis or reduction kind)]); elementwise ops and reductions have a
            generic rule (``example_rule``); None: the op carries none.
        example_attrs: f(node, output axis, size) -> the node's attributes when its output's
            example axis has ``size`` elements (ops whose attributes name output dims:
            reshape's target shape); None: the attributes do not depend on it.
        macs: f(node) -> the multiply-adds ``node`` does (GEMMs and convolutions: the work
            the split pass weighs and the benchmarks' floor counts); None: the op does none.
        tf_name: the name TF1 gives the node its tf.* function builds (``reduce_mean``:
            ``Mean``; ``add``: ``add``, as ``x + y`` names it), the default name of a node of
            this op built without one (``sess.run("Mean:0")``); default: the op name.
    """

    def __init__(self, name, infer, vjp, scalar=None, impl=None, impure=False,
                 commutative=False, domain=None, arity=None, doc="", family="",
                 broadcast_core=None, may_fail=False, index_check=None, leaf=False,
                 compile_time=False, view=False, identity=False, orders=None,
                 rearranges=False, shape_only=(), destroys=(), random=False, reduce=None,
                 linear=None, tf_name=None, static_args=None, multi_output=False,
                 projects=False, loss_grad=None, loss_with_grad=None, keeps_loss=False,
                 examples=None, example_attrs=None, macs=None, destroys_from=None,
                 product=None):
        self.name, self.rule, self.vjp, self.scalar, self.impl = name, infer, vjp, scalar, impl
        self.static_args = dict(static_args or {})
        self.tf_name = tf_name or name
        self.impure = bool(impure or random)
        self.commutative, self.domain, self.arity = commutative, domain, arity
        self.doc, self.family = doc, family
        self.index_check = index_check
        self.may_fail = bool(may_fail or index_check is not None)
        self.leaf, self.compile_time, self.view, self.identity = leaf, compile_time, view, identity
        self.orders, self.rearranges, self.random = orders, rearranges, random
        self.reduce, self.linear = reduce, linear
        self.multi_output, self.projects = multi_output, projects
        self.shape_only, self.destroys = tuple(shape_only), tuple(destroys)
        self.destroys_from, self.product = destroys_from, product
        self.loss_grad, self.loss_with_grad, self.keeps_loss = \
            loss_grad, loss_with_grad, keeps_loss
        self.examples, self.example_attrs, self.macs = examples, example_attrs, macs
        # Inputs broadcast against each other on all but their last ``broadcast_core`` axes
        # (0 for elementwise ops, 2 for matmul); None: they never do. Autodiff reads it.
        self.broadcast_core = 0 if scalar is not None and broadcast_core is None \
            else broadcast_core

    def infer(self, nodes, **attrs):
        """(dtype, shape) of a node of this op on ``nodes``; raises RuleError."""
        return infer_node(self, nodes, attrs)

    @property
    def external(self):
        """A leaf whose value the step does not know: fed (placeholder) or a variable."""
        return self.leaf and not self.compile_time

    @property
    def aliases_input(self):
        """Whether some layout stores the output in input 0's bytes (``view`` or
        ``identity``): what must be followed to find which bytes a value lives in."""
        return self.view or self.identity

    def multiply_adds(self, node):
        """The multiply-adds ``node`` does (``macs``), or None for an op that does none."""
        return None if self.macs is None else self.macs(node)

    def example_rule(self, node):
        """How ``node`` carries an axis of examples (``ir.examples``), or None."""
        if self.examples is not None:
            return self.examples(node)
        if self.scalar is not None:
            return examples.elementwise(node)
        if self.reduce is not None and self.family == "reduce":
            return examples.reduction(node)
        return None

    @property
    def is_elementwise(self):
        return self.scalar is not None

    @property
    def differentiable(self):
        return self.vjp is not ZERO

    def scalar_body(self, input_dtypes, attrs):
        """The op's formula as an Expr over ``arg(i)`` of the given input dtypes."""
        args = [S.arg(i, d) for i, d in enumerate(input_dtypes)]
        return self.scalar(*args, **attrs)

    def evaluate(self, inputs, attrs):
        """Reference semantics on NumPy arrays (constant folding, the op-table tests)."""
        if self.scalar is not None:
            body = self.scalar_body([D.as_dtype(np.asarray(x).dtype) for x in inputs], attrs)
            out = S.evaluate(body, inputs)
            shape = np.broadcast_shapes(*(np.shape(x) for x in inputs)) if inputs else ()
            return np.broadcast_to(out, shape).copy()
        return self.impl(*inputs, **attrs)

    def __repr__(self):
        return f"<op {self.name}>"


def defop(name, infer, vjp, **kw):
    """Declare an op and register it under ``name``; returns the OpDef."""
    if name in REGISTRY:
        raise ValueError(f"op {name!r} declared twice")
    op = OpDef(name, infer, vjp, **kw)
    REGISTRY[name] = op
    return op


def get(name):
    return REGISTRY[name]


def index_check_of(node):
    """(input position, what, bound, label) of ``node``'s run-time index check, or None.

    ``label`` names the node in the error (``gather 'emb'``); a ``check_index`` node speaks
    for the op the user called (its ``of`` attribute, ``gather_nd 'GatherNd'``).
    """
    rule = node.opdef.index_check
    if rule is None:
        return None
    i, what, bound = rule(node)
    bound = tuple(int(b) for b in bound) if isinstance(bound, tuple) else int(bound)
    return i, what, bound, node.attrs.get("of") or node.describe()


# -- building nodes -------------------------------------------------------------------------

def _graph_of(inputs):
    for x in inputs:
        if isinstance(x, Node):
            return x.graph
    return get_default_graph()


def default_array(value, dtype=None):
    """``value`` as a new array of ``dtype``, or with TF's defaults when None: Python floats
    (and lists of them) give float32 and Python ints int32; NumPy values keep their dtype."""
    arr = np.array(value, dtype=None if dtype is None else D.as_dtype(dtype).np)
    if dtype is None and not isinstance(value, (np.ndarray, np.generic)):
        if arr.dtype == np.float64:
            arr = arr.astype(np.float32)
        elif arr.dtype == np.int64:
            arr = arr.astype(np.int32)
    return arr


def const_node(value, dtype=None, graph=None, name=None):
    """A ``const`` node holding ``value`` (converted to ``dtype``), read-only."""
    arr = default_array(value, dtype)
    dt = D.as_dtype(arr.dtype)
    arr.setflags(write=False)
    g = graph or get_default_graph()
    return g.add_node(get("const"), [], {"value": arr}, dt, arr.shape, name)


def convert(value, like=None, graph=None):
    """A Node for ``value``: Nodes pass through; numbers and arrays become constants.

    Python numbers take the dtype of ``like`` (``x * 2.0`` stays float32), as TF1 does; so do
    NumPy arrays of a compatible kind (TF1's ``convert_to_tensor(y, dtype=x.dtype)``: a float64
    or int array with a float32 tensor is float32; a float array with an int tensor is not
    converted, and the op's dtype rule reports it).
    """
    if isinstance(value, Node):
        return value
    if isinstance(value, (list, tuple)) and any(isinstance(v, Node) for v in value):
        return apply("stack", list(value), {"axis": 0})
    if like is not None and isinstance(value, np.ndarray) and like.dtype is not None and (
            (like.dtype.is_floating and value.dtype.kind in "fiu")
            or (like.dtype.is_integer and value.dtype.kind in "iu")):
        return const_node(value, like.dtype, graph or like.graph)
    if like is not None and not isinstance(value, np.ndarray):
        arr = np.asarray(value)
        if like.dtype.is_integer and arr.dtype.kind == "f":
            if not np.all(arr == np.floor(arr)):
                from .. import source
                raise DTypeError(
                    f"cannot use the float value {value!r} with integer tensor "
                    f"'{like.node_name}' ({like.dtype.name})", loc=source.user_location(),
                    hint="cast one of them with gc.cast")
        return const_node(arr, like.dtype, graph or like.graph)
    return const_node(value, None, graph)


def apply(op, inputs, attrs=None, name=None):
    """Create a node of ``op`` on ``inputs``, running its shape/dtype rule.

    Raises:
        ShapeError, DTypeError: from the rule, naming the op, the would-be node and the line.
    """
    opdef = REGISTRY[op] if isinstance(op, str) else op
    graph = _graph_of(inputs)
    static = opdef.static_args
    if attrs:
        attrs = {k: _static_arg(v, graph) if k in static else _freeze(v)
                 for k, v in attrs.items()}
    else:
        attrs = {}
    for x in inputs:  # (most nodes: inputs that are all nodes already, nothing to convert)
        if not isinstance(x, Node):
            like = next((x for x in inputs if isinstance(x, Node)), None)
            nodes = [convert(x, like, graph) for x in inputs]
            break
    else:
        nodes = list(inputs)
    try:
        if static:
            nodes += split_static_args(opdef, attrs)
        dtype, shape = infer_node(opdef, nodes, attrs)  # (``opdef.infer``, one call less)
    except RuleError as e:
        from .. import source
        cls = {"dtype": DTypeError, "argument": InvalidArgumentError,
               "graph": GraphError}.get(e.kind, ShapeError)
        loc = graph._grad_ctx or source.user_location()
        label = f"{opdef.name} '{graph.node_name(opdef, name)}'"
        raise cls(f"{label}: {e.message}", e.details, loc, e.hint) from None
    if graph._control_deps and graph._grad_ctx is None and nodes and opdef.name != "after":
        nodes = _with_control_deps(graph, opdef, nodes)
    return graph.add_node(opdef, nodes, attrs, dtype, shape, name)


def _with_control_deps(graph, opdef, nodes):
    """Route one value input through ``after(x, *deps)`` (a view of x that runs after deps),
    so that computing the node runs the control dependencies first. An assign's target stays
    the variable: its value input is routed instead.

    A variable read under a dependency on an assign to it reads the assigned value, as in
    TF1 (``with control_dependencies([v.assign_add(1)]): y = identity(v)`` sees the new v):
    graphc applies assigns when the step ends, so the read takes the assign's value instead."""
    i = 1 if opdef.name == "assign" else 0
    assigned = _assigned_by(graph._control_deps)
    if assigned:
        nodes = [n if k == 0 and opdef.name == "assign" else assigned.get(id(n), n)
                 for k, n in enumerate(nodes)]
    x = nodes[i]
    deps = [d for d in graph._control_deps if d is not x]
    if not deps or x.dtype is None:
        return nodes
    after = graph.add_node(REGISTRY["after"], [x] + deps, {}, x.dtype, x.shape,
                           "control_dependency")
    return nodes[:i] + [after] + nodes[i + 1:]


def _assigned_by(deps):
    """``{id(variable): the last assign to it}`` among ``deps`` and the groups in them."""
    out, stack = {}, list(reversed(deps))
    while stack:
        d = stack.pop()
        if d.op_name == "assign" and d.dtype is not None:
            out[id(d.inputs[0])] = d
        elif d.op_name == "group":
            stack.extend(reversed(d.inputs))
    return out


def _static_arg(value, graph):
    """A static argument given as a tensor, or as a list holding tensors (stacked), is a
    Node (``ir.static.split_static_args`` resolves it); any other value is frozen."""
    if isinstance(value, (list, tuple)) and any(isinstance(v, Node) for v in value):
        like = next(v for v in value if isinstance(v, Node))
        return apply("stack", [convert(v, like, graph) for v in value], {"axis": 0})
    return value if isinstance(value, Node) else _freeze(value)


_PLAIN = frozenset((int, float, bool, str, type(None)))  # attribute values kept as they are


def _freeze(value):
    """Attributes are hashable: lists become tuples (CSE keys and dumps rely on it)."""
    if type(value) in _PLAIN:
        return value
    if type(value) is tuple and all(type(v) in _PLAIN for v in value):
        return value  # (a tuple of plain values is frozen already: axes, a shape)
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, tuple):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, np.generic):
        return value.item()
    return value


class _Builders:
    """``F.exp(x)``, ``F.reduce_sum(x, axis=0)``: build any registered op by name.

    VJPs use it so that op families can refer to each other without import cycles.
    """

    def __getattr__(self, op):
        if op not in REGISTRY:
            raise AttributeError(f"no op {op!r}")

        def build(*inputs, name=None, **attrs):
            return apply(op, list(inputs), attrs, name)
        setattr(self, op, build)  # (made once: the next ``F.op`` is an attribute)
        return build


F = _Builders()


# -- shared shape/dtype rules ---------------------------------------------------------------

def require(cond, message, details=(), hint=None, kind="shape"):
    if not cond:
        raise RuleError(message, details, hint, kind)


def same_dtype(nodes, allowed=None, what="operands"):
    """All inputs share one dtype (in ``allowed`` kinds when given); TF never promotes."""
    d0 = nodes[0].dtype
    for n in nodes[1:]:
        if n.dtype != d0:  # (the message only when it fails: every op's rule calls this)
            raise RuleError(f"{what} have different dtypes: {d0.name} vs {n.dtype.name}",
                            [f"'{m.node_name}': {m.type_str()}" for m in nodes],
                            "cast one of them with gc.cast", kind="dtype")
    if allowed is not None and d0.kind not in allowed:
        raise RuleError(f"expected a {_kinds(allowed)} tensor, found {d0.name}",
                        [f"'{nodes[0].node_name}': {nodes[0].type_str()}"], kind="dtype")
    return d0


def _kinds(kinds):
    return " or ".join({"f": "floating", "i": "integer", "b": "bool"}[k] for k in kinds)


def broadcast_all(nodes):
    """The NumPy broadcast of the inputs' shapes; the error names the two operands."""
    if nodes:  # inputs of one shape (most elementwise nodes): that shape
        first = nodes[0].shape
        if first is not None:
            for n in nodes:
                if n.shape != first:
                    break
            else:
                return tuple(first)
    shape = ()
    for i, n in enumerate(nodes):
        try:
            shape = broadcast_shapes(shape, n.shape)
        except RuleError as e:
            other = next((m for m in nodes[:i] if _clashes(m.shape, n.shape)), nodes[0])
            raise RuleError(f"cannot broadcast {other.type_str()} with {n.type_str()}",
                            e.details + (f"operands: '{other.node_name}' and '{n.node_name}'",),
                            e.hint) from None
    return shape


def _clashes(a, b):
    try:
        broadcast_shapes(a, b)
    except RuleError:
        return True
    return False
