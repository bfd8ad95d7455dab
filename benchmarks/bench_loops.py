"""Benchmark loops (issue 13): an RNN training step as a loop against the unrolled graph and peers.

The model is W3's (``baselines.W3``) with T time steps: h_t = tanh(x_t Wx + h_{t-1} Wh + b),
batch 32, input 32, hidden 128, then a dense read-out of h_T, sparse softmax cross-entropy
and one SGD step (lr 0.01), on the LLVM backend. For T = 16, 64, 256, 1024 each variant
reports: graph nodes (the user graph, loop bodies included), cold compile (empty object
cache, fresh process), warm compile (a second fresh process: object cache hit), step time
(min and median of N runs, and the min per time step), and peak memory: the LLVM step's
arena (the memory plan's buffers plus the loops' private ranges: state, stacks, bodies)
plus its scratch, against the T*B*H*4-byte bound of the saved states.

Variants:
    loop        ``gc.nn.dynamic_rnn`` (a ``loop`` node: one body whatever T)
    make_loop   the cell written for ``ir.loops.make_loop`` directly (x_t Wx in the body,
                which make_loop hoists: one GEMM over all t before the loop)
    unrolled    the same cell written out T times (skipped once compiling takes > 2 min)
    numpy       the hand-written NumPy BPTT step (``baselines.W3`` with T steps)
    jax         ``lax.scan`` under ``jit`` (cold compile: lower + compile, first call)
    torch       PyTorch eager, an ``RNNCell`` loop
JAX and PyTorch rows say "not installed" when they cannot be imported. Every graphc variant
and the peers start from the baseline's weights; the first step's loss is checked against it.

    python benchmarks/bench_loops.py                 # the table for T = 16, 64, 256, 1024
    python benchmarks/bench_loops.py --quick         # T = 16, 64, few runs: a smoke test
    python benchmarks/bench_loops.py --T 32 --runs 50 --variants loop unrolled numpy

Each graphc measurement runs in its own process (``--child``), so that cold means cold.
Timings are only meaningful on a quiet machine.
"""
import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import baselines  # noqa: E402

B, I, H, C = 32, 32, 128, 10
LR = 0.01
GRAPHC_VARIANTS = ("loop", "make_loop", "unrolled")
ALL_VARIANTS = GRAPHC_VARIANTS + ("numpy", "jax", "torch")


class Timeout(Exception):
    pass


# -- the model ------------------------------------------------------------------------------
def baseline(T, seed=0):
    """W3's hand-written NumPy model with ``T`` time steps (same initial weights)."""
    cls = type(f"W3_T{T}", (baselines.W3,), {"T": T, "input_shape": (T, B, I)})
    return cls(seed=seed)


def data(T, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((T, B, I)).astype(np.float32),
            rng.integers(0, C, B).astype(np.int64))


def build_graphc(variant, T, params):
    """(graph, x, y, loss, train) of the model as ``variant`` builds it."""
    import graphc as gc
    from graphc.ir import loops as Lp

    def var(name):
        return gc.Variable(np.array(params[name], np.float32), name=name)
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, [T, B, I], name="x")
        y = gc.placeholder(gc.int64, [B], name="y")
        if variant == "loop":
            kernel = np.concatenate([params["Wx"], params["Wh"]]).astype(np.float32)
            cell = gc.nn.rnn_cell.BasicRNNCell(
                H, kernel_initializer=lambda shape, dtype: kernel.copy())
            _, h = gc.nn.dynamic_rnn(cell, x, dtype=gc.float32, time_major=True)
        elif variant == "make_loop":
            wx, wh, b = var("Wx"), var("Wh"), var("b")
            state = Lp.loop_var(g, gc.float32, (B, H), "h")
            x_t = Lp.loop_var(g, gc.float32, (B, I), "x_t")
            nxt = gc.tanh(gc.matmul(x_t, wx) + gc.matmul(state, wh) + b)
            loop = Lp.make_loop([state], [gc.zeros([B, H], gc.float32)], [x_t], [x], None,
                                [nxt], name="rnn")
            h = Lp.outputs(loop, "carried", 0)
        elif variant == "unrolled":
            wx, wh, b = var("Wx"), var("Wh"), var("b")
            h = None
            for t in range(T):
                pre = gc.matmul(x[t], wx) + b
                h = gc.tanh(pre if h is None else pre + gc.matmul(h, wh))
        else:
            raise ValueError(variant)
        logits = gc.matmul(h, var("Wo")) + var("bo")
        loss = gc.reduce_mean(gc.nn.sparse_softmax_cross_entropy_with_logits(
            labels=y, logits=logits))
        train = gc.train.GradientDescentOptimizer(LR).minimize(loss)
    return g, x, y, loss, train


