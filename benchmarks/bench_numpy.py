"""Benchmark graphc's optimized NumPy backend against its unoptimized reference and the
hand-written NumPy step (``baselines.py``) on W1 and W2 (see workloads.md).

Each contender runs one full training step per call (forward, backward, SGD update, the loss
returned as a float): ``gc.compile(...)`` optimized, ``gc.compile(..., optimize=False)``, and
the baseline's ``step(x, y)``. All start from the baseline's initial weights (the first losses
are checked to agree). Runs are interleaved round robin; each contender's figure is the median
over rounds of the mean step time within a round. Also printed: the planned arena peak against
the naive one-buffer-per-node figure, node counts before and after the passes, and compile
times.

    python benchmarks/bench_numpy.py [W1 W2] [--rounds 9] [--min-time 0.15] [--threads N]

On a noisy machine the best round of each contender is printed beside the median.
"""
import argparse
import os
import sys
import time
from pathlib import Path

if __name__ == "__main__" and "--threads" in sys.argv:  # BLAS reads it when it loads
    os.environ["OPENBLAS_NUM_THREADS"] = sys.argv[sys.argv.index("--threads") + 1]

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import baselines  # noqa: E402
from bench_llvm import build  # noqa: E402  (the workloads as graphc graphs, baseline weights)

import graphc as gc  # noqa: E402

TARGET_VS_BASELINE = 1.1  # optimized step time / hand-written step time, at most
TARGET_VS_REFERENCE = 1.3  # reference step time / optimized step time, at least
TARGET_PEAK = 0.6  # planned peak / naive, at most (W1)


class Contender:
    """A callable training step returning the loss as a float."""

    def __init__(self, name, step):
        self.name, self.step, self.times = name, step, []


def graphc_contender(name, workload, data, optimize):
    graph, x, y, loss, train, _ = build(workload)
    t0 = time.perf_counter()
    step = gc.compile([loss, train], feeds=[x, y], optimize=optimize, graph=graph)
    compile_s = time.perf_counter() - t0
    feed = {x: data[0], y: data[1]}
    c = Contender(name, lambda: float(step(feed)[0]))
    c.compiled, c.compile_s = step, compile_s
    return c


def baseline_contender(workload, data):
    model = baselines.WORKLOADS[workload](seed=0)
    return Contender("hand-written", lambda: model.step(*data))


def measure(contenders, rounds, min_time):
    """Interleaved rounds; sets each contender's ``times`` (seconds per step, per round)."""
    calls = {}
    for c in contenders:
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < min_time:
            c.step()
            n += 1
        calls[c.name] = max(n, 3)
    for _ in range(rounds):
        for c in contenders:
            n = calls[c.name]
            start = time.perf_counter()
            for _ in range(n):
                c.step()
            c.times.append((time.perf_counter() - start) / n)


def report(workload, contenders, out=sys.stdout):
    med = {c.name: float(np.median(c.times)) for c in contenders}
    best = {c.name: float(np.min(c.times)) for c in contenders}
    opt, ref, base = med["optimized"], med["optimize=False"], med["hand-written"]
    out.write(f"\n{workload}: median ms per step over {len(contenders[0].times)} interleaved "
              "rounds\n")
    for c in contenders:
        out.write(f"  {c.name:<16} median {med[c.name] * 1e3:8.3f} ms   best "
                  f"{best[c.name] * 1e3:8.3f} ms   worst {max(c.times) * 1e3:8.3f} ms\n")
    b1 = best["optimized"] / best["hand-written"]
    b2 = best["optimize=False"] / best["optimized"]
    out.write(f"  (best rounds: optimized / hand-written {b1:.2f}x, optimize=False / "
              f"optimized {b2:.2f}x)\n")
    r1, r2 = opt / base, ref / opt
    out.write(f"  optimized / hand-written   {r1:5.2f}x   (target <= {TARGET_VS_BASELINE}: "
              f"{'met' if r1 <= TARGET_VS_BASELINE else 'MISSED'})\n")
    out.write(f"  optimize=False / optimized {r2:5.2f}x   (target >= {TARGET_VS_REFERENCE}: "
              f"{'met' if r2 >= TARGET_VS_REFERENCE else 'MISSED'})\n")
    s = contenders[0].compiled.stats
    peak, naive = s["peak_bytes"], s["naive_bytes"]
    unopt = s.get("naive_bytes_unoptimized")
    out.write(f"  planned peak {peak / 1024:.1f} KiB (arena) + {s['scratch_bytes'] / 1024:.1f} "
              f"KiB scratch; naive {naive / 1024:.1f} KiB one buffer per node after fusion, "
              f"{unopt / 1024:.1f} KiB before the passes\n")
    ratio = peak / naive
    target = f"   (target <= {TARGET_PEAK}: {'met' if ratio <= TARGET_PEAK else 'MISSED'})" \
        if workload == "W1" else ""
    out.write(f"  peak / naive {ratio:.2f} (after fusion), {peak / unopt:.2f} (before)"
              f"{target}\n")
    out.write(f"  nodes {s['nodes_before']} -> {s['nodes_after']}, fused groups "
              f"{s['fused_groups']}, in-place ops {s['inplace_ops']}\n")
    out.write("  passes: " + "; ".join(
        f"{p['name']} {p['nodes_before']}->{p['nodes_after']}" for p in s["passes"]) + "\n")
    comp = s["compile_ms"]
    out.write(f"  compile {contenders[0].compile_s * 1e3:.1f} ms total (first signature: "
              + ", ".join(f"{k} {v:.1f} ms" for k, v in comp.items()) + ")\n")


def run(workload, rounds, min_time):
    data = baselines.make_data(workload, seed=0)
    data = (data[0].astype(np.float32), data[1].astype(np.int64))
    contenders = [graphc_contender("optimized", workload, data, True),
                  graphc_contender("optimize=False", workload, data, False),
                  baseline_contender(workload, data)]
    first = [c.step() for c in contenders]
    if not np.allclose(first, first[0], rtol=1e-4):
        raise SystemExit(f"{workload}: first losses disagree: {first}")
    measure(contenders, rounds, min_time)
    report(workload, contenders)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workloads", nargs="*", default=["W1", "W2"])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--min-time", type=float, default=0.15,
                        help="seconds per contender per round")
    parser.add_argument("--threads", default=None, help="OPENBLAS_NUM_THREADS for BLAS")
    args = parser.parse_args(argv)
    print(f"numpy {np.__version__}; graphc NumPy backend vs its reference vs hand-written")
    for w in args.workloads:
        run(w, args.rounds, args.min_time)


if __name__ == "__main__":
    main()
