"""Convolution layers with many channels: forward + both gradients, hand-written NumPy
(im2col + BLAS GEMMs, col2im by tap) against graphc's NumPy and LLVM backends.

W4 (3x3, 1 -> 8 channels) exercises the direct kernels; real CNNs stack 3x3 layers of tens
of channels, where the LLVM backend runs implicit GEMMs (``codegen/llvm/kernels/conv_gemm.py``).
Each case is one step of ``loss = sum(conv2d(x, w) * r)`` returning y, dx and dw; candidates
run interleaved, medians of ``--rounds`` rounds, ms per step, and the results are checked
against each other first.

Then LAYERS, graphc's backends alone: a stride-2 layer (its input gradient runs one implicit
GEMM per phase, ``conv_phases``), depthwise layers (``depthwise_conv2d``, against the same
layer written as one conv2d with a block-diagonal [3, 3, C, C M] filter, C times the work) and
a dilated layer (taps 2 apart, against the plain 5x5 convolution with a zero-inserted filter,
25/9 times the work): the "as conv2d" column.

    python benchmarks/bench_conv.py [--rounds 7] [--threads N]
"""
import argparse
import os
import sys
import time

if __name__ == "__main__" and "--threads" in sys.argv:  # BLAS reads it when it loads
    os.environ["OPENBLAS_NUM_THREADS"] = sys.argv[sys.argv.index("--threads") + 1]

import numpy as np

import graphc as gc

# (batch, height/width, in channels, out channels): 3x3 SAME, stride 1
CASES = [(32, 14, 32, 64), (64, 28, 1, 32), (16, 8, 64, 128), (64, 28, 16, 32)]


# (name, batch, height/width, channels, out channels or multiplier, stride, kind): 3x3 SAME
LAYERS = [("3x3/2 conv 32->64", 32, 28, 32, 64, 2, "conv"),
          ("3x3 depthwise 64", 32, 28, 64, 1, 1, "depthwise"),
          ("3x3/2 depthwise 32 x2", 32, 28, 32, 2, 2, "depthwise"),
          ("3x3 rate 2 conv 32->64", 32, 28, 32, 64, 1, "dilated")]


class HandWritten:
    """im2col conv layer with preallocated buffers: forward, dx and dw."""

    def __init__(self, n, hw, cin, cout, k=3):
        self.n, self.hw, self.cin, self.cout, self.k = n, hw, cin, cout, k
        self.xp = np.zeros((n, hw + k - 1, hw + k - 1, cin), np.float32)
        self.cols = np.empty((n, hw, hw, k, k, cin), np.float32)
        self.y = np.empty((n * hw * hw, cout), np.float32)
        self.dw = np.empty((k * k * cin, cout), np.float32)
        self.dcols = np.empty((n * hw * hw, k * k * cin), np.float32)
        self.dxp = np.empty_like(self.xp)

    def step(self, x, w, r):
        k, p = self.k, self.k // 2
        self.xp[:, p:p + self.hw, p:p + self.hw] = x
        win = np.lib.stride_tricks.sliding_window_view(self.xp, (k, k), axis=(1, 2))
        np.copyto(self.cols, win.transpose(0, 1, 2, 4, 5, 3))
        cols = self.cols.reshape(-1, k * k * self.cin)
        np.matmul(cols, w.reshape(-1, self.cout), out=self.y)
        dy = r.reshape(-1, self.cout)                     # d(sum(y * r)) / dy
        np.matmul(cols.T, dy, out=self.dw)
        np.matmul(dy, w.reshape(-1, self.cout).T, out=self.dcols)
        self.dxp[...] = 0
        dc = self.dcols.reshape(self.n, self.hw, self.hw, k, k, self.cin)
        for i in range(k):
            for j in range(k):
                self.dxp[:, i:i + self.hw, j:j + self.hw] += dc[:, :, :, i, j]
        return (self.y.reshape(r.shape), self.dxp[:, p:p + self.hw, p:p + self.hw],
                self.dw.reshape(w.shape))


def graphc_step(case, backend, stride=1, kind="conv", as_conv2d=False):
    """One step returning y, dx and dw. ``kind`` "depthwise": case[3] is the channel
    multiplier; "dilated": taps 2 apart. ``as_conv2d``: the layer as one plain conv2d (a
    block-diagonal or zero-inserted filter)."""
    n, hw, cin, cout = case
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, [n, hw, hw, cin])
        w = gc.placeholder(gc.float32, [3, 3, cin, cout])
        strides = [1, stride, stride, 1]
        if kind == "depthwise" and as_conv2d:
            eye = np.eye(cin, dtype=np.float32)[None, None, :, :, None]
            full = gc.reshape(gc.expand_dims(w, 3) * eye, [3, 3, cin, cin * cout])
            y = gc.nn.conv2d(x, full, strides, "SAME")
        elif kind == "depthwise":
            y = gc.nn.depthwise_conv2d(x, w, strides, "SAME")
        elif kind == "dilated" and as_conv2d:
            y = gc.nn.conv2d(x, _zero_inserted(w), strides, "SAME")
        else:
            y = gc.nn.conv2d(x, w, strides, "SAME", dilations=2 if kind == "dilated" else None)
        r = gc.placeholder(gc.float32, y.shape)
        dx, dw = gc.gradients(gc.reduce_sum(y * r), [x, w])
        step = gc.compile([y, dx, dw], feeds=[x, w, r], backend=backend)
    return (lambda xv, wv, rv: step({x: xv, w: wv, r: rv})), tuple(y.shape)


