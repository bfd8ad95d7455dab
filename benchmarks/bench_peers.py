"""Benchmark graphc against PyTorch and JAX on the workloads W1..W5 (see workloads.md).

Each workload's training step runs as graphc's LLVM backend (a ``gc.compile`` step built by
``bench_llvm``), optionally graphc's NumPy backend, the hand-written NumPy step
(``baselines.py``), PyTorch eager, PyTorch under ``torch.compile`` and JAX under ``jax.jit``,
whichever of the peers are installed (a missing one is skipped with a message). Every model
starts from the baseline's initial weights and trains on the same data; the first step's
losses are checked against the baseline's. Candidates run in interleaved batches, each batch
from the initial parameters; figures are medians over the rounds, in ms per step, and the
ratios are peer / graphc LLVM (above 1 means graphc is faster).

    python benchmarks/bench_peers.py [W1 ...] [--rounds 7] [--min-time 0.1] [--threads N]
        [--numpy-backend] [--no-compile] [--settle S]

``--threads`` sets OpenBLAS's threads for NumPy and graphc, PyTorch's intra-op threads and
XLA's CPU threading alike (default: 1, the steadiest on a shared machine).
"""
import argparse
import sys
import time
from pathlib import Path


def _threads_from_argv(argv):
    if "--threads" in argv:
        return int(argv[argv.index("--threads") + 1])
    return 1


if __name__ == "__main__":  # thread pools read these when their libraries load
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import thread_env
    thread_env.set_threads(_threads_from_argv(sys.argv))

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import baselines  # noqa: E402
import bench_llvm  # noqa: E402

SGD_LR = 0.01
ADAM = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8)


def _import(name):
    try:
        return __import__(name)
    except ImportError:
        return None


def _initial_params(workload):
    """The baseline's initial parameters as float32 copies (name -> array)."""
    base = baselines.WORKLOADS[workload](seed=0)
    return {k: np.array(v, np.float32) for k, v in base.params.items()}


def _as_torch_layout(workload, params):
    """W4's parameters in PyTorch's conv layout: the filter as OIHW and the dense weights'
    rows permuted from NHWC to NCHW flattening order, so flattening the pooled NCHW tensor
    is a view and the model computes exactly the NHWC one."""
    if workload != "W4":
        return params
    p = dict(params)
    p["K"] = np.ascontiguousarray(params["K"].transpose(3, 2, 0, 1))
    wd = params["Wd"].reshape(13, 13, 8, 10).transpose(2, 0, 1, 3)
    p["Wd"] = np.ascontiguousarray(wd.reshape(13 * 13 * 8, 10))
    return p


# -- PyTorch ----------------------------------------------------------------------------------
def _torch_logits(torch, workload, p, x):
    F = torch.nn.functional
    if workload in ("W1", "W2", "W5"):
        act = torch.relu if workload != "W2" else torch.tanh
        n = len([k for k in p if k.startswith("W")])
        h = x
        for i in range(n):
            h = torch.addmm(p[f"b{i}"], h, p[f"W{i}"])
            if i < n - 1:
                h = act(h)
        return h
    if workload == "W3":
        # The input projection of all steps as one GEMM, as a PyTorch user would write it.
        T, B, _ = x.shape
        xw = torch.addmm(p["b"], x.reshape(T * B, -1), p["Wx"]).reshape(T, B, -1)
        h = torch.tanh(xw[0])
        for t in range(1, T):
            h = torch.tanh(torch.addmm(xw[t], h, p["Wh"]))
        return torch.addmm(p["bo"], h, p["Wo"])
    a = F.relu(F.conv2d(x, p["K"], p["bc"]))
    pooled = F.max_pool2d(a, 2, 2)
    return torch.addmm(p["bd"], pooled.flatten(1), p["Wd"])


