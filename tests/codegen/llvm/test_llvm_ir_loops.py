"""``Function.counted``: a bottom-tested loop whose carried values, after the loop, are their
last updates (the GEMM tiles' K loop, in the form O2 would give it)."""
import numpy as np
import pytest

from graphc.codegen.llvm.ir import Function
from graphc.runtime import jit


def summing(count):
    """``out[0] = a[0] + ... + a[count - 1]`` in order, and ``out[1]`` = the last index + 1."""
    fn = Function("sums", [("ptr", "%t", "noalias")], linkage="", attrs="nounwind")
    a = fn.load("ptr", "%t")
    out = fn.load("ptr", fn.gep("ptr", "%t", 1))
    with fn.counted(count, "k") as lk:
        acc = lk.carry("float", "0.0")
        seen = lk.carry("float", "0.0")
        x = fn.load("float", fn.gep("float", a, lk.i))
        lk.update(acc, fn(f"fadd float {acc}, {x}"))
        lk.update(seen, fn(f"uitofp i64 {fn.add(lk.i, 1)} to float"))
    fn.store("float", acc, out)
    fn.store("float", seen, fn.gep("float", out, 1))
    fn.ret()
    return fn


@pytest.mark.parametrize("count", [0, 1, 2, 7])
def test_a_bottom_tested_loop_ends_with_its_last_updates(count):
    fn = summing(count)
    text = fn.text()
    if count:
        assert "icmp slt" not in text and "icmp eq i64 %kn" in text
    a = np.arange(1, 8, dtype=np.float32) / 3
    out = np.zeros(2, np.float32)
    table, keep = jit.pointer_table([a, out])
    jit.load_object(jit.compile_ir(text).object_code).function("sums")(table)
    want = np.float32(0)
    for x in a[:count]:
        want = np.float32(want + x)
    assert out[0].tobytes() == want.tobytes() and out[1] == count


def test_a_bottom_tested_loop_needs_a_literal_count():
    fn = Function("f", [])
    with pytest.raises(ValueError, match="literal count"):
        fn.counted("%n")
