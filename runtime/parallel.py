"""The thread pool graphc's native kernels run in: ``parallel_for(task, ctx, n)`` for steps.

A kernel the code generator splits (``codegen.llvm.parallel``) runs as ``n`` chunks,
``task(ctx, chunk)`` each, through the address of ``gc_parallel_for`` that the step's table
holds (the callback slot ``"parallel_for"``, like BLAS's gemm: object code has no unresolved
symbols). The caller runs chunks too; the pool's workers take the others.

The pool is native code written here as LLVM IR and compiled once per process (llvmlite only:
a saved step loads it without the compiler). Its workers are pthreads that sleep on a
condition variable; after a call they watch for the next one for ``SPIN_CYCLES`` (about
0.1 ms: the split kernels of one step follow each other closely) before they sleep again, so
between steps nothing spins; a step about to call BLAS sends them to sleep at once
(``gc_pool_rest``), so that BLAS's threads find the cores free. A call:

- publishes (task, ctx, n) under the pool's mutex, bumps the generation and wakes the workers;
- every thread then claims chunks in one 64-bit word, ``generation << 32 | a bit per chunk
  taken``, by compare-and-swap, its own share first (thread t of T starts at chunk t n / T:
  consecutive split kernels give each thread the same part of their data, which its cache
  holds) and then any left, so a worker that wakes late (descheduled by another process) finds
  its share taken, and can never claim a chunk of a later call with this call's task: its
  generation no longer matches. (At most 32 chunks a call; a call of more runs on the caller.)
- the caller returns when ``done`` reaches ``n``: it waits only for chunks that were claimed,
  never for a worker that has not woken (under load the caller simply runs more chunks).

One call at a time: a second thread calling while the pool is busy runs its chunks by itself
(its own step, at one thread, instead of waiting). ``set_threads`` sets how many threads a
call may use, the caller included (``runtime.threads``' policy and tuner set it); 1 runs every
call on the caller. Workers copy the caller's MXCSR (flush-to-zero and denormals-are-zero, set
by the step) before running its chunks, so every chunk computes bit for bit what the caller
would. After ``fork`` the child starts its own workers (``os.register_at_fork``).

Example:
    >>> ensure_workers(2)              # once: the policy's thread count
    >>> set_threads(2)
    >>> address = callback_address()   # goes in a step's table
"""
import ctypes
import functools
import hashlib
import os
import threading

__all__ = ["ENTRY_POINTS", "adopt", "built", "callback_address", "code_digest", "ensure_workers",
           "object_code", "prefetch", "set_threads", "settle", "threads", "uses_pool",
           "workers"]

# The functions the runtime looks up in the pool's code (``_build``).
ENTRY_POINTS = ("gc_parallel_for", "gc_pool_worker", "gc_pool_setup", "gc_pool_rest",
                "gc_pool_set")

_MAX_WORKERS = 255
# After its chunks, a worker watches for the next call this long before it sleeps (and the
# caller for the last chunks before it waits): the kernels of one step follow each other
# within microseconds, and waking a sleeping thread costs tens of them. Between steps every
# thread sleeps. (Cycles of the time-stamp counter; ROUNDS bounds the wait where it has none.)
SPIN_CYCLES = 1 << 18
SPIN_ROUNDS = 1 << 16

