"""Step times of graphc, PyTorch and JAX as model depth, width, batch and image size grow.

W1..W5 (``bench_peers.py``) are single points; this grid moves one dimension at a time, to
show where graphc's lead grows, holds or turns into a deficit:

- ``depth``: MLP 784-[256]*d-10, d = 2, 8, 32, 64 hidden layers, batch 128;
- ``width``: MLP 784-w-w-10, w = 64, 256, 1024, 4096, batch 128;
- ``batch``: W1's model (784-256-256-10) at batch 1, 32, 128, 1024, 8192;
- ``cnn``: NHWC input 28x28x1, 64x64x3, 128x128x3 at batch 32: conv 3x3 SAME to 32
  channels, ReLU, 2x2 max pool, conv 3x3 SAME 32 -> 64, ReLU, 2x2 max pool, flatten (NHWC
  order), dense to 10. If the slowest framework's 128x128 step exceeds ``--max-step``
  seconds, that row runs at a smaller batch (halved until it fits), which the output says;
  ``--batch-128`` fixes its batch instead (so that runs at 1 and 2 threads compare).

Every model has ReLU activations, Glorot-uniform weights, zero biases, the mean sparse softmax
cross-entropy over 10 classes and SGD with lr 0.01 (the MLP's initial weights are
``baselines.MLP``'s, so W1's model has W1's). Each framework starts from the same float32
parameters and seeded data; the first and second steps' losses must agree (rtol 1e-3) or the
row is skipped with a warning. PyTorch runs the CNN in NCHW with the filters as OIHW and the
dense rows permuted, so that it computes the NHWC function. graphc's step is
``gc.compile(..., backend="llvm")``, compiled cold (``GRAPHC_NO_CACHE=1``); the peers' steps
are written as in ``bench_peers.py``, whose ``step``/``reset`` they inherit. Candidates run in
interleaved batches (``bench_llvm.interleaved_times``), each batch from the initial
parameters; the table gives median / min ms per step and best peer / graphc on medians
(above 1: graphc faster).

    python benchmarks/bench_scaling.py [--part depth width batch cnn] [--threads N]
        [--rounds 7] [--min-time 0.1] [--settle S] [--max-step 1.0] [--batch-128 N]
        [--no-compile] [--quick]

``--threads`` sets every framework's threads before they load, as ``bench_peers.py`` does
(plus ``GRAPHC_NUM_THREADS``). ``--quick`` runs one small row per part, two rounds: a smoke
test of the whole script in about a minute.
"""
import argparse
import os
import sys
import time
from pathlib import Path


def _threads_argument(argv):
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--threads", type=int, default=1)
    return parser.parse_known_args(argv)[0].threads


if __name__ == "__main__":  # thread pools read these when their libraries load
    _n = _threads_argument(sys.argv[1:])
    # every framework's count, and graphc's own, which takes precedence over BLAS's
    # variables in graphc
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import thread_env
    thread_env.set_threads(_n)
    os.environ["GRAPHC_NUM_THREADS"] = str(_n)
    os.environ["GRAPHC_NO_CACHE"] = "1"  # compile times are cold compilations

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import baselines  # noqa: E402
import bench_llvm  # noqa: E402
import bench_peers  # noqa: E402

import graphc as gc  # noqa: E402

W1_SIZES = (784, 256, 256, 10)
RTOL = 1e-3
PEERS = ("torch eager", "torch.compile", "jax.jit")


# -- the two model families -------------------------------------------------------------------
def _data(x_shape, seed=0):
    """Pixels in [0, 1) and int64 labels 0..9, drawn as ``baselines.make_data`` draws them."""
    rng = np.random.default_rng(seed)
    x = rng.random(x_shape).astype(np.float32)
    return x, rng.integers(0, 10, x_shape[0]).astype(np.int64)


