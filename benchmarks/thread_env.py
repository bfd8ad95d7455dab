"""Thread counts for every framework a benchmark loads, set before any of them loads.

OpenBLAS, OpenMP (PyTorch), MKL and XLA read their thread counts from the environment when
their libraries load, so a benchmark calls ``set_threads`` at the top of its ``__main__``
block, before importing numpy. (No numpy here: importing this module loads nothing.)

The variables are not enough for JAX: XLA's CPU runtime keeps a thread pool of its own that
no flag of this JAX limits (``--threads 1`` runs measured W1's jitted step at 24.6 GMAC/s,
above one core's peak, and 1024-batch MLPs at 32 GMAC/s). So the process is also pinned to
``n`` of the CPUs it may use, as ``taskset`` would: no framework can use more cores than
the run says.
"""
import os


def set_threads(n, pin_cpus=True):
    """Every framework's threads to ``n`` (XLA's Eigen pool off at 1), and the process pinned
    to ``n`` CPUs (the first ``n`` of its affinity mask) when it may use more and
    ``pin_cpus``."""
    if pin_cpus:
        pin(int(n))
    n = str(n)
    os.environ["OPENBLAS_NUM_THREADS"] = n
    os.environ.setdefault("OMP_NUM_THREADS", n)
    os.environ.setdefault("MKL_NUM_THREADS", n)
    if n == "1":
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                                   " --xla_cpu_multi_thread_eigen=false"
                                   " intra_op_parallelism_threads=1").strip()


def pin(n):
    """Run this process (and the threads it starts) on the first ``n`` CPUs of its affinity
    mask; nothing when it has ``n`` or fewer, or where affinity cannot be set."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return
    if len(cpus) > n >= 1:
        os.sched_setaffinity(0, cpus[:n])
