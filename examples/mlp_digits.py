"""A TF1-style training script: an MLP on the embedded 8x8 digits, with a checkpoint.

Written as TensorFlow 1.x code (``import graphc as tf``): placeholders, variables, an
optimizer with a decaying learning rate and a global step, a Session loop over seeded
mini-batches, then ``tf.train.Saver`` to save the trained variables and restore them into a
fresh session, which must reproduce the test accuracy exactly.

    python examples/mlp_digits.py [--epochs 15] [--quick] [--checkpoint-dir DIR]
"""
import argparse
import os
import tempfile

import graphc as tf
from graphc.data import batches, load_digits, train_test_split


def build():
    x = tf.placeholder(tf.float32, [None, 64], name="x")
    y = tf.placeholder(tf.int64, [None], name="y")
    with tf.name_scope("hidden"):
        W1 = tf.get_variable("hidden/W", [64, 100], initializer=tf.initializers.he_normal(seed=0))
        b1 = tf.get_variable("hidden/b", [100], initializer=tf.zeros_initializer())
        h = tf.nn.relu(tf.matmul(x, W1) + b1)
    with tf.name_scope("output"):
        W2 = tf.get_variable("output/W", [100, 10],
                             initializer=tf.glorot_uniform_initializer(seed=1))
        b2 = tf.get_variable("output/b", [10], initializer=tf.zeros_initializer())
        logits = tf.matmul(h, W2) + b2
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y,
                                                                         logits=logits))
    accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, 1), y), tf.float32))
    step = tf.train.get_or_create_global_step()
    lr = tf.train.exponential_decay(0.05, step, decay_steps=200, decay_rate=0.7)
    train_op = tf.train.MomentumOptimizer(lr, 0.9, use_nesterov=True).minimize(
        loss, global_step=step)
    return x, y, loss, accuracy, train_op, lr


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--quick", action="store_true", help="2 epochs")
    parser.add_argument("--checkpoint-dir", default=None, help="default: a temporary folder")
    args = parser.parse_args(argv)
    epochs = 2 if args.quick else args.epochs
    ckpt_dir = args.checkpoint_dir or tempfile.mkdtemp(prefix="mlp-digits-")
    x_tr, x_te, y_tr, y_te = train_test_split(*load_digits(), test_fraction=0.2, seed=0)

    tf.reset_default_graph()
    x, y, loss, accuracy, train_op, lr = build()
    saver = tf.train.Saver()
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        for epoch in range(epochs):
            losses = [sess.run([loss, train_op], {x: xb, y: yb})[0]
                      for xb, yb in batches(x_tr, y_tr, 32, seed=epoch)]
            test_acc = sess.run(accuracy, {x: x_te, y: y_te})
            print(f"epoch {epoch + 1:2d}  lr {sess.run(lr):.4f}  train loss "
                  f"{sum(losses) / len(losses):.4f}  test accuracy {test_acc:.4f}")
        path = saver.save(sess, os.path.join(ckpt_dir, "mlp"),
                          global_step=tf.train.get_global_step())
    print(f"saved {path}")

    with tf.Session() as sess:  # a fresh session: nothing initialized, everything restored
        saver.restore(sess, path)
        restored = sess.run(accuracy, {x: x_te, y: y_te})
    print(f"test accuracy {test_acc:.4f}; after restoring the checkpoint {restored:.4f}")
    return float(test_acc), float(restored)


if __name__ == "__main__":
    main()
