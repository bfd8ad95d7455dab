"""The op table: one row per op (and per broadcasting / attribute variant) that drives the
forward, gradient and second-order tests.

A row names the registry op it covers, builds the op from placeholders with the public API
(internal ops through ``F``), gives a hand-written NumPy reference, and describes each input:
its shape, where values are sampled (the op's smooth domain; kinks and poles live in the
edge-case table), its dtype kind and whether it is differentiated. Adding an op adds a row here;
``test_every_registered_op_has_a_row`` fails until it does.
"""
import zlib

import numpy as np

import graphc as gc
from graphc.ir.ops import REGISTRY, F


class Arg:
    """One input of a row.

    Args:
        shape: static shape.
        lo, hi: sampling interval for numeric inputs.
        kind: "num" (takes the row's dtype under test), "int32"/"int64" (integers in
            [lo, hi)), "bool", or "float64" (always float64: labels, ...).
        diff: whether gradients with respect to it are checked.
        away: for "num", keep |x| >= away (away from a kink at 0).
        value: a fixed array (indices with repeats, labels...), overriding sampling.
        gen: callable(rng, shape) -> array, a custom sampler.
    """

    def __init__(self, shape, lo=-2.0, hi=2.0, kind="num", diff=True, away=0.0, value=None,
                 gen=None):
        self.shape, self.lo, self.hi, self.kind = tuple(shape), lo, hi, kind
        self.diff = diff and kind == "num" and value is None
        self.away, self.value, self.gen = away, value, gen

    def dtype(self, row_dtype):
        if self.kind == "num":
            return np.dtype(row_dtype)
        return np.dtype("bool" if self.kind == "bool" else self.kind)

    def sample(self, rng, row_dtype):
        dt = self.dtype(row_dtype)
        if self.value is not None:
            return np.asarray(self.value, dt)
        if self.gen is not None:
            return np.asarray(self.gen(rng, self.shape), dt)
        if dt.kind == "b":
            return rng.random(self.shape) < 0.5
        if dt.kind in "iu":
            return rng.integers(int(self.lo), int(self.hi), self.shape).astype(dt)
        if self.away:
            mag = rng.uniform(self.away, self.hi, self.shape)
            return (mag * rng.choice([-1.0, 1.0], self.shape)).astype(dt)
        return rng.uniform(self.lo, self.hi, self.shape).astype(dt)


class Row:
    """One op table row (see module docstring).

    Args:
        name: the pytest id.
        op: the registry op covered (None for API compositions such as ``l2_loss``).
        build: callable(*placeholders) -> node.
        ref: callable(*arrays) -> expected array (NumPy, computed in float64 for float rows).
        args: list of Arg.
        dtypes: dtypes the forward test runs in ("float32", "float64", "int32", ...).
        grad: gradient checks apply (float output, some differentiable input).
        second: gradient-of-gradient checks apply.
        dynamic: the forward and gradient tests also run with the leading dims left None.
        api: the public function name this row exercises (coverage of issue 2's list).
    """

    def __init__(self, name, op, build, ref, args, dtypes=("float32", "float64"), grad=True,
                 second=True, dynamic=True, api=None):
        self.name, self.op, self.build, self.ref, self.args = name, op, build, ref, args
        self.dtypes, self.dynamic, self.api = dtypes, dynamic, api or op
        self.grad = grad and any(a.diff for a in args) and \
            any(d.startswith("float") for d in dtypes)
        self.second = second and self.grad

    def __repr__(self):
        return f"Row({self.name})"


ROWS = []


def row(*args, **kw):
    ROWS.append(Row(*args, **kw))


def A(*shape, **kw):
    return Arg(shape, **kw)


F64 = ("float64",)
INTS = ("int32", "int64")

# -- binary elementwise, with broadcasting variants --------------------------------------------
# (name, lhs shape, rhs shape): size-1 dims on either side and prepended dims.
BROADCASTS = [("same", (3, 4), (3, 4)), ("row", (3, 4), (4,)), ("col_row", (3, 1), (1, 4)),
              ("scalar", (3, 4), ()), ("prepend", (2, 1, 4), (3, 1))]


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _softplus(x):
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


BINARY = [
    ("add", gc.add, np.add, {}, {}),
    ("subtract", gc.subtract, np.subtract, {}, {}),
    ("multiply", gc.multiply, np.multiply, {}, {}),
    ("divide", gc.divide, np.divide, {}, {"lo": 0.5, "hi": 2.0}),
    ("pow", gc.pow, np.power, {"lo": 0.5, "hi": 2.0}, {}),
    ("maximum", gc.maximum, np.maximum, {}, {}),
    ("minimum", gc.minimum, np.minimum, {}, {}),
]
for _op, _fn, _ref, _lkw, _rkw in BINARY:
    for _variant, _ls, _rs in BROADCASTS:
        row(f"{_op}[{_variant}]", _op, _fn, _ref, [Arg(_ls, **_lkw), Arg(_rs, **_rkw)])
