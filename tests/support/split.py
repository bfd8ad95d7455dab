"""Running a compiled step with its kernels split over the thread pool, at one thread and at
two (chunks are fixed at compile time, so the bits must not change)."""
import numpy as np

from graphc.runtime import parallel


def split_every_kernel(monkeypatch):
    """Every kernel that can split does (the tests choose the threads; no cached objects)."""
    monkeypatch.setenv("GRAPHC_PARALLEL_MIN_WORK", "1")
    monkeypatch.setenv("GRAPHC_BLAS_TUNING", "0")
    monkeypatch.setenv("GRAPHC_NO_CACHE", "1")


def same_bits_at_one_and_two_threads(step, feed):
    """The step's outputs at two threads, after checking they equal those at one, bit for bit."""
    got = {}
    for threads in (1, 2):
        parallel.ensure_workers(threads)
        parallel.set_threads(threads)
        got[threads] = [np.array(v) for v in step(feed)]
    for a, b in zip(got[1], got[2]):
        np.testing.assert_array_equal(a, b)
    return got[2]
