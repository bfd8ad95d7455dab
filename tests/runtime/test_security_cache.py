"""The object cache runs only code it built for this very graph, from a directory only its
user can write (as ssh and pip check theirs).

Before: an entry copied over another graph's entry ran with that graph's buffers ("double
free or corruption", an abort); a cache directory anyone could write was used as is, so any
local user could plant code that every later compile of that graph would run.
"""
import os
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest

from graphc.runtime import jit, objcache
from graphc.runtime.objcache import ObjectCache, cache_key

IR = """
define void @step(ptr noalias %t) {{
  %p = load ptr, ptr %t
  store float {value}, ptr %p
  ret void
}}
"""


def entry(cache, value):
    text = IR.format(value=value)
    key = cache_key(text)
    obj, hit = cache.get_or_compute(key, lambda: jit.compile_ir(text).object_code)
    return key, obj, hit


def run(obj):
    out = np.zeros(1, np.float32)
    table, keep = jit.pointer_table([out])
    jit.load_object(obj).function("step")(table)
    return float(out[0])


@pytest.fixture(autouse=True)
def fresh_warnings():
    objcache._warned.clear()
    yield
    objcache._warned.clear()


def test_an_entry_filed_under_another_key_is_recompiled_not_run(tmp_path):
    cache = ObjectCache(tmp_path / "c")
    key_a, obj_a, _ = entry(cache, "1.0")
    key_b, obj_b, _ = entry(cache, "2.0")
    shutil.copyfile(cache.path(key_a), cache.path(key_b))  # graph A's code under B's key
    assert cache.get(key_b) is None and cache.corrupt == 1
    key, obj, hit = entry(cache, "2.0")
    assert not hit and run(obj) == 2.0
    assert entry(cache, "2.0")[2]  # replaced by B's own code: a hit again


@pytest.mark.parametrize("mode", [0o777, 0o775, 0o757])
def test_a_directory_others_can_write_is_not_used(tmp_path, mode):
    folder = tmp_path / "shared"
    folder.mkdir()
    cache = ObjectCache(folder)
    key, obj, _ = entry(cache, "3.0")
    os.chmod(folder, mode)
    with pytest.warns(RuntimeWarning, match="not using the object cache .*writable by"):
        assert cache.get(key) is None
    assert not cache.put(key, obj) and cache.refused >= 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one warning per directory and process
        key2, obj2, hit = entry(cache, "4.0")
    assert not hit and run(obj2) == 4.0 and not cache.path(key2).exists()


def test_an_entry_others_can_write_is_ignored(tmp_path):
    cache = ObjectCache(tmp_path / "c")
    key, obj, _ = entry(cache, "5.0")
    os.chmod(cache.path(key), 0o666)
    assert cache.get(key) is None and cache.refused == 1
    assert cache.put(key, obj) and cache.get(key) == obj  # put replaces it with our own file


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                    reason="changing a directory's owner needs root")
def test_a_directory_owned_by_someone_else_is_not_used(tmp_path):
    folder = tmp_path / "theirs"
    folder.mkdir(mode=0o755)
    os.chown(folder, 4242, 4242)
    with pytest.warns(RuntimeWarning, match="owned by uid 4242"):
        assert ObjectCache(folder).get(cache_key("x")) is None


def test_a_new_cache_directory_is_private(tmp_path):
    cache = ObjectCache(tmp_path / "new" / "cache")
    entry(cache, "6.0")
    assert os.stat(tmp_path / "new" / "cache").st_mode & 0o777 == 0o700


MISFILED = """
import sys, shutil
import numpy as np
import graphc as gc
from graphc.codegen.llvm import backend
def build(n):
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, [n, 4], name="x")
        W = gc.Variable(np.ones((4, 3), np.float32), name="W")
        loss = gc.reduce_sum(gc.matmul(x, W) ** 2)
        train = gc.train.GradientDescentOptimizer(0.01).minimize(loss)
        return gc.compile([loss, train], feeds=[x], backend="llvm"), x
if sys.argv[1] == "fill":
    for n in (2, 64):
        step, x = build(n)
        step({x: np.ones((n, 4), np.float32)})
else:
    step, x = build(64)
    print(step({x: np.ones((64, 4), np.float32)})[0], backend.default_cache().corrupt)
"""


def test_misfiled_entry_in_a_compile_is_recompiled(tmp_path):
    env = dict(os.environ, GRAPHC_CACHE_DIR=str(tmp_path / "cache"))
    env.pop("GRAPHC_NO_CACHE", None)
    subprocess.run([sys.executable, "-c", MISFILED, "fill"], env=env, check=True, timeout=300)
    # (the steps' entries; the runtime's own, the host's description, are under runtime/)
    entries = sorted((tmp_path / "cache").glob("*.gcobj"), key=lambda p: p.stat().st_size)
    assert len(entries) == 2
    shutil.copyfile(entries[0], entries[1])  # the small graph's code under the large one's key
    proc = subprocess.run([sys.executable, "-c", MISFILED, "check"], env=env, timeout=300,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    loss, corrupt = proc.stdout.split()
    assert float(loss) == 64 * 3 * 16.0 and corrupt == "1"


def test_temporaries_of_killed_puts_are_removed(tmp_path):
    import time
    from graphc.runtime import durable
    folder = tmp_path / "c"
    folder.mkdir(mode=0o700)
    old = time.time() - 2 * durable.STALE_SECONDS
    for name in (".tmp-abcd1234.gcobj", ".tmp-fresh123.gcobj"):
        (folder / name).write_bytes(b"half an entry")
    os.utime(folder / ".tmp-abcd1234.gcobj", (old, old))
    cache = ObjectCache(folder)
    key, _, _ = entry(cache, "7.0")
    assert sorted(p.name for p in folder.iterdir()) == [".tmp-fresh123.gcobj", f"{key}.gcobj"]
