"""tf.train.export_meta_graph / import_meta_graph: a model saved with its checkpoint is rebuilt
(in this process and in a fresh one), restored and trained by names, with the values of the
original; loops (dynamic_rnn, while_loop) round-trip with their bodies, trained as the original;
malformed files and loop bodies are refused naming the file and the node."""
import base64
import io
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import graphc as gc
from graphc.errors import ArtifactError
from tests.support.paths import ROOT

XS = np.linspace(-1, 1, 24, dtype=np.float32).reshape(6, 4)
YS = np.array([0, 1, 2, 0, 1, 2], np.int32)


def build():
    """A TF1-style classifier: shapeless-batch placeholders, get_variable, Adam, a summary."""
    x = gc.placeholder(gc.float32, [None, 4], name="x")
    y = gc.placeholder(gc.int32, [None], name="y")
    with gc.variable_scope("dense"):
        w = gc.get_variable("w", [4, 3], initializer=gc.random_normal_initializer(seed=3))
        b = gc.get_variable("b", [3], initializer=gc.zeros_initializer())
    logits = gc.matmul(x, w) + b
    logits = gc.reshape(logits, [gc.shape(x)[0], -1])  # a size known at specialization
    loss = gc.reduce_mean(gc.nn.sparse_softmax_cross_entropy_with_logits(labels=y,
                                                                         logits=logits),
                          name="loss")
    step = gc.train.get_or_create_global_step()
    train = gc.train.AdamOptimizer(0.05).minimize(loss, global_step=step, name="train")
    gc.add_to_collection("train_op", train)
    gc.summary.scalar("loss", loss)
    return gc.global_variables_initializer()


