"""``check_numerics`` on the LLVM backend gives the NumPy backend's error: the first node (in
schedule order) holding NaN or Inf, forward or backward, by name and op, with the user's line
and the flat index; the explicit ``gc.check_numerics`` op raises the same text on both backends,
optimized or not; a saved checked step raises it too; a build without checks emits nothing."""
import re

import numpy as np
import pytest

import graphc as gc
from graphc.errors import CompileError, NumericsError

BUILDS = [("numpy", True), ("numpy", False), ("llvm", True), ("llvm", False)]


def _errors(fetches, feeds, check_numerics=True, builds=BUILDS):
    """{(backend, optimize): the NumericsError text} of one call with ``feeds``."""
    out = {}
    for backend, optimize in builds:
        step = gc.compile(fetches, feeds=list(feeds), backend=backend, optimize=optimize,
                          check_numerics=check_numerics)
        with pytest.raises(NumericsError) as info:
            step(feeds)
        out[(backend, optimize)] = str(info.value)
    return out


def _same(errors):
    texts = set(errors.values())
    assert len(texts) == 1, "\n\n".join(f"{k}:\n{v}" for k, v in errors.items())
    return texts.pop()


def test_log_of_zero_names_the_log_not_a_later_node():
    x = gc.placeholder(gc.float32, [2, 3], name="x")
    h = gc.log(x)  # the first Inf; the product and the sum after it are not finite either
    y = gc.reduce_sum(h * 3.0)
    msg = _same(_errors([y], {x: np.array([[1, 2, 3], [4, 0, 5]], np.float32)}))
    assert msg.startswith("check_numerics: log 'Log' produced NaN or Inf (the first node")
    assert "0 NaN and 1 Inf among 6 values of f32[2,3], the first at index (1, 1) " \
           "(flat index 4)" in msg
    assert "h = gc.log(x)  # the first Inf" in msg


def test_division_by_zero_in_the_backward_pass_names_the_forward_line():
    x = gc.placeholder(gc.float64, [3], name="x")
    y = gc.sqrt(x)  # sqrt(0) = 0 is finite; its gradient g / (2 sqrt(x)) divides by 0
    g, = gc.gradients(gc.reduce_sum(y * y), [x])
    msg = _same(_errors([y, g], {x: np.array([4.0, 0.0, 1.0])}))
    assert "'grad/" in msg and "produced NaN or Inf" in msg and "(flat index 1)" in msg
    assert "a gradient node: the line below is the forward computation" in msg
    assert "y = gc.sqrt(x)  # sqrt(0) = 0" in msg


def test_a_nan_feed_is_reported_at_entry():
    x = gc.placeholder(gc.float32, [4], name="x")
    y = gc.exp(x) * 2.0
    msg = _same(_errors([y], {x: np.array([0, 1, np.nan, 2], np.float32)}))
    assert msg.startswith("check_numerics: placeholder 'x' holds NaN or Inf")
    assert "1 NaN and 0 Inf among 4 values of f32[4], the first at index (2,) " \
           "(flat index 2)" in msg


def _regression(optimizer):
    x = gc.placeholder(gc.float32, [4, 3], name="x")
    t = gc.placeholder(gc.float32, [4, 1], name="t")
    w = gc.Variable(np.full((3, 1), 0.5, np.float32), name="w")
    pred = gc.matmul(gc.log(x), w)  # log of a non-positive input: the first bad node
    loss = gc.reduce_mean(gc.square(pred - t))
    return x, t, w, loss, optimizer.minimize(loss)


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_training_step_stops_at_the_first_bad_node_and_keeps_the_variables(backend):
    x, t, w, loss, train = _regression(gc.train.AdamOptimizer(0.05))
    good = {x: np.full((4, 3), 2.0, np.float32), t: np.ones((4, 1), np.float32)}
    bad = {x: np.array([[1, 2, 3]] * 3 + [[1, -1, 2]], np.float32), t: good[t]}
    with gc.Session(backend=backend, check_numerics=True) as sess:
        sess.run(gc.global_variables_initializer())
        for _ in range(3):
            sess.run([loss, train], good)
        before = sess.run(w)
        with pytest.raises(NumericsError) as info:
            sess.run([loss, train], bad)
        # the forward pass stopped before any update: nothing was assigned
        np.testing.assert_array_equal(sess.run(w), before)
    msg = str(info.value)
    assert msg.startswith("check_numerics: log 'Log' produced NaN or Inf")
    assert "the first at index (3, 1) (flat index 10)" in msg


