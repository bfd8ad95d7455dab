"""A saved LLVM step also holds its code linked into a plain shared library (``code/step.so``,
``runtime.shared_object``): ``gc.load`` opens it with the dynamic loader, so a process that
loads a saved step needs no LLVM (the host's description is kept per boot in the runtime
cache), and runs the same machine code as through MCJIT, bit for bit. A library that is not
plain is never opened; a manifest that describes it wrongly is refused."""
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

import graphc as gc
from graphc.errors import ArtifactError
from graphc.runtime import shared_object

from tests.runtime.test_aot import BLOCKER
from tests.support import artifact_fuzz as F

needs_linker = pytest.mark.skipif(shared_object._linker() is None or not shared_object.enabled(),
                                  reason="needs GNU ld and a POSIX host")


def _build_and_save(path):
    """An MLP step whose GEMMs run on the thread pool (split at any size), trained two
    steps and saved; returns the feeds of three more steps."""
    rng = np.random.default_rng(0)
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, [64, 48], name="x")
        y = gc.placeholder(gc.int64, [64], name="y")
        w = gc.Variable(rng.standard_normal((48, 40)).astype(np.float32) * 0.2, name="w")
        v = gc.Variable(rng.standard_normal((40, 7)).astype(np.float32) * 0.2, name="v")
        logits = gc.matmul(gc.tanh(gc.matmul(x, w)), v)
        loss = gc.reduce_mean(gc.nn.sparse_softmax_cross_entropy_with_logits(labels=y,
                                                                             logits=logits))
        train = gc.train.AdamOptimizer(0.01).minimize(loss)
        step = gc.compile([loss, train], feeds=[x, y], backend="llvm")
    feeds = [{"x": rng.random((64, 48), np.float32), "y": rng.integers(0, 7, 64)}
             for _ in range(5)]
    for f in feeds[:2]:
        step(f)
    step.save(str(path))
    return feeds[2:]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("library")
    os.environ["GRAPHC_PARALLEL_MIN_WORK"] = "1"  # (the pool's code goes in the library)
    try:
        feeds = _build_and_save(folder / "step.gcx")
    finally:
        del os.environ["GRAPHC_PARALLEL_MIN_WORK"]
    np.savez(folder / "feeds.npz", **{f"{k}{i}": f[k] for i, f in enumerate(feeds)
                                      for k in ("x", "y")})
    return folder


RUN = """
import numpy as np
import graphc.runtime
step = graphc.runtime.load(sys.argv[1])
feeds = np.load(sys.argv[2])
losses = [step(x=feeds[f"x{k}"], y=feeds[f"y{k}"])[0] for k in range(3)]
runner = step.last_signature.runner
from graphc.runtime import parallel
print(type(runner.fn.loaded).__name__, parallel.built(), np.array(losses).tobytes().hex(),
      "subprocess" in sys.modules)
"""


def _run(saved, env, block_llvm):
    blocked = ("graphc.ir", "graphc.codegen") + (("llvmlite.binding",) if block_llvm else ())
    proc = subprocess.run([sys.executable, "-c", BLOCKER.format(blocked=blocked) + RUN,
                           str(saved / "step.gcx"), str(saved / "feeds.npz")],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "GRAPHC_NUM_THREADS": "2", **env})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


@needs_linker
def test_a_saved_step_holds_a_plain_library_of_its_code_and_the_pool(saved):
    manifest, members = F.read_zip(str(saved / "step.gcx"))
    library = manifest["signatures"][0]["code"]["library"]
    assert library["member"] == "sig0/code/step.so"
    assert shared_object.why_not_plain(members["sig0/code/step.so"]) is None
    assert "gc_parallel_for" in library["exports"] and len(library["pool"]) == 64


@needs_linker
def test_a_second_process_loads_it_without_llvm_and_computes_the_same_bits(saved, tmp_path):
    env = {"GRAPHC_CACHE_DIR": str(tmp_path / "cache")}
    first = _run(saved, env, block_llvm=False)  # (learns the host's description for this boot)
    second = _run(saved, env, block_llvm=True)
    mcjit = _run(saved, {**env, "GRAPHC_SHARED_STEPS": "0"}, block_llvm=False)
    assert first[:2] == second[:2] == ["SharedModule", "True"]  # the pool from the library
    assert mcjit[0] == "LoadedModule"
    assert first[2] == second[2] == mcjit[2]
    assert second[3] == "False"  # (nor subprocess: ~6 ms of a fresh process)


