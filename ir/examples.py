"""How ops carry an axis of independent examples: the rules ``ir.passes.split`` reads.

A training step usually computes the same thing for every example of its batch and sums over
them only at a few places (the loss's mean, every weight gradient). Such a step can run as
several steps over parts of the batch, on several cores at once, with the sums added after:
that is data parallelism inside one step. Whether a node allows it is a property of its op
(``OpDef.examples``), answered for one node as a list of entries ``(input position, axis of
that input, what becomes of it)``:

- an int: the output axis the input axis becomes, element for element: output row ``i``
  along it depends only on row ``i`` of that input along its axis (a *tie*);
- "sum", "mean", "max" or "min": the op reduces the input axis that way, and has no output
  axis for it (the partial results of the parts combine by the same reduction).

An input axis the rule does not name is neither: the op mixes its rows (a slice picking some
rows, a cumulative sum, a softmax over it), so a step whose examples lie along it cannot be
split there. Ops without a rule (``examples=None``) carry no example axis at all.

The generic rules of elementwise ops (broadcasting, right-aligned) and of reductions (their
``reduce`` kind over ``axis``) are here; other ops declare theirs with helpers from here.
``OpDef.example_attrs`` gives the attributes of a node when its output's example axis has
another size (a reshape's target shape names the batch).
"""
from .shapes import normalize_axes

KINDS = ("sum", "mean", "max", "min")


def elementwise(node):
    """Broadcasting ops: each input axis of the output's size ties to the output axis it
    aligns with (right-aligned); a broadcast axis of size 1 carries no examples."""
    out = node.shape
    if out is None:
        return []
    rank = len(out)
    entries = []
    for i, x in enumerate(node.inputs):
        if x.shape is None or len(x.shape) > rank:
            continue
        lead = rank - len(x.shape)
        entries += [(i, k, k + lead) for k, d in enumerate(x.shape) if d == out[k + lead]]
    return entries


def reduction(node):
    """``reduce_<kind>(x, axis, keepdims)``: reduced axes reduce, the others tie."""
    x = node.inputs[0]
    if x.shape is None:
        return []
    kind = node.opdef.reduce
    axis = node.attrs.get("axis")
    rank = len(x.shape)
    reduced = set(range(rank)) if axis is None else set(normalize_axes(axis, rank))
    keep = node.attrs.get("keepdims", False)
    entries, j = [], 0
    for k in range(rank):
        if k in reduced:
            entries.append((0, k, kind))
            if keep:
                j += 1
        else:
            entries.append((0, k, j))
            j += 1
    return entries


def same_shape(positions=(0,)):
    """A rule tying every axis of the inputs at ``positions`` to the same output axis (ops
    whose output is shaped like those inputs and computed row by row on every axis)."""
    def rule(node):
        return [(i, k, k) for i in positions if node.inputs[i].shape is not None
                for k in range(len(node.inputs[i].shape))]
    return rule


def leading(count, positions=(0,)):
    """A rule tying the first ``count`` axes of the inputs at ``positions`` to the output's
    first axes (``count`` 1: an NHWC image op and its batch axis; a loss over rows)."""
    def rule(node):
        return [(i, k, k) for i in positions for k in range(count)]
    return rule


def reshaped(node):
    """A C-order reshape keeps an input axis as output axis j when the elements before both
    are as many and the axes are as long: the element's index along it is unchanged."""
    x, out = node.inputs[0].shape, node.shape
    if x is None or out is None:
        return []
    before, positions = 1, {}
    for k, d in enumerate(x):
        positions.setdefault((before, d), k)
        before *= d
    entries, before = [], 1
    for j, d in enumerate(out):
        k = positions.get((before, d))
        if k is not None:
            entries.append((0, k, j))
        before *= d
    return entries


def shape_attr(node, axis, size):
    """The attributes of a node whose ``shape`` attribute names its output's dims, when its
    output's example ``axis`` has ``size`` elements (an entry of -1 stays -1)."""
    attrs = dict(node.attrs)
    shape = list(attrs["shape"])
    if shape[axis] != -1:
        shape[axis] = size
    attrs["shape"] = tuple(shape)
    return attrs


def combine(entries, i, axis):
    """What the rule ``entries`` does with axis ``axis`` of input ``i``: an output axis, a
    reduction kind, or None (it mixes the rows)."""
    for j, k, out in entries:
        if j == i and k == axis:
            return out
    return None


__all__ = ["KINDS", "elementwise", "reduction", "same_shape", "leading", "reshaped",
           "shape_attr", "combine"]
