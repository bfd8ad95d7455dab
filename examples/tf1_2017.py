"""A TensorFlow 1.x script as people wrote them in 2017, unchanged but for its import line:
variable-length sequence classification with an LSTM.

Shapeless placeholders (``tf.placeholder("float")``, ``[None, None, 1]``), sizes read with
``tf.shape`` (the 2017 idiom that picks each sequence's last relevant output), variable_scope
and get_variable, ``tf.nn.dynamic_rnn`` (a while loop over time), fetches and feeds by
``"name:0"``, ``tf.summary.FileWriter`` for TensorBoard, and a Saver that saves and restores.

The task: is the sum of a sequence of numbers in [-1, 1] positive? Sequences have 3 to 12
steps, padded to the batch's longest.

    python examples/tf1_2017.py [--steps 300] [--logdir /tmp/tf1_2017]
    GRAPHC_BACKEND=numpy python examples/tf1_2017.py --steps 60
"""
from __future__ import print_function

import argparse
import os
import sys

import numpy as np
import graphc as tf  # the original: import tensorflow as tf

FLAGS = None
NUM_HIDDEN = 16
MAX_LEN = 12


def make_batch(rng, batch_size):
    """Padded sequences [batch, max_len, 1], their lengths and one-hot labels."""
    lengths = rng.randint(3, MAX_LEN + 1, size=batch_size)
    xs = np.zeros((batch_size, lengths.max(), 1), np.float32)
    for i, n in enumerate(lengths):
        xs[i, :n, 0] = rng.uniform(-1, 1, size=n)
    positive = xs.sum(axis=(1, 2)) > 0
    ys = np.stack([~positive, positive], axis=1).astype(np.float32)
    return xs, lengths.astype(np.int32), ys


def last_relevant(outputs, seqlen):
    """The output at each sequence's last step (from a 2017 blog post, verbatim)."""
    batch_size = tf.shape(outputs)[0]
    max_length = tf.shape(outputs)[1]
    out_size = int(outputs.get_shape()[2])
    index = tf.range(0, batch_size) * max_length + (seqlen - 1)
    flat = tf.reshape(outputs, [-1, out_size])
    return tf.gather(flat, index)


def build_graph():
    x = tf.placeholder("float", [None, None, 1], name="x")
    seqlen = tf.placeholder(tf.int32, [None], name="seqlen")
    y = tf.placeholder("float", [None, 2], name="y")
    learning_rate = tf.placeholder("float", name="learning_rate")  # no shape: any

    with tf.variable_scope("rnn"):
        cell = tf.nn.rnn_cell.BasicLSTMCell(NUM_HIDDEN)
        outputs, _ = tf.nn.dynamic_rnn(cell, x, sequence_length=seqlen, dtype=tf.float32)
    last = last_relevant(outputs, seqlen)
    with tf.variable_scope("softmax"):
        W = tf.get_variable("W", [NUM_HIDDEN, 2],
                            initializer=tf.truncated_normal_initializer(stddev=0.1))
        b = tf.get_variable("b", [2], initializer=tf.constant_initializer(0.1))
    logits = tf.matmul(last, W) + b

    cost = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(logits=logits, labels=y),
                          name="cost")
    tf.train.AdamOptimizer(learning_rate).minimize(cost, name="train")
    correct = tf.equal(tf.argmax(logits, 1), tf.argmax(y, 1))
    tf.reduce_mean(tf.cast(correct, tf.float32), name="accuracy")
    tf.summary.scalar("cost", cost)
    tf.summary.histogram("softmax_W", W)


def feed(batch, lr=None):
    xs, lengths, ys = batch
    d = {"x:0": xs, "seqlen:0": lengths, "y:0": ys}
    if lr is not None:
        d["learning_rate:0"] = lr
    return d


def main(_):
    tf.set_random_seed(0)
    build_graph()
    merged = tf.summary.merge_all()
    saver = tf.train.Saver()
    rng = np.random.RandomState(0)
    test_batch = make_batch(np.random.RandomState(1), 500)

    with tf.Session() as sess:
        writer = tf.summary.FileWriter(FLAGS.logdir, sess.graph)
        sess.run(tf.global_variables_initializer())
        for step in range(1, FLAGS.steps + 1):
            summary, _ = sess.run([merged, "train"], feed(make_batch(rng, 64), FLAGS.lr))
            writer.add_summary(summary, step)
            if step % 50 == 0 or step == FLAGS.steps:
                c, acc = sess.run(["cost:0", "accuracy:0"], feed(test_batch))
                print("step %d, test cost %.4f, test accuracy %.4f" % (step, c, acc))
        writer.close()
        save_path = saver.save(sess, os.path.join(FLAGS.logdir, "model.ckpt"),
                               global_step=step)
        print("Model saved in file: %s" % save_path)

    with tf.Session() as sess:
        saver.restore(sess, save_path)
        acc = sess.run("accuracy:0", feed(test_batch))
        print("Restored from %s, test accuracy %.4f" % (save_path, acc))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=300, help="training steps")
    parser.add_argument("--lr", type=float, default=0.01, help="learning rate")
    parser.add_argument("--logdir", type=str, default="/tmp/tf1_2017",
                        help="summaries and checkpoints")
    FLAGS, unparsed = parser.parse_known_args()
    tf.app.run(main=main, argv=[sys.argv[0]] + unparsed)
