"""Graph construction in TF1 style: leaves (placeholder, Variable, constant), name scopes,
and the default graph."""
import contextlib
import os

import numpy as np

from ..errors import GraphError, ShapeError
from ..ir import dtypes as D
from ..ir import graph as _ir_graph
from ..ir import printer  # noqa: F401  (sets str(graph): the text IR)
from ..ir.graph import (Graph, Node, Operation, as_node, get_default_graph,  # noqa: F401
                        reset_default_graph)
from ..ir.ops import apply, const_node
from ..ir.ops.state import constant_for
from ..ir.ops.registry import default_array
from ..ir.shapes import TensorShape, normalize_shape

Tensor = Node


def _node_digests():
    """How a new graph hashes the nodes it builds: the compile cache's running hash
    (``graphc.client.node_digest``) while the cache is on (``$GRAPHC_STEP_CACHE``, read as
    ``step_cache.store`` reads it), else None."""
    if os.environ.get("GRAPHC_STEP_CACHE", "") in ("", "0"):
        return None
    from ..client import node_digest
    return node_digest


_ir_graph.digests = _node_digests


def placeholder(dtype, shape=None, name=None):
    """A value fed at run time. ``shape`` may leave dims as None, or be None itself (the
    default): an unknown shape of any rank, as in TF1. Each compiled signature fixes them
    (``gc.compile`` and ``Session.run`` specialize the step on the fed shapes).

    Example:
        >>> x = gc.placeholder(gc.float32, [None, 784], name="x")
        >>> X = gc.placeholder("float")          # any shape: a scalar, [17], [4, 3]...
    """
    dtype = D.as_dtype(dtype)
    shape = normalize_shape(shape)
    g = get_default_graph()
    return g.add_node(_op("placeholder"), [], {"shape": shape, "dtype": dtype}, dtype, shape,
                      name or "Placeholder")


def placeholder_with_default(input, shape, name=None):  # noqa: A002  (TF1's name)
    """A placeholder that takes ``input`` when a ``Session.run`` does not feed it (TF1's
    ``training = tf.placeholder_with_default(False, shape=())``).

    Args:
        input: the default value (array, number or list); it sets the dtype.
        shape: the placeholder's shape (None dims allowed); the default must fit it.
    Returns:
        the placeholder. ``gc.compile`` steps take it as an ordinary feed.
    Raises:
        ShapeError: the default does not fit ``shape``.
    Example:
        >>> training = gc.placeholder_with_default(False, shape=())
    """
    value = np.asarray(input)
    if value.dtype == np.float64 and not isinstance(input, np.ndarray):
        value = value.astype(np.float32)  # a Python float means float32, as in TF1
    p = placeholder(value.dtype, shape, name=name or "PlaceholderWithDefault")
    if p.shape is not None and (value.ndim != len(p.shape) or any(
            d is not None and d != v for d, v in zip(p.shape, value.shape))):
        raise ShapeError(f"placeholder_with_default '{p.node_name}': the default has shape "
                         f"{list(value.shape)}, the placeholder {list(p.shape)}", loc=p.loc)
    p.meta["default"] = np.ascontiguousarray(value.astype(p.dtype.np))
    return p


def constant(value, dtype=None, shape=None, name=None):
    """A constant tensor (TF1's tf.constant); ``shape`` broadcasts a scalar value."""
    if shape is not None:  # broadcast after choosing the dtype: 1.5 stays float32
        value = np.broadcast_to(default_array(value, dtype), normalize_shape(shape))
    return const_node(value, dtype, name=name or "Const")


def _op(name):
    from ..ir.ops import get
    return get(name)


class Variable(Node):
    """A trainable (or not) state tensor; its value persists across steps of a session.

    Args:
        initial_value: an array, a Python number/list, a graph tensor (for instance
            ``gc.random_normal([784, 256])``, computed when the initializer runs), or a
            callable returning one of those.
        name, trainable, dtype: as in TF1.
    Example:
        >>> W = gc.Variable(gc.initializers.glorot_uniform(seed=0)([784, 256]), name="W")
    """

    __slots__ = ()

    def __new__(cls, initial_value=None, trainable=True, name=None, dtype=None,
                validate_shape=True, collections=None, **unused):
        if initial_value is None:
            raise GraphError("Variable: initial_value is required")
        if callable(initial_value) and not isinstance(initial_value, Node):
            initial_value = initial_value()
        g = get_default_graph()
        init = initial_value if isinstance(initial_value, Node) else \
            const_node(initial_value, dtype, g, name=(name or "Variable") + "/initial_value")
        made = init is not initial_value  # (a constant of its own: the compile cache's running
        if made:  # hash leaves out the array, often drawn afresh each run; ``node_digest``)
            init.key_tainted = True
        if dtype is not None and init.dtype != D.as_dtype(dtype):
            init = apply("cast", [init], {"dtype": D.as_dtype(dtype)})
        if init.shape is None or None in init.shape:
            raise GraphError(f"Variable: the initial value's shape must be static, found "
                             f"{init.type_str()}")
        node = g.add_node(_op("variable"), [], {"shape": init.shape, "dtype": init.dtype},
                          init.dtype, init.shape, name or "Variable")
        node.__class__ = cls
        node.meta["initial_value"] = init
        array = constant_for(node, init) if made else None
        if array is not None:
            g.initial_arrays[node] = (init, array)
        node.meta["trainable"] = bool(trainable)
        g.add_to_collection("variables", node)
        if trainable:
            g.add_to_collection("trainable_variables", node)
        for key in collections or ():
            g.add_to_collection(key, node)
        return node

    def __init__(self, *args, **kwargs):
        pass

    @property
    def initial_value(self):
        return self.meta["initial_value"]

    @property
    def trainable(self):
        return self.meta["trainable"]

    @property
    def initializer(self):
        init = self.meta.get("initializer")
        if init is None:
            with self.graph.name_scope(self.node_name):
                init = apply("assign", [self, self.initial_value], name="initializer")
            self.meta["initializer"] = init
        return init

    def assign(self, value, use_locking=None, name=None, read_value=True):
        return assign(self, value, name=name)

    def assign_add(self, delta, use_locking=None, name=None, read_value=True):
        return assign_add(self, delta, name=name)

    def assign_sub(self, delta, use_locking=None, name=None, read_value=True):
        return assign_sub(self, delta, name=name)

    def read_value(self):
        return self

    def value(self):
        return self

    def load(self, value, session=None):
        from ..ir.graph import get_default_session
        (session or get_default_session()).load_variable(self, value)

    def __repr__(self):
        return f"<gc.Variable '{self.name}' shape={list(self.shape)} dtype={self.dtype.name}>"


