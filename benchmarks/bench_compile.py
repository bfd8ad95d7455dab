"""Benchmark compile time against graph size: milliseconds per pass at about 1k, 10k and 100k
nodes, for three families of generated graphs.

    mlp     a dense tanh MLP of depth D, width 8, batch 4, SGD (gradients through every layer)
    rnn     a vanilla RNN unrolled T steps (the weights' gradients sum T + 1 terms), SGD
    wide    a sum of N elementwise terms of one input (one long add chain, fused into one body)

Each graph is built, specialized and optimized (the default pass pipeline), then generated
by the backend; the table gives the input node count, ms per pass and ms per 1,000 input
nodes, so that growth shows as a rising per-node figure whatever the machine's load. Times
are of one compile (the object cache off); compare the per-node column across sizes, not
absolute times on a busy machine.

    python benchmarks/bench_compile.py [--kinds mlp rnn wide] [--sizes 1000 10000 100000]
                                       [--backend numpy] [--no-codegen]

``--cold-mlp [--runs 7] [--depth 64] [--parts 1 6] [--worker always] [--variants new old]``
times instead what issue 16 asks of one model: the scaling benchmark's depth row (MLP
784-[256]*64-10, ReLU, batch 128, softmax cross-entropy, SGD: ``bench_scaling.Mlp``), compiled
by ``gc.compile(..., backend="llvm")`` with the object cache off and one thread, from
``gc.compile`` to the first step's result. Each run is a fresh process (nothing of LLVM or
Python's imports of the backend warmed up; the thread pool's object comes from the runtime's
own cache, ``objcache.runtime_cache``, but with ``--variants old``); the table gives each
stage's median and minimum over the runs (``cold_mlp.py``). ``--parts 1 6`` alternates the
LLVM module compiled whole and in parts (the default; the compile worker takes some when a
core is free, or with ``--worker always`` whatever the load); ``--variants new old`` this tree
and the same with every part at O2 and the pool compiled in each process.
"""
import argparse
import gc as collector
import os
import sys
import time

os.environ["GRAPHC_NO_CACHE"] = "1"  # time real compilations, not object-cache hits

import numpy as np  # noqa: E402

import graphc as gc  # noqa: E402
from graphc.ir.passes import run_pipeline  # noqa: E402
from graphc.ir.program import build_program  # noqa: E402


def mlp(depth, width=8, batch=4):
    """(fetches, feed shapes) of an MLP of ``depth`` tanh layers trained by SGD."""
    x = gc.placeholder(gc.float32, [batch, width], name="x")
    y = gc.placeholder(gc.float32, [batch, width], name="y")
    h = x
    for i in range(depth):
        w = gc.Variable(np.full((width, width), 0.01, np.float32), name=f"W{i}")
        b = gc.Variable(np.zeros(width, np.float32), name=f"b{i}")
        h = gc.tanh(gc.matmul(h, w) + b)
    loss = gc.reduce_mean(gc.square(h - y))
    train = gc.train.GradientDescentOptimizer(0.01).minimize(loss)
    return [loss, train], {x: (batch, width), y: (batch, width)}


def rnn(steps, hidden=8, batch=4):
    """(fetches, feed shapes) of a vanilla RNN unrolled ``steps`` times, trained by SGD."""
    xs = gc.placeholder(gc.float32, [steps, batch, hidden], name="xs")
    wx = gc.Variable(np.full((hidden, hidden), 0.01, np.float32), name="Wx")
    wh = gc.Variable(np.full((hidden, hidden), 0.01, np.float32), name="Wh")
    b = gc.Variable(np.zeros(hidden, np.float32), name="b")
    h = gc.zeros([batch, hidden])
    for t in range(steps):
        h = gc.tanh(gc.matmul(xs[t], wx) + gc.matmul(h, wh) + b)
    loss = gc.reduce_mean(gc.square(h))
    train = gc.train.GradientDescentOptimizer(0.01).minimize(loss)
    return [loss, train], {xs: (steps, batch, hidden)}


def wide(terms, size=4):
    """(fetches, feed shapes) of ``x + x*c1 + x*c2 + ...`` with ``terms`` terms."""
    x = gc.placeholder(gc.float32, [size], name="x")
    s = x
    for i in range(terms):
        s = s + x * float(i % 7 + 1)
    return [s], {x: (size,)}


