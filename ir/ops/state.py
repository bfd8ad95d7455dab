"""Leaves and effects: constants, placeholders, variables, assignments, groups, random numbers.

Semantics of state within one step: a ``variable`` node is the variable's value when the step
starts; an ``assign`` node's value is the new value, which becomes the variable's value when the
step ends. Every read of the old value therefore happens before the assignment (the scheduler
orders them; the in-place pass may then update the variable's buffer in place). ``assign``,
``group`` and the random ops are impure: never merged, folded, or recomputed.
"""
import numpy as np

from .. import dtypes as D
from ..shapes import RuleError, format_shape
from .registry import ZERO, defop, require


def _leaf_infer(nodes, **attrs):
    return D.as_dtype(attrs["dtype"]), tuple(attrs["shape"])


CONST = defop("const", lambda nodes, value: (D.as_dtype(value.dtype), value.shape), ZERO,
              impl=lambda value: value, family="state", leaf=True, compile_time=True,
              tf_name="Const")
PLACEHOLDER = defop("placeholder", _leaf_infer, ZERO, family="state", leaf=True,
                    tf_name="Placeholder")
VARIABLE = defop("variable", _leaf_infer, ZERO, family="state", leaf=True, tf_name="Variable")


def constant_for(target, value):
    """The array of ``value`` when assigning it to ``target`` is a plain copy of a constant:
    ``target`` a variable, ``value`` a constant of its dtype and shape; else None."""
    array = value.attrs.get("value") if value.op_name == "const" else None
    if target.opdef is not VARIABLE or value.dtype != target.dtype or target.shape is None \
            or not isinstance(array, np.ndarray) or array.shape != tuple(target.shape):
        return None
    return array


def _assign_infer(nodes, mode="set"):
    var, value = nodes
    # (each message is built only when its check fails: every update of a step is an assign)
    if var.op_name != "variable":
        raise RuleError(f"the target must be a Variable, found {var.describe()}",
                        hint="create it with gc.Variable(...)")
    if var.dtype != value.dtype:
        raise RuleError(f"value dtype {value.dtype.name} differs from variable "
                        f"'{var.node_name}' ({var.dtype.name})", kind="dtype")
    # as TF1's validate_shape: dims known only when the step is specialized are checked then
    if not (len(var.shape) == len(value.shape) and all(
            v is None or v == w for v, w in zip(value.shape, var.shape))):
        raise RuleError(f"value shape {format_shape(value.shape)} differs from variable "
                        f"'{var.node_name}' {format_shape(var.shape)}")
    return var.dtype, var.shape


ASSIGN = defop("assign", _assign_infer, ZERO, impure=True, family="state",
               impl=lambda var, value, mode="set": np.array(value),
               doc="new value of the variable (input 0, a target, not a read)", tf_name="Assign")
def after_impl(x, *deps):
    """``x`` itself; the extra inputs are only ordering (control dependencies)."""
    return x


AFTER = defop("after", lambda nodes: (nodes[0].dtype, nodes[0].shape),
              lambda g, out, x, *deps: [g] + [None] * len(deps), impl=after_impl,
              family="state", view=True, orders=1,
              doc="x, computed after its other inputs (control dependencies)")
GROUP = defop("group", lambda nodes: (None, None), ZERO, impure=True,
              family="state", doc="runs its inputs; no value (TF1's tf.group / no_op)",
              tf_name="group_deps")


def _random_infer(nodes, shape, dtype=D.float32, seed=None, **params):
    dt = D.as_dtype(dtype)
    require(dt.is_floating, f"random values must be floating, found {dt.name}", kind="dtype")
    if shape is None:  # a shape whose length is known only when the step is specialized
        return dt, None
    require(all(d is None or d >= 0 for d in shape),
            f"negative dimension in shape {format_shape(shape)}")
    return dt, tuple(shape)


# The kernels below are copied into generated modules, which import only numpy: they name no
# module global (``dtype`` is a DType, a NumPy type or a name).
def random_normal_impl(rng, shape, dtype="float32", seed=None, mean=0.0, stddev=1.0):
    return (rng.standard_normal(shape) * stddev + mean).astype(getattr(dtype, "np", dtype))


def random_uniform_impl(rng, shape, dtype="float32", seed=None, minval=0.0, maxval=1.0):
    return rng.uniform(minval, maxval, shape).astype(getattr(dtype, "np", dtype))


def truncated_normal_impl(rng, shape, dtype="float32", seed=None, mean=0.0, stddev=1.0):
    """Normal samples redrawn until all lie within two standard deviations, as in TF."""
    z = rng.standard_normal(shape)
    bad = np.abs(z) > 2.0
    while bad.any():
        z[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(z) > 2.0
    return (z * stddev + mean).astype(getattr(dtype, "np", dtype))


# Random ops take an RNG (a numpy Generator owned by the compiled step, seeded from the op's
# seed) as the first argument of their impl: fresh values every run, reproducible by seed.
RANDOM_NORMAL = defop("random_normal", _random_infer, ZERO, random=True,
                      static_args={"shape": "ints"}, impl=random_normal_impl,
                      family="state", tf_name="random_normal")
RANDOM_UNIFORM = defop("random_uniform", _random_infer, ZERO, random=True,
                       static_args={"shape": "ints"}, impl=random_uniform_impl,
                       family="state", tf_name="random_uniform")
TRUNCATED_NORMAL = defop("truncated_normal", _random_infer, ZERO, random=True,
                         static_args={"shape": "ints"}, impl=truncated_normal_impl,
                         family="state", tf_name="truncated_normal")
