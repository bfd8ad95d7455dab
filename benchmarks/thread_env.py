"""Thread counts for every framework a benchmark loads, set before any of them loads.

OpenBLAS, OpenMP (PyTorch), MKL and XLA read their thread counts from the environment when
their libraries load, so a benchmark calls ``set_threads`` at the top of its ``__main__``
block, before importing numpy. (No numpy here: importing this module loads nothing.)
"""
import os


def set_threads(n):
    """Every framework's threads to ``n`` (XLA's Eigen pool off at 1)."""
    n = str(n)
    os.environ["OPENBLAS_NUM_THREADS"] = n
    os.environ.setdefault("OMP_NUM_THREADS", n)
    os.environ.setdefault("MKL_NUM_THREADS", n)
    if n == "1":
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                                   " --xla_cpu_multi_thread_eigen=false"
                                   " intra_op_parallelism_threads=1").strip()