class Mlp:
    """Dense layers of ``sizes`` with ReLU between them, at batch ``batch``.

    The frameworks' forward passes are the W1 code of ``bench_llvm`` and ``bench_peers``,
    which loops over however many ``W{i}``, ``b{i}`` the parameters hold.
    """

    def __init__(self, sizes, batch):
        self.sizes, self.batch = tuple(sizes), batch
        self.x_shape = (batch, sizes[0])
        hidden = sizes[1:-1]
        self.label = (f"{sizes[0]}-{hidden[0]}x{len(hidden)}-{sizes[-1]}"
                      if len(set(hidden)) == 1 else "-".join(map(str, sizes)))
        self.key = ("mlp", self.sizes, batch)
        # batch 1: the baseline's buffers are not used, only its Glorot initialization
        init = baselines.MLP(self.sizes, "relu", 1, seed=0).params
        self.params = {k: np.array(v, np.float32) for k, v in init.items()}
        self.data = _data(self.x_shape)

    def at_batch(self, batch):
        return Mlp(self.sizes, batch)

    def flops(self):
        """Multiply-adds x 2 of forward, weight gradients and input gradients (not of the
        first layer, whose input needs none)."""
        pairs = list(zip(self.sizes[:-1], self.sizes[1:]))
        return sum(2 * self.batch * a * b * (2 if i == 0 else 3) for i, (a, b) in enumerate(pairs))

    def graphc_logits(self, x):
        return bench_llvm._mlp(self.params, x, gc.nn.relu)

    def torch_params(self):
        return self.params

    def torch_input(self, x):
        return x

    def torch_logits(self, torch, p, x):
        return bench_peers._torch_logits(torch, "W1", p, x)

    def jax_logits(self, jax, p, x):
        return bench_peers._jax_logits(jax, "W1", p, x)


class Cnn:
    """conv 3x3 SAME c_in -> 32, ReLU, max pool 2x2, conv 3x3 SAME 32 -> 64, ReLU, max pool
    2x2, flatten in NHWC order, dense to 10, on ``batch`` images of ``hw`` x ``hw`` x
    ``c_in`` (``hw`` divisible by 4, so both pools are exact)."""

    CHANNELS = (32, 64)

    def __init__(self, hw, c_in, batch):
        self.hw, self.c_in, self.batch = hw, c_in, batch
        self.x_shape = (batch, hw, hw, c_in)
        self.label = f"{hw}x{hw}x{c_in}"
        self.key = ("cnn", hw, c_in, batch)
        c1, c2 = self.CHANNELS
        self.pooled = (hw // 4, hw // 4, c2)
        flat = int(np.prod(self.pooled))
        rng = np.random.default_rng(0)
        # Glorot over the receptive fields, as TF's glorot_uniform_initializer counts them.
        glorot = baselines._glorot
        self.params = {k: np.array(v, np.float32) for k, v in {
            "K1": glorot(rng, (3, 3, c_in, c1), 9 * c_in, 9 * c1), "b1": np.zeros(c1),
            "K2": glorot(rng, (3, 3, c1, c2), 9 * c1, 9 * c2), "b2": np.zeros(c2),
            "Wd": glorot(rng, (flat, 10), flat, 10), "bd": np.zeros(10)}.items()}
        self.data = _data(self.x_shape)

    def at_batch(self, batch):
        return Cnn(self.hw, self.c_in, batch)

    def flops(self):
        """Multiply-adds x 2 of both convolutions (forward, filter gradient, and the input
        gradient of the second) and of the dense layer."""
        (c1, c2), n, hw = self.CHANNELS, self.batch, self.hw
        conv1 = 2 * n * hw * hw * 9 * self.c_in * c1
        conv2 = 2 * n * (hw // 2) ** 2 * 9 * c1 * c2
        dense = 2 * n * int(np.prod(self.pooled)) * 10
        return 2 * conv1 + 3 * conv2 + 3 * dense

    def graphc_logits(self, x):
        p = {k: bench_llvm._var(v, k) for k, v in self.params.items()}
        h = x
        for i in (1, 2):
            h = gc.nn.relu(gc.nn.conv2d(h, p[f"K{i}"], [1, 1, 1, 1], "SAME") + p[f"b{i}"])
            h = gc.nn.max_pool(h, [1, 2, 2, 1], [1, 2, 2, 1], "VALID")
        return gc.matmul(gc.reshape(h, [self.batch, -1]), p["Wd"]) + p["bd"]

    def torch_params(self):
        """Filters as OIHW, and the dense rows in NCHW flattening order so that flattening
        the pooled NCHW tensor is a view and the model computes the NHWC one."""
        p = dict(self.params)
        for k in ("K1", "K2"):
            p[k] = np.ascontiguousarray(p[k].transpose(3, 2, 0, 1))
        wd = p["Wd"].reshape(*self.pooled, 10).transpose(2, 0, 1, 3)
        p["Wd"] = np.ascontiguousarray(wd.reshape(-1, 10))
        return p

    def torch_input(self, x):
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))

    def torch_logits(self, torch, p, x):
        F = torch.nn.functional
        h = x
        for i in (1, 2):  # 3x3 SAME at stride 1 pads one pixel on every side
            h = F.max_pool2d(F.relu(F.conv2d(h, p[f"K{i}"], p[f"b{i}"], padding=1)), 2, 2)
        return torch.addmm(p["bd"], h.flatten(1), p["Wd"])

    def jax_logits(self, jax, p, x):
        h = x
        for i in (1, 2):
            c = jax.lax.conv_general_dilated(h, p[f"K{i}"], (1, 1), "SAME",
                                             dimension_numbers=("NHWC", "HWIO", "NHWC"))
            h = jax.nn.relu(c + p[f"b{i}"])
            h = jax.lax.reduce_window(h, -jax.numpy.inf, jax.lax.max, (1, 2, 2, 1),
                                      (1, 2, 2, 1), "VALID")
        return h.reshape(x.shape[0], -1) @ p["Wd"] + p["bd"]


