"""gc.cond and gc.case: values on both backends, gradients against central differences,
nested outputs, build-time choice for Python bools, and the refusals (mismatched branches,
impure branches, bad preds) with the node and the user's line."""
import collections

import numpy as np
import pytest

import graphc as gc
from graphc.errors import DTypeError, GraphError, ShapeError

from tests.support.checks import check_against_central_differences

BACKENDS = [("numpy", False), ("numpy", True), ("llvm", False), ("llvm", True)]
BACKEND_IDS = [f"{b}-{'opt' if o else 'ref'}" for b, o in BACKENDS]


def _run(fetches, feeds, backend="numpy", optimize=False):
    with gc.Session(backend=backend, optimize=optimize) as sess:
        if gc.global_variables():
            sess.run(gc.global_variables_initializer())
        return sess.run(fetches, feeds)


@pytest.mark.parametrize("backend,optimize", BACKENDS, ids=BACKEND_IDS)
def test_cond_selects_the_branch_on_both_backends(backend, optimize):
    p = gc.placeholder(gc.bool, [])
    x = gc.placeholder(gc.float32, [3, 4])
    out = gc.cond(p, lambda: gc.exp(x) * 2.0, lambda: gc.tanh(x) - 1.0)
    xv = np.random.default_rng(0).uniform(-1, 1, (3, 4)).astype(np.float32)
    for pv, expected in [(True, np.exp(xv) * 2.0), (False, np.tanh(xv) - 1.0)]:
        got = _run(out, {p: pv, x: xv}, backend, optimize)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_case_takes_the_first_true_pred_else_the_default():
    step = gc.placeholder(gc.int32, [])
    lr = gc.case([(step < 10, lambda: gc.constant(0.1)),
                  (step < 50, lambda: gc.constant(0.01))],
                 default=lambda: gc.constant(0.001))
    with gc.Session() as sess:
        got = [float(sess.run(lr, {step: s})) for s in (0, 9, 10, 49, 50, 1000)]
    np.testing.assert_allclose(got, [0.1, 0.1, 0.01, 0.01, 0.001, 0.001], rtol=1e-7)


def test_case_without_default_uses_the_last_fn_and_accepts_a_dict():
    k = gc.placeholder(gc.int32, [])
    out = gc.case({gc.equal(k, 0): lambda: gc.constant(10.0),
                   gc.equal(k, 1): lambda: gc.constant(20.0)})
    with gc.Session() as sess:
        assert [float(sess.run(out, {k: v})) for v in (0, 1, 7)] == [10.0, 20.0, 20.0]


def test_gradient_flows_to_the_taken_branch_only(rng):
    p = gc.placeholder(gc.bool, [])
    x = gc.placeholder(gc.float64, [2, 3])
    w = gc.placeholder(gc.float64, [3])
    y = gc.cond(p, lambda: gc.tanh(x) * w, lambda: gc.square(x) + w)
    loss = gc.reduce_sum(y * np.arange(6.0).reshape(2, 3))
    gx, gw = gc.gradients(loss, [x, w])
    xv, wv = rng.uniform(-1, 1, (2, 3)), rng.uniform(-1, 1, 3)
    with gc.Session() as sess:
        for pv in (True, False):
            feeds = {p: pv, x: xv, w: wv}
            analytic = sess.run([gx, gw], feeds)
            check_against_central_differences(lambda f: float(sess.run(loss, f)), feeds,
                                              [x, w], analytic, rng, what=f"pred={pv}")


def test_safe_untaken_branch_keeps_the_gradient_finite():
    """The jnp.where advice from the docstring: log of a value made safe for the untaken
    branch has a finite gradient where the unsafe form's backward pass would give NaN."""
    x = gc.placeholder(gc.float64, [])
    p = x > 0.0
    safe = gc.where(p, x, gc.ones_like(x))
    y = gc.cond(p, lambda: gc.log(safe), lambda: x * 0.0)
    (g,) = gc.gradients(y, [x])
    with gc.Session() as sess:
        assert sess.run(g, {x: 0.0}) == 0.0
        assert sess.run(g, {x: 2.0}) == pytest.approx(0.5)


