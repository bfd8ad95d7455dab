"""One threading policy, owned by graphc: how many threads a step (BLAS and graphc's own
thread pool) may use.

The count comes from, in order: ``GRAPHC_NUM_THREADS``; TF1's
``ConfigProto(intra_op_parallelism_threads=n)`` given to a Session (0: not set);
``OPENBLAS_NUM_THREADS`` or ``OMP_NUM_THREADS`` (what BLAS itself would read); else every
core the process may use. BLAS has one thread pool per process: the latest Session (or
``gc.compile``) sets it. It is never more than those cores: the CPUs of the process's
affinity mask, and the CPU quota of its cgroup (a container limited to 1.5 CPUs gets 1
thread). BLAS threads beyond the cores spin against the step's own work (and against other
processes): on a busy machine that turned a 1.5 ms CNN step into 40-100 ms.

``apply_policy`` sets NumPy's OpenBLAS (the BLAS whose entry points compiled steps call, see
``blas``) and graphc's thread pool (``parallel``, where native kernels with enough work run in
chunks) to that many threads; the LLVM backend reads the count when it decides which GEMMs
run natively (``blas.blas_threads``).

Example:
    >>> apply_policy(requested=1)   # as Session(config=ConfigProto(intra_op_...=1)) does
    1
"""
import collections
import ctypes
import math
import os
import time

from . import parallel
from .blas import blas_threads, limit_blas_threads, openblas_function

__all__ = ["available_cores", "thread_count", "apply_policy", "cgroup_cpus", "BlasTuner",
           "cap_policy", "policy_threads", "tuned"]

# The policy's thread count (None until apply_policy ran), the count BLAS has now and the
# pool's, as
# graphc set it (so that a step switching counts calls the setter only on a change).
_state = {"policy": None, "current": None, "pool": None}