def _reseal(saved, tmp_path, manifest=None, library=None):
    m, members = F.read_zip(str(saved / "step.gcx"))
    if manifest is not None:
        manifest(m)
    if library is not None:
        members["sig0/code/step.so"] = library
    path = tmp_path / "edited.gcx"
    F.reseal(str(path), m, members)
    return str(path)


def _dynamic_tag(library, old, new):
    """``library`` with its first dynamic entry of tag ``old`` given tag ``new``."""
    data = bytearray(library)
    phoff, (size, count) = struct.unpack_from("<Q", data, 32)[0], struct.unpack_from("<HH",
                                                                                     data, 54)
    for k in range(count):
        kind, _, offset, _, _, length = struct.unpack_from("<IIQQQQ", data, phoff + k * size)
        if kind == 2:
            for at in range(offset, offset + length, 16):
                if struct.unpack_from("<q", data, at)[0] == old:
                    struct.pack_into("<q", data, at, new)
                    return bytes(data)
    raise AssertionError(f"no dynamic entry of tag {old}")


@needs_linker
def test_a_library_that_is_not_plain_is_never_opened(saved, tmp_path, monkeypatch):
    """A library given an initializer (DT_INIT: code the loader would run when it opens it)
    is refused before the loader sees it; the step runs its object code through MCJIT."""
    _, members = F.read_zip(str(saved / "step.gcx"))
    library = members["sig0/code/step.so"]
    with_init = _dynamic_tag(library, 0x10, 12)  # (DT_SYMBOLIC -> DT_INIT)
    assert shared_object.why_not_plain(with_init) == "has an initializer (DT_INIT)"
    opened = []
    monkeypatch.setattr(shared_object, "_open", lambda *a: opened.append(a))
    step = gc.load(_reseal(saved, tmp_path, library=with_init))
    assert type(step.last_signature.runner.fn.loaded).__name__ == "LoadedModule"
    assert not opened
    feeds = np.load(saved / "feeds.npz")
    assert np.isfinite(step(x=feeds["x0"], y=feeds["y0"])[0])


@needs_linker
@pytest.mark.parametrize("edit, message", [
    (lambda lib: lib.update(member="sig0/code/step.o"), r"library\.member must be the member "
                                                       r"sig0/code/step\.so"),
    (lambda lib: lib["exports"].remove("step"), r"library\.exports must be the entry"),
    (lambda lib: lib["exports"].append("step"), r"library\.exports must be the entry"),
    (lambda lib: lib.update(exports=["step", "system"], pool=None),
     r"library\.exports must be the entry 'step' once, and the thread pool's names only"),
    (lambda lib: lib.update(pool="not a digest"), r"library\.pool must be a string"),
    (lambda lib: lib.update(exports="gc_pool_worker"), r"library\.exports must be a list"),
])
def test_a_library_described_wrongly_is_refused(saved, tmp_path, edit, message):
    path = _reseal(saved, tmp_path,
                   manifest=lambda m: edit(m["signatures"][0]["code"]["library"]))
    with pytest.raises(ArtifactError, match=message):
        gc.load(path)


@needs_linker
def test_a_step_that_calls_memcpy_still_saves_a_plain_library(tmp_path):
    """LLVM calls the C library's memcpy and memset for large copies and fills: the only
    symbols a plain library may take from the process."""
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, [256, 512], name="x")
        w = gc.Variable(np.ones((512, 512), np.float32) * 1e-3, name="w")
        loss = gc.reduce_sum(gc.concat([x, x], 0) @ w)
        step = gc.compile([loss, gc.train.MomentumOptimizer(0.1, 0.9).minimize(loss)],
                          feeds=[x], backend="llvm")
    feed = np.random.default_rng(0).random((256, 512), np.float32)
    step(x=feed)
    step.save(str(tmp_path / "step.gcx"))
    manifest, members = F.read_zip(str(tmp_path / "step.gcx"))
    library = members["sig0/code/step.so"]
    assert b"memcpy" in library or b"memset" in library
    assert shared_object.why_not_plain(library) is None
    loaded = gc.load(str(tmp_path / "step.gcx"))
    assert type(loaded.last_signature.runner.fn.loaded).__name__ == "SharedModule"
    assert loaded(x=feed)[0] == step(x=feed)[0]


