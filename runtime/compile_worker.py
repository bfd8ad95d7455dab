"""LLVM compilation in a helper process, so that llvmlite's per-compile leak stays bounded.

Each ``compile_ir`` leaks about 100-140 KB of native memory inside llvmlite (its pass builder
allocates instrumentation callbacks it never frees, and every pipeline run adds to them):
nothing a caller can close. A process that keeps meeting new feed shapes would grow without
bound, so ``runtime.jit.compile_ir`` sends compilations to this worker (a fresh interpreter
running only this module: no user script is re-imported, unlike multiprocessing's spawn),
which exits after ``RECYCLE`` compilations and is started again on the next one; its memory
goes back to the system with it.

The worker also compiles parts of a big module split in several (``jit.compile_ir(...,
parts=6)``) while this process compiles the others, when a core is free (``free_core``):
llvmlite runs one LLVM call at a time per process, so that is how a big step uses two cores.
It starts in ~0.1 s: it loads ``runtime/llvm_compile.py`` and this file by path, importing
llvmlite and nothing of graphc or NumPy; ``prestart`` starts it before the module's text is
ready.

``GRAPHC_COMPILE_WORKER`` chooses: ``auto`` (default) compiles the first ``IN_PROCESS``
modules in the process itself (scripts and tests pay nothing) and the rest in the worker;
``1`` always uses the worker, ``0`` never. A worker that cannot start or dies is reported
once (``RuntimeWarning``) and compilation goes on in the process.

Protocol: length-prefixed pickles on the worker's stdin/stdout. Request ``(ir_text, opt,
codegen_opt, target)``; reply ``("ok", llvm_compile.compile_text's fields)`` or ``("error",
headline, details)`` (an ``llvm_compile.IRError``).

This module imports nothing of graphc at module level (the worker runs it without the
package).
"""
import atexit
import glob
import os
import pickle
import struct
import subprocess
import sys
import threading
import warnings
from pathlib import Path

__all__ = ["compile_in_worker", "serve", "wanted", "parallel", "free_core", "prestart", "RECYCLE",
           "IN_PROCESS", "stats"]

RECYCLE = 100  # compilations per worker process (x ~140 KB: ~14 MB at most, then returned)
IN_PROCESS = 32  # auto: compilations done in the process before the worker takes over
_LEN = struct.Struct("<Q")
_lock = threading.Lock()  # one request at a time, and the worker's start and stop
_count_lock = threading.Lock()
_state = {"proc": None, "done": 0, "in_process": 0, "broken": False, "owner": None}
stats = {"worker_compiles": 0, "workers_started": 0}


def _mode():
    mode = os.environ.get("GRAPHC_COMPILE_WORKER", "auto").strip().lower()
    if mode in ("0", "no", "off", "false") or _state["broken"]:
        return "off"
    return "on" if mode in ("1", "yes", "on", "true") else "auto"


def wanted():
    """Whether the next compilation should go to the worker (and count it if not)."""
    mode = _mode()
    if mode != "auto":
        return mode == "on"
    with _count_lock:  # (not ``_lock``: a request in flight holds that one)
        _state["in_process"] += 1
        return _state["in_process"] > IN_PROCESS


def parallel(cores):
    """Whether a part of a module should compile in the worker beside this process: the
    worker is allowed (``GRAPHC_COMPILE_WORKER`` is not 0, it has not failed) and a core is
    free for it (``free_core``)."""
    return _mode() != "off" and free_core(cores)


def free_core(cores, loadavg="/proc/loadavg"):
    """Whether a core other than this process's is free now: the process may use ``cores``
    of them (affinity, cgroup quota: ``threads.available_cores``), two or more, and no more
    than cores - 2 threads of other processes are runnable right now (this process's own
    threads and its worker, still starting, are not counted).

    A CPU-bound job is runnable all the time, so one look tells; the load average would
    remember a job finished a minute ago. On a machine busy with other work, a second
    process only takes time from this one (the scheduler shares the CPU between autogroups,
    Linux's per-session groups, not processes): the 64-layer MLP's cold compile measured 1.81 s
    whole against 2.11 s in parts with the worker at a load of 4 on 2 cores (1.20 against 0.96 s
    under 1.7).
    """
    if cores < 2:
        return False
    try:
        with open(loadavg) as f:
            running = int(f.read().split()[3].split("/")[0])
    except (OSError, ValueError, IndexError):
        return True  # (no /proc: nothing says the machine is busy)
    return running - _ours_runnable() <= cores - 2


