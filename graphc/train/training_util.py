"""The step counter: ``get_or_create_global_step``, ``get_global_step``, ``global_step``
(TF1's training_util)."""
import numpy as np

from ..framework.graph import Variable
from ..ir.graph import get_default_graph


def global_step(sess, global_step_tensor):
    """The step counter's current value as a Python int (TF1's ``tf.train.global_step``).

    Example:
        >>> print("step", gc.train.global_step(sess, step))
    """
    return int(sess.run(global_step_tensor))


def get_global_step(graph=None):
    steps = (graph or get_default_graph()).get_collection("global_step")
    return steps[0] if steps else None


def get_or_create_global_step(graph=None):
    """The graph's int64 step counter, created (at 0) on first use."""
    step = get_global_step(graph)
    if step is None:
        step = Variable(np.array(0, np.int64), trainable=False, name="global_step",
                        collections=["global_step"])
    return step


create_global_step = get_or_create_global_step
