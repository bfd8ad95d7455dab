"""``gc.contrib``: the few ``tf.contrib`` names TF1 scripts use most, as aliases of graphc's
own layers, initializers, regularizers and RNN cells.

Only ``contrib.layers`` and ``contrib.rnn`` exist; any other ``tf.contrib.<name>`` (slim,
learn, seq2seq, ...) is an AttributeError naming it and saying what graphc's contrib covers.

Example:
    >>> import graphc as tf
    >>> h = tf.contrib.layers.fully_connected(x, 128)           # ReLU by default
    >>> cell = tf.contrib.rnn.BasicLSTMCell(32)
"""
from .names import COVERED


def __getattr__(name):
    """``tf.contrib.slim``, ``tf.contrib.learn``, ... : say graphc's contrib lacks them."""
    if name.startswith("__"):  # keep Python's protocol probes (copy, pickle) quiet
        raise AttributeError(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}: graphc does not have "
                         f"tf.contrib.{name}; {COVERED} (gc.layers, gc.losses, gc.nn and "
                         "gc.train cover the rest of what TF1 scripts use)")


from . import layers, rnn  # noqa: E402,F401

__all__ = ["layers", "rnn"]
