"""``gc.train``: optimizers whose updates are assign nodes inside the compiled step.

``minimize`` = ``compute_gradients`` (symbolic gradients) + ``apply_gradients`` (one assign per
variable, grouped). The update therefore compiles with the forward and backward passes into a
single step, and the in-place pass may update each variable's buffer in place.
"""
import warnings

from .errors import GradientError
from .framework import Variable, assign, group, trainable_variables
from .ir.autodiff import gradients
from .ir.ops import apply


class Optimizer:
    """Base class (TF1's tf.train.Optimizer). Subclasses implement ``_apply_dense``."""

    def __init__(self, learning_rate, use_locking=False, name="Optimizer"):
        self.learning_rate = learning_rate
        self.name = name
        self._slots = {}

    def compute_gradients(self, loss, var_list=None, **unused):
        """[(gradient, variable)] for the trainable variables connected to ``loss``.

        Raises:
            GradientError: no variable is connected to the loss (warns for each unconnected).
        """
        var_list = list(var_list) if var_list is not None else trainable_variables()
        if not var_list:
            raise GradientError(f"{self.name}: no variables to optimize",
                                hint="create variables with gc.Variable before minimize")
        grads = gradients(loss, var_list, unconnected_gradients="none")
        connected = [(g, v) for g, v in zip(grads, var_list) if g is not None]
        if not connected:
            names = ", ".join(v.name for v in var_list)
            raise GradientError(f"{self.name}: no variable is connected to loss "
                                f"{loss.describe()}", [f"variables: {names}"], loss.loc,
                                "check that the loss is computed from the variables")
        for g, v in zip(grads, var_list):
            if g is None:
                warnings.warn(f"{self.name}: variable '{v.name}' is not connected to the loss "
                              f"'{loss.name}'; it will not be updated", stacklevel=3)
        return connected

    def apply_gradients(self, grads_and_vars, global_step=None, name=None):
        """One op applying every (gradient, variable) pair, and incrementing global_step."""
        updates = []
        graph = None
        for g, v in grads_and_vars:
            if g is None:
                continue
            graph = v.graph
            with graph.name_scope(f"{self.name}/{v.name}"):
                updates.append(self._apply_dense(g, v))
        if global_step is not None:
            updates.append(assign(global_step, global_step + 1))
        return group(*updates, name=name or self.name)

    def minimize(self, loss, global_step=None, var_list=None, name=None, **unused):
        """compute_gradients then apply_gradients: the train op."""
        return self.apply_gradients(self.compute_gradients(loss, var_list),
                                    global_step=global_step, name=name)

    def _lr(self, like):
        lr = self.learning_rate
        return lr if not callable(lr) else lr()

    def _slot(self, var, name, init=0.0):
        key = (var, name)
        if key not in self._slots:
            import numpy as np
            self._slots[key] = Variable(np.full(var.shape, init, var.dtype.np),
                                        trainable=False, name=f"{var.name}/{self.name}/{name}")
        return self._slots[key]

    def get_slot(self, var, name):
        return self._slots.get((var, name))

    def variables(self):
        return list(self._slots.values())


class GradientDescentOptimizer(Optimizer):
    """``w <- w - lr * g``."""

    def __init__(self, learning_rate, use_locking=False, name="GradientDescent"):
        super().__init__(learning_rate, use_locking, name)

    def _apply_dense(self, grad, var):
        return assign(var, var - apply("multiply", [grad, self._lr(grad)]))


def get_global_step(graph=None):
    from .framework import get_default_graph
    steps = (graph or get_default_graph()).get_collection("global_step")
    return steps[0] if steps else None


def get_or_create_global_step(graph=None):
    import numpy as np
    step = get_global_step(graph)
    if step is None:
        step = Variable(np.int64(0), trainable=False, name="global_step",
                        collections=["global_step"])
    return step


create_global_step = get_or_create_global_step
