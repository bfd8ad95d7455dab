"""Benchmark graph building (issue 16): the time to declare a model and its SGD step, from the
first placeholder to the last update node, in fresh processes.

    rnn588   bench_compile.rnn(588): 10,613 nodes
    mlp555   bench_compile.mlp(555): 12,226 nodes
    mlp64    cold_mlp.py's model (MLP 784-[256]*64-10, batch 128, SGD): 1,438 nodes; its
             parameters are drawn before the clock starts

Imports (graphc.train, graphc.nn) are done before timing. Each run is one fresh process; the
table gives the median and minimum. ``--against PYTHON`` alternates runs with another
interpreter (another checkout's venv: an A/B on a shared machine), which imports its own graphc
and this folder's generators.

    python benchmarks/bench_build.py [--runs 7] [--models rnn588 mlp555 mlp64]
                                     [--against OTHER_VENV/bin/python]
"""
import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODELS = ("rnn588", "mlp555", "mlp64")


def child(name):
    """Build ``name`` once in this process; prints {"ms": ..., "nodes": ...}."""
    sys.path.insert(0, str(HERE))
    import bench_compile
    import bench_scaling
    import graphc as gc
    gc.train.GradientDescentOptimizer, gc.nn.relu  # (lazy imports: not timed)
    model = bench_scaling.Mlp((784,) + (256,) * 64 + (10,), 128) if name == "mlp64" else None
    graph = gc.Graph()
    with graph.as_default():
        t0 = time.perf_counter()
        if name == "mlp64":
            x = gc.placeholder(gc.float32, model.x_shape, name="x")
            y = gc.placeholder(gc.int64, [model.batch], name="y")
            logits = model.graphc_logits(x)
            loss = gc.reduce_mean(gc.nn.sparse_softmax_cross_entropy_with_logits(
                labels=y, logits=logits))
            gc.train.GradientDescentOptimizer(0.01).minimize(loss)
        else:
            getattr(bench_compile, name[:3])(int(name[3:]))
        ms = (time.perf_counter() - t0) * 1e3
    print(json.dumps({"ms": ms, "nodes": len(graph.nodes)}))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    ap.add_argument("--against", help="another python to alternate runs with")
    args = ap.parse_args(argv)
    pythons = {"this": sys.executable}
    if args.against:
        pythons["against"] = args.against
    times = {(m, p): [] for m in args.models for p in pythons}
    nodes = {}
    for _ in range(args.runs):
        for m in args.models:
            for label, python in pythons.items():
                out = subprocess.run([python, __file__, "--child", m], capture_output=True,
                                     text=True, check=True)
                row = json.loads(out.stdout.strip().splitlines()[-1])
                times[m, label].append(row["ms"])
                nodes[m, label] = row["nodes"]
    print(f"graph building, {args.runs} fresh processes each" +
          (", alternating" if args.against else "") + ": median / min, ms")
    for (m, label), values in times.items():
        print(f"{m:<8} {label:<8} {nodes[m, label]:>6} nodes {statistics.median(values):>8.1f}"
              f" {min(values):>8.1f}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(sys.argv[2])
    else:
        main()
