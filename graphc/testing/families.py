"""The op families of the random graphs: for each kind, a drawer (random choices -> one op of
the recipe) and a builder (input tensors + those choices -> a tensor, through the public API).

Drawers read the pool through the ``graphs.Generator`` they get (``g.pick``, ``g.new_leaf``,
``g.shape``, ``g.bound``) and append with ``g.add_op(kind, inputs, params, bound)``, where
``bound`` is a rough bound of the result's magnitude (the generator rescales above
``graphs.MAX_BOUND``). Builders take every random choice from ``params``, never from an RNG,
so a recipe rebuilds identically.
"""
import math

import numpy as np

import graphc as gc

DIMS = (1, 2, 3, 4, 5, 7, 8)
# Matrix dims past a vector register and a register tile (16 float32 lanes, 12-row blocks, two
# vectors per panel) with remainders: the native GEMM's full-panel and edge paths.
GEMM_DIMS = (9, 13, 16, 17, 24, 33)
# ``--large`` graphs also draw these: several row blocks and column panels split over threads,
# B rows packed (N >= 512; N >= 256 under 25 rows or more on AVX2), K past one packed block
# (``kernels.gemm.PACK_WHOLE_BYTES``: 1100 rows of 64 bytes), and products past the native
# limit that go to BLAS.
LARGE_GEMM_DIMS = (40, 64, 97, 128, 131, 200, 257, 300, 513, 530, 1100)


def gemm_dim(g):
    """A matrix dim of generator ``g``: a small one, one past a register tile, or (``g.large``)
    a large one."""
    r = g.rng
    if g.large and r.random() < 0.35:
        return int(r.choice(LARGE_GEMM_DIMS))
    return int(r.choice(GEMM_DIMS if r.random() < 0.25 else DIMS))


def random_shape(rng, rank=None, lo=0):
    rank = int(rng.integers(lo, 4)) if rank is None else rank
    return tuple(int(rng.choice(DIMS)) for _ in range(rank))


def _const(value, like):
    return gc.constant(np.asarray(value), dtype=like.dtype)


def _size(shape):
    return int(np.prod(shape, dtype=np.int64))


# -- elementwise ----------------------------------------------------------------------------------
UNARY = {
    "tanh": (gc.tanh, lambda b: min(b, 1.0)),
    "sigmoid": (gc.sigmoid, lambda b: 1.0),
    "relu": (gc.nn.relu, lambda b: b),
    "negative": (gc.negative, lambda b: b),
    "abs": (gc.abs, lambda b: b),
    "square": (gc.square, lambda b: b * b),
    "exp": (gc.exp, lambda b: math.exp(min(b, 50.0))),
    "exp_tanh": (lambda x: gc.exp(gc.tanh(x)), lambda b: math.e),
    "sqrt_sq": (lambda x: gc.sqrt(x * x + 0.25), lambda b: math.sqrt(b * b + 0.25)),
    "log_sq": (lambda x: gc.log(x * x + 0.5), lambda b: max(0.7, math.log(b * b + 0.5))),
    "softplus": (gc.nn.softplus, lambda b: b + 1.0),
    "leaky_relu": (lambda x: gc.nn.leaky_relu(x, 0.2), lambda b: b),
    "elu": (gc.nn.elu, lambda b: b),
    "rsqrt_sq": (lambda x: gc.rsqrt(x * x + 0.5), lambda b: 1.5),
    "affine": (lambda x: x * 0.5 + 1.0, lambda b: 0.5 * b + 1.0),
}
BINARY = {
    "add": (gc.add, lambda a, b: a + b),
    "subtract": (gc.subtract, lambda a, b: a + b),
    "multiply": (gc.multiply, lambda a, b: a * b),
    "maximum": (gc.maximum, lambda a, b: max(a, b)),
    "minimum": (gc.minimum, lambda a, b: max(a, b)),
    "divide_sq": (lambda x, y: x / (y * y + 0.5), lambda a, b: 2.0 * a),
    "squared_difference": (gc.squared_difference, lambda a, b: (a + b) ** 2),
    "diff_of_squares": (lambda x, y: (x + y) * (x - y), lambda a, b: (a + b) ** 2),
}


def draw_unary(g):
    x = g.pick()
    name = list(UNARY)[int(g.rng.integers(len(UNARY)))]
    if name == "exp" and g.bound(x) > 8:
        name = "exp_tanh"
    g.add_op("unary", [x], {"fn": name}, UNARY[name][1](g.bound(x)))


