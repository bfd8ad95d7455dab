"""Data-parallel step time at 1 and 2 MPI ranks on this machine, and the inputs of the cost
model in ``distributed.md`` (per-example compute time, allreduce time).

    python benchmarks/bench_distributed.py [--backends numpy llvm] [--rounds 9]

The driver launches itself under ``mpiexec -n 1`` and ``mpiexec -n 2`` (workers) and prints:

- W1 (MLP 784-256-256-10 ReLU, SGD) step time per rank batch, at 1 rank (every core for
  BLAS) and at 2 ranks (one BLAS thread each: ``gc.distributed`` pins them), with weak
  scaling (128 examples per rank: throughput(2) / (2 throughput(1))) and strong scaling
  (128 examples in all: 64 per rank at 2 ranks) efficiencies, and the same for W5 (W1 with
  global-norm clipping and Adam);
- the packing overhead (a DistributedOptimizer step vs the bare optimizer, one process);
- the time of one Allreduce of the packed W1 gradients (1.08 MB) between the two ranks;
- per-example compute time: the slope of step time over batch sizes 64..512 at 1 rank and
  1 BLAS thread (the share of one core, as each rank has at 2 ranks on 2 cores).

Every timing is a median over rounds; a round runs the same number of steps on every rank
(calibrated on rank 0) between barriers and takes the slowest rank's time.
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SIZES = (784, 256, 256, 10)


def build(workload, distributed, seed=0):
    """W1 or W5 in a fresh graph: (graph, x, y, fetches); Glorot-uniform weights."""
    import graphc as gc
    rng = np.random.default_rng(seed)
    graph = gc.Graph()
    with graph.as_default():
        x = gc.placeholder(gc.float32, [None, SIZES[0]], name="x")
        y = gc.placeholder(gc.int64, [None], name="y")
        h = x
        for i, (n_in, n_out) in enumerate(zip(SIZES[:-1], SIZES[1:])):
            limit = np.sqrt(6.0 / (n_in + n_out))
            w = gc.Variable(rng.uniform(-limit, limit, (n_in, n_out)).astype(np.float32),
                            name=f"W{i}")
            h = gc.matmul(h, w) + gc.Variable(np.zeros(n_out, np.float32), name=f"b{i}")
            if i < len(SIZES) - 2:
                h = gc.nn.relu(h)
        loss = gc.reduce_mean(gc.nn.sparse_softmax_cross_entropy_with_logits(labels=y,
                                                                             logits=h))
        opt = gc.train.AdamOptimizer(1e-3) if workload == "W5" else \
            gc.train.GradientDescentOptimizer(0.01)
        if distributed:
            opt = gc.distributed.DistributedOptimizer(opt)
        grads, variables = zip(*opt.compute_gradients(loss))
        if workload == "W5":
            grads, _ = gc.clip_by_global_norm(list(grads), 1.0)
        train = opt.apply_gradients(list(zip(grads, variables)))
    return graph, x, y, [loss, train]


# -- worker (one MPI rank) ------------------------------------------------------------------
class Timer:
    """Collective timing: every rank runs the same step counts between barriers."""

    def __init__(self, rounds, min_time):
        from graphc.runtime import collectives
        self.comm = collectives.init()
        self.rounds, self.min_time = rounds, min_time

    def _agree(self, value, op="max"):
        if self.comm is None:
            return value
        from mpi4py import MPI
        return self.comm.allreduce(value, op=MPI.MAX if op == "max" else MPI.MIN)

    def _barrier(self):
        if self.comm is not None:
            self.comm.Barrier()

    def median(self, fn):
        """Median seconds per call of ``fn`` (the slowest rank's, per round)."""
        for _ in range(3):
            fn()
        # Calibrate on a fixed count: every call may be a collective, so all ranks must make
        # the same number of calls.
        self._barrier()
        t0 = time.perf_counter()
        for _ in range(5):
            fn()
        per_call = self._agree((time.perf_counter() - t0) / 5)
        count = max(3, int(self.min_time / max(per_call, 1e-9)))
        times = []
        for _ in range(self.rounds):
            self._barrier()
            t0 = time.perf_counter()
            for _ in range(count):
                fn()
            times.append(self._agree((time.perf_counter() - t0) / count))
        return float(np.median(times))


def step_time(timer, workload, backend, batch, distributed=True):
    import graphc as gc
    graph, x, y, fetches = build(workload, distributed)
    step = gc.compile(fetches, feeds=[x, y], backend=backend)
    gc.distributed.broadcast_variables(step)
    rng = np.random.default_rng(1 + gc.distributed.rank())
    xb = rng.random((batch, SIZES[0])).astype(np.float32)
    yb = rng.integers(0, 10, batch).astype(np.int64)
    return timer.median(lambda: step({x: xb, y: yb}))


def allreduce_time(timer):
    from graphc.runtime import collectives
    n = sum(a * b + b for a, b in zip(SIZES[:-1], SIZES[1:]))
    buf = np.ones(n, np.float32)
    return timer.median(lambda: collectives.allreduce_mean_(buf)), n


def worker(args):
    import graphc as gc
    from graphc.runtime import collectives
    timer = Timer(args.rounds, args.min_time)
    out = {"size": gc.distributed.size(), "blas_threads": collectives.blas_threads(),
           "steps": {}}
    for backend in args.backends:
        for workload in ("W1", "W5"):
            for batch in args.batches:
                key = f"{workload}/{backend}/{batch}"
                out["steps"][key] = step_time(timer, workload, backend, batch)
                if args.bare:
                    out["steps"][key + "/bare"] = step_time(timer, workload, backend, batch,
                                                            distributed=False)
    if gc.distributed.size() > 1:
        out["allreduce_s"], out["params"] = allreduce_time(timer)
    if gc.distributed.rank() == 0:
        print("RESULT " + json.dumps(out), flush=True)


# -- driver ---------------------------------------------------------------------------------
def launch(n, args, batches, threads=None, bare=False):
    launcher = Path(sys.executable).parent / "mpiexec"
    launcher = str(launcher) if launcher.exists() else "mpiexec"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "OMPI_"))}
    if threads:
        env["OPENBLAS_NUM_THREADS"] = str(threads)
    cmd = [launcher, "-n", str(n), sys.executable, __file__, "--worker",
           "--rounds", str(args.rounds), "--min-time", str(args.min_time),
           "--backends", *args.backends, "--batches", *map(str, batches)]
    cmd += ["--bare"] if bare else []
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    line = next(s for s in r.stdout.splitlines() if s.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def merge(results):
    """One result with each timing the median over launches."""
    out = dict(results[0])
    out["steps"] = {k: float(np.median([r["steps"][k] for r in results]))
                    for k in results[0]["steps"]}
    if "allreduce_s" in out:
        out["allreduce_s"] = float(np.median([r["allreduce_s"] for r in results]))
    return out


def slope(times, batches):
    """(seconds per example, fixed seconds) of a least-squares line through the times."""
    a, b = np.polyfit(np.asarray(batches, float), np.asarray(times, float), 1)
    return float(a), float(b)


def report(one, two, single_core, sweep, backends):
    print(f"BLAS threads: 1 rank {one['blas_threads']}, 2 ranks {two['blas_threads']}")
    print(f"allreduce of {two['params']} float32 ({two['params'] * 4 / 1e6:.2f} MB) "
          f"between 2 ranks: {two['allreduce_s'] * 1e3:.3f} ms")
    print("\n| workload | backend | 1 rank, 128 (ms) | 2 ranks, 128 each (ms) | weak eff. "
          "| 2 ranks, 64 each (ms) | strong eff. | packing overhead |")
    print("|---|---|---|---|---|---|---|---|")
    for w in ("W1", "W5"):
        for b in backends:
            t1, t2 = one["steps"][f"{w}/{b}/128"], two["steps"][f"{w}/{b}/128"]
            t2s = two["steps"][f"{w}/{b}/64"]
            bare = one["steps"][f"{w}/{b}/128/bare"]
            print(f"| {w} | {b} | {t1 * 1e3:.3f} | {t2 * 1e3:.3f} | {t1 / t2:.2f} | "
                  f"{t2s * 1e3:.3f} | {t1 / t2s / 2:.2f} | {(t1 / bare - 1) * 100:+.1f}% |")
    print("\nper-example compute at 1 rank, 1 BLAS thread (slope over batches "
          f"{sweep}), and step time at 128:")
    for w in ("W1", "W5"):
        for b in backends:
            times = [single_core["steps"][f"{w}/{b}/{k}"] for k in sweep]
            per, fixed = slope(times, sweep)
            print(f"  {w} {b}: {per * 1e6:.2f} us/example + {fixed * 1e3:.3f} ms fixed "
                  f"(128: {single_core['steps'][f'{w}/{b}/128'] * 1e3:.3f} ms)")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backends", nargs="+", default=["numpy", "llvm"])
    p.add_argument("--batches", nargs="+", type=int, default=[64, 128])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--repeats", type=int, default=3, help="launches of each configuration")
    p.add_argument("--min-time", type=float, default=0.1)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--bare", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--json", help="also write the raw results there")
    args = p.parse_args(argv)
    if args.worker:
        return worker(args)
    load_before = os.getloadavg()
    sweep = [64, 128, 256, 512]
    runs = {"one": [], "two": [], "single_core": []}
    for _ in range(args.repeats):  # interleaved, so that load from elsewhere hits all alike
        runs["one"].append(launch(1, args, [128], bare=True))
        runs["two"].append(launch(2, args, [64, 128]))
        runs["single_core"].append(launch(1, args, sweep, threads=1))
    one, two, single_core = (merge(runs[k]) for k in ("one", "two", "single_core"))
    print(f"load average before/after: {load_before} / {os.getloadavg()}, "
          f"{args.repeats} launches x {args.rounds} rounds each")
    report(one, two, single_core, sweep, args.backends)
    if args.json:
        Path(args.json).write_text(json.dumps({"one": one, "two": two,
                                               "single_core": single_core}, indent=1))


if __name__ == "__main__":
    main()