def _ours_runnable():
    """This process's runnable threads (this one among them) and its worker's (starting,
    most likely): they are not other work."""
    proc = _running()
    paths = glob.glob("/proc/self/task/*/stat") + ([f"/proc/{proc.pid}/stat"] if proc else [])
    n = 0
    for path in paths:
        try:
            with open(path) as f:
                n += f.read().rsplit(")", 1)[1].split()[0] == "R"
        except (OSError, IndexError):
            pass
    return max(n, 1)


def prestart(cores):
    """Start the worker now, if ``parallel(cores)`` and none runs, so that it is ready
    (~0.1 s) by the time a module's parts are; returns at once."""
    if not parallel(cores):
        return
    with _lock:
        if _running() is not None:
            return
        try:
            _start()
        except OSError as exc:
            _broken(exc)


def _broken(exc):
    _stop()
    if not _state["broken"]:
        _state["broken"] = True
        warnings.warn(f"graphc: the LLVM compile worker failed ({exc}); compiling in "
                      "this process from now on", RuntimeWarning, stacklevel=4)


def compile_in_worker(ir_text, opt, codegen_opt, target):
    """``llvm_compile.compile_text`` in the worker: its fields, or None when the worker is
    unavailable (the caller compiles in the process).

    Raises:
        llvm_compile.IRError: the IR does not parse or verify (as in the process).
    """
    with _lock:
        try:
            reply = _ask((ir_text, opt, codegen_opt, tuple(target)))
        except (OSError, EOFError, pickle.PickleError, struct.error) as exc:
            _broken(exc)
            return None
    if reply[0] == "error":
        from .llvm_compile import IRError
        raise IRError(reply[1], reply[2])
    stats["worker_compiles"] += 1
    return dict(reply[1])


def _running():
    """The worker this process started, if it still runs (a forked child leaves its parent's
    worker alone: their requests would cross on the same pipes)."""
    proc = _state["proc"]
    if proc is not None and _state["owner"] != os.getpid():
        _state["proc"] = proc = None
    return proc if proc is not None and proc.poll() is None else None


def _ask(request):
    proc = _running()
    if proc is None:
        proc = _start()
    _send(proc.stdin, request)
    reply = _receive(proc.stdout)
    _state["done"] += 1
    if _state["done"] >= RECYCLE:  # the worker exits by itself after RECYCLE; reap it
        _stop()
    return reply


_HERE = Path(__file__).resolve().parent
# The worker's program: this file and llvm_compile.py loaded by path, outside the package.
_PROGRAM = """\
import importlib.util, sys
sys.path[:0] = {path!r}
def load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
core = load("graphc_worker_llvm_compile", {core!r})
core.initialize()
load("graphc_worker_compile_worker", {worker!r}).serve(core)
"""


def _start():
    path = [p for p in sys.path if p]
    code = _PROGRAM.format(path=path, core=str(_HERE / "llvm_compile.py"),
                           worker=str(_HERE / "compile_worker.py"))
    env = dict(os.environ, GRAPHC_COMPILE_WORKER="0")
    proc = subprocess.Popen([sys.executable, "-c", code, str(RECYCLE)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, env=env, close_fds=True)
    _state["proc"], _state["done"], _state["owner"] = proc, 0, os.getpid()
    stats["workers_started"] += 1
    return proc


def _stop():
    """End the worker: EOF on its stdin (it exits), killed if it does not within 5 s."""
    proc = _state["proc"]
    _state["proc"] = None
    if proc is None or _state["owner"] != os.getpid():
        return
    for stream in (proc.stdin, proc.stdout):
        try:
            stream.close()
        except OSError:
            pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


atexit.register(_stop)


def _send(stream, value):
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_LEN.pack(len(data)) + data)
    stream.flush()


def _receive(stream):
    head = stream.read(_LEN.size)
    if len(head) != _LEN.size:
        raise EOFError("the compile worker exited")
    (n,) = _LEN.unpack(head)
    data = stream.read(n)
    if len(data) != n:
        raise EOFError("the compile worker exited mid-reply")
    return pickle.loads(data)  # noqa: S301  (our own child process, over its own pipe)


def serve(core):
    """The worker's loop: compile requests from stdin with ``core.compile_text`` (the
    ``llvm_compile`` module, passed in: this file runs outside the package) until EOF or
    ``argv[1]`` of them."""
    limit = int(sys.argv[1]) if len(sys.argv) > 1 else RECYCLE
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing else may write into the reply stream
    for _ in range(limit):
        try:
            ir_text, opt, codegen_opt, target = _receive(stdin)
        except EOFError:
            return
        try:
            _send(stdout, ("ok", core.compile_text(ir_text, opt, codegen_opt, target)))
        except core.IRError as exc:
            _send(stdout, ("error", exc.headline, exc.details))