# -- one training step per framework ----------------------------------------------------------
class GraphcModel:
    """A model as a TF1 graph compiled by ``gc.compile`` (LLVM backend); ``compile_s`` is
    ``gc.compile`` plus the first step."""

    def __init__(self, model):
        graph = gc.Graph()
        with graph.as_default():
            x = gc.placeholder(gc.float32, model.x_shape, name="x")
            y = gc.placeholder(gc.int64, [model.batch], name="y")
            logits = model.graphc_logits(x)
            loss = gc.reduce_mean(gc.nn.sparse_softmax_cross_entropy_with_logits(
                labels=y, logits=logits))
            train = gc.train.GradientDescentOptimizer(bench_peers.SGD_LR).minimize(loss)
            t0 = time.perf_counter()
            self._step = gc.compile([loss, train], feeds=[x, y], backend="llvm")
        self.initial = {k: v.copy() for k, v in self._step.variables.items()}
        self.feed = {x: model.data[0], y: model.data[1]}
        self.first_loss = self.step()
        self.compile_s = time.perf_counter() - t0
        # Steps that tune their thread count (runtime.threads.BlasTuner) first time a few
        # dozen calls on each choice; the rounds measure the step a training loop runs after
        # that (a 20-ms step in rounds of 0.1 s would be timed while it still explores).
        # The parameters are put back as the first step left them (the losses of steps 1 and
        # 2 are compared with the peers').
        tuner = getattr(self._step.compiled.fn, "blas_tuner", None)
        after_first = {k: v.copy() for k, v in self._step.variables.items()}
        deadline = time.perf_counter() + 10.0
        while tuner is not None and tuner.best is None and time.perf_counter() < deadline:
            self.step()
        for name, arr in self._step.variables.items():
            np.copyto(arr, after_first[name])

    def step(self):
        return float(self._step(self.feed)[0])

    def reset(self):
        for name, arr in self._step.variables.items():
            np.copyto(arr, self.initial[name])


