"""LLVM IR text -> optimized object code -> addresses that Python can call.

The life of a native step::

    compiled = compile_ir(ir_text)            # parse, verify, optimize, emit object bytes
    loaded = load_object(compiled.object_code)   # works in a fresh process, too
    table, keep = pointer_table([a, b, out])  # one ``void*`` slot per buffer
    loaded.function("step")(table)            # ``void step(ptr %table)``

Every exported entry point has the signature ``void f(ptr %table)``: it loads its buffer
pointers (and BLAS function pointers, see ``graphc.runtime.blas``) from the table, so the
object code has no unresolved symbols and needs no link step. MCJIT segfaults on a missing
symbol instead of raising, which is why external functions must come in through the table.

Compilation uses LLVM's new pass manager (the only one llvmlite >= 0.45 has) and targets the
host CPU with its full feature string: without both, loops do not vectorize. Vectorizing a
floating-point reduction additionally needs fast-math flags on the reduction in the IR, and
vectorizing without runtime alias checks needs ``noalias`` on pointer arguments; those are
the IR producer's job. Keep kernels in separate ``noinline`` functions: compile time grows
superlinearly when many loops share one function and linearly when they do not.

IR text must use opaque pointers (``ptr``): LLVM 17 and newer reject typed pointers.
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import threading
import time
from dataclasses import dataclass, field
from typing import Iterable, NamedTuple

import llvmlite
import llvmlite.binding as llvm
import numpy as np

from graphc.errors import ArtifactError, CompileError

from . import compile_worker

__all__ = [
    "HostTarget", "CompiledModule", "LoadedModule",
    "initialize", "host_target", "create_target_machine", "optimize_module",
    "compile_ir", "compile_here", "load_object", "engine_call", "step_function", "pointer_table",
    "address_of", "data_address", "llvmlite_version",
]

_init_lock = threading.Lock()
_initialized = False


def initialize() -> None:
    """Initialize LLVM's native target and assembly printer; later calls do nothing.

    ``llvmlite.binding.initialize()`` itself is deprecated and raises, so it is not called.

    Example:
        >>> initialize(); initialize()   # idempotent
    """
    global _initialized
    if _initialized:
        return
    with _init_lock:
        if not _initialized:
            llvm.initialize_native_target()
            llvm.initialize_native_asmprinter()
            _initialized = True


class HostTarget(NamedTuple):
    """What object code is compiled for; also part of every object-cache key."""
    triple: str
    cpu: str
    features: str


@functools.lru_cache(maxsize=1)
def host_target() -> HostTarget:
    """Describe the CPU this process runs on.

    Cached: querying the feature string costs ~0.25 ms.

    Returns:
        HostTarget(triple, cpu, features), e.g. ``("x86_64-unknown-linux-gnu",
        "rocketlake", "+avx512f,+avx2,...")``.
    """
    initialize()
    try:
        features = llvm.get_host_cpu_features().flatten()
    except RuntimeError:  # some hosts cannot report features; the CPU name still implies most
        features = ""
    return HostTarget(llvm.get_process_triple(), llvm.get_host_cpu_name(), features)


def create_target_machine(opt: int = 2, target: HostTarget | None = None):
    """Create a target machine for the host (or the given target).

    A new machine per call (~0.2 ms): a machine must not be shared across threads, and an
    MCJIT engine takes ownership of the one it is given.

    Args:
        opt: code generation optimization level 0..3 (instruction selection, scheduling,
            register allocation). 2 is the measured compile-time/speed trade-off.
        target: the triple/cpu/features to compile for; the host when None.

    Returns:
        llvmlite.binding.TargetMachine.
    """
    initialize()
    t = target or host_target()
    return llvm.Target.from_triple(t.triple).create_target_machine(
        cpu=t.cpu, features=t.features, opt=opt, reloc="default", codemodel="jitdefault")


def optimize_module(module, level: int = 2, target_machine=None) -> None:
    """Run LLVM's new-pass-manager pipeline ``O<level>`` on ``module`` in place.

    Loop and SLP vectorization are switched on explicitly; the cost model that decides
    vector widths comes from ``target_machine``, so the module's triple and data layout are
    set from it when the module has none.

    Args:
        module: an llvmlite ``ModuleRef``, already verified.
        level: IR optimization level 0..3.
        target_machine: the machine the code is for; a host machine when None.
    """
    tm = target_machine or create_target_machine()
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


@dataclass
class CompiledModule:
    """Object code for one LLVM module, plus what is needed to dump it.

    Attributes:
        object_code: a relocatable object file (ELF on Linux) for ``load_object``.
        optimized_ir: the module's IR after the optimization pipeline.
        functions: names of the externally visible functions defined in the module.
        target: the target the code was compiled for.
        opt, codegen_opt: IR and code generation optimization levels.
        timings: seconds spent in ``parse``, ``optimize`` and ``emit``.
    """
    object_code: bytes
    optimized_ir: str
    functions: tuple[str, ...]
    target: HostTarget
    opt: int = 2
    codegen_opt: int = 2
    timings: dict[str, float] = field(default_factory=dict)

    def assembly(self) -> str:
        """Return the native assembly of the optimized module.

        Produced on demand from ``optimized_ir`` because object emission rewrites the IR it
        is given (CodeGenPrepare), and most compilations never need the assembly dump.
        """
        with _parsed(self.optimized_ir) as module:
            return create_target_machine(self.codegen_opt, self.target).emit_assembly(module)


@contextlib.contextmanager
def _parsed(ir_text: str):
    """IR text -> verified ModuleRef, in a private LLVM context freed on exit.

    A private context per compilation keeps types from piling up in the global context over
    thousands of compilations and keeps concurrent compilations apart.
    """
    context = llvm.create_context()
    module = None
    try:
        try:
            module = llvm.parse_assembly(ir_text, context=context)
        except RuntimeError as exc:
            raise _ir_error("LLVM IR does not parse", exc) from None
        try:
            module.verify()
        except RuntimeError as exc:
            raise _ir_error("LLVM IR fails verification", exc) from None
        yield module
    finally:
        if module is not None:
            module.close()  # before its context: a module must not outlive its context
        context.close()


def _ir_error(headline: str, exc: RuntimeError) -> CompileError:
    # llvmlite prefixes its own headline; the LLVM diagnostic (line:col, caret) follows it.
    diagnostic = str(exc).removeprefix("LLVM IR parsing error\n").strip()
    return CompileError(headline, details=diagnostic.splitlines(),
                        hint="IR from graphc's LLVM backend should always be valid: "
                             "please report this with the IR dump")


def compile_ir(ir_text: str, opt: int = 2, codegen_opt: int = 2,
               target: HostTarget | None = None) -> CompiledModule:
    """Parse, verify, optimize and compile LLVM IR text to object code.

    Args:
        ir_text: a whole LLVM module in textual IR (opaque pointers).
        opt: IR optimization level 0..3 for the new pass manager pipeline.
        codegen_opt: code generation level 0..3; 0..2 keep compile time low.
        target: what to compile for; the host when None.

    Returns:
        A CompiledModule holding the object bytes and the optimized IR.

    Raises:
        CompileError: the IR does not parse or fails the LLVM verifier; the message carries
            LLVM's diagnostic (line, column and the offending text).

    Where it runs: llvmlite leaks ~100-140 KB of native memory per optimization pipeline,
    so beyond the first few dozen compilations of a process (``GRAPHC_COMPILE_WORKER``:
    auto, 1, 0) the work goes to a helper process that is replaced every 100 compilations
    (``runtime.compile_worker``); the result is the same object code.

    Example:
        >>> compiled = compile_ir("define void @step(ptr %t) {\\n  ret void\\n}")
        >>> compiled.functions
        ('step',)
    """
    t = target or host_target()
    if compile_worker.wanted():
        fields = compile_worker.compile_in_worker(ir_text, opt, codegen_opt, t)
        if fields is not None:
            return CompiledModule(**dict(fields, target=HostTarget(*fields["target"])))
    return compile_here(ir_text, opt, codegen_opt, t)


def compile_here(ir_text: str, opt: int = 2, codegen_opt: int = 2,
                 target: HostTarget | None = None) -> CompiledModule:
    """``compile_ir`` in this process, whatever ``GRAPHC_COMPILE_WORKER`` says."""
    t = target or host_target()
    t0 = time.perf_counter()
    with _parsed(ir_text) as module:
        tm = create_target_machine(codegen_opt, t)
        module.triple = t.triple
        module.data_layout = str(tm.target_data)
        t1 = time.perf_counter()
        optimize_module(module, opt, tm)
        t2 = time.perf_counter()
        optimized_ir = str(module)  # before emission, which rewrites the IR in place
        functions = tuple(f.name for f in module.functions
                          if not f.is_declaration and f.linkage.name == "external")
        object_code = tm.emit_object(module)
        t3 = time.perf_counter()
    return CompiledModule(object_code, optimized_ir, functions, t, opt, codegen_opt,
                          {"parse": t1 - t0, "optimize": t2 - t1, "emit": t3 - t2})


_STEP_TYPE = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


@functools.lru_cache(maxsize=1024)
def step_function(address: int):
    """Return a ctypes callable for the ``void f(void *table)`` at ``address`` (cached).

    The callable does not keep any engine alive; prefer ``LoadedModule.function``.
    """
    return _STEP_TYPE(address)


def engine_call(address: int, table_ptr) -> None:
    """Call the ``void f(void *table)`` at ``address`` with ``table_ptr``.

    Args:
        address: a function address from ``LoadedModule.address``.
        table_ptr: an int address (fastest) or the ctypes array from ``pointer_table``.
    """
    step_function(address)(table_ptr)


class LoadedModule:
    """Object code loaded into an MCJIT engine; lives as long as this object does."""

    def __init__(self, engine, object_code: bytes):
        self._engine = engine
        self.object_code = object_code

    def address(self, name: str) -> int:
        """Return the address of the function ``name``.

        Raises:
            ArtifactError: the object code defines no such function, or the module is closed.
        """
        if self._engine is None:
            raise ArtifactError(f"cannot look up {name!r}: the loaded module was closed")
        address = self._engine.get_function_address(name)
        if not address:
            raise ArtifactError(f"the object code defines no function named {name!r}")
        return address

    def function(self, name: str):
        """Return a callable for ``void name(ptr %table)`` that keeps this module alive.

        The callable is a plain ctypes function (the cheapest call Python has, ~0.15 us)
        carrying ``.module`` (this object, so the code outlives the callable), ``.name``
        and ``.address``. Call it with the table or, ~0.07 us faster, with the table's int
        address (``ctypes.addressof(table)``). ctypes releases the GIL during the call.

        Raises:
            ArtifactError: as ``address``.
        """
        address = self.address(name)
        fn = _STEP_TYPE(address)
        fn.module, fn.name, fn.address = self, name, address
        return fn

    def close(self) -> None:
        """Free the machine code; functions obtained from this module must not be called."""
        if self._engine is not None:
            self._engine.close()
            self._engine = None


def load_object(object_code: bytes, target: HostTarget | None = None) -> LoadedModule:
    """Load object code produced by ``compile_ir`` (in this process or another).

    The engine starts from an empty module; the object file is relocated into memory by
    MCJIT. Loading a one-kernel object costs ~1 ms.

    Args:
        object_code: bytes of ``CompiledModule.object_code``.
        target: the target the engine is created for; the host when None.

    Raises:
        ArtifactError: the bytes are not an object file LLVM can read (truncated or
            garbage). Corrupted code inside a well-formed file is not detected here; the
            object cache and artifact format guard that with checksums.

    Example:
        >>> loaded = load_object(compile_ir(ir_text).object_code)
        >>> loaded.function("step")(table)
    """
    initialize()
    object_file = llvm.ObjectFileRef.from_data(bytes(object_code))
    if not object_file._ptr:  # LLVM rejects it; adding a null object file would segfault
        raise ArtifactError(
            f"not a loadable object file ({len(object_code)} bytes, starts {object_code[:4]!r})")
    t = target or host_target()
    empty = llvm.parse_assembly("")
    empty.triple = t.triple
    # The engine compiles nothing: its module goes before finalizing, which then only
    # relocates the object code (compiling even an empty module cost ~0.5-1 ms), and its
    # machine needs no CPU or features (~0.2 ms cheaper to create than the host's).
    machine = llvm.Target.from_triple(t.triple).create_target_machine(opt=0,
                                                                      codemodel="jitdefault")
    engine = llvm.create_mcjit_compiler(empty, machine)
    engine.remove_module(empty)
    empty.close()
    engine.add_object_file(object_file)
    engine.finalize_object()
    return LoadedModule(engine, object_code)


def address_of(item) -> int:
    """Return the address a table slot should hold for ``item``.

    Args:
        item: a C-contiguous numpy array (its data pointer), an int (an address, e.g. a
            BLAS function pointer), None (a null slot) or a ctypes object (its address).

    Raises:
        ValueError: a numpy array that is not C-contiguous; kernels index it densely.
        TypeError: anything else.
    """
    if isinstance(item, np.ndarray):
        if not item.flags.c_contiguous:
            raise ValueError(f"table slots need C-contiguous arrays, got strides {item.strides}")
        return data_address(item)
    if isinstance(item, (int, np.integer)):
        return int(item)
    if item is None:
        return 0
    if isinstance(item, ctypes._SimpleCData | ctypes.Array | ctypes.Structure):
        return ctypes.addressof(item)
    raise TypeError(f"cannot put a {type(item).__name__} into a pointer table")


def _interface_address(arr) -> int:
    """The address of ``arr``'s first element, as NumPy publishes it (~3 us: it builds a
    dict; ``arr.ctypes.data`` costs as much)."""
    return arr.__array_interface__["data"][0]


def _header_address(arr) -> int:
    """The address of ``arr``'s first element read from the array object itself (~0.35 us):
    NumPy's ``PyArrayObject_fields`` puts the data pointer right after the object header,
    and CPython's ``id`` is the object's address (``_header_reads_data`` checks both)."""
    return _read_pointer(id(arr) + _DATA_OFFSET).value


def _header_reads_data():
    """Whether ``_header_address`` agrees with NumPy on arrays that own their memory, views,
    0-d and empty arrays."""
    base = np.arange(12.0)
    probes = [base, base[3:], base.reshape(3, 4)[1:], np.zeros(()), np.zeros(0, np.int8)]
    return all(_header_address(a) == _interface_address(a) for a in probes)


_DATA_OFFSET = object.__basicsize__
_read_pointer = ctypes.c_void_p.from_address
# The address of an ndarray's first element (callers make sure it is an ndarray): a step
# reads it whenever a call binds a new feed array, so the cheap way when it is right here.
data_address = _header_address if _header_reads_data() else _interface_address


def pointer_table(items: Iterable) -> tuple[ctypes.Array, list]:
    """Build the ``void*`` table an entry point reads its buffers from.

    Addresses are read once here; a slot can later be rebound with
    ``table[i] = address_of(new_array)`` (and ``keepalive[i] = new_array``).

    Args:
        items: numpy arrays, raw int addresses, None or ctypes objects, one per slot.

    Returns:
        (table, keepalive): the ctypes ``c_void_p`` array, and a list holding the items so
        their memory outlives the table. Keep both for as long as the table is used.

    Example:
        >>> table, keep = pointer_table([a, b, out, gemm_pointer(np.float32)])
        >>> table[0] == a.__array_interface__["data"][0]
        True
    """
    keepalive = list(items)
    table = (ctypes.c_void_p * max(len(keepalive), 1))(*map(address_of, keepalive))
    return table, keepalive


def llvmlite_version() -> str:
    """The llvmlite version, which pins the LLVM version; part of object-cache keys."""
    return llvmlite.__version__
