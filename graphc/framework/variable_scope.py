"""TF1's variable sharing: ``variable_scope`` and ``get_variable`` with ``reuse``.

A variable scope is a name scope that also says whether ``get_variable`` creates a new
variable or returns the one already named ``scope/name`` (``reuse=True``, or
``gc.AUTO_REUSE`` for "create once, then reuse"), so one model function can be called twice
on two inputs with shared weights, as TF1 code does.
"""
import contextlib

from ..errors import GraphError, ShapeError
from .graph import Node, Variable, get_default_graph, global_variables
from ..ir import dtypes as D
from ..ir.shapes import normalize_shape
from ..ir.source import user_location

AUTO_REUSE = "AUTO_REUSE"


class VariableScope:
    """What ``with gc.variable_scope(...) as scope`` gives: the scope's name and reuse flag.

    ``scope.reuse_variables()`` makes the rest of the block reuse, as in TF1.
    """

    def __init__(self, name, reuse, initializer):
        self.name, self.reuse, self.initializer = name, reuse, initializer

    def reuse_variables(self):
        self.reuse = True


def _stack(graph):
    # Kept on the graph so that two graphs' scopes never mix.
    if not hasattr(graph, "_variable_scopes"):
        graph._variable_scopes = []
    return graph._variable_scopes


@contextlib.contextmanager
def variable_scope(name_or_scope, default_name=None, values=None, reuse=None,
                   initializer=None, **unused):
    """A name scope whose ``get_variable`` calls create or reuse variables.

    Args:
        name_or_scope: the scope's name (or a ``VariableScope`` to re-enter).
        default_name: used when ``name_or_scope`` is None.
        reuse: None/False (inherit; create new variables), True (every ``get_variable``
            must find an existing variable) or ``gc.AUTO_REUSE``.
        initializer: default initializer of ``get_variable`` inside.
    Returns:
        a context manager yielding a ``VariableScope``.
    Raises:
        GraphError: from ``get_variable`` (see there).
    Example:
        >>> with gc.variable_scope("enc", reuse=gc.AUTO_REUSE):
        ...     W = gc.get_variable("W", [64, 32])
    """
    graph = get_default_graph()
    if isinstance(name_or_scope, VariableScope):
        name = name_or_scope.name.rstrip("/").split("/")[-1]
        reuse = name_or_scope.reuse if reuse is None else reuse
    elif name_or_scope is not None:
        name = name_or_scope   # "" is the root scope
    elif default_name:
        if reuse is True:
            raise GraphError(f"variable_scope: reuse=True needs a scope name, found only "
                             f"default_name={default_name!r}", loc=user_location(),
                             hint="pass the name of the scope to reuse")
        name = _unique_default(graph, default_name)
    else:
        raise GraphError("variable_scope: pass name_or_scope or default_name",
                         loc=user_location())
    stack = _stack(graph)
    outer = stack[-1] if stack else None
    if not reuse and outer is not None and outer.reuse:
        reuse = outer.reuse  # TF1: reuse is inherited and cannot be switched off inside
    if initializer is None and outer is not None:
        initializer = outer.initializer
    with graph.name_scope(name) as prefix:
        _open(graph, prefix.rstrip("/"))
        scope = VariableScope(prefix.lstrip("/"), reuse, initializer)
        stack.append(scope)
        try:
            yield scope
        finally:
            stack.pop()


def _counts(graph):
    """{full scope name: times opened since its parent scope was last entered} (TF1's
    variable scope counts, kept on the graph)."""
    if not hasattr(graph, "_variable_scope_counts"):
        graph._variable_scope_counts = {}
    return graph._variable_scope_counts


def _open(graph, full):
    """Count one more opening of scope ``full`` and restart the counts of the scopes inside
    it: entering ``disc`` again names its unnamed layers ``dense``, ``dense_1``... anew, so
    a reused scope finds the variables of the first pass, in creation order (TF1)."""
    counts = _counts(graph)
    counts[full] = counts.get(full, 0) + 1
    for key in counts:
        if not full or key.startswith(full + "/"):
            if key != full:
                counts[key] = 0


