"""``gc.contrib.rnn``: TF1's tf.contrib.rnn names, which are graphc's RNN cells and unrolling
functions (``gc.nn.rnn_cell``, ``gc.nn.static_rnn``...) under their contrib names.

A cell built here is the same class as ``gc.nn.rnn_cell``'s, with the same variables, so
``tf.contrib.rnn.BasicLSTMCell(32)`` computes exactly what ``tf.nn.rnn_cell.BasicLSTMCell(32)``
does. ``DropoutWrapper`` draws its masks with ``gc.nn.dropout``: fresh every run and every
time step, reproducible with ``seed`` (or the graph seed).

Example:
    >>> cell = gc.contrib.rnn.MultiRNNCell([gc.contrib.rnn.LSTMCell(32) for _ in range(2)])
    >>> outputs, state = gc.contrib.rnn.static_rnn(cell, gc.unstack(x, axis=1),
    ...                                             dtype=gc.float32)
"""
from ..ops.rnn import (BasicLSTMCell, BasicRNNCell, DropoutWrapper, GRUCell,  # noqa: F401
                       LSTMCell, LSTMStateTuple, MultiRNNCell, RNNCell, static_bidirectional_rnn,
                       static_rnn)
from .names import unsupported

__all__ = ["RNNCell", "BasicRNNCell", "BasicLSTMCell", "LSTMCell", "GRUCell", "MultiRNNCell",
           "LSTMStateTuple", "DropoutWrapper", "static_rnn", "static_bidirectional_rnn"]


def __getattr__(name):
    """Other tf.contrib.rnn names: say graphc lacks them and list what is here."""
    if name.startswith("__"):
        raise AttributeError(name)
    raise unsupported(__name__, name, __all__)