def test_nested_outputs_keep_their_structure():
    Pair = collections.namedtuple("Pair", "a b")
    p = gc.placeholder(gc.bool, [])
    x = gc.placeholder(gc.float32, [2])
    out = gc.cond(p, lambda: {"s": (x + 1.0, [x * 2.0]), "n": Pair(x, 3.0)},
                  lambda: {"s": (x - 1.0, [x * 0.0]), "n": Pair(-x, 4.0)})
    assert set(out) == {"s", "n"} and isinstance(out["n"], Pair)
    assert isinstance(out["s"], tuple) and isinstance(out["s"][1], list)
    xv = np.array([1.0, 2.0], np.float32)
    got = _run(out, {p: False, x: xv})
    np.testing.assert_array_equal(got["s"][0], xv - 1.0)
    np.testing.assert_array_equal(got["s"][1][0], [0.0, 0.0])
    np.testing.assert_array_equal(got["n"].a, -xv)
    assert float(got["n"].b) == 4.0


def test_non_strict_unpacks_a_singleton_and_strict_keeps_it():
    p = gc.placeholder(gc.bool, [])
    x = gc.placeholder(gc.float32, [2])
    assert isinstance(gc.cond(p, lambda: [x], lambda: [x + 1.0]), gc.Tensor)
    assert isinstance(gc.cond(p, lambda: [x], lambda: [x + 1.0], strict=True), list)


def test_python_bool_pred_builds_one_branch_only():
    """As TF1's smart_cond: a static pred picks the branch when the graph is built, so the
    other branch is never called and the chosen one may even be impure."""
    calls = []
    v = gc.Variable(np.zeros(2, np.float32))
    out = gc.cond(True, lambda: calls.append("t") or gc.assign_add(v, [1.0, 1.0]),
                  lambda: calls.append("f") or v)
    assert calls == ["t"] and out.op_name == "assign"
    assert gc.cond(np.bool_(False), lambda: 1, lambda: 2) == 2
    assert gc.cond(gc.constant(False), lambda: 1, lambda: 2) == 2


