"""JIT engine and object cache: compiled IR runs, vectorizes, calls BLAS, survives processes."""
import ctypes
import gc
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from graphc.errors import ArtifactError, CompileError
from graphc.runtime import jit
from graphc.runtime.blas import gemm_pointer
from graphc.runtime.objcache import FORMAT_VERSION, ObjectCache, cache_key
from tests.support.paths import load_npz


# ---------------------------------------------------------------- hand-written IR

def fma_relu_ir(n, name="fma_relu"):
    """``out[i] = max(a[i]*b[i] + c[i], 0)``; table slots: a, b, c, out."""
    return textwrap.dedent(f"""
    define internal void @{name}_kernel(ptr noalias readonly %a, ptr noalias readonly %b,
                                        ptr noalias readonly %c, ptr noalias %out) noinline nounwind {{
    entry:
      br label %loop
    loop:
      %i = phi i64 [0, %entry], [%next, %loop]
      %pa = getelementptr inbounds float, ptr %a, i64 %i
      %pb = getelementptr inbounds float, ptr %b, i64 %i
      %pc = getelementptr inbounds float, ptr %c, i64 %i
      %po = getelementptr inbounds float, ptr %out, i64 %i
      %va = load float, ptr %pa
      %vb = load float, ptr %pb
      %vc = load float, ptr %pc
      %ab = fmul float %va, %vb
      %s = fadd float %ab, %vc
      %r = call float @llvm.maxnum.f32(float %s, float 0.0)
      store float %r, ptr %po
      %next = add nuw nsw i64 %i, 1
      %done = icmp eq i64 %next, {n}
      br i1 %done, label %exit, label %loop
    exit:
      ret void
    }}

    declare float @llvm.maxnum.f32(float, float)

    define void @{name}(ptr noalias %table) {{
      %a = load ptr, ptr %table
      %s1 = getelementptr ptr, ptr %table, i64 1
      %b = load ptr, ptr %s1
      %s2 = getelementptr ptr, ptr %table, i64 2
      %c = load ptr, ptr %s2
      %s3 = getelementptr ptr, ptr %table, i64 3
      %out = load ptr, ptr %s3
      call void @{name}_kernel(ptr %a, ptr %b, ptr %c, ptr %out)
      ret void
    }}
    """)


def sum_ir(n, flags="fast"):
    """``out[0] = sum(x)``; table slots: x, out."""
    return textwrap.dedent(f"""
    define void @sum(ptr noalias %table) {{
    entry:
      %x = load ptr, ptr %table
      %s1 = getelementptr ptr, ptr %table, i64 1
      %out = load ptr, ptr %s1
      br label %loop
    loop:
      %i = phi i64 [0, %entry], [%next, %loop]
      %acc = phi float [0.0, %entry], [%acc1, %loop]
      %px = getelementptr inbounds float, ptr %x, i64 %i
      %v = load float, ptr %px
      %acc1 = fadd {flags} float %acc, %v
      %next = add nuw nsw i64 %i, 1
      %done = icmp eq i64 %next, {n}
      br i1 %done, label %exit, label %loop
    exit:
      store float %acc1, ptr %out
      ret void
    }}
    """)


def gemm_ir(m, k, n, trans_a, trans_b, dtype, name="gemm_step"):
    """Row-major ``C = op(A) @ op(B)`` through the BLAS pointer in slot 0; slots 1-3: A, B, C."""
    ty = "float" if dtype == np.float32 else "double"
    lda = m if trans_a else k
    ldb = k if trans_b else n
    consts = {"ta": ("i8", ord("T" if trans_b else "N")),  # column-major: B's flag goes first
              "tb": ("i8", ord("T" if trans_a else "N")),
              "m": ("i32", n), "n": ("i32", m), "k": ("i32", k),
              "lda": ("i32", ldb), "ldb": ("i32", lda), "ldc": ("i32", n),
              "alpha": (ty, "1.0"), "beta": (ty, "0.0")}
    globals_ = "\n".join(f"@{name}.{key} = private unnamed_addr constant {t} {v}"
                         for key, (t, v) in consts.items())
    g = {key: f"ptr @{name}.{key}" for key in consts}
    return globals_ + textwrap.dedent(f"""

    define void @{name}(ptr noalias %table) {{
      %gemm = load ptr, ptr %table
      %s1 = getelementptr ptr, ptr %table, i64 1
      %a = load ptr, ptr %s1
      %s2 = getelementptr ptr, ptr %table, i64 2
      %b = load ptr, ptr %s2
      %s3 = getelementptr ptr, ptr %table, i64 3
      %c = load ptr, ptr %s3
      call void %gemm({g['ta']}, {g['tb']}, {g['m']}, {g['n']}, {g['k']}, {g['alpha']},
                      ptr %b, {g['lda']}, ptr %a, {g['ldb']}, {g['beta']}, ptr %c, {g['ldc']})
      ret void
    }}
    """)


