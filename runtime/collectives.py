"""Collective communication for data-parallel steps: MPI through mpi4py, or nothing at all.

A process started by an MPI launcher (``mpiexec -n 4 python train.py``, ``srun``) is one
rank of ``COMM_WORLD``; any other process is a world of one and never imports mpi4py. The
launcher is recognized by the variables it exports (MPICH/Hydra, Open MPI, PMIx), so a plain
``python train.py`` pays nothing; ``GRAPHC_MPI=1`` forces MPI on, ``GRAPHC_MPI=0`` off.

Compiled steps call ``allreduce_mean_`` on ONE packed buffer of gradients per step (the
NumPy backend from its kernel, the LLVM backend through the C callback ``callback_address``
returns). With one rank it returns the buffer unchanged, so the same compiled step, or a
saved one, runs in one process or in many.

The first use of MPI also pins BLAS threads: ranks sharing a machine split its cores
(``cores // ranks on this node``, at least 1), so that two ranks on two cores run one BLAS
thread each instead of four threads fighting over two cores.

One rank's failure ends the job: with several ranks, ``init`` installs an excepthook (for
the main thread and for other threads) that prints the rank and the error, then aborts the
communicator (half a second later, so that the launcher has forwarded the message), as
``python -m mpi4py`` does; without it the other ranks would wait in their
next allreduce forever. And no collective waits forever: an allreduce or broadcast that has
not completed after ``GRAPHC_COLLECTIVE_TIMEOUT`` seconds (default 600; 0: no limit) raises
``CollectiveTimeoutError`` naming the rank, the operation and the time waited (uncaught, it
aborts the job in turn). ``GRAPHC_MPI_ABORT=0`` leaves the excepthooks alone.

This module imports only numpy, ctypes and graphc.errors (mpi4py when MPI is on): saved
steps run without the compiler.
"""
import ctypes
import os
import sys
import threading
import time

import numpy as np

from graphc.errors import GraphcError

__all__ = ["init", "active", "rank", "size", "local_rank", "local_size", "allreduce_mean_",
           "broadcast_", "callback_address", "pin_blas_threads", "blas_threads", "stats",
           "CollectiveTimeoutError", "install_abort_hook", "timeout_seconds"]

DEFAULT_TIMEOUT = 600.0
# Seconds between writing a rank's last words and aborting: MPI_Abort makes the launcher kill
# every rank at once, and Hydra's proxy can be killed before it has forwarded what the rank
# wrote to its stderr pipe (the error then never reaches the user; seen once in a CI run).
ABORT_GRACE = 0.5


class CollectiveTimeoutError(GraphcError):
    """A collective operation waited longer than ``GRAPHC_COLLECTIVE_TIMEOUT`` seconds."""

# Variables MPI launchers export to every rank (size first: it tells how many ranks).
_SIZE_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS")
_RANK_VARS = ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK")

_state = {"comm": None, "local": None, "ready": False}
stats = {"allreduce_calls": 0, "allreduce_bytes": 0, "broadcast_calls": 0}


def launched_by_mpi():
    """True when this process is a rank started by an MPI launcher (or GRAPHC_MPI=1)."""
    forced = os.environ.get("GRAPHC_MPI", "")
    if forced in ("0", "1"):
        return forced == "1"
    return any(v in os.environ for v in _SIZE_VARS + _RANK_VARS)


def _launch_size():
    for v in _SIZE_VARS[:3]:
        if os.environ.get(v, "").isdigit():
            return int(os.environ[v])
    return None


