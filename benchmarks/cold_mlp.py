"""Cold compile of one deep MLP by stage, each run in a fresh process (issue 16).

The model is ``bench_scaling``'s depth row: MLP 784-[256]*depth-10, ReLU, batch 128, mean
sparse softmax cross-entropy, SGD. One run (``python cold_mlp.py --child DEPTH``) builds it,
times ``gc.compile([loss, train], feeds=[x, y], backend="llvm")`` with the object cache off
(``GRAPHC_NO_CACHE=1``) and one thread, then the first step, and prints its stages as JSON:

    import (the LLVM backend's modules, which ``gc.compile`` imports on first use: much
    faster where Python may cache their bytecode), specialize, each pass of the pipeline
    (``run_pipeline``'s records; ``stages`` is the snapshots of the IR kept between them),
    lower (Program -> LLVM IR text), llvm_parse, llvm_optimize, llvm_emit (LLVM's own, in
    this process), llvm_wait (for the parts the compile worker compiles meanwhile:
    ``runtime.module_parts``), load (object code -> callable step), other
    (the rest of gc.compile), first call.

``main`` runs it ``runs`` times and prints each stage's median and minimum (ms), with the
node and kernel counts. ``python benchmarks/bench_compile.py --cold-mlp [--runs 7] [--parts 1 6]
[--worker always] [--variants new old]`` (``--parts 1 6`` alternates the module compiled whole
and in parts; the worker takes parts only when a core is free, or always; ``old`` compiles
every part at O2, the GEMMs' own pipeline ignored, and the thread pool without the runtime's
object cache: how this tree compiled before them).
"""
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
GOAL_MS = 300  # issue 16: compile to first result


def child(depth, parts=6, worker="auto", variant="new"):
    """One cold run in this (fresh) process; prints {stage: ms, ...} as one JSON line."""
    sys.path.insert(0, str(HERE))
    import thread_env
    # (the step's threads, not the compile's: pinned to one CPU, the process would leave the
    # compile worker no core, and compile_worker.free_core would never start it)
    thread_env.set_threads(1, pin_cpus=False)
    os.environ["GRAPHC_NUM_THREADS"] = "1"
    os.environ["GRAPHC_NO_CACHE"] = "1"
    if variant == "old":
        os.environ["GRAPHC_NO_RUNTIME_CACHE"] = "1"
        os.environ["GRAPHC_NAMED_PIPELINES"] = "0"
    import bench_scaling
    import graphc as gc

    model = bench_scaling.Mlp((784,) + (256,) * depth + (10,), 128)
    graph = gc.Graph()
    with graph.as_default():
        x = gc.placeholder(gc.float32, model.x_shape, name="x")
        y = gc.placeholder(gc.int64, [model.batch], name="y")
        logits = model.graphc_logits(x)
        loss = gc.reduce_mean(gc.nn.sparse_softmax_cross_entropy_with_logits(labels=y,
                                                                             logits=logits))
        train = gc.train.GradientDescentOptimizer(0.01).minimize(loss)
        ti = time.perf_counter()
        from graphc.codegen import BACKENDS
        BACKENDS["llvm"]  # (imported on first use: LLVM lowering, kernels, llvmlite)
        from graphc.codegen.llvm import backend
        backend.PARTS = parts
        if worker == "always":  # (measuring what a free core gives, on a busy machine)
            from graphc.runtime import compile_worker
            compile_worker.free_core = lambda cores: True
        t0 = time.perf_counter()
        step = gc.compile([loss, train], feeds=[x, y], backend="llvm")
        t1 = time.perf_counter()
        first = float(step({x: model.data[0], y: model.data[1]})[0])
        t2 = time.perf_counter()
    compiled = step.compiled
    stats, code = step.stats, compiled.fn.artifacts
    row = {"import": (t0 - ti) * 1e3, "specialize": stats["compile_ms"]["specialize"]}
    passes = {r["name"]: r["ms"] for r in stats["passes"]}
    row.update(passes)
    row["stages"] = stats["compile_ms"]["passes"] - sum(passes.values())
    llvm = {k: v * 1e3 for k, v in code.timings.items()}
    row["lower"] = llvm["lower"]
    for k in ("llvm_parse", "llvm_optimize", "llvm_emit", "llvm_wait"):
        row[k] = llvm.get(k, 0.0)
    row["load"] = llvm["load"]
    row["other"] = (t1 - ti) * 1e3 - sum(row.values())
    row["compile"] = (t1 - ti) * 1e3
    row["first call"] = (t2 - t1) * 1e3
    row["total"] = (t2 - ti) * 1e3
    counts = {"nodes_before": stats["nodes_before"], "nodes_after": stats["nodes_after"],
              "kernel_calls": code.stats["kernel_calls"],
              "kernel_functions": code.stats["kernel_functions"],
              "ir_chars": len(code.llvm_ir), "loss": first,
              "worker_ms": llvm.get("llvm_elsewhere", 0.0)}
    print(json.dumps({"ms": row, "counts": counts}))