for _op, _fn, _ref in [("add", gc.add, np.add), ("subtract", gc.subtract, np.subtract),
                       ("multiply", gc.multiply, np.multiply),
                       ("maximum", gc.maximum, np.maximum), ("minimum", gc.minimum, np.minimum)]:
    row(f"{_op}[int]", _op, _fn, _ref, [A(3, 4, lo=-5, hi=5), A(4, lo=-5, hi=5)], dtypes=INTS)
row("operators[+-*/]", "add", lambda x, y: (x + y) * (x - y) / y + 2.0 * x - 1.0 / y,
    lambda x, y: (x + y) * (x - y) / y + 2.0 * x - 1.0 / y, [A(3, 4), A(4, lo=0.5, hi=2.0)],
    api="operators")
row("pow[x**2.0, negative base]", "pow", lambda x: x ** 2.0, lambda x: x ** 2.0, [A(3, 4)])
row("pow[2.0**x]", "pow", lambda x: 2.0 ** x, lambda x: 2.0 ** x, [A(3, 4)])

# -- unary elementwise -------------------------------------------------------------------------
UNARY = [
    ("negative", gc.negative, np.negative, {}),
    ("square", gc.square, np.square, {}),
    ("sqrt", gc.sqrt, np.sqrt, {}),
    ("exp", gc.exp, np.exp, {}),
    ("log", gc.log, np.log, {}),
    ("log1p", gc.log1p, np.log1p, {}),
    ("abs", gc.abs, np.abs, {"away": 0.05}),
    ("sign", gc.sign, np.sign, {"away": 0.05}),
    ("tanh", gc.tanh, np.tanh, {}),
    ("sin", gc.sin, np.sin, {}),
    ("cos", gc.cos, np.cos, {}),
    ("sigmoid", gc.sigmoid, _sigmoid, {}),
    ("relu", gc.nn.relu, lambda x: np.maximum(x, 0), {"away": 0.05}),
    ("softplus", gc.nn.softplus, _softplus, {}),
    ("identity", gc.identity, lambda x: x, {}),
    ("zeros_like", gc.zeros_like, np.zeros_like, {}),
    ("ones_like", gc.ones_like, np.ones_like, {}),
]
for _op, _fn, _ref, _kw in UNARY:  # sampled in the op's declared domain
    _lo, _hi = REGISTRY[_op].domain or (-2.0, 2.0)
    row(_op, _op, _fn, _ref, [A(3, 4, lo=_lo, hi=_hi, **_kw)])
row("unary[rank3]", "tanh", gc.tanh, np.tanh, [A(2, 3, 2)])
row("unary[scalar]", "exp", gc.exp, np.exp, [A()])
row("stop_gradient", "stop_gradient", gc.stop_gradient, lambda x: x, [A(3, 4)], grad=False)
row("leaky_relu", "leaky_relu", lambda x: gc.nn.leaky_relu(x, alpha=0.1),
    lambda x: np.where(x > 0, x, 0.1 * x), [A(3, 4, away=0.05)])
row("floor", "floor", gc.floor, np.floor,
    [A(3, 4, gen=lambda r, s: r.integers(-3, 3, s) + r.uniform(0.2, 0.8, s))])


def _off_multiples(r, s):
    """Dividends k + u, u in [0.2, 0.8]: away from the jumps of // and % for the divisors
    below (+-1 or +-2, jittered), so central differences see the smooth pieces."""
    return r.integers(-4, 4, s) + r.uniform(0.2, 0.8, s)


def _unit_divisors(r, s):
    return r.choice([-2.0, -1.0, 1.0, 2.0], s) + r.uniform(-0.01, 0.01, s)


for _op, _fn, _ref in [("floordiv", gc.floordiv, np.floor_divide),
                       ("floormod", gc.floormod, np.remainder)]:
    row(_op, _op, _fn, _ref, [A(3, 4, gen=_off_multiples), A(4, gen=_unit_divisors)])
    # negative operands and zero divisors (NumPy: x // 0 = x % 0 = 0 for integers)
    row(f"{_op}[int]", _op, _fn, _ref,
        [A(3, 5, lo=-9, hi=9), A(5, value=[3, -3, 0, 1, -1])], dtypes=INTS)