def init():
    """Join ``COMM_WORLD`` when launched by MPI; returns the communicator or None.

    Idempotent. A single process (no launcher) gets None and imports nothing.

    Raises:
        GraphcError: launched with several ranks but mpi4py is not installed.
    Example:
        >>> comm = init()        # None in a plain ``python`` process
    """
    if _state["ready"]:
        return _state["comm"]
    comm = None
    if launched_by_mpi():
        try:
            from mpi4py import MPI
        except ImportError:
            if (_launch_size() or 1) > 1:
                raise GraphcError("this process is one of several MPI ranks, but mpi4py is "
                                  "not installed", hint="pip install 'graphc[distributed]' "
                                  "(mpi4py, and mpich if no system MPI)") from None
            MPI = None
        if MPI is not None:
            comm = MPI.COMM_WORLD
            _state["local"] = comm.Split_type(MPI.COMM_TYPE_SHARED, key=comm.Get_rank())
    _state["comm"], _state["ready"] = comm, True
    if comm is not None and comm.Get_size() > 1:
        if os.environ.get("GRAPHC_MPI_ABORT", "1") != "0":
            install_abort_hook(comm)
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
            else (os.cpu_count() or 1)
        pin_blas_threads(max(1, cores // local_size()))
    return comm


def active():
    """True when this process is one of several ranks (allreduces communicate)."""
    comm = init()
    return comm is not None and comm.Get_size() > 1


def rank():
    """This process's index in COMM_WORLD (0 for a single process)."""
    comm = init()
    return 0 if comm is None else comm.Get_rank()


def size():
    """The number of ranks (1 for a single process)."""
    comm = init()
    return 1 if comm is None else comm.Get_size()


def local_rank():
    """This process's index among the ranks on its machine (0 for a single process)."""
    init()
    return 0 if _state["local"] is None else _state["local"].Get_rank()


def local_size():
    """The number of ranks on this machine (1 for a single process)."""
    init()
    return 1 if _state["local"] is None else _state["local"].Get_size()


def allreduce_mean_(buf):
    """Average ``buf`` over all ranks, in place; returns ``buf``.

    One ``Allreduce`` (sum) on the whole buffer, then a division by the number of ranks.
    With one rank nothing happens (not even a copy).

    Args:
        buf: a C-contiguous, writable float array (the packed gradients).
    Returns:
        ``buf``, now holding the mean over ranks.
    Example:
        >>> g = allreduce_mean_(np.concatenate([g1.ravel(), g2.ravel()]))
    """
    comm = init()
    if comm is None or comm.Get_size() == 1:
        return buf
    from mpi4py import MPI
    _wait(comm.Iallreduce(MPI.IN_PLACE, buf, op=MPI.SUM), comm, "allreduce", buf.nbytes)
    np.divide(buf, comm.Get_size(), out=buf)
    stats["allreduce_calls"] += 1
    stats["allreduce_bytes"] += buf.nbytes
    return buf


def broadcast_(buf, root=0):
    """Overwrite ``buf`` (C-contiguous, writable) with rank ``root``'s ``buf``; returns it."""
    comm = init()
    if comm is None or comm.Get_size() == 1:
        return buf
    _wait(comm.Ibcast(buf, root=root), comm, f"broadcast from rank {root}", buf.nbytes)
    stats["broadcast_calls"] += 1
    return buf


def timeout_seconds():
    """``GRAPHC_COLLECTIVE_TIMEOUT`` (seconds; 0 or less: wait forever), else 600."""
    text = os.environ.get("GRAPHC_COLLECTIVE_TIMEOUT", "")
    try:
        value = float(text) if text else DEFAULT_TIMEOUT
    except ValueError:
        value = DEFAULT_TIMEOUT
    return value if value > 0 else None


def _wait(request, comm, what, nbytes):
    """Complete a nonblocking collective, or raise CollectiveTimeoutError after the timeout.

    Polls ``Test`` with a backoff from 0 to 1 ms: a collective that completes at once costs
    one call more than the blocking form, a long wait one wake-up per millisecond."""
    limit = timeout_seconds()
    if request.Test():
        return
    start = time.monotonic()
    pause = 0.0
    while not request.Test():
        waited = time.monotonic() - start
        if limit is not None and waited > limit:
            raise CollectiveTimeoutError(
                f"rank {comm.Get_rank()} of {comm.Get_size()}: {what} of {nbytes} bytes timed "
                f"out after {waited:.1f} s waiting for the other ranks",
                ["another rank has died, hangs, or runs a different step (each allreduce "
                 "must be reached by every rank, in the same order)"],
                hint="GRAPHC_COLLECTIVE_TIMEOUT=<seconds> sets the limit (0: none)")
        time.sleep(pause)
        pause = min(pause * 2 + 1e-5, 1e-3)


def install_abort_hook(comm):
    """Make an uncaught exception on this rank end the whole job: print the rank and the
    error (the usual traceback), then ``comm.Abort(1)``. Covers the main thread and other
    threads (``threading.excepthook``); installed once. KeyboardInterrupt aborts too."""
    if getattr(sys.excepthook, "_graphc_abort", False):
        return
    previous, previous_thread = sys.excepthook, threading.excepthook

    def abort(kind, value, tb, show):
        try:
            sys.stderr.write(f"graphc: rank {comm.Get_rank()} of {comm.Get_size()}: uncaught "
                             f"{kind.__name__}: {value}; aborting the MPI job\n")
            show()
            sys.stderr.flush()
            time.sleep(ABORT_GRACE)
        finally:
            comm.Abort(1)

    def hook(kind, value, tb):
        abort(kind, value, tb, lambda: previous(kind, value, tb))

    def thread_hook(args):
        if args.exc_type is SystemExit:
            return previous_thread(args)
        abort(args.exc_type, args.exc_value, args.exc_traceback,
              lambda: previous_thread(args))

    hook._graphc_abort = True
    sys.excepthook, threading.excepthook = hook, thread_hook


def bcast_object(obj, root=0):
    """Rank ``root``'s Python object on every rank (small metadata only)."""
    comm = init()
    return obj if comm is None else comm.bcast(obj, root=root)


# -- the C entry point native steps call ----------------------------------------------------
# void allreduce_mean(void *data, int64 count, int32 dtype_code): 0 float32, 1 float64.
CALLBACK_TYPE = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int32)
DTYPE_CODES = {"float32": 0, "float64": 1}
_CTYPES = {0: ctypes.c_float, 1: ctypes.c_double}
_callback = []
last_error = []


def _native_allreduce(data, count, code):
    try:
        buf = np.ctypeslib.as_array((_CTYPES[code] * count).from_address(data))
        allreduce_mean_(buf)
    except BaseException as exc:  # noqa: BLE001  (an exception cannot cross the C frame)
        last_error.append(exc)
        raise


def callback_address(name="allreduce_mean"):
    """The address of ``void allreduce_mean(void *data, int64 count, int32 dtype_code)``.

    Native steps keep it in their pointer table and call it on their packed gradient buffer
    (dtype_code 0: float32, 1: float64). The function object lives as long as the process.

    Raises:
        ArtifactError: an entry point this runtime does not have (a step from a newer one).
    """
    if name != "allreduce_mean":
        from graphc.errors import ArtifactError
        raise ArtifactError(f"the step calls runtime entry point {name!r}, which this "
                            "runtime does not have", hint="compile the step again here")
    if not _callback:
        _callback.append(CALLBACK_TYPE(_native_allreduce))
    return ctypes.cast(_callback[0], ctypes.c_void_p).value


# -- BLAS threads ---------------------------------------------------------------------------
_SETTERS = ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
            "openblas_set_num_threads64_", "openblas_set_num_threads",
            "MKL_Set_Num_Threads")
