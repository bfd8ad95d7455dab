"""A persistent on-disk cache of object code, keyed by program and target.

Compiling a step costs milliseconds to seconds; loading cached object code costs ~2 ms. An
entry is only ever executed after its checksum matched: a truncated or corrupted file (a
crash mid-write on a filesystem without ordered writes, a bad disk, a stray edit) is deleted
and reported as a miss, and the caller compiles again. Each entry records the key it was
built for: an entry filed under another key (another graph's object code, which would run
with this graph's buffers) is a miss too, recompiled and replaced, never executed.

Object code in the cache runs in every process that compiles the same graph, so the cache
trusts only a directory its user alone can write, as ssh and pip do: the directory (and each
entry) must be owned by this user (or root) and writable by no group or other user. A cache
directory that is not is ignored, with one ``RuntimeWarning`` naming it and why, and steps
compile without caching. A new directory is created with mode 0700.

Location: ``$GRAPHC_CACHE_DIR``, else ``$XDG_CACHE_HOME/graphc``, else ``~/.cache/graphc``.
Set ``GRAPHC_NO_CACHE=1`` to turn the cache off (every ``get`` misses, ``put`` does nothing).

The runtime's own modules (the thread pool: the same code in every process on one machine,
~50 ms of LLVM each time) are kept in ``runtime/`` under that directory (``runtime_cache``),
also when ``GRAPHC_NO_CACHE`` is set: that switch is about users' steps. So is the host's
description (``jit.host_target``, asked of LLVM once a boot: ``jit.keep_hosts_in``). Set
``GRAPHC_NO_RUNTIME_CACHE=1`` to compile them in every process too.

Entry layout (one file per key, ``<key>.gcobj``)::

    magic b"GRAPHCO\\0" | format version u32 | key (32 bytes) | payload length u64 |
    sha256(payload) | payload
"""
from __future__ import annotations

import hashlib
import mmap
import os
import re
import stat
import struct
import tempfile
import warnings
from pathlib import Path
from typing import Callable

from . import durable, jit

__all__ = ["FORMAT_VERSION", "ObjectCache", "cache_key", "default_cache_dir", "runtime_cache"]

FORMAT_VERSION = 2  # bump when the entry layout or the meaning of object code changes
_MAGIC = b"GRAPHCO\0"
_HEADER = struct.Struct("<8sI32sQ32s")
_TEMPORARY = re.compile(r"\.tmp-[a-z0-9_]{8}\.gcobj")  # put's temporary files
_warned = set()  # directories already warned about (once per process each)


def cache_key(*parts, target: jit.HostTarget | None = None) -> str:
    """Hash the parts that determine object code into a cache key.

    The target triple, CPU name and features, the llvmlite version (which pins LLVM) and
    FORMAT_VERSION are always included, so callers cannot forget them.

    Args:
        *parts: str or bytes, e.g. the LLVM IR text (or a hash of the program) and the
            optimization levels. Each part is length-prefixed, so ("ab", "c") and
            ("a", "bc") give different keys.
        target: the compilation target; the host when None.

    Returns:
        64 lowercase hex digits.

    Example:
        >>> key = cache_key(ir_text, "O2")
    """
    t = target or jit.host_target()
    h = hashlib.sha256()
    for part in (*parts, t.triple, t.cpu, t.features, jit.llvmlite_version(),
                 str(FORMAT_VERSION)):
        data = part.encode() if isinstance(part, str) else bytes(part)
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def default_cache_dir() -> Path:
    """Where the cache lives when no directory is given (see the module docstring)."""
    if os.environ.get("GRAPHC_CACHE_DIR"):
        return Path(os.environ["GRAPHC_CACHE_DIR"])
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "graphc"


def _off(variable):
    return os.environ.get(variable, "") in ("1", "true", "yes")


def runtime_cache() -> "ObjectCache":
    """The cache of the runtime's own object code (``runtime/`` in the default directory):
    on unless ``GRAPHC_NO_RUNTIME_CACHE`` is set, whatever ``GRAPHC_NO_CACHE`` says.

    Example:
        >>> code, hit = runtime_cache().get_or_compute(cache_key(pool_ir, "thread pool"), build)
    """
    return ObjectCache(default_cache_dir() / "runtime",
                       enabled=not _off("GRAPHC_NO_RUNTIME_CACHE"))


