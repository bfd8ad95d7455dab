"""Bad input: the error class and a message regex for each case, build-time failures (raised
while the graph is built) apart from run-time ones (raised by Session.run before or while the
step runs). Messages name the op and node, expected against found, and the user's line: for
the rows marked so, the line of the row's own lambda in this file."""
import types

import numpy as np
import pytest

import graphc as gc
from graphc.errors import (CompileError, DTypeError, FeedError, GradientError, GraphcError,
                           GraphError, InvalidArgumentError, ShapeError)


@pytest.fixture
def t():
    """Standard tensors the rows build on."""
    return types.SimpleNamespace(
        x=gc.placeholder(gc.float32, [3, 4], name="x"),
        y=gc.placeholder(gc.float32, [5], name="y"),
        d=gc.placeholder(gc.float64, [4], name="d"),
        i=gc.placeholder(gc.int32, [4], name="i"),
        b=gc.placeholder(gc.float32, [None, 2], name="b"),
        w=gc.Variable(np.zeros(3, np.float32), name="w"))


# (name, build(t), error class, message regex, whether the row's line must be named)
BUILD_TIME = [
    ("broadcast mismatch", lambda t: t.x + t.y, ShapeError,
     r"add 'add': cannot broadcast f32\[3,4\] with f32\[5\]\n  axis -1: 4 vs 5\n"
     r"  operands: 'x' and 'y'", True),
    ("matmul inner dims", lambda t: gc.matmul(t.x, gc.ones([5, 2])), ShapeError,
     r"matmul 'MatMul': inner dimensions differ: f32\[3,4\] @ f32\[5,2\]\n"
     r"  a has 4 columns, b has 5 rows(.|\n)*hint: check the operand order", True),
    ("matmul of a vector", lambda t: gc.matmul(t.y, t.y), ShapeError,
     r"matmul.*operand a must have rank >= 2, found f32\[5\]", True),
    ("mixed dtypes", lambda t: t.x + t.d, DTypeError,
     r"add 'add': operands have different dtypes: float32 vs float64\n  'x': f32\[3,4\]\n"
     r"  'd': f64\[4\](.|\n)*hint: cast one of them", True),
    ("float literal with an int tensor", lambda t: t.i * 2.5, DTypeError,
     r"cannot use the float value 2\.5 with integer tensor 'i' \(int32\)", True),
    ("float op on ints", lambda t: gc.log(t.i), DTypeError,
     r"log 'Log': expected a floating tensor, found int32", True),
    ("reshape size", lambda t: gc.reshape(t.x, [5, 2]), ShapeError,
     r"reshape 'Reshape': cannot reshape f32\[3,4\] \(12 elements\) to \[5, 2\] \(10 elements\)",
     True),
    ("reshape with two -1", lambda t: gc.reshape(t.x, [-1, -1]), ShapeError,
     r"at most one -1", True),
    ("transpose perm", lambda t: gc.transpose(t.x, [0, 0]), ShapeError,
     r"perm \[0, 0\] is not a permutation of the 2 axes of f32\[3,4\]", True),
    ("reduction axis", lambda t: gc.reduce_sum(t.x, axis=2), ShapeError,
     r"reduce_sum 'Sum': axis 2 is out of range for rank 2", True),
    ("squeeze a non-1 axis", lambda t: gc.squeeze(t.x, 0), ShapeError,
     r"cannot squeeze axis 0 of f32\[3,4\]: its size is 3, not 1", True),
    ("concat ranks", lambda t: gc.concat([t.x, t.y], 0), ShapeError,
     r"concat 'concat': ranks differ: f32\[3,4\] and f32\[5\]", True),
    ("concat off-axis sizes", lambda t: gc.concat([t.x, gc.ones([3, 2, ])], 0), ShapeError,
     r"shapes differ off the concat axis: f32\[3,4\] and f32\[3,2\]\n  axis 1: 4 vs 2", True),
    ("stack shapes", lambda t: gc.stack([t.x, t.y]), ShapeError,
     r"stack needs equal shapes and dtypes: f32\[3,4\] vs f32\[5\]", True),
    ("index out of range", lambda t: t.x[3], ShapeError,
     r"strided_slice.*index 3 is out of bounds for axis 0 of size 3", True),
    ("slice box outside", lambda t: gc.slice(t.x, [1, 0], [3, -1]), ShapeError,
     r"slice: begin \[1, 0\] and size \[3, -1\] do not fit in f32\[3,4\]", True),
    ("tensor as an index", lambda t: t.x[t.i], TypeError,
     r"a tensor index must be a scalar integer.*i32\[4\]", False),
    ("broadcast_to", lambda t: gc.broadcast_to(t.x, [2, 4]), ShapeError,
     r"broadcast_to 'BroadcastTo': cannot broadcast f32\[3,4\] to \[2,4\]\n  axis -2: 3 vs 2",
     True),
    ("float gather indices", lambda t: gc.gather(t.x, [0.5]), DTypeError,
     r"gather 'GatherV2': indices must be integers, found float32", True),
    ("float one_hot indices", lambda t: gc.one_hot(t.y, 3), DTypeError,
     r"one_hot 'one_hot': indices must be integers, found float32", True),
    ("where condition", lambda t: gc.where(t.x, t.x, t.x), DTypeError,
     r"where 'Select': condition must be bool, found float32", True),
    ("where branches", lambda t: gc.where(t.x > 0.0, t.x, gc.cast(t.x, gc.float64)), DTypeError,
     r"branches have different dtypes: float32 vs float64", True),
    ("softmax axis", lambda t: gc.nn.softmax(t.x, axis=0), ShapeError,
     r"softmax 'Softmax': only the last axis is supported, got axis=0", True),
    ("sparse xent float labels",
     lambda t: gc.nn.sparse_softmax_cross_entropy_with_logits(labels=t.x, logits=t.x),
     DTypeError, r"labels must be integers, found float32(.|\n)*hint: sparse labels", True),
    ("sparse xent label shape",
     lambda t: gc.nn.sparse_softmax_cross_entropy_with_logits(labels=t.i, logits=t.x),
     ShapeError, r"labels i32\[4\] do not match logits f32\[3,4\]\n  axis 0: 4 vs 3", True),
    ("dense xent shapes",
     lambda t: gc.nn.softmax_cross_entropy_with_logits(labels=t.y, logits=t.x), ShapeError,
     r"labels f32\[5\] do not flatten to the rows of logits f32\[3,4\]", True),
    ("xent without keywords", lambda t: gc.nn.softmax_cross_entropy_with_logits(t.x, t.x),
     GraphError, r"pass labels= and logits= by keyword", False),
    ("assign shape", lambda t: gc.assign(t.w, np.zeros(4, np.float32)), ShapeError,
     r"assign 'Assign': value shape \[4\] differs from variable 'w' \[3\]", True),
    ("assign dtype", lambda t: gc.assign(t.w, gc.zeros([3], gc.float64)), DTypeError,
     r"value dtype float64 differs from variable 'w' \(float32\)", True),
    ("assign to a placeholder", lambda t: gc.assign(t.y, t.y), ShapeError,
     r"the target must be a Variable, found placeholder 'y'", True),
    ("random int dtype", lambda t: gc.random_normal([2], dtype=gc.int32), DTypeError,
     r"random values must be floating, found int32", True),
    ("unsupported dtype", lambda t: gc.placeholder("float16", [2]), DTypeError,
     r"unsupported dtype 'float16'(.|\n)*hint: use float32", False),
    ("variable of unknown shape", lambda t: gc.Variable(t.b), GraphError,
     r"initial value's shape must be static, found f32\[\?,2\]", False),
    ("unstack an unknown axis", lambda t: gc.unstack(t.b), GraphError,
     r"unstack: axis 0 of 'b' has unknown size(.|\n)*hint: pass num=", False),
    ("truth value of a tensor", lambda t: bool(t.x), TypeError,
     r"truth value of tensor 'x' is not known", False),
    ("gradient w.r.t. an int tensor", lambda t: gc.gradients(gc.reduce_sum(t.x), [t.i]),
     DTypeError, r"cannot differentiate with respect to placeholder 'i' of dtype int32", False),
    ("gradient of an int tensor", lambda t: gc.gradients(gc.cast(t.x, gc.int32), [t.x]),
     DTypeError, r"cannot differentiate cast 'Cast' of dtype int32", False),
    ("grad_ys of the wrong shape", lambda t: gc.gradients(t.x, t.x, grad_ys=np.ones(5)),
     ShapeError, r"grad_ys for placeholder 'x' has shape \[5\], expected \[3,4\]", False),
    ("unconnected with raise", lambda t: gc.gradients(gc.reduce_sum(t.x), t.y,
                                                      unconnected_gradients="raise"),
     GradientError, r"placeholder 'y' is not connected to any y", False),
    ("hvp vectors", lambda t: gc.hessian_vector_product(gc.reduce_sum(t.x), [t.x], []),
     GradientError, r"1 xs but 0 vs", False),
    ("minimize without variables",
     lambda t: gc.train.GradientDescentOptimizer(0.1).minimize(gc.reduce_sum(t.x),
                                                               var_list=[t.w]),
     GradientError, r"no variable is connected to loss", False),
]