_IR = r"""
@fns = internal global [7 x ptr] zeroinitializer
@mu = internal global [256 x i8] zeroinitializer, align 64
@cv_work = internal global [256 x i8] zeroinitializer, align 64
@cv_done = internal global [256 x i8] zeroinitializer, align 64
@busy = internal global i32 0, align 64
@claim = internal global i64 0, align 64
@done = internal global i64 0, align 64
@gen = internal global i64 0, align 64
@task = internal global ptr null
@ctx = internal global ptr null
@n = internal global i64 0
@active = internal global i64 0
@mxcsr = internal global i32 8064
@threads = internal global i64 1, align 64
@workers = internal global i64 0
@resting = internal global i64 0, align 64

define internal void @fcall(i64 %k, ptr %a, ptr %b) {
  %p = getelementptr [7 x ptr], ptr @fns, i64 0, i64 %k
  %f = load ptr, ptr %p
  %r = call i32 %f(ptr %a, ptr %b)
  ret void
}

define internal void @lock() {
  call void @fcall(i64 0, ptr @mu, ptr null)
  ret void
}

define internal void @unlock() {
  call void @fcall(i64 1, ptr @mu, ptr null)
  ret void
}

; Claim chunks of generation %g, trying each once from chunk %first on (a thread's own share
; first: consecutive split kernels hand each thread the same part of their data); count each
; one done, and wake the caller after the last.
define internal void @run(i64 %g, ptr %task, ptr %ctx, i64 %n, i64 %first) {
entry:
  br label %next
next:
  %k = phi i64 [0, %entry], [%k1, %skip], [%k1, %ran]
  %more = icmp ult i64 %k, %n
  br i1 %more, label %pick, label %out
pick:
  %s = add i64 %first, %k
  %i = urem i64 %s, %n
  %bit = shl i64 1, %i
  %k1 = add i64 %k, 1
  %v = load atomic i64, ptr @claim monotonic, align 8
  br label %try
try:
  %cur = phi i64 [%v, %pick], [%seen, %lost]
  %cg = lshr i64 %cur, 32
  %same = icmp eq i64 %cg, %g
  br i1 %same, label %check, label %out
check:
  %taken = and i64 %cur, %bit
  %free = icmp eq i64 %taken, 0
  br i1 %free, label %cas, label %skip
skip:
  br label %next
cas:
  %new = or i64 %cur, %bit
  %r = cmpxchg ptr @claim, i64 %cur, i64 %new acq_rel monotonic
  %seen = extractvalue {i64, i1} %r, 0
  %won = extractvalue {i64, i1} %r, 1
  br i1 %won, label %work, label %lost
lost:
  br label %try
work:
  call void %task(ptr %ctx, i64 %i)
  %old = atomicrmw add ptr @done, i64 1 acq_rel
  %fin = add i64 %old, 1
  %last = icmp eq i64 %fin, %n
  br i1 %last, label %wake, label %ran
wake:
  call void @lock()
  call void @fcall(i64 4, ptr @cv_done, ptr null)
  call void @unlock()
  br label %ran
ran:
  br label %next
out:
  ret void
}

; One round of watching: a pause, then whether the watch since %t0 (cycles) has lasted long
; enough (or %k rounds, where the cycle counter does not count).
define internal i1 @waited(i64 %t0, i64 %k) {
PAUSE
  %now = call i64 @llvm.readcyclecounter()
  %spent = sub i64 %now, %t0
  %long = icmp ugt i64 %spent, SPIN_CYCLES
  %many = icmp ugt i64 %k, SPIN_ROUNDS
  %stop = or i1 %long, %many
  ret i1 %stop
}

define void @gc_parallel_for(ptr %task, ptr %ctx, i64 %n) {
entry:
  %t = load atomic i64, ptr @threads monotonic, align 8
  %t1 = sub i64 %t, 1
  %wk = load atomic i64, ptr @workers monotonic, align 8
  %n1 = sub i64 %n, 1
  %w0 = call i64 @llvm.smin.i64(i64 %t1, i64 %wk)
  %w = call i64 @llvm.smin.i64(i64 %w0, i64 %n1)
  %some = icmp sgt i64 %w, 0
  %fits = icmp ule i64 %n, 32
  %par = and i1 %some, %fits
  br i1 %par, label %try, label %serial
try:
  %b = cmpxchg ptr @busy, i32 0, i32 1 acquire monotonic
  %got = extractvalue {i32, i1} %b, 1
  br i1 %got, label %go, label %serial
serial:
  %i = phi i64 [0, %entry], [0, %try], [%inext, %body]
  %more = icmp slt i64 %i, %n
  br i1 %more, label %body, label %end
body:
  call void %task(ptr %ctx, i64 %i)
  %inext = add i64 %i, 1
  br label %serial
end:
  ret void
go:
  call void @lock()
  %g0 = load i64, ptr @gen
  %g1 = add i64 %g0, 1
  %g = and i64 %g1, 4294967295
  store atomic i64 %g, ptr @gen monotonic, align 8
  store ptr %task, ptr @task
  store ptr %ctx, ptr @ctx
  store i64 %n, ptr @n
  store i64 %w, ptr @active
  store atomic i64 0, ptr @done monotonic, align 8
  store atomic i64 0, ptr @resting monotonic, align 8
SAVE_MXCSR
  %start = shl i64 %g, 32
  store atomic i64 %start, ptr @claim release, align 8
  call void @fcall(i64 3, ptr @cv_work, ptr null)
  call void @unlock()
  call void @run(i64 %g, ptr %task, ptr %ctx, i64 %n, i64 0)
  %t0 = call i64 @llvm.readcyclecounter()
  br label %spin
spin:
  %k = phi i64 [0, %go], [%k1, %pause]
  %d = load atomic i64, ptr @done acquire, align 8
  %all = icmp eq i64 %d, %n
  br i1 %all, label %finish, label %pause
pause:
  %k1 = add i64 %k, 1
  %stop = call i1 @waited(i64 %t0, i64 %k1)
  br i1 %stop, label %block, label %spin
block:
  call void @lock()
  br label %check
check:
  %d2 = load atomic i64, ptr @done acquire, align 8
  %all2 = icmp eq i64 %d2, %n
  br i1 %all2, label %unblock, label %sleep
sleep:
  call void @fcall(i64 2, ptr @cv_done, ptr @mu)
  br label %check
unblock:
  call void @unlock()
  br label %finish
finish:
  store atomic i32 0, ptr @busy release, align 4
  ret void
}

; A worker: sleeps until a call's generation appears; takes part when its index is below the
; call's worker count.
define ptr @gc_pool_worker(ptr %arg) {
entry:
  %me = ptrtoint ptr %arg to i64
  %seenp = alloca i64
  %mx = alloca i32
  store i64 0, ptr %seenp
  call void @lock()
  br label %check
check:
  %g = load atomic i64, ptr @gen monotonic, align 8
  %s = load i64, ptr %seenp
  %same = icmp eq i64 %g, %s
  br i1 %same, label %sleep, label %new
sleep:
  call void @fcall(i64 2, ptr @cv_work, ptr @mu)
  br label %check
new:
  store i64 %g, ptr %seenp
  %a = load i64, ptr @active
  %mine = icmp ult i64 %me, %a
  br i1 %mine, label %take, label %check
take:
  %task = load ptr, ptr @task
  %ctx = load ptr, ptr @ctx
  %n = load i64, ptr @n
  %me1 = add i64 %me, 1
  %share = mul i64 %me1, %n
  %threads = add i64 %a, 1
  %first = udiv i64 %share, %threads
LOAD_MXCSR
  call void @unlock()
  call void @run(i64 %g, ptr %task, ptr %ctx, i64 %n, i64 %first)
  %t0 = call i64 @llvm.readcyclecounter()
  br label %spin
spin:
  %k = phi i64 [0, %take], [%k1, %pause]
  %gnow = load atomic i64, ptr @gen monotonic, align 8
  %moved = icmp ne i64 %gnow, %g
  %rest = load atomic i64, ptr @resting monotonic, align 8
  %told = icmp ne i64 %rest, 0
  %wake = or i1 %moved, %told
  br i1 %wake, label %relock, label %pause
pause:
  %k1 = add i64 %k, 1
  %stop = call i1 @waited(i64 %t0, i64 %k1)
  br i1 %stop, label %relock, label %spin
relock:
  call void @lock()
  br label %check
}

; Pointers to pthread_mutex_lock, _unlock, pthread_cond_wait, _broadcast, _signal,
; pthread_mutex_init, pthread_cond_init; initializes the mutex and the two conditions.
define void @gc_pool_setup(ptr %f0, ptr %f1, ptr %f2, ptr %f3, ptr %f4, ptr %f5, ptr %f6) {
  store ptr %f0, ptr @fns
  %p1 = getelementptr [7 x ptr], ptr @fns, i64 0, i64 1
  store ptr %f1, ptr %p1
  %p2 = getelementptr [7 x ptr], ptr @fns, i64 0, i64 2
  store ptr %f2, ptr %p2
  %p3 = getelementptr [7 x ptr], ptr @fns, i64 0, i64 3
  store ptr %f3, ptr %p3
  %p4 = getelementptr [7 x ptr], ptr @fns, i64 0, i64 4
  store ptr %f4, ptr %p4
  %r0 = call i32 %f5(ptr @mu, ptr null)
  %r1 = call i32 %f6(ptr @cv_work, ptr null)
  %r2 = call i32 %f6(ptr @cv_done, ptr null)
  store i64 0, ptr @workers
  store i32 0, ptr @busy
  ret void
}

; Workers watching for the next call sleep now (the step is about to call BLAS, whose own
; threads need the cores).
define void @gc_pool_rest() {
  store atomic i64 1, ptr @resting monotonic, align 8
  ret void
}

define void @gc_pool_set(i64 %which, i64 %value) {
  %is_threads = icmp eq i64 %which, 0
  br i1 %is_threads, label %t, label %w
t:
  store atomic i64 %value, ptr @threads monotonic, align 8
  ret void
w:
  store atomic i64 %value, ptr @workers monotonic, align 8
  ret void
}

declare i64 @llvm.smin.i64(i64, i64)
declare i64 @llvm.readcyclecounter()
"""