row("operators[// %, python scalars]", "floormod",
    lambda x, y: (x // y) * 2.0 + x % y - 7.0 // y + 7.5 % y,
    lambda x, y: (x // y) * 2.0 + x % y - 7.0 // y + 7.5 % y,
    [A(3, 4, gen=_off_multiples), A(4, gen=_unit_divisors)], api="operators")
row("operators[int // % with python ints]", "floordiv",
    lambda x, y: x // y + x % y * 10 - 7 // y + 7 % y,
    lambda x, y: x // y + x % y * 10 - 7 // y + 7 % y,
    [A(3, 5, lo=-9, hi=9), A(5, value=[3, -3, 2, 1, -1])], dtypes=INTS, api="operators")
row("divide[int -> float64]", "divide", lambda x, y: x / y, np.true_divide,
    [A(3, 5, lo=-9, hi=9), A(5, value=[3, -3, 2, 1, -1])], dtypes=INTS, api="operators")
row("negative[int]", "negative", gc.negative, np.negative, [A(5, lo=-4, hi=4)], dtypes=INTS)
row("abs[int]", "abs", gc.abs, np.abs, [A(5, lo=-4, hi=4)], dtypes=INTS)
row("relu[int]", "relu", gc.nn.relu, lambda x: np.maximum(x, 0), [A(5, lo=-4, hi=4)],
    dtypes=INTS)
row("square[int]", "square", gc.square, np.square, [A(5, lo=-4, hi=4)], dtypes=INTS)
row("sign[int]", "sign", gc.sign, np.sign, [A(5, lo=-4, hi=4)], dtypes=INTS)
row("is_finite", "is_finite", gc.is_finite, np.isfinite,
    [A(6, value=[0.0, np.inf, -np.inf, np.nan, 1.0, -3.0])], grad=False)

# -- casts -------------------------------------------------------------------------------------
row("cast[float->float64]", "cast", lambda x: F.cast(x, dtype=gc.float64),
    lambda x: x.astype(np.float64), [A(3, 4)])
row("cast[float->int32]", "cast", lambda x: gc.cast(x, gc.int32),
    lambda x: x.astype(np.int32), [A(3, 4, lo=-5, hi=5)], grad=False)
row("cast[int->float32]", "cast", lambda x: gc.cast(x, gc.float32),
    lambda x: x.astype(np.float32), [A(3, 4, lo=-5, hi=5)], dtypes=INTS)
row("cast[float->bool]", "cast", lambda x: gc.cast(x, gc.bool),
    lambda x: x.astype(bool), [A(4, value=[0.0, 1.5, -2.0, 0.0])], grad=False)

# -- where and the fused sigmoid loss -------------------------------------------------------------
row("where[same]", "where", gc.where, np.where, [A(3, 4, kind="bool"), A(3, 4), A(3, 4)])
row("where[broadcast]", "where", gc.where, np.where, [A(4, kind="bool"), A(3, 1), A()])
row("where[int]", "where", gc.where, np.where,
    [A(3, 4, kind="bool"), A(3, 4, lo=-5, hi=5), A(4, lo=-5, hi=5)], dtypes=INTS)
row("sigmoid_xent", "sigmoid_xent",
    lambda z, x: gc.nn.sigmoid_cross_entropy_with_logits(labels=z, logits=x),
    lambda z, x: np.maximum(x, 0) - x * z + np.log1p(np.exp(-np.abs(x))),
    [A(3, 4, lo=0.0, hi=1.0), A(3, 4, lo=-4.0, hi=4.0)],
    api="sigmoid_cross_entropy_with_logits")

# -- comparisons and logic (bool results, forward only) ------------------------------------------
_TIES = dict(gen=lambda r, s: r.integers(-2, 3, s).astype(float))
for _op, _ref in [("equal", np.equal), ("not_equal", np.not_equal), ("less", np.less),
                  ("less_equal", np.less_equal), ("greater", np.greater),
                  ("greater_equal", np.greater_equal)]:
    row(_op, _op, getattr(gc, _op), _ref, [A(3, 4, **_TIES), A(4, **_TIES)],
        dtypes=("float32", "float64", "int32", "int64"), grad=False)
row("operators[< <= > >=]", "less",
    lambda x, y: gc.logical_and(gc.logical_or(x < y, x >= y + 1.0), (x <= 0.0) | (x > y)),
    lambda x, y: ((x < y) | (x >= y + 1.0)) & ((x <= 0.0) | (x > y)),
    [A(3, 4, **_TIES), A(4, **_TIES)], grad=False, api="comparison operators")
row("logical_and", "logical_and", gc.logical_and, np.logical_and,
    [A(3, 4, kind="bool"), A(4, kind="bool")], dtypes=("bool",))
row("logical_or", "logical_or", gc.logical_or, np.logical_or,
    [A(3, 4, kind="bool"), A(3, 1, kind="bool")], dtypes=("bool",))
row("logical_not", "logical_not", gc.logical_not, np.logical_not, [A(3, 4, kind="bool")],
    dtypes=("bool",))

# -- matmul ------------------------------------------------------------------------------------


def _mm(ta=False, tb=False):
    def ref(a, b):
        return np.matmul(np.swapaxes(a, -1, -2) if ta else a, np.swapaxes(b, -1, -2) if tb else b)
    return ref


for _name, _as, _bs, _ta, _tb in [
        ("2d", (3, 4), (4, 5), False, False), ("transpose_a", (4, 3), (4, 5), True, False),
        ("transpose_b", (3, 4), (5, 4), False, True), ("transpose_ab", (4, 3), (5, 4), True, True),
        ("batched", (2, 3, 4), (2, 4, 5), False, False),
        ("batch_broadcast_b", (2, 3, 4), (4, 5), False, False),
        ("batch_broadcast_a", (3, 4), (2, 4, 5), False, False),
        ("batch_size1", (2, 1, 3, 4), (3, 4, 2), False, False),
        ("batched_transposed", (2, 4, 3), (2, 5, 4), True, True)]:
    row(f"matmul[{_name}]", "matmul",
        (lambda ta, tb: lambda a, b: gc.matmul(a, b, transpose_a=ta, transpose_b=tb))(_ta, _tb),
        _mm(_ta, _tb), [Arg(_as), Arg(_bs)])
row("matmul[@]", "matmul", lambda a, b: a @ b, np.matmul, [A(2, 3), A(3, 2)], api="operators")
row("matmul[int]", "matmul", gc.matmul, np.matmul, [A(2, 3, lo=-3, hi=3), A(3, 2, lo=-3, hi=3)],
    dtypes=INTS)

# -- reductions --------------------------------------------------------------------------------
REDUCTIONS = [("reduce_sum", gc.reduce_sum, np.sum), ("reduce_mean", gc.reduce_mean, np.mean),
              ("reduce_max", gc.reduce_max, np.max), ("reduce_min", gc.reduce_min, np.min)]
for _op, _fn, _ref in REDUCTIONS:
    for _axis, _kd in [(None, False), (0, False), (1, True), ((0, 2), False), (-1, False),
                       ((0, 1, 2), True)]:
        row(f"{_op}[axis={_axis},keepdims={_kd}]", _op,
            (lambda fn, ax, kd: lambda x: fn(x, axis=ax, keepdims=kd))(_fn, _axis, _kd),
            (lambda fn, ax, kd: lambda x: fn(x, axis=ax, keepdims=kd))(_ref, _axis, _kd),
            [A(2, 3, 4)])
    # TF keeps the integer dtype (NumPy's sum would widen to int64); the mean truncates
    row(f"{_op}[int]", _op, (lambda fn: lambda x: fn(x, axis=1))(_fn),
        (lambda fn: lambda x: fn(x, axis=1).astype(x.dtype))(_ref), [A(3, 4, lo=-9, hi=9)],
        dtypes=INTS)
row("reduce[scalar input]", "reduce_sum", gc.reduce_sum, np.sum, [A()])
for _op, _fn in [("argmax", gc.argmax), ("argmin", gc.argmin)]:
    for _axis in (0, 1, -1):
        row(f"{_op}[axis={_axis}]", _op, (lambda fn, ax: lambda x: fn(x, axis=ax))(_fn, _axis),
            (lambda op, ax: lambda x: getattr(np, op)(x, axis=ax))(_op, _axis),
            [A(3, 4)], dtypes=("float32", "float64", "int32"), grad=False)

# -- shapes ------------------------------------------------------------------------------------
row("reshape", "reshape", lambda x: gc.reshape(x, [4, 6]), lambda x: x.reshape(4, 6),
    [A(2, 3, 4)])
row("reshape[-1]", "reshape", lambda x: gc.reshape(x, [-1, 4]), lambda x: x.reshape(-1, 4),
    [A(2, 3, 4)])
row("reshape[scalar]", "reshape", lambda x: gc.reshape(x, []), lambda x: x.reshape(()),
    [A(1, 1)])
row("reshape_like", "reshape_like", lambda x, y: F.reshape_like(x, y),
    lambda x, y: x.reshape(y.shape), [A(2, 6), A(3, 4, diff=False)])
row("transpose", "transpose", gc.transpose, np.transpose, [A(3, 4)])
row("transpose[perm]", "transpose", lambda x: gc.transpose(x, [1, 2, 0]),
    lambda x: np.transpose(x, (1, 2, 0)), [A(2, 3, 4)])
for _axis in (0, 1, -1):
    row(f"expand_dims[{_axis}]", "expand_dims",
        (lambda ax: lambda x: gc.expand_dims(x, ax))(_axis),
        (lambda ax: lambda x: np.expand_dims(x, ax))(_axis), [A(3, 4)])
row("squeeze", "squeeze", gc.squeeze, np.squeeze, [A(3, 1, 4, 1)], dynamic=False)
row("squeeze[axis]", "squeeze", lambda x: gc.squeeze(x, [1]), lambda x: np.squeeze(x, 1),
    [A(3, 1, 4, 1)])
row("squeeze[-1]", "squeeze", lambda x: gc.squeeze(x, -1), lambda x: np.squeeze(x, -1),
    [A(3, 1, 4, 1)])
row("broadcast_to", "broadcast_to", lambda x: gc.broadcast_to(x, [2, 3, 4]),
    lambda x: np.broadcast_to(x, (2, 3, 4)), [A(3, 1)])
row("broadcast_like", "broadcast_like", lambda x, y: F.broadcast_like(x, y),
    lambda x, y: np.broadcast_to(x, np.broadcast_shapes(x.shape, y.shape)),
    [A(3, 1), A(2, 3, 4, diff=False)])
row("concat[0]", "concat", lambda a, b: gc.concat([a, b], 0),
    lambda a, b: np.concatenate([a, b], 0), [A(2, 3), A(4, 3)])
row("concat[-1, three]", "concat", lambda a, b, c: gc.concat([a, b, c], axis=-1),
    lambda a, b, c: np.concatenate([a, b, c], -1), [A(2, 3), A(2, 1), A(2, 2)])
for _axis in (0, 1, -1):
    row(f"stack[{_axis}]", "stack", (lambda ax: lambda a, b: gc.stack([a, b], axis=ax))(_axis),
        (lambda ax: lambda a, b: np.stack([a, b], axis=ax))(_axis), [A(2, 3), A(2, 3)])
row("stack[python values]", "stack", lambda a: gc.stack([a, 2.0 * a, a]),
    lambda a: np.stack([a, 2 * a, a]), [A(3)])
row("unstack", "strided_slice", lambda x: gc.stack(gc.unstack(x, axis=1)[::-1], axis=0),
    lambda x: np.stack([x[:, i] for i in range(x.shape[1])][::-1]), [A(2, 3)], api="unstack")

# -- slicing, gather, one_hot ------------------------------------------------------------------
for _name, _key in [("[:, 1:3]", (slice(None), slice(1, 3))), ("[1]", 1),
                    ("[-1, ::2]", (-1, slice(None, None, 2))), ("[..., 0]", (Ellipsis, 0)),
                    ("[::-1]", slice(None, None, -1)), ("[1:, -2]", (slice(1, None), -2)),
                    ("[newaxis, :, 1]", (None, slice(None), 1)),
                    ("[..., newaxis]", (Ellipsis, None))]:
    row(f"strided_slice{_name}", "strided_slice", (lambda k: lambda x: x[k])(_key),
        (lambda k: lambda x: x[k])(_key), [A(3, 4)], api="slicing")
row("slice", "strided_slice", lambda x: gc.slice(x, [1, 0], [2, -1]), lambda x: x[1:3, 0:],
    [A(3, 4)], api="slice")
row("concat_slice", "concat_slice", lambda g, a, b: F.concat_slice(g, a, b, axis=0, index=1),
    lambda g, a, b: g[2:], [A(5, 3), A(2, 3, diff=False), A(3, 3, diff=False)])
row("sum_to_like", "sum_to_like", lambda g, like: F.sum_to_like(g, like),
    lambda g, like: g.sum(0, keepdims=True).sum(1), [A(2, 3, 4), A(1, 4, diff=False)])
row("strided_slice_grad", "strided_slice_grad",
    lambda g, like: F.strided_slice_grad(g, like, spec=(("s", None, None, None), ("s", 1, 3, None))),
    lambda g, like: np.pad(g, ((0, 0), (1, 1))), [A(3, 2), A(3, 4, diff=False)])
_IDX = np.array([2, 0, 2, 3, 2])  # repeats: scatter-add must accumulate
row("gather", "gather", lambda p, i: gc.gather(p, i), lambda p, i: p[i],
    [A(4, 3), A(5, kind="int32", value=_IDX)])
row("gather[2d indices]", "gather", lambda p, i: gc.gather(p, i), lambda p, i: p[i],
    [A(4, 3), A(2, 2, kind="int64", value=[[1, 1], [3, 0]])])
row("gather[axis=1]", "gather", lambda p, i: gc.gather(p, i, axis=1),
    lambda p, i: np.take(p, i, axis=1), [A(2, 4, 3), A(5, kind="int32", value=_IDX)])
row("scatter_add", "scatter_add", lambda u, i, like: F.scatter_add(u, i, like),
    lambda u, i, like: _scatter(u, i, like.shape),
    [A(5, 3), A(5, kind="int32", value=_IDX), A(4, 3, diff=False)])
row("one_hot", "one_hot", lambda i: gc.one_hot(i, 4),
    lambda i: (i[:, None] == np.arange(4)).astype(np.float32),
    [A(5, kind="int32", value=[0, 3, 1, 4, -1])],
    dtypes=("int32",))
row("one_hot[axis=0, values, dtype]", "one_hot",
    lambda i: gc.one_hot(i, 3, on_value=5.0, off_value=-1.0, axis=0, dtype=gc.float64),
    lambda i: np.where(np.eye(3)[i].T > 0, 5.0, -1.0), [A(4, kind="int64", value=[2, 0, 0, 1])],
    dtypes=("int64",))
row("check_index", "check_index", lambda i: F.check_index(i, bounds=(3, 4), of="gather_nd 'g'"),
    lambda i: i, [A(5, 2, kind="int32", value=[[0, 1], [2, 3], [1, 0], [2, 2], [0, 3]])],
    dtypes=("int32",))
row("dim_size", "dim_size", lambda x: F.dim_size(x, axes=(0, 2)),
    lambda x: np.asarray(x.shape[0] * x.shape[2], x.dtype), [A(2, 3, 4)])
row("shape", "shape_of", gc.shape, lambda x: np.array(x.shape, np.int32), [A(2, 3, 4)],
    grad=False, api="shape")


def _scatter(u, i, shape):
    out = np.zeros(shape, u.dtype)
    np.add.at(out, i, u)
    return out


# -- nn ----------------------------------------------------------------------------------------


def _np_softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _np_log_softmax(x):
    z = x - x.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


_LABELS = [1, 0, 4, 4]
row("softmax", "softmax", gc.nn.softmax, _np_softmax, [A(3, 5)])
row("softmax[rank3]", "softmax", gc.nn.softmax, _np_softmax, [A(2, 3, 4)])
row("log_softmax", "log_softmax", gc.nn.log_softmax, _np_log_softmax, [A(3, 5)])
row("sparse_softmax_xent", "sparse_softmax_xent",
    lambda z, y: gc.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=z),
    lambda z, y: -_np_log_softmax(z)[np.arange(len(y)), y],
    [A(4, 5), A(4, kind="int64", value=_LABELS)],
    api="sparse_softmax_cross_entropy_with_logits")
row("sparse_softmax_xent[int32 labels]", "sparse_softmax_xent",
    lambda z, y: gc.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=z),
    lambda z, y: -_np_log_softmax(z)[np.arange(len(y)), y],
    [A(4, 5), A(4, kind="int32", value=_LABELS)])
