"""Load a generated NumPy step module from its source text (no compiler needed)."""
import types


def load_python_step(source, consts, seeds=(), arena=None, module_name="graphc_step"):
    """Execute generated source as a fresh module and build its step function.

    Args:
        source: module text with a ``make_step(consts, arena, seeds)`` function.
        consts: the constant arrays the source indexes.
        seeds: one seed (or None) per random op.
        arena: the planned buffer arena (a uint8 array), or None.
    Returns:
        (step function, module).
    """
    module = types.ModuleType(module_name)
    module.__dict__["__file__"] = f"<{module_name}>"
    code = compile(source, f"<{module_name}>", "exec")
    exec(code, module.__dict__)
    return module.make_step(consts, arena, list(seeds)), module