class TorchStep:
    """One workload in PyTorch: eager, or the whole step under ``torch.compile``."""

    def __init__(self, torch, workload, data, compiled):
        self.torch, self.workload = torch, workload
        self.initial = _as_torch_layout(workload, _initial_params(workload))
        self.params = {k: torch.tensor(v, requires_grad=True) for k, v in self.initial.items()}
        x, y = data
        if workload == "W4":  # one input channel: NHWC and NCHW hold the same bytes
            x = x.reshape(x.shape[0], 1, x.shape[1], x.shape[2])
        self.x, self.y = torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y)
        plist = list(self.params.values())
        if workload == "W5":
            self.opt = torch.optim.Adam(plist, lr=ADAM["lr"], eps=ADAM["eps"],
                                        betas=(ADAM["beta1"], ADAM["beta2"]))
        else:
            self.opt = torch.optim.SGD(plist, lr=SGD_LR)
        self._start(compiled)

    def _start(self, compiled):
        """The step function (eager or compiled), and the first step, timed."""
        if compiled:
            # Each model compiles afresh: the steps share one code object, and its
            # recompilations would otherwise pile up towards dynamo's cache limit.
            self.torch._dynamo.reset()
        self._fn = self.torch.compile(self._step) if compiled else self._step
        t0 = time.perf_counter()
        self.first_loss = self.step()
        self.compile_s = time.perf_counter() - t0

    def _step(self, x, y):
        logits = _torch_logits(self.torch, self.workload, self.params, x)
        loss = self.torch.nn.functional.cross_entropy(logits, y)
        value = loss.detach()
        loss.backward()
        if self.workload == "W5":
            self.torch.nn.utils.clip_grad_norm_(self.params.values(), 1.0)
        self.opt.step()
        for t in self.params.values():  # zero_grad(set_to_none=True), which dynamo traces
            t.grad = None
        return value

    def step(self):
        return float(self._fn(self.x, self.y))

    def reset(self):
        """Parameters back to their initial values and Adam's moments and count to zero, in
        place (new tensors would make a compiled step recompile)."""
        with self.torch.no_grad():
            for k, t in self.params.items():
                t.copy_(self.torch.from_numpy(self.initial[k]))
            for state in self.opt.state.values():
                for v in state.values():
                    if isinstance(v, self.torch.Tensor):
                        v.zero_()


