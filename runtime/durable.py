"""Files written to survive: a temporary file beside the target, fsynced, renamed over it,
then the folder fsynced; the umask's mode; temporaries of writes that died cleaned up later.

Used by saved steps (``runtime.artifact``) and checkpoints (``graphc.train.saver``). A write
interrupted at any point (``kill -9``, power loss) leaves the previous file intact, never a
half file under its name; an OS refusal (full disk, read-only folder) becomes an
``ArtifactError`` naming the file.

This module imports only the standard library and ``graphc.errors``.
"""
import os
import re
import tempfile
import time

from graphc.errors import ArtifactError

__all__ = ["replace_file", "remove_stale_temporaries", "umask", "STALE_SECONDS"]

STALE_SECONDS = 3600  # a temporary file untouched this long belongs to a write that died


def replace_file(path, write, what="file", prefix=None):
    """Atomically replace ``path`` with what ``write(binary file)`` writes.

    Args:
        path: the target.
        write: called with the open temporary file.
        what: how messages name the file ("checkpoint", "saved step").
        prefix: the temporary file's name prefix (default ``.<name>.``); its suffix is
            ``.tmp`` after mkstemp's 8 random characters.
    Raises:
        ArtifactError: the OS refused (ENOSPC, EROFS, EACCES...): names ``path`` and says the
            previous file is unchanged.
    """
    folder = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=prefix or "." + os.path.basename(path) + ".",
                                   suffix=".tmp", dir=folder)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fchmod(f.fileno(), 0o666 & ~umask())  # mkstemp's 0600 is not what users get
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
        _fsync_folder(folder)
    except OSError as e:
        raise write_error(path, e, what) from None
    finally:  # KeyboardInterrupt too: never leave the temporary file behind
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)


def write_error(path, e, what="file"):
    """The ArtifactError for an OSError met writing ``path``."""
    return ArtifactError(f"cannot write {what} '{path}': {e.strerror or type(e).__name__}"
                         + (f" ('{e.filename}')" if e.filename and e.filename != path else ""),
                         [f"the previous {what} under this name, if any, is unchanged"],
                         hint="free disk space, or write into a folder you can write")


def _fsync_folder(folder):
    """Make the rename itself durable (POSIX: fsync the directory; elsewhere nothing to do)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems cannot fsync a directory
    finally:
        os.close(fd)


def umask():
    """The process umask, read without changing it where Linux shows it."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def remove_stale_temporaries(folder, pattern, older_than=None):
    """Remove temporaries of writes that died in ``folder``: names matching ``pattern`` (a
    compiled regex, matched in full), regular files owned by this user, untouched for
    ``older_than`` seconds (``STALE_SECONDS``), so a write running in another process keeps
    its file. Returns the paths removed."""
    limit = time.time() - (STALE_SECONDS if older_than is None else older_than)
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        if not pattern.fullmatch(name):
            continue
        path = os.path.join(folder, name)
        try:
            st = os.lstat(path)
            if (os.path.isfile(path) and not os.path.islink(path) and st.st_mtime < limit
                    and (not hasattr(os, "getuid") or st.st_uid == os.getuid())):
                os.remove(path)
                removed.append(path)
        except OSError:
            continue
    return removed


TEMPORARY = re.compile(r"\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp")  # replace_file's default names
