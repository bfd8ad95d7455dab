"""What every step object does around one call of its step function: keep fed arrays apart
from the variables the step updates, and let calls from several threads take turns.

Steps update variables in place, so an array fed to a placeholder that shares memory with a
variable (``step(p=step.variables["W"])``, or a view of it) would be read after the update
began. TF1 reads the value from before the step; so do we, by copying just those feeds. An
array that owns its memory (``base is None``) and is not one of the variables cannot overlap
one, nor can a view of such an array (NumPy's views name the array owning the memory as their
``base``), so the common cases cost a set lookup or two per feed (``may_alias``).
"""
import threading
from operator import attrgetter

import numpy as np

__all__ = ["unalias", "state_ids", "may_alias", "takes_as_is", "step_lock"]


def unalias(args, state):
    """Replace each array in ``args`` (a list, changed in place) that shares memory with an
    array of ``state`` by a copy.

    Args:
        args: the fed values, in call order.
        state: the variable arrays the step may write.
    """
    ids = {id(s) for s in state}
    for i, a in enumerate(args):
        if id(a) in ids or (type(a) is np.ndarray and a.base is not None and
                            any(np.may_share_memory(a, s) for s in state)):
            args[i] = np.array(a)


def state_ids(state):
    """The ids ``may_alias`` takes: of the variable arrays ``state``, and of what each one
    that does not own its memory is a view of."""
    ids = set(map(id, state))  # (at C speed: a deep model has 1,110 variables)
    ids.update(map(id, map(_base, state)))
    ids.discard(id(None))  # (the base of an array that owns its memory)
    return frozenset(ids)


_base = attrgetter("base")


def may_alias(a, ids):
    """False when the ndarray ``a`` cannot share memory with the arrays of ``state_ids``: it
    is not one of them and it owns its memory, or is a view of an array that owns its memory
    and is not one of them or their owners; True otherwise (``unalias`` then looks closer).
    """
    if id(a) in ids:
        return True
    b = a.base
    return b is not None and (type(b) is not np.ndarray or b.base is not None or id(b) in ids)


def takes_as_is(a, dtype, shape):
    """Whether ``a`` is an ndarray of ``dtype`` and ``shape`` in C order: what a compiled step
    takes without a conversion. (The per-call fast paths check the same inline, with C
    order's strides instead of the flags; this is the check they fall back to.)"""
    return type(a) is np.ndarray and a.shape == shape \
        and (a.dtype is dtype or a.dtype == dtype) and a.flags.c_contiguous


def step_lock():
    """The lock of one compiled step: its arena, output buffers and random state belong to the
    step, so calls from several threads run one at a time (TF1's ``Session.run`` is
    thread-safe). A lock rather than one arena per thread: per-thread copies of a step would
    also copy its random generators, and two threads would draw the same dropout masks.
    """
    return threading.Lock()