def _other_graph_tensor():
    with gc.Graph().as_default():
        return gc.constant(1.0, name="elsewhere")


BUILD_TIME.append(("tensors from two graphs", lambda t: t.x + _other_graph_tensor(), GraphError,
                   r"add: input 'elsewhere' belongs to another graph", True))


@pytest.mark.parametrize("name,build,error,pattern,names_line", BUILD_TIME,
                         ids=[c[0] for c in BUILD_TIME])
def test_build_time_error(t, name, build, error, pattern, names_line):
    with pytest.raises(error) as info:
        build(t)
    message = str(info.value)
    assert __import__("re").search(pattern, message), f"{name}: {message}"
    if names_line:
        assert f"test_bad_input.py:{build.__code__.co_firstlineno}" in message, message
    if isinstance(info.value, GraphcError):
        assert message.startswith(info.value.message)


# -- run time: Session.run -------------------------------------------------------------------

@pytest.fixture
def model():
    """A small graph, a session on it, and the line numbers of its placeholders."""
    m = types.SimpleNamespace()
    m.x = gc.placeholder(gc.float32, [None, 3], name="x"); m.x_line = _line()  # noqa: E702
    m.y = gc.placeholder(gc.int64, [None], name="y"); m.y_line = _line()  # noqa: E702
    m.w = gc.Variable(np.ones((3, 2), np.float32), name="W"); m.w_line = _line()  # noqa: E702
    m.z = gc.matmul(m.x, m.w)
    m.loss = gc.reduce_mean(gc.nn.sparse_softmax_cross_entropy_with_logits(labels=m.y,
                                                                           logits=m.z))
    m.sess = gc.Session()
    yield m
    m.sess.close()


