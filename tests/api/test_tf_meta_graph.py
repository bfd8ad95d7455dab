"""tf.train.import_meta_graph of TensorFlow's own .meta files (binary MetaGraphDef): an MLP and
a CNN trained and saved by TensorFlow 2.21 (tests/fixtures/tf_checkpoints/make_meta_fixtures.py)
are imported, restored from their V2 checkpoints and give TensorFlow's logits, probabilities and
loss on both backends; the training subgraph is not imported and fetching it says why; a graphc
loss and optimizer built on the imported logits train; ops of the table against NumPy on
hand-built MetaGraphDefs; malformed files are ArtifactErrors naming the file and the node."""
import struct
import warnings

import numpy as np
import pytest

import graphc as gc
from graphc.errors import ArtifactError, UnknownNameError
from graphc.train.proto_wire import BYTES, FIXED32, field
from tests.support.paths import ROOT

HERE = ROOT / "tests" / "fixtures" / "tf_checkpoints" / "tf1_meta"
TRAINABLE = {"mlp": ["hidden/kernel", "hidden/bias", "out/kernel", "out/bias"],
             "cnn": ["conv/kernel", "conv/bias", "out/kernel", "out/bias"]}


def imported(model, import_scope=None):
    """(graph, saver, expected values) of a fixture imported into a fresh graph."""
    g = gc.Graph()
    with g.as_default(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        saver = gc.train.import_meta_graph(str(HERE / model / "model.ckpt-3.meta"),
                                           import_scope=import_scope)
    with np.load(HERE / f"{model}_expected.npz") as npz:
        return g, saver, dict(npz)


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_restored_model_gives_tensorflows_values(model, backend):
    g, saver, e = imported(model)
    with g.as_default(), gc.Session(backend=backend) as sess:
        saver.restore(sess, str(HERE / model / "model.ckpt-3"))
        logits, probs, loss = sess.run(["logits:0", "probs:0", "loss:0"],
                                       {"x:0": e["xs"], "y:0": e["ys"]})
    np.testing.assert_allclose(logits, e["logits"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(probs, e["probs"], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(loss, e["loss"], rtol=1e-5)
    assert logits.dtype == np.float32 and loss.shape == ()


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_variables_keep_names_dtypes_and_initial_values(model):
    g, saver, e = imported(model)
    with g.as_default():
        vs = {v.op.name: v for v in gc.global_variables()}
        assert [v.op.name for v in gc.trainable_variables()] == TRAINABLE[model]
        assert set(TRAINABLE[model]) | {"global_step", "beta1_power", "beta2_power"} <= set(vs)
        assert vs["global_step"].dtype == gc.int64 and vs["out/kernel"].dtype == gc.float32
        assert len(vs) == 4 + 3 + 8  # the weights, step and beta powers, Adam's two slots each
        init = gc.global_variables_initializer()
        with gc.Session(backend="numpy") as sess:
            sess.run(init)  # the file's initial values (TensorFlow's Const before training)
            first = sess.run("out/kernel")
            assert sess.run("global_step") == 0
            if model == "cnn":  # truncated_normal_initializer: graphc's truncated normal
                kernel = sess.run("conv/kernel")
                assert np.abs(kernel).max() <= 2 * 0.4 and 0.15 < kernel.std() < 0.4
            np.testing.assert_array_equal(first, sess.run(vs["out/kernel"].initial_value))
            saver.restore(sess, str(HERE / model / "model.ckpt-3"))
            assert sess.run("global_step") == 3
            assert not np.allclose(sess.run("out/kernel"), first)  # three Adam steps later


def test_training_subgraph_is_not_imported_and_says_why():
    path = str(HERE / "mlp" / "model.ckpt-3.meta")
    with gc.Graph().as_default() as g:
        with pytest.warns(UserWarning, match=r"nodes of .*model.ckpt-3.meta' were not imported"
                                             r": ops graphc does not have \(ApplyAdam x4"):
            gc.train.import_meta_graph(path)
        with np.load(HERE / "mlp_expected.npz") as npz:
            e = dict(npz)
        with gc.Session(backend="numpy") as sess:
            sess.run(gc.global_variables_initializer())
            for name in ("gradients/hidden_relu_grad/ReluGrad:0", "train"):
                with pytest.raises(UnknownNameError, match=r"of op '(ReluGrad|AssignAdd)' was "
                                   r"not imported from model.ckpt-3.meta: graphc imports "
                                   r"TensorFlow graphs for inference") as err:
                    sess.run(name, {"x:0": e["xs"], "y:0": e["ys"]})
            assert "rebuild training in graphc" in str(err.value)
            with pytest.raises(gc.errors.FeedError, match="ReluGrad(.|\n)*rebuild training"):
                sess.run("logits:0", {"x:0": e["xs"],
                                      "gradients/hidden_relu_grad/ReluGrad:0": e["xs"]})
            with pytest.raises(UnknownNameError, match="has one output"):  # the backprop output
                sess.run("SparseSoftmaxCrossEntropyWithLogits/"
                         "SparseSoftmaxCrossEntropyWithLogits:1", {"x:0": e["xs"],
                                                                   "y:0": e["ys"]})
        with pytest.raises(UnknownNameError, match="no tensor named 'nothing:0'"):
            g.get_tensor_by_name("nothing:0")  # other names: the usual error
        assert g.get_collection("train_op") == []  # its node was not imported


def test_variable_whose_initializer_was_not_imported_starts_at_zeros(tmp_path):
    path = tmp_path / "v.meta"
    path.write_bytes(meta(
        const("shp", np.array([2, 3], np.int32)), node("r", "RandomGamma", ["shp"]),
        node("v", "VariableV2", dtype=a_type(F32), shape=field(7, shape([2, 3]), BYTES)),
        node("v/Assign", "Assign", ["v", "r"]), node("out", "Identity", ["v"])))
    with gc.Graph().as_default() as g:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            gc.train.import_meta_graph(str(path))
        said = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
        assert len(said) == 2 and "RandomGamma x1" in said[0]  # once each
        assert "1 variables of" in said[1] and "not imported (v)" in said[1]
        assert g.get_tensor_by_name("v").shape.as_list() == [2, 3]
        with gc.Session(backend="numpy") as sess:
            sess.run(gc.global_variables_initializer())
            np.testing.assert_array_equal(sess.run("out:0"), np.zeros([2, 3], np.float32))


def test_import_scope_in_a_fresh_graph():
    g, saver, e = imported("cnn", import_scope="m")
    with g.as_default(), gc.Session(backend="numpy") as sess:
        assert "m/conv/kernel" in {v.op.name for v in gc.global_variables()}
        saver.restore(sess, str(HERE / "cnn" / "model.ckpt-3"))  # the file's names
        logits = sess.run("m/logits:0", {"m/x:0": e["xs"]})
        with pytest.raises(UnknownNameError, match="m/train"):
            sess.run("m/train", {"m/x:0": e["xs"], "m/y:0": e["ys"]})
    np.testing.assert_allclose(logits, e["logits"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_graphc_training_on_imported_logits(backend):
    """A new loss and optimizer built in graphc train the imported weights: the gradient of
    the loss for out/bias is mean(softmax - one_hot), and the loss falls."""
    g, saver, e = imported("mlp")
    with g.as_default():
        logits, y = g.get_tensor_by_name("logits:0"), g.get_tensor_by_name("y:0")
        loss = gc.reduce_mean(gc.nn.sparse_softmax_cross_entropy_with_logits(labels=y,
                                                                             logits=logits))
        bias = g.get_tensor_by_name("out/bias")
        grad = gc.gradients(loss, [bias])[0]
        train = gc.train.GradientDescentOptimizer(0.5).minimize(loss)
        feed = {"x:0": e["xs"], "y:0": e["ys"]}
        with gc.Session(backend=backend) as sess:
            saver.restore(sess, str(HERE / "mlp" / "model.ckpt-3"))
            g0, l0 = sess.run([grad, loss], feed)
            onehot = np.eye(3)[e["ys"]]
            np.testing.assert_allclose(g0, (e["probs"] - onehot).mean(0), rtol=1e-4, atol=1e-6)
            np.testing.assert_allclose(l0, e["loss"], rtol=1e-5)
            for _ in range(20):
                sess.run(train, feed)
            assert sess.run(loss, feed) < 0.95 * l0


# -- hand-built MetaGraphDefs -----------------------------------------------------------------

F32, I32, I64 = 1, 3, 9


def text(n, s):
    return field(n, s.encode(), BYTES)


def shape(dims):
    if dims is None:
        return field(3, 1)
    return b"".join(field(2, field(1, d) if d else b"", BYTES) for d in dims)


def tensor(dtype, dims, content=None, floats=None, ints=None):
    out = field(1, dtype) + field(2, shape(dims), BYTES)
    if content is not None:
        out += field(4, content, BYTES)
    if floats is not None:
        out += field(5, struct.pack(f"<{len(floats)}f", *floats), BYTES)
    if ints is not None:
        out += field(7, b"".join(field(0, v)[1:] for v in ints), BYTES)  # packed varints
    return out


def attr(key, value):
    return field(5, text(1, key) + field(2, value, BYTES), BYTES)


def a_type(e):
    return field(6, e)


def a_bool(v):
    return field(5, int(v))


def a_int(v):
    return field(3, v)


def a_ints(vs):
    return field(1, field(3, b"".join(field(0, v)[1:] for v in vs), BYTES), BYTES)


def node(name, op, inputs=(), **attrs):
    return field(1, text(1, name) + text(2, op) + b"".join(text(3, i) for i in inputs)
                 + b"".join(attr(k, v) for k, v in attrs.items()), BYTES)


def const(name, array):
    dtype = {np.dtype(np.float32): F32, np.dtype(np.int32): I32,
             np.dtype(np.int64): I64}[array.dtype]
    return node(name, "Const", dtype=a_type(dtype),
                value=field(8, tensor(dtype, array.shape, array.tobytes()), BYTES))


def meta(*nodes):
    """A MetaGraphDef of nodes (and collections: field 4, kept apart from the GraphDef)."""
    graph = b"".join(n for n in nodes if not n.startswith(b"\x22"))
    return field(2, graph, BYTES) + b"".join(n for n in nodes if n.startswith(b"\x22"))


def collection(key, names):
    """A collection_def entry (field 4 of MetaGraphDef) holding a node_list."""
    node_list = b"".join(text(1, n) for n in names)
    return field(4, text(1, key) + field(2, field(1, node_list, BYTES), BYTES), BYTES)


def load(tmp_path, data, name="g.meta"):
    path = tmp_path / name
    path.write_bytes(data)
    g = gc.Graph()
    with g.as_default(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gc.train.import_meta_graph(str(path))
    return g


X = np.linspace(-2, 2, 24, dtype=np.float32).reshape(4, 6)
OP_GRAPH = meta(
    node("x", "Placeholder", dtype=a_type(F32), shape=field(7, shape([-1, 6]), BYTES)),
    node("any", "Placeholder", dtype=a_type(F32), shape=field(7, shape(None), BYTES)),
    const("axis1", np.array([1], np.int32)), const("perm", np.array([1, 0], np.int32)),
    const("b", np.array([0, 1], np.int32)), const("e", np.array([0, 4], np.int32)),
    const("s", np.array([1, 2], np.int32)), const("two", np.full([6], 2.0, np.float32)),
    const("shp", np.array([-1, 3], np.int32)), const("ax0", np.array(0, np.int32)),
    const("one", np.array(1, np.int32)),
    node("mean", "Mean", ["x", "axis1"], keep_dims=a_bool(True)),
    node("sub", "Sub", ["x", "mean"]), node("sq", "Square", ["sub"]),
    node("tr", "Transpose", ["sq", "perm"]),
    node("sl", "StridedSlice", ["x", "b", "e", "s"], begin_mask=a_int(1),
         end_mask=a_int(1), shrink_axis_mask=a_int(0)),
    node("cat", "ConcatV2", ["x", "x", "one"]),
    node("rs", "Reshape", ["x", "shp"]), node("am", "ArgMax", ["rs", "ax0"],
                                              output_type=a_type(I64)),
    node("mx", "Maximum", ["x", "two"]), node("rl6", "Relu6", ["x"]),
    node("cast", "Cast", ["am"], DstT=a_type(F32)),
    node("ex", "ExpandDims", ["x", "ax0"]), node("sqz", "Squeeze", ["ex"],
                                                   squeeze_dims=a_ints([0])),
    node("mm", "MatMul", ["x", "x"], transpose_b=a_bool(True)),
    node("pk", "Pack", ["x", "x"], axis=a_int(1)),
    node("lsm", "LogSoftmax", ["x"]), node("double", "Mul", ["any", "any"]),
    node("grp", "NoOp", ["^sq", "^mm"]),
    const("idx", np.array([3, 0], np.int32)), const("mult", np.array([2, 1], np.int32)),
    const("size", np.array([2, -1], np.int32)), const("dims", np.array([2, 3], np.int32)),
    const("pads", np.array([[1, 0], [0, 2]], np.int32)),
    const("img", np.array([1, 4, 6, 1], np.int32)),
    const("k2", np.array(2.0, np.float32)), const("sc", np.array([1.5], np.float32)),
    const("of", np.array([0.25], np.float32)),
    const("c1", np.array([1], np.int32)), const("c2", np.array([2], np.int32)),
    node("sh", "StridedSlice", ["x", "c1", "c2", "c1"], shrink_axis_mask=a_int(1)),
    const("mu", np.array([0.5], np.float32)), const("var", np.array([2.0], np.float32)),
    node("gth", "GatherV2", ["x", "idx", "ax0"]), node("fm", "FloorMod", ["x", "two"]),
    node("tl", "Tile", ["x", "mult"]), node("slc", "Slice", ["x", "b", "size"]),
    node("fl", "Fill", ["dims", "k2:0"]), node("pd", "Pad", ["x", "pads"]),
    node("an", "AddN", ["x", "x", "mx"]), node("gt", "Greater", ["x", "mean"]),
    node("sel", "SelectV2", ["gt", "x", "sq"]),
    node("bmm", "BatchMatMulV2", ["pk", "pk"], adj_y=a_bool(True)),
    node("x4", "Reshape", ["x", "img"]),
    node("avg", "AvgPool", ["x4"], ksize=a_ints([1, 2, 2, 1]), strides=a_ints([1, 2, 2, 1]),
         padding=field(2, b"VALID", BYTES)),
    node("bn", "FusedBatchNormV3", ["x4", "sc", "of", "mu", "var"], is_training=a_bool(False),
         epsilon=field(4, struct.unpack("<I", struct.pack("<f", 0.01))[0], FIXED32)),
    node("bny", "Identity", ["bn:0"]),
    node("ru", "RandomUniform", ["dims"], dtype=a_type(F32), seed=a_int(1), seed2=a_int(2)),
    node("drop", "GreaterEqual", ["ru", "k2"]),
)


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_ops_of_the_table_against_numpy(tmp_path, backend):
    g = load(tmp_path, OP_GRAPH)
    names = ["tr", "sl", "cat", "am", "mx", "rl6", "cast", "sqz", "mm", "pk", "lsm", "double",
             "gth", "fm", "tl", "slc", "fl", "pd", "an", "sel", "bmm", "avg", "bny", "sh"]
    with g.as_default(), gc.Session(backend=backend) as sess:
        assert g.get_tensor_by_name("x:0").shape.as_list() == [None, 6]
        assert g.get_tensor_by_name("any:0").shape is None  # unknown rank
        z = np.arange(5.0, dtype=np.float32)
        out = dict(zip(names, sess.run(names, {"x:0": X, "any:0": z})))
        ru, drop = sess.run(["ru", "drop"])
        sess.run("grp", {"x:0": X})
    assert ru.shape == (2, 3) and ru.dtype == np.float32 and (0 <= ru).all() and (ru < 1).all()
    assert len(np.unique(ru)) == 6 and not drop.any()  # uniform in [0, 1), never >= 2
    x = X.astype(np.float64)
    expect = {"tr": ((x - x.mean(1, keepdims=True)) ** 2).T, "sl": x[:, 1:4:2],
              "cat": np.concatenate([x, x], 1), "am": x.reshape(-1, 3).argmax(0),
              "mx": np.maximum(x, 2), "rl6": np.clip(x, 0, 6),
              "cast": x.reshape(-1, 3).argmax(0).astype(np.float32), "sqz": x, "mm": x @ x.T,
              "pk": np.stack([x, x], 1),
              "lsm": x - x.max(1, keepdims=True) - np.log(np.exp(
                  x - x.max(1, keepdims=True)).sum(1, keepdims=True)),
              "double": z.astype(np.float64) ** 2, "gth": x[[3, 0]], "fm": np.mod(x, 2),
              "tl": np.tile(x, [2, 1]), "slc": x[0:2, 1:], "fl": np.full([2, 3], 2.0),
              "pd": np.pad(x, [[1, 0], [0, 2]]), "an": 2 * x + np.maximum(x, 2),
              "sel": np.where(x > x.mean(1, keepdims=True), x,
                              (x - x.mean(1, keepdims=True)) ** 2),
              "bmm": np.stack([x, x], 1) @ np.stack([x, x], 1).transpose(0, 2, 1),
              "avg": x.reshape(2, 2, 3, 2).mean((1, 3)).reshape(1, 2, 3, 1),
              "sh": x[1], "bny": ((x - 0.5) / np.sqrt(2.0 + 0.01) * 1.5 + 0.25).reshape(1, 4, 6, 1)}
    for k, v in expect.items():
        assert out[k].shape == v.shape, k
        np.testing.assert_allclose(out[k], v, rtol=1e-5, atol=1e-5, err_msg=k)
    assert out["am"].dtype == np.int64


def test_typed_values_and_the_one_value_rule(tmp_path):
    """A TensorProto without tensor_content: float_val / int_val, the last value filling the
    tensor (one value: a constant tensor), no value: zeros."""
    g = load(tmp_path, meta(
        collection("outputs", ["f:0", "i"]), collection("partly", ["f:0", "nothing"]),
        node("f", "Const", dtype=a_type(F32),
             value=field(8, tensor(F32, [2, 3], floats=[2.5]), BYTES)),
        node("i", "Const", dtype=a_type(I32),
             value=field(8, tensor(I32, [4], ints=[1, -2]), BYTES)),
        node("z", "Const", dtype=a_type(I64), value=field(8, tensor(I64, [2]), BYTES))))
    with g.as_default(), gc.Session(backend="numpy") as sess:
        f, i, z = sess.run(["f", "i", "z"])
    np.testing.assert_array_equal(f, np.full([2, 3], 2.5, np.float32))
    np.testing.assert_array_equal(i, np.array([1, -2, -2, -2], np.int32))
    np.testing.assert_array_equal(z, np.zeros(2, np.int64))
    assert (f.dtype, i.dtype, z.dtype) == (np.float32, np.int32, np.int64)
    assert [n.op.name for n in g.get_collection("outputs")] == ["f", "i"]
    assert g.get_collection("partly") == []  # a collection naming a node not built


def test_depthwise_convolutions_are_imported_with_their_strides_and_dilations(tmp_path):
    rng = np.random.default_rng(3)
    k = rng.standard_normal([3, 3, 2, 2]).astype(np.float32)
    xv = rng.standard_normal([1, 7, 7, 2]).astype(np.float32)
    g = load(tmp_path, meta(
        node("x", "Placeholder", dtype=a_type(F32), shape=field(7, shape([1, 7, 7, 2]), BYTES)),
        const("k", k),
        node("dw", "DepthwiseConv2dNative", ["x", "k"], strides=a_ints([1, 2, 2, 1]),
             padding=field(2, b"SAME", BYTES)),
        node("at", "DepthwiseConv2dNative", ["x", "k"], strides=a_ints([1, 1, 1, 1]),
             padding=field(2, b"VALID", BYTES), dilations=a_ints([1, 2, 2, 1]))))
    with g.as_default(), gc.Session(backend="numpy") as sess:
        dw, at = sess.run(["dw:0", "at:0"], {"x:0": xv})
    # the reference: per channel c and multiplier m, a plain conv2d of channel c
    for out, strides, padding, rate in ((dw, (2, 2), "SAME", 1), (at, (1, 1), "VALID", 2)):
        with gc.Graph().as_default(), gc.Session(backend="numpy") as sess:
            want = sess.run(gc.concat([gc.nn.conv2d(
                xv[..., c:c + 1], k[:, :, c:c + 1, m:m + 1], [1, *strides, 1], padding,
                dilations=[1, rate, rate, 1]) for c in range(2) for m in range(2)], axis=3))
        np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-6)
    assert dw.shape == (1, 4, 4, 4) and at.shape == (1, 3, 3, 4)


def test_nchw_and_output_one_are_not_imported(tmp_path):
    k = np.ones([1, 1, 1, 1], np.float32)
    g = load(tmp_path, meta(
        node("x", "Placeholder", dtype=a_type(F32), shape=field(7, shape([1, 1, 2, 2]), BYTES)),
        const("k", k),
        node("conv", "Conv2D", ["x", "k"], strides=a_ints([1, 1, 1, 1]),
             padding=field(2, b"SAME", BYTES), data_format=field(2, b"NCHW", BYTES)),
        node("z", "Placeholder", dtype=a_type(F32), shape=field(7, shape([-1, 3]), BYTES)),
        node("labels", "Placeholder", dtype=a_type(I64), shape=field(7, shape([-1]), BYTES)),
        node("xent", "SparseSoftmaxCrossEntropyWithLogits", ["z", "labels"]),
        node("bp", "Identity", ["xent:1"])))
    with pytest.raises(UnknownNameError, match=r"'Conv2D' was not imported(.|\n)*NCHW"):
        g.get_tensor_by_name("conv:0")
    with pytest.raises(UnknownNameError, match=r"output 1 \(backprop\) of 'xent'"):
        g.get_tensor_by_name("bp")


BAD = {
    "truncated": (lambda: meta(const("c", X))[:-7], "not a well-formed MetaGraphDef", None),
    "no graph": (lambda: field(1, b"\x0a\x00", BYTES), "no graph_def", None),
    "garbage": (lambda: b"\x07\xff\xff\xff", "not a well-formed", None),
    "content size": (lambda: meta(node("c", "Const", dtype=a_type(F32), value=field(
        8, tensor(F32, [2, 3], b"\0" * 20), BYTES))), "tensor_content of 20 bytes", "c"),
    "unknown dtype": (lambda: meta(node("p", "Placeholder", dtype=a_type(99))),
                      "unknown dtype enum 99", "p"),
    "huge": (lambda: meta(node("c", "Const", dtype=a_type(F32), value=field(
        8, tensor(F32, [1 << 20, 1 << 20], floats=[1.0]), BYTES))), "more than", "c"),
    "too many values": (lambda: meta(node("c", "Const", dtype=a_type(F32), value=field(
        8, tensor(F32, [2], floats=[1, 2, 3]), BYTES))), "3 values", "c"),
    "missing input": (lambda: meta(node("n", "Neg", ["ghost"])), "input 'ghost' is not", "n"),
    "cycle": (lambda: meta(node("a", "Neg", ["b"]), node("b", "Neg", ["a"])), "a cycle", None),
    "same name": (lambda: meta(const("c", X), const("c", X)), "two nodes have this name",
                  "c"),
    "shapes": (lambda: meta(const("a", X), node("m", "MatMul", ["a", "a"])), "MatMul", "m"),
    "recorded shape": (lambda: meta(const("a", X), node("n", "Neg", ["a"], _output_shapes=field(
        1, field(7, shape([6, 4]), BYTES), BYTES))), r"recorded the shape \[6, 4\], graphc "
        r"computed f32\[4,6\]", "n"),
    "bad float field": (lambda: meta(node("c", "Const", dtype=a_type(F32), value=field(
        8, field(1, F32) + field(5, 7, FIXED32)[:-2], BYTES))), "runs past the end", "c"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_malformed_files_are_artifact_errors(tmp_path, case):
    make, match, node_name = BAD[case]
    with pytest.raises(ArtifactError, match=match) as err:
        load(tmp_path, make(), name="bad.meta")
    assert "bad.meta" in str(err.value)
    if node_name is not None:
        assert f"(node '{node_name}')" in str(err.value)


def test_graphc_json_meta_graphs_still_import(tmp_path):
    with gc.Graph().as_default():
        x = gc.placeholder(gc.float32, [None, 2], name="x")
        gc.reduce_sum(x * 2.0, name="total")
        gc.train.export_meta_graph(str(tmp_path / "j.meta"))
    with gc.Graph().as_default() as g:
        gc.train.import_meta_graph(str(tmp_path / "j.meta"))
        with gc.Session(backend="numpy") as sess:
            assert sess.run("total:0", {"x:0": np.ones([3, 2], np.float32)}) == 12.0
        assert type(g) is gc.Graph  # nothing of the TensorFlow importer


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_randomly_damaged_files_import_or_are_artifact_errors(tmp_path, model):
    """Seeded bit flips, overwritten runs and truncations of TensorFlow's .meta files: each
    imports (a flip in a value or a name) or is an ArtifactError, never a raw exception."""
    data = (HERE / model / "model.ckpt-3.meta").read_bytes()
    rng = np.random.default_rng(15)
    refused = 0
    for trial in range(60):
        b = bytearray(data)
        i = int(rng.integers(len(b)))
        if trial % 3 == 0:
            b[i] ^= 1 << int(rng.integers(8))
        elif trial % 3 == 1:
            b[i:i + 8] = rng.integers(0, 256, 8).astype(np.uint8).tobytes()
        else:
            del b[i:]
        try:
            load(tmp_path, bytes(b), name="damaged.meta")
        except ArtifactError as e:
            assert "damaged.meta" in str(e)
            refused += 1
    assert 20 <= refused < 60  # most damage is refused; some flips land in harmless bytes