def assign(ref, value, validate_shape=None, use_locking=None, name=None):
    """Give ``ref`` a new value when the step ends; returns the new value (TF1's tf.assign)."""
    return apply("assign", [ref, value], name=name or "Assign")


def assign_add(ref, value, use_locking=None, name=None):
    return apply("assign", [ref, apply("add", [ref, value])], name=name or "AssignAdd")


def assign_sub(ref, value, use_locking=None, name=None):
    return apply("assign", [ref, apply("subtract", [ref, value])], name=name or "AssignSub")


def group(*inputs, name=None):
    """An op that runs all of ``inputs`` (ops or tensors) and has no value."""
    flat = []
    for x in inputs:
        flat.extend(x if isinstance(x, (list, tuple)) else [x])
    flat = [as_node(x) for x in flat]
    g = flat[0].graph if flat else get_default_graph()
    flat += [d for d in g._control_deps if d not in flat]
    return g.add_node(_op("group"), flat, {}, None, None, name or "group")


def control_dependencies(control_inputs):
    """Ops and tensors built inside run after ``control_inputs`` (TF1's tf.control_dependencies).

    Example:
        >>> with gc.control_dependencies(gc.get_collection(gc.GraphKeys.UPDATE_OPS)):
        ...     train_op = opt.minimize(loss)
    """
    return get_default_graph().control_dependencies(control_inputs)


def no_op(name=None):
    return group(name=name or "NoOp")


def global_variables(scope=None):
    return _filtered(get_default_graph().get_collection("variables"), scope)


def trainable_variables(scope=None):
    return _filtered(get_default_graph().get_collection("trainable_variables"), scope)


def local_variables(scope=None):
    """The ``local_variables`` collection (gc.metrics' running totals), as TF1."""
    return get_collection(GraphKeys.LOCAL_VARIABLES, scope)


def model_variables(scope=None):
    """The ``model_variables`` collection (filled by gc.contrib.layers), as TF1."""
    return get_collection(GraphKeys.MODEL_VARIABLES, scope)


@contextlib.contextmanager
def device(device_name_or_function):
    """TF1's ``tf.device``: accepted and ignored (a compiled step runs on the host CPU).

    Example:
        >>> with gc.device("/gpu:0"):
        ...     logits = model(x)
    """
    yield


def _filtered(vs, scope):
    return [v for v in vs if scope is None or v.node_name.startswith(scope)]


def variables_initializer(var_list, name="init"):
    return group(*[v.initializer for v in var_list], name=name)


def global_variables_initializer():
    """One op that assigns every variable of the default graph its initial value."""
    return variables_initializer(global_variables())


initialize_all_variables = global_variables_initializer


def local_variables_initializer():
    """Re-initialize the ``local_variables`` collection (gc.metrics' running totals)."""
    return variables_initializer(get_collection(GraphKeys.LOCAL_VARIABLES),
                                 name="local_init")


def name_scope(name, default_name=None, values=None):
    """Prefix the names of nodes built inside (``dense1/matmul``)."""
    return get_default_graph().name_scope(name or default_name)


def set_random_seed(seed):
    get_default_graph().seed = seed


class GraphKeys:
    """TF1's standard collection names (``gc.get_collection(gc.GraphKeys.UPDATE_OPS)``)."""
    GLOBAL_VARIABLES = VARIABLES = "variables"
    TRAINABLE_VARIABLES = "trainable_variables"
    LOCAL_VARIABLES, METRIC_VARIABLES = "local_variables", "metric_variables"  # gc.metrics
    UPDATE_OPS = "update_ops"
    REGULARIZATION_LOSSES = "regularization_losses"
    WEIGHTS, BIASES = "weights", "biases"  # filled by gc.contrib.layers
    MODEL_VARIABLES = "model_variables"
    MOVING_AVERAGE_VARIABLES = "moving_average_variables"  # gc.train.ExponentialMovingAverage
    GLOBAL_STEP = "global_step"
    SUMMARIES = "summaries"


def get_collection(key, scope=None):
    """The values in the default graph's collection ``key`` (names starting with ``scope``)."""
    return _filtered(get_default_graph().get_collection(key), scope)


def add_to_collection(name, value):
    get_default_graph().add_to_collection(name, value)


__all__ = ["Graph", "Tensor", "TensorShape", "Operation"]
