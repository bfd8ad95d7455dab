"""Running recipes on every pipeline and comparing them with the reference.

The reference is the unoptimized NumPy pipeline (``gc.compile(..., backend="numpy",
optimize=False)``); the candidates are the optimized NumPy pipeline, the LLVM backend, and the
LLVM backend with native GEMMs off (as ``GRAPHC_NATIVE_GEMM=0`` while compiling: every GEMM
goes to BLAS; see ``llvm_tooling``). Each step is called twice on the same feeds and must
return the same bits both times (a kernel reading a buffer nobody wrote shows up as a
difference between calls); a native step's second run has graphc's thread pool on one thread
(``one_pool_thread``: its split kernels' chunks are fixed at compile time, so the bits must
not depend on the threads), and a native step is also called from two Python threads at once
(``concurrent_calls``): each call must give the first call's bits in the fetches of the graphs
without updates. A graph that assigns variables is run from its initial variable
values twice over: both calls must match the reference's, and the two runs each other.

Tolerance, per fetched tensor f of a graph with ``n`` ops and dtype epsilon ``eps``:

    max |candidate - reference| <= 4 n (S_f + eps * M_f) + 1000 * tiny

``S_f`` is the measured sensitivity of f to rounding: the reference is run again on feeds
perturbed by a relative ``8 eps`` (two random draws) and ``S_f`` is the largest change of f
divided by 8, i.e. how much f moves per ``eps`` of relative noise in its inputs. Rounding inside
the graph acts like such noise at each of the ``n`` ops, hence the factor n; well-conditioned
graphs get about ``4 n eps`` relative to the fetch's scale, cancelling ones proportionally more.
``M_f`` is the largest magnitude among f and every float value f is computed from (one more
unoptimized run that fetches them all): an op rounds within an eps of its own value, and a
cancellation downstream (``s - tanh(s)`` for a small ``s``: a 2-ulp tanh difference is 16 ulp
of the result) keeps that absolute error while perturbing the feeds moves both terms alike.
A difference above that is confirmed only if it survives a second look: the reference is run on
feeds perturbed by ``1024 eps`` (four draws), and when the reference itself moves by a quarter
of the difference, the graph sits on a kink (relu or max near a tie, a branch of ``abs``) and
the difference is counted as ill-conditioned, not reported.

Several recipes can run as ONE compiled step (disjoint subgraphs fetched together): the LLVM
compile, the main cost, is then paid once per batch.
"""
import contextlib
import importlib
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

import graphc as gc
from graphc.ir.program import needed_nodes

from .graphs import build

CANDIDATES = ("numpy-opt", "llvm", "llvm-blas")
CONFIRM_DRAWS, CONFIRM_RHO = 4, 1024.0
SENS_DRAWS, SENS_RHO = 2, 8.0


@dataclass
class Failure:
    """One disagreement: graph ``graph`` (an index into the batch, None: the whole batch) on
    ``config``; ``what`` is "mismatch", "repeat" (two calls differ), "crash" or "reference"."""
    graph: object
    config: str
    what: str
    fetch: int = -1
    err: float = 0.0
    tol: float = 0.0
    detail: str = ""

    def line(self):
        if self.what == "mismatch":
            return (f"{self.config}: fetch {self.fetch} differs from the reference by "
                    f"{self.err:.3g} (tolerance {self.tol:.3g}) {self.detail}")
        return f"{self.config}: {self.what} {self.detail}"


@contextlib.contextmanager
def no_object_cache():
    """Compile every LLVM step afresh: cached object code would hide a mutation's effect
    and fill the disk with one entry per random graph."""
    backend = importlib.import_module("graphc.codegen.llvm.backend")
    objcache = importlib.import_module("graphc.runtime.objcache")
    old = backend._cache
    backend._cache = objcache.ObjectCache(enabled=False)
    try:
        yield
    finally:
        backend._cache = old


@contextlib.contextmanager
def shared_pipeline():
    """Run the pass pipeline once for every candidate compiled in the block.

    The passes depend on the backend only through what the pipeline sets on the program for
    it (``gemm_epilogues``: the LLVM backend's GEMMs run elementwise epilogues), so both
    LLVM steps lower one optimized Program and the NumPy step another (the backends only
    read them): a batch pays for the pipeline twice instead of three times.
    """
    compiler = importlib.import_module("graphc.client.pipeline")
    original, done = compiler.run_pipeline, {}

    def run_once(program, passes=None, **kw):
        key = (tuple(passes) if passes is not None else None,
               getattr(program, "gemm_epilogues", None))
        if key in done:
            program.__dict__.update(done[key].__dict__)
            return program.records
        kw.setdefault("verify", True)  # a pass breaking an invariant is named at once
        records = original(program, passes=passes, **kw)
        done[key] = program
        return records
    compiler.run_pipeline = run_once
    try:
        yield
    finally:
        compiler.run_pipeline = original


