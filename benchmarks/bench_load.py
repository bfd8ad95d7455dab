"""Benchmark the five workloads' LLVM steps with and without a competing CPU-bound process.

For each workload: the step's median time over ``--rounds`` rounds on the machine as it is,
then the same with one competitor process (a Python busy loop, one core's worth of work)
running beside it, and the ratio. Issue 16's goal: within 2x of the quiet time when the
competitor leaves one core of headroom (2 cores here).

    python benchmarks/bench_load.py [--workloads W1 W2 W3 W4 W5] [--rounds 9]
                                    [--min-time 0.2] [--threads N]

``--threads`` sets ``GRAPHC_NUM_THREADS`` (the threads graphc lets BLAS use) before graphc is
imported; by default graphc takes every core the process may use.
"""
import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BUSY = "while True:\n    pass\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workloads", nargs="+", default=["W1", "W2", "W3", "W4", "W5"])
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--min-time", type=float, default=0.2)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        os.environ["GRAPHC_NUM_THREADS"] = str(args.threads)
    sys.path.insert(0, str(HERE))
    import baselines
    import bench_llvm
    from graphc.runtime.threads import thread_count
    print(f"graphc threads: {thread_count()}; competitor: one busy Python process")
    print("| workload | quiet, ms | with a competitor, ms | ratio |")
    print("|---|---|---|---|")
    for w in args.workloads:
        step = bench_llvm.GraphcStep(w, "llvm", baselines.make_data(w))
        cand = {"llvm": (step.reset, step.compiled_step)}
        quiet = bench_llvm.interleaved_times(cand, args.rounds, args.min_time)["llvm"]
        busy = subprocess.Popen([sys.executable, "-c", BUSY])
        try:
            time.sleep(0.2)
            loaded = bench_llvm.interleaved_times(cand, args.rounds, args.min_time)["llvm"]
        finally:
            busy.kill()
            busy.wait()
        q, b = statistics.median(quiet) * 1e3, statistics.median(loaded) * 1e3
        print(f"| {w} | {q:.3f} (min {min(quiet) * 1e3:.3f}) | {b:.3f} "
              f"(min {min(loaded) * 1e3:.3f}) | {b / q:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