class TorchModel(bench_peers.TorchStep):
    """``bench_peers.TorchStep`` (``step``, ``reset``, eager or the whole step under
    ``torch.compile``) on a scaling model."""

    def __init__(self, torch, model, compiled):
        self.torch, self.model = torch, model
        self.initial = model.torch_params()
        self.params = {k: torch.tensor(v, requires_grad=True) for k, v in self.initial.items()}
        x, y = model.data
        self.x, self.y = torch.from_numpy(model.torch_input(x)), torch.from_numpy(y)
        self.opt = torch.optim.SGD(list(self.params.values()), lr=bench_peers.SGD_LR)
        self._start(compiled)

    def _step(self, x, y):
        # bench_peers' SGD step: the loss detached before backward() and the gradients set
        # to None keep dynamo's graph whole around backward()
        loss = self.torch.nn.functional.cross_entropy(
            self.model.torch_logits(self.torch, self.params, x), y)
        value = loss.detach()
        loss.backward()
        self.opt.step()
        for t in self.params.values():
            t.grad = None
        return value


class JaxModel(bench_peers.JaxStep):
    """``bench_peers.JaxStep`` (``step``, ``reset``: a ``jax.jit`` step with donated
    parameters) with hand-written SGD on a scaling model."""

    def __init__(self, jax, model):
        self.jax, self.workload = jax, model.label
        self.initial = model.params
        self.x, self.y = (jax.device_put(a) for a in model.data)
        self._fn = jax.jit(_jax_sgd_step(jax, model.jax_logits), donate_argnums=(0, 1))
        self.reset()
        t0 = time.perf_counter()
        self.first_loss = self.step()
        self.compile_s = time.perf_counter() - t0


def _jax_sgd_step(jax, logits_fn):
    """(params, state, x, y) -> (params, state, loss): mean sparse softmax cross-entropy
    through a log-sum-exp, then SGD (``state`` stays empty)."""
    jnp = jax.numpy

    def loss_fn(p, x, y):
        logits = logits_fn(jax, p, x)
        logz = jax.nn.logsumexp(logits, axis=1)
        return jnp.mean(logz - jnp.take_along_axis(logits, y[:, None], axis=1)[:, 0])

    def step(p, state, x, y):
        loss, g = jax.value_and_grad(loss_fn)(p, x, y)
        return {k: p[k] - bench_peers.SGD_LR * g[k] for k in p}, state, loss
    return step


def _build(model, peers, compile_torch):
    """{candidate: step object}, graphc first; a candidate that fails to build is reported
    and left out (a failure of one framework must not end the grid)."""
    torch, jax = peers.get("torch"), peers.get("jax")
    makers = [("graphc", lambda: GraphcModel(model))]
    if torch is not None:
        makers.append(("torch eager", lambda: TorchModel(torch, model, compiled=False)))
        if compile_torch:
            makers.append(("torch.compile", lambda: TorchModel(torch, model, compiled=True)))
    if jax is not None:
        makers.append(("jax.jit", lambda: JaxModel(jax, model)))
    steps = {}
    for name, make in makers:
        try:
            steps[name] = make()
        except Exception as e:  # noqa: BLE001 - any failure means "not measured"
            first = str(e).splitlines()[0] if str(e) else ""
            print(f"warning: {model.label} batch {model.batch}: {name} failed: "
                  f"{type(e).__name__}: {first}")
    return steps


# -- one row of the grid ----------------------------------------------------------------------
def _checked(steps):
    """((name, warm seconds) of the slowest candidate, None) when all first and second
    losses agree with graphc's (rtol 1e-3), else (None, the reason). The second step shows
    that every update happened alike; its duration estimates a step's cost."""
    if "graphc" not in steps:
        return None, "graphc failed to build"
    warm, second = {}, {}
    for name, s in steps.items():
        t0 = time.perf_counter()
        second[name] = s.step()
        warm[name] = time.perf_counter() - t0
    ref = steps["graphc"]
    bad = [f"{name} {s.first_loss:.6g}, {second[name]:.6g}" for name, s in steps.items()
           if not (np.isclose(s.first_loss, ref.first_loss, rtol=RTOL)
                   and np.isclose(second[name], second["graphc"], rtol=RTOL))]
    if bad:
        return None, (f"losses (steps 1, 2) differ from graphc's {ref.first_loss:.6g}, "
                      f"{second['graphc']:.6g}: " + "; ".join(bad))
    return max(warm.items(), key=lambda kv: kv[1]), None


