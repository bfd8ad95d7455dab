"""Benchmark graphc's LLVM backend on the workloads W1..W5 (see workloads.md).

For each workload the same training step runs as: the hand-written NumPy baseline
(``baselines.py``), graphc's NumPy backend and graphc's LLVM backend, each through
``Session.run`` and, for graphc, also as a direct call of the compiled step (what
``Session.run`` adds is Python bookkeeping). Runs are interleaved (round robin, several
rounds) and medians reported, with ratios against the baseline, the NumPy backend and the
floor from the issue (floor / measured: 1.0 would be the machine's limit). Every graphc model
starts from the baseline's initial weights, and the first step's losses are checked to agree.
PyTorch and JAX are measured on the same workloads by ``bench_peers.py``.

    python benchmarks/bench_llvm.py [W1 ...] [--rounds 7] [--min-time 0.1] [--compile]
        [--threads N] [--settle S] [--record]

``--settle`` rests before each candidate's batch (0.3 s by default with more than one
thread): OpenBLAS's threads spin for a while after the hand-written step's GEMMs and would
take the next candidate's second core.

``--compile`` also times compiling W1 cold (empty object cache) and warm, in fresh processes.
"""
import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

if __name__ == "__main__" and "--threads" in sys.argv:  # BLAS reads it when it loads
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import thread_env
    thread_env.set_threads(int(sys.argv[sys.argv.index("--threads") + 1]))  # (and pins)

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import baselines  # noqa: E402
import floor  # noqa: E402
import records  # noqa: E402

import graphc as gc  # noqa: E402
from graphc.runtime import threads  # noqa: E402

# The floors, read off an AVX-512 CPU; the table prints this machine's (floor.py).
FLOOR_MS = {"W1": 0.81, "W2": 0.004, "W3": 0.61, "W4": 0.10, "W5": 0.82}
BEST_PEER_MS = {"W1": 1.1, "W2": 0.047, "W3": 1.3, "W4": 1.3, "W5": 1.3}
GOAL = {"W1": 1.15, "W2": 3.0, "W3": 1.8, "W4": 4.0, "W5": 1.6}


# -- models ---------------------------------------------------------------------------------
def _var(value, name):
    return gc.Variable(np.array(value, np.float32), name=name)


def _mlp(params, x, activation):
    n = len([k for k in params if k.startswith("W")])
    h = x
    for i in range(n):
        h = gc.matmul(h, _var(params[f"W{i}"], f"W{i}")) + _var(params[f"b{i}"], f"b{i}")
        if i < n - 1:
            h = activation(h)
    return h


def _rnn(params, x, steps):
    wx, wh, b = _var(params["Wx"], "Wx"), _var(params["Wh"], "Wh"), _var(params["b"], "b")
    h = None
    for t in range(steps):
        pre = gc.matmul(x[t], wx) + b
        h = gc.tanh(pre if h is None else pre + gc.matmul(h, wh))
    return gc.matmul(h, _var(params["Wo"], "Wo")) + _var(params["bo"], "bo")


def _conv(params, x):
    k, bc = _var(params["K"], "K"), _var(params["bc"], "bc")
    a = gc.nn.relu(gc.nn.conv2d(x, k, [1, 1, 1, 1], "VALID") + bc)
    pooled = gc.nn.max_pool(a, [1, 2, 2, 1], [1, 2, 2, 1], "VALID")
    flat = gc.reshape(pooled, [x.shape[0], -1])
    return gc.matmul(flat, _var(params["Wd"], "Wd")) + _var(params["bd"], "bd")


def build(workload):
    """(graph, x placeholder, y placeholder, loss, train op) starting from the baseline's
    initial parameters."""
    base = baselines.WORKLOADS[workload](seed=0)
    params = {k: v.copy() for k, v in base.params.items()}
    graph = gc.Graph()
    with graph.as_default():
        x = gc.placeholder(gc.float32, base.input_shape, name="x")
        y = gc.placeholder(gc.int64, [base.input_shape[1] if workload == "W3" else
                                      base.input_shape[0]], name="y")
        if workload in ("W1", "W5"):
            logits = _mlp(params, x, gc.nn.relu)
        elif workload == "W2":
            logits = _mlp(params, x, gc.tanh)
        elif workload == "W3":
            logits = _rnn(params, x, base.T)
        else:
            logits = _conv(params, x)
        loss = gc.reduce_mean(gc.nn.sparse_softmax_cross_entropy_with_logits(labels=y,
                                                                             logits=logits))
        if workload == "W5":
            opt = gc.train.AdamOptimizer(1e-3)
            grads, variables = zip(*opt.compute_gradients(loss))
            clipped, _ = gc.clip_by_global_norm(list(grads), 1.0)
            train = opt.apply_gradients(list(zip(clipped, variables)))
        else:
            train = gc.train.GradientDescentOptimizer(0.01).minimize(loss)
        init = gc.global_variables_initializer()
    return graph, x, y, loss, train, init


