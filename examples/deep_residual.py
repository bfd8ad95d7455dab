"""Vanishing gradients in a 20-layer sigmoid network, and the identity path that cures them.

Two networks classify the 8x8 digits through 20 hidden sigmoid layers of the same width:

    plain:     h = sigmoid(h W + b)
    residual:  h = h + sigmoid(h W + b) - 1/2     (a skip connection around each layer)

Backpropagation multiplies the gradient by each layer's Jacobian. In the plain stack that is
``diag(sigmoid') W^T`` with ``sigmoid' <= 1/4``, so the gradient shrinks geometrically on
its way down: the first layers receive almost nothing and do not learn. The residual stack's
Jacobian is ``I + diag(sigmoid') W^T``: the identity carries the gradient down unchanged.

The script prints each layer's gradient norm for both (``gc.diagnostics``), the ratio between
the first and the last layer, the layers the gradient report calls vanishing, and the loss
after a few hundred SGD steps of each.

    python examples/deep_residual.py [--steps 300] [--quick]
"""
import argparse

import numpy as np

import graphc as gc
from graphc.data import batches, load_digits

DEPTH, WIDTH = 20, 32


def build(residual, seed=0):
    """The network and its training pieces in a fresh graph."""
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, [None, 64], name="x")
        y = gc.placeholder(gc.int64, [None], name="y")
        with gc.name_scope("input"):
            W = gc.Variable(gc.initializers.glorot_normal(seed=seed)([64, WIDTH]), name="W")
            h = gc.matmul(x, W)
        for i in range(DEPTH):
            with gc.name_scope(f"layer{i:02d}"):
                W = gc.Variable(gc.initializers.glorot_normal(seed=seed + 1 + i)([WIDTH, WIDTH]),
                                name="W")
                b = gc.Variable(gc.zeros([WIDTH]), name="b")
                f = gc.sigmoid(gc.matmul(h, W) + b)
                h = h + f - 0.5 if residual else f
        with gc.name_scope("output"):
            W = gc.Variable(gc.initializers.glorot_normal(seed=seed + 99)([WIDTH, 10]), name="W")
            logits = gc.matmul(h, W)
        loss = gc.reduce_mean(gc.nn.sparse_softmax_cross_entropy_with_logits(labels=y,
                                                                             logits=logits))
        opt = gc.train.GradientDescentOptimizer(0.1)
        pairs = opt.compute_gradients(loss)
        train = opt.apply_gradients(pairs)
        health = gc.diagnostics.gradient_norms(pairs, train_op=train)
        init = gc.global_variables_initializer()
    return g, dict(x=x, y=y, loss=loss, train=train, health=health, init=init)


def layer_norms(values):
    """Gradient norm of each hidden layer's weight matrix, in depth order."""
    return [values["grad_norms"][f"layer{i:02d}/W"] for i in range(DEPTH)]


def study(name, residual, x, y, steps):
    g, m = build(residual)
    feed = {m["x"]: x[:256], m["y"]: y[:256]}
    with gc.Session(graph=g) as sess:
        sess.run(m["init"])
        values = sess.run(m["health"], feed)
        loss0 = sess.run(m["loss"], {m["x"]: x, m["y"]: y})
        done = 0
        while done < steps:
            for xb, yb in batches(x, y, 64, seed=done):
                sess.run(m["train"], {m["x"]: xb, m["y"]: yb})
                done += 1
                if done == steps:
                    break
        loss1 = sess.run(m["loss"], {m["x"]: x, m["y"]: y})
    norms = layer_norms(values)
    report = gc.diagnostics.gradient_report(values)
    print(f"\n{name} network: gradient norm of each hidden layer's W (layer00 = first; "
          f"bar: log scale, one # per half decade above 1e-12)")
    for i, n in enumerate(norms):
        bar = "#" * max(0, int(round(2 * (np.log10(n) + 12)))) if n > 0 else ""
        print(f"  layer{i:02d}  {n:9.2e}  {bar}")
    ratio = norms[0] / norms[-1]
    print(f"{name}: first/last layer gradient norm ratio = {ratio:.2e}")
    print(f"{name}: vanishing layers per the gradient report: "
          f"{len([v for v in report.vanishing if v.startswith('layer')])} of {DEPTH}")
    print(f"{name}: loss {loss0:.4f} -> {loss1:.4f} after {steps} SGD steps")
    return ratio, loss0, loss1


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="SGD steps for each network")
    parser.add_argument("--quick", action="store_true", help="a short run (30 steps)")
    args = parser.parse_args(argv)
    steps = 30 if args.quick else args.steps
    x, y = load_digits()
    plain = study("plain", False, x, y, steps)
    resid = study("residual", True, x, y, steps)
    print(f"\nfirst/last gradient ratio: plain {plain[0]:.1e}, residual {resid[0]:.2f}; "
          f"the identity path carries the gradient down to the first layers")
    return plain, resid


if __name__ == "__main__":
    main()
