"""The NumPy backend's entry: a Program rendered as Python source over numpy.

A program with a memory plan is rendered by ``planned.PlannedEmitter`` into its arena; without
one, by ``emitter.Emitter`` (the reference semantics).
"""
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
