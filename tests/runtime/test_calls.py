"""``runtime.calls``: which fed arrays may share memory with a step's variables."""
import numpy as np

from graphc.runtime.calls import may_alias, state_ids, unalias


def test_may_alias_flags_every_array_that_can_share_a_variables_memory():
    w, b = np.zeros((4, 4)), np.zeros(8)[2:]  # b: a variable that is itself a view
    ids = state_ids([w, b])
    other = np.ones((4, 4))
    assert may_alias(w, ids) and may_alias(w[1:], ids) and may_alias(w.T, ids)
    assert may_alias(b, ids) and may_alias(b.base[:3], ids)  # the memory b is a view of
    assert may_alias(np.frombuffer(w, np.float64), ids)  # a base that is not an ndarray
    assert not may_alias(other, ids) and not may_alias(other[1:, ::2], ids)
    assert not may_alias(other.reshape(16)[3:], ids)


def test_unalias_copies_exactly_the_overlapping_feeds():
    w = np.arange(6.0)
    keep, view, other_view = np.ones(3), w[2:5], np.ones(9)[::3]
    args = [keep, view, other_view, w]
    unalias(args, [w])
    assert args[0] is keep and args[2] is other_view
    assert args[1] is not view and not np.shares_memory(args[1], w)
    np.testing.assert_array_equal(args[1], view)
    assert args[3] is not w and np.array_equal(args[3], w)