class GraphcStep:
    """One workload compiled by graphc, runnable three ways: a ``gc.compile`` step (the
    intended API), ``Session.run``, and the raw compiled function (no Python bookkeeping)."""

    def __init__(self, workload, backend, data):
        self.graph, x, y, loss, train, init = build(workload)
        self.sess = gc.Session(graph=self.graph, backend=backend)
        self.sess.run(init)
        self.feed = {x: data[0], y: data[1]}
        self.fetches = [loss, train]
        t0 = time.perf_counter()
        self.first_loss = float(self.sess.run(self.fetches, self.feed)[0])
        self.compile_s = time.perf_counter() - t0
        with self.graph.as_default():
            self.step = gc.compile(self.fetches, feeds=[x, y], backend=backend)
        self.step(self.feed)
        c = self.step.compiled
        self.fn = c.fn
        self.args = [self.feed[p] for p in c.feed_nodes] + \
            [np.array(self.sess.values[v]) for v in c.var_nodes]
        self.update_at = [len(c.feed_nodes) + c.var_nodes.index(v) for v in c.update_nodes]
        self.in_place = getattr(c.fn, "updates_in_place", False)
        self.initial = {v.node_name: self.args[len(c.feed_nodes) + k].copy()
                        for k, v in enumerate(c.var_nodes)}
        self.var_names = [v.node_name for v in c.var_nodes]

    def reset(self):
        """Every copy of the model back to its initial parameters (in place)."""
        for v, arr in self.sess.values.items():
            if v.node_name in self.initial:
                np.copyto(arr, self.initial[v.node_name])
        for name, arr in self.step.variables.items():
            np.copyto(arr, self.initial[name])
        n_feeds = len(self.args) - len(self.var_names)
        for k, name in enumerate(self.var_names):
            np.copyto(self.args[n_feeds + k], self.initial[name])

    def compiled_step(self):
        return self.step(self.feed)

    def session_step(self):
        return self.sess.run(self.fetches, self.feed)

    def direct_step(self):
        fetched, updates = self.fn(*self.args)
        if not self.in_place:
            for k, new in zip(self.update_at, updates):
                self.args[k] = new
        return fetched


# -- timing ---------------------------------------------------------------------------------
def _calibrate(fn, min_time):
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < min_time:
        fn()
        n += 1
    return max(n, 3)


def settled(reset, settle):
    """``reset`` followed by a pause (untimed) that lets the previous candidate's threads go
    to sleep: an OpenBLAS worker keeps spinning on a core for 0.1-0.2 s after a GEMM, and the
    next candidate's threads (graphc's pool, PyTorch's OpenMP) stall behind it (W1 with
    PyTorch eager: 1.5 ms alone, 16-30 ms right after NumPy, with 2 threads on 2 cores)."""
    if not settle:
        return reset

    def run():
        reset()
        time.sleep(settle)
    return run


def interleaved(candidates, rounds, min_time):
    """{name: median seconds per step} over ``rounds`` round-robin batches.

    ``candidates`` maps names to (reset, step): every batch starts from the initial
    parameters, so all candidates train through the same (early) regime. (Left training for
    ~900 W5 steps, Adam moments of dead units decay into subnormals, which slow NumPy down
    about 2x; native steps flush them, as TensorFlow does.)
    """
    times = interleaved_times(candidates, rounds, min_time)
    return {k: float(np.median(v)) for k, v in times.items()}


def interleaved_times(candidates, rounds, min_time):
    """{name: [seconds per step of each round]} (see ``interleaved``)."""
    counts = {}
    for k, (reset, f) in candidates.items():
        reset()
        counts[k] = _calibrate(f, min_time)
    times = {k: [] for k in candidates}
    for _ in range(rounds):
        for k, (reset, f) in candidates.items():
            reset()
            start = time.perf_counter()
            for _ in range(counts[k]):
                f()
            times[k].append((time.perf_counter() - start) / counts[k])
    return times


def _peers(workload):
    """Which peers are missing (``bench_peers.py`` times the installed ones)."""
    missing = []
    for mod in ("torch", "jax"):
        try:
            __import__(mod)
        except ImportError:
            missing.append(mod)
    return missing


def bench(workload, rounds, min_time, settle=0.0):
    data = baselines.make_data(workload)
    ref_loss = baselines.WORKLOADS[workload](seed=0).loss(*data)
    base = [None]

    def fresh_baseline():
        base[0] = baselines.WORKLOADS[workload](seed=0)
    npb = GraphcStep(workload, "numpy", data)
    llvm = GraphcStep(workload, "llvm", data)
    for name, s in (("numpy backend", npb), ("llvm backend", llvm)):
        if not np.isclose(s.first_loss, ref_loss, rtol=1e-4):
            raise AssertionError(f"{workload}: {name} loss {s.first_loss} != baseline {ref_loss}")
    med = interleaved({"baseline": (settled(fresh_baseline, settle), lambda: base[0].step(*data)),
                       "numpy": (settled(npb.reset, settle), npb.compiled_step),
                       "llvm": (settled(llvm.reset, settle), llvm.compiled_step),
                       "llvm session": (settled(llvm.reset, settle), llvm.session_step),
                       "llvm direct": (settled(llvm.reset, settle), llvm.direct_step)},
                      rounds, min_time)
    return med, llvm.compile_s, llvm.step.program


