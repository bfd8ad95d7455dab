"""BLAS entry points for native steps: raw ``sgemm``/``dgemm`` function pointers.

Native code calls GEMM through a pointer it loads from its pointer table, so object code has
no unresolved symbols and needs no link step. The pointers come from SciPy's
``scipy.linalg.cython_blas``, which exports its BLAS wrappers as PyCapsules.

The functions use the Fortran convention: every argument by pointer, matrices column-major,
``int`` (32-bit) sizes::

    void sgemm(char *transa, char *transb, int *m, int *n, int *k,
               float *alpha, float *a, int *lda, float *b, int *ldb,
               float *beta, float *c, int *ldc)

A row-major ``C = op(A) @ op(B)`` is computed as the column-major ``C^T = op(B)^T op(A)^T``:
a row-major array read as column-major is its transpose, so pass B first, then A, with
``m = N`` and ``n = M``, see ``gemm``. In LLVM IR, with opaque pointers, the callee type is
``void (ptr, ptr, ptr, ptr, ptr, ptr, ptr, ptr, ptr, ptr, ptr, ptr, ptr)``.
"""
from __future__ import annotations

import ctypes
import functools
import os

import numpy as np

__all__ = ["gemm_pointer", "gemm_entry", "gemm", "blas_threads", "limit_blas_threads",
           "openblas_function", "kernel_vector_bytes"]

_GEMM_NAMES = {np.dtype(np.float32): "sgemm", np.dtype(np.float64): "dgemm"}


def _capsule_pointer(capsule) -> int:
    get_name = ctypes.pythonapi.PyCapsule_GetName
    get_name.restype, get_name.argtypes = ctypes.c_char_p, [ctypes.py_object]
    get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
    get_pointer.restype = ctypes.c_void_p
    get_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
    # GetPointer checks the name it is given against the capsule's own.
    return get_pointer(capsule, get_name(capsule))


@functools.lru_cache(maxsize=None)
def _gemm_pointer(dtype: np.dtype) -> int:
    from scipy.linalg import cython_blas  # imported on first use: scipy loads slowly
    return _capsule_pointer(cython_blas.__pyx_capi__[_GEMM_NAMES[dtype]])


def gemm_pointer(dtype) -> int:
    """Return the address of BLAS ``sgemm`` (float32) or ``dgemm`` (float64).

    The address is valid for this process only: store it in a pointer table at run time,
    never in object code.

    Args:
        dtype: anything ``np.dtype`` accepts.

    Returns:
        The function's address as an int.

    Raises:
        ValueError: a dtype other than float32 or float64.

    Example:
        >>> gemm_pointer(np.float32) != gemm_pointer("float64")
        True
    """
    dt = np.dtype(dtype)
    if dt not in _GEMM_NAMES:
        raise ValueError(f"BLAS gemm exists for float32 and float64, not {dt}")
    return _gemm_pointer(dt)


@functools.lru_cache(maxsize=None)
def _numpy_openblas():
    """NumPy's own OpenBLAS (the ILP64 build its Linux wheels bundle), loaded, or None."""
    libs = os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs")
    try:
        names = sorted(os.listdir(libs))
    except OSError:
        return None
    # a plain name test: glob's pattern compilation alone cost milliseconds per process
    for name in names:
        if name.startswith("lib") and "openblas" in name and ".so" in name:
            try:
                return ctypes.CDLL(os.path.join(libs, name))  # already loaded by NumPy
            except OSError:
                continue
    return None


@functools.lru_cache(maxsize=None)
def gemm_entry(dtype) -> tuple:
    """Return ``(address, int_bits)`` of the gemm native steps should call.

    Prefers the gemm of NumPy's own bundled OpenBLAS (64-bit ints), so that NumPy and native
    steps share ONE BLAS thread pool: two OpenBLAS pools in one process spin against each
    other on a small machine and make both erratic. Falls back to ``gemm_pointer`` (SciPy's,
    32-bit ints). ``GRAPHC_BLAS=scipy`` forces the fallback.

    Args:
        dtype: float32 or float64.
    Returns:
        (function address, 32 or 64): the width of the Fortran integer arguments.
    Raises:
        ValueError: a dtype other than float32 or float64.
    Example:
        >>> address, bits = gemm_entry(np.float32)
    """
    dt = np.dtype(dtype)
    name = _GEMM_NAMES.get(dt)
    if name is None:
        raise ValueError(f"BLAS gemm exists for float32 and float64, not {dt}")
    lib = None if os.environ.get("GRAPHC_BLAS") == "scipy" else _numpy_openblas()
    if lib is not None:
        for symbol in (f"scipy_{name}_64_", f"{name}_64_"):
            fn = getattr(lib, symbol, None)
            if fn is not None:
                return ctypes.cast(fn, ctypes.c_void_p).value, 64
    return gemm_pointer(dt), 32


_GEMM_TYPES = {}


def _gemm_function(dt: np.dtype):
    if dt not in _GEMM_TYPES:
        p = ctypes.c_void_p
        scalar = ctypes.c_float if dt == np.float32 else ctypes.c_double
        ftype = ctypes.CFUNCTYPE(None, *[p] * 5, ctypes.POINTER(scalar), *[p] * 4,
                                 ctypes.POINTER(scalar), p, p)
        _GEMM_TYPES[dt] = (ftype(gemm_pointer(dt)), scalar)
    return _GEMM_TYPES[dt]


