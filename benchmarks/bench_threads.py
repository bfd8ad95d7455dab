"""Benchmark graphc's LLVM steps at one thread and at all threads, and the size at which a
kernel gains from the thread pool (``codegen/llvm/parallel.py``'s ``MIN_WORK``).

``--workloads``: each of W1..W5 (workloads.md) compiled once, then run alternately with the
pool and BLAS at one thread and at ``thread_count()`` threads (the tuner off, so each run
keeps its count); the table gives the median and minimum per step and the speed-up.

``--sweep``: elementwise loops (``x * y + x``: work 2 per element; ``tanh``: 10) and one
convolution (3x3, 1 -> 8 channels, batch varied) compiled twice, split into chunks and not,
run at all threads; the kernel's own cycles per call (``GRAPHC_PROFILE``) say from which work
(``MIN_WORK``'s unit) splitting pays.

    python benchmarks/bench_threads.py [--workloads W1 ... | --sweep] [--rounds 9]
"""
import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ["GRAPHC_BLAS_TUNING"] = "0"  # each run keeps the thread count it was given
os.environ.setdefault("GRAPHC_NO_CACHE", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import baselines  # noqa: E402
import bench_llvm  # noqa: E402

import graphc as gc  # noqa: E402
from graphc.runtime import threads  # noqa: E402


def _time(fn, min_time):
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < min_time:
        fn()
        n += 1
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n


def alternate(runs, rounds, min_time):
    """{label: [seconds per call, one per round]}: (label, thread count, fn) run in turn."""
    out = {label: [] for label, _, _ in runs}
    for _ in range(rounds):
        for label, n, fn in runs:
            threads._use(n)
            fn()
            out[label].append(_time(fn, min_time))
    return out


def _row(cells):
    print("| " + " | ".join(cells) + " |")


def workloads(names, rounds, min_time):
    most = threads.thread_count()
    print(f"threads: 1 vs {most} (pool and BLAS; tuner off)\n")
    _row(["workload", "1 thread, ms (median / min)", f"{most} threads, ms (median / min)",
          "speed-up (medians)"])
    _row(["---"] * 4)
    for w in names:
        step = bench_llvm.GraphcStep(w, "llvm", baselines.make_data(w))
        got = alternate([("1", 1, step.direct_step), ("n", most, step.direct_step)],
                        rounds, min_time)
        one, all_ = (statistics.median(got[k]) * 1e3 for k in ("1", "n"))
        _row([w, f"{one:.3f} / {min(got['1']) * 1e3:.3f}",
              f"{all_:.3f} / {min(got['n']) * 1e3:.3f}", f"{one / all_:.2f}x"])


def _compiled(build, split):
    """The step ``build`` makes, compiled with its kernel split or whole, counting cycles per
    kernel (``GRAPHC_PROFILE``): (a call with its feeds, the native step)."""
    os.environ["GRAPHC_PARALLEL_MIN_WORK"] = "1" if split else str(1 << 62)
    os.environ["GRAPHC_PROFILE"] = "1"
    g = gc.Graph()
    with g.as_default():
        fetches, feeds = build()
        step = gc.compile(fetches, feeds=list(feeds), backend="llvm")
    del os.environ["GRAPHC_PARALLEL_MIN_WORK"], os.environ["GRAPHC_PROFILE"]
    return (lambda: step(feeds)), step.compiled.fn


def _kernel_cycles(run, fn, min_time):
    """Cycles per call of the step's costliest kernel (what the sweep splits; the fetched
    value's copy out of the step is not counted)."""
    n = max(_calibrate(run, min_time), 3)
    fn.cycles[:] = 0
    for _ in range(n):
        run()
    return fn.profile(1)[0][1] / n


def _calibrate(fn, min_time):
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < min_time:
        fn()
        n += 1
    return n


def _elementwise(n):
    def build():
        x = gc.placeholder(gc.float32, [n], name="x")
        y = gc.placeholder(gc.float32, [n], name="y")
        rng = np.random.default_rng(0)
        return [x * y + x], {x: rng.random(n, np.float32), y: rng.random(n, np.float32)}
    return build, 2 * n


def _tanh(n):
    def build():
        x = gc.placeholder(gc.float32, [n], name="x")
        return [gc.tanh(x)], {x: np.random.default_rng(0).random(n, np.float32)}
    return build, 10 * n


def _conv(batch):
    def build():
        x = gc.placeholder(gc.float32, [batch, 28, 28, 1], name="x")
        k = gc.constant(np.random.default_rng(1).random((3, 3, 1, 8), np.float32))
        return [gc.nn.conv2d(x, k, [1, 1, 1, 1], "VALID")], \
            {x: np.random.default_rng(0).random((batch, 28, 28, 1), np.float32)}
    return build, batch * 26 * 26 * 9 * 8


def sweep(rounds, min_time):
    most = threads.thread_count()
    print(f"the kernel split vs whole, {most} threads: kilocycles per call (GRAPHC_PROFILE; "
          "median of the rounds)\n")
    _row(["kernel", "work", "whole", "split", "whole / split"])
    _row(["---"] * 5)
    cases = [("x*y+x", n, _elementwise(n)) for n in (4096, 16384, 65536, 262144, 1 << 20)]
    cases += [("tanh(x)", n, _tanh(n)) for n in (4096, 16384, 65536, 262144)]
    cases += [("conv 3x3 1->8", b, _conv(b)) for b in (1, 2, 4, 8, 16, 64)]
    for name, size, (build, work) in cases:
        steps = {"whole": _compiled(build, False), "split": _compiled(build, True)}
        got = {k: [] for k in steps}
        threads._use(most)
        for _ in range(rounds):
            for label, (run, fn) in steps.items():
                got[label].append(_kernel_cycles(run, fn, min_time))
        whole, split = (statistics.median(got[k]) / 1e3 for k in ("whole", "split"))
        _row([f"{name} [{size}]", f"{work:,}", f"{whole:.1f}", f"{split:.1f}",
              f"{whole / split:.2f}"])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workloads", nargs="*", default=None)
    ap.add_argument("--sweep", action="store_true")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--min-time", type=float, default=0.1)
    args = ap.parse_args(argv)
    threads.apply_policy()
    if args.sweep:
        sweep(args.rounds, args.min_time)
    else:
        workloads(args.workloads or ["W1", "W2", "W3", "W4", "W5"], args.rounds, args.min_time)


if __name__ == "__main__":
    main()
