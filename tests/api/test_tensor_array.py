"""gc.TensorArray, a list of tensors rebuilt by each write: the TF1 dynamic-RNN idiom with
while_loop matches gc.nn.static_rnn in values and gradients on both backends; write, read,
stack, unstack, gather, scatter, split, concat, size and identity against NumPy; and clear
errors for run-time indices, double writes, dtypes, shapes and the where-frozen loop."""
import numpy as np
import pytest

import graphc as gc
from graphc.ops.control_flow_ops import flatten
from graphc.errors import DTypeError, GraphError, ShapeError

from tests.support.checks import check_against_central_differences

T, B, D, H = 4, 3, 2, 5
CELLS = [gc.nn.rnn_cell.BasicRNNCell, gc.nn.rnn_cell.GRUCell, gc.nn.rnn_cell.BasicLSTMCell]


def _rnn_by_while_loop(cell, x):
    """The TF1 idiom: unstack the inputs into one TensorArray, write outputs to another."""
    steps = gc.shape(x)[0]
    inputs_ta = gc.TensorArray(x.dtype, size=steps).unstack(x)
    outputs_ta = gc.TensorArray(x.dtype, size=steps)

    def body(t, state, ta):
        output, new_state = cell(inputs_ta.read(t), state)
        return t + 1, new_state, ta.write(t, output)
    _, final, outputs_ta = gc.while_loop(lambda t, *_: t < steps, body,
                                         (gc.constant(0), cell.zero_state(B, x.dtype),
                                          outputs_ta))
    return outputs_ta.stack(), final


def _loss(outputs, final):
    return gc.reduce_sum(outputs * outputs) + gc.add_n(
        [gc.reduce_sum(s * 0.5) for s in flatten(final)])


@pytest.mark.parametrize("make_cell", CELLS, ids=["rnn", "gru", "lstm"])
@pytest.mark.parametrize("backend,optimize", [("numpy", False), ("llvm", True)],
                         ids=["numpy-ref", "llvm-opt"])
def test_while_loop_rnn_matches_static_rnn(make_cell, backend, optimize):
    x = gc.placeholder(gc.float32, [T, B, D])
    cell = make_cell(H)
    outputs, final = _rnn_by_while_loop(cell, x)
    ref_list, ref_final = gc.nn.static_rnn(cell, gc.unstack(x), dtype=gc.float32)
    ref_outputs = gc.stack(ref_list)
    xs = [x] + cell.variables  # one set of weights: both unrolls share the cell's variables
    grads = gc.gradients(_loss(outputs, final), xs)
    ref_grads = gc.gradients(_loss(ref_outputs, ref_final), xs)
    xv = np.random.default_rng(3).uniform(-1, 1, (T, B, D)).astype(np.float32)
    with gc.Session(backend=backend, optimize=optimize) as sess:
        sess.run(gc.global_variables_initializer())
        got = sess.run([outputs, flatten(final), grads], {x: xv})
        want = sess.run([ref_outputs, flatten(ref_final), ref_grads], {x: xv})
    assert got[0].shape == (T, B, H)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-6)
    for a, b in zip(got[1], want[1]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    for a, b, v in zip(got[2], want[2], xs):
        assert np.abs(b).max() > 0, v.name
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5, err_msg=v.op.name)


def test_while_loop_rnn_gradient_matches_central_differences(rng):
    x = gc.placeholder(gc.float64, [3, B, D])
    w = gc.placeholder(gc.float64, [D + H, H])
    steps = 3

    class Cell:  # a fed kernel, so that central differences can move it
        def __call__(self, inputs, state):
            h = gc.tanh(gc.matmul(gc.concat([inputs, state], 1), w))
            return h, h
    inputs_ta = gc.TensorArray(gc.float64, size=steps).unstack(x)

    def body(t, h, ta):
        out, h = Cell()(inputs_ta.read(t), h)
        return t + 1, h, ta.write(t, out)
    _, _, ta = gc.while_loop(lambda t, h, ta: t < steps, body,
                             (0, gc.zeros([B, H], gc.float64),
                              gc.TensorArray(gc.float64, size=steps)))
    loss = gc.reduce_sum(ta.stack() * rng.standard_normal((steps, B, H)))
    grads = gc.gradients(loss, [x, w])
    feeds = {x: rng.uniform(-1, 1, (3, B, D)), w: rng.uniform(-0.7, 0.7, (D + H, H))}
    with gc.Session() as sess:
        analytic = sess.run(grads, feeds)
        check_against_central_differences(lambda f: float(sess.run(loss, f)), feeds, [x, w],
                                          analytic, rng, what="TensorArray RNN")


