"""Data-parallel step time at 1 and 2 MPI ranks on this machine, and the inputs of the cost
model in ``distributed.md`` (per-example compute time, allreduce time).

    python benchmarks/bench_distributed.py [--backends numpy llvm] [--rounds 9]

The driver launches itself under ``mpiexec -n 1`` and ``mpiexec -n 2`` (workers) and prints:

- W1 (MLP 784-256-256-10 ReLU, SGD) step time per rank batch, at 1 rank (every core for
  BLAS) and at 2 ranks (one BLAS thread each: ``gc.distributed`` pins them), with weak
  scaling (128 examples per rank: throughput(2) / (2 throughput(1))) and strong scaling
  (128 examples in all: 64 per rank at 2 ranks) efficiencies, and the same for W5 (W1 with
  global-norm clipping and Adam);
- the packing overhead (a DistributedOptimizer step vs the bare optimizer, one process),
  and the 2 ranks' step without any allreduce (what running two processes costs by itself);
- the time of one Allreduce of the packed W1 gradients (1.08 MB) between the two ranks;
- per-example compute time: the slope of step time over batch sizes 64..512 at 1 rank, on
  the whole machine (every core: one rank per machine) and on one core (1 BLAS thread: each
  rank's share at 2 ranks on 2 cores).

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

    def measure(self, fn):
        """(median, minimum) seconds per call of ``fn`` over rounds (the slowest rank's)."""
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
        return float(np.median(times)), float(np.min(times))


def step_time(timer, workload, backend, batch, distributed=True):
    import graphc as gc
    graph, x, y, fetches = build(workload, distributed)
    step = gc.compile(fetches, feeds=[x, y], backend=backend)
    gc.distributed.broadcast_variables(step)
    rng = np.random.default_rng(1 + gc.distributed.rank())
    xb = rng.random((batch, SIZES[0])).astype(np.float32)
    yb = rng.integers(0, 10, batch).astype(np.int64)
    return timer.measure(lambda: step({x: xb, y: yb}))


def allreduce_time(timer):
    from graphc.runtime import collectives
    n = sum(a * b + b for a, b in zip(SIZES[:-1], SIZES[1:]))
    buf = np.ones(n, np.float32)
    return timer.measure(lambda: collectives.allreduce_mean_(buf))[0], n


def worker(args):
    import graphc as gc
    from graphc.runtime import collectives
    timer = Timer(args.rounds, args.min_time)
    out = {"size": gc.distributed.size(), "blas_threads": collectives.blas_threads(),
           "steps": {}, "best": {}}
    for backend in args.backends:
        for workload in ("W1", "W5"):
            for batch in args.batches:
                key = f"{workload}/{backend}/{batch}"
                out["steps"][key], out["best"][key] = step_time(timer, workload, backend,
                                                                batch)
                if args.bare and batch == 128:
                    out["steps"][key + "/bare"], out["best"][key + "/bare"] = step_time(
                        timer, workload, backend, batch, distributed=False)
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
    out["best"] = {k: float(np.min([r["best"][k] for r in results]))
                   for k in results[0]["best"]}
    if "allreduce_s" in out:
        out["allreduce_s"] = float(np.median([r["allreduce_s"] for r in results]))
    return out


def slope(times, batches):
    """(seconds per example, fixed seconds) of a least-squares line through the times."""
    a, b = np.polyfit(np.asarray(batches, float), np.asarray(times, float), 1)
    return float(a), float(b)


def report(one, one_thread, two, backends, kind="steps"):
    """The scaling table from the medians (``kind="steps"``) or the minima ("best")."""
    print(f"\n{'medians' if kind == 'steps' else 'minima'} of the step time (ms); weak "
          "scaling: 128 examples per rank, efficiency t(1 rank) / t(2 ranks); strong "
          "scaling: 128 examples in all, t(1) / (2 t(2))")
    print("\n| workload | backend | 1 rank, all cores | 1 rank, 1 thread | 2 ranks x 128 "
          "| 2 ranks x 128, no allreduce | weak eff. vs all cores / vs 1 thread "
          "| 2 ranks x 64 | strong eff. vs all cores | packing overhead |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for w in ("W1", "W5"):
        for b in backends:
            t1, t1c = one[kind][f"{w}/{b}/128"], one_thread[kind][f"{w}/{b}/128"]
            t2, t2s = two[kind][f"{w}/{b}/128"], two[kind][f"{w}/{b}/64"]
            bare = one[kind][f"{w}/{b}/128/bare"]
            alone = two[kind][f"{w}/{b}/128/bare"]
            print(f"| {w} | {b} | {t1 * 1e3:.3f} | {t1c * 1e3:.3f} | {t2 * 1e3:.3f} | "
                  f"{alone * 1e3:.3f} | {t1 / t2:.2f} / {t1c / t2:.2f} | {t2s * 1e3:.3f} | {t1 / t2s / 2:.2f} | "
                  f"{(t1 / bare - 1) * 100:+.1f}% |")


def per_example(result, sweep, backends, label):
    print(f"\nper-example compute on {label}: slope of the step time over batches {sweep}")
    for w in ("W1", "W5"):
        for b in backends:
            times = [result["steps"][f"{w}/{b}/{k}"] for k in sweep]
            per, fixed = slope(times, sweep)
            print(f"  {w} {b}: {per * 1e6:.2f} us/example + {fixed * 1e3:.3f} ms fixed; "
                  + ", ".join(f"{k}: {t * 1e3:.3f} ms" for k, t in zip(sweep, times)))


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
    runs = {"one": [], "two": [], "one_thread": []}
    for _ in range(args.repeats):  # interleaved, so that load from elsewhere hits all alike
        runs["one"].append(launch(1, args, sweep, bare=True))
        runs["two"].append(launch(2, args, [64, 128], bare=True))
        runs["one_thread"].append(launch(1, args, sweep, threads=1))
    merged = {k: merge(v) for k, v in runs.items()}
    print(f"load average before/after: {load_before} / {os.getloadavg()}, "
          f"{args.repeats} launches x {args.rounds} rounds each")
    one, two = merged["one"], merged["two"]
    print(f"BLAS threads: 1 rank {one['blas_threads']}, 1 rank with OPENBLAS_NUM_THREADS=1 "
          f"{merged['one_thread']['blas_threads']}, 2 ranks {two['blas_threads']}")
    print(f"allreduce of {two['params']} float32 ({two['params'] * 4 / 1e6:.2f} MB) "
          f"between 2 ranks: {two['allreduce_s'] * 1e3:.3f} ms")
    for kind in ("steps", "best"):
        report(one, merged["one_thread"], two, args.backends, kind)
    for label, key in (("the whole machine (all cores)", "one"),
                       ("one core (1 BLAS thread)", "one_thread")):
        per_example(merged[key], sweep, args.backends, label)
    if args.json:
        Path(args.json).write_text(json.dumps(merged, indent=1))


if __name__ == "__main__":
    main()
