"""``gc.train``: optimizers whose updates are assign nodes inside the compiled step.

``minimize`` = ``compute_gradients`` (symbolic gradients) + ``apply_gradients`` (assign nodes,
grouped). The update therefore compiles with the forward and backward passes into a single
step, and the in-place pass may update each variable's buffer in place.

Optimizer state (momentum accumulators, Adam's moments, RMSProp's mean square) lives in *slot*
variables: non-trainable ``gc.Variable``s named ``<var>/<optimizer>/<slot>``, listed by
``gc.global_variables()`` (so the initializer and the Saver see them) and updated by assign
nodes in the same step. A variable node is read at its step-start value and an assign takes
effect at step end, so every update below reads the previous step's state, as TF1 does.

The update rules are TF1's, formula for formula (``t`` counts steps from 1):

- GradientDescent: ``w -= lr g``
- Momentum: ``a = mu a + g``; ``w -= lr a`` (Nesterov: ``w -= lr (g + mu a)``)
- Adam: ``m = b1 m + (1-b1) g``; ``v = b2 v + (1-b2) g^2``;
  ``w -= lr sqrt(1-b2^t) / (1-b1^t) * m / (sqrt(v) + eps)``; the powers ``b1^t``, ``b2^t``
  are variables multiplied by b1, b2 at the end of each step.
- Adagrad: ``acc += g^2`` (``acc`` starts at 0.1); ``w -= lr g / sqrt(acc)``
- RMSProp: ``ms = d ms + (1-d) g^2`` (``ms`` starts at ONE, as in TF1);
  ``mom = mu mom + lr g / sqrt(ms + eps)``; ``w -= mom``. Centered: also
  ``mg = d mg + (1-d) g`` and the denominator is ``sqrt(ms - mg^2 + eps)``.
- Adadelta: ``acc = rho acc + (1-rho) g^2``; ``u = sqrt(upd + eps) / sqrt(acc + eps) g``;
  ``upd = rho upd + (1-rho) u^2``; ``w -= lr u``.
"""
import warnings

import numpy as np

from ..errors import GradientError
from ..framework.graph import Variable, assign, constant, group, trainable_variables
from ..ir.autodiff import gradients
from ..ir.graph import Node
from ..ops.math_ops import cast, sqrt, square


