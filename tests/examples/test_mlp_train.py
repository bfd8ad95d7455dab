"""An MLP trained with GradientDescentOptimizer on a synthetic three-class problem (three
interleaved spiral arms, which no linear model separates), with the public API only, on the
NumPy backend: it must reach at least 95% held-out accuracy."""
import numpy as np

import graphc as gc


def spirals(per_class, rng, noise=0.2):
    """Three spiral arms in the plane, one per class, with angular noise."""
    r = np.tile(np.linspace(0.05, 1.0, per_class), 3)
    y = np.repeat(np.arange(3), per_class)
    t = y * 2 * np.pi / 3 + 4.0 * r + rng.normal(0.0, noise, 3 * per_class)
    x = np.stack([r * np.cos(t), r * np.sin(t)], axis=1).astype(np.float32)
    order = rng.permutation(3 * per_class)
    return x[order], y[order].astype(np.int64)


def build(hidden=(32, 32), lr=0.5):
    """The model: placeholders, a relu MLP, mean cross-entropy, accuracy and the train op."""
    x = gc.placeholder(gc.float32, [None, 2], name="x")
    y = gc.placeholder(gc.int64, [None], name="y")
    init = gc.initializers.glorot_uniform(seed=1)
    h, width = x, 2
    for i, units in enumerate(hidden):
        with gc.name_scope(f"dense{i}"):
            w = gc.Variable(init([width, units]), name="W")
            b = gc.Variable(gc.zeros([units]), name="b")
            h = gc.nn.relu(gc.matmul(h, w) + b)
        width = units
    with gc.name_scope("logits"):
        w = gc.Variable(init([width, 3]), name="W")
        logits = gc.nn.bias_add(gc.matmul(h, w), gc.Variable(gc.zeros([3]), name="b"))
    loss = gc.reduce_mean(gc.nn.sparse_softmax_cross_entropy_with_logits(labels=y,
                                                                         logits=logits))
    accuracy = gc.reduce_mean(gc.cast(gc.equal(gc.argmax(logits, axis=1), y), gc.float32))
    train = gc.train.GradientDescentOptimizer(lr).minimize(loss)
    return x, y, loss, accuracy, train


def train_model(steps, optimize=True, hidden=(32, 32), batch=64):
    """Train a new model in a new default graph; returns (per-step losses, held-out
    accuracy)."""
    gc.reset_default_graph()
    rng = np.random.default_rng(0)
    xtr, ytr = spirals(200, rng)
    xte, yte = spirals(100, rng)
    x, y, loss, accuracy, train = build(hidden)
    losses = []
    with gc.Session(optimize=optimize) as sess:
        sess.run(gc.global_variables_initializer())
        for _ in range(steps):
            idx = rng.integers(0, len(xtr), batch)
            value, _ = sess.run([loss, train], {x: xtr[idx], y: ytr[idx]})
            losses.append(float(value))
        return np.array(losses), float(sess.run(accuracy, {x: xte, y: yte}))


def test_mlp_reaches_95_percent_on_three_spirals():
    losses, acc = train_model(1500)
    assert np.isfinite(losses).all()
    assert losses[-100:].mean() < 0.25 * losses[:10].mean()
    assert acc >= 0.95, f"held-out accuracy {acc:.3f}"


def test_a_linear_model_cannot_separate_the_spirals():
    """The problem needs the hidden layers: without them accuracy stays far from 95%."""
    _, acc = train_model(300, hidden=())
    assert acc < 0.7


def test_optimized_and_reference_pipelines_train_identically():
    ref, _ = train_model(40, optimize=False)
    opt, _ = train_model(40, optimize=True)
    np.testing.assert_allclose(opt, ref, rtol=1e-4)
