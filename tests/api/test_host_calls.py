"""Host calls inside compiled steps: tf.Print, tf.print, tf.Assert, tf.py_func.

Every behaviour runs on both backends, optimized and not (the unoptimized NumPy step is the
reference): the Python function is called at its place in the schedule, values pass through
unchanged, errors name the node and the user's line, and a failing call stops the step.
"""
import sys

import numpy as np
import pytest

import graphc as gc
from graphc.errors import ArtifactError, GraphError, InvalidArgumentError, UnknownError
from graphc.runtime import host_calls

CONFIGS = [("numpy", False), ("numpy", True), ("llvm", False), ("llvm", True)]
IDS = [f"{b}-{'opt' if o else 'ref'}" for b, o in CONFIGS]
X = np.arange(6, dtype=np.float32).reshape(2, 3)


def session(config):
    backend, optimize = config
    return gc.Session(backend=backend, optimize=optimize)


@pytest.fixture(params=CONFIGS, ids=IDS)
def config(request):
    return request.param


# -- tf.Print -------------------------------------------------------------------------------------
def test_print_prints_and_passes_the_value_and_its_gradient_through(config, capsys):
    x = gc.placeholder(gc.float32, [None, 3], name="x")
    w = gc.Variable(np.array([1.0, 2.0, 3.0], np.float32), name="w")
    h = gc.Print(x * w, [x, gc.reduce_sum(x)], "values: ")
    loss = gc.reduce_sum(h * h)
    g, = gc.gradients(loss, [w])
    with session(config) as sess:
        sess.run(gc.global_variables_initializer())
        hv, gv = sess.run([h, g], {x: X})
    np.testing.assert_array_equal(hv, X * [1, 2, 3])
    np.testing.assert_allclose(gv, (2 * X * X * [1, 2, 3]).sum(0), rtol=1e-6)
    err = capsys.readouterr().err
    assert err.count("values: ") == 1
    assert "values: [[0.0 1.0 2.0]...][15.0]" in err  # TF1's form: 3 elements, then ...


def test_print_first_n_and_summarize(config, capsys):
    x = gc.placeholder(gc.float32, [2, 3], name="x")
    y = gc.Print(x, [x], "x=", first_n=2, summarize=-1) + 1.0
    with session(config) as sess:
        for k in range(4):
            np.testing.assert_array_equal(sess.run(y, {x: X + k}), X + k + 1)
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["x=[[0.0 1.0 2.0][3.0 4.0 5.0]]", "x=[[1.0 2.0 3.0][4.0 5.0 6.0]]"]


def test_print_is_not_run_when_its_value_is_not_needed(capsys):
    x = gc.placeholder(gc.float32, [2, 3], name="x")
    gc.Print(x, [x], "never: ")
    with gc.Session(optimize=True) as sess:
        sess.run(x * 2.0, {x: X})
    assert "never" not in capsys.readouterr().err


# -- tf.print -------------------------------------------------------------------------------------
def test_print_op_in_control_dependencies_runs_once_per_step(config, capsys):
    x = gc.placeholder(gc.float32, [2, 3], name="x")
    count = gc.Variable(np.float32(0), name="count", trainable=False)
    loss = gc.reduce_sum(x)
    with gc.control_dependencies([gc.print("loss:", loss, "x:", x, output_stream=sys.stdout)]):
        train = gc.assign_add(count, 1.0)
    with session(config) as sess:
        sess.run(gc.global_variables_initializer())
        for _ in range(3):
            sess.run(train, {x: X})
        assert sess.run(count) == 3.0
    out = capsys.readouterr().out.splitlines()
    assert out.count("loss: 15.0 x: [[0. 1. 2.]") == 3 and len(out) == 6


def test_print_op_fetched_gives_none_and_summarizes(capsys):
    x = gc.placeholder(gc.int32, [10], name="x")
    op = gc.print("x", x, sep="=", summarize=2)
    with gc.Session() as sess:
        assert sess.run(op, {x: np.arange(10, dtype=np.int32)}) is None
    assert capsys.readouterr().err == "x=[0 1 ... 8 9]\n"


# -- tf.Assert ------------------------------------------------------------------------------------
def _guarded_update():
    x = gc.placeholder(gc.float32, [3], name="x")
    v = gc.Variable(np.float32(0), name="v", trainable=False)
    check = gc.Assert(gc.reduce_all(x > 0.0), ["x must be positive:", x], name="positive")
    with gc.control_dependencies([check]):
        update = gc.assign_add(v, gc.reduce_sum(x))
    return x, v, update