def compile_step(fetches, feeds, config):
    """The CompiledStep of ``config`` ("reference" or one of CANDIDATES); "llvm-blas" must be
    compiled inside ``llvm_tooling`` (which turns native GEMMs off for it)."""
    if config == "reference":
        return gc.compile(fetches, feeds=feeds, backend="numpy", optimize=False)
    if config == "numpy-opt":
        return gc.compile(fetches, feeds=feeds, backend="numpy")
    _local.blas_only = config == "llvm-blas"
    try:
        return gc.compile(fetches, feeds=feeds, backend="llvm")
    finally:
        _local.blas_only = False


_local = threading.local()


@contextlib.contextmanager
def llvm_tooling(jobs=2):
    """Yield ``submit(fn, *args) -> Future`` running candidates' compiles on ``jobs`` threads.

    Python work (graph, passes, lowering) holds one lock, so it runs as if alone; only LLVM's
    own compilation (``runtime.jit.compile_ir``: a private LLVM context per module, the GIL
    released) runs while another thread works, which puts the second core to use. Inside,
    native GEMMs are off for the thread compiling "llvm-blas": ``native_gemm_ok`` gets
    ``enabled=False``, its in-process equivalent of ``GRAPHC_NATIVE_GEMM=0`` at compile time
    (an environment variable would be shared by both threads).
    """
    kernels = importlib.import_module("graphc.codegen.llvm.kernels.elementwise")
    jit = importlib.import_module("graphc.runtime.jit")
    native_ok, compile_ir = kernels.native_gemm_ok, jit.compile_ir
    lock = threading.Lock()

    def gemm_ok(dtype, dims, flags, threads=1, enabled=None):
        return native_ok(dtype, dims, flags, threads,
                         False if getattr(_local, "blas_only", False) else enabled)

    def compile_unlocked(*args, **kw):
        lock.release()
        try:
            return compile_ir(*args, **kw)
        finally:
            lock.acquire()

    def locked(fn, *args):
        with lock:
            return fn(*args)

    kernels.native_gemm_ok, jit.compile_ir = gemm_ok, compile_unlocked
    try:
        with ThreadPoolExecutor(max(1, jobs)) as pool:
            yield lambda fn, *args: pool.submit(locked, fn, *args)
    finally:
        kernels.native_gemm_ok, jit.compile_ir = native_ok, compile_ir


@contextlib.contextmanager
def one_pool_thread():
    """graphc's thread pool on one thread inside (BLAS's count as it was): a native step's
    kernels split in chunks fixed at compile time, so their bits must not depend on how many
    threads run the chunks."""
    parallel = importlib.import_module("graphc.runtime.parallel")
    before = parallel.threads()
    parallel.set_threads(1)
    try:
        yield
    finally:
        if before is not None:
            parallel.set_threads(before)


def concurrent_calls(step, feeds, threads=2):
    """The outputs of ``threads`` calls of ``step`` on ``feeds`` started at once from as many
    Python threads (a compiled step may be called from several; each call has its own
    buffers, and the thread pool gives each caller all its chunks)."""
    results, errors = [None] * threads, []
    start = threading.Barrier(threads)

    def work(k):
        try:
            start.wait()
            results[k] = call(step, feeds)
        except Exception as exc:  # noqa: BLE001  (reported by the caller)
            errors.append(exc)
    workers = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    if errors:
        raise errors[0]
    return results


def call(step, feeds):
    out = step({p: np.array(v) for p, v in feeds.items()})
    return [np.array(x) for x in out]


def perturbed(feeds, rho, rng):
    """Float feeds times (1 + rho * eps * u), u uniform in [-1, 1]."""
    out = {}
    for p, v in feeds.items():
        if v.dtype.kind == "f":
            eps = np.finfo(v.dtype).eps
            v = (v * (1 + rho * eps * rng.uniform(-1, 1, v.shape))).astype(v.dtype)
        out[p] = v
    return out


