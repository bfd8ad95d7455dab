"""From fetches and feed shapes to a runnable step: specialize, optimize, generate, load.

``compile_program`` is the one pipeline behind both ``Session.run`` and ``gc.compile``:

    build_program (specialize + schedule)  ->  ir.passes pipeline (when optimize)
      ->  codegen (NumPy source or LLVM IR)  ->  runtime (a callable step)
"""
import time

from .errors import CompileError
from .ir.program import build_program


class Compiled:
    """A compiled signature: the Program, its generated code and the callable step.

    ``fn(*feeds, *variables) -> (fetches, new variable values)``; feeds and variables are in
    the order of ``feed_nodes`` / ``var_nodes`` (the user's nodes).
    """

    def __init__(self, program, fn, source, backend, timings):
        self.program, self.fn, self.source, self.backend = program, fn, source, backend
        self.timings = timings
        self.feed_nodes = [program.origin[n] for n in program.feeds]
        self.var_nodes = [program.origin[n] for n in program.variables]
        users = program.users()
        # A variable is read when some node uses its value (an assign's target edge is not).
        self.var_read = [any(not (u.op_name == "assign" and u.inputs[0] is v)
                             for u in users.get(v, [])) or v in program.fetches
                         for v in program.variables]
        self.update_nodes = [program.origin[v] for v, _ in program.updates]


def new_arena(program):
    """A zeroed, 64-byte aligned uint8 arena of the plan's size (None without a plan)."""
    plan = program.plan
    if plan is None or not plan.planned:
        return None
    import numpy as np
    raw = np.zeros(plan.arena_bytes + plan.alignment, np.uint8)
    shift = (-raw.ctypes.data) % plan.alignment
    return raw[shift:shift + plan.arena_bytes]


def compile_program(fetches, feed_shapes, backend="numpy", optimize=True, passes=None,
                    dump_dir=None):
    """Compile the step computing ``fetches`` for the given feed shapes.

    Args:
        fetches: list of user nodes.
        feed_shapes: {user placeholder: concrete shape}.
        backend: "numpy" (the reference) or "llvm".
        optimize: run the pass pipeline (False gives the unoptimized reference).
        passes: an explicit list of pass names (None: the default pipeline).
        dump_dir: write IR dumps, diffs and the generated code there.
    Returns:
        A ``Compiled``.
    """
    timings = {}
    t0 = time.perf_counter()
    program = build_program(fetches, feed_shapes)
    timings["specialize"] = time.perf_counter() - t0
    if optimize:
        try:
            from .ir.passes import run_pipeline
        except ImportError:
            run_pipeline = None
        if run_pipeline is not None:
            run_pipeline(program, passes=passes, dump_dir=dump_dir)
    t1 = time.perf_counter()
    if backend == "numpy":
        from .codegen.numpy_emitter import emit_numpy
        from .runtime.pystep import load_python_step
        source, consts, seeds = emit_numpy(program)
        fn, _ = load_python_step(source, consts, seeds, arena=new_arena(program))
    elif backend == "llvm":
        try:
            from .codegen.llvm_backend import compile_llvm
        except ImportError:
            raise CompileError("backend 'llvm' is not available in this build") from None
        fn, source = compile_llvm(program)
    else:
        raise CompileError(f"unknown backend {backend!r}", hint="use 'numpy' or 'llvm'")
    timings["codegen"] = time.perf_counter() - t1
    return Compiled(program, fn, source, backend, timings)
