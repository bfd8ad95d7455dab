"""W5's optimizer tail on the LLVM backend: clip_by_global_norm's scaling runs inside Adam's
loop (the scheduler sinks it next to its readers, the loop does not store it), and Adam's
``m / (sqrt(v) + eps)`` in float32 uses refined estimates instead of the divider."""
import re

import numpy as np
import pytest

import graphc as gc
from graphc.ir.passes import schedule

from tests.support.pass_testing import check_passes, record

SIZES = (12, 16, 5)


def _clip_adam(seed=0, dtype=np.float32):
    """An MLP step with gradients clipped by their global norm, then Adam."""
    rng = np.random.default_rng(seed)
    gdt = gc.as_dtype(dtype)
    x = gc.placeholder(gdt, [None, SIZES[0]], name="x")
    y = gc.placeholder(gc.int64, [None], name="y")
    h = x
    for k, (a, b) in enumerate(zip(SIZES, SIZES[1:])):
        w = gc.Variable((rng.standard_normal((a, b)) * 0.5).astype(dtype), name=f"w{k}")
        c = gc.Variable(np.zeros(b, dtype), name=f"c{k}")
        h = gc.matmul(h, w) + c
        if k + 2 < len(SIZES):
            h = gc.nn.relu(h)
    loss = gc.reduce_mean(gc.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=h))
    opt = gc.train.AdamOptimizer(0.01)
    grads, variables = zip(*opt.compute_gradients(loss))
    clipped, _ = gc.clip_by_global_norm(list(grads), 0.5)  # small: the scale is not 1
    train = opt.apply_gradients(list(zip(clipped, variables)))
    feeds = {x: rng.standard_normal((8, SIZES[0])).astype(dtype),
             y: rng.integers(0, SIZES[-1], 8)}
    return x, y, loss, train, feeds


def _run(backend, optimize, steps=3):
    with gc.Graph().as_default():
        x, y, loss, train, feeds = _clip_adam()
        step = gc.compile([loss, train], feeds=[x, y], backend=backend, optimize=optimize)
        losses = [step(feeds)[0] for _ in range(steps)]
        values = {k: np.array(a) for k, a in step.variables.items()}
    return step, np.array(losses), values


def test_the_schedule_sinks_each_clip_scaling_next_to_its_adam_update():
    with gc.Graph().as_default():
        x, y, loss, train, feeds = _clip_adam(dtype=np.float64)
        opt = check_passes([loss, train], feeds, steps=3)
    n_vars = 2 * (len(SIZES) - 1)
    assert record(opt, "schedule")["sunk"] >= n_vars
    scaled = 0
    for i, n in enumerate(opt.nodes):
        if n.op_name == "multiply" and any(x.shape == () for x in n.inputs) and \
                n.shape != ():
            nxt = opt.nodes[i + 1]
            assert any(x is n for x in nxt.inputs), f"'{n.name}' is apart from its reader"
            scaled += 1
    assert scaled == n_vars


def test_sinking_never_raises_the_live_peak():
    with gc.Graph().as_default():
        x, y, loss, train, feeds = _clip_adam(dtype=np.float64)
        opt = check_passes([loss, train], feeds)
    changes = record(opt, "schedule")
    assert changes["live_peak_after"] <= changes["live_peak_before"]


def test_clip_and_adam_share_one_loop_and_agree_with_the_reference(monkeypatch):
    _, ref_losses, ref_values = _run("numpy", False)
    step, losses, values = _run("llvm", True)
    np.testing.assert_allclose(losses, ref_losses, rtol=2e-5, atol=1e-6)
    for name, want in ref_values.items():
        np.testing.assert_allclose(values[name], want, rtol=1e-4, atol=1e-6, err_msg=name)
    sunk_calls = step.compiled.fn.artifacts.stats["kernel_calls"]
    monkeypatch.setattr(schedule, "_sink_into_readers", lambda order, *a: (order, 0))
    unsunk, _, _ = _run("llvm", True)
    n_vars = 2 * (len(SIZES) - 1)
    assert unsunk.compiled.fn.artifacts.stats["kernel_calls"] - sunk_calls >= n_vars


def test_the_adam_loop_does_not_store_the_scaled_gradient():
    step, _, _ = _run("llvm", True)
    text = step.compiled.fn.llvm_ir
    bodies = {m.group(1): m.group(0) for m in
              re.finditer(r"; kernel multiply [^\n]*\n(?:;[^\n]*\n)*"
                          r"define internal void @(\w+)\(.*?\n}\n", text, re.S)}
    adam = [b for b in bodies.values() if "llvm.sqrt" in b or "fdiv" in b]
    assert len(adam) == 2 * (len(SIZES) - 1)  # one loop per variable: the scaling is in it
    for body in adam:  # m, v and the parameter; not g * scale
        assert body.count("store float") == 3, body


# -- a / (sqrt(b) + c) in float32 from refined estimates -----------------------------------------
EPS = 1e-8  # Adam's epsilon: the constant c


def _operands(n=60000, seed=1):
    """b over the whole float32 range (log-uniform, denormals to the top), a of any size."""
    rng = np.random.default_rng(seed)
    b = (2.0 ** rng.uniform(-149, 128, n)).astype(np.float32)
    a = (rng.standard_normal(n) * 2.0 ** rng.uniform(-60, 60, n)).astype(np.float32)
    return a, b


