"""Benchmark the cost of one call around the step function: ``step(feeds)`` and
``Session.run`` against the compiled step function called with its arrays directly.

For each workload and backend, interleaved rounds time these callables:

    kernels   the native entry point alone on the arrays bound by the previous call
              (``NativeStep.run_bound``; the NumPy backend: ``fn``)
    fn        the compiled step function itself (``NativeStep.run(feeds, variables)``; the
              NumPy backend's function with its arguments in its own order): kernels plus
              the backend's own call (binding, status word, copies of the fetched values)
    step      ``gc.compile([loss, train], feeds=[x, y])`` called as ``step({x: xs, y: ys})``
    fresh     the same, each call with other arrays (copies of the batch, in turn), as a
              training loop feeds new batches: the step binds them again
    loaded    the same step saved and loaded (``gc.load``), called as ``loaded(x=xs, y=ys)``
    run       ``sess.run([loss, train], {x: xs, y: ys})`` on a Session of the same graph
    run_names ``sess.run(["loss:0", "train"], {"x:0": xs, "y:0": ys})`` (names: no fast path)

and reports microseconds per call (median and minimum over the rounds) and what ``step``,
``fresh``, ``loaded`` and ``run`` add to ``kernels``. Variables change every call (the step trains); each round restarts from
the initial parameters.

    python benchmarks/bench_calls.py [--workloads W2 W1] [--backends llvm numpy]
                                     [--rounds 15] [--min-time 0.05]
"""
import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent))

import baselines  # noqa: E402
import bench_llvm  # noqa: E402
import records  # noqa: E402

import graphc as gc  # noqa: E402
from graphc.runtime import threads  # noqa: E402


def callables(workload, backend):
    """{name: (reset, call)} of the four ways to run one training step of ``workload``."""
    graph, x, y, loss, train, init = bench_llvm.build(workload)
    xs, ys = baselines.make_data(workload)
    with graph.as_default():
        sess = gc.Session(graph=graph, backend=backend)
        sess.run(init)
        start = {v: a.copy() for v, a in sess.values.items()}
        step = gc.compile([loss, train], feeds=[x, y], backend=backend)
        step({x: xs, y: ys})
        first = {k: a.copy() for k, a in step.variables.items()}
        feed, names = {x: xs, y: ys}, {x.name: xs, y.name: ys}
        fetch_names = [loss.name, train.name]
        compiled, var_arrays = step._fast.compiled, step._fast.variables
        args = [xs, ys]
        batches = [{x: xs.copy(), y: ys.copy()} for _ in range(4)]
        turn = iter(range(1 << 62))
        with tempfile.TemporaryDirectory() as tmp:
            step.save(os.path.join(tmp, "step.gcx"))
            loaded = gc.load(os.path.join(tmp, "step.gcx"))
        by_name = {x.op.name: xs, y.op.name: ys}
        loaded(**by_name)
        saved = {k: a.copy() for k, a in loaded.variables.items()}

    def reset_session():
        for v, a in start.items():
            sess.values[v][...] = a

    def reset_step():
        for k, a in first.items():
            step.variables[k][...] = a

    def reset_loaded():
        for k, a in saved.items():
            loaded.variables[k][...] = a

    fn = compiled.fn
    if hasattr(fn, "run_bound"):
        calls = {"kernels": (reset_step, fn.run_bound),
                 "fn": (reset_step, lambda: fn.run(args, var_arrays))}
    else:
        calls = {"fn": (reset_step, lambda: fn(*args, *var_arrays))}
        calls["kernels"] = calls["fn"]
    return {
        **calls,
        "step": (reset_step, lambda: step(feed)),
        "fresh": (reset_step, lambda: step(batches[next(turn) & 3])),
        "loaded": (reset_loaded, lambda: loaded(**by_name)),
        "run": (reset_session, lambda: sess.run([loss, train], feed)),
        "run_names": (reset_session, lambda: sess.run(fetch_names, names)),
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workloads", nargs="+", default=["W2", "W1"])
    ap.add_argument("--backends", nargs="+", default=["llvm", "numpy"])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--min-time", type=float, default=0.05)
    ap.add_argument("--record", action="store_true",
                    help="store this run's figures as the reference (records.py)")
    args = ap.parse_args(argv)
    rec = records.Records("bench_calls", threads.policy_threads())
    print("| workload | backend | kernels, us | fn, us | step(feeds), us | step, new arrays, us "
          "| loaded step, us | sess.run, us | sess.run by names, us | step - kernels "
          "| new arrays - kernels | loaded - kernels | run - kernels |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for w in args.workloads:
        for b in args.backends:
            t = bench_llvm.interleaved_times(callables(w, b), args.rounds, args.min_time)
            med = {k: statistics.median(v) * 1e6 for k, v in t.items()}
            low = {k: min(v) * 1e6 for k, v in t.items()}
            cell = {k: f"{med[k]:.1f} ({low[k]:.1f})" for k in t}
            over = {k: f"{med[k] - med['kernels']:+.1f}" for k in t}
            print(f"| {w} | {b} | {cell['kernels']} | {cell['fn']} | {cell['step']} | "
                  f"{cell['fresh']} | {cell['loaded']} | {cell['run']} | {cell['run_names']} "
                  f"| {over['step']} | {over['fresh']} | {over['loaded']} | {over['run']} |",
                  flush=True)
            for k in ("step", "fresh", "loaded", "run"):
                said = rec.note(f"{w} {b} {k} - kernels, us",
                                round(med[k] - med["kernels"], 1), higher_is_better=False)
                if said:
                    print(f"  {k} - kernels: {said}")
    print("\nmedian (minimum) over the rounds, microseconds per call")
    print(rec.summary())
    if args.record:
        rec.save()


if __name__ == "__main__":
    main()