# -- JAX --------------------------------------------------------------------------------------
def _jax_logits(jax, workload, p, x):
    jnp = jax.numpy
    if workload in ("W1", "W2", "W5"):
        act = jax.nn.relu if workload != "W2" else jnp.tanh
        n = len([k for k in p if k.startswith("W")])
        h = x
        for i in range(n):
            h = h @ p[f"W{i}"] + p[f"b{i}"]
            if i < n - 1:
                h = act(h)
        return h
    if workload == "W3":
        T, B, _ = x.shape
        xw = (x.reshape(T * B, -1) @ p["Wx"] + p["b"]).reshape(T, B, -1)
        h0 = jnp.tanh(xw[0])
        h, _ = jax.lax.scan(lambda h, xt: (jnp.tanh(xt + h @ p["Wh"]), None), h0, xw[1:])
        return h @ p["Wo"] + p["bo"]
    c = jax.lax.conv_general_dilated(x, p["K"], (1, 1), "VALID",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    a = jax.nn.relu(c + p["bc"])
    pooled = jax.lax.reduce_window(a, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
    return pooled.reshape(x.shape[0], -1) @ p["Wd"] + p["bd"]


def _jax_step_fn(jax, workload):
    """A pure step (params, opt_state, x, y) -> (params, opt_state, loss), hand-written SGD or
    clip-by-global-norm + TF1 Adam (epsilon outside the bias correction)."""
    jnp = jax.numpy

    def loss_fn(p, x, y):
        logits = _jax_logits(jax, workload, p, x)
        logz = jax.nn.logsumexp(logits, axis=1)
        return jnp.mean(logz - jnp.take_along_axis(logits, y[:, None], axis=1)[:, 0])

    def step(p, state, x, y):
        loss, g = jax.value_and_grad(loss_fn)(p, x, y)
        if workload != "W5":
            return {k: p[k] - SGD_LR * g[k] for k in p}, state, loss
        m, v, t = state
        norm = jnp.sqrt(sum(jnp.sum(gk * gk) for gk in g.values()))
        s = 1.0 / jnp.maximum(norm, 1.0)
        t = t + 1
        b1, b2 = ADAM["beta1"], ADAM["beta2"]
        lr_t = ADAM["lr"] * jnp.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        m = {k: b1 * m[k] + (1 - b1) * s * g[k] for k in p}
        v = {k: b2 * v[k] + (1 - b2) * jnp.square(s * g[k]) for k in p}
        p = {k: p[k] - lr_t * m[k] / (jnp.sqrt(v[k]) + ADAM["eps"]) for k in p}
        return p, (m, v, t), loss
    return step


class JaxStep:
    """One workload as a ``jax.jit`` step with donated parameter and optimizer buffers."""

    def __init__(self, jax, workload, data):
        self.jax, self.workload = jax, workload
        self.initial = _initial_params(workload)
        self.x, self.y = (jax.device_put(a) for a in data)
        self._fn = jax.jit(_jax_step_fn(jax, workload), donate_argnums=(0, 1))
        self.reset()
        t0 = time.perf_counter()
        self.first_loss = self.step()
        self.compile_s = time.perf_counter() - t0

    def reset(self):
        put = self.jax.device_put
        self.p = {k: put(v) for k, v in self.initial.items()}
        if self.workload == "W5":
            zeros = {k: put(np.zeros_like(v)) for k, v in self.initial.items()}
            self.state = (zeros, {k: put(np.zeros_like(v)) for k, v in self.initial.items()},
                          put(np.float32(0)))
        else:
            self.state = ()

    def step(self):
        self.p, self.state, loss = self._fn(self.p, self.state, self.x, self.y)
        return float(loss)


# -- the comparison ---------------------------------------------------------------------------
def _peer_steps(workload, data, peers, compile_torch):
    """{name: step object} for every installed peer; compile failures are reported, not
    fatal."""
    steps, torch, jax = {}, peers.get("torch"), peers.get("jax")
    if torch is not None:
        steps["torch eager"] = TorchStep(torch, workload, data, compiled=False)
        if compile_torch:
            try:
                steps["torch.compile"] = TorchStep(torch, workload, data, compiled=True)
            except Exception as e:  # noqa: BLE001 - any backend failure means "not measured"
                print(f"{workload}: torch.compile failed: {type(e).__name__}: "
                      f"{str(e).splitlines()[0] if str(e) else ''}")
    if jax is not None:
        steps["jax.jit"] = JaxStep(jax, workload, data)
    return steps


def bench(workload, peers, rounds, min_time, numpy_backend, compile_torch, settle=0.0):
    """(medians in seconds by candidate, compile seconds by candidate) for one workload.

    Raises:
        AssertionError: when a candidate's first loss differs from the baseline's.
    """
    data = baselines.make_data(workload)
    ref_loss = baselines.WORKLOADS[workload](seed=0).loss(*data)
    base = [None]

    def fresh_baseline():
        base[0] = baselines.WORKLOADS[workload](seed=0)
    graphc = {"graphc llvm": bench_llvm.GraphcStep(workload, "llvm", data)}
    if numpy_backend:
        graphc["graphc numpy"] = bench_llvm.GraphcStep(workload, "numpy", data)
    peer = _peer_steps(workload, data, peers, compile_torch)
    for name, s in {**graphc, **peer}.items():
        if not np.isclose(s.first_loss, ref_loss, rtol=1e-4):
            raise AssertionError(f"{workload}: {name} loss {s.first_loss} != baseline {ref_loss}")
    # The second loss shows that the update happened (a step that silently skipped it,
    # e.g. gradients lost in tracing, would repeat the first loss and time only a forward).
    ref_model = baselines.WORKLOADS[workload](seed=0)
    ref_model.step(*data)
    ref_second = ref_model.step(*data)
    for name, s in peer.items():
        second = s.step()
        if not np.isclose(second, ref_second, rtol=1e-4):
            raise AssertionError(f"{workload}: {name} second loss {second} != baseline "
                                 f"{ref_second}")
    settled = bench_llvm.settled
    candidates = {"numpy": (settled(fresh_baseline, settle), lambda: base[0].step(*data))}
    candidates.update({k: (settled(s.reset, settle), s.compiled_step) for k, s in graphc.items()})
    candidates.update({k: (settled(s.reset, settle), s.step) for k, s in peer.items()})
    med = bench_llvm.interleaved(candidates, rounds, min_time)
    return med, {k: s.compile_s for k, s in {**graphc, **peer}.items()}


def _versions(peers):
    out = [f"numpy {np.__version__}"]
    for name, mod in peers.items():
        out.append(f"{name} {mod.__version__}" if mod is not None else f"{name} not installed")
    return "; ".join(out)


def _setup_peers(threads):
    """{"torch": module or None, "jax": module or None}, with their threads set."""
    peers = {"torch": _import("torch"), "jax": _import("jax")}
    if peers["torch"] is not None:
        peers["torch"].set_num_threads(threads)
        # Without it dynamo breaks the graph at loss.backward() (three graphs per step, and
        # the compiled step ran slower than eager on W2 and W1).
        peers["torch"]._dynamo.config.trace_autograd_ops = True
    if peers["jax"] is not None:
        peers["jax"].config.update("jax_platforms", "cpu")
    for name, mod in peers.items():
        if mod is None:
            print(f"{name} is not installed: skipped")
    return peers


def _print_table(results, columns):
    peers = [c for c in columns if c not in ("numpy", "graphc llvm", "graphc numpy")]
    head = f"{'wl':3} " + " ".join(f"{c:>13}" for c in columns)
    head += " | " + " ".join(f"{p + '/llvm':>18}" for p in ["numpy"] + peers)
    print(head)
    for w, ms in results.items():
        row = f"{w:3} " + " ".join(f"{ms[c]:13.3f}" if c in ms else f"{'-':>13}"
                                   for c in columns)
        row += " | " + " ".join(f"{ms[p] / ms['graphc llvm']:18.2f}" if p in ms else f"{'-':>18}"
                                for p in ["numpy"] + peers)
        print(row)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workloads", nargs="*", default=list(baselines.WORKLOADS))
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--min-time", type=float, default=0.1, help="seconds per batch")
    parser.add_argument("--threads", type=int, default=1,
                        help="threads for BLAS, PyTorch and XLA (set before they load)")
    parser.add_argument("--numpy-backend", action="store_true",
                        help="also time graphc's NumPy backend")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    parser.add_argument("--settle", type=float, default=None,
                        help="untimed pause before each batch (default: 0.3 s with more than "
                             "one thread, else 0)")
    args = parser.parse_args(argv)
    settle = args.settle if args.settle is not None else (0.3 if args.threads > 1 else 0.0)
    peers = _setup_peers(args.threads)
    print(f"{_versions(peers)}; threads {args.threads}; settle {settle} s; medians of "
          f"{args.rounds} interleaved rounds; ms per step; ratios peer / graphc llvm (> 1: graphc faster)")
    results, compiles = {}, {}
    for w in args.workloads:
        med, comp = bench(w, peers, args.rounds, args.min_time, args.numpy_backend,
                          not args.no_compile, settle)
        results[w] = {k: v * 1e3 for k, v in med.items()}
        compiles[w] = comp
    columns = list(dict.fromkeys(c for ms in results.values() for c in ms))
    _print_table(results, columns)
    print("first-step (compile) seconds: " + "; ".join(
        f"{w} " + ", ".join(f"{k} {s:.2f}" for k, s in c.items()) for w, c in compiles.items()))


if __name__ == "__main__":
    main()
