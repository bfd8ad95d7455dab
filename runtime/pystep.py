"""Load a generated NumPy step module from its source text (no compiler needed)."""
import functools
import types

from .threads import tuned

# What generated code calls BLAS through (matrix products, convolutions as GEMMs)
_BLAS_CALLS = ("np.matmul", "conv", "einsum", "tensordot")


@functools.lru_cache(maxsize=8)
def compile_step(source, module_name="graphc_step"):
    """The code object of a generated step module (what ``load_python_step`` runs).

    Compiling the source is most of loading a step (~20 ms for 1,100 lines); the last few
    are kept, so that storing a step's code (``marshal``, by the compile cache) right after
    loading it compiles nothing again.

    Example:
        >>> exec(compile_step(source), namespace)
    """
    return compile(source, f"<{module_name}>", "exec")


def load_python_step(source, consts, seeds=(), arena=None, module_name="graphc_step",
                     code=None):
    """Execute generated source as a fresh module and build its step function.

    Args:
        source: module text with a ``make_step(consts, arena, seeds)`` function.
        consts: the constant arrays the source indexes.
        seeds: one seed (or None) per random op.
        arena: the planned buffer arena (a uint8 array), or None.
        code: ``compile_step(source, module_name)`` when the caller has it already (from
            ``marshal``): the source is then not compiled.
    Returns:
        (step function, module). A step that calls BLAS chooses BLAS's thread count by timing
        itself (``threads.tuned``), as native steps do.
    """
    module = types.ModuleType(module_name)
    module.__dict__["__file__"] = f"<{module_name}>"
    exec(code if code is not None else compile_step(source, module_name), module.__dict__)
    step = module.make_step(consts, arena, list(seeds))
    if any(call in source for call in _BLAS_CALLS):
        step = tuned(step)
    return step, module
