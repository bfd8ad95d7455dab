"""The LLVM backend's driver: Program -> LLVM IR -> (cached) object code -> a native step.

    stats = {}
    text, layout = lower_program(program, profile=os.environ.get("GRAPHC_PROFILE") == "1",
                                 stats=stats)        # one module, one exported ``step``
    key = cache_key(text, opt levels, parts, target)  # the IR text is the program's fingerprint
    object code = cache hit, or compile_ir(text) # verified, O2 pipeline, host CPU; a big
                                                 # module in parts, some in the worker
    NativeStep(layout, load_object(object code)) # fn(*feeds, *variables)

The IR text is produced before any compilation and is a pure function of the optimized
program (shapes, formulas, buffer layout), so hashing it keys the persistent object cache:
a second process lowers the program again (milliseconds) and loads the object file instead
of compiling. Constants and seeds are not in the text; they travel in the table at run time.

Dumps: the source returned is the IR as generated (``step.ll`` in a dump directory); it also
carries ``llvm_ir`` (the optimized IR and the assembly: what ``GRAPHC_DEBUG=5`` prints), and
``LLVMArtifacts.write`` adds ``step.opt.ll`` and ``step.s`` to a dump directory. The step
exposes the same: ``step.llvm_ir``, ``step.optimized_ir()``, ``step.assembly()``. The folds
that fired (``folds.py``) head ``step.ll`` as comments and fill ``folds.txt``.
Set ``GRAPHC_PROFILE=1`` when compiling to count cycles per kernel (``step.profile()``).
"""
import os
import time
from pathlib import Path

from ...runtime import compile_worker, jit, module_parts
from ...runtime.parallel import prefetch as prefetch_pool, settle as settle_pool, uses_pool
from ...runtime.threads import available_cores
from ...runtime.llvm_step import NativeStep
from ...runtime.objcache import ObjectCache, cache_key
from ..compiled import CompiledCode
from . import parallel
from .lower import lower_program  # (it imports every kernel: ``kernels/__init__``)

OPT_LEVEL = 2       # LLVM IR pipeline: O2 vectorizes loops as well as O3 here
CODEGEN_LEVEL = 2   # instruction selection / register allocation
# A module with enough work compiles as up to PARTS modules (``module_parts``), some here and
# some in the compile worker at the same time. Which functions go where follows from the
# text alone (and ``module_parts.VERSION``, in the cache key); which process compiled which
# part does not change the code.
PARTS = 6
WORKER_EARLY_NODES = 300  # programs this big start the worker before lowering

_cache = None


def default_cache():
    """The process-wide object cache (``GRAPHC_NO_CACHE=1`` disables it, also when set after
    the first compilation)."""
    global _cache
    fresh = ObjectCache()
    if _cache is None or (_cache.dir, _cache.enabled) != (fresh.dir, fresh.enabled):
        _cache = fresh
    return _cache


class LLVMArtifacts:
    """The code of one compiled step, for dumps: IR, optimized IR and assembly on demand."""

    def __init__(self, llvm_ir, key, compiled=None, cache_hit=False, timings=None):
        self.llvm_ir, self.key, self.cache_hit = llvm_ir, key, cache_hit
        self._compiled = compiled
        self.timings = timings or {}

    def _module(self):
        if self._compiled is None:  # loaded from the cache: compile again only for dumps
            self._compiled = jit.compile_ir(self.llvm_ir, OPT_LEVEL, CODEGEN_LEVEL,
                                            parts=PARTS)
        return self._compiled

    def optimized_ir(self):
        return self._module().optimized_ir

    def assembly(self):
        return self._module().assembly()

    def write(self, dump_dir, name="step"):
        """Write ``name.ll``, ``name.opt.ll``, ``name.s`` and ``folds.txt`` (one line per fold
        that fired: ``folds.py``) into ``dump_dir``."""
        d = Path(dump_dir)
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{name}.ll").write_text(self.llvm_ir)
        notes = getattr(self, "stats", {}).get("folds", [])
        (d / "folds.txt").write_text("".join(f"{note}\n" for note in notes)
                                     or "no fold fired\n")
        (d / f"{name}.opt.ll").write_text(self.optimized_ir())
        (d / f"{name}.s").write_text(self.assembly())