row("sparse_softmax_xent_grad", "sparse_softmax_xent_grad",
    lambda z, y: F.sparse_softmax_xent_grad(z, y),
    lambda z, y: _np_softmax(z) - np.eye(5, dtype=z.dtype)[y], [A(4, 5), A(4, kind="int64", value=_LABELS)])
row("softmax_xent", "softmax_xent",   # v2: gradients reach the labels too (v1 holds them)
    lambda z, y: gc.nn.softmax_cross_entropy_with_logits_v2(labels=y, logits=z),
    lambda z, y: -(y * _np_log_softmax(z)).sum(-1), [A(4, 5), A(4, 5, lo=0.0, hi=1.0)],
    api="softmax_cross_entropy_with_logits")
row("softmax_xent_grad", "softmax_xent_grad", lambda z, y: F.softmax_xent_grad(z, y),
    lambda z, y: _np_softmax(z) * y.sum(-1, keepdims=True) - y,
    [A(4, 5), A(4, 5, lo=0.0, hi=1.0)])
row("l2_loss", None, gc.nn.l2_loss, lambda x: 0.5 * np.sum(x * x), [A(3, 4)], api="l2_loss")
row("bias_add", "add", gc.nn.bias_add, lambda x, b: x + b, [A(3, 4), A(4)], api="bias_add")

