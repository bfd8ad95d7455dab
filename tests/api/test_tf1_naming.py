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
    assert [x.op.name, W.op.name, b.op.name] == ["Placeholder", "Variable", "Variable_1"]
    assert [h.inputs[0].inputs[0].op.name, h.inputs[0].op.name, h.op.name, loss.op.name] == \
        ["MatMul", "add", "Relu", "Mean"]
    assert c.op.name == "Const"
    # the operators name as TF1's do; tf.add and friends give TF1's op names
    assert [(x - 1.0).op.name, (x * 2.0).op.name, (x / 2.0).op.name, (-x).op.name] == \
        ["sub", "mul", "truediv", "Neg"]
    assert [gc.add(x, x).op.name, gc.subtract(x, x).op.name, gc.multiply(x, x).op.name] == \
        ["Add", "Sub", "Mul"]
    assert [gc.reduce_sum(x).op.name, gc.reshape(x, [-1]).op.name, gc.shape(x).op.name,
            gc.cast(x, gc.int32).op.name, gc.argmax(x, 1).op.name, gc.nn.softmax(x).op.name] == \
        ["Sum", "Reshape", "Shape", "Cast", "ArgMax", "Softmax"]


def test_op_names_stay_the_irs():
    x, W, b, h, loss = _mlp()
    assert (loss.op_name, loss.op.name, loss.op.type) == ("reduce_mean", "Mean", "Mean")
    assert loss.name == "Mean:0" and loss.op.outputs == [loss] and loss.value_index == 0
    assert gc.group(loss).outputs == []
    assert "reduce_mean 'Mean'" in loss.describe()


def test_names_are_unique_as_tf1_makes_them():
    x = gc.placeholder(gc.float32, [2], name="x")
    first, second = x + 1.0, x + 2.0
    assert (first.op.name, second.op.name) == ("add", "add_1")
    assert (gc.add(x, x).op.name, gc.add(x, x).op.name) == ("Add", "Add_1")   # case counts
    taken = gc.identity(x, name="add_2")     # a user's suffixed name is skipped
    assert (taken.op.name, (x + 3.0).op.name) == ("add_2", "add_3")
    with gc.name_scope("layer"):
        assert (x * x).op.name == "layer/mul"
        assert gc.matmul(gc.reshape(x, [1, 2]), gc.reshape(x, [2, 1])).op.name == "layer/MatMul"
    assert gc.identity(x, name="x").op.name == "x_1"


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
    assert g.get_operation_by_name("Mean") == loss.op and loss.op.outputs == [loss]
    assert g.get_operation_by_name("train").node is train
    assert g.as_graph_element("Relu:0") is h and g.as_graph_element(h) is h
    assert [op.name for op in g.get_operations()][:3] == ["Placeholder", "Variable/initial_value",
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


@pytest.mark.parametrize("backend", BACKENDS)
def test_tensors_are_named_name_colon_0_and_their_ops_name(backend):
    """TF1: ``tensor.name`` is ``"Mean:0"``, ``tensor.op.name`` ``"Mean"``; a variable's name is
    ``"W:0"``; an op without a value (group, the initializer, minimize) has no ``:0``. Code that
    fetches or feeds by ``t.name``, or strips ``:0`` from it, works as in TF1."""
    x = gc.placeholder(gc.float32, [None, 3], name="x")
    with gc.variable_scope("dense"):
        W = gc.get_variable("kernel", initializer=np.ones((3, 2), np.float32))
    loss = gc.reduce_mean(gc.matmul(x, W))
    train = gc.train.GradientDescentOptimizer(0.5).minimize(loss, name="train")
    init = gc.global_variables_initializer()
    assert (x.name, W.name, loss.name) == ("x:0", "dense/kernel:0", "Mean:0")
    assert (x.op.name, W.op.name, loss.op.name) == ("x", "dense/kernel", "Mean")
    assert [v.name.split(":")[0] for v in gc.trainable_variables()] == ["dense/kernel"]
    assert train.name == "train" and init.name == "init" and ":" not in gc.group(loss).name
    assert repr(loss).startswith("<gc.Tensor 'Mean:0'")
    xb = np.ones((2, 3), np.float32)
    with gc.Session(backend=backend) as sess:
        sess.run(init)
        got, = sess.run([loss.name], {x.name: xb})
        assert got == pytest.approx(3.0)
        assert sess.run(W.name).tolist() == [[1.0, 1.0]] * 3
        assert sess.run(train.name, {x.name: xb}) is None  # "train" names an op: run, None
        assert sess.run(W).tolist() == [[0.75, 0.75]] * 3  # d mean(x @ W) / dW = 2 / 4


@pytest.mark.parametrize("backend", BACKENDS)
def test_operations_run_to_none_and_order_what_depends_on_them(backend):
    """``tensor.op`` is an Operation: fetching it runs the op and gives None (TF1); it is taken
    by control_dependencies, group and Operation.run."""
    v = gc.Variable(0.0, name="v")
    bump = gc.assign_add(v, 1.0)
    with gc.control_dependencies([bump.op]):
        after = gc.identity(v) * 10.0
    both = gc.group(bump.op, name="both")
    g = gc.get_default_graph()
    with gc.Session(backend=backend) as sess:
        sess.run(gc.global_variables_initializer())
        assert sess.run(bump.op) is None and sess.run(v) == pytest.approx(1.0)
        assert sess.run(after) == pytest.approx(20.0)  # the bump ran first
        assert sess.run(both) is None and sess.run(v) == pytest.approx(3.0)
        g.get_operation_by_name("both").run(session=sess)
        bump.op.run(session=sess)
        assert sess.run(v) == pytest.approx(5.0)
    op = g.get_operation_by_name(bump.op.name)
    assert op == bump.op and hash(op) == hash(bump.op) and op.outputs == [bump]
    assert op.inputs[0] is v and op.type and op.values() == (bump,)
    assert [o.name for o in g.get_operations()].count("both") == 1


def test_operation_lookups_refuse_tensor_names_and_unknown_attributes():
    loss = _mlp()[-1]
    g = gc.get_default_graph()
    with pytest.raises(UnknownNameError, match=r"(?s)'Mean:0' names a tensor, not an operation.*"
                                               r"get_operation_by_name\('Mean'\)"):
        g.get_operation_by_name("Mean:0")
    assert g.get_operation_by_name("Mean").get_attr("keepdims") is False
    with pytest.raises(ValueError, match=r"reduce_mean 'Mean' has no attribute 'nope'; it has"):
        loss.op.get_attr("nope")


def test_rename_and_names_the_graph_knows_it_lacks():
    """``Graph.rename`` (importers) moves a node to a name as is; ``Graph.not_built`` makes a
    lookup of a name the graph knows it lacks say why."""
    x, W, b, h, loss = _mlp()
    g = gc.get_default_graph()
    g.rename(loss, "imported/loss")
    assert g.get_tensor_by_name("imported/loss:0") is loss and loss.name == "imported/loss:0"
    with pytest.raises(UnknownNameError):
        g.get_tensor_by_name("Mean:0")
    with pytest.raises(GraphError, match=r"cannot rename relu 'Relu' to 'imported/loss': the "
                                         r"name is taken"):
        g.rename(h, "imported/loss")
    g.not_built["train/Adam"] = ("of op 'ApplyAdam' was not imported", ["because"])
    with pytest.raises(UnknownNameError, match=r"operation 'train/Adam' of op 'ApplyAdam' was "
                                               r"not imported\n  because"):
        g.get_operation_by_name("train/Adam")
