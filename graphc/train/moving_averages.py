"""TF1's ``tf.train.ExponentialMovingAverage``: a shadow variable per averaged variable,
updated by assign nodes in the step that runs ``apply``'s op.

``shadow -= (1 - decay) * (shadow - var)``, with ``decay = min(decay, (1 + n) / (10 + n))``
when ``num_updates`` (a step counter) is given, as TF1. Shadows are non-trainable variables
named ``<var>/ExponentialMovingAverage`` that start at the variable's initial value; they are
global variables (the initializer and the Saver see them) listed in the
``moving_average_variables`` collection.
"""
from ..errors import GraphError
from ..framework.graph import GraphKeys, Variable, assign, group
from ..ir.graph import Node, get_default_graph
from ..ir.ops import convert
from ..ops.math_ops import cast, minimum

__all__ = ["ExponentialMovingAverage"]


class ExponentialMovingAverage:
    """Moving averages of variables (or tensors) with one update op.

    Args:
        decay: a float in [0, 1) (or a scalar tensor); closer to 1 averages over more steps.
        num_updates: optional step counter limiting the decay early in training.
        zero_debias: accepted and ignored (TF1 uses it for tensors, not variables).
        name: the shadow variables' suffix, "ExponentialMovingAverage" by default.
    Example:
        >>> ema = gc.train.ExponentialMovingAverage(0.999)
        >>> with gc.control_dependencies([opt.minimize(loss)]):
        ...     train_op = ema.apply(gc.trainable_variables())
        >>> W_avg = ema.average(W)
    """

    def __init__(self, decay, num_updates=None, zero_debias=False,
                 name="ExponentialMovingAverage"):
        self.decay, self.num_updates, self.name = decay, num_updates, name
        self._averages = {}  # averaged variable -> its shadow

    def apply(self, var_list=None):
        """Create the missing shadows of ``var_list`` (default: the trainable variables) and
        return one op updating all of them.

        Raises:
            GraphError: a non-floating variable, or one averaged twice by this object.
        """
        graph = get_default_graph()
        var_list = list(var_list) if var_list is not None else \
            graph.get_collection(GraphKeys.TRAINABLE_VARIABLES)
        updates = []
        for var in var_list:
            if not var.dtype.is_floating:
                raise GraphError(f"ExponentialMovingAverage.apply: {var.describe()} is "
                                 f"{var.dtype.name}; only floating tensors can be averaged")
            if var in self._averages:
                raise GraphError(f"ExponentialMovingAverage.apply: {var.describe()} is "
                                 "already averaged by this object")
            self._averages[var] = shadow = self._shadow(var)
            with graph.name_scope(self.name):
                decay = self._decay(var)
                updates.append(assign(shadow, shadow - (1.0 - decay) * (shadow - var)))
        return group(*updates, name=self.name)

    def _shadow(self, var):
        init = var.initial_value if isinstance(var, Variable) else var
        shadow = Variable(init, trainable=False, name=self.average_name(var))
        get_default_graph().add_to_collection(GraphKeys.MOVING_AVERAGE_VARIABLES, shadow)
        return shadow

    def _decay(self, var):
        decay = convert(self.decay, var) if isinstance(self.decay, Node) \
            else convert(float(self.decay), var)
        decay = cast(decay, var.dtype)
        if self.num_updates is None:
            return decay
        n = cast(self.num_updates, var.dtype)
        return minimum(decay, (1.0 + n) / (10.0 + n))

    def average(self, var):
        """The shadow variable of ``var``, or None when ``apply`` has not averaged it."""
        return self._averages.get(var)

    def average_name(self, var):
        """``<var>/ExponentialMovingAverage``: the shadow's name (and checkpoint key)."""
        return f"{var.node_name}/{self.name}"

    def variables_to_restore(self, moving_avg_variables=None):
        """``{name: variable}`` for a ``Saver`` that loads each variable from its average
        (``average_name``) and every other global variable from its own name, as TF1."""
        graph = get_default_graph()
        averaged = moving_avg_variables or list(self._averages)
        mapping = {}
        for var in graph.get_collection(GraphKeys.GLOBAL_VARIABLES):
            if var in self._averages.values():
                continue
            mapping[self.average_name(var) if var in averaged else var.node_name] = var
        return mapping
