"""Load a generated NumPy step module from its source text (no compiler needed)."""
import types

from .threads import tuned

# What generated code calls BLAS through (matrix products, convolutions as GEMMs)
_BLAS_CALLS = ("np.matmul", "conv", "einsum", "tensordot")


def load_python_step(source, consts, seeds=(), arena=None, module_name="graphc_step"):
    """Execute generated source as a fresh module and build its step function.

    Args:
        source: module text with a ``make_step(consts, arena, seeds)`` function.
        consts: the constant arrays the source indexes.
        seeds: one seed (or None) per random op.
        arena: the planned buffer arena (a uint8 array), or None.
    Returns:
        (step function, module). A step that calls BLAS chooses BLAS's thread count by timing
        itself (``threads.tuned``), as native steps do.
    """
    module = types.ModuleType(module_name)
    module.__dict__["__file__"] = f"<{module_name}>"
    code = compile(source, f"<{module_name}>", "exec")
    exec(code, module.__dict__)
    step = module.make_step(consts, arena, list(seeds))
    if any(call in source for call in _BLAS_CALLS):
        step = tuned(step)
    return step, module