# Roughly how many input nodes one unit of each family's size parameter makes (measured on
# the default pipeline's input program); the sizes asked are divided by it.
NODES_PER_UNIT = {"mlp": 18, "rnn": 17, "wide": 3}
KINDS = {"mlp": mlp, "rnn": rnn, "wide": wide}


def compile_once(kind, nodes, backend, codegen=True):
    """Build the graph of about ``nodes`` nodes and compile it; returns a result row."""
    unit = max(1, nodes // NODES_PER_UNIT[kind])
    graph = gc.Graph()
    with graph.as_default():
        fetches, shapes = KINDS[kind](unit)
        collector.disable()
        try:
            t0 = time.perf_counter()
            program = build_program(fetches, shapes)
            specialize = (time.perf_counter() - t0) * 1e3
            records = run_pipeline(program)
            gen = None
            if codegen:
                from graphc.codegen import BACKENDS
                t1 = time.perf_counter()
                BACKENDS[backend].compile(program, (), None)
                gen = (time.perf_counter() - t1) * 1e3
        finally:
            collector.enable()
    return {"kind": kind, "unit": unit, "nodes": records[0]["nodes_before"],
            "specialize": specialize, "passes": {r["name"]: r["ms"] for r in records},
            "codegen": gen}


def report(rows):
    """Print one table per family: ms and ms per 1,000 input nodes per stage."""
    for kind in dict.fromkeys(r["kind"] for r in rows):
        group = [r for r in rows if r["kind"] == kind]
        stages = ["specialize"] + list(group[0]["passes"]) + (
            ["codegen"] if group[0]["codegen"] is not None else [])
        print(f"\n{kind}: " + ", ".join(f"{r['nodes']} nodes ({kind} {r['unit']})"
                                        for r in group))
        print(f"{'stage':<12}" + "".join(f"{'ms':>11}{'ms/1k':>8}" for _ in group))
        for stage in stages:
            cells = ""
            for r in group:
                ms = r[stage] if stage in ("specialize", "codegen") else r["passes"][stage]
                cells += f"{ms:>11.1f}{ms / r['nodes'] * 1e3:>8.2f}"
            print(f"{stage:<12}{cells}")
        total = ""
        for r in group:
            ms = r["specialize"] + sum(r["passes"].values()) + (r["codegen"] or 0)
            total += f"{ms:>11.1f}{ms / r['nodes'] * 1e3:>8.2f}"
        print(f"{'total':<12}{total}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kinds", nargs="+", default=list(KINDS), choices=list(KINDS))
    ap.add_argument("--sizes", nargs="+", type=int, default=[1000, 10000, 100000])
    ap.add_argument("--backend", default="numpy", choices=["numpy", "llvm"])
    ap.add_argument("--no-codegen", action="store_true", help="time the passes only")
    ap.add_argument("--cold-mlp", action="store_true",
                    help="cold compile of the 64-layer MLP by stage, in fresh processes")
    ap.add_argument("--runs", type=int, default=7, help="fresh processes (--cold-mlp)")
    ap.add_argument("--depth", type=int, default=64, help="hidden layers (--cold-mlp)")
    ap.add_argument("--parts", nargs="+", type=int, default=[6],
                    help="LLVM module parts, alternated (--cold-mlp): 1 whole, 6 the default")
    ap.add_argument("--worker", default="auto", choices=["auto", "always"],
                    help="the compile worker takes parts when a core is free, or always")
    ap.add_argument("--variants", nargs="+", default=["new"], choices=["new", "old"],
                    help="alternated (--cold-mlp): old = every part at O2 and the thread "
                         "pool compiled in each process, as before named pipelines")
    args = ap.parse_args(argv)
    if args.cold_mlp:
        import cold_mlp
        cold_mlp.main(args.runs, args.depth, tuple(args.parts), args.worker,
                      tuple(args.variants))
        return
    for kind in args.kinds:
        rows = []
        for size in args.sizes:
            rows.append(compile_once(kind, size, args.backend, not args.no_codegen))
            print(f"{kind} {size}: done", file=sys.stderr, flush=True)
        report(rows)  # each family's table as soon as it is measured
        sys.stdout.flush()


if __name__ == "__main__":
    main()
