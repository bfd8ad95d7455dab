"""Op families of the random graphs, continued: convolution and pooling, softmax and the
cross-entropies, ``where`` and ``cond``, RNN cells, gradients and Hessian-vector products
(see ``families`` for the drawer / builder contract).
"""
import math

import numpy as np

import graphc as gc

from .families import _const, random_shape


# -- convolution and pooling ----------------------------------------------------------------------
# ``--large`` images and filters also draw these channel counts: past the direct kernels'
# taps and output vectors (``kernels.conv.VECTOR_TAPS``, ``windows.VECTOR_CHANNELS``), so the
# convolutions and their gradients run as implicit GEMMs.
LARGE_CHANNELS = (8, 16, 20, 33)
LARGE_COUT = (8, 24, 65, 70)


def _image(g):
    r = g.rng
    if g.large and r.random() < 0.5:
        make = lambda: (int(r.integers(1, 3)), int(r.integers(6, 15)), int(r.integers(6, 15)),
                        int(r.choice(LARGE_CHANNELS)))
    else:
        make = lambda: (int(r.integers(1, 3)), int(r.integers(3, 8)), int(r.integers(3, 8)),
                        int(r.integers(1, 4)))
    return g.pick(lambda s: len(s) == 4 and min(s[1:3]) >= 3, make)


def _window(r, hw):
    k = tuple(int(r.integers(1, min(3, d) + 1)) for d in hw)
    s = tuple(int(r.choice([1, 1, 2])) for _ in hw)
    return k, s, ("SAME" if r.random() < 0.5 else "VALID")


def _rate(r, k, s, hw):
    """A dilation rate: 2 now and then, where TF1 allows one (strides 1) and the spread taps
    fit the image."""
    if s != (1, 1) or r.random() >= 0.3 or any(2 * (t - 1) + 1 > d for t, d in zip(k, hw)):
        return (1, 1)
    return (2, 2)


def draw_conv(g):
    _draw_convolution(g, "conv2d", 5, lambda k, c: (k[0] * k[1] * c) ** 0.75)


def draw_depthwise(g):
    """A depthwise convolution: each channel with its own filters (a multiplier of 1-2)."""
    _draw_convolution(g, "depthwise", 3, lambda k, c: (k[0] * k[1]) ** 0.75)


def _draw_convolution(g, kind, out_limit, taps_weight):
    """An image, a filter [kh, kw, channels, 1..out_limit-1], strides, padding and rate."""
    x = _image(g)
    r = g.rng
    _, h, w, c = g.shape(x)
    k, s, pad = _window(r, (h, w))
    if g.large and kind == "conv2d" and r.random() < 0.4:
        want = k + (c, int(r.choice(LARGE_COUT)))
    else:
        want = k + (c, int(r.integers(1, out_limit)))
    f = g.pick(lambda sh: sh == want, lambda: want)
    g.add_op(kind, [x, f], {"strides": s, "padding": pad, "rate": _rate(r, k, s, (h, w))},
             g.bound(x) * g.bound(f) * taps_weight(k, c))


def draw_pool(g):
    x = _image(g)
    k, s, pad = _window(g.rng, g.shape(x)[1:3])
    kind = "max" if g.rng.random() < 0.5 else "avg"
    g.add_op("pool", [x], {"kind": kind, "ksize": k, "strides": s, "padding": pad},
             g.bound(x))


def build_conv(xs, p, name):
    s, rate = p["strides"], p.get("rate", (1, 1))
    return gc.nn.conv2d(xs[0], xs[1], strides=[1, s[0], s[1], 1], padding=p["padding"],
                        dilations=[1, rate[0], rate[1], 1])


def build_depthwise(xs, p, name):
    s, rate = p["strides"], p.get("rate", (1, 1))
    return gc.nn.depthwise_conv2d(xs[0], xs[1], [1, s[0], s[1], 1], p["padding"],
                                  rate=list(rate))


def build_pool(xs, p, name):
    fn = gc.nn.max_pool if p["kind"] == "max" else gc.nn.avg_pool
    k, s = p["ksize"], p["strides"]
    return fn(xs[0], [1, k[0], k[1], 1], [1, s[0], s[1], 1], p["padding"])


