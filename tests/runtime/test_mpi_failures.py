"""MPI jobs end promptly when one rank fails (2 ranks, launched as tests/runtime/test_distributed.py
launches them).

Before: an uncaught exception on rank 1 left rank 0 waiting in its next allreduce forever
(on both backends; the job never ended), and nothing bounded a collective's wait.
"""
import subprocess
import sys
import time

import pytest

from tests.runtime.test_distributed import HAVE_MPI4PY, SCRIPTS, _launch_env, mpiexec

pytestmark = pytest.mark.skipif(not HAVE_MPI4PY, reason="mpi4py is not installed")


def launch(scenario, backend, timeout_env="600"):
    env = dict(_launch_env(), GRAPHC_COLLECTIVE_TIMEOUT=timeout_env)
    t0 = time.monotonic()
    proc = subprocess.run([mpiexec(), "-n", "2", sys.executable, str(SCRIPTS / "failures.py"),
                           scenario, backend], capture_output=True, text=True, timeout=240,
                          env=env)
    return proc, time.monotonic() - t0


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_an_uncaught_exception_on_one_rank_ends_the_job(backend):
    proc, elapsed = launch("raise", backend)
    assert proc.returncode != 0
    assert "graphc: rank 1 of 2: uncaught ValueError: rank one's data loader broke; " \
           "aborting the MPI job" in proc.stderr
    assert "NOT REACHED" not in proc.stdout
    assert elapsed < 90  # the compile on 2 shared cores dominates; a hang would hit 240


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_a_collective_that_waits_too_long_times_out(backend):
    proc, elapsed = launch("stall", backend, timeout_env="3")
    assert proc.returncode != 0
    assert "CollectiveTimeoutError" in proc.stderr
    assert "rank 0 of 2: allreduce of" in proc.stderr and "timed out after 3." in proc.stderr
    assert elapsed < 100  # rank 1 sleeps 120 s: the job ended without it
