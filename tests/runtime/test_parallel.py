"""The native thread pool (runtime.parallel): every chunk runs exactly once per call, on more
than one thread when the pool has workers, from several Python threads at once, at one
thread, and in a forked child."""
import ctypes
import os
import threading

import numpy as np
import pytest

from graphc.runtime import jit, parallel

# task(ctx, c): ctx = [counts i64*, threads i64*, pthread_self, spin]; counts[c] += 1,
# threads[c] = pthread_self(), then a short busy loop so that workers get a share.
_IR = r"""
define void @task(ptr %ctx, i64 %c) {
entry:
  %counts = load ptr, ptr %ctx
  %tp = getelementptr ptr, ptr %ctx, i64 1
  %tids = load ptr, ptr %tp
  %sp = getelementptr ptr, ptr %ctx, i64 2
  %self = load ptr, ptr %sp
  %np = getelementptr ptr, ptr %ctx, i64 3
  %spinp = load ptr, ptr %np
  %spin = ptrtoint ptr %spinp to i64
  %p = getelementptr i64, ptr %counts, i64 %c
  %v = load i64, ptr %p
  %v2 = add i64 %v, 1
  store i64 %v2, ptr %p
  %tid = call i64 %self()
  %q = getelementptr i64, ptr %tids, i64 %c
  store i64 %tid, ptr %q
  br label %loop
loop:
  %i = phi i64 [0, %entry], [%i2, %loop]
  %acc = phi i64 [0, %entry], [%acc2, %loop]
  %acc2 = add i64 %acc, %i
  store volatile i64 %acc2, ptr %q
  %i2 = add i64 %i, 1
  %more = icmp slt i64 %i2, %spin
  br i1 %more, label %loop, label %done
done:
  store i64 %tid, ptr %q
  ret void
}

define void @drive(ptr %table) {
  %pf = load ptr, ptr %table
  %cp = getelementptr ptr, ptr %table, i64 1
  %np = getelementptr ptr, ptr %table, i64 5
  %n = load i64, ptr %np
  call void %pf(ptr @task, ptr %cp, i64 %n)
  ret void
}
"""


@pytest.fixture(scope="module")
def drive():
    loaded = jit.load_object(jit.compile_here(_IR).object_code)
    yield loaded.function("drive")
    loaded.close()


def _pthread_self():
    libc = ctypes.CDLL(None)
    return ctypes.cast(libc.pthread_self, ctypes.c_void_p).value


class _Call:
    """One caller's table: its own counters, so that callers never share memory."""

    def __init__(self, n, spin=0):
        self.counts = np.zeros(n, np.int64)
        self.tids = np.zeros(n, np.int64)
        self.table = (ctypes.c_void_p * 6)(parallel.callback_address(), self.counts.ctypes.data,
                                           self.tids.ctypes.data, _pthread_self(), spin or None,
                                           n)

    def __call__(self, drive, times=1):
        for _ in range(times):
            drive(ctypes.addressof(self.table))


@pytest.fixture
def two_threads():
    before = parallel.threads()
    parallel.ensure_workers(2)
    parallel.set_threads(2)
    yield
    parallel.set_threads(before or 1)


def test_every_chunk_runs_once_per_call_and_workers_take_part(drive, two_threads):
    call = _Call(8, spin=20000)
    seen = set()
    for _ in range(300):
        call(drive)
        seen |= set(call.tids.tolist())
    assert call.counts.tolist() == [300] * 8
    assert len(seen) >= 2, "no chunk ever ran on a worker"


def test_one_thread_runs_every_chunk_on_the_caller(drive, two_threads):
    parallel.set_threads(1)
    call = _Call(5, spin=1000)
    call(drive, 50)
    assert call.counts.tolist() == [50] * 5
    assert set(call.tids.tolist()) == {_self_id()}


def _self_id():
    libc = ctypes.CDLL(None)
    libc.pthread_self.restype = ctypes.c_uint64
    return ctypes.c_int64(libc.pthread_self()).value


def test_callers_on_several_python_threads_each_get_all_their_chunks(drive, two_threads):
    calls = [_Call(16, spin=500) for _ in range(4)]
    runners = [threading.Thread(target=c, args=(drive, 400)) for c in calls]
    for t in runners:
        t.start()
    for t in runners:
        t.join()
    for c in calls:  # a busy pool runs a second caller's chunks on that caller
        assert c.counts.tolist() == [400] * 16


def test_a_single_chunk_and_no_chunk(drive, two_threads):
    one, none = _Call(1), _Call(0)
    one(drive, 10)
    none(drive, 10)
    assert one.counts.tolist() == [10]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork")
def test_a_forked_child_starts_its_own_workers(drive, two_threads):
    _Call(4)(drive)  # the pool exists before the fork
    pid = os.fork()
    if pid == 0:  # (the child: exit code 0 when every chunk ran, on more than one thread)
        try:
            call = _Call(8, spin=20000)
            seen = set()
            for _ in range(200):
                call(drive)
                seen |= set(call.tids.tolist())
            ok = call.counts.tolist() == [200] * 8 and len(seen) >= 2
        except BaseException:
            ok = False
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_a_pool_compiled_in_the_background_is_the_one_loaded():
    # a fresh process: prefetch() starts the compilation, the first use takes its object code
    import subprocess
    import sys
    code = ("from graphc.runtime import parallel\n"
            "parallel.prefetch(); parallel.prefetch()\n"
            "thread = parallel._prefetched['thread']\n"
            "address = parallel.callback_address()\n"
            "assert address and not thread.is_alive()\n"
            "assert parallel._prefetched['object_code'] == bytes(parallel._pool['module'].object_code)\n"
            "parallel.ensure_workers(2)\n"
            "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