def vector_widths(ir_text, scalar="float"):
    return {int(w) for w in re.findall(rf"<(\d+) x {scalar}>", ir_text)}


def fma_relu_inputs(n, seed):
    rng = np.random.default_rng(seed)
    a, b, c = (rng.standard_normal(n).astype(np.float32) for _ in range(3))
    return a, b, c, np.full(n, np.nan, np.float32)


# ---------------------------------------------------------------- compile and run

@pytest.mark.parametrize("n", [1, 15, 1000, 4099])
def test_fused_kernel_matches_numpy(n):
    loaded = jit.load_object(jit.compile_ir(fma_relu_ir(n)).object_code)
    a, b, c, out = fma_relu_inputs(n, seed=n)
    table, keep = jit.pointer_table([a, b, c, out])
    loaded.function("fma_relu")(table)
    np.testing.assert_allclose(out, np.maximum(a * b + c, 0), rtol=1e-6, atol=1e-7)


def test_fused_kernel_vectorizes_for_the_host():
    compiled = jit.compile_ir(fma_relu_ir(1000))
    assert max(vector_widths(compiled.optimized_ir), default=0) >= 4, compiled.optimized_ir
    assert "fma_relu_kernel" in compiled.assembly()
    assert compiled.functions == ("fma_relu",)  # the kernel is internal: not exported


def test_fast_sum_reduction_vectorizes():
    n = 10_001
    compiled = jit.compile_ir(sum_ir(n))
    assert max(vector_widths(compiled.optimized_ir), default=0) >= 4, compiled.optimized_ir
    x = np.random.default_rng(1).random(n, dtype=np.float32)
    out = np.zeros(1, np.float32)
    table, keep = jit.pointer_table([x, out])
    jit.load_object(compiled.object_code).function("sum")(table)
    np.testing.assert_allclose(out[0], x.astype(np.float64).sum(), rtol=1e-5)


def test_entry_points_accept_table_address_and_engine_call():
    n = 64
    loaded = jit.load_object(jit.compile_ir(fma_relu_ir(n)).object_code)
    a, b, c, out = fma_relu_inputs(n, seed=2)
    table, keep = jit.pointer_table([a, b, c, out])
    jit.engine_call(loaded.address("fma_relu"), ctypes.addressof(table))
    expected = np.maximum(a * b + c, 0)
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    out[:] = np.nan
    loaded.function("fma_relu")(ctypes.addressof(table))
    np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_function_keeps_its_code_alive():
    n = 32
    fn = jit.load_object(jit.compile_ir(fma_relu_ir(n)).object_code).function("fma_relu")
    gc.collect()  # the LoadedModule is referenced only through fn
    a, b, c, out = fma_relu_inputs(n, seed=5)
    table, keep = jit.pointer_table([a, b, c, out])
    fn(table)
    np.testing.assert_allclose(out, np.maximum(a * b + c, 0), rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, False), (False, True),
                                             (True, True)])
def test_jit_calls_blas_gemm_through_the_table(dtype, trans_a, trans_b):
    m, k, n = 7, 5, 3
    rng = np.random.default_rng(3)
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(dtype)
    c = np.full((m, n), np.nan, dtype)
    compiled = jit.compile_ir(gemm_ir(m, k, n, trans_a, trans_b, dtype))
    # No external symbols: the object file needs no link step, and MCJIT has none to miss.
    assert not re.search(r"^declare ", compiled.optimized_ir, re.M), compiled.optimized_ir
    table, keep = jit.pointer_table([gemm_pointer(dtype), a, b, c])
    jit.load_object(compiled.object_code).function("gemm_step")(table)
    expected = np.matmul(a.T if trans_a else a, b.T if trans_b else b)
    np.testing.assert_allclose(c, expected, rtol=1e-5 if dtype == np.float32 else 1e-12)


SUBPROCESS_RUNNER = """
import sys
import numpy as np
from graphc.runtime import jit
from graphc.runtime.blas import gemm_pointer
obj_path, out_path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
loaded = jit.load_object(open(obj_path, "rb").read())
rng = np.random.default_rng(4)
a, b, c = (rng.standard_normal(n).astype(np.float32) for _ in range(3))
out = np.zeros(n, np.float32)
table, keep = jit.pointer_table([a, b, c, out])
loaded.function("fma_relu")(table)
x, w = rng.standard_normal((6, 4)).astype(np.float32), rng.standard_normal((5, 4)).astype(np.float32)
y = np.zeros((6, 5), np.float32)
table, keep = jit.pointer_table([gemm_pointer(np.float32), x, w, y])
loaded.function("gemm_step")(table)
np.savez(out_path, out=out, y=y)
"""


