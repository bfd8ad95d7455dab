"""A model file for the ``graphc`` command line: an MLP on the 8x8 digits, compiled ahead of time.

The command line imports this file and calls one function (``build`` unless ``:FUNC`` says
otherwise) with no arguments, inside a fresh graph. The function builds the training step and
returns ``(fetches, feeds)``: ``fetches`` any nest (dict, list, tuple) of tensors and ops
that each step returns, ``feeds`` the list of placeholders the step takes. A dict
``{"fetches": ..., "feeds": [...], "shapes": {"x": (32, 64)}}`` works too; ``shapes`` (or
``--shape x=32,64``) fixes the placeholders' None dims, since a saved step has fixed shapes.

    python examples/model_mlp.py --write-batch .        # batch_x.npy, batch_y.npy
    graphc compile examples/model_mlp.py -o step.gcx --backend llvm
    graphc run step.gcx --feed x=batch_x.npy --feed y=batch_y.npy --steps 5
    graphc inspect step.gcx
    graphc dump examples/model_mlp.py --stage fuse --diff
    graphc compile examples/model_mlp.py:build_with_dropout -o step.gcx --shape x=32,64 --shape y=32
"""
import argparse
import os

import numpy as np

import graphc as gc
from graphc.data import load_digits

BATCH = 32


def _mlp(x, y, hidden=64, keep_prob=None):
    with gc.name_scope("dense1"):
        W1 = gc.Variable(gc.initializers.he_normal(seed=0)([64, hidden]), name="W")
        b1 = gc.Variable(gc.zeros([hidden]), name="b")
        h = gc.nn.relu(gc.matmul(x, W1) + b1)
    if keep_prob is not None:
        h = gc.nn.dropout(h, keep_prob, seed=7)
    with gc.name_scope("dense2"):
        W2 = gc.Variable(gc.initializers.glorot_uniform(seed=1)([hidden, 10]), name="W")
        b2 = gc.Variable(gc.zeros([10]), name="b")
        logits = gc.matmul(h, W2) + b2
    loss = gc.reduce_mean(gc.nn.sparse_softmax_cross_entropy_with_logits(labels=y,
                                                                         logits=logits),
                          name="loss")
    accuracy = gc.reduce_mean(gc.cast(gc.equal(gc.argmax(logits, 1), y), gc.float32),
                              name="accuracy")
    return loss, accuracy


def build():
    """The training step on batches of 32: returns (fetches, feeds)."""
    x = gc.placeholder(gc.float32, [BATCH, 64], name="x")
    y = gc.placeholder(gc.int64, [BATCH], name="y")
    loss, accuracy = _mlp(x, y)
    train = gc.train.AdamOptimizer(0.003).minimize(loss)
    return {"loss": loss, "accuracy": accuracy, "train": train}, [x, y]


def build_with_dropout():
    """The same with dropout (a random op) and a batch size left open: returns a dict with
    the fetches and feeds; the shapes come from the command line (``--shape``)."""
    x = gc.placeholder(gc.float32, [None, 64], name="x")
    y = gc.placeholder(gc.int64, [None], name="y")
    loss, accuracy = _mlp(x, y, keep_prob=0.9)
    train = gc.train.MomentumOptimizer(0.05, 0.9).minimize(loss)
    return {"fetches": [loss, accuracy, train], "feeds": [x, y]}


def write_batch(directory, index=0):
    """Write batch ``index`` of the digits as ``batch_x.npy`` and ``batch_y.npy``."""
    x, y = load_digits()
    start = index * BATCH
    os.makedirs(directory, exist_ok=True)
    paths = (os.path.join(directory, "batch_x.npy"), os.path.join(directory, "batch_y.npy"))
    np.save(paths[0], x[start:start + BATCH])
    np.save(paths[1], y[start:start + BATCH])
    return paths


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write-batch", metavar="DIR", default=".",
                        help="write batch_x.npy and batch_y.npy there (default: .)")
    parser.add_argument("--index", type=int, default=0, help="which batch of 32 digits")
    args = parser.parse_args(argv)
    for path in write_batch(args.write_batch, args.index):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
