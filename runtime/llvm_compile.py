"""LLVM IR text -> object code, with llvmlite alone: what the process and the compile worker run.

This module imports nothing but llvmlite and the standard library, so the compile worker
(``runtime.compile_worker``) can load it by path in a fresh interpreter in a fraction of the
time the ``graphc`` package and NumPy take to import (measured where Python's bytecode is not
cached: ready to compile in ~0.11 s, against ~0.6 s through ``graphc.runtime``).
``runtime.jit`` wraps it with graphc's types and errors; call ``jit.compile_ir`` rather than
this.

Compilation uses LLVM's new pass manager (the only one llvmlite >= 0.45 has) and targets the
given CPU with its full feature string: without both, loops do not vectorize.

A module text whose first line is ``PIPELINE_MARK + name`` (a part of a module split by
``runtime.module_parts``, holding kernels that asked for it) is optimized with the pipeline
``PIPELINES[name]`` instead of ``O<opt>``.
"""
import contextlib
import importlib
import threading
import time


class _Binding:
    """``llvmlite.binding``, imported on the first attribute read and then kept on this
    object. Importing it loads LLVM's shared library (~25 ms); a process whose steps all
    come from the compile cache opens them with the dynamic loader (``shared_object``) and
    reads its host's description from the runtime cache, and never needs it. (This module
    is also loaded alone, by file, in the compile worker: no package-relative import.)"""

    def __getattr__(self, name):
        value = getattr(importlib.import_module("llvmlite.binding"), name)
        setattr(self, name, value)
        return value


llvm = _Binding()

__all__ = ["IRError", "initialize", "target_machine", "optimize_module", "parsed",
           "compile_text", "optimized_text", "PIPELINES", "PIPELINE_MARK", "pipeline_of"]

_init_lock = threading.Lock()
_initialized = False


class IRError(Exception):
    """IR that does not parse or verify: ``headline`` and LLVM's diagnostic lines."""

    def __init__(self, headline, details):
        super().__init__(headline)
        self.headline, self.details = headline, list(details)


def initialize():
    """Initialize LLVM's native target and assembly printer; later calls do nothing."""
    global _initialized
    if _initialized:
        return
    with _init_lock:
        if not _initialized:
            llvm.initialize_native_target()
            llvm.initialize_native_asmprinter()
            _initialized = True


def target_machine(opt, triple, cpu, features):
    """A new target machine (~0.2 ms): one must not be shared across threads."""
    initialize()
    return llvm.Target.from_triple(triple).create_target_machine(
        cpu=cpu, features=features, opt=opt, reloc="default", codemodel="jitdefault")


def optimize_module(module, level, tm):
    """Run the new pass manager's ``O<level>`` pipeline on ``module`` in place, loop and SLP
    vectorization on from level 2 (the vector widths come from ``tm``'s cost model)."""
    if not module.triple:
        module.triple = tm.triple
    if not module.data_layout:
        module.data_layout = str(tm.target_data)
    pto = llvm.create_pipeline_tuning_options(speed_level=level)
    pto.loop_vectorization = level >= 2
    pto.slp_vectorization = level >= 2
    pto.loop_unrolling = level >= 2
    pb = llvm.create_pass_builder(tm, pto)
    mpm = pb.getModulePassManager()
    try:
        mpm.run(module, pb)
    finally:  # freed now, not whenever the collector gets to them
        mpm.close()
        pb.close()
        pto.close()


def _vector_pipeline(module, tm):
    """For kernels written as vector code (graphc's GEMM micro-kernels): their loops are
    already vectorized, blocked and unrolled as wanted, so LLVM's O2 (loop and SLP
    vectorizers, unrolling, LICM, GVN...) only costs time; what they need is helpers
    inlined and their index arithmetic and vector splats folded."""
    pto = llvm.create_pipeline_tuning_options(speed_level=0)
    pb = llvm.create_pass_builder(tm, pto)
    mpm = llvm.create_new_module_pass_manager()
    try:
        mpm.add_always_inliner_pass()
        mpm.add_instruction_combine_pass()
        mpm.add_simplify_cfg_pass()
        mpm.run(module, pb)
    finally:
        mpm.close()
        pb.close()
        pto.close()