def _broadcast_partner(g, shape):
    """A shape that broadcasts against ``shape`` to ``shape`` (dims set to 1, leading dims
    dropped), or ``shape`` itself."""
    r = g.rng
    out = [1 if r.random() < 0.3 else d for d in shape]
    drop = int(r.integers(0, len(shape) + 1)) if r.random() < 0.4 else 0
    return tuple(out[drop:])


def draw_binary(g):
    a = g.pick()
    sa = g.shape(a)
    if g.rng.random() < 0.15:
        b = a  # the same tensor twice
    else:
        ok = lambda s: np.broadcast_shapes(s, sa) == sa if _broadcastable(s, sa) else False
        b = g.pick(ok, lambda: _broadcast_partner(g, sa))
    if g.rng.random() < 0.5:
        a, b = b, a
    name = list(BINARY)[int(g.rng.integers(len(BINARY)))]
    g.add_op("binary", [a, b], {"fn": name}, BINARY[name][1](g.bound(a), g.bound(b)))


def _broadcastable(s, t):
    try:
        np.broadcast_shapes(s, t)
        return True
    except ValueError:
        return False


def build_unary(xs, p, name):
    return UNARY[p["fn"]][0](xs[0])


def build_binary(xs, p, name):
    return BINARY[p["fn"]][0](xs[0], xs[1])


def build_scale(xs, p, name):
    return xs[0] * p["c"]


def build_identity(xs, p, name):
    return xs[0]


# -- reductions -----------------------------------------------------------------------------------
REDUCE = {"sum": gc.reduce_sum, "mean": gc.reduce_mean, "max": gc.reduce_max,
          "min": gc.reduce_min, "logsumexp": gc.reduce_logsumexp}


def draw_reduce(g):
    x = g.pick(lambda s: len(s) >= 1)
    if x is None:
        return
    shape = g.shape(x)
    r = g.rng
    mode = r.integers(3)
    if mode == 0:
        axis = None
    elif mode == 1:
        axis = int(r.integers(-len(shape), len(shape)))
    else:
        axis = sorted(int(a) for a in r.choice(len(shape), int(r.integers(1, len(shape) + 1)),
                                               replace=False))
    fn = list(REDUCE)[int(r.integers(len(REDUCE)))]
    n = _size(shape) if axis is None else _size([shape[a] for a in np.atleast_1d(axis)])
    bound = g.bound(x) * (n ** 0.75 if fn == "sum" else 1) + \
        (math.log(n) if fn == "logsumexp" else 0)
    g.add_op("reduce", [x], {"fn": fn, "axis": axis, "keepdims": bool(r.random() < 0.4)},
             bound)


def build_reduce(xs, p, name):
    return REDUCE[p["fn"]](xs[0], axis=p["axis"], keepdims=p["keepdims"])


# -- matmul ---------------------------------------------------------------------------------------
def _matrix(g, rows, cols, transposed):
    """A rank-2 value that is [rows, cols] after the optional transpose."""
    want = (cols, rows) if transposed else (rows, cols)
    return g.pick(lambda s: s == want, lambda: want)


def draw_matmul(g):
    r = g.rng
    ta, tb = bool(r.random() < 0.4), bool(r.random() < 0.4)
    if r.random() < 0.25:  # the same tensor as both operands
        a = g.pick(lambda s: len(s) == 2,
                   lambda: (gemm_dim(g), gemm_dim(g)) if g.large else random_shape(r, 2))
        m, k = g.shape(a)
        if m != k:
            ta, tb = (True, False) if r.random() < 0.5 else (False, True)
        g.add_op("matmul", [a, a], {"ta": ta, "tb": tb}, g.bound(a) ** 2 * max(m, k) ** 0.75)
        return
    if r.random() < 0.15:  # batched: [B, m, k] @ [B, k, n] (or B shared)
        a = g.pick(lambda s: len(s) == 3, lambda: random_shape(r, 3))
        bsz, m, k = g.shape(a)
        k = m if ta else k
        n = gemm_dim(g)
        want = (bsz, n, k) if tb else (bsz, k, n)
        if r.random() < 0.3:
            want = want[1:]
        b = g.pick(lambda s: s == want, lambda: want)
        g.add_op("matmul", [a, b], {"ta": ta, "tb": tb}, g.bound(a) * g.bound(b) * k ** 0.75)
        return
    a = g.pick(lambda s: len(s) == 2, lambda: (gemm_dim(g), gemm_dim(g)))
    k = g.shape(a)[0 if ta else 1]
    b = _matrix(g, k, gemm_dim(g), tb)
    g.add_op("matmul", [a, b], {"ta": ta, "tb": tb}, g.bound(a) * g.bound(b) * k ** 0.75)