class LLVMSource(str):
    """The generated LLVM IR text; ``llvm_ir`` is the optimized IR plus the assembly."""

    artifacts = None

    @property
    def llvm_ir(self):
        a = self.artifacts
        return a.optimized_ir() + "\n; ---- assembly ----\n" + a.assembly()


def compile_llvm(program, dump_dir=None, cache=None, checks=()):
    """Compile ``program`` to a native step.

    Args:
        program: an ``ir.Program`` (planned or not).
        dump_dir: write the IR, optimized IR and assembly there.
        cache: an ``ObjectCache``; the process-wide default when None.
        checks: ("numerics",): stop at the first NaN or Inf (``numerics``).
    Returns:
        (step, source): ``step(*feeds, *variables) -> (fetches, updated variables)``, a
        ``runtime.llvm_step.NativeStep`` whose ``artifacts`` hold the code for dumps, and
        the IR text as an ``LLVMSource``.
    Raises:
        CompileError: an op without a kernel, or IR that LLVM rejects.
    Example:
        >>> step, ir_text = compile_llvm(program)
        >>> (loss,), new_vars = step(x, y, *variables)
    """
    t0 = time.perf_counter()
    if parallel.likely(program):  # the process's thread pool compiles while this lowers
        prefetch_pool()
    if PARTS > 1 and len(program.nodes) >= WORKER_EARLY_NODES:
        compile_worker.prestart(available_cores())  # (it starts in ~0.1 s, while this lowers)
    stats = {}
    text, layout = lower_program(program, profile=os.environ.get("GRAPHC_PROFILE") == "1",
                                 stats=stats, checks=checks)
    t1 = time.perf_counter()
    cache = cache or default_cache()
    key = cache_key(text, f"O{OPT_LEVEL}", f"codegen{CODEGEN_LEVEL}",
                    f"parts{PARTS}.{module_parts.VERSION}"
                    + ("" if module_parts.NAMED_PIPELINES else ".O2"))
    obj = cache.get(key)
    compiled = None
    if obj is None:
        if uses_pool(layout):
            prefetch_pool()  # (when ``likely`` missed it: compiled before the step's own)
        compiled = jit.compile_ir(text, OPT_LEVEL, CODEGEN_LEVEL, parts=PARTS,
                                  cores=available_cores())
        obj = compiled.object_code
        cache.put(key, obj)
    settle_pool()  # (the pool's compilation, when this step started it, is over)
    t2 = time.perf_counter()
    step = NativeStep(layout, jit.load_object(obj))
    t3 = time.perf_counter()
    timings = {"lower": t1 - t0, "llvm": t2 - t1, "load": t3 - t2}
    if compiled is not None:  # (compiled here or in the worker: LLVM's own stages)
        timings.update({f"llvm_{k}": v for k, v in compiled.timings.items()})
    step.artifacts = LLVMArtifacts(text, key, compiled, compiled is None, timings)
    step.artifacts.stats = stats
    step.llvm_ir = text
    step.optimized_ir = step.artifacts.optimized_ir
    step.assembly = step.artifacts.assembly
    if dump_dir is not None:
        step.artifacts.write(dump_dir, getattr(program, "name", "step"))
    source = LLVMSource(text)
    source.artifacts = step.artifacts
    return step, source


class LLVMBackend:
    """``codegen.BACKENDS["llvm"]``: lower, compile (or find in the object cache), load."""

    name = "llvm"
    checks = ("numerics",)

    def compile(self, program, checks=(), dump_dir=None, cache=None):
        """Compile ``program`` to a ``CompiledCode`` holding the native step, its IR, object
        code and layout; ``dump_dir`` gets ``step.ll``, ``step.opt.ll`` and ``step.s``."""
        step, source = compile_llvm(program, dump_dir=dump_dir, cache=cache, checks=checks)
        return CompiledCode("llvm", step, source,
                            rng_state=lambda: [int(v) for v in step.rng_state],
                            stats=step.artifacts.stats,
                            object_code=bytes(step.loaded.object_code), layout=step.layout)


BACKEND = LLVMBackend()
