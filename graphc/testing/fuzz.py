"""The differential fuzzer's driver and command line.

    python -m graphc.testing.fuzz --n 20000 [--seed S] [--batch B] [--procs P] [--mutate NAME]
                                  [--known-bugs] [--large] [--unknown-dims]
    python -m graphc.testing.fuzz --replay SEED [--mutate NAME] [--known-bugs] [--large]
                                  [--unknown-dims]

Graph ``seed + j`` is ``graphs.generate(seed + j)``: a random graph of 3 to 40 ops over every
op family, with gradients and Hessian-vector products, in float32 or float64. Graphs run in
batches of ``B`` disjoint subgraphs compiled as one step per configuration (``check``); a
failing batch is narrowed down to the graph that fails alone (each graph a failure names, then
bisection when the failure needs several graphs together). Each failing graph is printed (seed,
the failures, the step's input IR, a replay command), shrunk (``shrink``) and printed again.
``run`` is the same loop as a function, for tests.

Two calls of one step must give the same bits (the "repeat" check), so the fuzzer turns the
BLAS thread tuner off (``GRAPHC_BLAS_TUNING=0`` unless set): a tuned step changes BLAS's
thread count between calls, and OpenBLAS sums some GEMMs in another order on one thread.
"""
import argparse
import os
import sys
import time
from dataclasses import dataclass, field

import graphc as gc

from .check import CANDIDATES, Batch, Failure
from .graphs import build, describe, generate
from .mutations import MUTATIONS, mutation
from .shrink import shrink

DEFAULT_BATCH = 8


@dataclass
class Finding:
    """A failing graph (or a set of graphs that fail only together)."""
    seeds: list
    failures: list
    index: int            # graphs run when it was found (its position in the run, 1-based)
    shrunk: object = None  # the shrunk Recipe


@dataclass
class Report:
    graphs: int = 0
    seconds: float = 0.0
    findings: list = field(default_factory=list)
    ill_conditioned: int = 0
    skipped: int = 0

    @property
    def rate(self):
        return self.graphs / self.seconds if self.seconds else 0.0

    @property
    def first_caught(self):
        """Graphs run up to and including the first failing one (None: nothing failed)."""
        return self.findings[0].index if self.findings else None