class Optimizer:
    """Base class (TF1's tf.train.Optimizer). Subclasses implement ``_apply_dense``.

    Hyperparameters (the learning rate included) may be Python numbers, tensors (a fed
    placeholder, a decayed schedule) or callables returning either.
    """

    def __init__(self, learning_rate, use_locking=False, name="Optimizer"):
        self.learning_rate = learning_rate
        self.name = name
        self._slots = {}      # (variable, slot name) -> slot Variable
        self._non_slot = {}   # (graph, name) -> Variable shared by all variables (beta powers)

    # -- the three TF1 entry points -------------------------------------------------------------
    def compute_gradients(self, loss, var_list=None, **unused):
        """[(gradient, variable)] for every variable of ``var_list``, as TF1.

        Args:
            loss: a floating tensor (its elements are summed).
            var_list: variables to differentiate (default: ``gc.trainable_variables()``).
        Returns:
            One pair per variable; an unconnected variable's pair is ``(None, v)`` (TF1),
            which ``apply_gradients`` skips, and it gets a warning.
        Raises:
            GradientError: no variables at all, or none connected to the loss.
        Example:
            >>> grads_and_vars = opt.compute_gradients(loss)
        """
        var_list = list(var_list) if var_list is not None else trainable_variables()
        if not var_list:
            raise GradientError(f"{self.name}: no variables to optimize",
                                hint="create variables with gc.Variable before minimize")
        grads = gradients(loss, var_list, unconnected_gradients="none")
        connected = [(g, v) for g, v in zip(grads, var_list) if g is not None]
        if not connected:
            names = ", ".join(v.node_name for v in var_list)
            raise GradientError(f"{self.name}: no variable is connected to loss "
                                f"{loss.describe()}", [f"variables: {names}"], loss.loc,
                                "check that the loss is computed from the variables")
        for g, v in zip(grads, var_list):
            if g is None:
                warnings.warn(f"{self.name}: variable '{v.node_name}' is not connected to the loss "
                              f"'{loss.node_name}'; it will not be updated", stacklevel=3)
        return list(zip(grads, var_list))

    def apply_gradients(self, grads_and_vars, global_step=None, name=None):
        """One op applying every (gradient, variable) pair, and incrementing ``global_step``.

        Pairs whose gradient is None are skipped (TF1's compute_gradients may produce them).

        Raises:
            GradientError: every gradient is None.
        Example:
            >>> train_op = opt.apply_gradients(clipped_pairs, global_step=step)
        """
        pairs = [(g, v) for g, v in grads_and_vars if g is not None]
        if not pairs:
            raise GradientError(f"{self.name}: no gradients provided for any variable",
                                [f"variables: {', '.join(v.node_name for _, v in grads_and_vars)}"])
        graph = pairs[0][1].graph
        with graph.as_default():
            self._create_slots([v for _, v in pairs])  # outside the update's name scope
            updates = []
            for g, v in pairs:
                with graph.name_scope(f"{self.name}/{v.node_name}"):
                    updates.append(self._apply_dense(g, v))
            with graph.name_scope(self.name):
                updates.extend(self._finish(graph))
            if global_step is not None:
                updates.append(assign(global_step, global_step + 1))
            return group(*updates, name=name or self.name)

    def minimize(self, loss, global_step=None, var_list=None, name=None, **unused):
        """compute_gradients then apply_gradients: the train op (TF1's argument order).

        Example:
            >>> train_op = gc.train.AdamOptimizer(1e-3).minimize(loss, global_step=step)
        """
        return self.apply_gradients(self.compute_gradients(loss, var_list),
                                    global_step=global_step, name=name)

    # -- hooks for subclasses --------------------------------------------------------------------
    def _create_slots(self, var_list):
        """Create the slot variables the rule needs (called once per apply_gradients)."""

    def _apply_dense(self, grad, var):
        raise NotImplementedError

    def _finish(self, graph):
        """Extra updates run once per step after all variables (Adam's beta powers)."""
        return []

    # -- hyperparameters and slots -----------------------------------------------------------------
    def _hyper(self, value, var):
        """``value`` as a tensor of ``var``'s dtype (numbers, tensors, callables)."""
        if callable(value) and not isinstance(value, Node):
            value = value()
        if isinstance(value, Node):
            return value if value.dtype == var.dtype else cast(value, var.dtype)
        return constant(float(value), dtype=var.dtype)

    def _lr(self, var):
        return self._hyper(self.learning_rate, var)

    def _slot(self, var, name, init=0.0):
        key = (var, name)
        if key not in self._slots:
            self._slots[key] = Variable(np.full(var.shape, init, var.dtype.np),
                                        trainable=False, name=f"{var.node_name}/{self.name}/{name}")
        return self._slots[key]

    def _non_slot_variable(self, graph, name, initial_value, dtype):
        key = (graph, name)
        if key not in self._non_slot:
            self._non_slot[key] = Variable(np.array(initial_value, dtype.np), trainable=False,
                                           name=f"{self.name}/{name}")
        return self._non_slot[key]

    def get_slot(self, var, name):
        """The slot variable ``name`` ("m", "v", "momentum", "rms", "mg") of ``var``, or None."""
        return self._slots.get((var, name))

    def get_slot_names(self):
        return sorted({name for _, name in self._slots})

    def variables(self):
        """Every variable the optimizer created (slots and shared ones such as beta powers)."""
        return list(self._slots.values()) + list(self._non_slot.values())


