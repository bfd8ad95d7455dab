"""TF1's naming (issue 15, part 2): a node built without a name takes the name TF1 gives it
(``MatMul``, ``add``, ``Mean``, ``Placeholder``), made unique as TF1 does; ``"name:0"`` fetches,
feeds and looks it up; an unknown name is an error listing the closest names."""
import numpy as np
import pytest

import graphc as gc
from graphc.errors import FeedError, GraphError, UnknownNameError

BACKENDS = ("numpy", "llvm")


def _mlp():
    x = gc.placeholder(gc.float32, [None, 3])
    W = gc.Variable(np.arange(6, dtype=np.float32).reshape(3, 2))
    b = gc.Variable(np.array([1.0, -1.0], np.float32))
    h = gc.nn.relu(gc.matmul(x, W) + b)
    return x, W, b, h, gc.reduce_mean(h)


def test_unnamed_nodes_take_tf1_names():
    x, W, b, h, loss = _mlp()
    c = gc.constant(2.0)
    assert [x.name, W.name, b.name] == ["Placeholder", "Variable", "Variable_1"]
    assert [h.inputs[0].inputs[0].name, h.inputs[0].name, h.name, loss.name] == \
        ["MatMul", "add", "Relu", "Mean"]
    assert c.name == "Const"
    # the operators name as TF1's do; tf.add and friends give TF1's op names
    assert [(x - 1.0).name, (x * 2.0).name, (x / 2.0).name, (-x).name] == \
        ["sub", "mul", "truediv", "Neg"]
    assert [gc.add(x, x).name, gc.subtract(x, x).name, gc.multiply(x, x).name] == \
        ["Add", "Sub", "Mul"]
    assert [gc.reduce_sum(x).name, gc.reshape(x, [-1]).name, gc.shape(x).name,
            gc.cast(x, gc.int32).name, gc.argmax(x, 1).name, gc.nn.softmax(x).name] == \
        ["Sum", "Reshape", "Shape", "Cast", "ArgMax", "Softmax"]


def test_op_names_stay_the_irs():
    x, W, b, h, loss = _mlp()
    assert (loss.op_name, loss.op.name, loss.op.type) == ("reduce_mean", "Mean", "Mean")
    assert loss.op is loss and loss.op.outputs == [loss] and loss.value_index == 0
    assert gc.group(loss).outputs == []
    assert "reduce_mean 'Mean'" in loss.describe()


def test_names_are_unique_as_tf1_makes_them():
    x = gc.placeholder(gc.float32, [2], name="x")
    first, second = x + 1.0, x + 2.0
    assert (first.name, second.name) == ("add", "add_1")
    assert (gc.add(x, x).name, gc.add(x, x).name) == ("Add", "Add_1")   # case counts
    taken = gc.identity(x, name="add_2")     # a user's suffixed name is skipped
    assert (taken.name, (x + 3.0).name) == ("add_2", "add_3")
    with gc.name_scope("layer"):
        assert (x * x).name == "layer/mul"
        assert gc.matmul(gc.reshape(x, [1, 2]), gc.reshape(x, [2, 1])).name == "layer/MatMul"
    assert gc.identity(x, name="x").name == "x_1"


@pytest.mark.parametrize("backend", BACKENDS)
def test_fetch_and_feed_by_tf1_names(backend):
    x, W, b, h, loss = _mlp()
    feed = np.array([[1.0, -2.0, 0.5], [0.0, 1.0, 1.0]], np.float32)
    ref = np.maximum(feed.astype(np.float64) @ np.arange(6.0).reshape(3, 2) + [1.0, -1.0], 0)
    gc.global_variables_initializer()
    with gc.Session(backend=backend) as sess:
        sess.run("init")
        got_loss, got_h = sess.run(["Mean:0", "Relu"], {"Placeholder:0": feed})
        got_W = sess.run("Variable:0")
    np.testing.assert_allclose(got_loss, ref.mean(), rtol=1e-6)
    np.testing.assert_allclose(got_h, ref, rtol=1e-6)
    np.testing.assert_array_equal(got_W, np.arange(6).reshape(3, 2))


def test_lookups_by_name():
    x, W, b, h, loss = _mlp()
    train = gc.train.GradientDescentOptimizer(0.1).minimize(loss, name="train")
    g = gc.get_default_graph()
    assert g.get_tensor_by_name("Mean:0") is loss and g.get_tensor_by_name("Mean") is loss
    assert g.get_operation_by_name("Mean") is loss.op
    assert g.get_operation_by_name("train") is train
    assert g.as_graph_element("Relu:0") is h and g.as_graph_element(h) is h
    assert [n.name for n in g.get_operations()][:3] == ["Placeholder", "Variable/initial_value",
                                                         "Variable"]


def test_an_unknown_name_lists_close_names():
    _mlp()
    g = gc.get_default_graph()
    with pytest.raises(UnknownNameError, match=r"no tensor named 'mean:0' in this graph\n"
                                               r"  closest names: 'Mean'"):
        g.get_tensor_by_name("mean:0")
    with pytest.raises(KeyError, match=r"closest names: 'Variable', 'Variable_1'"):
        g.get_operation_by_name("Variabel")     # a KeyError too, as TF1 raises
    with pytest.raises(UnknownNameError, match=r"reduce_mean 'Mean' has one output, 'Mean:0'; "
                                               r"there is no 'Mean:1'"):
        g.get_tensor_by_name("Mean:1")
    with pytest.raises(UnknownNameError, match=r"'Mean:x': a tensor name is "
                                               r"'<op name>:<output index>', and 'x' is not"):
        g.get_tensor_by_name("Mean:x")
    with pytest.raises(TypeError, match="a name is a str, found int"):
        g.get_tensor_by_name(3)
    with gc.Session() as sess, pytest.raises(GraphError, match=r"closest names: 'Relu'"):
        sess.run("Relu_1:0")
    with gc.Session() as sess, pytest.raises(FeedError, match=r"cannot feed 'Placeholdr:0': no "
                                                             r"tensor(.|\n)*closest names: "
                                                             r"'Placeholder'"):
        sess.run("Mean:0", {"Placeholdr:0": np.zeros((1, 3))})
    with pytest.raises(UnknownNameError) as e:
        g.get_tensor_by_name("zzzz")
    assert "closest names" not in str(e.value) and "hint: a node built without name=" \
        in str(e.value)