def _fit_batch(model, slowest, max_step):
    """The largest power-of-two batch below ``model.batch`` whose slowest step is expected
    to take at most ``max_step`` seconds (step time taken as proportional to the batch)."""
    batch = model.batch
    while batch > 1 and slowest * batch / model.batch > max_step:
        batch //= 2
    return batch


def measure(model, peers, args, settle, may_shrink):
    """A result dict for one row: ``model``, ``ms`` {candidate: (median, min)}, ``compile``
    {candidate: first-step seconds}, ``note``; or ``skipped`` with the reason."""
    note = ""
    steps = _build(model, peers, not args.no_compile)
    slowest, problem = _checked(steps)
    if may_shrink and slowest and slowest[1] > args.max_step:
        batch = _fit_batch(model, slowest[1], args.max_step)
        note = (f"batch {model.batch} -> {batch}: {slowest[0]} took {slowest[1]:.2f} s per "
                f"step > {args.max_step:g} s")
        print(f"note: {model.label}: {note}")
        steps.clear()
        model = model.at_batch(batch)
        steps = _build(model, peers, not args.no_compile)
        slowest, problem = _checked(steps)
    if problem:
        print(f"warning: {model.label} batch {model.batch}: {problem}; row skipped")
        return {"model": model, "skipped": problem, "note": note}
    candidates = {k: (bench_llvm.settled(s.reset, settle), s.step) for k, s in steps.items()}
    times = bench_llvm.interleaved_times(candidates, args.rounds, args.min_time)
    ms = {k: (float(np.median(v)) * 1e3, min(v) * 1e3) for k, v in times.items()}
    return {"model": model, "ms": ms, "note": note,
            "compile": {k: s.compile_s for k, s in steps.items()}}


# -- the grid and its tables ------------------------------------------------------------------
def grid(parts, quick, batch_128):
    """{part: [(row label, model, may shrink its batch)]}: the issue's scaling grid, or one
    small row per part with ``quick``."""
    depths = (2,) if quick else (2, 8, 32, 64)
    widths = (64,) if quick else (64, 256, 1024, 4096)
    batches = (1,) if quick else (1, 32, 128, 1024, 8192)
    images = [(28, 1, 4)] if quick else [(28, 1, 32), (64, 3, 32), (128, 3, batch_128 or 32)]
    rows = {
        "depth": [(f"{d} hidden", lambda d=d: Mlp((784,) + (256,) * d + (10,), 128), False)
                  for d in depths],
        "width": [(f"w={w}", lambda w=w: Mlp((784, w, w, 10), 128), False) for w in widths],
        "batch": [(f"b={b}", lambda b=b: Mlp(W1_SIZES, b), False) for b in batches],
        "cnn": [(f"{hw}x{hw}", lambda hw=hw, c=c, b=b: Cnn(hw, c, b),
                 hw == 128 and not batch_128) for hw, c, b in images],
    }
    return {p: rows[p] for p in parts}


TITLES = {"depth": "depth: MLP 784-[256]*d-10 (d hidden layers), batch 128",
          "width": "width: MLP 784-w-w-10, batch 128",
          "batch": "batch: W1's model 784-256-256-10",
          "cnn": "cnn: conv3x3 SAME ->32, pool, conv3x3 SAME 32->64, pool, dense ->10"}


def _cell(ms, name):
    return f"{ms[name][0]:.3f} / {ms[name][1]:.3f}" if name in ms else "-"


def _best_peer(ms):
    """(name, median ms) of the fastest peer measured, or None."""
    got = [(name, ms[name][0]) for name in PEERS if name in ms]
    return min(got, key=lambda kv: kv[1]) if got else None


