"""Hand-written NumPy training steps for the benchmark workloads W1..W5 (see workloads.md).

Each baseline is what a careful engineer writes by hand with NumPy: weights created once, every
buffer preallocated, GEMMs through ``np.matmul(..., out=)``, elementwise work as in-place
ufuncs, and the backward pass derived by hand. They are the bar graphc's compiled steps are
measured against, so ``check_gradients`` and ``check_updates`` prove them against float64
central differences and a plain reference optimizer.

Run as a script to print the median step time of each workload.
"""

import argparse
import math
import time

import numpy as np


def _flat_views(shapes, dtype):
    """One zeroed flat buffer and a dict of views into it, each starting 64-byte aligned.

    Keeping all parameters (and, separately, all gradients and optimizer slots) in one buffer
    turns the optimizer update and the global gradient norm into a few whole-buffer calls.
    """
    align = max(1, 64 // np.dtype(dtype).itemsize)
    offsets, total = {}, 0
    for name, shape in shapes.items():
        offsets[name] = total
        total += -(-math.prod(shape) // align) * align
    flat = np.zeros(total, dtype)
    views = {name: flat[offsets[name]:offsets[name] + math.prod(shape)].reshape(shape)
             for name, shape in shapes.items()}
    return flat, views


def _glorot(rng, shape, fan_in, fan_out):
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, shape)


class _SoftmaxXent:
    """Mean sparse softmax cross-entropy, computed in place in the logits buffer."""

    def __init__(self, batch, dtype):
        self.rows = np.arange(batch)
        self.rowmax = np.empty((batch, 1), dtype)
        self.total = np.empty((batch, 1), dtype)

    def forward(self, z, y):
        # Shift by the row max so exp cannot overflow; afterwards z holds the softmax.
        np.max(z, axis=1, keepdims=True, out=self.rowmax)
        z -= self.rowmax
        picked = z[self.rows, y]
        np.exp(z, out=z)
        np.sum(z, axis=1, keepdims=True, out=self.total)
        z /= self.total
        self.z, self.y = z, y
        return float(np.mean(np.log(self.total[:, 0]) - picked))

    def backward(self, scale):
        # d mean_i xent_i / dz = (softmax - onehot) / B; `scale` folds in the learning rate so
        # every parameter gradient below comes out pre-multiplied by it.
        c = scale / len(self.rows)
        self.z *= c
        self.z[self.rows, self.y] -= c
        return self.z


class Baseline:
    """A model with parameters in ``params``, gradients in ``grads`` and a fixed batch size.

    Subclasses define ``_forward(x, y) -> loss`` (keeping what the backward pass needs) and
    ``_backward(scale)`` (writing ``scale * dloss/dparam`` into ``grads``).
    """

    lr = 0.01

    def __init__(self, shapes, init, dtype):
        self.dtype = np.dtype(dtype)
        self.flat_params, self.params = _flat_views(shapes, self.dtype)
        self.flat_grads, self.grads = _flat_views(shapes, self.dtype)
        for name, value in init.items():
            self.params[name][...] = value

    def loss(self, x, y):
        """Forward pass only; returns the mean loss."""
        return self._forward(x, y)

    def loss_and_grads(self, x, y):
        """Returns the loss and leaves its exact gradients in ``grads`` (parameters unchanged)."""
        loss = self._forward(x, y)
        self._backward(1.0)
        return loss

    def step(self, x, y):
        """One SGD step in place; returns the loss before the update.

        The learning rate is folded into the loss gradient, so ``grads`` receives the update
        itself and applying it is one subtraction over the flat parameter buffer.
        """
        loss = self._forward(x, y)
        self._backward(self.lr)
        np.subtract(self.flat_params, self.flat_grads, out=self.flat_params)
        return loss


class MLP(Baseline):
    """Dense layers with an activation between them and softmax cross-entropy on the logits."""

    def __init__(self, sizes, activation, batch, seed=0, dtype=np.float32):
        rng = np.random.default_rng(seed)
        shapes, init = {}, {}
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            shapes[f"W{i}"], shapes[f"b{i}"] = (n_in, n_out), (n_out,)
            init[f"W{i}"] = _glorot(rng, (n_in, n_out), n_in, n_out)
        super().__init__(shapes, init, dtype)
        self.activation = activation
        self.batch = batch
        n = len(sizes) - 1
        self.layers = [(self.params[f"W{i}"], self.params[f"b{i}"]) for i in range(n)]
        self.layer_grads = [(self.grads[f"W{i}"], self.grads[f"b{i}"]) for i in range(n)]
        # out[i] is layer i's output (after its activation); out[-1] holds the logits.
        self.out = [np.empty((batch, m), dtype) for m in sizes[1:]]
        self.dout = [np.empty((batch, m), dtype) for m in sizes[1:-1]]
        self.deriv = [np.empty((batch, m), dtype) for m in sizes[1:-1]]
        self.xent = _SoftmaxXent(batch, dtype)

    def _forward(self, x, y):
        self.x = x
        a, last = x, len(self.layers) - 1
        for i, ((w, b), h) in enumerate(zip(self.layers, self.out)):
            np.matmul(a, w, out=h)
            h += b
            if i < last:
                if self.activation == "relu":
                    np.maximum(h, 0, out=h)
                else:
                    np.tanh(h, out=h)
            a = h
        return self.xent.forward(self.out[-1], y)

    def _backward(self, scale):
        d = self.xent.backward(scale)
        for i in range(len(self.layers) - 1, -1, -1):
            a = self.x if i == 0 else self.out[i - 1]
            dw, db = self.layer_grads[i]
            np.matmul(a.T, d, out=dw)
            np.sum(d, axis=0, out=db)
            if i == 0:
                break  # the input needs no gradient
            da, deriv = self.dout[i - 1], self.deriv[i - 1]
            np.matmul(d, self.layers[i][0].T, out=da)
            # Both derivatives come from the activation's output: relu' = [a > 0] (so
            # relu'(0) = 0) and tanh' = 1 - a^2.
            if self.activation == "relu":
                np.greater(a, 0, out=deriv)
            else:
                np.multiply(a, a, out=deriv)
                np.subtract(1, deriv, out=deriv)
            da *= deriv
            d = da


class W1(MLP):
    """MLP 784-256-256-10, ReLU, batch 128, SGD lr 0.01."""

    input_shape = (128, 784)

    def __init__(self, seed=0, dtype=np.float32):
        super().__init__((784, 256, 256, 10), "relu", 128, seed, dtype)


class W2(MLP):
    """MLP 64-64-10, tanh, batch 32, SGD lr 0.01."""

    input_shape = (32, 64)

    def __init__(self, seed=0, dtype=np.float32):
        super().__init__((64, 64, 10), "tanh", 32, seed, dtype)


class W3(Baseline):
    """Vanilla RNN, T=32, batch 32, input 32, hidden 128, readout of the last state, SGD.

    x is time-major [T, B, input]; h_t = tanh(x_t Wx + h_{t-1} Wh + b), h_{-1} = 0.
    """

    T, B, n_in, n_hidden, n_out = 32, 32, 32, 128, 10
    input_shape = (T, B, n_in)

    def __init__(self, seed=0, dtype=np.float32):
        rng = np.random.default_rng(seed)
        T, B, I, H, C = self.T, self.B, self.n_in, self.n_hidden, self.n_out
        shapes = {"Wx": (I, H), "Wh": (H, H), "b": (H,), "Wo": (H, C), "bo": (C,)}
        init = {"Wx": _glorot(rng, (I, H), I, H), "Wh": _glorot(rng, (H, H), H, H),
                "Wo": _glorot(rng, (H, C), H, C)}
        super().__init__(shapes, init, dtype)
        self.hs = np.empty((T, B, H), dtype)    # every state, kept for the backward pass
        self.da = np.empty((T, B, H), dtype)    # gradient wrt each step's pre-activation
        self.tmp = np.empty((B, H), dtype)
        self.dh = np.empty((B, H), dtype)
        self.wh_t = np.empty((H, H), dtype)
        self.logits = np.empty((B, C), dtype)
        self.xent = _SoftmaxXent(B, dtype)

    def _forward(self, x, y):
        p, hs = self.params, self.hs
        self.x = x = np.ascontiguousarray(x)
        T, B = self.T, self.B
        # The input projection of all steps is one GEMM; the loop adds only h_{t-1} Wh.
        np.matmul(x.reshape(T * B, -1), p["Wx"], out=hs.reshape(T * B, -1))
        hs += p["b"]
        np.tanh(hs[0], out=hs[0])
        for t in range(1, T):
            np.matmul(hs[t - 1], p["Wh"], out=self.tmp)
            hs[t] += self.tmp
            np.tanh(hs[t], out=hs[t])
        np.matmul(hs[-1], p["Wo"], out=self.logits)
        self.logits += p["bo"]
        return self.xent.forward(self.logits, y)

    def _backward(self, scale):
        p, g, hs, da, dh = self.params, self.grads, self.hs, self.da, self.dh
        T, B = self.T, self.B
        dz = self.xent.backward(scale)
        np.matmul(hs[-1].T, dz, out=g["Wo"])
        np.sum(dz, axis=0, out=g["bo"])
        np.matmul(dz, p["Wo"].T, out=dh)
        # tanh' = 1 - h^2 for all steps at once; the loop then multiplies in place.
        np.multiply(hs, hs, out=da)
        np.subtract(1, da, out=da)
        # A contiguous copy of Wh^T: small GEMMs against a transposed view run about half as
        # fast, and this one is reused T - 1 times.
        wh_t = self.wh_t
        np.copyto(wh_t, p["Wh"].T)
        for t in range(T - 1, 0, -1):
            da[t] *= dh
            np.matmul(da[t], wh_t, out=dh)
        da[0] *= dh
        # Weight gradients summed over time are single GEMMs over the stacked steps:
        # dWh pairs h_{t-1} with da_t (h_{-1} = 0 contributes nothing), dWx pairs x_t with da_t.
        H = self.n_hidden
        np.matmul(hs[:-1].reshape(-1, H).T, da[1:].reshape(-1, H), out=g["Wh"])
        np.matmul(self.x.reshape(T * B, -1).T, da.reshape(T * B, H), out=g["Wx"])
        np.sum(da.reshape(T * B, H), axis=0, out=g["b"])


class W4(Baseline):
    """Conv 3x3 1->8 VALID, ReLU, 2x2 max pool, dense 1352->10; NHWC batch 64x28x28x1, SGD.

    Two exact rewrites make it cheaper than the literal order (a compiled step matching it
    has to find them too): the max pool runs before the bias and ReLU (a per-channel bias is
    constant over each window and ReLU is monotone, so pool(relu(c + b)) = relu(pool(c) + b)),
    and the im2col rows are ordered (window position, sample, pooled row, pooled column) so
    the four pooling candidates are four contiguous slabs of the conv output. The pool's
    gradient goes to the first maximum of each window in row-major order.
    """

    N, K, C_out, n_out = 64, 3, 8, 10
    input_shape = (N, 28, 28, 1)

    def __init__(self, seed=0, dtype=np.float32):
        rng = np.random.default_rng(seed)
        N, K, F, C = self.N, self.K, self.C_out, self.n_out
        self.M = N * 13 * 13                     # pooled positions
        flat = 13 * 13 * F
        shapes = {"K": (K, K, 1, F), "bc": (F,), "Wd": (flat, C), "bd": (C,)}
        init = {"K": _glorot(rng, (K, K, 1, F), K * K, K * K * F),
                "Wd": _glorot(rng, (flat, C), flat, C)}
        super().__init__(shapes, init, dtype)
        # cols[kh, kw, c, dy, dx, n, i, j] = x[n, 2i + dy + kh, 2j + dx + kw, c]
        self.cols = np.empty((K, K, 1, 2, 2, N, 13, 13), dtype)
        self.conv = np.empty((4, self.M, F), dtype)     # [window position, pooled pos, channel]
        self.pmax = np.empty((self.M, F), dtype)
        self.act = np.empty((N, flat), dtype)           # NHWC-flattened relu(pool + bias)
        self.logits = np.empty((N, C), dtype)
        self.dact = np.empty((N, flat), dtype)
        self.relu_mask = np.empty((N, flat), dtype)
        self.is_max = np.empty((self.M, F), bool)
        self.dconv = np.empty((4, self.M, F), dtype)
        self.xent = _SoftmaxXent(N, dtype)

    def _forward(self, x, y):
        p, N, K, F = self.params, self.N, self.K, self.C_out
        windows = np.lib.stride_tricks.sliding_window_view(x, (K, K), axis=(1, 2))
        # [n, oh, ow, c, kh, kw] -> [kh, kw, c, dy, dx, n, i, j] with oh = 2i + dy, ow = 2j + dx
        windows = windows.reshape(N, 13, 2, 13, 2, 1, K, K).transpose(6, 7, 5, 2, 4, 0, 1, 3)
        np.copyto(self.cols, windows)
        cols = self.cols.reshape(K * K, -1)
        np.matmul(cols.T, p["K"].reshape(K * K, F), out=self.conv.reshape(-1, F))
        c = self.conv
        np.maximum(c[0], c[1], out=self.pmax)
        np.maximum(self.pmax, c[2], out=self.pmax)
        np.maximum(self.pmax, c[3], out=self.pmax)
        act = self.act.reshape(self.M, F)
        np.add(self.pmax, p["bc"], out=act)
        np.maximum(act, 0, out=act)
        np.matmul(self.act, p["Wd"], out=self.logits)
        self.logits += p["bd"]
        return self.xent.forward(self.logits, y)

    def _backward(self, scale):
        p, g, K, F = self.params, self.grads, self.K, self.C_out
        dz = self.xent.backward(scale)
        np.matmul(self.act.T, dz, out=g["Wd"])
        np.sum(dz, axis=0, out=g["bd"])
        np.matmul(dz, p["Wd"].T, out=self.dact)
        np.greater(self.act, 0, out=self.relu_mask)
        self.dact *= self.relu_mask
        dpool = self.dact.reshape(self.M, F)
        np.sum(dpool, axis=0, out=g["bc"])
        # Route each window's gradient to its first maximum in row-major order, exactly one
        # element even on ties (frequent on real images: flat regions give equal outputs).
        # dconv[3] carries what is not yet routed; each earlier position takes its share.
        d = self.dconv
        np.copyto(d[3], dpool)
        for k in range(3):
            np.equal(self.conv[k], self.pmax, out=self.is_max)
            np.multiply(d[3], self.is_max, out=d[k])
            d[3] -= d[k]
        np.matmul(self.cols.reshape(K * K, -1), d.reshape(-1, F), out=g["K"].reshape(K * K, F))


class W5(W1):
    """W1 trained with Adam (TF1 form) after clipping the gradients by global norm."""

    def __init__(self, seed=0, dtype=np.float32, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                 clip_norm=1.0):
        super().__init__(seed, dtype)
        self.lr, self.beta1, self.beta2, self.eps, self.clip_norm = lr, beta1, beta2, eps, clip_norm
        self.m = np.zeros_like(self.flat_params)
        self.v = np.zeros_like(self.flat_params)
        self.tmp = np.empty_like(self.flat_params)
        self.t = 0

    def step(self, x, y):
        loss = self._forward(x, y)
        self._backward(1.0)
        g, m, v, tmp = self.flat_grads, self.m, self.v, self.tmp
        b1, b2 = self.beta1, self.beta2
        # clip_by_global_norm multiplies g by s = clip / max(norm, clip); s is folded into the
        # moment coefficients instead of costing a pass over g. Alignment gaps hold zeros.
        norm = math.sqrt(float(np.dot(g, g)))
        s = self.clip_norm / max(norm, self.clip_norm)
        self.t += 1
        lr_t = self.lr * math.sqrt(1 - b2 ** self.t) / (1 - b1 ** self.t)
        m *= b1
        np.multiply(g, (1 - b1) * s, out=tmp)
        m += tmp
        v *= b2
        np.multiply(g, g, out=g)
        g *= (1 - b2) * s * s
        v += g
        # theta -= lr_t * m / (sqrt(v) + eps), epsilon outside the bias correction as in TF1.
        np.sqrt(v, out=tmp)
        tmp += self.eps
        np.divide(m, tmp, out=tmp)
        tmp *= lr_t
        self.flat_params -= tmp
        return loss


WORKLOADS = {"W1": W1, "W2": W2, "W3": W3, "W4": W4, "W5": W5}


def make_data(workload, seed=0, dtype=np.float32):
    """Random inputs and int64 labels 0..9 of the shapes `workload` ("W1".."W5") trains on.

    Example:
        >>> x, y = make_data("W3")
        >>> x.shape, y.shape, y.dtype
        ((32, 32, 32), (32,), dtype('int64'))
    """
    cls = WORKLOADS[workload]
    rng = np.random.default_rng(seed)
    # Pixels in [0, 1) for the image workloads, unit normals for the RNN's inputs.
    x = rng.standard_normal(cls.input_shape) if cls is W3 else rng.random(cls.input_shape)
    y = rng.integers(0, 10, cls.input_shape[1] if cls is W3 else cls.input_shape[0])
    return x.astype(dtype), y.astype(np.int64)


def check_gradients(seed=0, workloads=None, eps=1e-6, rtol=1e-5, atol=1e-8):
    """Compare each workload's hand-derived gradients with float64 central differences.

    Every parameter tensor is probed along one random unit direction v: the analytic
    <grad, v> must match (L(p + eps v) - L(p - eps v)) / (2 eps). Biases get random values
    first so that no term is tested only at zero. W4 is probed a second time ("W4 ties") on
    blocky images whose pooling windows tie exactly, as real images' flat regions do: the
    loss stays differentiable there, and routing a window's gradient to more than one
    element would show.

    Returns:
        {workload: {param: (analytic, numeric)}}

    Raises:
        AssertionError: listing every mismatch.
    """
    report, failures = {}, []
    for name in workloads or WORKLOADS:
        x, y = make_data(name, seed=seed + 1, dtype=np.float64)
        cases = {name: x}
        if name == "W4":
            blocks = np.random.default_rng(seed + 3).integers(0, 3, (len(x), 7, 7)) / 2
            cases["W4 ties"] = blocks.repeat(4, axis=1).repeat(4, axis=2)[..., None]
        for case, x in cases.items():
            model = WORKLOADS[name](seed=seed, dtype=np.float64)
            report[case] = _probe(model, x, y, np.random.default_rng(seed + 2), eps)
            for pname, (analytic, numeric) in report[case].items():
                if not abs(analytic - numeric) <= atol + rtol * abs(numeric):
                    failures.append(f"{case}.{pname}: analytic {analytic:.9g}, "
                                    f"numeric {numeric:.9g}")
    if failures:
        raise AssertionError("gradient mismatch:\n  " + "\n  ".join(failures))
    return report


def _probe(model, x, y, rng, eps):
    for param in model.params.values():
        if param.ndim == 1:
            param[...] = 0.1 * rng.standard_normal(param.shape)
    model.loss_and_grads(x, y)
    grads = {k: v.copy() for k, v in model.grads.items()}
    base = model.flat_params.copy()
    result = {}
    for pname, param in model.params.items():
        v = rng.standard_normal(param.shape)
        v /= np.linalg.norm(v)
        param += eps * v
        plus = model.loss(x, y)
        np.copyto(model.flat_params, base)
        param -= eps * v
        minus = model.loss(x, y)
        np.copyto(model.flat_params, base)
        result[pname] = (float(np.vdot(grads[pname], v)), (plus - minus) / (2 * eps))
    return result


def check_updates(seed=0, steps=3):
    """Check that step() applies the documented optimizer to the gradients (float64).

    SGD workloads must move the parameters by exactly -lr * grad. W5 is compared over several
    steps with a plain Adam written from its definition, once with clipping active and once
    with a norm too large to clip.

    Raises:
        AssertionError: naming the workload whose update differs.
    """
    for name, cls in WORKLOADS.items():
        configs = [{"clip_norm": 1e-2}, {"clip_norm": 1e6}] if cls is W5 else [{}]
        for config in configs:
            model = cls(seed=seed, dtype=np.float64, **config)
            ref = _ReferenceAdam(model, **config) if cls is W5 else None
            for t in range(steps):
                x, y = make_data(name, seed=seed + 10 + t, dtype=np.float64)
                loss = model.loss_and_grads(x, y)
                grads = {k: v.copy() for k, v in model.grads.items()}
                expected = ref.update(grads) if ref else {
                    k: model.params[k] - model.lr * grads[k] for k in grads}
                step_loss = model.step(x, y)
                assert step_loss == loss, f"{name}: step loss {step_loss} != {loss}"
                for k, want in expected.items():
                    np.testing.assert_allclose(model.params[k], want, rtol=1e-10, atol=1e-12,
                                               err_msg=f"{name} {config} step {t}: {k}")


class _ReferenceAdam:
    """Global-norm clipping then TF1 Adam, written per tensor straight from the definition."""

    def __init__(self, model, clip_norm):
        self.model, self.clip = model, clip_norm
        self.m = {k: np.zeros_like(p) for k, p in model.params.items()}
        self.v = {k: np.zeros_like(p) for k, p in model.params.items()}
        self.t = 0

    def update(self, grads):
        mdl = self.model
        norm = math.sqrt(sum(float(np.sum(g * g)) for g in grads.values()))
        grads = {k: g * self.clip / max(norm, self.clip) for k, g in grads.items()}
        self.t += 1
        lr_t = mdl.lr * math.sqrt(1 - mdl.beta2 ** self.t) / (1 - mdl.beta1 ** self.t)
        out = {}
        for k, g in grads.items():
            self.m[k] = mdl.beta1 * self.m[k] + (1 - mdl.beta1) * g
            self.v[k] = mdl.beta2 * self.v[k] + (1 - mdl.beta2) * g * g
            out[k] = mdl.params[k] - lr_t * self.m[k] / (np.sqrt(self.v[k]) + mdl.eps)
        return out


def time_steps(workload, repeats=7, min_time=0.2, seed=0):
    """Median and min seconds per step over `repeats` timed runs of at least `min_time` s."""
    model = WORKLOADS[workload](seed=seed)
    x, y = make_data(workload, seed=seed)
    start, n = time.perf_counter(), 0
    while time.perf_counter() - start < min_time:  # warm up and size each run
        model.step(x, y)
        n += 1
    per_run = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(n):
            model.step(x, y)
        per_run.append((time.perf_counter() - start) / n)
    return float(np.median(per_run)), min(per_run)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workloads", nargs="*", default=list(WORKLOADS))
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--min-time", type=float, default=0.2, help="seconds per timed run")
    args = parser.parse_args(argv)
    print(f"numpy {np.__version__}, float32, median of {args.repeats} runs")
    print(f"{'workload':8} {'median ms':>10} {'min ms':>8}  description")
    for name in args.workloads:
        median, best = time_steps(name, args.repeats, args.min_time)
        doc = WORKLOADS[name].__doc__.splitlines()[0]
        print(f"{name:8} {median * 1e3:10.3f} {best * 1e3:8.3f}  {doc}")


if __name__ == "__main__":
    main()
