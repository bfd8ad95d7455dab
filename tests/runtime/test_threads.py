"""The threading policy (graphc.runtime.threads): how many BLAS threads steps use, never more
than the process's cores, chosen by GRAPHC_NUM_THREADS, ConfigProto or BLAS's own variables."""
import os

import numpy as np
import pytest

import graphc as gc
from graphc.runtime import threads
from graphc.runtime.blas import blas_threads


@pytest.fixture
def restore_blas():
    before = blas_threads()
    yield
    threads._set_openblas(before)


@pytest.mark.parametrize("text,cpus", [("max 100000", None), ("100000 100000", 1),
                                       ("150000 100000", 1), ("200000 100000", 2),
                                       ("50000 100000", 1)])
def test_cgroup_quota(text, cpus):
    assert threads.cgroup_cpus(text) == cpus


def test_never_more_threads_than_cores(monkeypatch):
    cores = threads.available_cores()
    assert 1 <= cores <= (os.cpu_count() or 1)
    monkeypatch.delenv("GRAPHC_NUM_THREADS", raising=False)
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert threads.thread_count() == cores
    assert threads.thread_count(requested=cores + 7) == cores
    assert threads.thread_count(requested=1) == 1
    monkeypatch.setattr(threads, "available_cores", lambda: 1)  # a 1-CPU container
    assert threads.thread_count(requested=4) == 1


def test_the_order_of_the_settings(monkeypatch):
    monkeypatch.setattr(threads, "available_cores", lambda: 8)
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "3")
    assert threads.thread_count() == 3
    assert threads.thread_count(requested=2) == 2  # ConfigProto over BLAS's variable
    monkeypatch.setenv("GRAPHC_NUM_THREADS", "5")
    assert threads.thread_count(requested=2) == 5  # GRAPHC_NUM_THREADS over everything
    monkeypatch.setenv("GRAPHC_NUM_THREADS", "zero")
    with pytest.raises(ValueError, match="GRAPHC_NUM_THREADS must be a positive integer"):
        threads.thread_count()


def test_a_session_sets_blas_threads_from_config_proto(restore_blas, monkeypatch):
    monkeypatch.delenv("GRAPHC_NUM_THREADS", raising=False)
    x = gc.placeholder(gc.float32, [4, 4])
    y = gc.matmul(x, x)
    with gc.Session(config=gc.ConfigProto(intra_op_parallelism_threads=1)) as sess:
        assert sess.threads == 1 and blas_threads() == 1
        np.testing.assert_allclose(sess.run(y, {x: np.eye(4)}), np.eye(4))
    if threads.available_cores() > 1:
        with gc.Session(config=gc.ConfigProto(intra_op_parallelism_threads=2)) as sess:
            assert sess.threads == 2 and blas_threads() == 2
