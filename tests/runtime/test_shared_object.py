"""Object code linked into a shared library and opened by the dynamic loader
(``runtime.shared_object``): the same machine code as MCJIT runs, only the names asked for
exported, each load its own copy, and every way it cannot work reported so the caller loads
the object code into MCJIT instead."""
import ctypes

import pytest

from graphc.errors import ArtifactError
from graphc.runtime import jit, shared_object

ANSWER = """
@state = internal global i64 0
define i64 @answer() {
  %v = load i64, ptr @state
  %w = add i64 %v, 1
  store i64 %w, ptr @state
  %r = call i64 @helper(i64 %w)
  ret i64 %r
}
define i64 @helper(i64 %x) {
  %r = add i64 %x, 41
  ret i64 %r
}
"""
OTHER = "define i64 @other() {\n  %r = call i64 @helper(i64 100)\n  ret i64 %r\n}\n" \
        "declare i64 @helper(i64)\n"
CALL = ctypes.CFUNCTYPE(ctypes.c_int64)

needs_linker = pytest.mark.skipif(shared_object._linker() is None or not shared_object.enabled(),
                                  reason="needs ld and a POSIX host")


def _parts():
    return [bytes(jit.compile_here(ANSWER).object_code),
            bytes(jit.compile_here(OTHER).object_code)]


@needs_linker
def test_a_linked_library_runs_the_code_of_its_parts_and_exports_only_what_was_asked():
    parts = _parts()
    library = shared_object.link(parts, ["answer", "other"])
    assert library[:4] == b"\x7fELF"
    loaded = shared_object.load(library, parts[0], ["answer", "other"])
    assert CALL(loaded.address("answer"))() == 42
    assert CALL(loaded.function("other").address)() == 141  # (a reference across parts)
    with pytest.raises(ArtifactError, match="exports no function named 'helper'"):
        loaded.address("helper")
    loaded._exports = frozenset(["helper"])  # (asked anyway: the library keeps it local)
    with pytest.raises(ArtifactError, match="defines no function named 'helper'"):
        loaded.address("helper")
    assert loaded.object_code == parts[0]


@needs_linker
def test_each_load_is_a_library_of_its_own():
    """The loader hands back a library already open under the same name: every load has a
    name of its own, so two loads of one library keep their own state."""
    parts = _parts()
    library = shared_object.link(parts, ["answer"])
    first = shared_object.load(library, parts[0], ["answer"])
    second = shared_object.load(library, parts[0], ["answer"])
    assert first.address("answer") != second.address("answer")
    assert [CALL(first.address("answer"))() for _ in range(3)] == [42, 43, 44]
    assert CALL(second.address("answer"))() == 42


@needs_linker
def test_close_unloads_unless_kept_open():
    parts = _parts()
    library = shared_object.link(parts, ["answer"])
    loaded = shared_object.load(library, parts[0], ["answer"])
    loaded.close()
    with pytest.raises(ArtifactError, match="was closed"):
        loaded.address("answer")
    kept = shared_object.load(library, parts[0], ["answer"])
    kept.keep_open()
    kept.close()
    assert CALL(kept.address("answer"))() == 42


def test_what_cannot_be_linked_or_loaded_says_so(monkeypatch):
    parts = _parts()
    assert shared_object.link([b"not an object file"], ["answer"]) is None
    assert shared_object.link(parts, []) is None
    monkeypatch.setattr(shared_object, "_linker", lambda: None)
    assert shared_object.link(parts, ["answer"]) is None
    with pytest.raises(ArtifactError, match="not a plain library: not an ELF file"):
        shared_object.load(b"\x7fELF garbage", parts[0], ["answer"])
    monkeypatch.setenv("GRAPHC_SHARED_STEPS", "0")
    assert not shared_object.enabled()
    with pytest.raises(ArtifactError, match="shared steps are off"):
        shared_object.load(b"", parts[0], ["answer"])


@needs_linker
def test_a_library_the_loader_refuses_says_why(monkeypatch):
    parts = _parts()
    library = shared_object.link(parts, ["answer"])
    assert shared_object.why_not_plain(library) is None

    def refuse(*args):
        raise OSError("cannot map")
    monkeypatch.setattr(shared_object, "_open", refuse)
    with pytest.raises(ArtifactError, match="the dynamic loader refused a shared step: "
                                            ".*cannot map"):
        shared_object.load(library, parts[0], ["answer"])


@needs_linker
def test_a_folder_that_refuses_code_is_left_for_the_next(monkeypatch, tmp_path):
    """Where the memory folder is mounted without the right to run code (as containers
    mount /dev/shm), the library is opened from the next folder, and the refusing one is
    not tried again."""
    parts = _parts()
    library = shared_object.link(parts, ["answer"])
    refusing, fine = str(tmp_path / "noexec"), str(tmp_path / "fine")
    for folder in (refusing, fine):
        (tmp_path / folder).mkdir()
    real_open = shared_object._open
    tried = []

    refuse = {refusing}

    def open_(lib, folder):
        tried.append(folder)
        if folder in refuse:
            raise OSError(f"{folder}/x.so: failed to map segment from shared object")
        return real_open(lib, folder)
    monkeypatch.setattr(shared_object, "_open", open_)
    monkeypatch.setattr(shared_object, "_refused", set())
    monkeypatch.setattr(shared_object, "_folders",
                        lambda: [f for f in (refusing, fine) if f not in shared_object._refused])
    loaded = shared_object.load(library, parts[0], ["answer"])
    assert CALL(loaded.address("answer"))() == 42 and tried == [refusing, fine]
    shared_object.load(library, parts[0], ["answer"])
    assert tried == [refusing, fine, fine]
    refuse.add(fine)
    with pytest.raises(ArtifactError, match="refused a shared step: .*fine"):
        shared_object.load(library, parts[0], ["answer"])


def test_a_temporary_directory_that_cannot_be_written_links_nothing(monkeypatch, tmp_path):
    """Linking is an optimization of the cache: a full disk or an unwritable temporary
    directory gives None (the entry is written without a library), never an error."""
    parts = _parts()
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    monkeypatch.setattr(shared_object.tempfile, "tempdir", str(locked))
    if not shared_object.os.access(str(locked), shared_object.os.W_OK):  # (not as root)
        assert shared_object.link(parts, ["answer"]) is None

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(shared_object, "_linked", full)
    assert shared_object.link(parts, ["answer"]) is None


def test_only_gnu_ld_links(monkeypatch, tmp_path):
    """Linking relies on how GNU ld treats these objects (text relocations, a version
    script): another ``ld`` (gold, lld) is not used."""
    import shutil
    for name, says in (("gold", "GNU gold (GNU Binutils) 1.16"), ("lld", "LLD 17.0.6"),
                       ("bfd", "GNU ld (GNU Binutils) 2.40")):
        fake = tmp_path / name
        fake.write_text(f"#!/bin/sh\necho '{says}'\n")
        fake.chmod(0o755)
        monkeypatch.setattr(shutil, "which", lambda _, fake=fake: str(fake))
        shared_object._linker.cache_clear()
        try:
            assert shared_object._linker() == (str(fake) if name == "bfd" else None)
        finally:
            shared_object._linker.cache_clear()