class ObjectCache:
    """Object code on disk, one checksummed file per key.

    Safe for concurrent processes: writers publish whole files with an atomic rename, so a
    reader sees an old entry, a new one or none, never a half-written one.

    Args:
        dir: the cache directory; ``default_cache_dir()`` when None. Created on first put.
        enabled: False disables the cache; None reads ``GRAPHC_NO_CACHE``.

    Attributes:
        hits, misses, corrupt: counters since construction (corrupt entries count as misses).

    Example:
        >>> cache = ObjectCache()
        >>> obj, hit = cache.get_or_compute(cache_key(ir), lambda: compile_ir(ir).object_code)
    """

    def __init__(self, dir: str | os.PathLike | None = None, enabled: bool | None = None):
        self.dir = Path(dir) if dir is not None else default_cache_dir()
        if enabled is None:
            enabled = not _off("GRAPHC_NO_CACHE")
        self.enabled = enabled
        self.hits = self.misses = self.corrupt = self.refused = 0

    def trusted(self) -> bool:
        """Whether the directory may hold code this process runs: it does not exist yet (it
        will be created 0700), or it is owned by this user (or root) and writable by no group
        or other user. Warns once per directory when it is not."""
        problem = unsafe_reason(self.dir, directory=True)
        if problem is None:
            return True
        self.refused += 1
        if str(self.dir) not in _warned:
            _warned.add(str(self.dir))
            warnings.warn(f"graphc: not using the object cache {self.dir}: {problem}; "
                          "compiling without it (make it yours and chmod go-w, or set "
                          "GRAPHC_CACHE_DIR)", RuntimeWarning, stacklevel=3)
        return False

    def path(self, key: str) -> Path:
        """The file that holds ``key``'s entry.

        Raises:
            ValueError: ``key`` is not 64 hex digits (keeps keys from naming other paths).
        """
        if len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
            raise ValueError(f"cache keys are 64 lowercase hex digits, got {key!r}")
        return self.dir / f"{key}.gcobj"

    def get(self, key: str, view: bool = False) -> bytes | memoryview | None:
        """Return the object code stored under ``key``, or None.

        With ``view``, a memoryview of the file's bytes past the header, mapped and not
        copied (a compiled step's entry is parsed in place: each copy of a 500 KB entry cost
        a fresh process ~0.1-0.2 ms of page faults).

        A damaged entry (bad magic, other format version, wrong length, checksum mismatch)
        or one built for another key is deleted and reported as a miss; an entry (or a
        directory) that another user could have written is ignored (``trusted``).
        """
        path = self.path(key)
        if not self.enabled:
            return None
        if not self.trusted():
            self.misses += 1
            return None
        try:
            with open(path, "rb") as f:
                if unsafe_reason(Path(path), fd=f.fileno()) is not None:
                    self.refused += 1
                    self.misses += 1
                    return None
                data = _mapped(f) if view else f.read()
        except (OSError, ValueError):
            self.misses += 1
            return None
        payload = _unpack(data, key)
        if payload is None:
            self.corrupt += 1
            self.misses += 1
            try:
                path.unlink()
            except OSError:
                pass  # another process removed or replaced it first
            return None
        self.hits += 1
        return payload if view else bytes(payload)

    def put(self, key: str, obj: bytes) -> bool:
        """Store ``obj`` under ``key``, replacing any entry.

        Failing to write (read-only or full disk) is not an error: the cache only saves
        time. No fsync: a torn file after a power loss fails its checksum and is dropped.

        Returns:
            True when the entry was written.
        """
        path = self.path(key)
        if not self.enabled or not self.trusted():
            return False
        obj = bytes(obj)
        header = _HEADER.pack(_MAGIC, FORMAT_VERSION, bytes.fromhex(key), len(obj),
                              hashlib.sha256(obj).digest())
        tmp = None
        try:
            self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            durable.remove_stale_temporaries(self.dir, _TEMPORARY)  # puts that were killed
            fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".tmp-", suffix=".gcobj")
            with os.fdopen(fd, "wb") as f:
                f.write(header)
                f.write(obj)
            os.replace(tmp, path)
            return True
        except OSError:
            if tmp is not None:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
            return False

    def get_or_compute(self, key: str, compute: Callable[[], bytes]) -> tuple[bytes, bool]:
        """Return ``(object code, hit)``, calling ``compute`` and storing its result on a miss."""
        obj = self.get(key)
        if obj is not None:
            return obj, True
        obj = compute()
        self.put(key, obj)
        return obj, False


def unsafe_reason(path: Path, directory: bool = False, fd: int | None = None) -> str | None:
    """Why ``path`` (a cache directory, or an entry open as ``fd``) may hold someone else's
    code, or None: owned by another user (root excepted), or writable by group or others.
    A directory that does not exist yet is safe (``put`` creates it 0700)."""
    try:
        st = os.fstat(fd) if fd is not None else os.stat(path)
    except FileNotFoundError:
        return None if directory else "it does not exist"
    except OSError as exc:
        return f"cannot stat it ({exc.strerror})"
    if not hasattr(os, "geteuid"):  # no POSIX owners (Windows): nothing to compare
        return None
    if directory and not stat.S_ISDIR(st.st_mode):
        return "it is not a directory"
    if st.st_uid not in (os.geteuid(), 0):
        return f"it is owned by uid {st.st_uid}, not by this user (uid {os.geteuid()})"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        who = [w for w, bit in (("its group", stat.S_IWGRP), ("others", stat.S_IWOTH))
               if st.st_mode & bit]
        return f"it is writable by {' and '.join(who)} (mode {stat.S_IMODE(st.st_mode):04o})"
    return None


def _mapped(f):
    """The file's bytes, mapped read-only rather than read: a fresh process reads a 340 KB
    entry in 0.02 ms instead of 0.22 (no new pages to fault in and copy into). Entries are
    replaced by renaming a new file over them (``put``), never rewritten in place, so the
    mapping keeps the bytes it had."""
    if os.fstat(f.fileno()).st_size == 0:
        return b""
    return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)


def _unpack(data: bytes, key: str) -> memoryview | None:
    """The payload of an entry built for ``key`` (a view of ``data``), or None when the
    entry is damaged in any way or was built for another key."""
    if len(data) < _HEADER.size:
        return None
    magic, version, built_for, length, digest = _HEADER.unpack_from(data)
    payload = memoryview(data)[_HEADER.size:]
    if magic != _MAGIC or version != FORMAT_VERSION or length != len(payload):
        return None
    if built_for != bytes.fromhex(key):
        return None
    if hashlib.sha256(payload).digest() != digest:
        return None
    return payload


def _read_host(key):
    return runtime_cache().get(key)


def _write_host(key, data):
    runtime_cache().put(key, data)


jit.keep_hosts_in(_read_host, _write_host)