def test_batch_norm_style_is_training_placeholder():
    """The TF1 idiom: batch statistics when training, moving averages otherwise, selected
    by a placeholder_with_default; the moving-average update is built outside the cond."""
    is_training = gc.placeholder_with_default(False, shape=())
    x = gc.placeholder(gc.float32, [8, 3])
    moving_mean = gc.Variable(np.full(3, 0.5, np.float32), trainable=False)
    moving_var = gc.Variable(np.full(3, 2.0, np.float32), trainable=False)
    batch_mean = gc.reduce_mean(x, axis=0)
    batch_var = gc.reduce_mean(gc.square(x - batch_mean), axis=0)
    mean, var = gc.cond(is_training, lambda: (batch_mean, batch_var),
                        lambda: (moving_mean, moving_var))
    y = (x - mean) * gc.rsqrt(var + 1e-3)
    update = gc.assign(moving_mean, 0.9 * moving_mean + 0.1 * batch_mean)
    xv = np.random.default_rng(1).standard_normal((8, 3)).astype(np.float32)
    with gc.Session() as sess:
        sess.run(gc.global_variables_initializer())
        infer = sess.run(y, {x: xv})
        train, _ = sess.run([y, update], {x: xv, is_training: True})
    np.testing.assert_allclose(infer, (xv - 0.5) / np.sqrt(2.0 + 1e-3), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(train, (xv - xv.mean(0)) / np.sqrt(xv.var(0) + 1e-3),
                               rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("make,pattern", [
    (lambda v, x: gc.assign(v, x), r"true_fn creates impure node .*assign"),
    (lambda v, x: x + gc.random_normal([3]), r"true_fn creates impure node .*random_normal"),
    (lambda v, x: gc.nn.dropout(x, rate=0.5), r"true_fn creates impure node .*random"),
], ids=["assign", "random_normal", "dropout"])
def test_impure_branch_is_refused_naming_the_node_and_line(make, pattern):
    v = gc.Variable(np.zeros(3, np.float32))
    x = gc.placeholder(gc.float32, [3])
    p = gc.placeholder(gc.bool, [])
    with pytest.raises(GraphError, match=pattern) as info:
        gc.cond(p, lambda: make(v, x), lambda: x)  # the line the error names
    text = str(info.value)
    assert "test_cond.py" in text and "created at" in text and "hint: build it outside" in text


def test_variable_created_in_a_branch_is_not_an_impure_effect():
    p = gc.placeholder(gc.bool, [])
    out = gc.cond(p, lambda: gc.Variable(gc.random_normal([2], seed=1)) * 1.0,
                  lambda: gc.zeros([2]))
    assert _run(out, {p: False}).tolist() == [0.0, 0.0]


@pytest.mark.parametrize("t,f,cls,pattern", [
    (lambda x: (x, x), lambda x: x, GraphError, r"different structures at output"),
    (lambda x: [x, x], lambda x: [x], GraphError, r"different structures"),
    (lambda x: {"a": x}, lambda x: {"b": x}, GraphError, r"different structures"),
    (lambda x: x, lambda x: gc.cast(x, gc.float64), DTypeError,
     r"output has dtype float32 in true_fn but float64"),
    (lambda x: x, lambda x: gc.reduce_sum(x), ShapeError,
     r"output has shape f32\[3\] in true_fn but f32\[\]"),
    (lambda x: (x, x), lambda x: (x, x[:2]), ShapeError, r"output\[1\] has shape"),
], ids=["tuple-vs-tensor", "list-lengths", "dict-keys", "dtype", "shape", "nested-shape"])
def test_mismatched_branches_are_refused(t, f, cls, pattern):
    x = gc.placeholder(gc.float32, [3])
    p = gc.placeholder(gc.bool, [])
    with pytest.raises(cls, match=pattern) as info:
        gc.cond(p, lambda: t(x), lambda: f(x))
    assert "test_cond.py" in str(info.value)


def test_bad_preds_are_refused():
    x = gc.placeholder(gc.float32, [3])
    with pytest.raises(DTypeError, match=r"pred must be bool"):
        gc.cond(x[0], lambda: x, lambda: x)
    with pytest.raises(ShapeError, match=r"pred must be a scalar(.|\n)*gc.where"):
        gc.cond(x > 0.0, lambda: x, lambda: x)
    with pytest.raises(GraphError, match=r"must be callables"):
        gc.cond(x[0] > 0.0, x, x)
    with pytest.raises(GraphError, match=r"exclusive=True but more than one"):
        gc.case([(True, lambda: x), (True, lambda: x)], exclusive=True)


@pytest.mark.parametrize("backend,optimize", BACKENDS)
def test_branches_whose_shapes_are_known_in_one_and_fed_in_the_other(backend, optimize):
    """TF1 merges branch shapes [8, 7] and [None, 7]; graphc computes both branches, so the
    fed one must turn out [8, 7] exactly: a [9, 7] or a [1, 7] (which ``where`` alone would
    broadcast) is a ShapeError naming the line, once fed. Gradients reach both sides."""
    a = gc.placeholder(gc.float32, [8, 7])
    b = gc.placeholder(gc.float32, [None, 7])
    p = gc.placeholder(gc.bool, [])
    y = gc.cond(p, lambda: a * 2.0, lambda: gc.tanh(b))
    ga, gb = gc.gradients(gc.reduce_sum(y * y), [a, b])
    av = np.linspace(-1, 1, 56, dtype=np.float32).reshape(8, 7)
    bv = av[::-1].copy()
    for pv in (True, False):
        got, dga, dgb = _run([y, ga, gb], {a: av, b: bv, p: pv}, backend, optimize)
        want = av * 2.0 if pv else np.tanh(bv)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(dga, 8.0 * av if pv else 0.0, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(dgb, 0.0 if pv else 2 * want * (1 - want ** 2),
                                   rtol=1e-5, atol=1e-6)
    for wrong in (np.ones((9, 7), np.float32), np.ones((1, 7), np.float32)):
        with pytest.raises(ShapeError, match="cannot broadcast") as err:
            _run(y, {a: av, b: wrong, p: True}, backend, optimize)
        assert "test_cond.py" in str(err.value)
    with pytest.raises(ShapeError, match="in true_fn but"):
        gc.cond(p, lambda: a, lambda: gc.placeholder(gc.float32, [None, 6]))
