"""``gc.contrib``: the few ``tf.contrib`` names TF1 scripts use most, as aliases of graphc's
own layers, initializers, regularizers and RNN cells.

Only ``contrib.layers`` and ``contrib.rnn`` exist; any other ``tf.contrib.<name>`` (slim,
learn, seq2seq, ...) is an AttributeError naming it and saying what graphc's contrib covers.

Example:
    >>> import graphc as tf
    >>> h = tf.contrib.layers.fully_connected(x, 128)           # ReLU by default
    >>> cell = tf.contrib.rnn.BasicLSTMCell(32)
"""
COVERED = "graphc's contrib covers only contrib.layers and contrib.rnn"


def unsupported(module, name, names):
    """The AttributeError for ``module.name``: what is missing and what the module has.

    Args:
        module: the module's dotted name (``graphc.contrib.layers``).
        name: the attribute asked for.
        names: the public names the module provides.
    Returns:
        an AttributeError (raise it).
    Example:
        >>> raise unsupported(__name__, name, __all__)
    """
    tf_name = "tf." + module.split(".", 1)[1]
    return AttributeError(f"module {module!r} has no attribute {name!r}: graphc does not have "
                          f"{tf_name}.{name}; {COVERED}, and {tf_name} has only: "
                          f"{', '.join(sorted(names))}")


def __getattr__(name):
    """``tf.contrib.slim``, ``tf.contrib.learn``, ... : say graphc's contrib lacks them."""
    if name.startswith("__"):  # keep Python's protocol probes (copy, pickle) quiet
        raise AttributeError(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}: graphc does not have "
                         f"tf.contrib.{name}; {COVERED} (gc.layers, gc.losses, gc.nn and "
                         "gc.train cover the rest of what TF1 scripts use)")


# After the helpers above: the submodules build their errors with ``unsupported``.
from . import layers, rnn  # noqa: E402,F401

__all__ = ["layers", "rnn"]
