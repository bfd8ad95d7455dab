"""Run-time data errors of a step, and the state a failed step puts back.

Both backends check every index a step reads at run time (sparse labels, gather and
scatter indices, segment ids, gather_nd / scatter_nd coordinates). A bad one stops the step
and raises ``InvalidArgumentError`` with ONE message, built here whichever backend found it,
and whether the step was compiled in this process or loaded from a file:

    sparse_softmax_xent 'loss/xent': label -1 at [3] is outside [0, 10)
      at model.py:12    loss = gc.nn.sparse_softmax_cross_entropy_with_logits(...)

``IndexCheck`` describes one checked input (plain data, saved with a step); ``Snapshot``
copies the variables a step may write before it fails and copies them back when it does
(``ir.rollback`` decides which).

This module imports only numpy and graphc.errors: saved steps run without the compiler.
"""
import numpy as np

from graphc.errors import InvalidArgumentError

__all__ = ["IndexCheck", "index_error", "first_out_of_range", "Snapshot"]

_HINT = ("feed indices inside the range, or clip them with gc.clip_by_value; the step stopped "
         "before it changed any variable")


class IndexCheck:
    """One run-time index check: what a failure message needs besides the bad value.

    Attributes:
        label: the node, ``op 'name'``.
        what: "label", "index", "segment id".
        shape: the shape of the checked index tensor (positions are reported in it).
        bound: the exclusive upper bound, an int or one per entry of the last axis.
        loc: the user's source location (an object with ``format()``, or text), or None.
    """

    def __init__(self, label, what, shape, bound, loc=None):
        self.label, self.what, self.shape, self.bound = label, what, tuple(shape), bound
        self.loc = loc

    def to_json(self):
        loc = self.loc if self.loc is None or isinstance(self.loc, str) else self.loc.format()
        bound = list(self.bound) if isinstance(self.bound, tuple) else self.bound
        return [self.label, self.what, list(self.shape), bound, loc]

    @classmethod
    def from_json(cls, data):
        label, what, shape, bound, loc = data
        return cls(label, what, shape, tuple(bound) if isinstance(bound, list) else bound,
                   loc)

    def error(self, value, position):
        """The InvalidArgumentError for ``value`` found at flat ``position``."""
        return index_error(self, value, position)


class _Text:
    def __init__(self, text):
        self.text = text

    def format(self):
        return self.text


def index_error(check, value, position):
    """``label: what value at [i, j] is outside [0, n)``, with the user's line and a hint."""
    shape = check.shape
    at = [int(i) for i in np.unravel_index(int(position), shape)] if shape else []
    bound = check.bound
    if isinstance(bound, tuple):
        bound = bound[at[-1]] if at else bound[0]
    loc = check.loc
    if isinstance(loc, str):
        loc = _Text(loc)
    return InvalidArgumentError(
        f"{check.label}: {check.what} {int(value)} at {at} is outside [0, {int(bound)})",
        loc=loc, hint=_HINT)


def first_out_of_range(indices, bound):
    """(flat position, value) of the first index outside [0, bound), or None."""
    idx = np.asarray(indices)
    bad = np.flatnonzero((idx < 0) | (idx >= np.asarray(bound, dtype=np.int64)))
    if not bad.size:
        return None
    return int(bad[0]), int(idx.reshape(-1)[bad[0]])


class Snapshot:
    """Saves the arrays at ``positions`` of a step's arguments before a call and restores
    them when the call raises: a failed step leaves its variables as they were.

    Example:
        >>> guard = Snapshot([3, 4])            # the step's 4th and 5th arguments
        >>> saved = guard.save(args)
        >>> try: run(*args)
        ... except BaseException: guard.restore(args, saved); raise
    """

    def __init__(self, positions):
        self.positions = tuple(int(p) for p in positions)

    def __bool__(self):
        return bool(self.positions)

    def save(self, args):
        return [np.array(args[p], copy=True) for p in self.positions]

    def restore(self, args, saved):
        for p, old in zip(self.positions, saved):
            a = args[p]
            if isinstance(a, np.ndarray) and a.flags.writeable and a.shape == old.shape:
                np.copyto(a, old, casting="unsafe")
