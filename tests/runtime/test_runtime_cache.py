"""The runtime's own object code (the thread pool) is cached apart from users' steps, also
when ``GRAPHC_NO_CACHE`` turns the steps' cache off."""
from graphc.runtime import objcache, parallel


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