def _times(fn, runs):
    fn()  # warm-up
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def child(variant, T, runs, timeout):
    """One graphc measurement (run in a fresh process): a JSON dict on stdout."""
    import graphc as gc
    import graphc.codegen.llvm.backend  # noqa: F401  (imports are not compilation)
    base = baseline(T)
    xv, yv = data(T)
    g, x, y, loss, train = build_graphc(variant, T, base.params)
    out = {"variant": variant, "T": T, "nodes": len(g.nodes),
           "loops": sum(1 for n in g.nodes if n.op_name == "loop")}

    def alarm(*_):
        raise Timeout()
    signal.signal(signal.SIGALRM, alarm)
    signal.alarm(int(timeout))
    t0 = time.perf_counter()
    try:
        with g.as_default():
            step = gc.compile([loss, train], feeds=[x, y], backend="llvm")
    except Timeout:
        out["timeout"] = True
        return out
    finally:
        signal.alarm(0)
    out["compile_s"] = time.perf_counter() - t0
    c = step.compiled
    out["cache_hit"] = bool(c.fn.artifacts.cache_hit)
    out["arena_bytes"] = int(c.code.stats.get("arena_bytes", c.program.plan.arena_bytes))
    out["plan_bytes"] = int(c.program.plan.arena_bytes)
    out["scratch_bytes"] = int(c.scratch_bytes or 0)
    feed = {x: xv, y: yv}
    out["loss"] = float(step(feed)[0])
    out["times"] = _times(lambda: step(feed), runs)
    return out


def run_child(variant, T, runs, timeout, cache_dir):
    env = dict(os.environ, GRAPHC_CACHE_DIR=cache_dir)
    env.pop("GRAPHC_NO_CACHE", None)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", variant, str(T),
           "--runs", str(runs), "--timeout", str(timeout)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        tail = (r.stderr.strip().splitlines() or ["?"])[-1]
        return {"variant": variant, "T": T, "error": tail}
    return json.loads(r.stdout.strip().splitlines()[-1])


def measure_graphc(variant, T, runs, timeout):
    """Cold (empty object cache) then warm (same cache, new process) measurements."""
    with tempfile.TemporaryDirectory() as d:
        cold = run_child(variant, T, runs, timeout, d)
        if "compile_s" not in cold:
            return cold
        warm = run_child(variant, T, 1, timeout, d)
    cold["warm_s"] = warm.get("compile_s")
    cold["warm_hit"] = warm.get("cache_hit")
    return cold


# -- peers ----------------------------------------------------------------------------------
def measure_numpy(T, runs):
    model = baseline(T)
    xv, yv = data(T)
    loss = float(model.step(xv, yv))
    model = baseline(T)
    state = sum(v.nbytes for v in vars(model).values() if isinstance(v, np.ndarray))
    return {"variant": "numpy", "T": T, "loss": loss, "arena_bytes": state,
            "times": _times(lambda: model.step(xv, yv), runs)}


def measure_jax(T, runs):
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return {"variant": "jax", "T": T, "missing": True}
    p0 = {k: jnp.asarray(v) for k, v in baseline(T).params.items()}
    xv, yv = data(T)

    def loss_fn(p, x, y):
        def cell(h, xt):
            h = jnp.tanh(xt @ p["Wx"] + h @ p["Wh"] + p["b"])
            return h, None
        h, _ = jax.lax.scan(cell, jnp.zeros((B, H), x.dtype), x)
        logits = h @ p["Wo"] + p["bo"]
        logp = jax.nn.log_softmax(logits)
        return -jnp.mean(logp[jnp.arange(B), y])

    def step(p, x, y):
        loss, g = jax.value_and_grad(loss_fn)(p, x, y)
        return jax.tree_util.tree_map(lambda a, b: a - LR * b, p, g), loss
    t0 = time.perf_counter()
    fn = jax.jit(step).lower(p0, xv, yv).compile()
    compile_s = time.perf_counter() - t0
    state = {"p": p0}
    _, loss = fn(p0, xv, yv)

    def once():
        state["p"], lv = fn(state["p"], xv, yv)
        lv.block_until_ready()
    return {"variant": "jax", "T": T, "compile_s": compile_s, "loss": float(loss),
            "times": _times(once, runs)}


def measure_torch(T, runs):
    try:
        import torch
    except ImportError:
        return {"variant": "torch", "T": T, "missing": True}
    params = {k: torch.tensor(v, requires_grad=True) for k, v in baseline(T).params.items()}
    xv, yv = (torch.from_numpy(a) for a in data(T))

    def once():
        h = torch.zeros(B, H)
        for t in range(T):
            h = torch.tanh(xv[t] @ params["Wx"] + h @ params["Wh"] + params["b"])
        logits = h @ params["Wo"] + params["bo"]
        loss = torch.nn.functional.cross_entropy(logits, yv)
        grads = torch.autograd.grad(loss, list(params.values()))
        with torch.no_grad():
            for p, g in zip(params.values(), grads):
                p -= LR * g
        return float(loss)
    loss = once()
    params = {k: torch.tensor(v, requires_grad=True) for k, v in baseline(T).params.items()}
    return {"variant": "torch", "T": T, "loss": loss, "times": _times(once, runs)}


# -- the table ------------------------------------------------------------------------------
LABELS = {"loop": "graphc loop (dynamic_rnn)", "make_loop": "graphc loop (make_loop)",
          "unrolled": "graphc unrolled", "numpy": "NumPy BPTT (hand-written)",
          "jax": "JAX lax.scan (jit)", "torch": "PyTorch eager"}