def print_table(part, rows):
    print(f"\n### {TITLES[part]}\n")
    print("ms per step, median / min of the rounds; best peer / graphc on medians (> 1: "
          "graphc faster)\n")
    head = ["row", "model", "batch", "graphc", *PEERS, "best peer / graphc",
            "graphc GFLOP/s", "graphc compile s"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for label, r in rows:
        m = r["model"]
        batch = f"{m.batch}*" if r["note"] else str(m.batch)
        if "skipped" in r:
            why = "losses disagree" if r["skipped"].startswith("losses") else r["skipped"]
            cells = [label, m.label, batch, f"skipped ({why})"] + [""] * (len(head) - 4)
        else:
            ms, best = r["ms"], _best_peer(r["ms"])
            g = ms["graphc"][0]
            ratio = f"{best[1] / g:.2f} ({best[0]})" if best else "-"
            cells = [label, m.label, batch, _cell(ms, "graphc"), *(_cell(ms, p) for p in PEERS),
                     ratio, f"{m.flops() / (g * 1e6):.1f}", f"{r['compile']['graphc']:.2f}"]
        print("| " + " | ".join(cells) + " |")
    for label, r in rows:
        if r["note"]:
            print(f"\n*{label}: {r['note']}")
    print("\nfirst-step (compile) seconds: " + "; ".join(
        f"{label} " + ", ".join(f"{k} {s:.2f}" for k, s in r["compile"].items())
        for label, r in rows if "compile" in r))


def print_behind(results):
    """Rows where a peer's median beats graphc's, with both throughputs: near the machine's
    peak the gap is in the kernels, far below it in per-step overhead."""
    lines = []
    for part, rows in results.items():
        for label, r in rows:
            for name in PEERS:
                if "ms" in r and name in r["ms"] and r["ms"][name][0] < r["ms"]["graphc"][0]:
                    g, p, f = r["ms"]["graphc"][0], r["ms"][name][0], r["model"].flops()
                    lines.append(f"- {part} {label} (batch {r['model'].batch}): {name} "
                                 f"{p:.3f} ms vs graphc {g:.3f} ms ({g / p:.2f}x slower); "
                                 f"GFLOP/s {f / (p * 1e6):.1f} vs {f / (g * 1e6):.1f}")
    print("\n### where graphc falls behind a peer\n")
    print("\n".join(lines) if lines else "nowhere in this grid")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", nargs="+", choices=list(TITLES), default=list(TITLES),
                        help="parts of the grid to run (default: all)")
    parser.add_argument("--threads", type=int, default=1,
                        help="threads for graphc, BLAS, PyTorch and XLA (set before they load)")
    parser.add_argument("--rounds", type=int, default=None, help="default 7 (--quick: 2)")
    parser.add_argument("--min-time", type=float, default=None,
                        help="seconds per batch (default 0.1; --quick: 0.02)")
    parser.add_argument("--settle", type=float, default=None,
                        help="untimed pause before each batch (default: 0.3 s with more than "
                             "one thread, else 0)")
    parser.add_argument("--max-step", type=float, default=1.0,
                        help="seconds a 128x128 CNN step may take before its batch is halved")
    parser.add_argument("--batch-128", type=int, default=None,
                        help="fix the 128x128 CNN's batch (e.g. the one a 1-thread run chose)")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    parser.add_argument("--quick", action="store_true", help="one small row per part")
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (2 if args.quick else 7)
    args.min_time = args.min_time if args.min_time is not None else (
        0.02 if args.quick else 0.1)
    settle = args.settle if args.settle is not None else (0.3 if args.threads > 1 else 0.0)
    peers = bench_peers._setup_peers(args.threads)
    print(f"graphc (llvm, cold compile); {bench_peers._versions(peers)}; threads "
          f"{args.threads}; settle {settle} s; {args.rounds} interleaved rounds of >= "
          f"{args.min_time} s")
    start, done, results = time.perf_counter(), {}, {}
    for part, rows in grid(args.part, args.quick, args.batch_128).items():
        results[part] = []
        for label, make, may_shrink in rows:
            model = make()
            if model.key not in done:  # W1 at batch 128 is in three parts: measured once
                print(f"{part} {label} ...", file=sys.stderr, flush=True)
                done[model.key] = measure(model, peers, args, settle, may_shrink)
            results[part].append((label, done[model.key]))
        print_table(part, results[part])
    print_behind(results)
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