def build_matmul(xs, p, name):
    return gc.matmul(xs[0], xs[1], transpose_a=p["ta"], transpose_b=p["tb"])


# Sums of matmuls, the shapes the LLVM backend accumulates into one buffer: ``t`` and ``u``
# (and ``v``) are products, ``b`` a doubled value squared.
MATSUMS = {
    "t+t+u": lambda t, u, v: t + t + u,
    "t+u+v": lambda t, u, v: t + u + v,
    "2t+u": lambda t, u, v: t * 2.0 + u,
    "(t+u)*t": lambda t, u, v: (t + u) * t,
    "t+u-v": lambda t, u, v: t + u - v,
    "tanh(t+u)+v": lambda t, u, v: gc.tanh(t + u) + v,
    "t+u+t": lambda t, u, v: t + u + t,
}


def draw_matsum(g):
    r = g.rng
    if r.random() < 0.2:  # b = x*1.5 + x*1.5; matmul(b, b)
        x = g.pick(lambda s: len(s) == 2 and s[0] == s[1],
                   lambda: (int(r.choice(DIMS)),) * 2)
        n = g.shape(x)[0]
        g.add_op("square_sum", [x], {}, (3 * g.bound(x)) ** 2 * n ** 0.75)
        return
    m, n = gemm_dim(g), gemm_dim(g)
    ins, flags, bound = [], [], 0.0
    for _ in range(3):
        k = gemm_dim(g)
        ta, tb = bool(r.random() < 0.3), bool(r.random() < 0.3)
        a, b = _matrix(g, m, k, ta), _matrix(g, k, n, tb)
        ins += [a, b]
        flags.append((ta, tb))
        bound = max(bound, g.bound(a) * g.bound(b) * k ** 0.75)
    form = list(MATSUMS)[int(r.integers(len(MATSUMS)))]
    g.add_op("matsum", ins, {"form": form, "flags": flags},
             3 * bound * (bound if form == "(t+u)*t" else 1.0))


def build_matsum(xs, p, name):
    prods = [gc.matmul(xs[2 * i], xs[2 * i + 1], transpose_a=ta, transpose_b=tb)
             for i, (ta, tb) in enumerate(p["flags"])]
    return MATSUMS[p["form"]](*prods)


def build_square_sum(xs, p, name):
    b = xs[0] * 1.5 + xs[0] * 1.5
    return gc.matmul(b, b)


# A square value times itself beside an elementwise use of it: the update or the GEMM's
# epilogue may not be written over h, which the GEMM reads whole (``h`` is an intermediate,
# so the memory plan may reuse its bytes once nothing reads it).
SELF_PRODUCTS = {
    "h-h@h": lambda h: h - gc.matmul(h, h),
    "h-h'@h": lambda h: h - gc.matmul(h, h, transpose_a=True),
    "relu(h@h'+h)": lambda h: gc.nn.relu(gc.matmul(h, h, transpose_b=True) + h),
    "where(h>0,h@h,0)": lambda h: gc.where(h > 0.0, gc.matmul(h, h), gc.zeros_like(h)),
    "h*(h@h)": lambda h: h * gc.matmul(h, h),
}


def draw_self_product(g):
    r = g.rng
    n = gemm_dim(g) if r.random() < 0.7 else int(r.choice(DIMS))  # (several row blocks)
    x = g.pick(lambda s: s == (n, n), lambda: (n, n))
    form = list(SELF_PRODUCTS)[int(r.integers(len(SELF_PRODUCTS)))]
    b = 1.5 * g.bound(x)
    g.add_op("self_product", [x], {"form": form},
             b + b * b * n ** 0.75 * (b if form == "h*(h@h)" else 1.0))


def build_self_product(xs, p, name):
    return SELF_PRODUCTS[p["form"]](xs[0] * 1.5)


# -- shape and indexing ---------------------------------------------------------------------------
def _factor_shape(r, size):
    """A random shape (rank 1 to 3) with ``size`` elements."""
    dims, rest = [], size
    for _ in range(int(r.integers(0, 2))):
        divs = [d for d in range(1, rest + 1) if rest % d == 0]
        d = int(r.choice(divs))
        dims.append(d)
        rest //= d
    dims.append(rest)
    r.shuffle(dims)
    return tuple(dims)