def run(n, seed=0, batch=DEFAULT_BATCH, mutate=None, stop_first=False, do_shrink=True,
        out=None, configs=CANDIDATES, known_bugs=False, large=False, unknown_dims=False):
    """Fuzz graphs ``seed`` .. ``seed + n - 1``.

    Args:
        n: how many graphs.
        seed: the first graph's seed.
        batch: graphs compiled together as one step.
        mutate: a ``mutations.MUTATIONS`` name to put back for the run, or None.
        stop_first: return at the first failing graph.
        do_shrink: shrink each failing graph.
        out: a print function for progress and findings (None: silent).
        configs: the candidate configurations.
        known_bugs: also generate the patterns known to fail (``graphs.generate``).
        large: also draw large matrices and many channels (``graphs.generate``).
        unknown_dims: declare placeholders with an unknown first dim (``graphs.generate``).
    Returns:
        A ``Report``.
    Example:
        >>> report = run(400)
        >>> assert not report.findings, report.findings
    """
    say = out or (lambda *a, **k: None)
    drawn = dict(known_bugs=known_bugs, large=large, unknown_dims=unknown_dims)
    report = Report()
    t0 = time.perf_counter()
    for start in range(seed, seed + n, batch):
        seeds = list(range(start, min(start + batch, seed + n)))
        recipes = [generate(s, **drawn) for s in seeds]
        found = _check(recipes, mutate, configs, report)
        report.graphs += len(seeds)
        for k, fails in found:
            idx = seeds[k[0]] - seed + 1 if len(k) == 1 else report.graphs
            finding = Finding([seeds[j] for j in k], fails, idx)
            report.findings.append(finding)
            _print_finding(say, [recipes[j] for j in k], finding, mutate, drawn)
            if do_shrink and len(k) == 1:
                finding.shrunk = _shrink(say, recipes[k[0]], fails, mutate)
        if stop_first and report.findings:
            break
        if out and (report.graphs // batch) % 25 == 0:
            el = time.perf_counter() - t0
            say(f"... {report.graphs} graphs, {el:.0f} s, {report.graphs / el:.1f} graphs/s, "
                f"{len(report.findings)} findings")
    report.seconds = time.perf_counter() - t0
    return report


def _check(recipes, mutate, configs, report):
    """[(graph indices, failures)] of the graphs of ``recipes`` that fail (alone, or only
    together)."""
    fails = _run_batch(recipes, mutate, configs, report, count_skipped=True)
    if not fails:
        return []
    if len(recipes) == 1:
        return [((0,), fails)]
    named = sorted({f.graph for f in fails if f.graph is not None})
    found = []
    for k in named:
        alone = _alone(recipes[k], mutate, configs, report)
        if alone:
            found.append(((k,), alone))
    if found:
        return found
    return _bisect(list(range(len(recipes))), recipes, mutate, configs, report, fails)


def _run_batch(recipes, mutate, configs, report, count_skipped=False):
    """The failures of ``recipes`` as one batch; building the graph or the reference raising
    is a failure too (a "crash" of the whole batch)."""
    try:
        with mutation(mutate):
            b = Batch(recipes, configs)
            fails = b.run()
    except Exception as exc:  # noqa: BLE001  (graph building or the reference crashed)
        return [Failure(None, "reference", "crash",
                        detail=f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}")]
    report.ill_conditioned += b.ill
    if count_skipped:
        report.skipped += len(b.skipped)
    return fails


def _alone(recipe, mutate, configs, report):
    return _run_batch([recipe], mutate, configs, report)


def _bisect(ks, recipes, mutate, configs, report, fails):
    """The smallest failing subset found by halving ``ks`` (a failure needing many graphs)."""
    while len(ks) > 1:
        half = len(ks) // 2
        for part in (ks[:half], ks[half:]):
            part_fails = _run_batch([recipes[k] for k in part], mutate, configs, report)
            if part_fails:
                ks, fails = part, part_fails
                break
        else:
            break
    if len(ks) == 1:
        return [((ks[0],), fails)]
    return [(tuple(ks), fails)]


def input_ir(recipe):
    """The text IR of ``recipe``'s step before any pass."""
    graph = gc.Graph()
    with graph.as_default():
        fetches, feeds = build(recipe)
        return gc.compile(fetches, backend="numpy", optimize=False).ir("input")


def _ir_or_error(recipe):
    try:
        return input_ir(recipe)
    except Exception as exc:  # noqa: BLE001  (the failure may be that it does not compile)
        return f"(no IR: {type(exc).__name__}: {exc})"


def replay_command(seeds, mutate, known_bugs=False, large=False, unknown_dims=False):
    flag = ((f" --mutate {mutate}" if mutate else "") + (" --known-bugs" if known_bugs else "")
            + (" --large" if large else "") + (" --unknown-dims" if unknown_dims else ""))
    return " ; ".join(f"python -m graphc.testing.fuzz --replay {s}{flag}" for s in seeds)


def _print_finding(say, recipes, finding, mutate, drawn):
    say(f"\n=== MISMATCH: seed{'s' if len(recipes) > 1 else ''} "
        f"{', '.join(map(str, finding.seeds))}"
        + (" (they fail only when compiled together)" if len(recipes) > 1 else ""))
    for f in finding.failures:
        say("  " + f.line())
    for r in recipes:
        say(describe(r))
        say(_ir_or_error(r))
    say(f"replay: {replay_command(finding.seeds, mutate, **drawn)}")


def _shrink(say, recipe, fails, mutate):
    first = next((f for f in fails if f.what == "mismatch"), fails[0])
    small, tries = shrink(recipe, first, mutate)
    say(f"--- shrunk to {small.live_ops} ops ({tries} candidates checked):")
    say(describe(small))
    say(_ir_or_error(small))
    return small


def _worker(n, seed, batch, mutate, stop_first, do_shrink, drawn):
    """One process's share of a ``--procs`` run; returns its Report without the recipes."""
    report = run(n, seed, batch, mutate, stop_first, do_shrink, out=print, **drawn)
    for f in report.findings:
        f.shrunk = None
    return report


def run_processes(procs, n, seed, batch, mutate, stop_first, do_shrink, known_bugs=False,
                  large=False, unknown_dims=False):
    """``run`` split over ``procs`` processes (consecutive seed ranges); one merged Report."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool
    share = -(-n // procs)
    args = [(min(share, n - k * share), seed + k * share, batch, mutate, stop_first, do_shrink,
             dict(known_bugs=known_bugs, large=large, unknown_dims=unknown_dims))
            for k in range(procs) if n - k * share > 0]
    t0 = time.perf_counter()
    # (an executor, not a Pool: a worker killed, for memory say, fails the run at once, where
    # a Pool replaced it and waited forever for its share)
    with ProcessPoolExecutor(len(args), mp_context=multiprocessing.get_context("spawn")) as ex:
        try:
            parts = list(ex.map(_worker, *zip(*args)))
        except BrokenProcessPool as exc:
            raise SystemExit(f"fuzz: a worker process died ({exc}); run its seed range "
                             "without --procs to see where") from None
    merged = Report(seconds=time.perf_counter() - t0)
    for part, (_, start, *_) in zip(parts, args):
        merged.graphs += part.graphs
        merged.ill_conditioned += part.ill_conditioned
        merged.skipped += part.skipped
        for f in part.findings:
            f.index += start - seed
            merged.findings.append(f)
    merged.findings.sort(key=lambda f: f.index)
    return merged


def main(argv=None):
    os.environ.setdefault("GRAPHC_BLAS_TUNING", "0")  # calls must repeat bit for bit
    ap = argparse.ArgumentParser(prog="python -m graphc.testing.fuzz",
                                 description="Differential fuzzing of graphc's pipelines.")
    ap.add_argument("--n", type=int, default=1000, help="number of random graphs")
    ap.add_argument("--seed", type=int, default=0, help="the first graph's seed")
    ap.add_argument("--batch", type=int, default=DEFAULT_BATCH,
                    help="graphs compiled together as one step")
    ap.add_argument("--mutate", choices=sorted(MUTATIONS), help="put back a known bug")
    ap.add_argument("--replay", type=int, metavar="SEED", help="run one graph alone")
    ap.add_argument("--no-shrink", action="store_true")
    ap.add_argument("--stop-first", action="store_true", help="stop at the first failure")
    ap.add_argument("--known-bugs", action="store_true",
                    help="also generate the patterns known to fail today")
    ap.add_argument("--large", action="store_true",
                    help="also draw large matrices and many channels (GEMM blocking, packing "
                         "and threads; implicit-GEMM convolutions)")
    ap.add_argument("--unknown-dims", action="store_true",
                    help="declare placeholders with an unknown first dim (TF1's batch None)")
    ap.add_argument("--procs", type=int, default=1,
                    help="worker processes, each fuzzing a consecutive range of seeds")
    args = ap.parse_args(argv)
    drawn = dict(known_bugs=args.known_bugs, large=args.large, unknown_dims=args.unknown_dims)
    if args.replay is not None:
        print(describe(generate(args.replay, **drawn)))
        report = run(1, args.replay, 1, args.mutate, do_shrink=not args.no_shrink, out=print,
                     **drawn)
    elif args.procs > 1:
        report = run_processes(args.procs, args.n, args.seed, args.batch, args.mutate,
                               args.stop_first, not args.no_shrink, **drawn)
    else:
        report = run(args.n, args.seed, args.batch, args.mutate, args.stop_first,
                     not args.no_shrink, out=print, **drawn)
    print(f"\n{report.graphs} graphs in {report.seconds:.1f} s ({report.rate:.2f} graphs/s): "
          f"{len(report.findings)} failing, {report.ill_conditioned} differences explained by "
          f"ill-conditioning, {report.skipped} graphs with non-finite references skipped")
    if report.first_caught is not None:
        print(f"first failure at graph {report.first_caught}")
    return 1 if report.findings else 0


if __name__ == "__main__":
    sys.exit(main())
