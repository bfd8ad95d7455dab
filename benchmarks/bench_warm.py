"""Benchmark warm compile-cache hits: ``gc.compile`` in a fresh process whose step is cached.

For each workload (W1..W5, see workloads.md; rnn1k... graphs of about 1,000 and 10,000
nodes from ``bench_compile``'s generators) and backend, one process compiles the step with
``GRAPHC_STEP_CACHE=1`` into an empty cache directory (the cold compile that writes the
entry); then several fresh processes each build the same graph, time ``gc.compile`` once (a
hit) and the step's first call. Modules are imported before the clock starts (imports are not
compilation); what a process does once on its first compile (LLVM's target set-up, reading
the host CPU) is part of the hit, as it is for a user. Each hit's first loss must equal the
cold compile's, bit for bit.

Columns, in ms (median and min over the runs):

    build off, on  building the graph in a process with the cache off, and in the hit's
                process (the cache on: the graph keeps a running hash of its nodes,
                ``graphc/client/node_digest.py``); the two kinds of process alternate
    hit         ``gc.compile`` and the first call: issue 16's warm hit
    gc.compile  the whole call (``CompiledStep``: finding the variables, their initial
                values, the step's compile)
    around      ``gc.compile`` less ``step``: what ``CompiledStep`` does besides compiling
    step        ``compile_program`` for the step (the hit itself)
    <phases>    the hit's own timings (``compiled.timings``: see graphc/client/step_cache.py)
    call        the step's first call
    again, key  a second ``gc.compile`` of the same graph in the same process and its first
                call (a hit too), and that hit's key

With ``--session``, each process runs TF1's way instead (``gc.Session``, its variables'
initializer, the step's first ``Session.run``) and the line gives both runs' times.

    python benchmarks/bench_warm.py [W1 ...] [--backends llvm numpy default] [--runs 7] [--session]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Graphs of bench_compile's generators, by kind and thousands of nodes (about: the unrolled
# RNN and the deep MLP with their gradients and SGD updates).
GENERATED = ["rnn1k", "mlp1k", "rnn10k", "mlp10k"]

CHILD = """
import json, os, sys, time
sys.path.insert(0, {here!r})
import numpy as np
import bench_llvm, baselines
import bench_compile  # (its import turns the object cache off for its own timings)
os.environ.pop("GRAPHC_NO_CACHE", None)
import graphc as gc
import graphc.client.compile as api
import graphc.client.step_cache, graphc.runtime.pystep, graphc.runtime.llvm_step
BACKEND = None if {backend!r} == "default" else {backend!r}  # (default: the script names none)
if {backend!r} == "llvm":
    import graphc.codegen.llvm.backend  # (a miss needs it; imported for both, not timed)
workload = {workload!r}
started = time.perf_counter()
if workload in baselines.WORKLOADS:
    graph, x, y, loss, train, init = bench_llvm.build(workload)
    fetches, feeds = [loss, train], [x, y]
    data = dict(zip(["x", "y"], baselines.make_data(workload)))
