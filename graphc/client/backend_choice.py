"""Which backend a Session or ``gc.compile`` uses when it names none.

LLVM when it works on this host, NumPy on request (``backend="numpy"`` or
``GRAPHC_BACKEND=numpy``) or as the fallback when LLVM cannot be used, announced by one
line on stderr, once per process. "Works on this host" is decided by a probe: the LLVM
backend imports, and a one-instruction function compiles, loads and runs; one that passed is
remembered until the machine reboots (``llvm_problem``).
"""
import functools
import os
import sys

BACKEND_NAMES = ("numpy", "llvm")

_PROBE_IR = """define void @probe(ptr %table) {
  store i32 42, ptr %table
  ret void
}
"""

_announced = False


@functools.lru_cache(maxsize=1)
def llvm_problem():
    """Why the LLVM backend cannot be used on this host, or None when it can (cached).

    A probe that passed is remembered until the machine reboots, for this graphc, this
    Python and this llvmlite (``jit.boot_key``, in the runtime cache with its trust rules):
    it imports the code generator and starts LLVM, ~150 ms of every process that names no
    backend, more than a warm compile-cache hit takes. A failed one is tried again in the
    next process.

    Returns:
        None, or one line naming what failed (import, compile, load or run).

    Example:
        >>> llvm_problem() is None   # on a host with a working llvmlite
        True
    """
    key = _probe_key()
    if key is not None:
        from ..runtime.jit import recall_for_boot, remember_for_boot
        if recall_for_boot(key) == _PASSED:
            return None
    problem = _probe()
    if problem is None and key is not None:
        remember_for_boot(key, _PASSED)
    return problem


_PASSED = b"the LLVM backend works"


def _probe_key():
    """The key a passed probe is kept under (``jit.boot_key``), or None."""
    try:
        from ..runtime import jit, objcache  # noqa: F401  (objcache names the store)
        from ..runtime.artifact import graphc_version
        parts = [graphc_version(), jit.llvmlite_version(), sys.version, sys.executable]
        return jit.boot_key(b"llvm backend probe", *(p.encode() for p in parts))
    except Exception:  # noqa: BLE001  (no llvmlite, no metadata: probe as before)
        return None


def _probe():
    try:
        import ctypes

        from ..codegen import BACKENDS
        BACKENDS["llvm"]
        from ..runtime import jit
        loaded = jit.load_object(jit.compile_here(_PROBE_IR).object_code)
        cell = ctypes.c_int32(0)
        loaded.function("probe")(ctypes.addressof(cell))
        loaded.close()
    except Exception as exc:  # any failure means: not usable here; say which
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".strip()
    if cell.value != 42:
        return f"a test function computed {cell.value}, not 42"
    return None


def default_backend():
    """The backend of a Session or ``gc.compile`` that names none.

    ``$GRAPHC_BACKEND`` when set ("numpy" or "llvm"); else "llvm" when ``llvm_problem()``
    finds none, else "numpy" with a one-line notice on stderr (once per process).

    Returns:
        "numpy" or "llvm".

    Raises:
        CompileError: ``$GRAPHC_BACKEND`` names no backend.

    Example:
        >>> default_backend()      # GRAPHC_BACKEND unset, llvmlite working
        'llvm'
    """
    global _announced
    chosen = os.environ.get("GRAPHC_BACKEND")
    if chosen:
        if chosen not in BACKEND_NAMES:
            from ..errors import CompileError
            raise CompileError(f"GRAPHC_BACKEND={chosen!r} names no backend",
                               hint="set it to 'numpy' or 'llvm', or unset it")
        return chosen
    problem = llvm_problem()
    if problem is None:
        return "llvm"
    if not _announced:
        _announced = True
        print(f"graphc: the LLVM backend cannot be used here ({problem}); "
              f"using the NumPy backend", file=sys.stderr)
    return "numpy"
