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
host CPU with its full feature string: without both, loops do not vectorize
(``runtime.llvm_compile`` does it with llvmlite alone, for this process and the compile
worker). ``compile_ir(text, parts=6)`` compiles a big module as several, the compile worker
taking some at the same time when a core is free (``runtime.module_parts``); the object code
is then a bundle of object files that ``load_object`` loads into one engine.

Vectorizing a floating-point reduction additionally needs fast-math flags on the reduction in
the IR, and vectorizing without runtime alias checks needs ``noalias`` on pointer arguments;
those are the IR producer's job. Keep kernels in separate ``noinline`` functions: compile time grows
superlinearly when many loops share one function and linearly when they do not.

IR text must use opaque pointers (``ptr``): LLVM 17 and newer reject typed pointers.
"""
from __future__ import annotations

import collections
import contextlib
import ctypes
import functools
import hashlib
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Iterable, NamedTuple

import llvmlite
import numpy as np

from graphc.errors import ArtifactError, CompileError

from . import llvm_compile, module_parts
from .llvm_compile import llvm  # (llvmlite.binding, imported when first used)

__all__ = [
    "HostTarget", "CompiledModule", "CodeModule", "LoadedModule",
    "initialize", "host_target", "create_target_machine", "optimize_module",
    "compile_ir", "compile_here", "load_object", "engine_call", "step_function", "pointer_table",
    "address_of", "data_address", "llvmlite_version", "object_members",
]

def initialize() -> None:
    """Initialize LLVM's native target and assembly printer; later calls do nothing.

    ``llvmlite.binding.initialize()`` itself is deprecated and raises, so it is not called.

    Example:
        >>> initialize(); initialize()   # idempotent
    """
    llvm_compile.initialize()


class HostTarget(NamedTuple):
    """What object code is compiled for; also part of every object-cache key."""
    triple: str
    cpu: str
    features: str


@functools.lru_cache(maxsize=1)
def host_target() -> HostTarget:
    """Describe the CPU this process runs on.

    Cached: asking LLVM costs ~0.5 ms (the feature string comes from ``cpuid`` instructions,
    which a virtual machine traps, and llvmlite parses it into a map and back). A machine's
    CPU cannot change while it runs, so the answer is also kept for the next processes, in
    the store ``keep_hosts_in`` names (``objcache`` names the runtime cache, with its trust
    rules and checksums, when it is imported) under the id of the machine's boot and
    llvmlite's version (which pins LLVM's CPU tables); with no store or no boot id (not
    Linux), LLVM is asked in every process.

    Returns:
        HostTarget(triple, cpu, features), e.g. ``("x86_64-unknown-linux-gnu",
        "rocketlake", "+avx512f,+avx2,...")``.
    """
    key = _host_key() if _host_store.get("store") is not None else None
    if key is not None:
        known = _remembered_host(key)
        if known is not None:
            return known
    found = _ask_llvm()
    if key is not None and not any("\n" in field for field in found):
        remember_for_boot(key, "\n".join(found).encode())
    return found


class VectorUnit(NamedTuple):
    """The host's float vectors: bytes per register and number of registers."""
    bytes: int
    registers: int


@functools.lru_cache(maxsize=1)
def host_vector_unit() -> VectorUnit | None:
    """The host's widest float vectors native GEMMs may use (AVX-512, or AVX2 with FMA), or
    None (BLAS then does every GEMM), from ``host_target``'s features."""
    feats = set(host_target().features.split(","))
    if "+avx512f" in feats:
        return VectorUnit(64, 32)
    if "+avx2" in feats and "+fma" in feats:
        return VectorUnit(32, 16)
    return None


def keep_hosts_in(read, write):
    """Keep ``host_target``'s answer between processes with ``read(key) -> bytes or None``
    and ``write(key, bytes)`` (keys: 64 hex digits)."""
    _host_store["store"] = (read, write)


_host_store = {}  # "store": (read, write) of keep_hosts_in


def _ask_llvm() -> HostTarget:
    initialize()
    try:
        features = llvm.get_host_cpu_features().flatten()
    except RuntimeError:  # some hosts cannot report features; the CPU name still implies most
        features = ""
    return HostTarget(llvm.get_process_triple(), llvm.get_host_cpu_name(), features)


_BOOT_ID = "/proc/sys/kernel/random/boot_id"


