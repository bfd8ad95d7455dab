"""A persistent on-disk cache of object code, keyed by program and target.

Compiling a step costs milliseconds to seconds; loading cached object code costs ~2 ms. An
entry is only ever executed after its checksum matched: a truncated or corrupted file (a
crash mid-write on a filesystem without ordered writes, a bad disk, a stray edit) is deleted
and reported as a miss, and the caller compiles again.

Location: ``$GRAPHC_CACHE_DIR``, else ``$XDG_CACHE_HOME/graphc``, else ``~/.cache/graphc``.
Set ``GRAPHC_NO_CACHE=1`` to turn the cache off (every ``get`` misses, ``put`` does nothing).

Entry layout (one file per key, ``<key>.gcobj``)::

    magic b"GRAPHCO\\0" | format version u32 | payload length u64 | sha256(payload) | payload
"""
from __future__ import annotations

import hashlib
import os
import struct
import tempfile
from pathlib import Path
from typing import Callable

from . import jit

__all__ = ["FORMAT_VERSION", "ObjectCache", "cache_key", "default_cache_dir"]

FORMAT_VERSION = 1  # bump when the entry layout or the meaning of object code changes
_MAGIC = b"GRAPHCO\0"
_HEADER = struct.Struct("<8sIQ32s")


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
            enabled = os.environ.get("GRAPHC_NO_CACHE", "") not in ("1", "true", "yes")
        self.enabled = enabled
        self.hits = self.misses = self.corrupt = 0

    def path(self, key: str) -> Path:
        """The file that holds ``key``'s entry.

        Raises:
            ValueError: ``key`` is not 64 hex digits (keeps keys from naming other paths).
        """
        if len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
            raise ValueError(f"cache keys are 64 lowercase hex digits, got {key!r}")
        return self.dir / f"{key}.gcobj"

    def get(self, key: str) -> bytes | None:
        """Return the object code stored under ``key``, or None.

        A damaged entry (bad magic, other format version, wrong length, checksum mismatch)
        is deleted and reported as a miss.
        """
        path = self.path(key)
        if not self.enabled:
            return None
        try:
            data = path.read_bytes()
        except OSError:
            self.misses += 1
            return None
        payload = _unpack(data)
        if payload is None:
            self.corrupt += 1
            self.misses += 1
            try:
                path.unlink()
            except OSError:
                pass  # another process removed or replaced it first
            return None
        self.hits += 1
        return payload

    def put(self, key: str, obj: bytes) -> bool:
        """Store ``obj`` under ``key``, replacing any entry.

        Failing to write (read-only or full disk) is not an error: the cache only saves
        time. No fsync: a torn file after a power loss fails its checksum and is dropped.

        Returns:
            True when the entry was written.
        """
        path = self.path(key)
        if not self.enabled:
            return False
        obj = bytes(obj)
        header = _HEADER.pack(_MAGIC, FORMAT_VERSION, len(obj), hashlib.sha256(obj).digest())
        tmp = None
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
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


def _unpack(data: bytes) -> bytes | None:
    """The payload of an entry, or None when the entry is damaged in any way."""
    if len(data) < _HEADER.size:
        return None
    magic, version, length, digest = _HEADER.unpack_from(data)
    payload = data[_HEADER.size:]
    if magic != _MAGIC or version != FORMAT_VERSION or length != len(payload):
        return None
    if hashlib.sha256(payload).digest() != digest:
        return None
    return payload