def test_assert_passes_and_fails_stopping_the_step(config):
    x, v, update = _guarded_update()
    with session(config) as sess:
        sess.run(gc.global_variables_initializer())
        sess.run(update, {x: [1.0, 2.0, 3.0]})
        with pytest.raises(InvalidArgumentError) as info:
            sess.run(update, {x: [1.0, -2.0, 3.0, ][:3]})
        assert sess.run(v) == 6.0  # the update after the assertion did not happen
        sess.run(update, {x: [1.0, 1.0, 1.0]})  # the step still works afterwards
        assert sess.run(v) == 9.0
    msg = str(info.value)
    assert "Assert 'positive" in msg and "assertion failed: x must be positive: [1.0 -2.0 3.0]" \
        in msg
    assert "test_host_calls.py" in msg and "gc.Assert(" in msg


def test_assert_condition_must_be_a_scalar_bool():
    x = gc.placeholder(gc.float32, [3], name="x")
    with pytest.raises(GraphError, match=r"Assert: the condition must be a scalar bool, found "
                       r"b8\[3\]|Assert: the condition must be a scalar bool"):
        gc.Assert(x > 0.0, [x])


@pytest.mark.parametrize("make,good,bad,pattern", [
    (lambda x: gc.debugging.assert_positive(x, message="need x > 0"), [1, 2, 3], [1, 0, 3],
     r"need x > 0: Condition x > 0 did not hold element-wise: x \(x\) = \[1.0 0.0 3.0\]"),
    (lambda x: gc.debugging.assert_non_negative(x), [0, 2, 3], [0, -2, 3], r"x >= 0"),
    (lambda x: gc.assert_equal(x, [1.0, 2.0, 3.0]), [1, 2, 3], [1, 2, 4],
     r"Condition x == y .* y \(Const\w*\) = \[1.0 2.0 3.0\]"),
    (lambda x: gc.debugging.assert_less(x, 3.0), [0, 1, 2], [0, 1, 3], r"x < y"),
])
def test_debugging_assertions(make, good, bad, pattern):
    x = gc.placeholder(gc.float32, [3], name="x")
    with gc.control_dependencies([make(x)]):
        y = x * 2.0
    with gc.Session(backend="llvm") as sess:
        np.testing.assert_array_equal(sess.run(y, {x: good}), np.multiply(good, 2.0))
        with pytest.raises(InvalidArgumentError, match=pattern):
            sess.run(y, {x: bad})


# -- tf.py_func -----------------------------------------------------------------------------------
def test_py_func_one_and_two_outputs_int_and_float(config):
    x = gc.placeholder(gc.float32, [None, 3], name="x")
    doubled = gc.py_func(lambda a: a * np.float32(2), [x], gc.float32, shape=[x])
    total, rows = gc.py_func(lambda a: (a.sum(axis=1), np.int64(a.shape[0])), [x],
                             [gc.float32, gc.int64], shape=[[2], []], name="stats")
    combined = doubled + gc.expand_dims(total, 1)
    with session(config) as sess:
        d, t, r, c = sess.run([doubled, total, rows, combined], {x: X})
        np.testing.assert_array_equal(d, X * 2)
        np.testing.assert_array_equal(t, X.sum(1))
        assert r == 2 and np.asarray(r).dtype == np.int64
        np.testing.assert_array_equal(c, X * 2 + X.sum(1, keepdims=True))
        x5 = np.ones((5, 3), np.float32)  # shape=[x]: follows the fed batch
        np.testing.assert_array_equal(sess.run(doubled, {x: x5}), x5 * 2)


def test_py_func_odd_signatures(config):
    """A repeated input, a Python number input, no inputs (the generated call has only
    keywords), a bool output, a one-item Tout list, and an empty Tout (an op)."""
    seen = []
    x = gc.placeholder(gc.float32, [3], name="x")
    a = gc.py_func(lambda u, v, k: (u + v * k).astype(np.float32), [x, x, 3.0], gc.float32,
                   shape=[x])
    b = gc.py_func(lambda: np.arange(4, dtype=np.int32), [], gc.int32, shape=[4])
    c = gc.py_func(lambda u: u > 1, [x], gc.bool, shape=[x])
    d = gc.py_func(lambda u: [[1.5, 2.5]], [x], [gc.float64], shape=[[2]])
    e = gc.py_func(lambda u: seen.append(u.copy()), [x], [])
    with session(config) as sess:
        va, vb, vc, vd, ve = sess.run([a, b, c, d, e], {x: [1.0, 2.0, 3.0]})
    np.testing.assert_array_equal(va, [4.0, 8.0, 12.0])
    np.testing.assert_array_equal(vb, np.arange(4))
    np.testing.assert_array_equal(vc, [False, True, True])
    assert isinstance(vd, list) and vd[0].dtype == np.float64 and list(vd[0]) == [1.5, 2.5]
    assert ve is None and len(seen) == 1 and list(seen[0]) == [1.0, 2.0, 3.0]


