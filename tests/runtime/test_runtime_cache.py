"""The runtime's own object code (the thread pool) is cached apart from users' steps, also
when ``GRAPHC_NO_CACHE`` turns the steps' cache off; so is the host's description, asked of
LLVM once a boot (a new boot id, a damaged entry or no boot id: asked again)."""
import pytest

from graphc.runtime import jit, objcache, parallel


def test_the_runtime_cache_is_on_when_steps_are_not_cached(monkeypatch, tmp_path):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("GRAPHC_NO_CACHE", "1")
    monkeypatch.delenv("GRAPHC_NO_RUNTIME_CACHE", raising=False)
    assert not objcache.ObjectCache().enabled
    cache = objcache.runtime_cache()
    assert cache.enabled and cache.dir == tmp_path / "runtime"
    monkeypatch.setenv("GRAPHC_NO_RUNTIME_CACHE", "1")
    assert not objcache.runtime_cache().enabled


def test_the_pool_object_is_kept_in_the_runtime_cache(monkeypatch, tmp_path):
    jit.host_target()  # (described already: its entry is not among the pool's)
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "on"))
    monkeypatch.setenv("GRAPHC_NO_CACHE", "1")
    monkeypatch.delenv("GRAPHC_NO_RUNTIME_CACHE", raising=False)
    code = parallel._cached_object_code()
    entries = list((tmp_path / "on").rglob("*.gcobj"))
    assert [e.parent.name for e in entries] == ["runtime"]
    assert objcache.runtime_cache().get(entries[0].stem) == code
    assert parallel._cached_object_code() == code  # (read back: the same bytes)
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "off"))
    monkeypatch.setenv("GRAPHC_NO_RUNTIME_CACHE", "1")
    assert parallel._cached_object_code() == code  # compiled again, stored nowhere
    assert not (tmp_path / "off").exists()


@pytest.fixture
def fresh_host(monkeypatch, tmp_path):
    """host_target as a new process finds it: a private runtime cache, a boot id of the
    test's own, and every question to LLVM counted."""
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("GRAPHC_NO_RUNTIME_CACHE", raising=False)
    boot = tmp_path / "boot_id"
    boot.write_text("0f1e2d3c-aaaa-bbbb-cccc-000000000001\n")
    monkeypatch.setattr(jit, "_BOOT_ID", str(boot))
    asked = []
    ask = jit._ask_llvm
    monkeypatch.setattr(jit, "_ask_llvm", lambda: asked.append(1) or ask())
    jit.host_target.cache_clear()
    yield boot, asked
    jit.host_target.cache_clear()


def test_the_host_is_asked_of_llvm_once_a_boot(fresh_host):
    boot, asked = fresh_host
    assert "store" in jit._host_store  # (the object cache keeps it: imported above)
    first = jit.host_target()
    assert len(asked) == 1
    jit.host_target.cache_clear()  # (a new process of the same boot)
    assert jit.host_target() == first and len(asked) == 1
    boot.write_text("0f1e2d3c-aaaa-bbbb-cccc-000000000002\n")  # (the machine rebooted)
    jit.host_target.cache_clear()
    assert jit.host_target() == first and len(asked) == 2


def test_a_damaged_or_missing_host_entry_asks_llvm_again(fresh_host, tmp_path):
    boot, asked = fresh_host
    first = jit.host_target()
    for entry in (tmp_path / "cache" / "runtime").glob("*.gcobj"):
        data = bytearray(entry.read_bytes())
        data[-1] ^= 1
        entry.write_bytes(bytes(data))
    jit.host_target.cache_clear()
    assert jit.host_target() == first and len(asked) == 2
    boot.unlink()  # (no boot id: asked in every process)
    for _ in range(2):
        jit.host_target.cache_clear()
        assert jit.host_target() == first
    assert len(asked) == 4


def test_the_remembered_host_is_llvms_answer_field_for_field(fresh_host):
    _, asked = fresh_host
    jit.host_target()
    jit.host_target.cache_clear()
    remembered = jit.host_target()
    llvm_says = jit._ask_llvm()
    assert remembered == llvm_says and isinstance(remembered, jit.HostTarget)
    assert all(type(f) is str for f in remembered)


def test_a_mapped_entry_keeps_its_bytes_when_the_entry_is_replaced_or_damaged(tmp_path):
    """``get(view=True)`` maps the file: an entry written again under the same key (a new
    file renamed over it) leaves the view as it was; an empty or damaged file is a miss."""
    cache = objcache.ObjectCache(tmp_path, enabled=True)
    key = "ab" * 32
    first = bytes(range(256)) * 100
    assert cache.put(key, first)
    view = cache.get(key, view=True)
    assert isinstance(view, memoryview) and bytes(view) == first
    assert cache.put(key, b"second" * 10)
    assert bytes(view) == first and cache.get(key) == b"second" * 10
    cache.path(key).write_bytes(b"")
    assert cache.get(key, view=True) is None
    assert cache.put(key, first)
    raw = bytearray(cache.path(key).read_bytes())
    raw[-1] ^= 1
    cache.path(key).write_bytes(bytes(raw))
    assert cache.get(key, view=True) is None and not cache.path(key).exists()