def _unique_default(graph, default_name):
    """``default_name``, or ``default_name_1``... if a scope of that name was opened in the
    current scope since it was entered (TF1's ``_get_unique_variable_scope``)."""
    counts = _counts(graph)
    outer = "/".join(graph._scope)
    full = f"{outer}/{default_name}" if outer else default_name
    if counts.get(full, 0) == 0:
        return default_name
    k = 1
    while counts.get(f"{full}_{k}", 0) > 0:
        k += 1
    return f"{default_name}_{k}"


def get_variable_scope():
    """The innermost ``VariableScope`` (a root scope outside any ``variable_scope``)."""
    stack = _stack(get_default_graph())
    return stack[-1] if stack else VariableScope("", None, None)


def get_variable(name, shape=None, dtype=D.float32, initializer=None, regularizer=None,
                 trainable=True, reuse=None, **unused):
    """TF1's get_variable: a new variable ``scope/name``, or the existing one when reusing.

    Args:
        name: the variable's name inside the current scope.
        shape: its shape (checked against the existing variable when reusing).
        dtype, trainable: as in TF1.
        initializer: a callable ``init(shape, dtype)``, a value or a tensor (TF1: the
            shape, and for a tensor the dtype, are then taken from it and ``shape`` may be
            left out); default: the scope's, else ``glorot_uniform()``.
        regularizer: ``reg(var) -> scalar or None``; a new variable's penalty goes into the
            ``regularization_losses`` collection (TF1; a reused variable adds none).
        reuse: overrides the scope's reuse flag.
    Returns:
        the Variable.
    Raises:
        GraphError: the variable exists and the scope does not reuse, or it does not exist
            and the scope requires reuse.
        ShapeError: a reused variable has another shape than ``shape``.
    Example:
        >>> W = gc.get_variable("W", [64, 10], initializer=gc.zeros_initializer())
    """
    scope = get_variable_scope()
    reuse = scope.reuse if reuse is None else reuse
    full = scope.name + name
    existing = [v for v in global_variables() if v.node_name == full]
    if existing and reuse:
        return _checked(existing[0], shape, full)
    if existing:
        raise GraphError(f"get_variable: variable '{full}' already exists",
                         hint="use gc.variable_scope(..., reuse=True) or reuse=gc.AUTO_REUSE "
                              "to share it")
    if reuse is True:
        raise GraphError(f"get_variable: variable '{full}' does not exist and the scope "
                         f"reuses variables", hint="create it first in a scope without "
                         "reuse=True, or use reuse=gc.AUTO_REUSE")
    if initializer is None:
        initializer = scope.initializer
    var = _new_variable(name, shape, dtype, initializer, trainable)
    penalty = regularizer(var) if regularizer is not None else None
    if penalty is not None:
        var.graph.add_to_collection("regularization_losses", penalty)
    return var


def _checked(var, shape, full):
    if shape is not None and tuple(normalize_shape(shape)) != tuple(var.shape):
        raise ShapeError(f"get_variable: variable '{full}' has shape {list(var.shape)}, "
                         f"asked for {list(normalize_shape(shape))}")
    return var


def _new_variable(name, shape, dtype, initializer, trainable):
    dtype = D.as_dtype(dtype)
    shape = normalize_shape(shape)
    if initializer is None:
        from ..ops.init_ops import glorot_uniform
        initializer = glorot_uniform()
    if isinstance(initializer, Node):  # TF1: shape and dtype come from the tensor
        if shape is not None and tuple(shape) != tuple(initializer.shape or ()):
            raise ShapeError(f"get_variable: the initializer {initializer.describe()} of "
                             f"'{name}' is {initializer.type_str()}, asked for shape "
                             f"{list(shape)}", loc=initializer.loc,
                             hint="leave out shape: it is taken from the initializer")
        return Variable(initializer, trainable=trainable, name=name)
    if shape is None and not callable(initializer):
        return Variable(initializer, trainable=trainable, name=name, dtype=dtype)
    if shape is None or None in shape:
        raise ShapeError(f"get_variable: variable '{name}' needs a static shape, found "
                         f"{shape}", loc=user_location(),
                         hint="pass shape=[...], or an initializer value or tensor")
    value = initializer(shape, dtype) if callable(initializer) else initializer
    return Variable(value, trainable=trainable, name=name, dtype=dtype)