_GETTERS = ("scipy_openblas_get_num_threads64_", "scipy_openblas_get_num_threads",
            "openblas_get_num_threads64_", "openblas_get_num_threads", "MKL_Get_Max_Threads")


def _loaded_blas():
    """ctypes handles of the BLAS libraries this process has loaded (Linux), by path."""
    paths = []
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.rsplit(None, 1)[-1]
                name = os.path.basename(path).lower()
                if path.startswith("/") and path not in paths and \
                        any(k in name for k in ("openblas", "mkl_rt", "blis")):
                    paths.append(path)
    except OSError:
        return []
    libs = []
    for p in paths:
        try:
            libs.append(ctypes.CDLL(p))
        except OSError:
            continue
    return libs


def pin_blas_threads(n):
    """Use at most ``n`` BLAS threads in this process, for libraries loaded now and later.

    Calls each loaded OpenBLAS/MKL/BLIS's own setter (what threadpoolctl does) and sets the
    variables that libraries loaded later read (through ``runtime.blas.limit_blas_threads``).

    Returns:
        The number of loaded libraries whose thread count was set.
    """
    from .blas import limit_blas_threads
    from .threads import cap_policy
    cap_policy(n)
    os.environ.update({v: str(n) for v in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                          "OMP_NUM_THREADS")})
    limit_blas_threads(n)
    done = 0
    for lib in _loaded_blas():
        fn = next((getattr(lib, s) for s in _SETTERS if hasattr(lib, s)), None)
        if fn is not None:
            fn(ctypes.c_int(n))
            done += 1
    return done


def blas_threads():
    """{library file name: its current thread count} for the BLAS libraries loaded."""
    out = {}
    for lib in _loaded_blas():
        fn = next((getattr(lib, s) for s in _GETTERS if hasattr(lib, s)), None)
        if fn is not None:
            fn.restype = ctypes.c_int
            out[os.path.basename(lib._name)] = int(fn())
    return out


def allreduce_mean_kernel(buf):
    """The NumPy backend's kernel: ``buf`` averaged over all ranks, IN PLACE (returned).

    Copied into generated NumPy modules, so it names no module global but ``np``; in a single
    process the average is the identity.
    """
    from graphc.runtime.collectives import allreduce_mean_
    if not (isinstance(buf, np.ndarray) and buf.flags.c_contiguous and buf.flags.writeable):
        buf = np.array(buf, order="C")
    return allreduce_mean_(buf)
