"""Benchmark ahead-of-time steps: how long ``gc.load`` takes against compiling the step again.

Two models, both backends:
    digits  examples/model_mlp.py's step: MLP 64-64-10, Adam, batch 32 (~58 KB of variables)
    w5      workload W5: MLP 784-256-256-10, clip by global norm, Adam, batch 128 (~3.2 MB)

For each: compiling from scratch (``gc.compile``; the LLVM object cache off), ``save``, the
artifact's size, loading in this process (median over ``--rounds`` loads; ``read`` is the
part spent opening the zip and checking checksums), the first and a steady call of the loaded
step, and loading in fresh processes (median over ``--cold`` processes: importing
``graphc.runtime``, then ``gc.load``, each timed apart, and whether LLVM was imported; for
LLVM artifacts also ``gc.load`` with ``GRAPHC_SHARED_STEPS=0``, the object code loaded into
MCJIT instead of the step's shared library) where the compiler's packages
(``graphc.ir``, ``graphc.codegen``) are made unimportable, as in a runtime-only deployment.

    python benchmarks/bench_aot.py [--rounds 20] [--cold 5] [--models digits w5]
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ["GRAPHC_NO_CACHE"] = "1"  # time real LLVM compilations, not object-cache hits

import numpy as np  # noqa: E402

import graphc as gc  # noqa: E402
from graphc.runtime.artifact import read  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))


def build_digits():
    import model_mlp
    fetches, feeds = model_mlp.build()
    rs = np.random.RandomState(0)
    return fetches, feeds, {"x": rs.rand(32, 64).astype(np.float32),
                            "y": rs.randint(0, 10, 32)}


def build_w5():
    x = gc.placeholder(gc.float32, [128, 784], name="x")
    y = gc.placeholder(gc.int64, [128], name="y")
    h, sizes = x, [784, 256, 256, 10]
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        W = gc.Variable(gc.initializers.glorot_uniform(seed=i)([a, b]), name=f"W{i}")
        h = gc.matmul(h, W) + gc.Variable(gc.zeros([b]), name=f"b{i}")
        h = gc.nn.relu(h) if i < 2 else h
    loss = gc.reduce_mean(gc.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=h))
    opt = gc.train.AdamOptimizer(1e-3)
    grads, params = zip(*opt.compute_gradients(loss))
    clipped, _ = gc.clip_by_global_norm(list(grads), 1.0)
    train = opt.apply_gradients(list(zip(clipped, params)))
    rs = np.random.RandomState(0)
    return [loss, train], [x, y], {"x": rs.rand(128, 784).astype(np.float32),
                                   "y": rs.randint(0, 10, 128)}


MODELS = {"digits": build_digits, "w5": build_w5}

COLD = """
import sys, time
class NotInstalled:  # a deployment with the runtime only
    def find_spec(self, name, path=None, target=None):
        if name.startswith(("graphc.ir", "graphc.codegen")):
            raise ImportError(name)
sys.meta_path.insert(0, NotInstalled())
t0 = time.perf_counter()
import graphc.runtime
t1 = time.perf_counter()
step = graphc.runtime.load(sys.argv[1])
t2 = time.perf_counter()
assert not [m for m in sys.modules if m.startswith(("graphc.ir", "graphc.codegen"))]
print((t1 - t0) * 1e3, (t2 - t1) * 1e3, int("llvmlite.binding" in sys.modules))
"""


def median_ms(fn, rounds):
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def cold_load(path, processes, env=None):
    """(median import ms, median load ms, how many processes imported LLVM) over fresh
    processes."""
    rows = [[float(v) for v in subprocess.run([sys.executable, "-c", COLD, path],
                                              capture_output=True, text=True, check=True,
                                              env=env).stdout.split()]
            for _ in range(processes)]
    imports, loads, llvm = zip(*rows)
    return statistics.median(imports), statistics.median(loads), int(sum(llvm))


def measure(model, backend, folder, rounds, cold):
    graph = gc.Graph()
    with graph.as_default():
        fetches, feeds, batch = MODELS[model]()
        t0 = time.perf_counter()
        step = gc.compile(fetches, feeds=feeds, backend=backend)
        compile_ms = (time.perf_counter() - t0) * 1e3
    path = os.path.join(folder, f"{model}-{backend}.gcx")
    t0 = time.perf_counter()
    size = step.save(path)
    save_ms = (time.perf_counter() - t0) * 1e3
    load_ms = median_ms(lambda: gc.load(path), rounds)
    read_ms = median_ms(lambda: read(path), rounds)
    loaded = gc.load(path)
    first_ms = median_ms(lambda: loaded(batch), 1)
    call_ms = median_ms(lambda: loaded(batch), rounds)
    import_ms, cold_ms, llvm = cold_load(path, cold)
    _, mcjit_ms, _ = cold_load(path, cold, dict(os.environ, GRAPHC_SHARED_STEPS="0")) \
        if backend == "llvm" else (0, 0.0, 0)
    return {"model": model, "backend": backend, "compile": compile_ms, "save": save_ms,
            "KB": size / 1024, "load": load_ms, "read": read_ms, "first": first_ms,
            "call": call_ms, "import": import_ms, "llvm": f"{llvm}/{cold}", "cold": cold_ms,
            "mcjit": mcjit_ms, "ratio": compile_ms / load_ms}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--cold", type=int, default=5, help="fresh processes per artifact")
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=list(MODELS))
    args = parser.parse_args(argv)
    cols = ["model", "backend", "compile", "save", "KB", "load", "read", "first", "call",
            "import", "cold", "llvm", "mcjit", "ratio"]
    print("times in ms (medians); KB: artifact size; load/read: gc.load / opening+checksums "
          "in a warm process;\nfirst/call: the loaded step's first and steady calls; "
          "import/cold: a fresh runtime-only process importing graphc.runtime, then gc.load;\n"
          "llvm: how many of those processes imported LLVM (llvmlite.binding); mcjit: gc.load "
          "in one with GRAPHC_SHARED_STEPS=0\n(object code into MCJIT, not the step's shared "
          "library); ratio: compile / load")
    print("  ".join(f"{c:>8}" for c in cols))
    with tempfile.TemporaryDirectory() as folder:
        for model in args.models:
            for backend in ("numpy", "llvm"):
                row = measure(model, backend, folder, args.rounds, args.cold)
                print("  ".join(f"{row[c]:>8}" if isinstance(row[c], str) else
                                f"{row[c]:>8.2f}" for c in cols), flush=True)


if __name__ == "__main__":
    main()
