"""Backpropagation through time: an RNN that must remember, trained with full and
truncated BPTT.

The task is an echo with a delay: the input is a stream of random bits and the target at
time t is the input at time t - DELAY, so the network has to hold the last DELAY bits in its
state. ``gc.nn.dynamic_rnn`` runs a ``BasicRNNCell`` (tanh) in a loop over the time steps with
ONE set of weights (one loop node: the compiled step holds a real loop, whatever the length);
its adjoint is a loop backwards in time over the saved states that sums each weight's
contributions from every step: backpropagation through time.

- Full BPTT: independent sequences of SEQ_LEN steps, the state starts at zero, the gradient
  flows through every step.
- Truncated BPTT: one long stream per batch row, cut into windows of WINDOW steps. The state
  is carried from window to window in a non-trainable variable (assigned the final state in
  the same compiled step as the update), and the gradient stops at the window's edge
  (``gc.stop_gradient``). The forward pass still sees the whole past; the backward pass only
  WINDOW steps, so each step costs the same however long the stream is.

  The price: a dependency longer than the window gets no gradient. With windows of 10 the
  echo (8 steps back) is learned; with windows of 2 the bit to recall is never inside the
  window that is differentiated, and accuracy stays near chance.

Accuracy is measured on steps whose target exists (t >= DELAY in a fresh sequence).

    python examples/rnn_bptt.py [--steps 600] [--quick]
"""
import argparse

import numpy as np

import graphc as gc

DELAY, UNITS, SEQ_LEN, WINDOW, SHORT_WINDOW, BATCH = 8, 24, 256, 10, 2, 32


class EchoRNN:
    """A BasicRNNCell (tanh) and a linear read-out to 2 classes; calls share the weights."""

    def __init__(self):
        self.cell = gc.nn.rnn_cell.BasicRNNCell(UNITS)
        with gc.name_scope("readout"):
            self.W = gc.Variable(gc.initializers.glorot_uniform(seed=7)([UNITS, 2]), name="W")
            self.b = gc.Variable(gc.zeros([2]), name="b")

    def __call__(self, bits, initial_state=None):
        """[batch, T] bits -> ([batch, T, 2] logits, final state): one loop over time."""
        outputs, state = gc.nn.dynamic_rnn(self.cell, gc.expand_dims(bits, 2),
                                           initial_state=initial_state, dtype=gc.float32)
        logits = gc.matmul(gc.reshape(outputs, [-1, UNITS]), self.W) + self.b
        return gc.reshape(logits, [-1, bits.shape[1], 2]), state


def echo_loss(logits, targets, first):
    """Mean cross-entropy and accuracy over the steps t >= first."""
    logits, targets = logits[:, first:], targets[:, first:]
    loss = gc.reduce_mean(gc.nn.sparse_softmax_cross_entropy_with_logits(
        labels=targets, logits=logits))
    hits = gc.cast(gc.equal(gc.argmax(logits, 2), targets), gc.float32)
    return loss, gc.reduce_mean(hits)


def full_bptt(steps, rng):
    """Train on independent sequences; returns the accuracy on fresh sequences."""
    g = gc.Graph()
    with g.as_default():
        gc.set_random_seed(0)
        bits = gc.placeholder(gc.float32, [None, SEQ_LEN], name="bits")
        targets = gc.placeholder(gc.int64, [None, SEQ_LEN], name="targets")
        logits, _ = EchoRNN()(bits)
        loss, accuracy = echo_loss(logits, targets, DELAY)
        train = gc.train.AdamOptimizer(0.01).minimize(loss)
        with gc.Session() as sess:
            sess.run(gc.global_variables_initializer())
            for step in range(steps):
                x, y = echo_batch(rng, BATCH, SEQ_LEN)
                value, _ = sess.run([loss, train], {bits: x, targets: y})
                if step % max(1, steps // 4) == 0:
                    print(f"  [full BPTT, {SEQ_LEN} steps] step {step:4d}  loss {value:.4f}")
            x, y = echo_batch(rng, 256, SEQ_LEN)
            return float(sess.run(accuracy, {bits: x, targets: y}))


def truncated_bptt(steps, rng, window):
    """Train on ``window``-step windows of long streams; returns accuracy on fresh sequences."""
    g = gc.Graph()
    with g.as_default():
        gc.set_random_seed(0)
        bits = gc.placeholder(gc.float32, [BATCH, window], name="bits")
        targets = gc.placeholder(gc.int64, [BATCH, window], name="targets")
        carried = gc.Variable(np.zeros((BATCH, UNITS), np.float32), trainable=False,
                              name="carried_state")
        model = EchoRNN()
        logits, final = model(bits, initial_state=gc.stop_gradient(carried))
        loss, _ = echo_loss(logits, targets, 0)  # targets reach into earlier windows
        update = gc.train.AdamOptimizer(0.01).minimize(loss)
        train = gc.group(update, gc.assign(carried, final))
        # evaluation: the same weights on fresh sequences that start from a zero state
        eval_bits = gc.placeholder(gc.float32, [None, SEQ_LEN], name="eval_bits")
        eval_targets = gc.placeholder(gc.int64, [None, SEQ_LEN], name="eval_targets")
        _, accuracy = echo_loss(model(eval_bits)[0], eval_targets, DELAY)
        stream = np.zeros((BATCH, DELAY), np.float32)  # the stream's last DELAY bits
        with gc.Session() as sess:
            sess.run(gc.global_variables_initializer())
            for step in range(steps):
                new = rng.integers(0, 2, (BATCH, window)).astype(np.float32)
                history = np.concatenate([stream, new], axis=1)
                y = history[:, :window].astype(np.int64)  # bit t - DELAY of the stream
                value, _ = sess.run([loss, train], {bits: new, targets: y})
                stream = history[:, -DELAY:]
                if step % max(1, steps // 4) == 0:
                    print(f"  [truncated BPTT, windows of {window}] step {step:4d}  "
                          f"loss {value:.4f}")
            x, y = echo_batch(rng, 256, SEQ_LEN)
            return float(sess.run(accuracy, {eval_bits: x, eval_targets: y}))


def echo_batch(rng, batch, length):
    x = rng.integers(0, 2, (batch, length))
    y = np.zeros_like(x)
    y[:, DELAY:] = x[:, :-DELAY]
    return x.astype(np.float32), y.astype(np.int64)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600, help="training steps of each run")
    parser.add_argument("--quick", action="store_true", help="a short run (150 steps)")
    args = parser.parse_args(argv)
    steps = 150 if args.quick else args.steps
    rng = np.random.default_rng(0)
    full = full_bptt(steps, rng)
    print(f"full BPTT: echo accuracy {full:.4f} (chance 0.5)")
    results = {"full": full}
    for window in (WINDOW, SHORT_WINDOW):
        acc = truncated_bptt(steps, rng, window)
        print(f"truncated BPTT, windows of {window}: echo accuracy {acc:.4f} (chance 0.5)")
        results[window] = acc
    return results


if __name__ == "__main__":
    main()