def draw_conv_block(g):
    """A CNN layer as TF1 tutorials write it: conv2d (strides 1 mostly), a bias per output
    channel, ReLU (or nothing), and max pooling over windows side by side (stride = window):
    the pattern the LLVM backend computes in one kernel (``folds.conv_pool``)."""
    r = g.rng
    x = _image(g)
    _, h, w, c = g.shape(x)
    k = tuple(int(r.integers(1, min(3, d) + 1)) for d in (h, w))
    s = (1, 1) if r.random() < 0.8 else (1, 2)
    pad = "SAME" if r.random() < 0.5 else "VALID"
    oh, ow = ((-(-d // t)) if pad == "SAME" else (d - kk) // t + 1
              for d, kk, t in zip((h, w), k, s))
    windows = [p for p in ((2, 2), (1, 2), (2, 1), (3, 3)) if p[0] <= oh and p[1] <= ow]
    if not windows:
        return
    pool = windows[int(r.integers(len(windows)))]
    cout = int(r.integers(1, 17 if g.large else 10))
    want = k + (c, cout)
    f = g.pick(lambda sh: sh == want, lambda: want)
    b = g.pick(lambda sh: sh == (cout,), lambda: (cout,))
    relu = bool(r.random() < 0.7)
    g.add_op("conv_block", [x, f, b], {"strides": s, "padding": pad, "relu": relu,
                                       "pool": pool},
             g.bound(x) * g.bound(f) * (k[0] * k[1] * c) ** 0.75 + g.bound(b))


def build_conv_block(xs, p, name):
    s, (ph, pw) = p["strides"], p["pool"]
    a = gc.nn.conv2d(xs[0], xs[1], strides=[1, s[0], s[1], 1], padding=p["padding"]) + xs[2]
    if p["relu"]:
        a = gc.nn.relu(a)
    return gc.nn.max_pool(a, [1, ph, pw, 1], [1, ph, pw, 1], "VALID")


def draw_batch_norm(g):
    """Batch normalization of a value of rank 2 or more over every axis but the last, with
    the batch's own moments (TF1's ``tf.nn.moments`` + ``tf.nn.batch_normalization``), and
    an offset and scale per channel."""
    x = g.pick(lambda s: len(s) >= 2)
    if x is None:
        return
    shape = g.shape(x)
    c, count = shape[-1], int(np.prod(shape[:-1]))
    offset = g.pick(lambda s: s == (c,), lambda: (c,))
    scale = g.pick(lambda s: s == (c,), lambda: (c,))
    g.add_op("batch_norm", [x, offset, scale], {"eps": 1e-3},
             math.sqrt(count) * g.bound(scale) + g.bound(offset))


def build_batch_norm(xs, p, name):
    x = xs[0]
    mean, variance = gc.nn.moments(x, list(range(len(x.shape) - 1)))
    return gc.nn.batch_normalization(x, mean, variance, xs[1], xs[2], p["eps"])


# -- softmax and cross-entropy --------------------------------------------------------------------
def draw_softmax(g):
    x = g.pick(lambda s: len(s) >= 1)
    if x is None:
        return
    log = bool(g.rng.random() < 0.4)
    n = g.shape(x)[-1]
    g.add_op("softmax", [x], {"log": log}, 2 * g.bound(x) + math.log(n) if log else 1.0)


def draw_xent(g):
    r = g.rng
    logits = g.pick(lambda s: len(s) == 2, lambda: random_shape(r, 2))
    b, c = g.shape(logits)
    bound = 2 * g.bound(logits) + math.log(c)
    if r.random() < 0.5:
        labels = r.integers(0, c, b).astype(np.int32)
        g.add_op("sparse_xent", [logits], {"labels": labels}, bound)
        return
    if r.random() < 0.4:  # one-hot labels, TF1's usual form: a zero under most logits
        labels = r.integers(0, c, b).astype(np.int32)
        g.add_op("onehot_xent", [logits], {"labels": labels, "classes": int(c)}, bound)
        return
    labels = g.pick(lambda s: s == (b, c), lambda: (b, c))
    g.add_op("xent", [logits, labels], {}, bound)


def build_softmax(xs, p, name):
    return (gc.nn.log_softmax if p["log"] else gc.nn.softmax)(xs[0])


def build_sparse_xent(xs, p, name):
    return gc.nn.sparse_softmax_cross_entropy_with_logits(labels=gc.constant(p["labels"]),
                                                          logits=xs[0])


def build_onehot_xent(xs, p, name):
    labels = gc.one_hot(gc.constant(p["labels"]), p["classes"], dtype=xs[0].dtype)
    return gc.nn.softmax_cross_entropy_with_logits(labels=labels, logits=xs[0])


def build_xent(xs, p, name):
    labels = gc.nn.softmax(xs[1])  # a distribution; its gradient flows too (v2)
    return gc.nn.softmax_cross_entropy_with_logits_v2(labels=labels, logits=xs[0])


# -- where and cond -------------------------------------------------------------------------------
BRANCHES = {"tanh": gc.tanh, "double": lambda x: x * 2.0, "square": gc.square,
            "sigmoid": gc.sigmoid}


def draw_where(g):
    a = g.pick()
    sa = g.shape(a)
    b = g.pick(lambda s: s == sa, lambda: sa)
    mask_shape = sa[int(g.rng.integers(0, len(sa) + 1)):]
    m = g.new_leaf(mask_shape, "bool")  # a fed mask: no near-ties deciding the branch
    g.add_op("where", [m, a, b], {}, max(g.bound(a), g.bound(b)))


def draw_cond(g):
    a = g.pick()
    sa = g.shape(a)
    b = g.pick(lambda s: s == sa, lambda: sa)
    pred = g.new_leaf((), "bool")
    names = list(BRANCHES)
    fa, fb = (names[int(g.rng.integers(len(names)))] for _ in range(2))
    g.add_op("cond", [pred, a, b], {"true": fa, "false": fb},
             max(g.bound(a), g.bound(b)) ** 2 * 2)


def build_where(xs, p, name):
    m, a, b = xs
    if tuple(m.shape) != tuple(a.shape):
        m = gc.broadcast_to(m, list(a.shape) if a.shape.is_fully_defined() else gc.shape(a))
    return gc.where(m, a, b)


def build_cond(xs, p, name):
    pred, a, b = xs
    return gc.cond(pred, lambda: BRANCHES[p["true"]](a), lambda: BRANCHES[p["false"]](b))


# -- RNN cells ------------------------------------------------------------------------------------
# ``--large`` cells also draw these widths: their GEMMs (in a loop's body too) past a register
# tile and vector panels.
LARGE_UNITS = (16, 40, 70)


def _units(g, lo, hi):
    r = g.rng
    if g.large and r.random() < 0.4:
        return int(r.choice(LARGE_UNITS))
    return int(r.integers(lo, hi))


def _cell_kernel(g, rows, cols):
    """A cell's kernel, uniform in +-0.6; in ``--large`` graphs +-0.6 sqrt(8 / rows) past 8
    rows (a wide cell's pre-activations stay as large as a narrow one's)."""
    kernel = g.rng.uniform(-0.6, 0.6, (rows, cols))
    return kernel * math.sqrt(8.0 / rows) if g.large and rows > 8 else kernel


def draw_rnn(g):
    r = g.rng
    x = g.pick(lambda s: len(s) == 2, lambda: random_shape(r, 2))
    batch, depth = g.shape(x)
    units = _units(g, 2, 6)
    lstm = bool(r.random() < 0.5)
    gates = 4 if lstm else 1
    kernel = _cell_kernel(g, depth + units, gates * units)
    bias = r.uniform(-0.3, 0.3, gates * units)
    ins = [x]
    if r.random() < 0.4:  # a given initial state (h, and c for an LSTM)
        ins += [g.pick(lambda s: s == (batch, units), lambda: (batch, units))
                for _ in range(2 if lstm else 1)]
    steps = int(r.integers(1, 3))
    g.add_op("rnn", ins, {"lstm": lstm, "units": units, "kernel": kernel, "bias": bias,
                          "steps": steps, "output": "c" if lstm and r.random() < 0.3 else "h"},
             4.0)


def build_rnn(xs, p, name):
    x = xs[0]
    dt = x.dtype
    init = lambda arr: (lambda shape, dtype=None: gc.constant(arr, dtype=dt))
    kw = {"kernel_initializer": init(p["kernel"]), "bias_initializer": init(p["bias"])}
    if p["lstm"]:
        cell = gc.nn.rnn_cell.BasicLSTMCell(p["units"], name=f"{name}_lstm", **kw)
    else:
        cell = gc.nn.rnn_cell.BasicRNNCell(p["units"], name=f"{name}_rnn", **kw)
    if len(xs) > 1:
        state = gc.nn.rnn_cell.LSTMStateTuple(xs[2], xs[1]) if p["lstm"] else xs[1]
    else:
        batch = x.shape[0]
        state = cell.zero_state(gc.shape(x)[0] if batch is None else int(batch), dt)
    out = None
    for t in range(p["steps"]):
        out, state = cell(x if t == 0 else gc.tanh(x) * 0.5, state)
    return state.c if p["output"] == "c" else out


# -- loops (loop nodes: a body run as a loop, its adjoint a loop) ---------------------------------
def draw_loop(g):
    """dynamic_rnn over [batch, time, depth], a scan, or a while_loop whose condition reads
    data (bounded by maximum_iterations, so that it can be differentiated)."""
    r = g.rng
    kind = str(r.choice(["dynamic_rnn", "scan", "while"]))
    if kind == "dynamic_rnn":
        x = g.pick(lambda s: len(s) == 3 and min(s) >= 1, lambda: random_shape(r, 3))
        if x is None or min(g.shape(x)) < 1:
            return
        units = _units(g, 2, 5)
        lstm = bool(r.random() < 0.5)
        gates = 4 if lstm else 1
        depth = g.shape(x)[2]
        g.add_op("loop", [x], {"kind": kind, "lstm": lstm, "units": units,
                               "kernel": _cell_kernel(g, depth + units, gates * units),
                               "bias": r.uniform(-0.3, 0.3, gates * units),
                               "reverse": False, "output": str(r.choice(["outputs", "state"]))},
                 4.0)
        return
    x = g.pick(lambda s: len(s) >= 1 and s[0] >= 1)
    if x is None:
        return
    c = float(r.uniform(0.3, 0.9))
    params = {"kind": kind, "c": c, "reverse": bool(r.random() < 0.3),
              "steps": int(r.integers(1, 6)), "limit": float(r.uniform(0.5, 40.0))}
    g.add_op("loop", [x], params, 2.0 + g.bound(x))


def build_loop(xs, p, name):
    x = xs[0]
    dt = x.dtype
    if p["kind"] == "dynamic_rnn":
        init = lambda arr: (lambda shape, dtype=None: gc.constant(arr, dtype=dt))
        kw = {"kernel_initializer": init(p["kernel"]), "bias_initializer": init(p["bias"])}
        cell = (gc.nn.rnn_cell.BasicLSTMCell if p["lstm"] else gc.nn.rnn_cell.BasicRNNCell)(
            p["units"], name=f"{name}_cell", **kw)
        out, state = gc.nn.dynamic_rnn(cell, x, dtype=dt, scope=f"{name}_rnn")
        if p["output"] == "outputs":
            return out
        return state.h if p["lstm"] else state
    c = gc.constant(p["c"], dtype=dt)
    if p["kind"] == "scan":
        a0 = gc.tanh(x[0]) * 0.5
        return gc.scan(lambda a, e: gc.tanh(a * c + e * 0.5), x, initializer=a0,
                       reverse=p["reverse"])
    limit = gc.constant(p["limit"], dtype=dt)
    _, s = gc.while_loop(lambda i, s: gc.reduce_sum(s * s) < limit,
                         lambda i, s: (i + 1, gc.tanh(s) * c + x * 0.5), (0, x * 0.5),
                         maximum_iterations=p["steps"])
    return s


# -- gradients ------------------------------------------------------------------------------------
def _ancestors(g, i):
    """Float values ``i`` depends on (itself excluded), nearest first."""
    seen, stack, out = set(), [i], []
    while stack:
        j = stack.pop()
        for k in getattr(g.items[j], "inputs", ()):
            if k not in seen:
                seen.add(k)
                stack.append(k)
                if g.items[k].dtype == g.dtype:
                    out.append(k)
    return sorted(out, reverse=True)


def draw_grad(g, second=False):
    r = g.rng
    # differentiate a graph of at most 12 ops (6 for second order): adjoint graphs grow
    # fast and compiling them is what a fuzzing run pays for
    limit = 6 if second else 12
    ops = [i for i in g.floats() if hasattr(g.items[i], "kind")
           and sum(1 for k in _ancestors(g, i) if hasattr(g.items[k], "kind")) < limit]
    if not ops:
        return
    y = ops[-1 - int(min(r.exponential(2.0), len(ops) - 1))]
    xs = _ancestors(g, y)
    if not xs:
        return
    leaves = [k for k in xs if not hasattr(g.items[k], "kind")]
    pool = leaves if leaves and r.random() < 0.7 else xs
    x = pool[int(r.integers(len(pool)))]
    w = r.uniform(-1.0, 1.0, g.shape(y))
    params = {"w": w}
    if second:
        params["v"] = r.uniform(-1.0, 1.0, g.shape(x))
    g.add_op("hvp" if second else "grad", [y, x], params, 8.0)


def draw_hvp(g):
    draw_grad(g, second=True)


def _grad(y, x):
    # zeros, not None, where y does not depend on x (TF1's default gives None)
    return gc.gradients(y, [x], unconnected_gradients="zero")[0]


def build_grad(xs, p, name):
    y, x = xs
    return _grad(gc.reduce_sum(y * _const(p["w"], y)), x)


def build_hvp(xs, p, name):
    """Gradients of (gradients . v): forward-over-reverse through the graph's own VJPs."""
    y, x = xs
    dx = _grad(gc.reduce_sum(y * _const(p["w"], y)), x)
    return _grad(gc.reduce_sum(dx * _const(p["v"], x)), x)



# -- variables and their updates ------------------------------------------------------------------
# Patterns that fail today are listed in KNOWN_BAD_ASSIGNS and drawn only with
# ``known_bugs``. "old_and_new" (an assign's result and a later read of the old value in one
# expression) was one until the optimized schedule stopped reporting a cycle for it.
ASSIGNS = ("decay", "add", "sgd", "old_and_new")
KNOWN_BAD_ASSIGNS = ()


def draw_assign(g):
    """A variable of a value's shape, updated from that value (the step's second call sees
    the update); "old_and_new" also reads the variable after the assign (the old value)."""
    x = g.pick()
    lf = g.rng.uniform(0.1, 1.5, g.shape(x)) * g.rng.choice([-1.0, 1.0], g.shape(x))
    forms = ASSIGNS + (KNOWN_BAD_ASSIGNS if g.known_bugs else ())
    form = forms[int(g.rng.integers(len(forms)))]
    g.add_op("assign", [x], {"init": lf.astype(g.dtype), "form": form},
             2 * (1.5 + g.bound(x)))


# TF1's optimizers the random graphs train with (``draw_optimizer``)
OPTIMIZERS = ("momentum", "nesterov", "adam", "rmsprop", "rmsprop_momentum", "adagrad",
              "adadelta")


def draw_optimizer(g):
    """A variable of a value's shape and a scalar one, trained by one of TF1's optimizers
    (``OPTIMIZERS``) on ``sum(tanh(v * x + b))``, sometimes with the gradients clipped by
    their global norm first: the step's second call reads the updated variables and the
    optimizer's slots (moments, accumulators, Adam's powers of beta)."""
    r = g.rng
    x = g.pick()
    init = (r.uniform(0.1, 1.5, g.shape(x)) * r.choice([-1.0, 1.0], g.shape(x)))
    opt = OPTIMIZERS[int(r.integers(len(OPTIMIZERS)))]
    g.add_op("optimizer", [x], {"init": init.astype(g.dtype), "opt": opt,
                                "clip": bool(r.random() < 0.3)},
             float(max(int(np.prod(g.shape(x))), 1)))


def build_optimizer(xs, p, name):
    x = xs[0]
    v = gc.Variable(p["init"], name=f"{name}_v")
    b = gc.Variable(np.asarray(0.25, p["init"].dtype), name=f"{name}_b")
    loss = gc.reduce_sum(gc.tanh(v * x + b))
    opt = {"momentum": lambda: gc.train.MomentumOptimizer(0.1, 0.9),
           "nesterov": lambda: gc.train.MomentumOptimizer(0.1, 0.9, use_nesterov=True),
           "adam": lambda: gc.train.AdamOptimizer(0.05),
           "rmsprop": lambda: gc.train.RMSPropOptimizer(0.05),
           "rmsprop_momentum": lambda: gc.train.RMSPropOptimizer(0.05, momentum=0.5),
           "adagrad": lambda: gc.train.AdagradOptimizer(0.1),
           "adadelta": lambda: gc.train.AdadeltaOptimizer(1.0)}[p["opt"]]()
    if p["clip"]:
        grads, variables = zip(*opt.compute_gradients(loss, var_list=[v, b]))
        clipped, _ = gc.clip_by_global_norm(list(grads), 1.0)
        train = opt.apply_gradients(list(zip(clipped, variables)))
    else:
        train = opt.minimize(loss, var_list=[v, b])
    with gc.control_dependencies([train]):
        return gc.identity(loss)


def build_assign(xs, p, name):
    x = xs[0]
    v = gc.Variable(p["init"], name=f"{name}_v")
    form = p["form"]
    if form == "decay":
        return gc.assign(v, v - 0.1 * gc.tanh(x) * v)
    if form == "add":
        return gc.assign_add(v, 0.1 * x)
    if form == "old_and_new":
        new = gc.assign(v, v * 0.5 + gc.tanh(x))
        return new + (v * 1.5 + 1.0)  # built after the assign: reads the old value
    loss = gc.reduce_sum(gc.tanh(v * x))
    train = gc.train.GradientDescentOptimizer(0.1).minimize(loss, var_list=[v])
    with gc.control_dependencies([train]):
        return gc.identity(loss)