class GradientDescentOptimizer(Optimizer):
    """``w <- w - lr * g``.

    Example:
        >>> train_op = gc.train.GradientDescentOptimizer(0.1).minimize(loss)
    """

    def __init__(self, learning_rate, use_locking=False, name="GradientDescent"):
        super().__init__(learning_rate, use_locking, name)

    def _apply_dense(self, grad, var):
        return assign(var, var - grad * self._lr(var))


class MomentumOptimizer(Optimizer):
    """Heavy-ball momentum ``a = mu a + g; w -= lr a``, or Nesterov's ``w -= lr (g + mu a)``.

    Args:
        learning_rate, momentum: numbers or tensors.
        use_nesterov: the look-ahead form (TF1's formulation, in terms of the new ``a``).
    Example:
        >>> opt = gc.train.MomentumOptimizer(0.05, momentum=0.9, use_nesterov=True)
    """

    def __init__(self, learning_rate, momentum, use_locking=False, name="Momentum",
                 use_nesterov=False):
        super().__init__(learning_rate, use_locking, name)
        self.momentum, self.use_nesterov = momentum, use_nesterov

    def _create_slots(self, var_list):
        for v in var_list:
            self._slot(v, "momentum")

    def _apply_dense(self, grad, var):
        accum = self._slot(var, "momentum")
        lr, mu = self._lr(var), self._hyper(self.momentum, var)
        accum_t = accum * mu + grad
        step = (grad + accum_t * mu) * lr if self.use_nesterov else accum_t * lr
        return group(assign(accum, accum_t), assign(var, var - step))


class AdamOptimizer(Optimizer):
    """Adam with TF1's bias correction (the step size carries it; eps stays uncorrected).

    Args:
        learning_rate: number or tensor.
        beta1, beta2: numbers (they also initialize the beta-power variables).
        epsilon: added to ``sqrt(v)``.
    Example:
        >>> train_op = gc.train.AdamOptimizer(1e-3).minimize(loss)
    """

    def __init__(self, learning_rate=0.001, beta1=0.9, beta2=0.999, epsilon=1e-8,
                 use_locking=False, name="Adam"):
        super().__init__(learning_rate, use_locking, name)
        self.beta1, self.beta2, self.epsilon = beta1, beta2, epsilon

    def _create_slots(self, var_list):
        first = min(var_list, key=lambda v: v.node_name)  # TF1: the powers take one var's dtype
        self._non_slot_variable(first.graph, "beta1_power", self.beta1, first.dtype)
        self._non_slot_variable(first.graph, "beta2_power", self.beta2, first.dtype)
        for v in var_list:
            self._slot(v, "m")
            self._slot(v, "v")

    def _beta_powers(self, graph):
        return (self._non_slot[(graph, "beta1_power")], self._non_slot[(graph, "beta2_power")])

    def _apply_dense(self, grad, var):
        m, v = self._slot(var, "m"), self._slot(var, "v")
        b1p, b2p = (self._hyper(p, var) for p in self._beta_powers(var.graph))
        b1, b2 = self._hyper(self.beta1, var), self._hyper(self.beta2, var)
        lr_t = self._lr(var) * sqrt(1.0 - b2p) / (1.0 - b1p)
        m_t = m * b1 + grad * (1.0 - b1)
        v_t = v * b2 + square(grad) * (1.0 - b2)
        step = lr_t * m_t / (sqrt(v_t) + self._hyper(self.epsilon, var))
        return group(assign(m, m_t), assign(v, v_t), assign(var, var - step))

    def _finish(self, graph):
        b1p, b2p = self._beta_powers(graph)
        return [assign(b1p, b1p * self._hyper(self.beta1, b1p)),
                assign(b2p, b2p * self._hyper(self.beta2, b2p))]