def _zero_inserted(w):
    """[3, 3, c, o] -> [5, 5, c, o], a zero between taps (how dilations ran before)."""
    for axis in (0, 1):
        spread = gc.stack([w, gc.zeros_like(w)], axis=axis + 1)
        dims = list(w.shape)
        dims[axis] *= 2
        size = list(dims)
        size[axis] -= 1
        w = gc.slice(gc.reshape(spread, dims), [0, 0, 0, 0], size)
    return w


def interleaved(fns, rounds, min_time=0.1):
    counts = {}
    for k, f in fns.items():
        start, c = time.perf_counter(), 0
        while time.perf_counter() - start < min_time:
            f()
            c += 1
        counts[k] = max(c, 3)
    times = {k: [] for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            start = time.perf_counter()
            for _ in range(counts[k]):
                f()
            times[k].append((time.perf_counter() - start) / counts[k])
    return {k: float(np.median(v)) * 1e3 for k, v in times.items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    print(f"numpy {np.__version__}; BLAS threads {args.threads or 'auto'}; medians of "
          f"{args.rounds} interleaved rounds; ms per step (forward + dx + dw)")
    print(f"{'case (n, hw, cin, cout)':26} {'hand-written':>12} {'np-backend':>11} "
          f"{'llvm':>8} {'x hand':>7} {'x np-be':>8} {'GFLOP/s llvm':>13}")
    for case in CASES:
        n, hw, cin, cout = case
        rng = np.random.default_rng(0)
        xv = rng.standard_normal((n, hw, hw, cin)).astype(np.float32)
        wv = (rng.standard_normal((3, 3, cin, cout)) * 0.1).astype(np.float32)
        rv = rng.standard_normal((n, hw, hw, cout)).astype(np.float32)
        hand = HandWritten(n, hw, cin, cout)
        fns = {"hand": lambda: hand.step(xv, wv, rv),
               "numpy": (lambda f: lambda: f(xv, wv, rv))(graphc_step(case, "numpy")[0]),
               "llvm": (lambda f: lambda: f(xv, wv, rv))(graphc_step(case, "llvm")[0])}
        ref = [np.asarray(a, np.float64) for a in fns["hand"]()]
        for name in ("numpy", "llvm"):
            for a, b in zip(fns[name](), ref):
                np.testing.assert_allclose(a, b, rtol=0, atol=2e-3 * max(np.abs(b).max(), 1))
        ms = interleaved(fns, args.rounds)
        gflops = 3 * 2 * n * hw * hw * 9 * cin * cout / (ms["llvm"] * 1e6)
        print(f"{str(case):26} {ms['hand']:12.3f} {ms['numpy']:11.3f} {ms['llvm']:8.3f} "
              f"{ms['hand'] / ms['llvm']:7.2f} {ms['numpy'] / ms['llvm']:8.2f} {gflops:13.1f}")
    layers(args.rounds)


def layers(rounds):
    print(f"\n{'layer (32x28x28)':24} {'np-backend':>11} {'llvm':>8} "
          f"{'llvm as conv2d':>15} {'x conv2d':>9}")
    for name, n, hw, c, k, stride, kind in LAYERS:
        rng = np.random.default_rng(0)
        fns = {}
        for key, backend, as_conv2d in (("numpy", "numpy", False), ("llvm", "llvm", False),
                                        ("as_conv2d", "llvm", True)):
            if key == "as_conv2d" and kind == "conv":
                continue
            f, yshape = graphc_step((n, hw, c, k), backend, stride, kind, as_conv2d)
            fns[key] = f
        xv = rng.standard_normal((n, hw, hw, c)).astype(np.float32)
        wv = (rng.standard_normal((3, 3, c, k)) * 0.1).astype(np.float32)
        rv = rng.standard_normal(yshape).astype(np.float32)
        ref = [np.asarray(a, np.float64) for a in fns["numpy"](xv, wv, rv)]
        for key in fns:
            for a, b in zip(fns[key](xv, wv, rv), ref):
                np.testing.assert_allclose(a, b, rtol=0, atol=2e-3 * max(np.abs(b).max(), 1))
        ms = interleaved({key: (lambda f: lambda: f(xv, wv, rv))(f) for key, f in fns.items()},
                         rounds)
        old = f"{ms['as_conv2d']:15.3f} {ms['as_conv2d'] / ms['llvm']:9.2f}" \
            if "as_conv2d" in ms else f"{'-':>15} {'-':>9}"
        print(f"{name:24} {ms['numpy']:11.3f} {ms['llvm']:8.3f} {old}")


if __name__ == "__main__":
    main()
