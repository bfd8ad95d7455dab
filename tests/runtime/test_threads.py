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


class _FakeBlas:
    """The tuner's BLAS setter, recorded; each call's time comes from ``clock(n, k)``."""

    def __init__(self, monkeypatch, policy):
        self.set = []
        monkeypatch.setattr(threads, "_set_openblas", lambda n: self.set.append(n) or True)
        monkeypatch.setitem(threads._state, "policy", policy)
        monkeypatch.setitem(threads._state, "current", policy)
        monkeypatch.setitem(threads._state, "pool", policy)
        self.pool = []
        monkeypatch.setattr(threads.parallel, "set_threads", self.pool.append)
        self.during = []  # (choice, BLAS's count, the pool's) during each call run

    def blas(self):
        """BLAS's count as the setter left it (the policy's when never set)."""
        return self.set[-1] if self.set else threads._state["policy"]

    def run(self, tuner, clock, calls, start=0):
        used = []
        for k in range(start, start + calls):
            n = tuner.before()
            self.during.append((n, self.blas(), self.pool[-1] if self.pool else None))
            tuner.after(n, clock(n, k))
            used.append(n)
            # between calls BLAS is the policy's, whatever the call chose: the user's own
            # NumPy calls (and untuned steps) must not run on a count one step chose
            assert self.blas() == threads._state["policy"]
        return used


def test_blas_tuner_keeps_the_threads_on_a_quiet_machine_and_one_under_load(monkeypatch):
    fake = _FakeBlas(monkeypatch, policy=2)
    tuner = threads.BlasTuner()
    quiet = (lambda n, k: 1.0 if n == "all" else 1.5)
    used = fake.run(tuner, quiet, 400)
    # two rounds in 400 calls (2 x EXPLORE timed calls, then EXPLOIT), EXPLORE of them on one
    assert tuner.best == "all" and used.count("one") == 2 * threads.BlasTuner.EXPLORE
    # under load, two threads are fast most of the time and very slow otherwise: the mean
    # (not the median, which two threads win) says one
    loaded = (lambda n, k: (0.8 if k % 3 else 6.0) if n == "all" else 1.6)
    used = fake.run(tuner, loaded, 300, start=400)
    # (a change to one thread is timed again after EXPLOIT_ONE calls, then twice as many
    # each time it holds: 32, 64, 128...)
    assert tuner.best == "one" and used[-250:].count("one") >= 225
    assert tuner.exploit >= 4 * threads.BlasTuner.EXPLOIT_ONE
    assert all(blas == (1 if n == "one" else 2) for n, blas, _ in fake.during)
    # set only on a change: twice for a call on one thread (there and back), never for a
    # call on the policy's count
    assert all(a != b for a, b in zip(fake.set, fake.set[1:]))
    assert len(fake.set) == 2 * [n for n, _, _ in fake.during].count("one")


def test_blas_tuner_explores_again_as_soon_as_the_step_slows_down(monkeypatch):
    fake = _FakeBlas(monkeypatch, policy=2)
    tuner = threads.BlasTuner()
    fake.run(tuner, lambda n, k: 1.0 if n == "all" else 1.5, 20)
    assert tuner.best == "all"
    # a competitor starts: the next exploration comes within 8 calls, not after 256
    used = fake.run(tuner, lambda n, k: 4.0 if n == "all" else 1.6, 30, start=20)
    assert "one" in used[:10] and tuner.best == "one"


def test_a_step_with_split_kernels_and_blas_also_tries_the_pool_alone(monkeypatch):
    fake = _FakeBlas(monkeypatch, policy=2)
    tuner = threads.BlasTuner(pool_and_blas=True)
    # OpenBLAS's spinning threads slow the pool: BLAS on one thread, the pool on two wins
    clock = {"all": 1.0, "one": 1.0, "pool": 0.6}
    used = fake.run(tuner, lambda n, k: clock[n], 60)
    assert tuner.best == "pool" and used[-10:] == ["pool"] * 10
    assert fake.during[-1] == ("pool", 1, 2)  # BLAS on one thread, the pool on two
    assert used.count("pool") >= threads.BlasTuner.EXPLORE