def gemm(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None,
         trans_a: bool = False, trans_b: bool = False,
         alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
    """Row-major ``out = alpha * op(a) @ op(b) + beta * out`` through ``gemm_pointer``.

    A reference for the calling convention native code uses; slow for small matrices.

    Args:
        a, b: C-contiguous 2-D arrays of one float dtype; ``op(x)`` is ``x.T`` when the
            matching ``trans_*`` flag is set.
        out: C-contiguous result of shape ``(M, N)``; allocated when None.
        trans_a, trans_b: use the transpose of ``a`` / ``b``.
        alpha, beta: scale factors; ``beta`` reads ``out`` only when nonzero.

    Returns:
        ``out``.

    Raises:
        ValueError: dtypes differ, shapes do not match, or an array is not C-contiguous.

    Example:
        >>> gemm(x, w, trans_b=True)       # x @ w.T
    """
    dt = a.dtype
    m, k = a.shape[::-1] if trans_a else a.shape
    kb, n = b.shape[::-1] if trans_b else b.shape
    if out is None:
        out = np.zeros((m, n), dt)
    if not (b.dtype == out.dtype == dt):
        raise ValueError(f"gemm dtypes differ: {a.dtype}, {b.dtype}, {out.dtype}")
    if kb != k or out.shape != (m, n):
        raise ValueError(f"gemm shapes do not match: op(a) {(m, k)}, op(b) {(kb, n)}, "
                         f"out {out.shape}")
    if not all(x.flags.c_contiguous for x in (a, b, out)):
        raise ValueError("gemm needs C-contiguous arrays")
    fn, scalar = _gemm_function(np.dtype(dt))
    ref = ctypes.byref
    ints = [ctypes.c_int(v) for v in (n, m, k, b.shape[1], a.shape[1], n)]
    n_, m_, k_, ldb, lda, ldc = (ref(v) for v in ints)
    # Column-major C^T = op(B)^T op(A)^T: B goes first, with B's transpose flag.
    fn(ctypes.c_char_p(b"T" if trans_b else b"N"), ctypes.c_char_p(b"T" if trans_a else b"N"),
       n_, m_, k_, ref(scalar(alpha)), b.ctypes.data, ldb, a.ctypes.data, lda,
       ref(scalar(beta)), out.ctypes.data, ldc)
    return out


def blas_threads() -> int:
    """How many threads NumPy's OpenBLAS uses now (the CPU count when that cannot be asked:
    another BLAS is assumed to use every core).

    Example:
        >>> blas_threads() >= 1
        True
    """
    fn = openblas_function("scipy_openblas_get_num_threads64_", "openblas_get_num_threads64_",
                           "openblas_get_num_threads")  # (returns an int: ctypes' default)
    return max(int(fn()), 1) if fn is not None else (os.cpu_count() or 1)


@functools.lru_cache(maxsize=None)
def openblas_function(*symbols):
    """The first of ``symbols`` that NumPy's OpenBLAS exports, as a ctypes function (found
    once), or None (no OpenBLAS, or none of them)."""
    lib = _numpy_openblas()
    for symbol in symbols:
        fn = getattr(lib, symbol, None) if lib is not None else None
        if fn is not None:
            return fn
    return None


# OpenBLAS's kernel sets (``openblas_get_corename``) by the width of their GEMM's vectors.
# DYNAMIC_ARCH builds pick one by CPU model: NumPy's picks its Haswell kernels (256 bits) on
# a Zen 5 with AVX-512, which then runs GEMMs at half the host's vector width.
_CORE_VECTOR_BYTES = {"skylakex": 64, "cooperlake": 64, "sapphirerapids": 64,
                      "haswell": 32, "zen": 32, "excavator": 32, "sandybridge": 32}


@functools.lru_cache(maxsize=None)
def kernel_vector_bytes():
    """Bytes of the vectors NumPy's OpenBLAS computes its GEMMs with (the kernel set it
    picked for this CPU), or None when that is unknown (another BLAS, another kernel set).

    Example:
        >>> kernel_vector_bytes() in (None, 32, 64)
        True
    """
    fn = openblas_function("scipy_openblas_get_corename64_", "openblas_get_corename64_",
                           "openblas_get_corename")
    if fn is None:
        return None
    fn.restype = ctypes.c_char_p
    name = fn()
    return _CORE_VECTOR_BYTES.get(name.decode(errors="replace").lower()) if name else None


def limit_blas_threads(n: int):
    """Cap the number of threads BLAS uses.

    Uses threadpoolctl when installed, which works at any time. Otherwise sets
    ``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS`` and ``OMP_NUM_THREADS``, which BLAS
    libraries read only when they load: call it before scipy's BLAS is first used.

    Args:
        n: the number of threads.

    Returns:
        threadpoolctl's limiter (call ``.restore_original_limits()`` to undo), or None when
        only the environment was set.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        for var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
            os.environ[var] = str(n)
        return None
    return threadpool_limits(limits=n, user_api="blas")
