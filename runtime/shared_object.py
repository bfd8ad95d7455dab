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

Only a *plain* library is linked or opened (``why_not_plain``): no library it needs, no
interpreter, no initializer or finalizer (nothing of it runs when it is opened or closed:
its code runs when the step calls it, as object code in MCJIT does), and every relocation
relative but those of the C library's ``memcpy``, ``memmove`` and ``memset`` (which LLVM
calls for large copies and fills, and which MCJIT binds the same way): nothing it defines
meets another library, and it uses nothing else of the process. ``ld`` makes such libraries
of graphc's object files; a library from a saved step (``graphc.client.aot``) that is not
one is refused before the loader sees it.

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

__all__ = ["enabled", "link", "link_step", "load", "SharedModule", "why_not_plain"]

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
    return data if data is not None and why_not_plain(data) is None else None


def link_step(object_code, entry, pool_code=b""):
    """(library, exports) of a native step, or None where ``link`` cannot: its object code
    (one object, or ``module_parts``' bundle of them) and, when given, the thread pool's
    ``pool_code``, exporting the step's ``entry`` and the pool's entry points. What the
    compile cache keeps in an entry and ``step.save`` in a saved step."""
    from . import jit, parallel
    exports = [entry] + (list(parallel.ENTRY_POINTS) if pool_code else [])
    parts = [bytes(m) for m in jit.object_members(object_code)]
    library = link(parts + ([bytes(pool_code)] if pool_code else []), exports)
    return None if library is None else (library, exports)


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
    problem = why_not_plain(library)
    if problem is not None:
        raise ArtifactError(f"a shared step that is not a plain library: {problem}")
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


# ELF: the relative relocation of each machine (x86-64, AArch64), the relocations that may
# bind one of ``_LIBC``'s functions (an address, or a GOT entry), and the dynamic entries a
# plain library must not have
_RELATIVE = {62: 8, 183: 1027}
_BINDING = {62: {1, 6}, 183: {257, 1025}}
_LIBC = frozenset({b"memcpy", b"memmove", b"memset"})
_PT_LOAD, _PT_DYNAMIC, _PT_INTERP = 1, 2, 3
_DT_RELA, _DT_RELASZ, _DT_RELAENT = 7, 8, 9
_DT_STRTAB, _DT_SYMTAB, _DT_STRSZ = 5, 6, 10
_FORBIDDEN = {1: "a library it needs (DT_NEEDED)", 12: "an initializer (DT_INIT)",
              13: "a finalizer (DT_FINI)", 25: "initializers (DT_INIT_ARRAY)",
              26: "finalizers (DT_FINI_ARRAY)", 32: "initializers (DT_PREINIT_ARRAY)",
              17: "REL relocations (DT_REL)", 23: "PLT relocations (DT_JMPREL)",
              15: "a search path (DT_RPATH)", 29: "a search path (DT_RUNPATH)"}


def why_not_plain(library) -> str | None:
    """Why ``library`` (bytes or a view) is not a plain shared library (module docstring),
    or None when it is: a 64-bit little-endian ELF shared object for x86-64 or AArch64, with
    a dynamic section and no interpreter, none of ``_FORBIDDEN``'s entries, and only
    relative relocations but those binding an undefined ``memcpy``, ``memmove`` or
    ``memset``.

    Example:
        >>> why_not_plain(b"#!/bin/sh")
        'not an ELF file'
    """
    import struct
    data = memoryview(library).cast("B")
    if len(data) < 64 or bytes(data[:4]) != _ELF_SHARED:
        return "not an ELF file"
    if data[4] != 2 or data[5] != 1:
        return "not a 64-bit little-endian ELF file"
    kind, machine = struct.unpack_from("<HH", data, 16)
    if kind != 3:
        return "not a shared object"
    relative = _RELATIVE.get(machine)
    if relative is None:
        return f"for machine {machine}, not x86-64 or AArch64"
    (phoff,), (phentsize, phnum) = struct.unpack_from("<Q", data, 32), \
        struct.unpack_from("<HH", data, 54)
    if phentsize < 56 or phoff + phnum * phentsize > len(data):
        return "truncated program headers"
    loads, dynamic = [], None
    for k in range(phnum):
        kind, _, offset, vaddr, _, size = struct.unpack_from("<IIQQQQ", data, phoff + k * phentsize)
        if kind == _PT_INTERP:
            return "asks for an interpreter"
        if kind == _PT_LOAD:
            loads.append((vaddr, offset, size))
        elif kind == _PT_DYNAMIC:
            dynamic = (offset, size)
    if dynamic is None or dynamic[0] + dynamic[1] > len(data):
        return "no dynamic section in the file"
    tags = {}
    for at in range(dynamic[0], dynamic[0] + dynamic[1] - 15, 16):
        tag, value = struct.unpack_from("<qQ", data, at)
        if tag == 0:
            break
        if tag in _FORBIDDEN:
            return "has " + _FORBIDDEN[tag]
        tags[tag] = value
    size = tags.get(_DT_RELASZ, 0)
    if not size:
        return None
    start = _file_offset(loads, tags.get(_DT_RELA), size)
    if start is None or tags.get(_DT_RELAENT, 24) != 24 or size % 24:
        return "relocations outside the file"
    import numpy as np  # (one comparison over every relocation's type word)
    info = np.frombuffer(data, np.uint64, size // 8, start)[1::3]
    for word in info[info != relative].tolist():  # (a few: memcpy's and memset's)
        problem = _binding(data, loads, tags, machine, word)
        if problem is not None:
            return problem
    return None


def _binding(data, loads, tags, machine, word):
    """Why the relocation of info ``word`` is not one of a plain library (None: it binds an
    undefined function of ``_LIBC``)."""
    import struct
    symbol, kind = word >> 32, word & 0xFFFFFFFF
    if kind not in _BINDING[machine] or symbol == 0:
        return f"a relocation of type {kind}"
    table = _file_offset(loads, tags.get(_DT_SYMTAB), (symbol + 1) * 24)
    strings = _file_offset(loads, tags.get(_DT_STRTAB), tags.get(_DT_STRSZ, 0))
    if table is None or strings is None:
        return "a relocation that binds a symbol outside the file"
    name_at, _, _, section = struct.unpack_from("<IBBH", data, table + symbol * 24)
    end = bytes(data[strings + name_at:strings + tags[_DT_STRSZ]]).find(b"\0")
    name = bytes(data[strings + name_at:strings + name_at + end]) if end >= 0 else b""
    if section != 0 or name not in _LIBC:
        return f"a relocation that binds the symbol {name.decode('latin-1')!r}"
    return None


def _file_offset(loads, vaddr, size):
    """Where the ``size`` bytes at address ``vaddr`` lie in the file (None: not all in one
    loaded segment's bytes)."""
    if vaddr is None:
        return None
    for start, offset, length in loads:
        if start <= vaddr and vaddr + size <= start + length:
            return offset + vaddr - start
    return None


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
