"""The NumPy backend: a Program rendered as Python source over numpy, loaded as a step.

A program with a memory plan is rendered by ``planned.PlannedEmitter`` into its arena; without
one, by ``emitter.Emitter`` (the reference semantics).
"""
import numpy as np

from graphc.errors import CompileError

from ...runtime.pystep import load_python_step
from ..compiled import CompiledCode
from .emitter import Emitter
from .planned import PlannedEmitter


def emit_numpy(program, checks=(), details=False):
    """Render ``program``; returns (source text, constant arrays, RNG seeds).

    A program with a memory plan (``program.plan.planned``) is rendered by
    ``planned.PlannedEmitter`` into its arena; ``checks`` ("numerics", "writes") add the
    debugging checks described there. Without a plan this is the reference.
    With ``details=True`` a fourth item is returned: {"sites": [(kind, node, detail)] of the
    checks, "scratch_bytes": preallocated scratch beside the arena}.
    """
    plan = program.plan
    if plan is not None and plan.planned:
        em = PlannedEmitter(program, checks)
    else:
        em = Emitter(program)
    src = em.emit()
    if not details:
        return src, em.consts, em.seeds
    info = {"sites": list(em.sites),
            "scratch_bytes": em.scratch_bytes() if hasattr(em, "scratch_bytes") else 0}
    return src, em.consts, em.seeds, info


def new_arena(program):
    """A zeroed, 64-byte aligned uint8 arena of the plan's size (None without a plan)."""
    plan = program.plan
    if plan is None or not plan.planned:
        return None
    raw = np.zeros(plan.arena_bytes + plan.alignment, np.uint8)
    shift = (-raw.ctypes.data) % plan.alignment
    return raw[shift:shift + plan.arena_bytes]


class NumpyBackend:
    """``codegen.BACKENDS["numpy"]``: emit, load, and keep what saving the step needs."""

    name = "numpy"
    checks = ("numerics", "writes")

    def compile(self, program, checks=(), dump_dir=None):
        """Compile ``program`` to a ``CompiledCode`` (``dump_dir``: nothing beyond the
        source, which the caller's dumps write)."""
        epilogue = next((n for n in program.nodes if n.op_name == "fused_matmul"), None)
        if epilogue is not None:  # (``fuse`` makes them for program.gemm_epilogues: LLVM's)
            raise CompileError(f"{epilogue.describe()}: the NumPy backend runs no GEMM "
                               "epilogue", loc=epilogue.loc)
        source, consts, seeds, info = emit_numpy(program, checks, details=True)
        # The step draws from these generators (default_rng returns a Generator unchanged):
        # their state is what a saved step resumes from.
        rngs = [np.random.default_rng(s) for s in seeds]
        step, _ = load_python_step(source, consts, rngs, arena=new_arena(program))
        return CompiledCode("numpy", step, source,
                            rng_state=lambda: [g.bit_generator.state for g in rngs],
                            consts=list(consts), sites=info["sites"],
                            scratch_bytes=info["scratch_bytes"])


BACKEND = NumpyBackend()