def _divide(a, b, exact=False, monkeypatch=None):
    """``a / (sqrt(b) + EPS)`` computed by an LLVM step: (values, module IR, assembly)."""
    if exact:
        monkeypatch.setenv("GRAPHC_EXACT_DIVIDE", "1")
    with gc.Graph().as_default():
        av = gc.placeholder(gc.float32, [None], name="a")
        bv = gc.placeholder(gc.float32, [None], name="b")
        step = gc.compile([av / (gc.sqrt(bv) + EPS)], feeds=[av, bv], backend="llvm")
        out = step({av: a, bv: b})[0]
        fn = step.compiled.fn
        return out, fn.llvm_ir, fn.assembly()


def _ulps(got, a, b):
    """|got - exact| in float32 ulps of the exact (float64) result, where that is normal
    (the step flushes subnormal results to zero)."""
    exact = a.astype(np.float64) / (np.sqrt(b.astype(np.float64)) + np.float64(np.float32(EPS)))
    ref32 = exact.astype(np.float32)
    keep = np.abs(ref32) >= np.finfo(np.float32).tiny
    return np.abs(got[keep] - exact[keep]) / np.spacing(np.abs(ref32[keep])).astype(np.float64)


def test_estimates_are_within_4_ulp_of_the_exact_result_over_the_float32_range():
    a, b = _operands()
    got, ir, asm = _divide(a, b)
    assert "fdiv arcp afn ninf float" in ir and "reciprocal-estimates" in ir
    assert re.search(r"vrsqrt(14)?ps\s+%[yz]mm", asm), "estimates in vectorized form"
    ulps = _ulps(got, a, b)
    assert ulps.size > 50000 and ulps.max() <= 4.0, ulps.max()  # measured: 3.9 (IEEE: 2.1)


def test_loops_streaming_from_memory_keep_the_exact_divide():
    """Above ESTIMATE_MAX_BYTES of operands the loop waits on memory: estimates would only
    add instructions, so the kernel keeps sqrt and fdiv (and gives NumPy's bits)."""
    from graphc.codegen.llvm.math import ESTIMATE_MAX_BYTES
    n = ESTIMATE_MAX_BYTES // 12 + 1024  # three float32 operands: a, b and the result
    a, b = _operands(n, seed=4)
    b = np.maximum(b, np.float32(1e-30))
    got, ir, _ = _divide(a, b)
    assert "reciprocal-estimates" not in ir and "fdiv float" in ir
    want = a / (np.sqrt(b) + np.float32(EPS))
    normal = np.abs(want) >= np.finfo(np.float32).tiny
    np.testing.assert_array_equal(got[normal], want[normal])


def test_special_values_keep_their_ieee_meaning():
    a = np.array([1.5, -2.0, 3.0, 4.0, 1.0, np.nan, np.inf, -np.inf, 2.0, 1.0], np.float32)
    b = np.array([0.0, -0.0, np.inf, -1.0, np.nan, 4.0, 4.0, np.inf, 3.4e38, -np.inf],
                 np.float32)
    got, _, _ = _divide(a, b)
    with np.errstate(invalid="ignore"):
        want = a / (np.sqrt(b) + np.float32(EPS))
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    assert got[0] == want[0] and got[1] == want[1]  # b = +-0: a / c
    assert got[2] == 0.0 and got[6] == np.inf and np.signbit(got[2]) == np.signbit(want[2])
    assert got[8] == pytest.approx(want[8], rel=3e-7)  # the largest finite b


def test_exact_divide_opt_out_gives_numpys_bits(monkeypatch):
    a, b = _operands(seed=2)
    b = np.maximum(b, np.float32(1e-30))  # normal inputs and results: no flush to zero
    got, ir, asm = _divide(a, b, exact=True, monkeypatch=monkeypatch)
    assert "reciprocal-estimates" not in ir and "vrsqrt" not in asm and "vrcp" not in asm
    want = a / (np.sqrt(b) + np.float32(EPS))
    normal = np.abs(want) >= np.finfo(np.float32).tiny
    np.testing.assert_array_equal(got[normal], want[normal])


def test_hosts_without_avx512_use_their_own_estimates(monkeypatch):
    """Compiled for an AVX2 CPU (12-bit estimates instead of 14): still within 4 ulp."""
    from graphc.runtime import jit
    host = jit.host_target()
    if not host.triple.startswith("x86_64") or "+avx2" not in host.features:
        pytest.skip("an x86-64 host with AVX2 runs this")
    features = ",".join("-" + f[1:] if f.startswith("+avx512") else f
                        for f in host.features.split(","))
    target = jit.HostTarget(host.triple, "haswell", features)
    monkeypatch.setattr(jit, "host_target", lambda: target)
    monkeypatch.setenv("GRAPHC_NO_CACHE", "1")
    a, b = _operands(seed=3)
    got, _, asm = _divide(a, b)
    assert re.search(r"vrsqrtps\s+%ymm", asm) and "zmm" not in asm
    assert _ulps(got, a, b).max() <= 4.0


def test_adam_steps_are_bit_identical_across_runs():
    first, second = _run("llvm", True), _run("llvm", True)
    assert first[1].tobytes() == second[1].tobytes()
    for name, value in first[2].items():
        assert value.tobytes() == second[2][name].tobytes(), name
