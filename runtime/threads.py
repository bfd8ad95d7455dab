"""One threading policy, owned by graphc: how many threads a step's BLAS calls may use.

The count comes from, in order: ``GRAPHC_NUM_THREADS``; TF1's
``ConfigProto(intra_op_parallelism_threads=n)`` given to a Session (0: not set);
``OPENBLAS_NUM_THREADS`` or ``OMP_NUM_THREADS`` (what BLAS itself would read); else every
core the process may use. BLAS has one thread pool per process: the latest Session (or
``gc.compile``) sets it. It is never more than those cores: the CPUs of the process's
affinity mask, and the CPU quota of its cgroup (a container limited to 1.5 CPUs gets 1
thread). BLAS threads beyond the cores spin against the step's own work (and against other
processes): on a busy machine that turned a 1.5 ms CNN step into 40-100 ms.

``apply_policy`` sets NumPy's OpenBLAS (the BLAS whose entry points compiled steps call, see
``blas``) to that many threads; the LLVM backend reads the count when it decides which GEMMs
run natively (``blas.blas_threads``). graphc's own native kernels run on the calling thread.

Example:
    >>> apply_policy(requested=1)   # as Session(config=ConfigProto(intra_op_...=1)) does
    1
"""
import ctypes
import os

from .blas import _numpy_openblas, blas_threads, limit_blas_threads

__all__ = ["available_cores", "thread_count", "apply_policy", "cgroup_cpus"]


def cgroup_cpus(text):
    """CPUs a cgroup v2 ``cpu.max`` line allows (``"max 100000"``: None, no limit;
    ``"150000 100000"``: 1, the whole CPUs of the quota, at least 1)."""
    parts = text.split()
    if len(parts) != 2 or parts[0] == "max":
        return None
    quota, period = int(parts[0]), int(parts[1])
    return max(quota // max(period, 1), 1)


def available_cores():
    """The cores this process may run on: its affinity mask, capped by its cgroup quota."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota = cgroup_cpus(f.read())
    except (OSError, ValueError):
        quota = None
    return max(min(n, quota) if quota else n, 1)


def thread_count(requested=None):
    """The threads steps may use (see module docstring).

    Args:
        requested: ``intra_op_parallelism_threads`` (None or 0: not set).
    Raises:
        ValueError: ``GRAPHC_NUM_THREADS`` that is not a positive integer.
    """
    cores = available_cores()
    env = os.environ.get("GRAPHC_NUM_THREADS", "").strip()
    if env:
        if not env.isdigit() or int(env) < 1:
            raise ValueError(f"GRAPHC_NUM_THREADS must be a positive integer, found {env!r}")
        return min(int(env), cores)
    if requested:
        return min(int(requested), cores)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(var, "").strip()
        if value.isdigit() and int(value) >= 1:
            return min(int(value), cores)
    return cores


def _set_openblas(n):
    lib = _numpy_openblas()
    for symbol in ("scipy_openblas_set_num_threads64_", "openblas_set_num_threads64_",
                   "openblas_set_num_threads"):
        fn = getattr(lib, symbol, None) if lib is not None else None
        if fn is not None:
            fn.argtypes = [ctypes.c_int]
            fn(int(n))
            return True
    return False


def apply_policy(requested=None):
    """Set BLAS to ``thread_count(requested)`` threads (when it differs); returns the count."""
    n = thread_count(requested)
    if blas_threads() != n and not _set_openblas(n):
        limit_blas_threads(n)
    return n