_X86_SAVE = """  call void @llvm.x86.sse.stmxcsr(ptr @mxcsr)"""
_X86_LOAD = """  %mxv = load i32, ptr @mxcsr
  store i32 %mxv, ptr %mx
  call void @llvm.x86.sse.ldmxcsr(ptr %mx)"""
_X86_DECLS = """
declare void @llvm.x86.sse.stmxcsr(ptr)
declare void @llvm.x86.sse.ldmxcsr(ptr)
declare void @llvm.x86.sse2.pause()
"""

_lock = threading.Lock()
_pool = {"threads": None}  # + the compiled pool: "module", "parallel_for", "set", "workers"...
_SET = ctypes.CFUNCTYPE(None, ctypes.c_int64, ctypes.c_int64)
_SETUP = ctypes.CFUNCTYPE(None, *[ctypes.c_void_p] * 7)


def _ir_text():
    from . import jit
    x86 = jit.host_target().triple.startswith("x86_64")
    text = _IR.replace("SAVE_MXCSR", _X86_SAVE if x86 else "")
    text = text.replace("LOAD_MXCSR", _X86_LOAD if x86 else "")
    text = text.replace("PAUSE", "  call void @llvm.x86.sse2.pause()" if x86 else "")
    text = text.replace("SPIN_CYCLES", str(SPIN_CYCLES)).replace("SPIN_ROUNDS", str(SPIN_ROUNDS))
    return text + (_X86_DECLS if x86 else "")