def test_blas_tuner_stays_off_with_one_thread_or_when_asked(monkeypatch):
    fake = _FakeBlas(monkeypatch, policy=1)
    assert not threads.BlasTuner.wanted() and threads.BlasTuner().before() is None
    monkeypatch.setitem(threads._state, "policy", 2)
    assert threads.BlasTuner.wanted()
    monkeypatch.setenv("GRAPHC_BLAS_TUNING", "0")
    assert not threads.BlasTuner.wanted() and fake.set == []


def test_numpy_backend_steps_that_call_blas_are_tuned_too(monkeypatch):
    from graphc.runtime.pystep import load_python_step
    fake = _FakeBlas(monkeypatch, policy=2)
    source = ("import numpy as np\n"
              "def make_step(consts, arena, seeds):\n"
              "    def step(a, b):\n"
              "        return np.matmul(a, b)\n"
              "    return step\n")
    step, _ = load_python_step(source, [])
    a = np.ones((4, 4), np.float32)
    for _ in range(3 * threads.BlasTuner.EXPLORE):
        np.testing.assert_array_equal(step(a, a), a @ a)
    assert step.tuner.best in ("all", "one") and 1 in fake.set  # it timed calls on one
    plain, _ = load_python_step(source.replace("np.matmul(a, b)", "a + b"), [])
    assert not hasattr(plain, "tuner")  # no BLAS: nothing to tune
    monkeypatch.setitem(threads._state, "policy", 1)
    one, _ = load_python_step(source, [])
    assert not hasattr(one, "tuner")  # one thread: nothing to choose


@pytest.mark.skipif(threads.available_cores() < 2, reason="one core: nothing is tuned")
def test_a_step_run_on_one_blas_thread_leaves_blas_at_the_policys_count(restore_blas,
                                                                         monkeypatch):
    from graphc.runtime.pystep import load_python_step
    monkeypatch.delenv("GRAPHC_BLAS_TUNING", raising=False)
    monkeypatch.setitem(threads._state, "policy", 2)
    monkeypatch.setitem(threads._state, "current", 2)
    threads._set_openblas(2)
    source = ("import numpy as np\n"
              "def make_step(consts, arena, seeds):\n"
              "    def step(a):\n"
              "        return np.matmul(a, a)\n"
              "    return step\n")
    step, _ = load_python_step(source, [])
    during, after = [], threads.BlasTuner.after
    monkeypatch.setattr(threads.BlasTuner, "before",  # the tuner chose one thread
                        lambda self: threads._use(1) or "one")
    monkeypatch.setattr(threads.BlasTuner, "after",
                        lambda self, n, t: during.append(blas_threads()) or after(self, n, t))
    a = np.ones((8, 8), np.float32)
    for _ in range(3):
        step(a)
        assert blas_threads() == 2  # NumPy's own OpenBLAS, back at the policy's count
    assert during == [1, 1, 1]


def test_calls_after_a_pause_are_not_timed(monkeypatch):
    # A step run in batches with pauses between them (a benchmark's rounds, an evaluation
    # between epochs): after each pause the first calls are slow on any thread count.
    fake = _FakeBlas(monkeypatch, policy=2)
    clock = [0.0]
    monkeypatch.setattr(threads, "_now", lambda: clock[0])

    def batches(tuner, count, size=20):
        used = []
        for b in range(count):
            clock[0] += 0.3  # the pause
            for k in range(size):
                n = tuner.before()
                took = 5.0e-3 if k < 3 else (1.0e-3 if n == "all" else 1.6e-3)
                clock[0] += took
                tuner.after(n, took)
                used.append(n)
        return used

    tuner = threads.BlasTuner()
    used = batches(tuner, 20)
    # two explorations in 400 calls (then EXPLOIT calls each), a pause in one of them
    # retimes up to WARM + 1 calls: the rest on two threads
    most = 2 * (threads.BlasTuner.EXPLORE + threads.BlasTuner.WARM + 1)
    assert tuner.best == "all" and used.count("one") <= most
    # timed as they are, the slow calls after each pause start an exploration each time
    monkeypatch.setattr(threads.BlasTuner, "IDLE", float("inf"))
    again = batches(threads.BlasTuner(), 20)
    assert again.count("one") > 3 * most