def boot_key(what: bytes, *parts: bytes) -> str | None:
    """The key (64 hex digits) of a fact ``what`` about this machine (qualified by
    ``parts``) that holds until it reboots, or None (no boot id: not Linux)."""
    try:
        with open(_BOOT_ID, "rb") as f:
            boot = f.read().strip()
    except OSError:
        return None
    if not boot:
        return None
    return hashlib.sha256(b"\0".join([what, boot, *parts])).hexdigest()


def recall_for_boot(key):
    """What ``remember_for_boot`` kept under ``key`` (a ``boot_key``) in the store
    ``keep_hosts_in`` names, or None (nothing, no store, or it cannot be read)."""
    store = _host_store.get("store")
    if key is None or store is None:
        return None
    try:
        return store[0](key)
    except (OSError, ValueError):
        return None


def remember_for_boot(key, data: bytes):
    """Keep ``data`` under ``key`` (a ``boot_key``) where ``keep_hosts_in`` says, if
    anywhere (a store that cannot be written is left as it is)."""
    store = _host_store.get("store")
    if key is not None and store is not None:
        try:
            store[1](key, data)
        except (OSError, ValueError):
            pass


def _host_key():
    """The key of this boot's host description, or None (no boot id)."""
    return boot_key(b"host target", llvmlite.__version__.encode(), os.uname().machine.encode())


def _remembered_host(key):
    payload = recall_for_boot(key)
    try:
        fields = None if payload is None else bytes(payload).decode().split("\n")
    except ValueError:
        return None
    return HostTarget(*fields) if fields is not None and len(fields) == 3 else None


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
    t = target or host_target()
    return llvm_compile.target_machine(opt, *t)


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
    llvm_compile.optimize_module(module, level, target_machine or create_target_machine())


@dataclass
class CompiledModule:
    """Object code for one LLVM module, plus what is needed to dump it.

    Attributes:
        object_code: a relocatable object file (ELF on Linux) for ``load_object``, or a
            bundle of them when the module was compiled in parts (``module_parts.pack``).
        sources: the IR text compiled (of each part, in order).
        functions: names of the externally visible functions defined in the module.
        target: the target the code was compiled for.
        opt, codegen_opt: IR and code generation optimization levels.
        timings: seconds spent in ``parse``, ``optimize`` and ``emit`` (in this process);
            for a module in parts, those of the parts compiled here, ``wait`` (for the
            worker's last part, after this process's) and ``elsewhere`` (the worker's
            parse, optimize and emit).
        optimized_ir: the module's IR after the optimization pipeline (the parts' modules
            one after the other, each after a ``PART_MARK`` line but the first), made
            again on first access: most compilations are never dumped.
    """
    object_code: bytes
    sources: tuple[str, ...]
    functions: tuple[str, ...]
    target: HostTarget
    opt: int = 2
    codegen_opt: int = 2
    timings: dict[str, float] = field(default_factory=dict)
    _optimized: str | None = field(default=None, repr=False, compare=False)

    @property
    def optimized_ir(self) -> str:
        if self._optimized is None:
            try:
                self._optimized = PART_MARK.join(
                    llvm_compile.optimized_text(s, self.opt, self.codegen_opt, tuple(self.target))
                    for s in self.sources)
            except llvm_compile.IRError as exc:
                raise _ir_error(exc) from None
        return self._optimized

    def assembly(self) -> str:
        """Return the native assembly of the optimized module (of each part, in order).

        Produced on demand from ``optimized_ir`` because object emission rewrites the IR it
        is given (CodeGenPrepare), and most compilations never need the assembly dump.
        """
        out = []
        for text in self.optimized_ir.split(PART_MARK):
            with _parsed(text) as module:
                tm = create_target_machine(self.codegen_opt, self.target)
                out.append(tm.emit_assembly(module))
        return PART_MARK.join(out)


PART_MARK = "\n; ==== the next part: a module of its own ====\n"


@contextlib.contextmanager
def _parsed(ir_text: str):
    """IR text -> verified ModuleRef (``llvm_compile.parsed``), LLVM's complaints as
    CompileError."""
    try:
        with llvm_compile.parsed(ir_text) as module:
            yield module
    except llvm_compile.IRError as exc:
        raise _ir_error(exc) from None


def _ir_error(exc) -> CompileError:
    return CompileError(exc.headline, details=exc.details,
                        hint="IR from graphc's LLVM backend should always be valid: "
                             "please report this with the IR dump")