_CHILD = """
import json, sys, time
sys.path.insert(0, {here!r})
import bench_llvm as b
import graphc.codegen.llvm.backend  # imports are not compilation
from graphc.client.pipeline import compile_program
g, x, y, loss, train, init = b.build("W1")
t = time.perf_counter()
c = compile_program([loss, train], {{x: (128, 784), y: (128,)}}, "llvm")
total = time.perf_counter() - t
print(json.dumps(dict(total=total, hit=c.fn.artifacts.cache_hit, **c.timings,
                      **c.fn.artifacts.timings)))
"""


def compile_times():
    """W1's compile_program in fresh processes (modules imported first): an empty object
    cache, then a warm one. Returns the two timing dicts (seconds)."""
    import json
    import tempfile
    code = _CHILD.format(here=str(Path(__file__).resolve().parent))
    with tempfile.TemporaryDirectory() as d:
        env = dict(os.environ, GRAPHC_CACHE_DIR=d)
        for var in ("GRAPHC_NO_CACHE", "PYTHONDONTWRITEBYTECODE"):
            env.pop(var, None)
        runs = []
        for _ in range(4):
            r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                               text=True, check=True)
            runs.append(json.loads(r.stdout.strip().splitlines()[-1]))
    cold = runs[0]
    warm = min(runs[1:], key=lambda r: r["total"])
    assert not cold["hit"] and warm["hit"]
    return cold, warm


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workloads", nargs="*", default=list(baselines.WORKLOADS))
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--min-time", type=float, default=0.1, help="seconds per batch")
    parser.add_argument("--compile", action="store_true", help="also time W1 compilation")
    parser.add_argument("--threads", type=int, default=None,
                        help="BLAS threads (default: OpenBLAS's own choice)")
    parser.add_argument("--record", action="store_true",
                        help="store this run's ratios as the reference (records.py)")
    parser.add_argument("--settle", type=float, default=None,
                        help="seconds of rest before each candidate's batch (default 0.3 with "
                             "more than one thread, else 0)")
    args = parser.parse_args(argv)
    cores = args.threads or threads.policy_threads()
    settle = args.settle if args.settle is not None else (0.3 if cores > 1 else 0.0)
    print(f"numpy {np.__version__}; BLAS threads {os.environ.get('OPENBLAS_NUM_THREADS', 'auto')}"
          f"; settle {settle} s; medians of {args.rounds} interleaved rounds; ms per step")
    print("columns: hand-written NumPy | graphc NumPy backend | graphc LLVM (gc.compile step) |"
          " LLVM via Session.run | LLVM raw call | ratios (x base = baseline / llvm)")
    peak = floor.peak_macs_per_second(threads=cores)
    print(f"floor: the step's multiply-adds at {peak / 1e9:.1f} GMAC/s (the peak of {cores} "
          f"core(s) running at once, floor.py)")
    head = (f"{'wl':3} {'baseline':>9} {'np-be':>8} {'llvm':>8} {'session':>8} {'raw':>8} "
            f"{'x base':>7} {'goal':>5} {'x np-be':>7} {'floor/llvm':>10} {'compile s':>9}  "
            "x base against the record")
    print(head)
    rec = records.Records("bench_llvm", cores)
    for w in args.workloads:
        med, comp, program = bench(w, args.rounds, args.min_time, settle)
        ms = {k: v * 1e3 for k, v in med.items()}
        floor_ms = floor.floor_seconds(program, cores, peak) * 1e3
        print(f"{w:3} {ms['baseline']:9.3f} {ms['numpy']:8.3f} {ms['llvm']:8.3f} "
              f"{ms['llvm session']:8.3f} {ms['llvm direct']:8.3f} "
              f"{ms['baseline'] / ms['llvm']:7.2f} {GOAL[w]:5.2f} "
              f"{ms['numpy'] / ms['llvm']:7.2f} {floor_ms / ms['llvm']:10.3f} {comp:9.2f}  "
              f"{rec.note(f'{w} x base', round(ms['baseline'] / ms['llvm'], 2))}")
    print(rec.summary())
    if args.record:
        rec.save()
    missing = _peers(None)
    if missing:
        print(f"peers not installed (skipped): {', '.join(missing)}")
    if args.compile:
        for label, t in zip(("cold cache", "warm cache"), compile_times()):
            parts = ", ".join(f"{k} {t[k] * 1e3:.1f}" for k in
                              ("specialize", "passes", "lower", "llvm", "load"))
            print(f"W1 compile, fresh process, {label}: {t['total'] * 1e3:.0f} ms ({parts})")


if __name__ == "__main__":
    main()
