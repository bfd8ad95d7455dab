"""The default backend: LLVM when it works on the host, NumPy on request or as a fallback with
a one-line notice (once per process). The suite's conftest sets ``GRAPHC_BACKEND=numpy``;
these tests unset it."""
import numpy as np
import pytest

import graphc as gc
from graphc.client import backend_choice
from graphc.errors import CompileError


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv("GRAPHC_BACKEND", raising=False)
    monkeypatch.setattr(backend_choice, "_announced", False)


def _model():
    x = gc.placeholder(gc.float32, [None, 3])
    w = gc.constant(np.arange(6, dtype=np.float32).reshape(3, 2))
    return x, gc.reduce_sum(gc.matmul(x, w) ** 2)


def _expected(xv):
    return float(((xv.astype(np.float64) @ np.arange(6.).reshape(3, 2)) ** 2).sum())


def test_llvm_works_on_this_host():
    assert backend_choice.llvm_problem() is None


def test_session_and_compile_default_to_llvm(no_env, capsys):
    x, y = _model()
    xv = np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)
    with gc.Session() as sess:
        assert sess.backend == "llvm"
        np.testing.assert_allclose(sess.run(y, {x: xv}), _expected(xv), rtol=1e-5)
    step = gc.compile(y, feeds=[x])
    assert step.backend == "llvm"
    np.testing.assert_allclose(step({x: xv}), _expected(xv), rtol=1e-5)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_numpy_on_request(no_env, monkeypatch, how):
    x, y = _model()
    if how == "environment":
        monkeypatch.setenv("GRAPHC_BACKEND", "numpy")
        sess = gc.Session()
    else:
        sess = gc.Session(backend="numpy")
    assert sess.backend == "numpy"
    xv = np.ones((4, 3), np.float32)
    np.testing.assert_allclose(sess.run(y, {x: xv}), _expected(xv), rtol=1e-6)


def test_fallback_to_numpy_with_one_notice(no_env, monkeypatch, capsys):
    # Simulate a host where LLVM fails: the probe's compile raises.
    def broken(*args, **kwargs):
        raise RuntimeError("LLVM ERROR: no target machine for this host")
    from graphc.runtime import jit
    backend_choice.llvm_problem.cache_clear()
    monkeypatch.setattr(jit, "compile_here", broken)
    monkeypatch.setenv("GRAPHC_NO_RUNTIME_CACHE", "1")  # (no probe remembered passing)
    try:
        assert "no target machine" in backend_choice.llvm_problem()
        x, y = _model()
        xv = np.ones((2, 3), np.float32)
        sessions = [gc.Session(), gc.Session()]
        assert [s.backend for s in sessions] == ["numpy", "numpy"]
        assert gc.compile(y, feeds=[x]).backend == "numpy"
        np.testing.assert_allclose(sessions[0].run(y, {x: xv}), _expected(xv), rtol=1e-6)
        lines = capsys.readouterr().err.splitlines()
        assert len(lines) == 1, lines
        assert "LLVM backend cannot be used" in lines[0] and "no target machine" in lines[0]
        assert "NumPy" in lines[0]
    finally:
        backend_choice.llvm_problem.cache_clear()


def test_unknown_backend_in_environment_is_a_compile_error(monkeypatch):
    monkeypatch.setenv("GRAPHC_BACKEND", "cuda")
    with pytest.raises(CompileError, match="GRAPHC_BACKEND='cuda'"):
        gc.Session()


def test_a_passed_probe_is_remembered_for_the_next_process(no_env, monkeypatch, tmp_path):
    """The probe (the code generator imported, LLVM started: ~150 ms) runs once a boot for
    this graphc, Python and llvmlite; a failed one is not remembered."""
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("GRAPHC_NO_RUNTIME_CACHE", raising=False)
    from graphc.runtime import jit
    if jit.boot_key(b"probe") is None:
        pytest.skip("no boot id on this host")
    probes = []
    real = backend_choice._probe

    def counted():
        probes.append(1)
        return real()
    monkeypatch.setattr(backend_choice, "_probe", counted)
    try:
        for _ in range(3):  # (as three processes: the answer kept in memory is dropped)
            backend_choice.llvm_problem.cache_clear()
            assert backend_choice.llvm_problem() is None
        assert len(probes) == 1
        monkeypatch.setattr(backend_choice, "_probe", lambda: probes.append(1) or "broken")
        monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "other"))
        for _ in range(2):
            backend_choice.llvm_problem.cache_clear()
            assert backend_choice.llvm_problem() == "broken"
        assert len(probes) == 3
    finally:
        backend_choice.llvm_problem.cache_clear()
