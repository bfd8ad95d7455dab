"""BLAS entry points: the raw gemm pointers follow the documented Fortran convention."""
import os
import sys
import types

import numpy as np
import pytest

from graphc.runtime import blas


def test_gemm_pointers_are_distinct_stable_addresses():
    s, d = blas.gemm_pointer(np.float32), blas.gemm_pointer("float64")
    assert s and d and s != d
    assert blas.gemm_pointer(np.dtype("f4")) == s


@pytest.mark.parametrize("dtype", [np.int32, np.float16, np.complex64])
def test_gemm_pointer_rejects_other_dtypes(dtype):
    with pytest.raises(ValueError, match="float32 and float64"):
        blas.gemm_pointer(dtype)


@pytest.mark.parametrize("dtype,rtol", [(np.float32, 1e-5), (np.float64, 1e-12)])
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (7, 5, 3), (2, 33, 17)])
def test_gemm_matches_matmul(dtype, rtol, trans_a, trans_b, m, k, n):
    rng = np.random.default_rng(m * 100 + k * 10 + n)
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(dtype)
    out = blas.gemm(a, b, trans_a=trans_a, trans_b=trans_b)
    expected = np.matmul(a.T if trans_a else a, b.T if trans_b else b)
    assert out.dtype == dtype and out.shape == (m, n)
    np.testing.assert_allclose(out, expected, rtol=rtol, atol=rtol)


def test_gemm_alpha_beta_accumulate_into_out():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((4, 3)), rng.standard_normal((3, 2))
    out = rng.standard_normal((4, 2))
    expected = 0.5 * a @ b + 2.0 * out
    assert blas.gemm(a, b, out, alpha=0.5, beta=2.0) is out
    np.testing.assert_allclose(out, expected, rtol=1e-12)


def test_gemm_rejects_mismatched_inputs():
    a32, b64 = np.ones((2, 3), np.float32), np.ones((3, 2))
    with pytest.raises(ValueError, match="dtypes differ"):
        blas.gemm(a32, b64)
    with pytest.raises(ValueError, match="shapes do not match"):
        blas.gemm(np.ones((2, 3)), np.ones((4, 2)))
    with pytest.raises(ValueError, match="C-contiguous"):
        blas.gemm(np.ones((3, 2)).T, np.ones((3, 2)))


def test_limit_blas_threads_falls_back_to_environment(monkeypatch):
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)  # as if not installed
    for var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
        monkeypatch.setenv(var, "8")  # restored after the test
    assert blas.limit_blas_threads(1) is None
    assert os.environ["OPENBLAS_NUM_THREADS"] == "1"
    assert os.environ["OMP_NUM_THREADS"] == "1"


def test_limit_blas_threads_uses_threadpoolctl_when_installed(monkeypatch):
    # threadpoolctl is optional (and absent from the test extra): a stand-in module checks
    # that the limit goes to BLAS only and that its limiter comes back to the caller.
    calls = []
    fake = types.ModuleType("threadpoolctl")
    fake.threadpool_limits = lambda **kw: calls.append(kw) or ("limiter", kw)
    monkeypatch.setitem(sys.modules, "threadpoolctl", fake)
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    assert blas.limit_blas_threads(3) == ("limiter", {"limits": 3, "user_api": "blas"})
    assert calls == [{"limits": 3, "user_api": "blas"}]
    assert "OPENBLAS_NUM_THREADS" not in os.environ  # the environment is left alone