def test_training_step_errors_agree_across_backends_and_optimizers():
    for make in (lambda: gc.train.GradientDescentOptimizer(0.1),
                 lambda: gc.train.AdamOptimizer(0.01)):
        with gc.Graph().as_default():
            x, t, w, loss, train = _regression(make())
        feeds = {x: np.array([[1, 2, 0]] * 4, np.float32), t: np.ones((4, 1), np.float32)}
        msg = _same(_errors([loss, train], feeds))
        assert "log 'Log" in msg and "(flat index 2)" in msg


def test_an_overflowing_update_is_caught_before_the_assign():
    x = gc.placeholder(gc.float32, [2], name="x")
    w = gc.Variable(np.ones(2, np.float32), name="w")
    loss = gc.reduce_sum(w * x)
    train = gc.train.GradientDescentOptimizer(1e38).minimize(loss)
    feeds = {x: np.array([1.0, 30.0], np.float32)}  # w - 1e38 * 30 overflows
    msg = _same(_errors([train], feeds))
    assert "produced NaN or Inf" in msg and "(flat index 1)" in msg


def test_explicit_check_numerics_op_is_the_same_on_both_backends():
    x = gc.placeholder(gc.float32, [3], name="x")
    checked = gc.check_numerics(gc.exp(x), "exp overflowed")
    y = gc.reduce_sum(checked * 2.0)
    msg = _same(_errors([y], {x: np.array([1, 100, 2], np.float32)}, check_numerics=False))
    assert msg.startswith("check_numerics: check_numerics 'CheckNumerics' found NaN or Inf")
    assert "0 NaN and 1 Inf among 3 values of f32[3], the first at index (1,) " \
           "(flat index 1)" in msg
    assert "message: exp overflowed" in msg
    # in check mode the exp itself is the first bad node, on both backends
    msg = _same(_errors([y], {x: np.array([1, 100, 2], np.float32)}))
    assert msg.startswith("check_numerics: exp 'Exp' produced NaN or Inf")


def test_explicit_check_of_a_gradient_is_the_same_on_both_backends():
    x = gc.placeholder(gc.float32, [3], name="x")
    s = gc.placeholder(gc.float32, [3], name="s")
    y = gc.debugging.check_numerics(x * 2.0, "scaled")  # tf.debugging's name for it
    g, = gc.gradients(gc.reduce_sum(y * s), [x])  # the gradient reaching y is s
    feeds = {x: np.array([1, 2, 3], np.float32), s: np.array([1, np.inf, 1], np.float32)}
    msg = _same(_errors([g], feeds, check_numerics=False))
    assert "found NaN or Inf" in msg and "message: gradient of: scaled" in msg
    assert "(flat index 1)" in msg and "a gradient node" in msg


def test_a_saved_checked_llvm_step_raises_the_same_error(tmp_path):
    x = gc.placeholder(gc.float32, [4], name="x")
    w = gc.Variable(np.ones(4, np.float32), name="w")
    h = gc.log(x * w)
    loss = gc.reduce_sum(h)
    train = gc.train.GradientDescentOptimizer(0.1).minimize(loss)
    step = gc.compile([loss, train], feeds=[x], backend="llvm", check_numerics=True)
    bad = np.array([1, 2, -3, 4], np.float32)
    with pytest.raises(NumericsError) as live:
        step(x=bad)
    step.save(str(tmp_path / "checked.gcx"))
    loaded = gc.load(str(tmp_path / "checked.gcx"))
    np.testing.assert_allclose(loaded(x=np.full(4, 2.0, np.float32))[0], 4 * np.log(2.0),
                               rtol=1e-6)
    with pytest.raises(NumericsError) as saved:
        loaded(x=bad)
    assert str(saved.value) == str(live.value)
    assert "log 'Log' produced NaN" in str(saved.value)