def test_write_read_stack_unstack_gather_concat_semantics():
    x = gc.placeholder(gc.float32, [4, 3])
    ta = gc.TensorArray(gc.float32, size=4).unstack(x)
    assert ta.size().op_name == "const" and ta.element_shape.as_list() == [3]
    doubled = ta
    for k in range(4):  # a new TensorArray per write; the old one keeps its elements
        doubled = gc.TensorArray(gc.float32, size=4) if k == 0 else doubled
        doubled = doubled.write(k, ta.read(k) * 2.0)
    swapped = gc.TensorArray(gc.float32, size=4).scatter([3, 2, 1, 0], x)
    pieces = gc.TensorArray(gc.float32, size=2, infer_shape=False).split(x, [1, 3])
    grown = gc.TensorArray(gc.float32, size=0, dynamic_size=True).write(2, x[0])
    fetches = {"read": ta.read(gc.constant(1) + 1), "stack": ta.stack(),
               "gather": ta.gather(gc.constant([3, 0, 3])), "concat": ta.concat(),
               "doubled": doubled.stack(), "swapped": swapped.stack(),
               "piece1": pieces.read(1), "pieces": pieces.concat(),
               "size": gc.TensorArray(gc.float32, size=7).size(), "grown_size": grown.size(),
               "identity": ta.identity().read(3)}
    xv = np.arange(12.0, dtype=np.float32).reshape(4, 3)
    for backend in ("numpy", "llvm"):
        with gc.Session(backend=backend) as sess:
            got = sess.run(fetches, {x: xv})
        np.testing.assert_array_equal(got["read"], xv[2])
        np.testing.assert_array_equal(got["stack"], xv)
        np.testing.assert_array_equal(got["gather"], xv[[3, 0, 3]])
        np.testing.assert_array_equal(got["concat"], xv.reshape(-1))
        np.testing.assert_array_equal(got["doubled"], 2 * xv)
        np.testing.assert_array_equal(got["swapped"], xv[::-1])
        np.testing.assert_array_equal(got["piece1"], xv[1:])
        np.testing.assert_array_equal(got["pieces"], xv)
        assert got["size"] == 7 and got["grown_size"] == 3
        np.testing.assert_array_equal(got["identity"], xv[3])


def test_writes_return_new_arrays_and_leave_the_old_one_alone():
    empty = gc.TensorArray(gc.float32, size=2, element_shape=[2])
    one = empty.write(0, [1.0, 2.0])
    two = one.write(1, gc.constant([3.0, 4.0]))
    with gc.Session() as sess:
        got = sess.run([empty.stack(), one.stack(), two.stack(), empty.read(1)])
    np.testing.assert_array_equal(got[0], np.zeros((2, 2)))  # unwritten elements read zeros
    np.testing.assert_array_equal(got[1], [[1, 2], [0, 0]])
    np.testing.assert_array_equal(got[2], [[1, 2], [3, 4]])
    np.testing.assert_array_equal(got[3], [0, 0])
    assert gc.TensorArray(gc.int32, size=0, element_shape=[5]).stack().shape.as_list() == [0, 5]
    scalars = gc.TensorArray(gc.int32, size=1).write(0, 7)
    assert repr(scalars) == "<gc.TensorArray 'TensorArray' int32 size=1 element_shape=[]>"
    assert repr(gc.TensorArray(gc.float32, size=2)).endswith("size=2 element_shape=?>")


def test_dynamic_size_grows_in_a_loop_with_a_counter_index():
    """TF1's idiom for an unknown trip count: dynamic_size=True, written at the counter."""
    x = gc.placeholder(gc.float32, [3])
    _, ta = gc.while_loop(lambda i, ta: i < 5,
                          lambda i, ta: (i + 1, ta.write(i, x * gc.cast(i, gc.float32))),
                          (0, gc.TensorArray(gc.float32, size=0, dynamic_size=True)))
    got = gc.Session().run(ta.stack(), {x: np.array([1.0, -1.0, 0.5], np.float32)})
    np.testing.assert_array_equal(got, np.arange(5.0)[:, None] * [1.0, -1.0, 0.5])