# -- creation ops whose value is a constant (checked for value and dtype only) -----------------
CREATION = [
    ("fill", lambda: gc.fill([2, 3], 2.5), np.full((2, 3), 2.5, np.float32)),
    ("fill[int]", lambda: gc.fill([2], 7), np.full((2,), 7, np.int32)),
    ("zeros", lambda: gc.zeros([2, 3]), np.zeros((2, 3), np.float32)),
    ("ones[int64]", lambda: gc.ones([3], gc.int64), np.ones(3, np.int64)),
    ("range", lambda: gc.range(5), np.arange(5, dtype=np.int32)),
    ("range[float]", lambda: gc.range(0.0, 1.0, 0.25), np.arange(0, 1, 0.25, np.float32)),
    ("constant[shape]", lambda: gc.constant(1.5, shape=[2, 2]), np.full((2, 2), 1.5, np.float32)),
]

# -- conv and pooling (NHWC; naive loop references in window_refs) -----------------------------
def _window_rows():
    from tests.support import window_refs as W
    conv = [("valid", (2, 5, 5, 2), (3, 3, 2, 3), (1, 1), "VALID"),
            ("same_stride2", (2, 6, 5, 2), (3, 2, 2, 3), (2, 2), "SAME"),
            ("valid_stride21", (1, 6, 5, 1), (2, 3, 1, 2), (2, 1), "VALID")]
    for name, xs, ws, st, pad in conv:
        ys = W.out_shape(xs, ws[:2], st, pad, ws[3])
        kw = {"strides": st, "padding": pad}
        row(f"conv2d[{name}]", "conv2d", lambda x, w, kw=kw: gc.nn.conv2d(x, w, **kw),
            lambda x, w, kw=kw: W.conv2d(x, w, **kw), [A(*xs), A(*ws)], dynamic=False)
        row(f"conv2d_backprop_input[{name}]", "conv2d_backprop_input",
            lambda dy, w, like, kw=kw: F.conv2d_backprop_input(dy, w, like, **kw),
            lambda dy, w, like, kw=kw: W.conv2d_backprop_input(dy, w, like.shape, **kw),
            [A(*ys), A(*ws), A(*xs, diff=False)], dynamic=False)
        row(f"conv2d_backprop_filter[{name}]", "conv2d_backprop_filter",
            lambda x, dy, kw=kw, ws=ws: F.conv2d_backprop_filter(x, dy, filter_shape=ws, **kw),
            lambda x, dy, kw=kw, ws=ws: W.conv2d_backprop_filter(x, dy, ws, **kw),
            [A(*xs), A(*ys)])
    # dilated: the taps (2, 3) apart, against the plain references on a zero-inserted filter
    xs, ws, rates = (1, 8, 9, 2), (2, 3, 2, 3), (2, 3)
    wide = W.dilate(np.zeros(ws), rates).shape
    ys, dil = W.out_shape(xs, wide[:2], (1, 1), "SAME", 3), {"padding": "SAME",
                                                            "dilations": rates}
    row("conv2d[dilated]", "conv2d", lambda x, w: F.conv2d(x, w, **dil),
        lambda x, w: W.conv2d(x, W.dilate(w, rates), padding="SAME"), [A(*xs), A(*ws)],
        dynamic=False)
    row("conv2d_backprop_input[dilated]", "conv2d_backprop_input",
        lambda dy, w, like: F.conv2d_backprop_input(dy, w, like, **dil),
        lambda dy, w, like: W.conv2d_backprop_input(dy, W.dilate(w, rates), like.shape,
                                                    padding="SAME"),
        [A(*ys), A(*ws), A(*xs, diff=False)], dynamic=False)
    row("conv2d_backprop_filter[dilated]", "conv2d_backprop_filter",
        lambda x, dy, ws=ws: F.conv2d_backprop_filter(x, dy, filter_shape=ws, **dil),
        lambda x, dy: W.conv2d_backprop_filter(x, dy, wide, padding="SAME")[::2, ::3],
        [A(*xs), A(*ys)])
    row("conv2d[NCHW]", "conv2d",
        lambda x, w: gc.nn.conv2d(x, w, [1, 1, 2, 1], "SAME", data_format="NCHW"),
        lambda x, w: W.conv2d(x.transpose(0, 2, 3, 1), w, (2, 1), "SAME").transpose(0, 3, 1, 2),
        [A(2, 2, 5, 4), A(2, 2, 2, 3)], dynamic=False)
    depthwise = [("same_m2", (2, 5, 6, 3), (3, 2, 3, 2), (1, 1), "SAME", (1, 1)),
                 ("valid_stride2", (2, 7, 6, 2), (3, 3, 2, 1), (2, 2), "VALID", (1, 1)),
                 ("same_stride3", (1, 8, 7, 2), (2, 2, 2, 2), (3, 3), "SAME", (1, 1)),
                 ("dilated", (1, 7, 7, 2), (2, 3, 2, 2), (1, 1), "SAME", (2, 3))]
    for name, xs, ws, st, pad, rates in depthwise:
        ys = W.out_shape(xs, W.dilate(np.zeros(ws[:2]), rates).shape, st, pad, ws[2] * ws[3])
        kw = {"strides": st, "padding": pad, "dilations": rates}
        row(f"depthwise_conv2d[{name}]", "depthwise_conv2d",
            lambda x, w, kw=kw: F.depthwise_conv2d(x, w, **kw),
            lambda x, w, kw=kw: W.depthwise_conv2d(x, w, **kw), [A(*xs), A(*ws)],
            dynamic=False)
        row(f"depthwise_conv2d_backprop_input[{name}]", "depthwise_conv2d_backprop_input",
            lambda dy, w, like, kw=kw: F.depthwise_conv2d_backprop_input(dy, w, like, **kw),
            lambda dy, w, like, kw=kw: W.depthwise_conv2d_backprop_input(dy, w, like.shape,
                                                                         **kw),
            [A(*ys), A(*ws), A(*xs, diff=False)], dynamic=False)
        row(f"depthwise_conv2d_backprop_filter[{name}]", "depthwise_conv2d_backprop_filter",
            lambda x, dy, kw=kw, ws=ws: F.depthwise_conv2d_backprop_filter(
                x, dy, filter_shape=ws, **kw),
            lambda x, dy, kw=kw, ws=ws: W.depthwise_conv2d_backprop_filter(x, dy, ws, **kw),
            [A(*xs), A(*ys)])
    pool = [("2x2", (2, 4, 6, 3), (2, 2), (2, 2), "VALID"),
            ("3x3_same_stride2", (2, 5, 4, 2), (3, 3), (2, 2), "SAME"),
            ("overlap", (1, 5, 5, 2), (3, 2), (1, 2), "VALID")]
    for name, xs, ks, st, pad in pool:
        ys = W.out_shape(xs, ks, st, pad, xs[3])
        kw = {"ksize": ks, "strides": st, "padding": pad}
        row(f"max_pool[{name}]", "max_pool", lambda x, kw=kw: gc.nn.max_pool2d(x, **kw),
            lambda x, kw=kw: W.max_pool(x, **kw), [A(*xs)])
        row(f"max_pool_grad[{name}]", "max_pool_grad",
            lambda x, dy, kw=kw: F.max_pool_grad(x, dy, **kw),
            lambda x, dy, kw=kw: W.max_pool_grad(x, dy, **kw), [A(*xs, diff=False), A(*ys)])
        row(f"max_pool_grad_grad[{name}]", "max_pool_grad_grad",
            lambda x, g, kw=kw: F.max_pool_grad_grad(x, g, **kw),
            lambda x, g, kw=kw: W.max_pool_grad_grad(x, g, **kw), [A(*xs, diff=False), A(*xs)])
        row(f"avg_pool[{name}]", "avg_pool", lambda x, kw=kw: gc.nn.avg_pool2d(x, **kw),
            lambda x, kw=kw: W.avg_pool(x, **kw), [A(*xs)])
        row(f"avg_pool_grad[{name}]", "avg_pool_grad",
            lambda dy, like, kw=kw: F.avg_pool_grad(dy, like, **kw),
            lambda dy, like, kw=kw: W.avg_pool_grad(dy, like.shape, **kw),
            [A(*ys), A(*xs, diff=False)])