def test_object_code_runs_in_a_fresh_process(tmp_path):
    n = 777
    ir_text = fma_relu_ir(n) + gemm_ir(6, 4, 5, False, True, np.float32)
    obj_path = tmp_path / "step.o"
    obj_path.write_bytes(obj := jit.compile_ir(ir_text).object_code)
    subprocess.run([sys.executable, "-c", SUBPROCESS_RUNNER, str(obj_path),
                    str(tmp_path / "result.npz"), str(n)], check=True, timeout=120)
    result = load_npz(tmp_path / "result.npz")
    rng = np.random.default_rng(4)  # the subprocess's inputs, drawn in the same order
    a, b, c = (rng.standard_normal(n).astype(np.float32) for _ in range(3))
    x, w = rng.standard_normal((6, 4)).astype(np.float32), rng.standard_normal((5, 4)).astype(np.float32)
    np.testing.assert_allclose(result["out"], np.maximum(a * b + c, 0), rtol=1e-6)
    np.testing.assert_allclose(result["y"], x @ w.T, rtol=1e-5)
    here = np.zeros(n, np.float32)
    table, keep = jit.pointer_table([a, b, c, here])
    jit.load_object(obj).function("fma_relu")(table)
    np.testing.assert_array_equal(result["out"], here)  # same code, same bits


