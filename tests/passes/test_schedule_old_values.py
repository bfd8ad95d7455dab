"""A reader of a variable's old value that also depends on the variable's update.

``a = assign(w, w * 0.5); y = a * w`` reads both the new value (through ``a``) and the old one
(``w``). The reference computes it; the optimized schedule, which must run every read of the
old value before the write, found a cycle and refused to compile. The schedule pass now gives
such readers a copy of the old value taken before the write (``old_value_copies``).
"""
import numpy as np
import pytest

import graphc as gc
from graphc.client.pipeline import compile_program

CASES = {
    "assign times old": lambda w: gc.assign(w, w * 0.5) * w + 1.0,
    "old through a view": lambda w: gc.reduce_sum(gc.reshape(gc.assign(w, w - 1.0), [6])
                                                  * gc.reshape(w, [6])),
    "assign_add and old": lambda w: gc.maximum(gc.assign_add(w, gc.ones_like(w)), w * 3.0),
}


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
@pytest.mark.parametrize("case", list(CASES))
def test_the_old_value_is_read_as_the_reference_reads_it(case, backend):
    w = gc.Variable(np.arange(6, dtype=np.float64).reshape(3, 2) - 2.0, name="w")
    y = CASES[case](w)
    ref = gc.compile(y, backend="numpy", optimize=False)
    step = gc.compile(y, backend=backend)
    for _ in range(2):  # the second call starts from the updated variable on both
        np.testing.assert_allclose(step(), ref(), rtol=1e-12)
        np.testing.assert_array_equal(step.variables["w"], ref.variables["w"])


def test_the_schedule_pass_counts_its_copies_and_gradients_see_the_old_value():
    w = gc.Variable(np.ones((3, 2)), name="w")
    x = gc.placeholder(gc.float64, [3, 2], name="x")
    y = gc.reduce_sum(gc.assign(w, w * x) * w * x)
    program = compile_program([y], {x: (3, 2)}, "numpy").program
    record = next(r for r in program.records if r["name"] == "schedule")
    assert record["changes"]["old_value_copies"] == 1
    g = gc.gradients(y, [x])[0]  # an assign's result is a constant to autodiff, as in TF1
    xv = np.full((3, 2), 2.0)
    want = gc.compile(g, backend="numpy", optimize=False)({x: xv})
    for backend in ("numpy", "llvm"):
        np.testing.assert_allclose(gc.compile(g, backend=backend)({x: xv}), want)


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_unoptimized_steps_with_checks_plan_buffers_and_keep_the_old_value(backend):
    """With check_numerics and optimize=False, no schedule pass runs but buffers are planned:
    the memory plan makes the copy itself."""
    w = gc.Variable(np.arange(6, dtype=np.float64).reshape(3, 2), name="w")
    y = gc.assign(w, w * 0.5) * w + 1.0
    want = np.arange(6).reshape(3, 2) ** 2 * 0.5 + 1.0
    for optimize in (False, True):
        step = gc.compile(y, backend=backend, optimize=optimize, check_numerics=True)
        np.testing.assert_allclose(step(), want)


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_a_reader_ordered_after_the_update_by_an_in_place_decision(backend):
    """The fuzzer's seed 213726: d/dx of a loss read after its SGD step, and a Hessian-vector
    product through it. The gradient's ``(1 - tanh^2) * v`` reads the old ``v``; no data edge
    puts it after the update, but an in-place decision does (it overwrites a buffer a later
    node reads): it gets the copy too."""
    x = gc.placeholder(gc.float64, [1, 1], name="x")
    v = gc.Variable(np.array([[-1.42]]), name="v")
    loss = gc.reduce_sum(gc.tanh(v * x))
    train = gc.train.GradientDescentOptimizer(0.1).minimize(loss, var_list=[v])
    with gc.control_dependencies([train]):
        after = gc.identity(loss)
    g = gc.gradients(after, [x])[0]
    (gx,) = gc.gradients(gc.reduce_sum(gc.tanh(after)), [x])
    hv = gc.gradients(gc.reduce_sum(gx * 0.3), [x])[0]
    feed = {x: np.array([[0.7]])}
    want = gc.compile([g, hv], backend="numpy", optimize=False)(feed)
    got = gc.compile([g, hv], backend=backend)(feed)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-12)
