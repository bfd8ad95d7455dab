"""Reductions over an empty axis (a feed with a 0-length dim) give TF1's values on both
backends, optimized and not: sum 0, prod 1, max -inf (the lowest integer), min +inf (the
highest integer), mean NaN (0 for integers), any False, all True, logsumexp -inf; argmax and
argmin raise InvalidArgumentError as TF1 does; gradients through them are zero-size."""
import numpy as np
import pytest

import graphc as gc
from graphc.errors import InvalidArgumentError

BUILDS = [("numpy", True), ("numpy", False), ("llvm", True), ("llvm", False)]
I32, I64 = np.iinfo(np.int32), np.iinfo(np.int64)

# op -> {dtype: the value of every output over an empty axis}
EXPECTED = {
    "reduce_sum": {"float32": 0.0, "float64": 0.0, "int32": 0, "int64": 0},
    "reduce_prod": {"float32": 1.0, "float64": 1.0, "int32": 1, "int64": 1},
    "reduce_max": {"float32": -np.inf, "float64": -np.inf, "int32": I32.min, "int64": I64.min},
    "reduce_min": {"float32": np.inf, "float64": np.inf, "int32": I32.max, "int64": I64.max},
    "reduce_mean": {"float32": np.nan, "float64": np.nan, "int32": 0, "int64": 0},
    "reduce_logsumexp": {"float32": -np.inf, "float64": -np.inf},
    "reduce_any": {"float32": False, "int32": False},
    "reduce_all": {"float32": True, "int32": True},
}
CASES = [(op, dt) for op, by in EXPECTED.items() for dt in by]


def _reduce(op, x, axis, keepdims):
    if op in ("reduce_any", "reduce_all"):
        x = x > 0
    return getattr(gc, op)(x, axis=axis, keepdims=keepdims)


def _run(fetches, feeds, backend, optimize):
    step = gc.compile(fetches, feeds=list(feeds), backend=backend, optimize=optimize)
    return step(feeds)


@pytest.mark.parametrize("op,dtype", CASES)
def test_reduction_over_an_empty_axis_gives_tf1s_value(op, dtype):
    dt = gc.as_dtype(dtype)
    # (reduce_prod needs static sizes on the reduced axes; the others specialize on the feed)
    x = gc.placeholder(dt, [0 if op == "reduce_prod" else None, 3], name="x")
    fetches = [_reduce(op, x, 0, False), _reduce(op, x, 0, True),
               _reduce(op, x * 2, 0, False),  # * 2: a fused reduction when optimized
               _reduce(op, x, None, False)]
    want = EXPECTED[op][dtype]
    feed = {x: np.zeros((0, 3), dt.np)}
    for backend, optimize in BUILDS:
        got = _run(fetches, feed, backend, optimize)
        for value, shape in zip(got, [(3,), (1, 3), (3,), ()]):
            value = np.asarray(value)
            assert value.shape == shape, (backend, optimize, op)
            assert value.dtype == (np.bool_ if op in ("reduce_any", "reduce_all") else dt.np)
            np.testing.assert_array_equal(value, np.full(shape, want, value.dtype),
                                          err_msg=f"{op} {dtype} {backend} {optimize}")


def test_an_empty_output_is_not_an_empty_axis():
    x = gc.placeholder(gc.float32, [None, 3], name="x")
    fetches = [gc.reduce_max(x, axis=1), gc.argmax(x, axis=1), gc.reduce_mean(x, axis=1)]
    for backend, optimize in BUILDS:
        for v in _run(fetches, {x: np.zeros((0, 3), np.float32)}, backend, optimize):
            assert np.asarray(v).shape == (0,)


@pytest.mark.parametrize("fn", [gc.argmax, gc.argmin])
def test_argmax_over_an_empty_axis_raises_invalid_argument_on_both_backends(fn):
    x = gc.placeholder(gc.float32, [None, 3], name="x")
    y = fn(x, axis=0)
    for backend, optimize in BUILDS:
        step = gc.compile([y], feeds=[x], backend=backend, optimize=optimize)
        np.testing.assert_array_equal(step(x=np.eye(2, 3, dtype=np.float32))[0],
                                      [0, 1, 0] if fn is gc.argmax else [1, 0, 0])
        with pytest.raises(InvalidArgumentError, match=r"Reduction axis 0 is empty in shape "
                                                       r"\[0,3\](.|\n)*y = fn\(x, axis=0\)"):
            step(x=np.zeros((0, 3), np.float32))


def test_argmax_over_a_static_empty_axis_fails_when_built():
    with pytest.raises(InvalidArgumentError, match=r"argmax 'ArgMax': Reduction axis 0 is "
                                                   r"empty in shape \[0\]"):
        gc.argmax(gc.zeros([0]), 0)


@pytest.mark.parametrize("op", ["reduce_sum", "reduce_mean", "reduce_max", "reduce_min",
                                "reduce_logsumexp"])
def test_gradients_through_an_empty_axis_are_zero_size(op):
    x = gc.placeholder(gc.float64, [None, 3], name="x")
    w = gc.placeholder(gc.float64, [3], name="w")
    y = getattr(gc, op)(x * w, axis=0)
    gx, gw = gc.gradients(gc.reduce_sum(y), [x, w])
    for backend, optimize in BUILDS:
        vx, vw = _run([gx, gw], {x: np.zeros((0, 3)), w: np.ones(3)}, backend, optimize)
        assert vx.shape == (0, 3) and vx.dtype == np.float64
        np.testing.assert_array_equal(vw, np.zeros(3))  # a sum over no rows


def test_reduce_prod_gradient_over_a_static_empty_axis():
    x = gc.placeholder(gc.float32, [0, 3], name="x")
    # the product over an empty axis is the constant 1: x is unconnected, so ask for zeros
    gx, = gc.gradients(gc.reduce_sum(gc.reduce_prod(x, axis=0)), [x], unconnected_gradients="zero")
    for backend, optimize in BUILDS:
        v = _run([gx], {x: np.zeros((0, 3), np.float32)}, backend, optimize)[0]
        assert v.shape == (0, 3) and v.dtype == np.float32