_window_rows()

# Registry ops without a row, and where they are tested instead.
NOT_IN_TABLE = {
    "const": "leaf: every row builds constants; test_api_tf1 checks dtypes",
    "placeholder": "leaf: every row feeds placeholders; test_bad_input checks feeds",
    "variable": "leaf: test_api_tf1, test_mlp_train",
    "assign": "effect: test_api_tf1 (assign, assign_add, assign_sub, initializers)",
    "group": "effect: test_api_tf1",
    "random_normal": "impure: test_api_tf1 (fresh each run, seedable)",
    "random_uniform": "impure: test_api_tf1",
    "truncated_normal": "impure: test_api_tf1",
    "fused": "produced by the fusion pass, tested with it",
    "copy": "made only by the scheduler: test_schedule_old_values (both backends, gradients)",
    "check_numerics": "debugging op: test_compile (values, gradient, NumericsError)",
    "random_uniform_like": "impure: test_bn_dropout (dropout masks: fresh, seedable, shared)",
    "allreduce_mean": "collective: test_distributed (2 MPI ranks vs one process; identity alone)",
    "host_call": "impure, calls Python: test_host_calls (Print, Assert, py_func; both backends)",
    "host_output": "impure: test_host_calls (py_func with two outputs)",
    "after": "control dependencies: test_control_dependencies (ordering, value, gradient)",
    "loop": "owns a body run as a loop: tests/ir/test_loop_nodes.py, tests/api/test_loop_api.py "
            "(both backends, values and gradients against unrolled graphs, HVPs)",
    "loop_output": "a loop's result: tested with loop",
    "sparse_softmax_xent_with_grad": "made only by the fuse pass from a loss and its gradient: "
                                     "tests/passes/test_passes_fuse_xent.py (both backends, "
                                     "values, finite differences, errors)",
    "softmax_xent_with_grad": "made only by the fuse pass from a dense loss and its gradient: "
                              "tests/passes/test_passes_fuse_xent.py (both backends, values, "
                              "finite differences, masked logits)",
    "kept_loss": "made with the *_with_grad ops: tested with them",
    "subtract_matmul": "made only by the fuse pass from an update and its product: "
                       "tests/passes/test_passes_fuse_gemm.py (both backends, every GEMM path, "
                       "first and second order finite differences, errors)",
    "fused_matmul": "made only by the fuse pass (LLVM) from a product and its elementwise "
                    "reader: tests/passes/test_passes_gemm_epilogue.py (against the NumPy "
                    "backend on every GEMM path and operand kind, in place, refusals)",
    "range": "built only with bounds known at specialization, which makes it a constant: "
             "test_dynamic_shapes (both backends), tests/ir/test_static_args",
}