def _pthread():
    """The C library with pthreads (glibc 2.34+ has them in libc; older in libpthread)."""
    lib = ctypes.CDLL(None)
    if hasattr(lib, "pthread_cond_broadcast"):
        return lib
    from ctypes.util import find_library  # (here only: it imports subprocess, ~6 ms)
    lib = ctypes.CDLL(find_library("pthread"))  # (runs ldconfig: ~2 ms)
    if hasattr(lib, "pthread_cond_broadcast"):
        return lib
    raise OSError("no pthread library in this process")


def prefetch():
    """Start compiling the pool on a thread of its own, unless it is built or under way.

    A process's first native step needs the pool only when it is loaded, after its own
    compilation: started while the step is lowered (Python), the pool's LLVM compilation
    (about 50 ms; it releases the GIL) runs beside it. (Not beside the step's own LLVM
    compilation: llvmlite runs one LLVM call at a time in a process.) ``_build`` takes the
    result, or compiles in place if the thread failed.
    """
    if "module" in _pool or "thread" in _prefetched:
        return
    with _lock:
        if "module" in _pool or "thread" in _prefetched:
            return
        box = _prefetched

        def compile_pool():
            try:
                box["object_code"] = _cached_object_code()
            except Exception:  # noqa: BLE001  (``_build`` compiles again and reports it)
                pass
        # not a daemon: interpreter exit waits for LLVM instead of tearing it down under it
        box["thread"] = threading.Thread(target=compile_pool, name="graphc-pool-compile")
        box["thread"].start()


_prefetched = {}  # "thread" compiling the pool's "object_code" (``prefetch``)


def settle():
    """Wait until a compilation ``prefetch`` started is over (the compiler calls it before
    a step is returned, whether or not the step needs the pool: a process that forks while
    another thread is inside LLVM leaves the child llvmlite's lock held)."""
    thread = _prefetched.get("thread")
    if thread is not None:
        thread.join()


def _cached_object_code():
    """The pool's object code from the runtime's object cache (also when users' steps are not
    cached: ``objcache.runtime_cache``), else compiled (about 60 ms: every process that used
    the pool paid it) and stored there."""
    from . import jit
    from .objcache import cache_key, runtime_cache
    text = _ir_text()
    code, _ = runtime_cache().get_or_compute(cache_key(text, "thread pool"),
                                             lambda: jit.compile_here(text).object_code)
    return code


@functools.lru_cache(maxsize=1)
def code_digest():
    """SHA-256 (hex) of the pool's IR for this host: what its object code was compiled from
    (a compile-cache entry carrying the pool's code is used only when this matches)."""
    return hashlib.sha256(_ir_text().encode()).hexdigest()


def object_code():
    """The pool's object code (of the pool this process built, or as ``_build`` finds it)."""
    return _pool.get("object_code") or _object_code()