def cgroup_cpus(text):
    """CPUs a cgroup v2 ``cpu.max`` line allows (``"max 100000"``: None, no limit;
    ``"150000 100000"``: 1, the whole CPUs of the quota, at least 1)."""
    parts = text.split()
    if len(parts) != 2 or parts[0] == "max":
        return None
    quota, period = int(parts[0]), int(parts[1])
    return max(quota // max(period, 1), 1)


def available_cores():
    """The cores this process may run on: its affinity mask, capped by its cgroup quota."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota = cgroup_cpus(f.read())
    except (OSError, ValueError):
        quota = None
    return max(min(n, quota) if quota else n, 1)


def thread_count(requested=None):
    """The threads steps may use (see module docstring).

    Args:
        requested: ``intra_op_parallelism_threads`` (None or 0: not set).
    Raises:
        ValueError: ``GRAPHC_NUM_THREADS`` that is not a positive integer.
    """
    cores = available_cores()
    env = os.environ.get("GRAPHC_NUM_THREADS", "").strip()
    if env:
        if not env.isdigit() or int(env) < 1:
            raise ValueError(f"GRAPHC_NUM_THREADS must be a positive integer, found {env!r}")
        return min(int(env), cores)
    if requested:
        return min(int(requested), cores)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(var, "").strip()
        if value.isdigit() and int(value) >= 1:
            return min(int(value), cores)
    return cores


def _openblas_setter():
    """NumPy's OpenBLAS ``set_num_threads`` (None: no OpenBLAS, or no setter), found once."""
    if "setter" not in _state:
        fn = openblas_function("scipy_openblas_set_num_threads64_",
                               "openblas_set_num_threads64_", "openblas_set_num_threads")
        if fn is not None:
            fn.argtypes, fn.restype = [ctypes.c_int], None
        _state["setter"] = fn
    return _state["setter"]


def _set_openblas(n):
    fn = _openblas_setter()
    if fn is None:
        return False
    fn(int(n))
    return True


def apply_policy(requested=None):
    """Set BLAS and graphc's thread pool to ``thread_count(requested)`` threads; returns it."""
    n = thread_count(requested)
    if blas_threads() != n and not _set_openblas(n):
        limit_blas_threads(n)  # (no setter: steps change only the pool's count)
    parallel.set_threads(n)
    _state["policy"] = _state["current"] = _state["pool"] = n
    return n


def policy_threads():
    """The policy's thread count (``thread_count()`` when no Session or compile set one)."""
    return _state["policy"] or thread_count()


def cap_policy(n):
    """At most ``n`` threads from now on (an MPI rank's share of its node's cores)."""
    if _state["policy"] is not None:
        _state["policy"] = min(_state["policy"], n)
        _state["current"] = None
    else:
        _state["policy"] = min(thread_count(), n)
    parallel.set_threads(_state["policy"])
    _state["pool"] = _state["policy"]


def _restore_blas():
    """BLAS back at the policy's count after a call that ran it on fewer threads: BLAS's
    count is the whole process's, and the user's own NumPy calls between steps (and other
    steps, untuned ones) must find what the policy says, not what one step chose last
    (about 1 us a call, only after calls that changed it)."""
    n = _state["policy"]
    if _state["current"] != n and n is not None:
        _set_openblas(n)
        _state["current"] = n


def _use(n, pool=None):
    """Run the next calls on ``n`` BLAS threads (where graphc can set it) and ``pool`` (default
    ``n``) threads of graphc's pool; each is set only when it changes."""
    pool = n if pool is None else pool
    if _state["current"] != n:
        _set_openblas(n)
        _state["current"] = n
    if _state["pool"] != pool:
        parallel.set_threads(pool)
        _state["pool"] = pool


class BlasTuner:
    """Chooses, for one step that calls BLAS or runs kernels on the thread pool, whether its
    calls run on the policy's threads or on one (BLAS and pool alike; or, in a step with
    both, the pool on the policy's threads and BLAS on one), by timing the step's own calls,
    and chooses again from time to time.

    The policy's count is right on an idle machine; with another process busy on a core,
    BLAS's threads wait for each other and a GEMM-bound step gets several times slower (W1:
    2.7 ms quiet, 9.6 ms beside one busy process with 2 threads, 4.7 ms with 1). So each
    round times ``EXPLORE`` calls with each choice, in turn, then runs ``EXPLOIT`` calls
    with the chosen one (twice as many after each round that chose the same, up to
    ``QUIET_SECONDS`` of calls): more than one thread only when its mean time is under ``MARGIN`` of
    one thread's (under load, several threads are fast now and then and very slow at other
    times: the mean counts the slow calls, and a wrong choice of several threads costs more
    than a wrong choice of one). The first call of a step (page faults, cold caches) is not
    timed, nor are a call that starts more than ``IDLE`` seconds after the step's previous
    one ended and the ``WARM`` calls after it: after a pause the first calls run slowly on any
    thread count (W1, 2 threads, after 0.3 s of sleep: 4.7, 3.4, 2.9 ms, then 2.3), and
    timed as they were, they made the tuner choose one thread for 256 calls in a benchmark
    that ran each step's batches after a pause (3.7 ms a step instead of 2.2). Where every
    call comes after a pause (``STALLED`` in a row untimed), they are timed after all.
    ``GRAPHC_BLAS_TUNING=0`` keeps the policy's count.

    Example:
        >>> tuner = BlasTuner()
        >>> n, t0 = tuner.before(), time.perf_counter()
        >>> step(); tuner.after(n, time.perf_counter() - t0)
    """

    EXPLORE = 6
    EXPLOIT = 256
    # A round that chooses what the round before chose doubles the calls until the next, up
    # to this many seconds of the step's calls (the timed choice that loses costs its calls
    # each round: W4, 0.145 ms at 2 threads, ran 3.4-5% slower tuned than untuned with a
    # round every 256 calls); a changed choice, or a slowdown, brings it back to EXPLOIT.
    QUIET_SECONDS = 0.5
    # A change to one thread starts at this many calls to the next round (then doubles, as
    # above): one thread is the choice a passing disturbance makes (another library's
    # threads still spinning while a round times the policy's count), and a steady step
    # gives no sign that it has passed. W1's model in bench_scaling.py's grid at 2 threads:
    # a round timed beside torch's threads chose one thread for 256 calls, four of the
    # grid's seven rounds, 1.43 ms a step against 0.73-0.83.
    EXPLOIT_ONE = 32
    MARGIN = 0.9
    SLOWER = 1.3  # the last 8 calls' mean this much above the chosen count's: explore again
    IDLE = 0.02  # seconds between calls after which the next calls are not timed...
    WARM = 2  # ...this call and this many more...
    # ...unless this many calls in a row went untimed so: then pauses are how the step runs
    # (an input pipeline between steps, a few calls at a time), its calls are all like these,
    # and skipping them would leave a round stalled on whichever choice it had reached
    STALLED = 2 * EXPLORE
    # (BLAS threads, pool threads) of each choice; "all" and "pool" are the policy's count
    CHOICES = {"all": ("all", "all"), "one": (1, 1), "pool": (1, "all")}

    def __init__(self, pool_and_blas=False):
        """``pool_and_blas``: the step has split kernels and BLAS calls, so a third choice is
        timed too: the pool on the policy's threads and BLAS on one (OpenBLAS's threads keep
        spinning for a while after each call, and took the second core from the pool's
        worker: a 64x64 CNN with its dense layer's GEMMs on two BLAS threads ran its split
        convolutions no faster than on one thread)."""
        self.choices = ["all", "one", "pool"] if pool_and_blas else ["all", "one"]
        self.phase = -1  # the first call is not timed
        self.samples = {}
        self.best = None
        self.expected = None
        self.exploit = self.EXPLOIT  # calls between this round and the next
        self.recent = collections.deque(maxlen=8)  # the last exploiting calls, and their sum
        self.recent_sum = 0.0
        self.last_end = None  # when the previous call ended (perf_counter)
        self.untimed = 0  # calls still to run untimed after a pause
        self.skipped = 0  # calls in a row left untimed so (up to STALLED)

    @staticmethod
    def wanted():
        """Whether tuning can do anything here: a policy of more than one thread, a BLAS
        whose count graphc can set, and GRAPHC_BLAS_TUNING not 0."""
        return (_state["policy"] or 0) > 1 and os.environ.get("GRAPHC_BLAS_TUNING") != "0"

    def before(self):
        """Set the thread counts for this call; returns the choice (None: left alone)."""
        most = _state["policy"]
        if most is None or most < 2:
            return None
        explore = len(self.choices) * self.EXPLORE
        if self.phase < 0:
            choice = "all"
        elif self.phase < explore:
            choice = self.choices[self.phase % len(self.choices)]
        else:
            choice = self.best or "all"
        blas, pool = self.CHOICES[choice]  # (this runs on every call of the step)
        _use(most if blas == "all" else blas, most if pool == "all" else pool)
        return choice

    def after(self, choice, seconds):
        """Record that this call ran with ``choice`` and took ``seconds``; BLAS's count goes
        back to the policy's (``_restore_blas``)."""
        if _state["current"] != _state["policy"]:
            _restore_blas()
        explore = len(self.choices) * self.EXPLORE
        end, last = _now(), self.last_end
        self.last_end = end
        if choice is None or self.phase < 0:
            self.phase = 0
            return
        if last is not None and end - seconds - last > self.IDLE:
            self.untimed = self.WARM + 1  # after a pause: this call and WARM more
        if not self.untimed:
            self.skipped = 0
        else:
            self.untimed -= 1
            if self.skipped < self.STALLED:  # (else timed: see STALLED)
                self.skipped += 1
                if self.phase >= explore:  # (exploring: the same choice is timed again)
                    self.phase = (0 if self.phase + 1 >= explore + self.exploit
                                  else self.phase + 1)
                return
        if self.phase < explore:
            self.samples.setdefault(choice, []).append(seconds)
            if self.phase == explore - 1:
                mean = {k: math.fsum(v) / len(v) for k, v in self.samples.items()}
                # threads only where they are clearly faster than one (see the docstring)
                faster = [k for k in mean if k != "one" and
                          mean[k] < self.MARGIN * mean.get("one", float("inf"))]
                best = min(faster, key=mean.get) if faster else "one"
                if best == self.best:  # (confirmed: the next round comes later)
                    most = max(self.EXPLOIT, int(self.QUIET_SECONDS / max(mean[best], 1e-9)))
                    self.exploit = min(2 * self.exploit, most)
                else:
                    self.exploit = self.EXPLOIT_ONE if best == "one" else self.EXPLOIT
                self.best = best
                self.expected, self.samples = mean[self.best], {}
                self.recent.clear()
                self.recent_sum = 0.0
            self.phase += 1
            return
        # Exploiting: the load may change (a competitor starts): the last calls tell.
        recent = self.recent  # (a running sum: this runs on every call of the step)
        if len(recent) == 8:
            self.recent_sum -= recent[0]
        recent.append(seconds)
        self.recent_sum += seconds
        slower = len(recent) == 8 and self.recent_sum > 8 * self.SLOWER * self.expected
        if slower:
            self.exploit = self.EXPLOIT
        self.phase = 0 if slower or self.phase + 1 >= explore + self.exploit else self.phase + 1


_now = time.perf_counter  # (the tuner's clock; tests replace it)


def tuned(step):
    """``step`` (a Python function that calls BLAS: a NumPy-backend step) under its own
    ``BlasTuner``, or ``step`` itself when tuning can do nothing here (``BlasTuner.wanted``).
    A call that raises is not timed."""
    if not BlasTuner.wanted():
        return step
    tuner, clock = BlasTuner(), time.perf_counter

    def run(*args):
        n, t0 = tuner.before(), clock()
        try:
            out = step(*args)
        except BaseException:
            _restore_blas()
            raise
        tuner.after(n, clock() - t0)
        return out
    run.tuner = tuner
    return run