def _s(v):
    return "—" if v is None else f"{v:.2f} s"


def _ms(v):
    return f"{v * 1e3:.2f} ms"


def row(r, ref_loss):
    label, T = LABELS[r["variant"]], r["T"]
    if r.get("missing"):
        return f"| {label} | {T} | not installed | | | | | | |"
    if r.get("timeout"):
        return (f"| {label} | {T} | {r['nodes']:,} | > {r['timeout_s']} s (skipped) | | | | "
                "| |")
    if "error" in r:
        return f"| {label} | {T} | failed: {r['error'][:80]} | | | | | | |"
    t = r["times"]
    mem = r.get("arena_bytes")
    bound = T * B * H * 4
    mem_text = "" if mem is None else f"{mem / 2**20:.2f} MiB ({mem / bound:.2f}x)"
    if r.get("scratch_bytes"):
        mem_text += f" + {r['scratch_bytes'] / 2**20:.2f} MiB scratch"
    ok = "" if ref_loss is None or "loss" not in r else \
        ("ok" if abs(r["loss"] - ref_loss) <= 1e-4 * max(1.0, abs(ref_loss)) else
         f"DIFFERS {r['loss']:.6f}")
    warm = r.get("warm_s")
    warm_text = "" if warm is None else _s(warm) + ("" if r.get("warm_hit") else " (miss)")
    nodes = f"{r['nodes']:,}" if "nodes" in r else ""
    return (f"| {label} | {T} | {nodes} | {_s(r.get('compile_s'))} | {warm_text} | "
            f"{_ms(min(t))} / {_ms(statistics.median(t))} | {min(t) / T * 1e6:.1f} us | "
            f"{mem_text} | {ok} |")


def ratios(results, Ts):
    """The issue's goals as ratios of the measured numbers."""
    by = {(r["variant"], r["T"]): r for r in results}
    lines = []

    def ok(v, T):
        r = by.get((v, T))
        return r if r and "times" in r else None
    lo, hi = min(Ts), max(Ts)
    a, b = ok("loop", lo), ok("loop", hi)
    if a and b:
        lines.append(f"- loop compile T={hi} / T={lo}: {b['compile_s'] / a['compile_s']:.2f}x "
                     f"(goal <= 1.3x, and under 1 s: {b['compile_s']:.2f} s)")
        per = (min(b["times"]) / hi) / (min(a["times"]) / lo)
        lines.append(f"- loop per-time-step cost T={hi} / T={lo}: {per:.2f}x (goal <= 1.15x)")
        lines.append(f"- loop graph nodes T={lo}: {a['nodes']}, T={hi}: {b['nodes']} "
                     "(goal: independent of T)")
    for T in Ts:
        loop = ok("loop", T)
        if not loop:
            continue
        parts = []
        for v in ("make_loop", "unrolled", "numpy", "jax", "torch"):
            other = ok(v, T)
            if other:
                parts.append(f"{LABELS[v]} {min(other['times']) / min(loop['times']):.2f}x")
        if parts:
            lines.append(f"- T={T}: step time of each / the loop's (>1: the loop is faster): "
                         + ", ".join(parts))
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="T = 16, 64 and 5 runs")
    parser.add_argument("--T", type=int, nargs="+", default=None)
    parser.add_argument("--runs", type=int, default=None, help="step runs (default 30)")
    parser.add_argument("--timeout", type=int, default=120,
                        help="skip a graphc compile that takes longer (seconds)")
    parser.add_argument("--variants", nargs="+", choices=ALL_VARIANTS, default=ALL_VARIANTS)
    parser.add_argument("--child", nargs=2, metavar=("VARIANT", "T"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    runs = args.runs or (5 if args.quick else 30)
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]), runs, args.timeout)))
        return 0
    Ts = args.T or ([16, 64] if args.quick else [16, 64, 256, 1024])
    results = []
    print(f"RNN step, batch {B}, input {I}, hidden {H}, LLVM backend; {runs} runs per step "
          "time; memory: arena (+ scratch) against the T*B*H*4-byte bound\n")
    print("| variant | T | graph nodes | cold compile | warm compile | step min / median "
          "| per time step | peak memory (x bound) | loss |")
    print("|---|---|---|---|---|---|---|---|---|")
    skip_unrolled = False
    for T in Ts:
        ref = measure_numpy(T, runs) if "numpy" in args.variants else None
        ref_loss = ref["loss"] if ref else float(baseline(T).step(*data(T)))
        for v in args.variants:
            if v in GRAPHC_VARIANTS:
                if v == "unrolled" and skip_unrolled:
                    r = {"variant": v, "T": T, "nodes": 0, "timeout": True,
                         "timeout_s": args.timeout}
                else:
                    r = measure_graphc(v, T, runs, args.timeout)
                    if r.get("timeout"):
                        r["timeout_s"] = args.timeout
                        skip_unrolled = v == "unrolled"
            elif v == "numpy":
                r = ref
            else:
                r = (measure_jax if v == "jax" else measure_torch)(T, runs)
            results.append(r)
            print(row(r, ref_loss), flush=True)
    print()
    for line in ratios(results, Ts):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