def same_bits(a, b):
    return a.shape == b.shape and a.tobytes() == b.tobytes()


def max_diff(a, b):
    if a.shape != b.shape:
        return np.inf
    if a.size == 0:
        return 0.0
    a64, b64 = np.atleast_1d(a.astype(np.float64)), np.atleast_1d(b.astype(np.float64))
    both = ~np.isfinite(a64) & ~np.isfinite(b64) & ((a64 == b64) | (np.isnan(a64) & np.isnan(b64)))
    with np.errstate(invalid="ignore"):  # inf - inf where both are the same inf
        d = np.abs(a64 - b64)
    d[both] = 0.0
    return float(np.nanmax(np.where(np.isnan(d), np.inf, d)))


class Batch:
    """Recipes built into one graph; ``run`` compares every candidate with the reference."""

    def __init__(self, recipes, configs=CANDIDATES, jobs=2):
        self.recipes, self.configs, self.jobs = list(recipes), configs, jobs
        self.graph = gc.Graph()
        self.fetches, self.owner, self.feeds = [], [], {}
        with self.graph.as_default():
            for k, r in enumerate(self.recipes):
                fetches, feeds = build(r, prefix=f"g{k}")
                self.fetches += fetches
                self.owner += [k] * len(fetches)
                self.feeds.update(feeds)
            # a placeholder only a pruned branch reads (the unused product of ``t + t + u``)
            # is not a feed of the step
            needed = {id(n) for n in needed_nodes(self.fetches, [])}
            self.feeds = {p: v for p, v in self.feeds.items() if id(p) in needed}
        self.skipped = set()  # graphs whose reference is not finite (NaN-producing: excluded)
        self.ill = 0          # differences explained by the reference's own sensitivity

    def step(self, config):
        """The compiled step of ``config`` and a copy of its initial variable values."""
        with self.graph.as_default():
            step = compile_step(self.fetches, list(self.feeds), config)
        return step, {k: np.array(v) for k, v in step.variables.items()}

    def calls(self, step, feeds=None):
        """Two calls from the initial variable values (a graph with assigns sees its updated
        variables in the second), the outputs of both in one list: slot j is fetch j % F of
        call j // F + 1."""
        step, init = step
        for name, arr in step.variables.items():
            np.copyto(arr, init[name])
        feeds = self.feeds if feeds is None else feeds
        return call(step, feeds) + call(step, feeds)

    def reference(self):
        """The reference step, its values (``calls``), their sensitivities (per eps), and a
        failure list."""
        step = self.step("reference")
        ref = self.calls(step)
        fails = self._repeats("reference", ref, self.calls(step))
        for j, v in enumerate(ref):
            if not np.all(np.isfinite(v)):
                self.skipped.add(self.owner[j % len(self.fetches)])
        rng = np.random.default_rng(12345)
        sens = [0.0] * len(ref)
        for _ in range(SENS_DRAWS):
            moved = self.calls(step, perturbed(self.feeds, SENS_RHO, rng))
            sens = [max(s, max_diff(m, r) / SENS_RHO) for s, m, r in zip(sens, moved, ref)]
        self.scale = self._upstream_scales()
        return step, ref, sens, fails

    def _upstream_scales(self):
        """Per fetch, the largest magnitude of a float value it is computed from: each op
        rounds within an eps of its own value, and a later cancellation (``s - tanh(s)``)
        keeps that absolute error while the result shrinks. Perturbing the feeds moves both
        terms alike, so ``S_f`` misses it; this bound does not."""
        with self.graph.as_default():
            nodes = [n for n in needed_nodes(self.fetches, [])
                     if n.dtype is not None and n.dtype.is_floating and n.shape is not None
                     and not n.opdef.impure and n.op_name != "placeholder"]
            if not nodes:
                return [0.0] * len(self.fetches)
            values = call(compile_step(nodes, list(self.feeds), "reference"), self.feeds)
        mag = {}
        for n, v in zip(nodes, values):
            finite = np.abs(v[np.isfinite(v)]) if np.size(v) else np.zeros(0)
            mag[id(n)] = float(finite.max()) if finite.size else 0.0
        return [max([mag.get(id(u), 0.0) for u in needed_nodes([f], [])] + [0.0])
                for f in self.fetches]

    def run(self, confirm=True):
        """Compile and run every config; returns [Failure] (graphs named by batch index)."""
        step, ref, sens, fails = self.reference()
        with no_object_cache(), shared_pipeline(), llvm_tooling(self.jobs) as submit:
            runs = [submit(self._candidate, config, ref, sens) for config in self.configs]
            for r in runs:
                fails += r.result()
        if confirm:
            fails = self.confirm(step, ref, fails)
        return fails

    def _repeats(self, config, out, again, one_thread=False):
        """Differences between two runs of ``calls`` (same state, same feeds; ``one_thread``:
        the second with the thread pool on one thread), and between the two calls of a graph
        without assigns."""
        fails, n = [], len(self.fetches)
        for j, (a, b) in enumerate(zip(out, again)):
            k = self.owner[j % n]
            other = out[j + n] if j < n and not self.recipes[k].stateful else b
            for x in {id(b): b, id(other): other}.values():
                if k not in self.skipped and not same_bits(a, x):
                    on = "; the second run on one pool thread" if one_thread and x is b else ""
                    fails.append(Failure(k, config, "repeat", j % n,
                                         detail=f"(calls differ by {max_diff(a, x):.3g}{on})"))
        return fails

    def _candidate(self, config, ref, sens):
        native = config.startswith("llvm")
        try:
            cand = self.step(config)
            out = self.calls(cand)
            with one_pool_thread() if native else contextlib.nullcontext():
                again = self.calls(cand)  # (native: the same bits on one thread)
        except Exception as exc:  # noqa: BLE001  (a crash is a finding, named by config)
            return [Failure(None, config, "crash", detail=f"{type(exc).__name__}: "
                            f"{str(exc).splitlines()[0] if str(exc) else ''}")]
        fails, n = self._repeats(config, out, again, native), len(self.fetches)
        if native and not all(r.stateful for r in self.recipes):
            fails += self._concurrent(config, cand, out[:n])
        for j, (r, a) in enumerate(zip(ref, out)):
            k = self.owner[j % n]
            if k in self.skipped:
                continue
            err, tol = max_diff(a, r), self.tolerance(j % n, r, sens[j])
            if err > tol:
                fails.append(Failure(k, config, "mismatch", j % n, err, tol,
                                     f"(call {j // n + 1})"))
        return fails

    def _concurrent(self, config, step, first):
        """Two calls of the step made at once from two threads must each give the bits of
        the first call made alone, in the fetches of the graphs without updates (those with
        updates race on their variables; their fetches are not compared)."""
        try:
            runs = concurrent_calls(step[0], self.feeds)
        except Exception as exc:  # noqa: BLE001  (a crash is a finding, named by config)
            return [Failure(None, config, "crash", detail=f"two threads at once: "
                            f"{type(exc).__name__}: {str(exc).splitlines()[0][:150]}")]
        fails = []
        for out in runs:
            for j, (a, b) in enumerate(zip(first, out)):
                k = self.owner[j]
                if k not in self.skipped and not self.recipes[k].stateful \
                        and not same_bits(a, b):
                    fails.append(Failure(k, config, "repeat", j, detail=(
                        f"(calls differ by {max_diff(a, b):.3g}; two threads at once)")))
        return fails

    def tolerance(self, i, ref, sens):
        r = self.recipes[self.owner[i]]
        fi = np.finfo(np.dtype(r.dtype))
        scale = float(np.max(np.abs(ref))) if ref.size else 0.0
        scale = max(scale, getattr(self, "scale", [0.0] * (i + 1))[i])
        return 4 * max(r.n_ops, 1) * (sens + float(fi.eps) * scale) + 1000 * float(fi.tiny)

    def confirm(self, step, ref, fails):
        """Drop mismatches the reference's own sensitivity explains (see module docstring)."""
        mism = [f for f in fails if f.what == "mismatch"]
        if not mism:
            return fails
        rng = np.random.default_rng(54321)
        moved = [0.0] * len(ref)
        for _ in range(CONFIRM_DRAWS):
            out = self.calls(step, perturbed(self.feeds, CONFIRM_RHO, rng))
            moved = [max(m, max_diff(o, r)) for m, o, r in zip(moved, out, ref)]
        n = len(self.fetches)
        kept = []
        for f in fails:
            if f.what == "mismatch" and max(moved[f.fetch], moved[f.fetch + n]) >= f.err / 4:
                self.ill += 1
                continue
            kept.append(f)
        return kept


def check(recipes, configs=CANDIDATES):
    """Run ``recipes`` as one batch; returns ([Failure], the Batch)."""
    batch = Batch(recipes, configs)
    return batch.run(), batch