def draw_reshape(g):
    x = g.pick(lambda s: len(s) >= 1)
    if x is not None:
        shape = _factor_shape(g.rng, _size(g.shape(x)))
        g.add_op("reshape", [x], {"shape": shape}, g.bound(x))


def draw_transpose(g):
    x = g.pick(lambda s: len(s) >= 2, lambda: random_shape(g.rng, int(g.rng.integers(2, 4))))
    perm = tuple(int(a) for a in g.rng.permutation(len(g.shape(x))))
    g.add_op("transpose", [x], {"perm": perm}, g.bound(x))


def draw_slice(g):
    x = g.pick(lambda s: len(s) >= 1 and max(s) > 1)
    if x is None:
        return
    r = g.rng
    if r.random() < 0.5:
        begin, size = [], []
        for d in g.shape(x):
            b = int(r.integers(0, d))
            begin.append(b)
            size.append(int(r.integers(1, d - b + 1)))
        g.add_op("slice", [x], {"begin": begin, "size": size}, g.bound(x))
        return
    spec = []
    for d in g.shape(x):
        step = int(r.choice([1, 1, 2, -1]))
        start = int(r.integers(0, d))
        spec.append((start, None, step) if step > 0 else (None, None, -1))
    g.add_op("strided", [x], {"spec": spec}, g.bound(x))


def draw_concat(g):
    a = g.pick(lambda s: len(s) >= 1)
    if a is None:
        return
    sa = g.shape(a)
    axis = int(g.rng.integers(len(sa)))
    fits = lambda s: len(s) == len(sa) and all(x == y for j, (x, y) in enumerate(zip(s, sa))
                                                if j != axis)
    other = sa[:axis] + (int(g.rng.choice(DIMS)),) + sa[axis + 1:]
    b = g.pick(fits, lambda: other)
    g.add_op("concat", [a, b], {"axis": axis}, max(g.bound(a), g.bound(b)))


def draw_gather(g):
    x = g.pick(lambda s: len(s) >= 1)
    if x is None:
        return
    r = g.rng
    shape = g.shape(x)
    axis = int(r.integers(len(shape)))
    ishape = random_shape(r, int(r.integers(1, 3)))
    idx = r.integers(0, shape[axis], ishape).astype(np.int32)
    g.add_op("gather", [x], {"indices": idx, "axis": axis}, g.bound(x))


def draw_scatter(g):
    u = g.pick(lambda s: len(s) >= 1)
    if u is None:
        return
    r = g.rng
    shape = g.shape(u)
    depth = int(r.integers(1, 3))
    lead = tuple(int(r.choice(DIMS)) for _ in range(depth))
    idx = np.stack([r.integers(0, d, shape[0]) for d in lead], axis=1).astype(np.int32)
    g.add_op("scatter_nd", [u], {"indices": idx, "shape": lead + shape[1:]},
             g.bound(u) * shape[0] ** 0.75)


def draw_segment(g):
    x = g.pick(lambda s: len(s) >= 1)
    if x is None:
        return
    r = g.rng
    n = g.shape(x)[0]
    segments = int(r.integers(1, n + 2))
    ids = r.integers(0, segments, n).astype(np.int32)
    sorted_ = bool(r.random() < 0.5)
    if sorted_:
        ids = np.sort(ids)
    g.add_op("segment", [x], {"ids": ids, "num": segments, "sorted": sorted_},
             g.bound(x) * n ** 0.75)


def build_reshape(xs, p, name):
    return gc.reshape(xs[0], list(p["shape"]))


def build_transpose(xs, p, name):
    return gc.transpose(xs[0], list(p["perm"]))


def build_slice(xs, p, name):
    return gc.slice(xs[0], list(p["begin"]), list(p["size"]))


def build_strided(xs, p, name):
    return xs[0][tuple(slice(*s) for s in p["spec"])]


def build_concat(xs, p, name):
    return gc.concat([xs[0], xs[1]], p["axis"])


def build_gather(xs, p, name):
    return gc.gather(xs[0], gc.constant(p["indices"]), axis=p["axis"])


def build_scatter(xs, p, name):
    return gc.scatter_nd(gc.constant(p["indices"]), xs[0], list(p["shape"]))


def build_segment(xs, p, name):
    ids = gc.constant(p["ids"])
    if p["sorted"]:
        return gc.segment_sum(xs[0], ids)
    return gc.unsorted_segment_sum(xs[0], ids, p["num"])
