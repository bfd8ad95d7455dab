"""Object code linked once into a shared library, loaded later by the dynamic loader.

Loading a step's object code into MCJIT costs a fresh process about 2.5 ms before the
first call, however small the step: LLVM's target set-up (0.4 ms), its first parse (0.2),
the engine, and RuntimeDyld reading every member's sections and symbols and relocating them
(1.2 ms for the 10k-node RNN's 320 KB). The compile cache therefore also keeps each native
step linked into a shared library (``link``, once, when the entry is written: ~6 ms of
``ld``), and a hit loads that with ``dlopen`` (``load``: ~0.4 ms, LLVM never started).

The library is the same machine code: the object files are linked as they are (their large
code model addresses everything absolutely, so the text has relocations, ``-z notext``),
every symbol but the ones asked for is local and bound inside the library (a version script,
``-Bsymbolic``): what the loader applies is one relative relocation per address the code
holds, and nothing it defines can meet another library's symbols. The bytes come from the
cache entry, checked like the object code; ``load`` writes them to a file of this process's
own, opens it and removes it, so no file outside the entry is ever trusted.

Where this cannot work (no ``ld``, no writable temporary directory, a system that refuses
relocations in text), ``link`` returns None and ``load`` raises, and callers load the object
code into MCJIT as before. ``GRAPHC_SHARED_STEPS=0`` turns both off.

This module imports only the standard library and the runtime's own modules: a saved step
runs without the compiler.
"""
from __future__ import annotations

import ctypes
import functools
import itertools
import os
import tempfile
import threading

from graphc.errors import ArtifactError

from .jit import CodeModule

__all__ = ["enabled", "link", "load", "SharedModule"]

_ENV = "GRAPHC_SHARED_STEPS"
_ELF_SHARED = b"\x7fELF"
_LINK_SECONDS = 60


def enabled() -> bool:
    """Whether steps are linked and loaded as shared libraries here (POSIX, not turned off
    with ``GRAPHC_SHARED_STEPS=0``)."""
    return os.environ.get(_ENV, "1") != "0" and os.name == "posix"


@functools.lru_cache(maxsize=1)
def _linker():
    """GNU ld (the linker whose handling of these objects was checked: ``ld.bfd``, or an
    ``ld`` that says it is GNU ld), or None."""
    import shutil  # (linking only: a hit imports less)
    import subprocess
    for name in ("ld.bfd", "ld"):
        path = shutil.which(name)
        if path is None:
            continue
        try:
            said = subprocess.run([path, "--version"], capture_output=True, text=True,
                                  timeout=_LINK_SECONDS).stdout
        except (OSError, subprocess.SubprocessError):
            continue
        if said.startswith("GNU ld"):
            return path
    return None


def link(parts, exports) -> bytes | None:
    """The object files ``parts`` (bytes) linked into one shared library exporting only
    ``exports`` (function names), or None when this system cannot (no ``ld``, or it fails).

    Example:
        >>> library = link([object_code], ["step"])
    """
    ld = _linker() if enabled() else None
    if ld is None or not parts or not exports:
        return None
    try:
        data = _linked(ld, parts, exports)
    except OSError:  # (no room for the parts, an unwritable temporary directory...)
        return None
    return data if data is not None and data[:4] == _ELF_SHARED else None


def _linked(ld, parts, exports):
    import subprocess
    with tempfile.TemporaryDirectory(prefix="graphc-link-") as folder:
        names = []
        for k, part in enumerate(parts):
            names.append(os.path.join(folder, f"part{k}.o"))
            with open(names[-1], "wb") as f:
                f.write(part)
        script = os.path.join(folder, "exports.map")
        with open(script, "w") as f:
            f.write("{ global: " + " ".join(f'"{n}";' for n in exports) + " local: *; };\n")
        out = os.path.join(folder, "step.so")
        try:
            done = subprocess.run([ld, "-shared", "-z", "notext", "-Bsymbolic",
                                   "--version-script", script, "-o", out, *names],
                                  capture_output=True, timeout=_LINK_SECONDS)
        except subprocess.SubprocessError:
            return None
        if done.returncode != 0 or not os.path.exists(out):
            return None
        with open(out, "rb") as f:
            return f.read()


def load(library, object_code, exports) -> "SharedModule":
    """Open ``library`` (what ``link`` returned, bytes or a view); ``object_code`` is what it
    was linked from (``SharedModule.object_code``).

    The bytes go to a file of a name no other library of this process had (the dynamic
    loader hands back the library already loaded under a name it is given again, whatever
    the file now holds), created for this process alone and removed once opened: in memory
    (``/dev/shm``) where the system lets code run from there, else in the temporary
    directory (a folder that refused a library another one took is not tried again).

    Raises:
        ArtifactError: shared steps are off here, or the loader refused the library (it
            names why); the caller then loads ``object_code`` into MCJIT.
    """
    if not enabled():
        raise ArtifactError("shared steps are off (GRAPHC_SHARED_STEPS=0)")
    reasons = {}
    for folder in _folders():
        try:
            handle = _open(library, folder)
        except OSError as exc:
            reasons[folder] = str(exc)
            continue
        _refused.update(reasons)  # (the library was fine: those folders refuse code)
        return SharedModule(handle, object_code, exports)
    raise ArtifactError("the dynamic loader refused a shared step: "
                        + "; ".join(f"{f}: {r}" for f, r in reasons.items()))


def _open(library, folder):
    path = os.path.join(folder, f"graphc-{os.getpid()}-{next(_serial)}-{os.urandom(4).hex()}.so")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        try:
            view = memoryview(library)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        return ctypes.CDLL(path, mode=os.RTLD_LOCAL | os.RTLD_NOW)
    finally:
        try:
            os.unlink(path)  # (the mapping stays)
        except OSError:
            pass


_serial = itertools.count()
_refused = set()  # folders where the loader could not map a library (mounted noexec...)


def _folders():
    """Where ``load`` may write libraries, best first."""
    shm = ["/dev/shm"] if os.access("/dev/shm", os.W_OK | os.X_OK) else []
    return [f for f in shm if f not in _refused] + [tempfile.gettempdir()]


class SharedModule(CodeModule):
    """A step's code opened by the dynamic loader: what ``jit.LoadedModule`` offers (its
    functions' addresses and callables, the object code it was linked from), for as long as
    this object lives (``close`` unloads it unless ``keep_open`` was called)."""

    def __init__(self, handle, object_code, exports):
        super().__init__(object_code)
        self._handle = handle
        self._exports = frozenset(exports)
        self._lock = threading.Lock()

    def address(self, name: str) -> int:
        """The address of the exported function ``name``.

        Raises:
            ArtifactError: the library exports no such function, or it was closed.
        """
        if self._handle is None:
            raise ArtifactError(f"cannot look up {name!r}: the shared step was closed")
        if name not in self._exports:
            raise ArtifactError(f"the shared step exports no function named {name!r}")
        try:
            return ctypes.cast(self._handle[name], ctypes.c_void_p).value
        except AttributeError:
            raise ArtifactError(f"the shared step defines no function named {name!r}") from None

    def close(self) -> None:
        """Unload the library (unless kept open); its functions must not be called after."""
        with self._lock:
            if self._handle is not None and not self._kept:
                _dlclose(self._handle._handle)
                self._handle = None

    def __del__(self):  # (as an MCJIT engine is freed with its module: nothing calls it now)
        try:
            self.close()
        except Exception:  # noqa: BLE001  (at interpreter exit)
            pass


def _dlclose(handle):
    import _ctypes
    _ctypes.dlclose(handle)
