"""A small convolutional network on the 8x8 digits: conv, max pool, conv, max pool, dense.

TF1 code (``import graphc as tf``): filters ``[kh, kw, in, out]``, NHWC images, "SAME"
padding, 2x2 max pooling (the gradient goes to the first maximum of each window), dropout
fed through a ``keep_prob`` placeholder (0.8 while training, 1.0 when testing), Adam.
The whole step — convolutions, their input and filter gradients, pooling with its argmax
routing, the update — compiles into one call.

    python examples/cnn_digits.py [--epochs 8] [--quick] [--backend numpy|llvm]
"""
import argparse
import time

import numpy as np

import graphc as tf
from graphc.data import batches, load_digits, train_test_split


def build():
    x = tf.placeholder(tf.float32, [None, 64], name="x")
    y = tf.placeholder(tf.int64, [None], name="y")
    keep_prob = tf.placeholder(tf.float32, [], name="keep_prob")
    images = tf.reshape(x, [-1, 8, 8, 1])
    he = tf.initializers.he_normal
    with tf.name_scope("conv1"):
        W = tf.Variable(he(seed=0)([3, 3, 1, 16]), name="W")
        b = tf.Variable(tf.zeros([16]), name="b")
        h = tf.nn.relu(tf.nn.conv2d(images, W, strides=1, padding="SAME") + b)      # 8x8x16
        h = tf.nn.max_pool(h, ksize=2, strides=2, padding="VALID")                    # 4x4x16
    with tf.name_scope("conv2"):
        W = tf.Variable(he(seed=1)([3, 3, 16, 32]), name="W")
        b = tf.Variable(tf.zeros([32]), name="b")
        h = tf.nn.relu(tf.nn.conv2d(h, W, strides=[1, 1, 1, 1], padding="SAME") + b)  # 4x4x32
        h = tf.nn.max_pool(h, ksize=[1, 2, 2, 1], strides=[1, 2, 2, 1], padding="VALID")
    flat = tf.nn.dropout(tf.reshape(h, [-1, 2 * 2 * 32]), keep_prob=keep_prob, seed=2)
    with tf.name_scope("dense"):
        W = tf.Variable(tf.initializers.glorot_uniform(seed=3)([128, 10]), name="W")
        b = tf.Variable(tf.zeros([10]), name="b")
        logits = tf.matmul(flat, W) + b
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y,
                                                                         logits=logits))
    accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, 1), y), tf.float32))
    train_op = tf.train.AdamOptimizer(0.005).minimize(loss)
    return x, y, keep_prob, loss, accuracy, train_op


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="2 epochs")
    parser.add_argument("--backend", default=None, choices=("numpy", "llvm"),
                        help="default: $GRAPHC_BACKEND, else LLVM where it works")
    args = parser.parse_args(argv)
    epochs = 2 if args.quick else args.epochs
    x_tr, x_te, y_tr, y_te = train_test_split(*load_digits(), test_fraction=0.2, seed=0)
    tf.reset_default_graph()
    x, y, keep_prob, loss, accuracy, train_op = build()
    with tf.Session(backend=args.backend) as sess:
        sess.run(tf.global_variables_initializer())
        for epoch in range(epochs):
            t0 = time.perf_counter()
            losses = [sess.run([loss, train_op], {x: xb, y: yb, keep_prob: 0.8})[0]
                      for xb, yb in batches(x_tr, y_tr, 32, seed=epoch, drop_last=True)]
            acc = sess.run(accuracy, {x: x_te, y: y_te, keep_prob: 1.0})
            print(f"epoch {epoch + 1:2d}  train loss {np.mean(losses):.4f}  test accuracy "
                  f"{acc:.4f}  ({time.perf_counter() - t0:.2f}s, backend {sess.backend})")
    print(f"test accuracy {acc:.4f}")
    return float(acc)


if __name__ == "__main__":
    main()