def compile_ir(ir_text: str, opt: int = 2, codegen_opt: int = 2,
               target: HostTarget | None = None, parts: int = 1,
               cores: int | None = None) -> CompiledModule:
    """Parse, verify, optimize and compile LLVM IR text to object code.

    Args:
        ir_text: a whole LLVM module in textual IR (opaque pointers).
        opt: IR optimization level 0..3 for the new pass manager pipeline.
        codegen_opt: code generation level 0..3; 0..2 keep compile time low.
        target: what to compile for; the host when None.
        parts: compile the module as this many modules (``module_parts.split``; fewer
            when it does not split): this process takes them first to last, the compile
            worker at the same time last to first when a core is free for it
            (``compile_worker.parallel``). The object code is a bundle then, the same
            whatever compiled which part.
        cores: how many cores this process may use (``threads.available_cores``); its
            affinity mask when None.

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
    texts = module_parts.split(ir_text, parts) if parts > 1 else [ir_text]
    if len(texts) > 1:
        return _compile_parts(texts, opt, codegen_opt, t, cores or _affinity())
    return _compile_one(ir_text, opt, codegen_opt, t)


def _compile_one(ir_text, opt, codegen_opt, t):
    from . import compile_worker  # (compiling only: a loaded step needs none of it)
    if compile_worker.wanted():
        fields = _in_worker(ir_text, opt, codegen_opt, t)
        if fields is not None:
            return _compiled(fields, ir_text, t, opt, codegen_opt)
    return compile_here(ir_text, opt, codegen_opt, t)


def _in_worker(ir_text, opt, codegen_opt, t):
    from . import compile_worker
    try:
        return compile_worker.compile_in_worker(ir_text, opt, codegen_opt, t)
    except llvm_compile.IRError as exc:
        raise _ir_error(exc) from None


def _affinity():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _compile_parts(texts, opt, codegen_opt, t, cores):
    """Compile the parts here, first to last, while the worker takes them last to first when
    a core is free for it; each part compiles once, wherever. One bundle, in order."""
    results = [None] * len(texts)
    left = collections.deque(range(len(texts)))  # (deque pops are atomic)
    elsewhere = []

    def take(front):
        try:
            return left.popleft() if front else left.pop()
        except IndexError:
            return None

    def worker_takes():
        while (k := take(False)) is not None:
            try:
                fields = _in_worker(texts[k], opt, codegen_opt, t)
            except CompileError as exc:
                results[k] = exc
                return
            if fields is None:  # the worker failed: this part compiles here, afterwards
                left.append(k)
                return
            results[k] = _compiled(fields, texts[k], t, opt, codegen_opt)
            elsewhere.append(k)
    helper = None
    from . import compile_worker
    if compile_worker.parallel(cores):
        helper = threading.Thread(target=worker_takes, name="graphc-compile-parts",
                                  daemon=True)
        helper.start()
    while (k := take(True)) is not None:
        results[k] = _compile_one(texts[k], opt, codegen_opt, t)
    t0 = time.perf_counter()
    if helper is not None:
        helper.join()
    wait = time.perf_counter() - t0
    for k, r in enumerate(results):
        if isinstance(r, CompileError):
            raise r
        if r is None:  # (given back by a worker that failed)
            results[k] = compile_here(texts[k], opt, codegen_opt, t)
    here = [r for k, r in enumerate(results) if k not in elsewhere]
    timings = {stage: sum(r.timings[stage] for r in here)
               for stage in ("parse", "optimize", "emit")}
    timings.update(wait=wait, elsewhere=sum(sum(results[k].timings.values())
                                            for k in elsewhere))
    return CompiledModule(module_parts.pack([r.object_code for r in results]),
                          tuple(texts), tuple(f for r in results for f in r.functions), t,
                          opt, codegen_opt, timings)


def _compiled(fields, ir_text, t, opt, codegen_opt):
    return CompiledModule(fields["object_code"], (ir_text,), tuple(fields["functions"]), t,
                          opt, codegen_opt, dict(fields["timings"]))


def compile_here(ir_text: str, opt: int = 2, codegen_opt: int = 2,
                 target: HostTarget | None = None) -> CompiledModule:
    """``compile_ir`` of one module in this process, whatever ``GRAPHC_COMPILE_WORKER``
    says."""
    t = target or host_target()
    try:
        fields = llvm_compile.compile_text(ir_text, opt, codegen_opt, tuple(t))
    except llvm_compile.IRError as exc:
        raise _ir_error(exc) from None
    return _compiled(fields, ir_text, t, opt, codegen_opt)


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


class CodeModule:
    """Machine code a step runs, loaded by ``load_object`` (``LoadedModule``) or by the
    dynamic loader (``shared_object.SharedModule``): the object code it came from, its
    functions' addresses (``address``, by the subclass) and callables, and ``close``."""

    def __init__(self, object_code: bytes | memoryview):
        self._object_code = object_code
        self._kept = False  # the code also runs what outlives this module's users

    @property
    def object_code(self) -> bytes:
        """The object code this module was loaded (or linked) from."""
        if not isinstance(self._object_code, bytes):  # (a view of a cache entry: copied
            self._object_code = bytes(self._object_code)  # when first asked for)
        return self._object_code

    def keep_open(self) -> None:
        """The module also holds code that must outlive every user of it (the thread pool,
        loaded with a step's code): ``close`` then frees nothing."""
        self._kept = True

    def address(self, name: str) -> int:
        raise NotImplementedError

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