else:  # a generated graph of bench_compile: rnn1k, mlp10k...
    kind, size = workload[:3], int(workload[3:-1]) * 1000
    graph = gc.Graph()
    with graph.as_default():
        fetches, shapes = bench_compile.KINDS[kind](size // bench_compile.NODES_PER_UNIT[kind])
    feeds = list(shapes)
    rng = np.random.default_rng(0)
    data = {{p.node_name: rng.standard_normal(s).astype(np.float32)
            for p, s in shapes.items()}}
build = time.perf_counter() - started
if {build_only!r}:
    print(json.dumps(dict(build=build)))
    sys.exit(0)
if {session!r}:  # TF1's way: a Session, its initializer, then the step
    with graph.as_default():
        init_op = gc.global_variables_initializer()
    feed = {{p: data[p.node_name] for p in feeds}}
    t = time.perf_counter()
    sess = gc.Session(graph=graph, backend=BACKEND)
    sess.run(init_op)
    t1 = time.perf_counter()
    value = float(sess.run(fetches, feed_dict=feed)[0])
    t2 = time.perf_counter()
    hits = [bool(getattr(c, "cache_hit", False)) for c in sess._cache.values()]
    print(json.dumps(dict(init=t1 - t, run=t2 - t1, loss=value.hex(), hit=all(hits),
                          nodes=len(graph.nodes))))
    sys.exit(0)
spent = []
def timed(*args, **kwargs):
    t = time.perf_counter()
    out = compile_program(*args, **kwargs)
    spent.append((time.perf_counter() - t, out))
    return out
compile_program, api.compile_program = api.compile_program, timed
t = time.perf_counter()
step = gc.compile(fetches, feeds=feeds, backend=BACKEND)
total = time.perf_counter() - t
seconds, compiled = [s for s in spent if s[1] is step.compiled][0]
init = sum(s for s, c in spent if c is not compiled)
t = time.perf_counter()
value = float(step(**data)[0])
call = time.perf_counter() - t
t = time.perf_counter()  # a new CompiledStep of the same graph in this process: a hit too
again = gc.compile(fetches, feeds=feeds, backend=BACKEND)
again(**data)
again_s = time.perf_counter() - t
print(json.dumps(dict(build=build, total=total, step=seconds, init=init, call=call,
                      loss=value.hex(),
                      hit=bool(getattr(compiled, "cache_hit", False)), again=again_s,
                      again_key=again.compiled.timings.get("key", 0.0),
                      nodes=len(graph.nodes), phases=compiled.timings)))
"""


def _child(workload, backend, env, build_only=False, session=False):
    code = CHILD.format(here=str(HERE), workload=workload, backend=backend,
                        build_only=build_only, session=session)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def measure(workload, backend, runs):
    """One cold compile, then ``runs`` warm hits in fresh processes: their result dicts."""
    with tempfile.TemporaryDirectory() as folder:
        env = dict(os.environ, GRAPHC_STEP_CACHE="1", GRAPHC_CACHE_DIR=folder)
        for var in ("GRAPHC_NO_CACHE", "GRAPHC_DUMP", "GRAPHC_DEBUG",
                    "PYTHONDONTWRITEBYTECODE"):  # (users import from .pyc files)
            env.pop(var, None)
        cold = _child(workload, backend, env)
        if cold["hit"]:
            raise AssertionError(f"{workload} {backend}: the first compile hit an empty cache")
        off = dict(env, GRAPHC_STEP_CACHE="0")
        warm, plain = [], []
        for _ in range(runs):  # (alternating: a hit, then the same graph built without the
            warm.append(_child(workload, backend, env))  # cache's running hash)
            plain.append(_child(workload, backend, off, build_only=True))
    for w in warm:
        if not w["hit"]:
            raise AssertionError(f"{workload} {backend}: a warm compile missed the cache")
        if w["loss"] != cold["loss"]:
            raise AssertionError(f"{workload} {backend}: the hit's loss {w['loss']} differs "
                                 f"from the cold compile's {cold['loss']}")
    for w, p in zip(warm, plain):
        w["build_off"] = p["build"]
    return cold, warm


def measure_session(workload, backend, runs):
    """``Session.run`` in fresh processes: one that fills the cache, then ``runs`` hits;
    one line: the initializer's run and the step's first run, median and min (ms)."""
    with tempfile.TemporaryDirectory() as folder:
        env = dict(os.environ, GRAPHC_STEP_CACHE="1", GRAPHC_CACHE_DIR=folder)
        for var in ("GRAPHC_NO_CACHE", "GRAPHC_DUMP", "GRAPHC_DEBUG",
                    "PYTHONDONTWRITEBYTECODE"):
            env.pop(var, None)
        cold = _child(workload, backend, env, session=True)
        warm = [_child(workload, backend, env, session=True) for _ in range(runs)]
    for w in warm:
        if not w["hit"] or w["loss"] != cold["loss"]:
            raise AssertionError(f"{workload} {backend}: a warm Session missed the cache or "
                                 f"gave another loss ({w['loss']} against {cold['loss']})")
    cold_ms = (cold["init"] + cold["run"]) * 1e3
    print(f"{workload} {backend:5} {warm[0]['nodes']:6} nodes Session cold {cold_ms:7.1f}"
          f" | initializer {_cell([w['init'] for w in warm])}"
          f" | first run {_cell([w['run'] for w in warm])}"
          f" | both {_cell([w['init'] + w['run'] for w in warm])}", flush=True)


def _cell(values):
    ms = [v * 1e3 for v in values]
    return f"{statistics.median(ms):6.2f} {min(ms):6.2f}"


def report(workload, backend, cold, warm):
    """One line: the cold compile, then median and min of every column over the hits."""
    phases = [p for p in warm[0]["phases"] if p != "lookup"]
    cells = [("build off", [w["build_off"] for w in warm]),
             ("on", [w["build"] for w in warm]),
             ("hit", [w["total"] + w["call"] for w in warm]),
             ("gc.compile", [w["total"] for w in warm]),
             ("around", [w["total"] - w["step"] for w in warm]),
             ("step", [w["step"] for w in warm])]
    cells += [(p, [w["phases"].get(p, 0.0) for w in warm]) for p in phases]
    cells.append(("call", [w["call"] for w in warm]))
    cells.append(("again", [w["again"] for w in warm]))
    cells.append(("key", [w["again_key"] for w in warm]))
    print(f"{workload} {backend:5} {warm[0]['nodes']:6} nodes cold {cold['step'] * 1e3:7.1f} | "
          + " | ".join(f"{name} {_cell(v)}" for name, v in cells), flush=True)


def main(argv=None):
    sys.path.insert(0, str(HERE))
    import baselines
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workloads", nargs="*", default=list(baselines.WORKLOADS) + GENERATED,
                        help="W1..W5, or a generated graph: rnn1k, rnn10k, mlp1k, mlp10k...")
    parser.add_argument("--backends", nargs="+", default=["llvm", "numpy"],
                        choices=["llvm", "numpy", "default"],
                        help="default: name no backend, as a TF1 script does (graphc then "
                             "chooses, probing LLVM: see graphc/client/backend_choice.py)")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--session", action="store_true",
                        help="time Session.run's warm hit (initializer and first run) instead")
    args = parser.parse_args(argv)
    print(f"ms; each column: median min over {args.runs} fresh processes "
          "(cold: the compile that filled the cache)")
    for backend in args.backends:
        for workload in args.workloads:
            if args.session:
                measure_session(workload, backend, args.runs)
            else:
                report(workload, backend, *measure(workload, backend, args.runs))


if __name__ == "__main__":
    main()