class RMSPropOptimizer(Optimizer):
    """RMSProp as TF1 defines it: mean square starting at one, eps inside the square root.

    Args:
        learning_rate, decay, momentum, epsilon: numbers or tensors.
        centered: normalize by the estimated variance ``ms - mg^2`` instead of ``ms``.
    Example:
        >>> opt = gc.train.RMSPropOptimizer(1e-3, decay=0.9, momentum=0.9, centered=True)
    """

    def __init__(self, learning_rate, decay=0.9, momentum=0.0, epsilon=1e-10,
                 use_locking=False, centered=False, name="RMSProp"):
        super().__init__(learning_rate, use_locking, name)
        self.decay, self.momentum, self.epsilon = decay, momentum, epsilon
        self.centered = centered

    def _create_slots(self, var_list):
        for v in var_list:
            self._slot(v, "rms", init=1.0)
            self._slot(v, "momentum")
            if self.centered:
                self._slot(v, "mg")

    def _apply_dense(self, grad, var):
        ms, mom = self._slot(var, "rms"), self._slot(var, "momentum")
        decay = self._hyper(self.decay, var)
        ms_t = ms * decay + square(grad) * (1.0 - decay)
        updates = [assign(ms, ms_t)]
        denom = ms_t + self._hyper(self.epsilon, var)
        if self.centered:
            mg = self._slot(var, "mg")
            mg_t = mg * decay + grad * (1.0 - decay)
            updates.append(assign(mg, mg_t))
            denom = denom - square(mg_t)
        mom_t = mom * self._hyper(self.momentum, var) + self._lr(var) * grad / sqrt(denom)
        updates += [assign(mom, mom_t), assign(var, var - mom_t)]
        return group(*updates)


class AdagradOptimizer(Optimizer):
    """Adagrad: ``acc += g^2; w -= lr g / sqrt(acc)``, ``acc`` starting at 0.1 as in TF1.

    Example:
        >>> train_op = gc.train.AdagradOptimizer(0.1).minimize(loss)
    """

    def __init__(self, learning_rate, initial_accumulator_value=0.1, use_locking=False,
                 name="Adagrad"):
        super().__init__(learning_rate, use_locking, name)
        if initial_accumulator_value <= 0:
            raise ValueError("AdagradOptimizer: initial_accumulator_value must be positive, "
                             f"got {initial_accumulator_value}")
        self.initial_accumulator_value = initial_accumulator_value

    def _create_slots(self, var_list):
        for v in var_list:
            self._slot(v, "accumulator", init=self.initial_accumulator_value)

    def _apply_dense(self, grad, var):
        acc = self._slot(var, "accumulator")
        acc_t = acc + square(grad)
        return group(assign(acc, acc_t),
                     assign(var, var - self._lr(var) * grad / sqrt(acc_t)))


class AdadeltaOptimizer(Optimizer):
    """Adadelta as TF1 has it: ``acc = rho acc + (1-rho) g^2``;
    ``u = sqrt(acc_upd + eps) / sqrt(acc + eps) * g``; ``acc_upd = rho acc_upd + (1-rho) u^2``;
    ``w -= lr u``, with slots ``accum`` and ``accum_update`` starting at zero.

    Args:
        learning_rate, rho, epsilon: numbers or tensors (TF1's defaults).
    Example:
        >>> train_op = gc.train.AdadeltaOptimizer(1.0, rho=0.9).minimize(loss)
    """

    def __init__(self, learning_rate=0.001, rho=0.95, epsilon=1e-8, use_locking=False,
                 name="Adadelta"):
        super().__init__(learning_rate, use_locking, name)
        self.rho, self.epsilon = rho, epsilon

    def _create_slots(self, var_list):
        for v in var_list:
            self._slot(v, "accum")
            self._slot(v, "accum_update")

    def _apply_dense(self, grad, var):
        acc, acc_upd = self._slot(var, "accum"), self._slot(var, "accum_update")
        rho, eps = self._hyper(self.rho, var), self._hyper(self.epsilon, var)
        acc_t = acc * rho + square(grad) * (1.0 - rho)
        update = sqrt(acc_upd + eps) / sqrt(acc_t + eps) * grad
        acc_upd_t = acc_upd * rho + square(update) * (1.0 - rho)
        return group(assign(acc, acc_t), assign(acc_upd, acc_upd_t),
                     assign(var, var - self._lr(var) * update))
