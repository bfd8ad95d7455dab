"""Watching the compiler: dump directories (``GRAPHC_DUMP``) and stderr reports (``GRAPHC_DEBUG``).

``GRAPHC_DUMP=<dir>`` in the environment, or ``dump_dir=`` on ``gc.compile`` / ``Session``,
writes one sub-directory per compiled signature (named by a hash of the fetch names and the
feed shapes, so recompiling the same step rewrites the same files) holding what
``ir.passes.dumping.write_dumps`` writes plus the generated code (``step.py`` for NumPy,
``step.ll`` for LLVM). Compiling the same graph twice writes byte-identical files.

A loop's body is a program of its own, run through the same passes as the step around it:
its dumps go to a sub-directory named after the body (``body_rnn/00-input.ir``,
``01-prune.ir``, the diffs, ``passes.txt``, ``plan.txt``, ``graph.dot``; a loop in a body
nests one level deeper), and the step's ``graph.dot`` draws each body as a cluster under
its loop, as that pipeline left it.

``GRAPHC_DEBUG=N`` prints to stderr, each level adding to the one before:
    1  the pass table with timings, and compile times
    2  the text IR after each pass
    3  the memory plan and every in-place decision (each loop body's too)
    4  the generated source
    5  the backend's own IR (the LLVM module; for NumPy the source again is all there is)
"""
import hashlib
import os
import sys


def debug_level():
    """``GRAPHC_DEBUG`` as an int (0 when unset or not a number)."""
    try:
        return int(os.environ.get("GRAPHC_DEBUG", "0") or 0)
    except ValueError:
        return 0


def base_dir(dump_dir):
    """The dump root: ``dump_dir`` if given, else ``$GRAPHC_DUMP``, else None."""
    return dump_dir if dump_dir is not None else (os.environ.get("GRAPHC_DUMP") or None)


def signature_dir(base, fetches, feed_shapes, backend="numpy", optimize=True):
    """``base/<step name>-<hash>``: one directory per compiled signature.

    Args:
        base: the dump root (None gives None).
        fetches: the user's fetch nodes; feed_shapes: {placeholder: shape}.
    Returns:
        The directory path (not created) or None.
    """
    if base is None:
        return None
    key = repr(([f.node_name for f in fetches],
                sorted((p.node_name, tuple(s), p.dtype.name) for p, s in feed_shapes.items()),
                backend, bool(optimize)))
    digest = hashlib.sha1(key.encode()).hexdigest()[:10]
    stem = "".join(c if c.isalnum() else "_" for c in fetches[0].node_name)[:24] \
        if fetches else "step"
    return os.path.join(base, f"{stem}-{digest}")


def source_file(backend):
    return "step.py" if backend == "numpy" else "step.ll"


def write(program, dump_dir, source, backend):
    """Write the pipeline dumps and the generated code of one compiled signature.

    Returns:
        The file names written, those of loop bodies as ``body_<name>/<file>``.
    """
    text = source if isinstance(source, str) else str(source)
    return _write_program(program, dump_dir, [(source_file(backend), text)])


def _write_program(program, dump_dir, extra):
    """``write_dumps`` of ``program`` with its loops' bodies (recursively) beside it."""
    from ..ir.dot import format_dot
    from ..ir.passes.dumping import write_dumps
    from ..ir.passes.stages import body_programs
    bodies = body_programs(program)
    if bodies:  # the step's graph with the bodies the dumps show (not the reference's)
        chosen = _all_bodies(bodies)
        extra = [("graph.dot", format_dot(program.nodes, program.name, program.fetches,
                                          bodies=chosen.get))] + list(extra)
    written = [name for name in write_dumps(program, dump_dir, extra=extra)
               if name != "graph.dot" or not bodies]
    if bodies:
        written.append("graph.dot")
    taken = set()
    for _, body in bodies:
        sub = body.name
        k = 1
        while sub in taken:
            sub, k = f"{body.name}_{k}", k + 1
        taken.add(sub)
        written += [f"{sub}/{name}"
                    for name in _write_program(body, os.path.join(dump_dir, sub), [])]
    return written


def _all_bodies(bodies):
    """{loop node: body program} of ``bodies`` and of the loops inside them."""
    from ..ir.passes.stages import body_programs
    out = {}
    for loop, body in bodies:
        out[loop] = body
        out.update(_all_bodies(body_programs(body)))
    return out


def report(program, source, backend, timings, level=None, stream=None):
    """Print the ``GRAPHC_DEBUG`` report of one compiled signature to stderr."""
    level = debug_level() if level is None else level
    if level <= 0:
        return
    from ..ir.passes.dumping import pass_table, plan_text
    from ..ir.passes.stages import body_programs
    out = stream or sys.stderr
    total = sum(timings.values()) * 1e3
    parts = ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in timings.items())
    out.write(f"[graphc] compiled '{program.name}' ({backend}): {total:.1f} ms ({parts})\n")
    out.write(pass_table(program, with_times=True))
    if level >= 2:
        for name, text in getattr(program, "stages", []):
            out.write(f"[graphc] IR after {name}:\n{text}")
    if level >= 3:
        out.write("[graphc] memory plan:\n" + plan_text(program))
        for body in _all_bodies(body_programs(program)).values():  # each planned apart
            out.write(f"[graphc] memory plan of {body.name}:\n" + plan_text(body))
    if level >= 4:
        out.write("[graphc] generated source:\n" + (source if isinstance(source, str)
                                                    else str(source)) + "\n")
    if level >= 5:
        backend_ir = getattr(source, "llvm_ir", None)
        if backend_ir is not None:
            out.write("[graphc] backend IR:\n" + backend_ir + "\n")
    out.flush()
