"""LLVM compilation in a helper process, so that llvmlite's per-compile leak stays bounded.

Each ``compile_ir`` leaks about 100-140 KB of native memory inside llvmlite (its pass builder
allocates instrumentation callbacks it never frees, and every pipeline run adds to them):
nothing a caller can close. A process that keeps meeting new feed shapes would grow without
bound, so ``runtime.jit.compile_ir`` sends compilations to this worker (a fresh interpreter
running only this module: no user script is re-imported, unlike multiprocessing's spawn),
which exits after ``RECYCLE`` compilations and is started again on the next one; its memory
goes back to the system with it.

``GRAPHC_COMPILE_WORKER`` chooses: ``auto`` (default) compiles the first ``IN_PROCESS``
modules in the process itself (scripts and tests pay nothing) and the rest in the worker;
``1`` always uses the worker, ``0`` never. A worker that cannot start or dies is reported
once (``RuntimeWarning``) and compilation goes on in the process.

Protocol: length-prefixed pickles on the worker's stdin/stdout. Request ``(ir_text, opt,
codegen_opt, target)``; reply ``("ok", fields of CompiledModule)`` or ``("error", message,
details, hint)`` (a ``CompileError``).
"""
import atexit
import os
import pickle
import struct
import subprocess
import sys
import threading
import warnings

from graphc.errors import CompileError

__all__ = ["compile_in_worker", "serve", "wanted", "RECYCLE", "IN_PROCESS", "stats"]

RECYCLE = 100  # compilations per worker process (x ~140 KB: ~14 MB at most, then returned)
IN_PROCESS = 32  # auto: compilations done in the process before the worker takes over
_LEN = struct.Struct("<Q")
_lock = threading.Lock()
_state = {"proc": None, "done": 0, "in_process": 0, "broken": False}
stats = {"worker_compiles": 0, "workers_started": 0}


def wanted():
    """Whether the next compilation should go to the worker (and count it if not)."""
    mode = os.environ.get("GRAPHC_COMPILE_WORKER", "auto").strip().lower()
    if mode in ("0", "no", "off", "false") or _state["broken"]:
        return False
    if mode in ("1", "yes", "on", "true"):
        return True
    with _lock:
        _state["in_process"] += 1
        return _state["in_process"] > IN_PROCESS


def compile_in_worker(ir_text, opt, codegen_opt, target):
    """``jit.compile_here`` in the worker: the fields of its ``CompiledModule`` (``target`` as
    a tuple), or None when the worker is unavailable (the caller compiles in the process).

    Raises:
        CompileError: the IR does not parse or verify (as in the process).
    """
    with _lock:
        try:
            reply = _ask((ir_text, opt, codegen_opt, tuple(target)))
        except (OSError, EOFError, pickle.PickleError, struct.error) as exc:
            _stop()
            if not _state["broken"]:
                _state["broken"] = True
                warnings.warn(f"graphc: the LLVM compile worker failed ({exc}); compiling in "
                              "this process from now on", RuntimeWarning, stacklevel=3)
            return None
    if reply[0] == "error":
        raise CompileError(reply[1], reply[2], hint=reply[3])
    stats["worker_compiles"] += 1
    return dict(reply[1])


def _ask(request):
    proc = _state["proc"]
    if proc is None or proc.poll() is not None:
        proc = _start()
    _send(proc.stdin, request)
    reply = _receive(proc.stdout)
    _state["done"] += 1
    if _state["done"] >= RECYCLE:  # the worker exits by itself after RECYCLE; reap it
        _stop()
    return reply


def _start():
    path = [p for p in sys.path if p]
    code = ("import sys; sys.path[:0] = " + repr(path) + "; "
            "from graphc.runtime import compile_worker, jit; "
            "compile_worker.serve(jit.compile_here, jit.HostTarget)")
    env = dict(os.environ, GRAPHC_COMPILE_WORKER="0")
    proc = subprocess.Popen([sys.executable, "-c", code, str(RECYCLE)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, env=env, close_fds=True)
    _state["proc"], _state["done"] = proc, 0
    stats["workers_started"] += 1
    return proc


def _stop():
    """End the worker: EOF on its stdin (it exits), killed if it does not within 5 s."""
    proc = _state["proc"]
    _state["proc"] = None
    if proc is None:
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


def serve(compile_here, host_target):
    """The worker's loop: compile requests from stdin with ``compile_here`` (``jit``'s, passed
    in so that this module imports nothing of the runtime) until EOF or ``argv[1]`` of them."""
    import dataclasses
    limit = int(sys.argv[1]) if len(sys.argv) > 1 else RECYCLE
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing else may write into the reply stream
    for _ in range(limit):
        try:
            ir_text, opt, codegen_opt, target = _receive(stdin)
        except EOFError:
            return
        try:
            compiled = compile_here(ir_text, opt, codegen_opt, host_target(*target))
            fields = {f.name: getattr(compiled, f.name)
                      for f in dataclasses.fields(compiled)}
            fields["target"] = tuple(fields["target"])
            _send(stdout, ("ok", fields))
        except CompileError as exc:
            _send(stdout, ("error", exc.message, list(exc.details), exc.hint))
