"""``tf.compat.v1`` scripts run on graphc: ``import graphc.compat.v1 as tf`` is graphc under
TF2's compatibility name, and the switches that turn TF2 behaviour off are accepted."""
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import graphc as gc


def test_compat_v1_is_graphc():
    import graphc.compat.v1 as tf
    assert tf is gc.compat.v1
    assert tf.placeholder is gc.placeholder and tf.train is gc.train and tf.nn is gc.nn
    assert tf.Session is gc.Session and tf.float32 is gc.float32
    assert "placeholder" in dir(tf) and "disable_v2_behavior" in dir(tf)
    assert tf.executing_eagerly() is False and gc.executing_eagerly() is False


def test_v2_switches():
    import graphc.compat.v1 as tf
    assert tf.disable_v2_behavior() is None and tf.disable_eager_execution() is None
    with pytest.raises(NotImplementedError, match="TensorFlow 1.x's graph API"):
        tf.enable_eager_execution()
    with pytest.raises(NotImplementedError):
        tf.enable_v2_behavior()
    with pytest.raises(AttributeError, match="no_such_name"):
        tf.no_such_name


def test_a_compat_v1_script_trains(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent("""
        import numpy as np
        import graphc.compat.v1 as tf
        tf.disable_v2_behavior()

        xs, ys = tf.data.load_digits()
        x = tf.placeholder(tf.float32, [None, 64])
        y = tf.placeholder(tf.int64, [None])
        w = tf.get_variable("w", [64, 10], initializer=tf.glorot_uniform_initializer(seed=0))
        logits = tf.matmul(x, w)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=y, logits=logits))
        train = tf.train.AdamOptimizer(0.05).minimize(loss)
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            first = sess.run(loss, {x: xs, y: ys})
            for _ in range(30):
                last, _ = sess.run([loss, train], {x: xs, y: ys})
        print(first, last)
    """))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    first, last = map(float, out.stdout.split())
    assert np.isfinite(last) and last < 0.5 * first