class LoadedModule(CodeModule):
    """Object code loaded into an MCJIT engine; lives as long as this object does."""

    def __init__(self, engine, object_code: bytes | memoryview):
        super().__init__(object_code)
        self._engine = engine

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

    def close(self) -> None:
        """Free the machine code; functions obtained from this module must not be called
        (unless ``keep_open`` was called: the code then stays, for the pool's sake)."""
        if self._engine is not None and not self._kept:
            self._engine.close()
            self._engine = None


def load_object(object_code: bytes, target: HostTarget | None = None,
                also: Iterable[bytes] = ()) -> LoadedModule:
    """Load object code produced by ``compile_ir`` (in this process or another).

    The engine starts from an empty module; the object file is relocated into memory by
    MCJIT. Loading a one-kernel object costs ~1 ms.

    Args:
        object_code: bytes of ``CompiledModule.object_code`` (one object file, or the
            bundle of a module compiled in parts: its members go into one engine).
        target: the target the engine is created for; the host when None.
        also: more object code for the same engine (a step's and the thread pool's: one
            engine instead of two, ~0.3 ms less); ``LoadedModule.object_code`` is still
            ``object_code``.

    Raises:
        ArtifactError: the bytes are not an object file LLVM can read (truncated or
            garbage). Corrupted code inside a well-formed file is not detected here; the
            object cache and artifact format guard that with checksums.

    Example:
        >>> loaded = load_object(compile_ir(ir_text).object_code)
        >>> loaded.function("step")(table)
    """
    initialize()
    # A bundle's first member holds the step, which calls kernels the others define: loaded
    # after them, its references resolve as it is added (adding and finalizing the 10k-node
    # RNN's 6 members: 2.4-3.2 -> 2.0 ms).
    object_files = [_object_file(o) for code in (object_code, *also)
                    for o in reversed(object_members(code))]
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
    for object_file in object_files:  # (one engine: it links the parts' references)
        engine.add_object_file(object_file)
    engine.finalize_object()
    return LoadedModule(engine, object_code)


def object_members(object_code):
    """The object files in ``object_code``: itself, or a bundle's members (views of it).

    Raises:
        ArtifactError: a damaged bundle.
    """
    if not module_parts.is_bundle(object_code):
        return [object_code]
    try:
        return module_parts.unpack(object_code)
    except ValueError as exc:
        raise ArtifactError(f"not loadable object code: {exc}") from None


def _object_file(data):
    object_file = llvm.ObjectFileRef.from_data(data if isinstance(data, bytes) else bytes(data))
    if not object_file._ptr:  # LLVM rejects it; adding a null object file would segfault
        raise ArtifactError(
            f"not a loadable object file ({len(data)} bytes, starts {bytes(data[:4])!r})")
    return object_file


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
    table = (ctypes.c_void_p * max(len(keepalive), 1))()  # (null slots: left as they are)
    for k, item in enumerate(keepalive):
        if item is not None:
            table[k] = address_of(item)
    return table, keepalive


def llvmlite_version() -> str:
    """The llvmlite version, which pins the LLVM version; part of object-cache keys."""
    return llvmlite.__version__