def test_py_func_stateful_counts_calls_in_schedule_order(config):
    calls = []

    def count(a):
        calls.append(float(a))
        return np.int32(len(calls))

    x = gc.placeholder(gc.float32, [], name="x")
    n = gc.py_func(count, [x], gc.int32, shape=[], stateful=True)
    twice = gc.py_func(count, [x * 2.0], gc.int32, shape=[])  # not merged with n
    with session(config) as sess:
        assert list(sess.run([n, twice], {x: 1.0})) in ([1, 2], [2, 1])
        assert sess.run(n, {x: 5.0}) == 3
    assert sorted(calls) == [1.0, 2.0, 5.0]


def test_py_func_gradient_is_zero():
    x = gc.placeholder(gc.float64, [3], name="x")
    y = gc.py_func(np.sin, [x], gc.float64, shape=[x])
    g, = gc.gradients(gc.reduce_sum(y) + gc.reduce_sum(x), [x])
    with gc.Session() as sess:
        np.testing.assert_array_equal(sess.run(g, {x: [1.0, 2.0, 3.0]}), [1.0, 1.0, 1.0])


@pytest.mark.parametrize("result,pattern", [
    (np.zeros(4, np.float32), r"output 0 of the Python function has shape \[4\], the node "
                              r"declares \[3\]"),
    (np.zeros(3, np.float64), r"output 0 of the Python function is float64, the node "
                              r"declares float32"),
    ((np.zeros(3, np.float32), 1), r"returned 2 values, the node declares 1 outputs"),
])
def test_py_func_wrong_result_is_a_clear_error(config, result, pattern):
    x = gc.placeholder(gc.float32, [3], name="x")
    y = gc.py_func(lambda a: result, [x], gc.float32, shape=[3], name="bad")
    with session(config) as sess, pytest.raises(InvalidArgumentError, match=pattern) as info:
        sess.run(y, {x: np.ones(3, np.float32)})
    assert "py_func 'bad'" in str(info.value) and "test_host_calls.py" in str(info.value)


def test_py_func_exception_is_reraised_naming_the_node(config):
    def explode(a):
        raise KeyError("no such entry")

    x = gc.placeholder(gc.float32, [3], name="x")
    v = gc.Variable(np.float32(0), name="v", trainable=False)
    y = gc.py_func(explode, [x], gc.float32, shape=[x], name="lookup")
    with gc.control_dependencies([y]):
        update = gc.assign_add(v, 1.0)
    with session(config) as sess:
        sess.run(gc.global_variables_initializer())
        with pytest.raises(UnknownError, match=r"py_func 'lookup': the Python function raised "
                           r"KeyError: 'no such entry'") as info:
            sess.run(update, {x: np.ones(3, np.float32)})
        assert sess.run(v) == 0.0
    assert isinstance(info.value.__cause__, KeyError)
    assert "test_host_calls.py" in str(info.value)


def test_py_func_needs_static_output_shapes():
    x = gc.placeholder(gc.float32, [None], name="x")
    with pytest.raises(GraphError, match=r"py_func 'PyFunc': graphc needs the static shape"):
        gc.py_func(np.sort, [x], gc.float32)
    with pytest.raises(GraphError, match=r"output 0 has shape \[None, 2\]: graphc needs static"):
        gc.numpy_function(np.sort, [x], gc.float32, shape=[None, 2])


def test_ir_holds_the_key_not_the_function():
    x = gc.placeholder(gc.float32, [3], name="x")
    y = gc.py_func(np.negative, [x], gc.float32, shape=[x], name="neg")
    key = y.attrs["key"]
    assert host_calls.entry(key).func is np.negative
    assert y.opdef.impure and not y.opdef.differentiable
    text = gc.compile([y], feeds=[x], optimize=False).ir()
    assert f"host_call{{key={key}, outputs=((float32,0),)}} %x" in text
    assert "negative" not in text


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_save_refuses_steps_with_host_calls(tmp_path, backend):
    x = gc.placeholder(gc.float32, [3], name="x")
    y = gc.Print(x * 2.0, [x], "x: ", name="show")
    step = gc.compile([y], feeds=[x], backend=backend)
    step(x=np.ones(3, np.float32))
    with pytest.raises(ArtifactError, match=r"host_call 'show/print': the step calls a Python "
                       r"function"):
        step.save(tmp_path / "step.gcx")
    assert not (tmp_path / "step.gcx").exists()