def test_back_prop_false_stops_gradients_through_a_tensor_array():
    x = gc.placeholder(gc.float32, [2])
    _, ta = gc.while_loop(lambda i, ta: i < 2, lambda i, ta: (i + 1, ta.write(i, x * x)),
                          (0, gc.TensorArray(gc.float32, size=2)), back_prop=False)
    (g,) = gc.gradients(gc.reduce_sum(ta.stack()) + gc.reduce_sum(x), [x])
    np.testing.assert_array_equal(gc.Session().run(g, {x: [3.0, 4.0]}), [1.0, 1.0])


def test_runtime_index_reads_a_row_and_runtime_writes_are_refused():
    i = gc.placeholder(gc.int32, [], name="step")
    ta = gc.TensorArray(gc.float32, size=3).unstack(gc.constant([[1.0, 2], [3, 4], [5, 6]]))
    with gc.Session() as sess:
        np.testing.assert_array_equal(sess.run(ta.read(i + 1), {i: 1}), [5.0, 6.0])
        with pytest.raises(gc.errors.InvalidArgumentError):
            sess.run(ta.read(i + 1), {i: 2})
    with pytest.raises(GraphError, match=r"TensorArray.write: the index placeholder 'step'"):
        ta.write(i, gc.zeros([2]))
    with pytest.raises(GraphError, match=r"TensorArray.gather: the indices placeholder"):
        ta.gather(gc.placeholder(gc.int32, [2]))


@pytest.mark.parametrize("make,error,message", [
    (lambda ta: ta.write(0, gc.zeros([2])).write(0, gc.zeros([2])), GraphError,
     r"element 0 of 'TensorArray' is already written"),
    (lambda ta: ta.scatter([1, 1], gc.zeros([2, 2])), GraphError, r"already written"),
    (lambda ta: ta.write(3, gc.zeros([2])), GraphError,
     r"TensorArray.write: index 3 is out of range for 'TensorArray' of size 3(.|\n)*"
     r"dynamic_size=True"),
    (lambda ta: ta.read(-1), GraphError, r"index -1 is out of range"),
    (lambda ta: ta.write(0, gc.zeros([2], gc.int32)), DTypeError,
     r"TensorArray.write: 'TensorArray' holds float32, found .* : i32\[2\]"),
    (lambda ta: ta.write(0, gc.zeros([2])).write(1, gc.zeros([3])), ShapeError,
     r"holds elements of shape \[2\], found .* : f32\[3\](.|\n)*infer_shape=False"),
    (lambda ta: ta.read(1), GraphError, r"element 1 of 'TensorArray' was never written and "
     r"its shape is not fully known"),
    (lambda ta: ta.unstack(gc.zeros([2, 2])).stack().op_name and
     gc.TensorArray(gc.float32).stack(), GraphError, r"no elements and its element_shape"),
    (lambda ta: ta.scatter([0, 1], gc.zeros([3, 2])), ShapeError,
     r"2 indices but value is f32\[3,2\]"),
    (lambda ta: ta.read(1.0), GraphError, r"the index must be integers, found 1.0"),
], ids=["write-twice", "scatter-repeat", "out-of-range", "negative", "dtype", "shape",
        "unwritten", "empty-stack", "scatter-rows", "float-index"])
def test_bad_uses_are_clear_errors(make, error, message):
    with pytest.raises(error, match=message):
        make(gc.TensorArray(gc.float32, size=3))


def test_loop_variable_errors():
    ta = gc.TensorArray(gc.float32, size=4)
    with pytest.raises(GraphError, match=r"while_loop: loop variable #1 is a TensorArray of "
                       r"float32 but the body returns const"):
        gc.while_loop(lambda i, ta: i < 2, lambda i, ta: (i + 1, gc.zeros([2])), (0, ta))
    x = gc.placeholder(gc.float32, [])
    # a cond that reads data: a loop node, the array written at its counter (rows of the
    # iterations that did not run are zero)
    _, _, halves = gc.while_loop(lambda i, v, ta: v > 1.0,
                                 lambda i, v, ta: (i + 1, v * 0.5, ta.write(i, v)), (0, x, ta),
                                 maximum_iterations=4)
    for backend in ("numpy", "llvm"):
        with gc.Session(backend=backend) as sess:
            np.testing.assert_array_equal(sess.run(halves.stack(), {x: 8.0}), [8, 4, 2, 0])
