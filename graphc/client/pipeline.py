"""From fetches and feed shapes to a runnable step: specialize, optimize, generate, load.

``compile_program`` is the one pipeline behind both ``Session.run`` and ``gc.compile``:

    build_program (specialize + schedule)  ->  ir.passes pipeline (when optimize)
      ->  codegen (NumPy source or LLVM IR)  ->  runtime (a callable step)

With the compile cache on (``step_cache``), the user's graph is looked up first: a hit
loads the saved step and skips all of the above.
"""
import functools
import gc
import os
import time

from . import dumps, step_cache
from ..codegen import BACKENDS
from ..errors import CompileError
from ..ir.passes import resolve, run_pipeline  # at import: module loading is not compiling
from ..ir.program import build_program
from ..runtime.calls import step_lock


class Compiled:
    """A compiled signature: the Program, its generated code and the callable step.

    ``fn(*feeds, *variables) -> (fetches, new variable values)``; feeds and variables are in
    the order of ``feed_nodes`` / ``var_nodes`` (the user's nodes).
    """

    def __init__(self, program, fn, source, backend, timings):
        self.program, self.fn, self.source, self.backend = program, fn, source, backend
        self.timings = timings
        self.sites = []  # what each debugging check of the generated code watches
        self.scratch_bytes = 0
        self.dump_dir = None
        self.feed_nodes = [program.origin[n] for n in program.feeds]
        self.var_nodes = [program.origin[n] for n in program.variables]
        users = program.users()
        # A variable is read when some node uses its value (an assign's target edge is not).
        self.var_read = [any(not (u.op_name == "assign" and u.inputs[0] is v)
                             for u in users.get(v, [])) or v in program.fetches
                         for v in program.variables]
        self.update_nodes = [program.origin[v] for v, _ in program.updates]
        # per fetch: whether it has a value (a train op has none), read once per signature
        self.fetch_values = [f is not None and f.dtype is not None for f in program.fetches]
        self.lock = step_lock()  # the arena and random state: one call at a time


def codegen_backend(name):
    """The code generator called ``name`` (``codegen.BACKENDS``).

    Raises:
        CompileError: an unknown name, or a backend this build cannot import.
    """
    try:
        return BACKENDS[name]
    except KeyError:
        raise CompileError(f"unknown backend {name!r}", hint="use 'numpy' or 'llvm'") from None
    except ImportError:
        raise CompileError(f"backend {name!r} is not available in this build") from None


def pipeline_for(optimize, passes, checks, split=1):
    """The pass names to run: none for the reference; with numerics checks no fusion and no
    in-place writes, so every node's value exists to be checked when it is computed.
    ``split``: the parts the default pipeline cuts the batch in (``split_parts_for``)."""
    if not optimize:
        return ["plan"] if checks else []
    names = resolve(passes)
    if split > 1 and passes is None and not checks:
        names.insert(names.index("dce") + 1, "split")
    if "numerics" in checks:
        names = [n for n in names if n not in ("fuse", "inplace")]
        if "plan" not in names:
            names.append("plan")
    elif checks and "plan" not in names:
        names.append("plan")
    return names


# What an unset GRAPHC_SPLIT_EXAMPLES means.
SPLIT_DEFAULT = "auto"


def split_parts_for(backend):
    """The parts a step's batch is cut in to run on several cores at once (``ir.passes.
    split``): ``GRAPHC_SPLIT_EXAMPLES``, a count (0 or 1: none; the NumPy backend runs the
    parts one after the other) or "auto": on the LLVM backend, the thread policy's count
    (``runtime.threads``; one thread: none), as a negative number: cut only where that is
    estimated faster than running the big kernels in chunks. Not on a host whose GEMMs are
    all BLAS's (no AVX2+FMA): parts calling BLAS run one after the other."""
    env = os.environ.get("GRAPHC_SPLIT_EXAMPLES", "").strip() or SPLIT_DEFAULT
    if env == "auto":
        if backend != "llvm":
            return 1
        from ..runtime.jit import host_vector_unit
        if host_vector_unit() is None:
            return 1
        from ..runtime.threads import policy_threads
        return -policy_threads()  # (negative: where it is estimated faster)
    if not env.isdigit():
        raise CompileError(f"GRAPHC_SPLIT_EXAMPLES must be a count of parts or 'auto', "
                           f"found {env!r}")
    return max(int(env), 1)


def default_backend():
    """The backend of a Session or ``gc.compile`` that names none: ``$GRAPHC_BACKEND``, else
    LLVM when it works on this host, else NumPy with a notice (``backend_choice``)."""
    from .backend_choice import default_backend as choose
    return choose()


def _gc_paused(fn):
    """Run ``fn`` with the cyclic garbage collector paused (restored afterwards).

    Compiling allocates many small objects that all stay alive until it returns; a full
    collection triggered in the middle (typically the first one after importing NumPy,
    LLVM and NetworkX) scans the whole heap for ~10 ms and frees nothing. Collection
    resumes normally when the compiler returns.
    """
    @functools.wraps(fn)
    def paused(*args, **kwargs):
        enabled = gc.isenabled()
        gc.disable()
        try:
            return fn(*args, **kwargs)
        finally:
            if enabled:
                gc.enable()
    return paused


