"""A TF1-era training script, unchanged but for its import: compat.v1, flags and logging,
tf.data with an initializable iterator ended by OutOfRangeError, contrib layers with an L2
regularizer, a conv2d_transpose reconstruction head, a while_loop, TensorBoard summaries and a
Saver checkpoint.

    python examples/tf1_classic.py --epochs 4 --logdir /tmp/tf1_classic
    GRAPHC_BACKEND=llvm python examples/tf1_classic.py
"""
import numpy as np
import graphc.compat.v1 as tf
tf.disable_v2_behavior()

flags = tf.app.flags
flags.DEFINE_integer("epochs", 3, "passes over the training data")
flags.DEFINE_float("lr", 0.01, "learning rate")
flags.DEFINE_string("logdir", "/tmp/tf1_classic", "summaries and checkpoints")
FLAGS = flags.FLAGS


def main(_):
    tf.logging.set_verbosity(tf.logging.INFO)
    xs, ys = tf.data.load_digits()
    xs = (xs / 16.0).reshape(-1, 8, 8, 1).astype(np.float32)
    x_train, x_test, y_train, y_test = tf.data.train_test_split(xs, ys, 0.2, seed=0)

    ds = tf.data.Dataset.from_tensor_slices((x_train, y_train))
    ds = ds.shuffle(512, seed=1).batch(64)
    it = ds.make_initializable_iterator()
    images, labels = it.get_next()

    reg = tf.contrib.layers.l2_regularizer(1e-4)
    with tf.variable_scope("net"):
        h = tf.contrib.layers.conv2d(images, 16, 3, weights_regularizer=reg)
        pooled = tf.nn.max_pool(h, [1, 2, 2, 1], [1, 2, 2, 1], "VALID")
        recon = tf.layers.conv2d_transpose(pooled, 1, 2, strides=2, padding="same")
        flat = tf.contrib.layers.flatten(pooled)
        logits = tf.contrib.layers.fully_connected(flat, 10, activation_fn=None,
                                                   weights_regularizer=reg)
    xent = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=labels, logits=logits))
    recon_loss = tf.reduce_mean(tf.square(recon - images))
    loss = xent + 0.1 * recon_loss + tf.losses.get_regularization_loss()

    # a warm-up factor computed by an (unrolled) while_loop: 1 - 0.5**3
    _, warm = tf.while_loop(lambda i, w: i < 3, lambda i, w: (i + 1, w * 0.5),
                            (tf.constant(0), tf.constant(1.0)))
    step = tf.train.get_or_create_global_step()
    train = tf.train.AdamOptimizer(FLAGS.lr * (1.0 - warm)).minimize(loss, global_step=step)
    accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, 1), labels), tf.float32))
    tf.summary.scalar("loss", loss)
    tf.summary.histogram("logits", logits)
    merged = tf.summary.merge_all()
    saver = tf.train.Saver()

    with tf.Session() as sess, tf.summary.FileWriter(FLAGS.logdir, sess.graph) as writer:
        sess.run(tf.global_variables_initializer())
        for epoch in range(FLAGS.epochs):
            sess.run(it.initializer)
            while True:
                try:
                    summ, _, s = sess.run([merged, train, step])
                except tf.errors.OutOfRangeError:
                    break
                writer.add_summary(summ, s)
            tf.logging.info("epoch %d done", epoch)
        path = saver.save(sess, FLAGS.logdir + "/model", global_step=step)
        acc = sess.run(accuracy, {images: x_test, labels: y_test})
        print("steps", sess.run(step), "accuracy", acc, "train", len(x_train), "checkpoint", path)
    return 0


if __name__ == "__main__":
    tf.app.run(main)