def uses_pool(layout):
    """Whether a native step of ``layout`` (``llvm_step.StepLayout``) calls the pool: its
    table has the ``parallel_for`` callback."""
    return any(name == "parallel_for" for _, name in layout.callbacks)


def built():
    """Whether this process's pool is loaded."""
    return "module" in _pool


def adopt(loaded, code):
    """Make the pool from ``loaded``, an engine that holds the pool's object code ``code``
    besides a step's (``jit.load_object(step_code, also=[code])``: one engine, and no read
    of the runtime cache); the engine then stays open for the process (``keep_open``).

    Returns:
        False when the pool was built already (``loaded``'s copy of it is unused).
    """
    with _lock:
        if "module" in _pool:
            return False
        loaded.keep_open()
        _build(loaded, code)
        return True


def _object_code():
    """What ``prefetch`` compiled, else ``_cached_object_code``."""
    thread = _prefetched.get("thread")
    if thread is not None:
        thread.join()
        code = _prefetched.get("object_code")
        if code is not None:
            return code
    return _cached_object_code()


def _build(loaded=None, code=None):
    """Load the pool (unless ``loaded`` holds it: its object code ``code``), hand it the
    pthread functions (caller holds ``_lock``)."""
    from . import jit
    if loaded is None:
        code = _object_code()
        loaded = jit.load_object(code)
    lib = _pthread()
    names = ("pthread_mutex_lock", "pthread_mutex_unlock", "pthread_cond_wait",
             "pthread_cond_broadcast", "pthread_cond_signal", "pthread_mutex_init",
             "pthread_cond_init")
    addresses = [ctypes.cast(getattr(lib, n), ctypes.c_void_p).value for n in names]
    setup = _SETUP(loaded.address("gc_pool_setup"))
    setup(*addresses)
    create = lib.pthread_create
    create.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    detach = lib.pthread_detach
    detach.argtypes = [ctypes.c_ulong]
    _pool.update(module=loaded, object_code=code, lib=lib, setup=setup, addresses=addresses,
                 create=create, detach=detach, parallel_for=loaded.address("gc_parallel_for"),
                 rest=loaded.address("gc_pool_rest"),
                 worker=loaded.address("gc_pool_worker"),
                 set=_SET(loaded.address("gc_pool_set")), workers=0)
    _pool["set"](0, _pool.get("threads") or 1)


def _loaded():
    if "module" not in _pool:
        with _lock:
            if "module" not in _pool:
                _build()
    return _pool


def callback_address(name="parallel_for"):
    """The address of ``void gc_parallel_for(void (*task)(void *, int64), void *ctx, int64 n)``
    or (``"parallel_rest"``) of ``void gc_pool_rest(void)``, which sends the workers watching
    for the next call to sleep (a step calls it before BLAS). Compiles the pool on first use."""
    return _loaded()["rest" if name == "parallel_rest" else "parallel_for"]


def ensure_workers(count):
    """At least ``count - 1`` workers started (``count`` threads with the caller; at most 256).
    Calls may use ``count`` threads unless ``set_threads`` said otherwise."""
    pool = _loaded()
    want = min(int(count) - 1, _MAX_WORKERS)
    if pool["threads"] is None:
        set_threads(count)
    with _lock:
        while pool["workers"] < want:
            tid = ctypes.c_ulong()
            rc = pool["create"](ctypes.byref(tid), None, pool["worker"], pool["workers"])
            if rc != 0:
                break  # (no more threads: the pool runs with those it has)
            pool["detach"](tid.value)
            pool["workers"] += 1
            pool["set"](1, pool["workers"])


def set_threads(count):
    """Threads a call may use from now on, the caller included (1: every chunk on the caller).
    Recorded until the pool is first needed (a process without native steps compiles none)."""
    count = max(int(count), 1)
    if _pool["threads"] != count:
        _pool["threads"] = count
        if "set" in _pool:
            _pool["set"](0, count)


def threads():
    """The threads a call may use now (None: not set yet)."""
    return _pool["threads"]


def workers():
    """Workers started in this process."""
    return _pool.get("workers", 0)


def _after_fork_in_child():
    """The parent's workers do not exist in a forked child: set up again and start as many."""
    global _lock
    _lock = threading.Lock()  # (another thread may have held it at the fork)
    if "module" not in _pool:
        return
    want, count = _pool["workers"], _pool["threads"]
    _pool["setup"](*_pool["addresses"])
    _pool["workers"], _pool["threads"] = 0, None
    set_threads(count or 1)
    ensure_workers(want + 1)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