def test_without_a_linker_a_step_saves_without_a_library(tmp_path, monkeypatch):
    monkeypatch.setattr(shared_object, "_linker", lambda: None)
    _build_and_save(tmp_path / "step.gcx")
    manifest, members = F.read_zip(str(tmp_path / "step.gcx"))
    assert "library" not in manifest["signatures"][0]["code"]
    assert not any(name.endswith(".so") for name in members)
    assert type(gc.load(str(tmp_path / "step.gcx")).last_signature.runner.fn.loaded
                ).__name__ == "LoadedModule"


def _binding_relocation(library):
    """``library`` with its first relocation made one that binds a symbol (x86-64's
    R_X86_64_64 of symbol 1, one the library defines)."""
    data = bytearray(library)
    phoff, (size, count) = struct.unpack_from("<Q", data, 32)[0], struct.unpack_from("<HH",
                                                                                     data, 54)
    loads, tags = [], {}
    for k in range(count):
        kind, _, offset, vaddr, _, length = struct.unpack_from("<IIQQQQ", data,
                                                               phoff + k * size)
        if kind == 1:
            loads.append((vaddr, offset, length))
        elif kind == 2:
            for at in range(offset, offset + length, 16):
                tag, value = struct.unpack_from("<qQ", data, at)
                tags.setdefault(tag, value)
    at = shared_object._file_offset(loads, tags[7], 24)
    struct.pack_into("<Q", data, at + 8, (1 << 32) | 1)
    return bytes(data)


def test_what_is_not_a_plain_library_says_why(saved):
    assert shared_object.why_not_plain(b"#!/bin/sh\n") == "not an ELF file"
    assert shared_object.why_not_plain(b"\x7fELF" + bytes(60)) == \
        "not a 64-bit little-endian ELF file"
    for path in ("/lib/x86_64-linux-gnu/libm.so.6", "/usr/lib/x86_64-linux-gnu/libm.so.6"):
        if os.path.exists(path):
            with open(path, "rb") as f:
                assert shared_object.why_not_plain(f.read()) == \
                    "has a library it needs (DT_NEEDED)"
            break
    if shared_object._linker() is None or sys.platform != "linux" or os.uname().machine != \
            "x86_64":
        return
    library = F.read_zip(str(saved / "step.gcx"))[1]["sig0/code/step.so"]
    assert shared_object.why_not_plain(_binding_relocation(library)).startswith(
        "a relocation that binds the symbol '")
    assert shared_object.why_not_plain(library[:200]) == "truncated program headers" or \
        shared_object.why_not_plain(library[:200]).startswith("no dynamic section")


@needs_linker
def test_inspect_says_how_the_code_loads_and_opens_nothing(saved, tmp_path, monkeypatch,
                                                           capsys):
    from graphc.cli import main

    def refuse(*args):
        raise AssertionError("inspect opened a library")
    monkeypatch.setattr(shared_object, "_open", refuse)
    assert main(["inspect", str(saved / "step.gcx"), "--no-ir"]) == 0
    assert ("code      sig0/code/step.so, a plain shared library of the step and the thread "
            "pool: loads without LLVM") in capsys.readouterr().out
    library = F.read_zip(str(saved / "step.gcx"))[1]["sig0/code/step.so"]
    edited = _reseal(saved, tmp_path, library=_dynamic_tag(library, 0x10, 12))
    assert main(["inspect", edited, "--no-ir"]) == 0
    assert ("sig0/code/step.so is NOT a plain shared library (has an initializer (DT_INIT)): "
            "the object code loads through MCJIT") in capsys.readouterr().out


@needs_linker
def test_a_library_whose_pool_is_another_graphcs_still_loads(saved, tmp_path):
    """A file whose pool (digest, names) differs from this graphc's loads; its step runs on
    this process's pool."""
    def other_pool(m):
        library = m["signatures"][0]["code"]["library"]
        library.update(pool="0" * 64)
        library["exports"] = [library["exports"][0], "gc_pool_of_another_graphc"]
    feeds = np.load(saved / "feeds.npz")
    want = gc.load(str(saved / "step.gcx"))(x=feeds["x0"], y=feeds["y0"])[0]
    step = gc.load(_reseal(saved, tmp_path, manifest=other_pool))
    assert type(step.last_signature.runner.fn.loaded).__name__ == "SharedModule"
    assert step(x=feeds["x0"], y=feeds["y0"])[0] == want