def test_a_build_without_checks_emits_no_check():
    x = gc.placeholder(gc.float32, [8], name="x")
    y = gc.reduce_sum(gc.log(x) * 2.0)
    plain = gc.compile([y], feeds=[x], backend="llvm")
    checked = gc.compile([y], feeds=[x], backend="llvm", check_numerics=True)
    check_kernel = re.compile(r"@k\d+_check_numerics_")  # (comments name the test file)
    assert not check_kernel.search(str(plain.source))
    assert check_kernel.search(str(checked.source))
    assert not plain.compiled.fn.layout.numerics
    assert [s.node for s in checked.compiled.fn.layout.numerics] == \
        ["placeholder 'x'", "log 'Log'", "multiply 'mul'", "reduce_sum 'Sum'"]
    np.testing.assert_allclose(checked(x=np.full(8, 2.0, np.float32))[0], 16 * np.log(2.0),
                               rtol=1e-6)


def test_check_writes_still_needs_the_numpy_backend():
    x = gc.placeholder(gc.float32, [2], name="x")
    with pytest.raises(CompileError, match=r"checks \['writes'\] need backend='numpy'"):
        gc.compile([x * 2.0], feeds=[x], backend="llvm", check_writes=True)


def test_conv_pool_step_reports_the_same_node_on_both_backends():
    x = gc.placeholder(gc.float32, [2, 6, 6, 3], name="x")
    k = gc.Variable(np.full((3, 3, 3, 4), 0.1, np.float32), name="k")
    b = gc.Variable(np.zeros(4, np.float32), name="b")
    c = gc.nn.relu(gc.nn.conv2d(x, k, [1, 1, 1, 1], "SAME") + b)
    p = gc.nn.max_pool(c, [1, 2, 2, 1], [1, 2, 2, 1], "VALID")
    loss = gc.reduce_sum(gc.sqrt(p))  # sqrt(0) is 0; its gradient is not finite
    train = gc.train.GradientDescentOptimizer(0.01).minimize(loss)
    xv = np.random.default_rng(0).uniform(0.5, 1.0, (2, 6, 6, 3)).astype(np.float32)
    step = gc.compile([loss, train], feeds=[x], backend="llvm", check_numerics=True)
    step(x=xv)  # all finite
    xv[1] = -xv[1]  # the second image's ReLU outputs are all 0
    msg = _same(_errors([loss, train], {x: xv}))
    assert "'grad/" in msg and "gc.sqrt(p)" in msg


def test_an_assigned_constant_is_caught_at_the_assign():
    x = gc.placeholder(gc.float32, [2], name="x")
    v = gc.Variable(np.ones(2, np.float32), name="v")
    a = gc.assign(v, gc.constant([1.0, np.inf]))
    msg = _same(_errors([a, x * 2.0], {x: np.ones(2, np.float32)}))
    assert msg.startswith("check_numerics: assign 'Assign' produced NaN or Inf")
    assert "(flat index 1)" in msg


def test_the_message_from_a_site_alone():
    from graphc.runtime.numerics import NumericsSite, numerics_error
    site = NumericsSite(node="log 'h'", op="log", name="h", type="f32[2,2]", loc="m.py:3    h")
    err = numerics_error(site, np.array([[1, 2], [np.nan, np.inf]], np.float32))
    assert str(err).splitlines()[:3] == [
        "check_numerics: log 'h' produced NaN or Inf (the first node to do so)",
        "  1 NaN and 1 Inf among 4 values of f32[2,2], the first at index (1, 0) (flat index 2)",
        "  at m.py:3    h"]
    # a value restored before it was read: the flat index the check found is still named
    err = numerics_error(site, np.ones((2, 2), np.float32), flat=3)
    assert "NaN or Inf at flat index 3 of f32[2,2]" in str(err)


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_saved_checked_steps_raise_the_compiled_steps_error(tmp_path, backend):
    x = gc.placeholder(gc.float32, [3], name="x")
    y = gc.check_numerics(gc.sqrt(x), "root") * 2.0
    fetches = [gc.reduce_sum(y), gc.reduce_sum(gc.exp(x))]
    bad = np.array([1.0, -1.0, 2.0], np.float32)
    for check in (True, False):
        step = gc.compile(fetches, feeds=[x], backend=backend, check_numerics=check)
        with pytest.raises(NumericsError) as live:
            step(x=bad)
        path = str(tmp_path / f"{backend}_{check}.gcx")
        step.save(path)
        with pytest.raises(NumericsError) as saved:
            gc.load(path)(x=bad)
        assert str(saved.value) == str(live.value)
        assert ("sqrt 'Sqrt' produced" if check else "message: root") in str(saved.value)