def _line():
    import sys
    return sys._getframe(1).f_lineno


X_OK = np.zeros((2, 3), np.float32)

RUN_TIME = [
    ("missing feeds all at once", lambda m: m.sess.run(m.loss), FeedError,
     lambda m: rf"2 placeholder\(s\) must be fed: x, y\n  'x': f32\[\?,3\]  created at "
               rf"test_bad_input\.py:{m.x_line}\n  'y': i64\[\?\]  created at "
               rf"test_bad_input\.py:{m.y_line}\n  hint: add them to feed_dict"),
    ("wrong feed shape", lambda m: m.sess.run(m.z, {m.x: np.zeros((2, 4))}), FeedError,
     lambda m: rf"placeholder 'x' expects f32\[\?,3\], fed \[2,4\]\n  at "
               rf"test_bad_input\.py:{m.x_line}"),
    ("wrong feed rank", lambda m: m.sess.run(m.z, {m.x: np.zeros(3)}), FeedError,
     lambda m: r"placeholder 'x' expects f32\[\?,3\], fed \[3\]"),
    ("NaN fed to an int placeholder",
     lambda m: m.sess.run(m.y, {m.y: np.array([1.0, np.nan])}), FeedError,
     lambda m: r"cannot feed a float64 value holding NaN or Inf to int64 placeholder 'y'"),
    ("ragged list fed", lambda m: m.sess.run(m.y, {m.y: [[1], [2, 3]]}), FeedError,
     lambda m: r"cannot convert the value fed to placeholder 'y' to an array"),
    ("string fed", lambda m: m.sess.run(m.y, {m.y: ["a"]}), FeedError,
     lambda m: r"cannot feed a value of dtype <U1 to placeholder 'y'"),
    ("a variable fed a wrong shape", lambda m: m.sess.run(m.z, {m.x: X_OK, m.w: np.ones(3)}),
     FeedError, lambda m: rf"variable 'W' expects f32\[3,2\], fed \[3\]\n  at "
                          rf"test_bad_input\.py:{m.w_line}"),
    ("feeding a value-less op", lambda m: m.sess.run(m.z, {m.x: X_OK, gc.no_op(): 1.0}),
     FeedError, lambda m: r"cannot feed group 'NoOp': it has no value"),
    ("feeding an unknown name", lambda m: m.sess.run(m.z, {"nope:0": X_OK}), FeedError,
     lambda m: r"cannot feed 'nope:0': no tensor of that name"),
    ("uninitialized variable", lambda m: m.sess.run(m.z, {m.x: X_OK}), GraphError,
     lambda m: rf"attempting to use uninitialized variable 'W'\n  at "
               rf"test_bad_input\.py:{m.w_line}(.|\n)*global_variables_initializer"),
    ("fetch from another graph", lambda m: m.sess.run(_other_graph_tensor()), GraphError,
     lambda m: r"Session.run: fetch const 'elsewhere' belongs to another graph"),
    ("fetch of a non-tensor", lambda m: m.sess.run(5), TypeError,
     lambda m: r"cannot fetch int"),
    ("fed shapes that do not broadcast",
     lambda m: m.sess.run(m.x + m.x[:1] * gc.placeholder(gc.float32, [None, 3], name="q"),
                          {m.x: X_OK, "q": np.zeros((4, 3), np.float32)}), ShapeError,
     lambda m: r"add 'add': cannot broadcast f32\[2,3\] with f32\[4,3\] \(with the fed shapes\)"
               r"\n  axis -2: 2 vs 4"),
    ("a variable assigned twice in one step",
     lambda m: m.sess.run([gc.assign(m.w, m.w + 1.0), gc.assign(m.w, m.w * 2.0)]),
     CompileError, lambda m: r"variable 'W' is assigned twice in one step"),
    ("gather index out of range at run time",
     lambda m: _initialized(m).run(gc.gather(m.w, gc.constant([0, 7]))), InvalidArgumentError,
     lambda m: r"gather 'GatherV2': index 7 at \[1\] is outside \[0, 3\)"
               r"(.|\n)*at test_bad_input\.py:\d+"),
    ("label out of range at run time",
     lambda m: _initialized(m).run(m.loss, {m.x: X_OK, m.y: np.array([0, 5])}),
     InvalidArgumentError,
     lambda m: r"sparse_softmax_xent 'SparseSoftmaxCrossEntropyWithLogits': label 5 at \[1\] "
               r"is outside \[0, 2\)"),
    ("fetching from a closed session", lambda m: _closed(m).run(m.w), GraphError,
     lambda m: r"Session.run: the session is closed"),
]


def _initialized(m):
    m.sess.run(gc.global_variables_initializer())
    return m.sess


def _closed(m):
    m.sess.close()
    return m.sess


@pytest.mark.parametrize("name,run,error,pattern", RUN_TIME, ids=[c[0] for c in RUN_TIME])
def test_run_time_error(model, name, run, error, pattern):
    with pytest.raises(error) as info:
        run(model)
    assert __import__("re").search(pattern(model), str(info.value)), str(info.value)


def test_feeds_are_validated_before_anything_runs(model):
    """A bad feed leaves the variables as they were: nothing of the step ran."""
    _initialized(model)
    step = gc.assign(model.w, model.w * 0.0 + gc.reduce_sum(model.x))
    with pytest.raises(FeedError):
        model.sess.run(step, {model.x: np.ones((2, 5))})
    np.testing.assert_array_equal(model.sess.run(model.w), np.ones((3, 2)))