def test_runtime_never_imports_the_compiler():
    import ast
    from pathlib import Path
    import graphc.runtime

    for path in Path(graphc.runtime.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = ["." * node.level + (node.module or "")]
            else:
                continue
            for name in names:
                assert not name.startswith(("graphc.ir", "graphc.codegen", "..")), \
                    f"{path.name} imports {name}: a saved step must load without the compiler"


# ---------------------------------------------------------------- errors

def test_ir_that_does_not_parse_raises_compile_error_with_llvm_diagnostic():
    bad = "define void @step(ptr %t) {\n  %x = fadd float %y, 1.0\n  ret void\n}\n"
    with pytest.raises(CompileError, match=r"does not parse(.|\n)*:2:\d+: error: .*'%y'"):
        jit.compile_ir(bad)


def test_ir_that_fails_verification_raises_compile_error():
    bad = textwrap.dedent("""
    define i32 @f() {
      %a = add i32 %b, 1
      %b = add i32 %a, 1
      ret i32 %a
    }
    """)
    with pytest.raises(CompileError, match=r"fails verification(.|\n)*does not dominate"):
        jit.compile_ir(bad)


def test_unreadable_object_code_raises_artifact_error():
    obj = jit.compile_ir(fma_relu_ir(8)).object_code
    for damaged in (b"", b"not an object file", obj[: len(obj) // 2]):
        with pytest.raises(ArtifactError, match="not a loadable object file"):
            jit.load_object(damaged)


def test_missing_function_raises_artifact_error():
    loaded = jit.load_object(jit.compile_ir(fma_relu_ir(8)).object_code)
    fn = loaded.function("fma_relu")
    assert fn.module is loaded and fn.address == loaded.address("fma_relu")
    with pytest.raises(ArtifactError, match="no function named 'fma_relu_typo'"):
        loaded.function("fma_relu_typo")
    loaded.close()
    with pytest.raises(ArtifactError, match="closed"):
        loaded.address("fma_relu")


# ---------------------------------------------------------------- pointer tables

def test_pointer_table_holds_data_addresses_and_keeps_items_alive():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    inner = (ctypes.c_void_p * 1)(0)
    table, keep = jit.pointer_table([a, 1234, None, inner])
    assert list(table) == [a.ctypes.data, 1234, None, ctypes.addressof(inner)]
    assert keep[0] is a and keep[3] is inner
    table[0] = jit.address_of(b := np.zeros(3))
    assert table[0] == b.ctypes.data


def test_pointer_table_rejects_non_contiguous_arrays_and_unknown_items():
    with pytest.raises(ValueError, match="C-contiguous"):
        jit.pointer_table([np.zeros((4, 4))[:, ::2]])
    with pytest.raises(TypeError, match="str"):
        jit.pointer_table(["x"])


def test_host_target_describes_this_process():
    t = jit.host_target()
    assert t.triple and t.cpu and t == jit.host_target()
    jit.initialize()  # idempotent


# ---------------------------------------------------------------- object cache

def test_cache_key_covers_parts_target_and_versions():
    t = jit.host_target()
    key = cache_key("ir", "O2")
    assert re.fullmatch(r"[0-9a-f]{64}", key) and key == cache_key("ir", "O2")
    assert key != cache_key("ir", "O3")
    assert cache_key("ab", "c") != cache_key("a", "bc")
    assert key != cache_key("ir", "O2", target=t._replace(features=t.features + ",-avx"))
    assert key != cache_key("ir", "O2", target=t._replace(cpu="generic"))


def test_cache_round_trips_and_leaves_no_temporary_files(tmp_path):
    cache = ObjectCache(tmp_path)
    key = cache_key("payload")
    assert cache.get(key) is None
    assert cache.put(key, b"\x7fELF object bytes")
    assert cache.get(key) == b"\x7fELF object bytes"
    assert (cache.hits, cache.misses) == (1, 1)
    assert [p.name for p in tmp_path.iterdir()] == [f"{key}.gcobj"]


def test_cache_location_and_opt_out_follow_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "c"))
    monkeypatch.delenv("GRAPHC_NO_CACHE", raising=False)
    assert ObjectCache().dir == tmp_path / "c"
    monkeypatch.setenv("GRAPHC_NO_CACHE", "1")
    cache = ObjectCache()
    key = cache_key("x")
    assert not cache.put(key, b"obj") and cache.get(key) is None
    assert not (tmp_path / "c").exists()


def test_cache_rejects_keys_that_are_not_digests(tmp_path):
    with pytest.raises(ValueError, match="64 lowercase hex"):
        ObjectCache(tmp_path).get("../../etc/passwd")


CACHE_RUNNER = """
import sys
import numpy as np
from graphc.runtime import jit
from graphc.runtime.objcache import ObjectCache, cache_key
ir_text = open(sys.argv[1]).read()
cache = ObjectCache()
obj, hit = cache.get_or_compute(cache_key(ir_text), lambda: jit.compile_ir(ir_text).object_code)
a, b, c = np.arange(9, dtype=np.float32), np.full(9, -2, np.float32), np.ones(9, np.float32)
out = np.zeros(9, np.float32)
table, keep = jit.pointer_table([a, b, c, out])
jit.load_object(obj).function("fma_relu")(table)
print("hit" if hit else "miss", out.tolist())
"""


def run_cache_runner(ir_path, cache_dir):
    env = dict(os.environ, GRAPHC_CACHE_DIR=str(cache_dir))
    env.pop("GRAPHC_NO_CACHE", None)
    proc = subprocess.run([sys.executable, "-c", CACHE_RUNNER, str(ir_path)], env=env,
                          check=True, timeout=120, capture_output=True, text=True)
    return proc.stdout.split(" ", 1)


def test_cache_hit_in_a_second_process(tmp_path):
    ir_path = tmp_path / "step.ll"
    ir_path.write_text(fma_relu_ir(9))
    expected = str(np.maximum(np.arange(9) * -2.0 + 1, 0).tolist())
    first = run_cache_runner(ir_path, tmp_path / "cache")
    second = run_cache_runner(ir_path, tmp_path / "cache")
    assert first == ["miss", expected + "\n"]
    assert second == ["hit", expected + "\n"]


@pytest.mark.parametrize("damage", ["flip_payload", "flip_checksum", "truncate", "empty",
                                    "other_version"])
def test_damaged_entry_is_a_miss_and_gets_recompiled(tmp_path, damage):
    ir_text = fma_relu_ir(16)
    cache, key = ObjectCache(tmp_path), cache_key(ir_text)
    good = jit.compile_ir(ir_text).object_code
    cache.put(key, good)
    path = cache.path(key)
    data = bytearray(path.read_bytes())
    header = len(data) - len(good)
    if damage == "flip_payload":
        data[header + len(good) // 2] ^= 0xFF
    elif damage == "flip_checksum":
        data[header - 1] ^= 0x01
    elif damage == "truncate":
        del data[-10:]
    elif damage == "empty":
        data = bytearray()
    else:
        data[8:12] = (FORMAT_VERSION + 1).to_bytes(4, "little")
    path.write_bytes(bytes(data))

    compiles = []

    def compile_again():
        compiles.append(1)
        return jit.compile_ir(ir_text).object_code

    obj, hit = cache.get_or_compute(key, compile_again)
    assert not hit and compiles == [1] and cache.corrupt == 1
    assert obj == good  # compilation is deterministic
    assert cache.get(key) == good  # the damaged entry was replaced


@pytest.mark.parametrize("make", [
    lambda: np.arange(12.0), lambda: np.arange(24.0)[5:], lambda: np.zeros((3, 4))[1:, 2:],
    lambda: np.zeros(()), lambda: np.zeros(0, np.int8), lambda: np.zeros((4, 4)).T,
    lambda: np.frombuffer(bytearray(64), np.int32)[3:], lambda: np.float32(2.5) * np.ones(7)])
def test_data_address_is_numpys_address_of_the_first_element(make):
    a = make()
    assert jit.data_address(a) == a.__array_interface__["data"][0]
    c = np.ascontiguousarray(a)
    assert jit.address_of(c) == c.__array_interface__["data"][0]