def reference_loss(w, b):
    """float64 softmax cross-entropy of the model at (w, b)."""
    z = XS.astype(np.float64) @ w + b
    z = z - z.max(1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    return -logp[np.arange(len(YS)), YS].mean()


def train_and_export(tmp_path, backend, steps=3):
    init = build()
    with gc.Session(backend=backend) as sess:
        sess.run(init)
        for _ in range(steps):
            sess.run("train", {"x:0": XS, "y:0": YS})
        prefix = gc.train.Saver().save(sess, str(tmp_path / "model"), global_step=steps)
        gc.train.export_meta_graph(str(tmp_path / "model.meta"))
        loss = sess.run("loss:0", {"x:0": XS, "y:0": YS})
        sess.run("train", {"x:0": XS, "y:0": YS})
        after = {v.op.name: sess.run(v) for v in gc.global_variables()}
    names = [(n.op.name, n.op_name) for n in gc.get_default_graph().nodes]
    return prefix, loss, after, names


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_imported_graph_restores_evaluates_and_trains_as_the_original(tmp_path, backend):
    prefix, loss, after, names = train_and_export(tmp_path, backend)
    gc.reset_default_graph()
    saver = gc.train.import_meta_graph(str(tmp_path / "model.meta"))
    g = gc.get_default_graph()
    assert [(n.op.name, n.op_name) for n in g.nodes] == names
    assert [v.op.name for v in gc.trainable_variables()] == ["dense/w", "dense/b"]
    assert len(gc.global_variables()) == len(after)
    assert [t.op.name for t in gc.get_collection("train_op")] == ["train"]
    with gc.Session(backend=backend) as sess:
        saver.restore(sess, gc.train.latest_checkpoint(str(tmp_path)))
        w, b = sess.run(["dense/w:0", "dense/b:0"])
        got = sess.run("loss:0", {"x:0": XS, "y:0": YS})
        np.testing.assert_allclose(got, reference_loss(w, b), rtol=1e-5)
        np.testing.assert_allclose(got, loss, rtol=1e-6)
        sess.run(gc.get_collection("train_op")[0], {"x:0": XS, "y:0": YS})
        for v in gc.global_variables():  # the same Adam step as the original graph took
            np.testing.assert_allclose(sess.run(v), after[v.op.name], rtol=1e-5, atol=1e-7)
        summary = sess.run(gc.summary.merge_all(), {"x:0": XS, "y:0": YS})
        assert summary.value[0].tag == "loss_1"  # as TF1 tags it: the node took "loss"
        np.testing.assert_allclose(summary.value[0].simple_value,
                                   sess.run("loss:0", {"x:0": XS, "y:0": YS}), rtol=1e-6)


def test_fresh_process_rebuilds_restores_and_trains(tmp_path):
    prefix, loss, after, _ = train_and_export(tmp_path, "numpy")
    script = textwrap.dedent(f"""
        import numpy as np, graphc as tf
        saver = tf.train.import_meta_graph({str(tmp_path / "model.meta")!r})
        feed = {{"x:0": np.linspace(-1, 1, 24, dtype=np.float32).reshape(6, 4),
                 "y:0": np.array([0, 1, 2, 0, 1, 2], np.int32)}}
        with tf.Session() as sess:
            saver.restore(sess, {prefix!r})
            print(repr(float(sess.run("loss:0", feed))))
            sess.run("train", feed)
            print(repr(sess.run("dense/w:0").tolist()))
    """)
    env = dict(os.environ, GRAPHC_BACKEND="numpy")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    np.testing.assert_allclose(float(lines[0]), loss, rtol=1e-6)
    np.testing.assert_allclose(np.array(eval(lines[1])), after["dense/w"], rtol=1e-5)


def test_shapeless_placeholder_and_default_round_trip(tmp_path):
    x = gc.placeholder("float", name="X")
    k = gc.placeholder_with_default(np.float32(2.0), shape=(), name="k")
    gc.reduce_sum(x * k, name="total")
    gc.train.export_meta_graph(tmp_path / "m.meta")
    gc.reset_default_graph()
    gc.train.import_meta_graph(tmp_path / "m.meta", import_scope="imported")
    assert gc.get_default_graph().get_tensor_by_name("imported/X:0").shape is None
    with gc.Session() as sess:
        v = np.arange(6, dtype=np.float32).reshape(2, 3)
        assert sess.run("imported/total:0", {"imported/X:0": v}) == pytest.approx(30.0)
        assert sess.run("imported/total:0", {"imported/X:0": v[0],
                                             "imported/k:0": 1.0}) == pytest.approx(3.0)


T = 20  # more steps than the unroll pass unrolls: the loops stay loops


def build_rnn():
    """A dynamic_rnn classifier trained with Adam (its gradient adds stacked values to the
    forward body after the loop was built) and a data-dependent while_loop."""
    x = gc.placeholder(gc.float32, [None, T, 3], name="x")
    y = gc.placeholder(gc.int32, [None], name="y")
    cell = gc.nn.rnn_cell.BasicRNNCell(5)
    _, state = gc.nn.dynamic_rnn(cell, x, dtype=gc.float32)
    logits = gc.layers.dense(state, 3, name="out")
    loss = gc.reduce_mean(gc.nn.sparse_softmax_cross_entropy_with_logits(labels=y,
                                                                         logits=logits),
                          name="loss")
    train = gc.train.AdamOptimizer(0.05).minimize(loss, name="train")
    gc.add_to_collection("train_op", train)
    _, total = gc.while_loop(lambda i, s: s < 50.0, lambda i, s: (i + 1, s + gc.reduce_sum(x)),
                             [gc.constant(0), gc.constant(0.0)], maximum_iterations=100)
    gc.identity(total, name="total")
    return gc.global_variables_initializer()


def rnn_feed():
    r = np.random.default_rng(5)
    return {"x:0": r.normal(size=(4, T, 3)).astype(np.float32) + 0.3,
            "y:0": np.array([0, 1, 2, 1], np.int32)}


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_loops_round_trip_and_train_as_the_original(tmp_path, backend):
    init, feed = build_rnn(), rnn_feed()
    loops = [n for n in gc.get_default_graph().nodes if n.op_name == "loop"]
    assert len(loops) == 3  # the rnn, its adjoint, the while loop
    with gc.Session(backend=backend) as sess:
        sess.run(init)
        prefix = gc.train.Saver().save(sess, str(tmp_path / "rnn"))
        gc.train.export_meta_graph(str(tmp_path / "rnn.meta"))
        names = [(n.op.name, n.op_name) for n in gc.get_default_graph().nodes]
        stacked = [len(lp.attrs["body"].stacked) for lp in loops]
        want = sess.run(["loss:0", "total:0"], feed)
        sess.run("train", feed)
        after = {v.op.name: sess.run(v) for v in gc.global_variables()}
        loss = gc.get_default_graph().get_tensor_by_name("loss:0")
        grads = sess.run(gc.gradients(loss, gc.trainable_variables()), feed)
    gc.reset_default_graph()
    saver = gc.train.import_meta_graph(str(tmp_path / "rnn.meta"))
    g = gc.get_default_graph()
    assert [(n.op.name, n.op_name) for n in g.nodes] == names
    bodies = [n.attrs["body"] for n in g.nodes if n.op_name == "loop"]
    assert [len(b.stacked) for b in bodies] == stacked and stacked[0] > 0
    with gc.Session(backend=backend) as sess:
        saver.restore(sess, prefix)
        got = sess.run(["loss:0", "total:0"], feed)
        np.testing.assert_allclose(got[0], want[0], rtol=1e-6)
        assert got[1] == want[1] and got[1] >= 50.0
        sess.run(gc.get_collection("train_op")[0], feed)
        for v in gc.global_variables():  # the same BPTT + Adam step as the original took
            np.testing.assert_allclose(sess.run(v), after[v.op.name], rtol=1e-5, atol=1e-6)
        # the imported loops differentiate again (new adjoint loops over the imported bodies)
        loss = g.get_tensor_by_name("loss:0")
        again = sess.run(gc.gradients(loss, gc.trainable_variables()), feed)
    for a, b in zip(again, grads):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def _loop_doc():
    gc.reset_default_graph()
    x = gc.placeholder(gc.float32, [T, 2], name="x")
    gc.identity(gc.scan(lambda acc, e: acc * 0.5 + e, x), name="out")
    doc = json.loads(gc.train.export_meta_graph())
    gc.reset_default_graph()
    loop = next(n for n in doc["nodes"] if n["op"] == "loop")
    return doc, loop["attrs"]["body"]["loop_body"]


def test_scan_round_trips(tmp_path):
    doc, _ = _loop_doc()
    (tmp_path / "scan.meta").write_text(json.dumps(doc))
    gc.train.import_meta_graph(tmp_path / "scan.meta")
    xs = np.random.default_rng(1).normal(size=(T, 2)).astype(np.float32)
    want, acc = [], np.zeros(2, np.float32)
    for e in xs:
        acc = acc * np.float32(0.5) + e
        want.append(acc)
    with gc.Session() as sess:
        np.testing.assert_allclose(sess.run("out:0", {"x:0": xs}), np.array(want), rtol=1e-6)


@pytest.mark.parametrize("edit, message", [
    (lambda b, d: b.update(carried=[0]), r"loop variable 'x' is f32\[20, ?2\], the loop's "
     "input"),
    (lambda b, d: b.update(next=[]), "do not match its body's roles"),
    (lambda b, d: b.update(captured=[0]), "do not match its body's roles"),
    (lambda b, d: b.update(carried=[len(d["nodes"]) + 3]), "not the index of an earlier"),
    (lambda b, d: b.update(stacked=[len(d["nodes"]) - 1, 1]), "stacked values built after"),
    (lambda b, d: b.update(cond=0), "condition is not a bool scalar"),
    (lambda b, d: b.pop("name"), "malformed loop body"),
    (lambda b, d: b.update(sliced=[2]), r"loop variable '.*' is a \w+, not a placeholder"),
])
def test_malformed_loop_bodies_are_refused(tmp_path, edit, message):
    doc, body = _loop_doc()
    edit(body, doc)
    (tmp_path / "bad.meta").write_text(json.dumps(doc))
    with pytest.raises(ArtifactError, match=message) as info:
        gc.train.import_meta_graph(tmp_path / "bad.meta")
    assert "bad.meta" in str(info.value) and "loop" in str(info.value)


def _tamper(tmp_path, edit):
    gc.reset_default_graph()
    x = gc.placeholder(gc.float32, [None, 2], name="x")
    gc.reduce_sum(gc.matmul(x, gc.constant(np.ones((2, 2), np.float32))), name="out")
    doc = json.loads(gc.train.export_meta_graph())
    edit(doc)
    path = tmp_path / "bad.meta"
    path.write_text(json.dumps(doc))
    gc.reset_default_graph()
    return str(path)


def _pickled_array():
    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    return {"npy": base64.b64encode(buf.getvalue()).decode()}


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.update(format="other"), "not a graphc meta graph"),
    (lambda d: d.update(version=9), "version 9"),
    (lambda d: d["nodes"][2].update(op="os.system"), r"node #2 'MatMul'.*op 'os.system'"),
    (lambda d: d["nodes"][2].update(inputs=[0, 5]), r"'MatMul'.*earlier nodes"),
    (lambda d: d["nodes"][1]["attrs"].update(value=_pickled_array()), r"'Const'.*value"),
    (lambda d: d["nodes"][1]["attrs"].update(value={"eval": "1+1"}), r"unknown form 'eval'"),
    (lambda d: d["nodes"][2].update(dtype="int32"), r"'MatMul'.*computed by matmul"),
    (lambda d: d["nodes"][0]["attrs"].update(shape={"tuple": [None, 3]}),
     r"node #0 'x'.*3\]\) computed by placeholder"),
    (lambda d: (d["nodes"][0]["attrs"].update(shape={"tuple": [None, 3]}),
                d["nodes"][0].update(shape=[None, 3])), r"node #2 'MatMul'.*matmul"),
    (lambda d: d["collections"].update(train_op=[{"node": 99}]), "refers to no node"),
])
def test_malformed_files_are_refused_naming_file_and_node(tmp_path, edit, message):
    path = _tamper(tmp_path, edit)
    with pytest.raises(ArtifactError, match=message) as info:
        gc.train.import_meta_graph(path)
    assert "bad.meta" in str(info.value)