# Issue 2's op list by public name -> covered by a row's ``api`` or named here.
ISSUE_OPS = ["add", "subtract", "multiply", "divide", "negative", "pow", "square", "sqrt", "exp",
             "log", "log1p", "abs", "sign", "maximum", "minimum", "where", "tanh", "sigmoid",
             "relu", "leaky_relu", "softplus", "cast", "matmul", "reduce_sum", "reduce_mean",
             "reduce_max", "reduce_min", "reshape", "transpose", "expand_dims", "squeeze",
             "broadcast_to", "concat", "stack", "slice", "gather", "one_hot", "argmax",
             "zeros_like", "ones_like", "fill", "softmax", "log_softmax",
             "sparse_softmax_cross_entropy_with_logits", "softmax_cross_entropy_with_logits",
             "sigmoid_cross_entropy_with_logits", "l2_loss", "argmin", "unstack", "shape",
             "equal", "not_equal", "less", "less_equal", "greater", "greater_equal",
             "logical_and", "logical_or", "logical_not", "bias_add"]


def instantiate(r, dtype, dynamic=False):
    """Build row ``r`` from fresh placeholders in the default graph.

    Args:
        r: a Row.
        dtype: the dtype "num" inputs take.
        dynamic: leave each input's leading dim None (specialized from the feeds).
    Returns:
        (placeholders, input arrays, output node); the arrays are seeded by the row's name.
    """
    rng = np.random.default_rng(zlib.crc32(r.name.encode()))
    values = [a.sample(rng, dtype) for a in r.args]
    phs = [gc.placeholder(a.dtype(dtype), ((None,) + a.shape[1:]) if dynamic and a.shape
                          else a.shape, name=f"in{i}") for i, a in enumerate(r.args)]
    return phs, values, r.build(*phs)


def reference(r, values):
    """(expected values, expected dtype): float inputs go through the NumPy reference in
    float64; the dtype is what NumPy gives for the inputs' own dtypes."""
    with np.errstate(all="ignore"):
        native = np.asarray(r.ref(*values))
        wide = [v.astype(np.float64) if v.dtype.kind == "f" else v for v in values]
        expected = np.asarray(r.ref(*wide))
    return expected, native.dtype


def rows(pred=lambda r: True):
    return [r for r in ROWS if pred(r)]


def ids(rs):
    return [r.name for r in rs]