@_gc_paused
def compile_program(fetches, feed_shapes, backend="numpy", optimize=True, passes=None,
                    dump_dir=None, checks=(), cache=None):
    """Compile the step computing ``fetches`` for the given feed shapes.

    Args:
        fetches: list of user nodes.
        feed_shapes: {user placeholder: concrete shape}.
        backend: "numpy" (the reference) or "llvm".
        optimize: run the pass pipeline (False gives the unoptimized reference).
        passes: an explicit list of pass names (None: the default pipeline).
        dump_dir: write IR dumps, diffs and the generated code in exactly this directory
            (None: a per-signature directory under ``$GRAPHC_DUMP`` when that is set).
        checks: debugging checks: "numerics" (stop at the first NaN or Inf; both backends),
            "writes" (fail on a write into a buffer the plan did not give the node; NumPy).
        cache: look the specialized program up in the compile cache and store what is
            compiled there (``graphc.client.step_cache``: a hit runs no pass and no code
            generator); None: ``$GRAPHC_STEP_CACHE``. Never with dumps.
    Returns:
        A ``Compiled`` (a ``step_cache.CachedCompiled`` on a hit).
    Raises:
        CompileError: an unknown backend or pass, or "writes" asked of the LLVM backend.
    """
    checks = tuple(checks)
    numpy_only = [c for c in checks if c != "numerics"]
    if numpy_only and backend != "numpy":
        raise CompileError(f"checks {numpy_only} need backend='numpy', not {backend!r}",
                           hint="debug with the NumPy backend, then switch back")
    timings = {}
    t0 = time.perf_counter()
    split = split_parts_for(backend)
    names = pipeline_for(optimize, passes, checks, abs(split))
    if dump_dir is None:
        dump_dir = dumps.signature_dir(dumps.base_dir(None), fetches, feed_shapes, backend,
                                       optimize)
    objects = step_cache.store(cache) if dump_dir is None else None
    key = None
    if objects is not None:  # (looked up before specializing: a hit needs no program)
        t1 = time.perf_counter()
        key, nodes = step_cache.step_key(fetches, feed_shapes, backend, names + (
            [f"split into {split}"] if "split" in names else []), checks, objects)  # (<0: auto)
        timings["key"] = time.perf_counter() - t1
    if key is not None:
        hit = step_cache.load(objects, key, nodes, lambda: compile_program(
            fetches, feed_shapes, backend, optimize, passes, None, checks, cache=False),
            timings)
        if hit is not None:
            hit.timings["lookup"] = time.perf_counter() - t0
            return hit
    t1 = time.perf_counter()
    program = build_program(fetches, feed_shapes)
    program.split_parts = abs(split)
    if backend == "llvm" and os.environ.get("GRAPHC_GEMM_EPILOGUES") != "0":
        from ..codegen.llvm.kernels.vector_body import VECTOR_BODY_OPS
        program.gemm_epilogues = VECTOR_BODY_OPS  # (bodies its GEMMs run: ``fused_matmul``)
    if split < 0:  # "auto": cut where the parts beat the kernels run in chunks
        from ..codegen.llvm.kernels.gemm import vector_unit
        from ..codegen.llvm.parallel import MIN_WORK, handoff_work
        program.split_if_faster = (MIN_WORK, handoff_work(vector_unit()))  # (not a test's)
    timings["specialize"] = time.perf_counter() - t1
    t1 = time.perf_counter()
    run_pipeline(program, passes=names)
    timings["passes"] = time.perf_counter() - t1
    t1 = time.perf_counter()
    code = codegen_backend(backend).compile(program, checks, dump_dir)
    timings["codegen"] = time.perf_counter() - t1
    compiled = Compiled(program, code.step, code.source, backend, timings)
    compiled.code = code  # what saving the step needs (``aot``)
    compiled.sites = code.sites
    compiled.scratch_bytes = code.scratch_bytes
    if dump_dir is not None:  # (the backend wrote its own files there: step.ll, ...)
        dumps.write(program, dump_dir, code.source, backend)
        compiled.dump_dir = dump_dir
    dumps.report(program, code.source, backend, timings)
    if key is not None:
        step_cache.save(objects, key, compiled, nodes)
    return compiled


def step_stats(compiled):
    """{nodes_before, nodes_after, fused_groups, inplace_ops, peak_bytes, naive_bytes, ...}."""
    p = compiled.program
    records = list(getattr(p, "records", []))
    count = _value_nodes
    stats = {"nodes_before": count(p.stages[0][1]) if p.stages else None,
             "nodes_after": sum(1 for n in p.nodes if not n.opdef.external),
             "fused_groups": sum(1 for n in p.nodes if n.op_name == "fused"),
             "inplace_ops": 0, "peak_bytes": None, "naive_bytes": None,
             "passes": [{"name": r["name"], "ms": r["ms"], "nodes_before": r["nodes_before"],
                         "nodes_after": r["nodes_after"], "changes": r["changes"]}
                        for r in records],
             "compile_ms": {k: v * 1e3 for k, v in compiled.timings.items()},
             "scratch_bytes": compiled.scratch_bytes,
             # the backend's named folds that fired (LLVM: codegen/llvm/folds.py)
             "folds": list(compiled.code.stats.get("folds", ()))
             if getattr(compiled, "code", None) is not None else []}
    if records:
        stats["nodes_before"] = records[0]["nodes_before"]
    plan = p.plan
    if plan is not None and plan.planned:
        stats["inplace_ops"] = sum(1 for n in plan.inplace if n.op_name != "assign")
        stats["peak_bytes"] = plan.peak_bytes
        stats["naive_bytes"] = plan.naive_bytes
        stats["live_peak_bytes"] = plan.live_peak
        stats["naive_bytes_unoptimized"] = getattr(p, "unoptimized_naive_bytes", None)
        stats["updates_in_place"] = sum(1 for v in plan.update_in_place.values() if v)
    return stats


def _value_nodes(text):
    return sum(1 for line in text.splitlines() if line.lstrip().startswith("%"))