# Named pipelines a module text may ask for (``PIPELINE_MARK``): name -> f(module, tm).
PIPELINES = {"vector": _vector_pipeline}
PIPELINE_MARK = "; graphc-pipeline: "


def pipeline_of(ir_text):
    """The pipeline ``ir_text`` names on its first line (``PIPELINE_MARK``), or None."""
    if not ir_text.startswith(PIPELINE_MARK):
        return None
    return ir_text.split("\n", 1)[0][len(PIPELINE_MARK):].strip()


@contextlib.contextmanager
def parsed(ir_text):
    """IR text -> verified ModuleRef, in a private LLVM context freed on exit.

    A private context per compilation keeps types from piling up in the global context over
    thousands of compilations and keeps concurrent compilations apart.

    Raises:
        IRError: the text does not parse or fails the verifier.
    """
    initialize()
    context = llvm.create_context()
    module = None
    try:
        try:
            module = llvm.parse_assembly(ir_text, context=context)
        except RuntimeError as exc:
            raise _error("LLVM IR does not parse", exc) from None
        try:
            module.verify()
        except RuntimeError as exc:
            raise _error("LLVM IR fails verification", exc) from None
        yield module
    finally:
        if module is not None:
            module.close()  # before its context: a module must not outlive its context
        context.close()


def _error(headline, exc):
    # llvmlite prefixes its own headline; the LLVM diagnostic (line:col, caret) follows it.
    diagnostic = str(exc).removeprefix("LLVM IR parsing error\n").strip()
    return IRError(headline, diagnostic.splitlines())


def compile_text(ir_text, opt, codegen_opt, target):
    """Parse, verify, optimize and emit ``ir_text`` for ``target`` (triple, cpu, features).

    Returns:
        dict(object_code, functions, timings): the fields of ``jit.CompiledModule`` that
        compilation produces; ``timings`` in seconds for ``parse``, ``optimize`` and
        ``emit``. (The optimized IR is not printed: ~4% of the time, and only dumps read it;
        ``optimized_text`` gives it.)

    Raises:
        IRError: as ``parsed``; or the text names a pipeline not in ``PIPELINES``.
    """
    t0 = time.perf_counter()
    pipeline = _named(ir_text)
    with parsed(ir_text) as module:
        t1 = time.perf_counter()
        tm = _optimize(module, opt, codegen_opt, target, pipeline)
        t2 = time.perf_counter()
        functions = tuple(f.name for f in module.functions
                          if not f.is_declaration and f.linkage.name == "external")
        object_code = tm.emit_object(module)
        t3 = time.perf_counter()
    return {"object_code": object_code, "functions": functions,
            "timings": {"parse": t1 - t0, "optimize": t2 - t1, "emit": t3 - t2}}


def optimized_text(ir_text, opt, codegen_opt, target):
    """The IR ``compile_text`` emits object code from (the pipeline is deterministic)."""
    pipeline = _named(ir_text)
    with parsed(ir_text) as module:
        _optimize(module, opt, codegen_opt, target, pipeline)
        return str(module)


def _optimize(module, opt, codegen_opt, target, pipeline=None):
    """Optimize ``module`` for ``target`` (with ``PIPELINES[pipeline]``, else ``O<opt>``);
    returns the machine that emits it."""
    tm = target_machine(codegen_opt, *target)
    module.triple = target[0]
    module.data_layout = str(tm.target_data)
    if pipeline is None:
        optimize_module(module, opt, tm)
    else:
        PIPELINES[pipeline](module, tm)
    return tm


def _named(ir_text):
    """``pipeline_of(ir_text)``, checked against ``PIPELINES``."""
    name = pipeline_of(ir_text)
    if name is not None and name not in PIPELINES:
        raise IRError(f"LLVM IR asks for an unknown pipeline {name!r}",
                      [f"known: {', '.join(sorted(PIPELINES))}"])
    return name
