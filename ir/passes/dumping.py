"""Writing a pipeline's dumps: text IR per stage, a diff per pass, DOT, pass table, memory plan.

Files in the dump directory (one directory per compiled signature; see ``graphc.dumps``):

    00-input.ir            the specialized program before any pass
    01-prune.ir ...        the program after each pass (numbered in pipeline order)
    01-prune.diff ...      a unified diff of what each pass changed
    graph.dot              the final graph (fused groups as clusters)
    passes.txt             the summary table (nodes before/after, what each pass changed)
    plan.txt               the memory plan: buffers, offsets, intervals, in-place decisions

Nothing written depends on timings or object ids, so compiling the same graph twice writes
byte-identical files (timings go to ``program.records`` and ``GRAPHC_DEBUG`` output only).
"""
import difflib
import os

from ..dot import format_dot


def stage_files(program):
    """[(file name, text)] for the IR of every stage and the diff of every pass."""
    out = []
    prev_name, prev_text = None, None
    for i, (name, text) in enumerate(program.stages):
        fname = f"{i:02d}-{name}.ir"
        out.append((fname, text))
        if prev_text is not None:
            diff = difflib.unified_diff(prev_text.splitlines(True), text.splitlines(True),
                                        fromfile=prev_name, tofile=fname)
            out.append((f"{i:02d}-{name}.diff", "".join(diff) or "(no change)\n"))
        prev_name, prev_text = fname, text
    return out


def _fmt_changes(changes):
    return ", ".join(f"{k}={v}" for k, v in changes.items()) or "-"


def pass_table(program, with_times=False):
    """The summary table of the passes (``with_times`` adds milliseconds: not for dumps)."""
    head = f"{'pass':<10} {'nodes':>13}  " + ("    ms  " if with_times else "") + "changes"
    lines = [head, "-" * len(head)]
    for r in program.records:
        nodes = f"{r['nodes_before']} -> {r['nodes_after']}"
        ms = f"{r['ms']:6.2f}  " if with_times else ""
        lines.append(f"{r['name']:<10} {nodes:>13}  {ms}{_fmt_changes(r['changes'])}")
    if not program.records:
        lines.append("(no passes: the unoptimized reference)")
    plan = program.plan
    if plan is not None and plan.planned:
        lines.append("")
        lines.append(f"planned peak {plan.peak_bytes} bytes (arena), naive {plan.naive_bytes} "
                     f"bytes (one buffer per node), live peak {plan.live_peak} bytes")
        unopt = getattr(program, "unoptimized_naive_bytes", None)
        if unopt:
            lines.append(f"naive before the passes {unopt} bytes")
    return "\n".join(lines) + "\n"


def plan_text(program):
    """The memory plan and every in-place decision, one line each, in schedule order."""
    plan = program.plan
    if plan is None:
        return "(no memory plan: the unoptimized reference allocates one array per node)\n"
    lines = []
    if plan.planned:
        lines.append(f"arena {plan.arena_bytes} bytes, alignment {plan.alignment}; naive "
                     f"{plan.naive_bytes} bytes; live peak {plan.live_peak} bytes")
        lines.append("")
        lines.append("buffers (offset, bytes, live interval in schedule positions):")
        for n, off in plan.offsets.items():
            a, b = plan.intervals[n]
            lines.append(f"  [{off:>10}, +{plan.nbytes[n]:>9}) [{a:>4}, {b:>4}]  "
                         f"{n.op_name} '{n.node_name}' {n.type_str()}")
    lines.append("")
    lines.append("aliases:")
    for n, base in plan.views.items():
        lines.append(f"  view       '{n.node_name}' of '{base.node_name}'")
    for n, x in plan.inplace.items():
        if n.op_name == "assign":
            how = "no copy" if plan.update_in_place.get(n) else "copies"
            lines.append(f"  update     '{x.node_name}' by '{n.node_name}' ({how})")
        else:
            lines.append(f"  in place   '{n.node_name}' over '{x.node_name}'")
    lines.append("")
    lines.append("decisions:")
    for n, note in plan.notes.items():
        lines.append(f"  {n.op_name} '{n.node_name}': {note}")
    return "\n".join(lines) + "\n"


def write_dumps(program, dump_dir, extra=()):
    """Write every dump file of ``program`` into ``dump_dir`` (created if needed).

    Args:
        program: a Program that went through ``run_pipeline`` (or not: only 00-input).
        dump_dir: the directory for this signature.
        extra: more (file name, text) pairs (the generated source).
    Returns:
        The list of file names written.
    """
    os.makedirs(dump_dir, exist_ok=True)
    if not getattr(program, "stages", None):
        from ..printer import program_text
        program.stages = [("input", program_text(program))]
    files = stage_files(program)
    files.append(("graph.dot", format_dot(program.nodes, program.name, program.fetches)))
    files.append(("passes.txt", pass_table(program)))
    files.append(("plan.txt", plan_text(program)))
    files += list(extra)
    for name, text in files:
        with open(os.path.join(dump_dir, name), "w", encoding="utf-8") as f:
            f.write(text)
    return [name for name, _ in files]