def test_a_confirmed_choice_is_timed_again_less_often(monkeypatch):
    """Each round that chooses what the last one chose doubles the calls until the next, up
    to QUIET_SECONDS of calls; a slowdown brings the rounds back at once, and a changed
    choice back to every EXPLOIT calls."""
    fake = _FakeBlas(monkeypatch, policy=2)
    tuner = threads.BlasTuner()
    step = 1e-4  # (seconds a call: QUIET_SECONDS hold 5,000)
    quiet = (lambda n, k: step if n == "all" else 1.9 * step)
    used = fake.run(tuner, quiet, 8000)
    rounds = (2 * threads.BlasTuner.EXPLORE)
    ones = [k for k, n in enumerate(used) if n == "one"]  # (a round alternates the two)
    starts = [k for j, k in enumerate(ones) if j == 0 or k - ones[j - 1] > 2]
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert gaps[:4] == [rounds + 256, rounds + 512, rounds + 1024, rounds + 2048], gaps
    assert tuner.exploit == 4096 and tuner.best == "all"
    assert used.count("one") < 10 * threads.BlasTuner.EXPLORE  # 256 calls a round: 31 rounds
    # a competitor: the very next calls explore, and the rounds come every EXPLOIT calls
    loaded = (lambda n, k: 4 * step if n == "all" else 1.9 * step)
    used = fake.run(tuner, loaded, 600, start=8000)
    assert "one" in used[:10] and tuner.best == "one" and tuner.exploit <= 512


@pytest.mark.parametrize("burst", [1, 2])
def test_a_step_called_after_a_pause_every_time_still_chooses(monkeypatch, burst):
    """A training loop whose input pipeline takes 50 ms between steps (``burst`` 1), or a
    benchmark timing two calls after each pause: every call is one a pause makes untimed. Left
    so, the tuner stalls on the choice its round had reached (here one thread, 1.8x slower)
    for good; once a round's worth of calls in a row went untimed, they are timed, since they
    are how the step runs."""
    fake = _FakeBlas(monkeypatch, policy=2)
    clock = [0.0]
    monkeypatch.setattr(threads, "_now", lambda: clock[0])
    tuner = threads.BlasTuner()
    took = {"all": 1.0e-3, "one": 1.8e-3}

    def call():
        n = tuner.before()
        clock[0] += took[n]
        tuner.after(n, took[n])
        return n
    for _ in range(4):  # back to back: a round under way, "one" to time next
        call()
    assert tuner.before() == "one"
    threads._restore_blas()
    used = []
    for _ in range(300 // burst):
        clock[0] += 0.05
        used += [call() for _ in range(burst)]
    assert tuner.best == "all" and used[-100:].count("all") >= 90  # (a round: 6 on one)
    assert fake.blas() == 2


def test_one_thread_chosen_in_a_passing_disturbance_is_left_soon(monkeypatch):
    """A round timed while another library's threads still spin picks one thread; the
    disturbance passes, and the step is back on the policy's threads EXPLOIT_ONE calls
    later, not EXPLOIT (W1's model in the scaling grid: 4 of 7 rounds at 1.43 ms against
    0.73-0.83)."""
    fake = _FakeBlas(monkeypatch, policy=2)
    tuner = threads.BlasTuner()
    fake.run(tuner, lambda n, k: 1.0 if n == "all" else 1.9, 20)
    assert tuner.best == "all"
    # the next round comes while "all" is disturbed (a slowdown starts it at once)
    disturbed = fake.run(tuner, lambda n, k: 3.0 if n == "all" else 1.9, 14, start=20)
    assert tuner.best == "one" and "one" in disturbed
    after = fake.run(tuner, lambda n, k: 1.0 if n == "all" else 1.9, 80, start=34)
    back = after.index("all", threads.BlasTuner.EXPLOIT_ONE)
    assert tuner.best == "all" and after[-20:] == ["all"] * 20
    assert back <= threads.BlasTuner.EXPLOIT_ONE + 2 * threads.BlasTuner.EXPLORE
