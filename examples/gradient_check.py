"""Checking a model's gradients with ``gc.check_gradients``.

``gc.check_gradients(loss, wrt, feed_dict)`` compares the symbolic gradients that training
uses with central differences of the loss, in float64 even for a float32 model (it runs on a
float64 copy of the graph), element by element for small tensors and along random
directions for large ones, and prints one row per tensor.

The script checks two versions of a small classifier with a hand-written layer normalization:

- a correct one: ``(h - mean(h)) / sqrt(var(h) + eps)``;
- a "faster" one that wraps the statistics in ``gc.stop_gradient``, a mistake that trains
  without any error message but follows a wrong gradient. The check names the tensors whose
  gradient is wrong.

    python examples/gradient_check.py [--quick]
"""
import argparse

import graphc as gc
from graphc.data import load_digits


def layer_norm(h, stop_statistics):
    mean = gc.reduce_mean(h, axis=1, keepdims=True)
    var = gc.reduce_mean(gc.square(h - mean), axis=1, keepdims=True)
    if stop_statistics:  # the bug: treat the statistics as constants
        mean, var = gc.stop_gradient(mean), gc.stop_gradient(var)
    return (h - mean) / gc.sqrt(var + 1e-5)


def check(stop_statistics, x, y, quick):
    g = gc.Graph()
    with g.as_default():
        xp = gc.placeholder(gc.float32, [None, 64], name="x")
        yp = gc.placeholder(gc.int64, [None], name="y")
        with gc.name_scope("dense1"):
            W1 = gc.Variable(gc.initializers.he_normal(seed=0)([64, 32]), name="W")
            b1 = gc.Variable(gc.initializers.random_normal(0.0, 0.1, seed=1)([32]), name="b")
            h = gc.tanh(layer_norm(gc.matmul(xp, W1) + b1, stop_statistics))
        with gc.name_scope("dense2"):
            W2 = gc.Variable(gc.initializers.glorot_uniform(seed=2)([32, 10]), name="W")
            logits = gc.matmul(h, W2)
        loss = gc.reduce_mean(gc.nn.sparse_softmax_cross_entropy_with_logits(labels=yp,
                                                                             logits=logits))
        with gc.Session() as sess:
            sess.run(gc.global_variables_initializer())
            return gc.check_gradients(loss, None, {xp: x, yp: y}, session=sess,
                                      num_projections=4 if quick else 8)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller batch, fewer directions")
    args = parser.parse_args(argv)
    x, y = load_digits()
    n = 16 if args.quick else 64
    results = {}
    for stop, name in ((False, "correct layer norm"), (True, "layer norm with stop_gradient")):
        result = check(stop, x[:n], y[:n], args.quick)
        print(f"\n{name}:")
        print(result)
        wrong = [r.name for r in result if not r.passed]
        verdict = "wrong gradients: " + ", ".join(wrong) if wrong else "all gradients agree"
        print(f"{name}: {verdict}")
        results[stop] = result
    return results


if __name__ == "__main__":
    main()