def main(runs=7, depth=64, parts=(6,), worker="auto", variants=("new",)):
    """``runs`` fresh processes per entry of ``parts`` (the LLVM module compiled whole: 1, or
    in up to 6 parts, some in the compile worker: 6, the default) and of ``variants`` ("new",
    "old": see the module docstring), alternating between them. ``worker="always"`` lets the
    worker take parts even when the machine is busy."""
    columns = [(p, v) for p in parts for v in variants]
    rows = {c: [] for c in columns}
    results, counts = [], None
    for k in range(runs):
        for c in columns:
            p, variant = c
            out = subprocess.run([sys.executable, __file__, "--child", str(depth), str(p), worker,
                                  variant], capture_output=True, text=True, check=True)
            result = json.loads(out.stdout.strip().splitlines()[-1])
            rows[c].append(result["ms"])
            results.append((c, result))
            counts = result["counts"]
            print(f"run {k + 1}/{runs}, {_label(c)}: {result['ms']['total']:.0f} ms",
                  file=sys.stderr, flush=True)
    print(f"cold compile of MLP 784-[256]*{depth}-10 (batch 128, LLVM, 1 thread, object cache "
          f"off), {runs} fresh processes" + (" per column, alternating" if len(columns) > 1
                                             else ""))
    print(f"nodes {counts['nodes_before']} -> {counts['nodes_after']}, kernel calls "
          f"{counts['kernel_calls']}, kernel functions {counts['kernel_functions']}, LLVM IR "
          f"{counts['ir_chars'] // 1000} k chars")
    print(f"{'stage':<16}" + "".join(f"{_label(c) + ': median':>22}{'min':>8}" for c in columns))
    for stage in rows[columns[0]][0]:
        if stage in ("compile", "total"):
            print("-" * (16 + 30 * len(columns)))
        cells = ""
        for c in columns:
            values = [r[stage] for r in rows[c]]
            cells += f"{statistics.median(values):>22.1f}{min(values):>8.1f}"
        print(f"{stage:<16}{cells}")
    for c in columns:
        worker = [r["counts"]["worker_ms"] for q, r in results if q == c]
        med = statistics.median(r["total"] for r in rows[c])
        used = sum(1 for w in worker if w > 0)
        print(f"{_label(c)}: the worker compiled a part in {used} of {len(worker)} runs "
              f"(parse, optimize and emit beside llvm_*: median {statistics.median(worker):.1f}"
              f" ms, min {min(worker):.1f}); goal {GOAL_MS} ms: median / goal = "
              f"{med / GOAL_MS:.2f}")


def _label(column):
    parts, variant = column
    return f"parts {parts}" + (f" {variant}" if variant != "new" else "")


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "--child":
        child(int(sys.argv[2]), *((int(sys.argv[3]), *sys.argv[4:6]) if len(sys.argv) > 4
                                  else ()))
    else:
        main(*(int(a) for a in sys.argv[1:3]))