def test_malformed_variables_are_refused(tmp_path):
    gc.Variable(np.zeros((2, 3), np.float32), name="v")
    gc.Variable(np.zeros((3,), np.float32), name="u")
    doc = json.loads(gc.train.export_meta_graph())
    assert [n["name"] for n in doc["nodes"]] == ["v/initial_value", "v", "u/initial_value", "u"]
    wrong_init = json.loads(json.dumps(doc))
    wrong_init["nodes"][1]["variable"]["initial_value"] = 2   # u's [3] for v's [2, 3]
    (tmp_path / "a.meta").write_text(json.dumps(wrong_init))
    del doc["nodes"][3]["variable"]
    (tmp_path / "b.meta").write_text(json.dumps(doc))
    gc.reset_default_graph()
    with pytest.raises(ArtifactError, match=r"a.meta.*'v'.*initial value 'u/initial_value'"):
        gc.train.import_meta_graph(tmp_path / "a.meta")
    gc.reset_default_graph()
    with pytest.raises(ArtifactError, match=r"b.meta.*'u'.*malformed variable entry"):
        gc.train.import_meta_graph(tmp_path / "b.meta")


def test_unreadable_files_are_artifact_errors(tmp_path):
    (tmp_path / "junk.meta").write_bytes(b"\x80not json")
    with pytest.raises(ArtifactError, match="junk.meta"):
        gc.train.import_meta_graph(tmp_path / "junk.meta")
    with pytest.raises(ArtifactError, match="cannot read"):
        gc.train.import_meta_graph(tmp_path / "absent.meta")
