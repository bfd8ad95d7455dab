"""The pass pipeline: each pass rewrites a Program in place and returns what it changed.

``run_pipeline`` runs the passes in order, times them, keeps the text IR after each one
(``program.stages``: snapshots rendered on first read, see ``stages``) and a record per pass
(``program.records``), checks the program after every pass when asked (``verify=True`` or
``GRAPHC_VERIFY=1``), and writes the dumps.

Default order (each module's docstring says what it does):
    unroll -> prune -> fold -> simplify -> cse -> dce -> scale -> fuse -> inplace -> schedule
    -> plan
Folding runs before simplification so that rules see the constants prune made (``x * 1``
where the 1 came from ``ones_like``).
"""
import os
import time
from collections import Counter
from operator import attrgetter

from graphc.errors import CompileError, GraphError

from .cse import eliminate_common_subexpressions
from .common import check_program
from .dce import eliminate_dead_code
from .fold import fold_constants
from .fuse import fuse_elementwise
from .inplace import analyze_inplace
from .memory import plan_memory
from .prune import prune_unused
from .scale import fold_update_scale
from .schedule import schedule_for_memory
from .simplify import simplify_algebra
from .split import split_examples
from . import stages
from .stages import Stages
from .unroll import unroll_loops

PASSES = {
    "unroll": unroll_loops,
    "prune": prune_unused,
    "fold": fold_constants,
    "simplify": simplify_algebra,
    "cse": eliminate_common_subexpressions,
    "dce": eliminate_dead_code,
    "split": split_examples,
    "scale": fold_update_scale,
    "fuse": fuse_elementwise,
    "inplace": analyze_inplace,
    "schedule": schedule_for_memory,
    "plan": plan_memory,
}
DEFAULT_PIPELINE = ("unroll", "prune", "fold", "simplify", "cse", "dce", "scale", "fuse", "inplace",
                    "schedule", "plan")


def resolve(passes):
    """The list of pass names to run (``None``: the default pipeline).

    Raises:
        CompileError: an unknown pass name (listing the known ones).
    """
    names = list(DEFAULT_PIPELINE if passes is None else passes)
    for name in names:
        if name not in PASSES:
            raise CompileError(f"unknown pass {name!r}",
                               [f"known passes: {', '.join(PASSES)}"],
                               hint="pass names as in graphc.ir.passes.DEFAULT_PIPELINE")
    return names


def _count(program):
    ops = Counter(map(_OPDEF, program.nodes))  # (per op, not per node: runs after every pass)
    return sum(k for opdef, k in ops.items() if not opdef.external)


_OPDEF = attrgetter("opdef")


def run_pipeline(program, passes=None, dump_dir=None, verify=None):
    """Optimize ``program`` in place.

    Args:
        program: an ``ir.program.Program`` from ``build_program``.
        passes: pass names to run in order (None: ``DEFAULT_PIPELINE``; [] runs none).
        dump_dir: when given, write the text IR after each stage, a diff per pass, the DOT
            graph, the pass table and the memory plan there (see ``write_dumps``).
        verify: check the program after every pass (default: env ``GRAPHC_VERIFY=1``).
    Returns:
        The list of per-pass records: {"name", "ms", "nodes_before", "nodes_after",
        "changes"}; also kept as ``program.records`` with ``program.stages``.
    Raises:
        CompileError: an unknown pass; GraphError: a pass broke an invariant (verify).
    Example:
        >>> records = run_pipeline(build_program([loss, train], {x: (128, 784), y: (128,)}))
        >>> [r["name"] for r in records][:3]
        ['prune', 'fold', 'simplify']
    """
    names = resolve(passes)
    if verify is None:
        verify = os.environ.get("GRAPHC_VERIFY", "") not in ("", "0")
    program.stages = Stages()
    program.stage_notes = []  # what the latest pass says of its stage (printer: ";;" lines)
    program.stages.record("input", program)
    program.records = []
    program.unoptimized_naive_bytes = _naive(program)
    after = _count(program)
    for name in names:
        before = after  # (nothing changes the program between two passes)
        program.stage_notes = []
        t0 = time.perf_counter()
        changes = PASSES[name](program) or {}
        ms = (time.perf_counter() - t0) * 1e3
        if verify:
            try:
                check_program(program)
            except GraphError as e:  # name the pass that broke the invariant
                raise GraphError(f"after pass '{name}': {e.message}", e.details,
                                 loc=e.loc, hint=e.hint) from None
        after = _count(program)
        program.records.append({"name": name, "ms": ms, "nodes_before": before,
                                "nodes_after": after, "changes": dict(changes)})
        program.stages.record(name, program)
    if dump_dir is not None:
        from .dumping import write_dumps
        write_dumps(program, dump_dir)
    return program.records


stages.RUNNER = run_pipeline  # loop bodies in the stages run through the same pipeline


def _naive(program):
    from .memory import naive_bytes
    return naive_bytes(program.nodes)


__all__ = ["run_pipeline", "PASSES", "DEFAULT_PIPELINE", "resolve", "check_program",
           "prune_unused", "fold_constants", "simplify_algebra",
           "eliminate_common_subexpressions", "eliminate_dead_code", "fold_update_scale",
           "fuse_elementwise",
           "analyze_inplace", "schedule_for_memory", "plan_memory"]
