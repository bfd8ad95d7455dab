"""Unnamed layers in a reused scope (issue 15, part 2): entering a variable scope again
restarts its layers' default names (``dense``, ``dense_1``... in creation order), so a GAN's
discriminator applied twice finds its variables, however the scope reuses: ``reuse=True``,
``scope.reuse_variables()`` or ``gc.AUTO_REUSE``."""
import numpy as np
import pytest

import graphc as gc
from graphc.errors import GraphError

BACKENDS = ("numpy", "llvm")


def discriminator(x, how, second):
    if how == "reuse=True":
        scope = gc.variable_scope("discriminator", reuse=True if second else None)
    elif how == "AUTO_REUSE":
        scope = gc.variable_scope("discriminator", reuse=gc.AUTO_REUSE)
    else:
        scope = gc.variable_scope("discriminator")
    with scope as s:
        if how == "reuse_variables()" and second:
            s.reuse_variables()
        h = gc.layers.dense(x, 4, activation=gc.nn.relu)
        h = gc.layers.dense(h, 3, activation=gc.tanh)
        return gc.layers.dense(h, 1)


def reference(x, values):
    h = np.maximum(x @ values["discriminator/dense/kernel"] + values["discriminator/dense/bias"], 0)
    h = np.tanh(h @ values["discriminator/dense_1/kernel"] + values["discriminator/dense_1/bias"])
    return h @ values["discriminator/dense_2/kernel"] + values["discriminator/dense_2/bias"]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("how", ["reuse=True", "reuse_variables()", "AUTO_REUSE"])
def test_a_discriminator_applied_twice_shares_its_variables(backend, how, rng):
    real = gc.placeholder(gc.float64, [None, 5])
    z = gc.placeholder(gc.float64, [None, 2])
    with gc.variable_scope("generator"):
        fake = gc.layers.dense(z, 5, activation=gc.tanh)
    d_real = discriminator(real, how, second=False)
    d_fake = discriminator(fake, how, second=True)
    names = [v.op.name for v in gc.trainable_variables()]
    assert names == ["generator/dense/kernel", "generator/dense/bias"] + [
        f"discriminator/{layer}/{part}" for layer in ("dense", "dense_1", "dense_2")
        for part in ("kernel", "bias")]
    loss = -gc.reduce_mean(gc.log(gc.sigmoid(d_real)) + gc.log(1.0 - gc.sigmoid(d_fake)))
    d_vars = gc.trainable_variables("discriminator")
    grads = gc.gradients(loss, d_vars)
    assert all(g is not None for g in grads)
    xv, zv = rng.standard_normal((6, 5)), rng.standard_normal((6, 2))
    with gc.Session(backend=backend) as sess:
        sess.run(gc.global_variables_initializer())
        got_real, got_fake, got_gen = sess.run([d_real, d_fake, fake], {real: xv, z: zv})
        values = dict(zip(names, sess.run(gc.trainable_variables())))
    np.testing.assert_allclose(got_real, reference(xv, values), rtol=1e-12)
    np.testing.assert_allclose(got_fake, reference(got_gen, values), rtol=1e-12)


def test_default_names_restart_only_when_the_scope_is_entered_again():
    x = gc.placeholder(gc.float32, [2, 3])
    with gc.variable_scope("model"):
        a = gc.layers.Dense(2)
        a(x)
        gc.layers.dense(x, 2)
    with gc.variable_scope("model", reuse=True):
        shared = gc.layers.dense(x, 2)           # model/dense again
        second = gc.layers.dense(x, 2)           # model/dense_1 again
    assert a.name == "dense" and len(gc.global_variables()) == 4
    assert shared.inputs[0].inputs[1].op.name == "model/dense/kernel"
    assert second.inputs[0].inputs[1].op.name == "model/dense_1/kernel"
    with gc.variable_scope("model", reuse=True):
        gc.layers.dense(x, 2)
        gc.layers.dense(x, 2)
        with pytest.raises(GraphError, match=r"variable 'model/dense_2/kernel' does not exist"):
            gc.layers.dense(x, 2)                # a third layer the first pass did not make
    with gc.variable_scope("other"):            # a new scope counts from dense again
        assert gc.layers.dense(x, 2).inputs[0].inputs[1].op.name == "other/dense/kernel"
    top = [gc.layers.dense(x, 1), gc.layers.dense(x, 1)]   # outside any scope: fresh names
    assert [t.inputs[0].inputs[1].op.name for t in top] == ["dense/kernel", "dense_1/kernel"]
    with pytest.raises(GraphError, match="reuse=True needs a scope name"):
        with gc.variable_scope(None, default_name="block", reuse=True):
            pass
