"""``gc.einsum``: TF1's Einstein summation, built from existing graph ops.

An equation is contracted operand by operand, left to right. Each pairwise step sums away the
indices no later term needs, then lines both operands up as ``[batch, free, contracted]`` and
``[batch, contracted, free]`` (transpose + reshape) and multiplies them with one batched
``matmul``; the result is reshaped back to one axis per index. So gradients (of any order)
and both backends come from ops graphc already has: no einsum kernel, no einsum VJP.

Supported: explicit (``ij,jk->ik``) and implicit (``ij,jk``: the indices seen once, sorted)
outputs, any number of operands, ``...`` for leading broadcast dims (a size-1 dim on one side
broadcasts against the other). Refused with a clear error: an index repeated within one
operand or within the output (traces, diagonals), an output index no operand has, sizes that
disagree.
"""
import string

from ..errors import GraphError, ShapeError
from ..ir.ops import apply, convert
from ..ir.shapes import num_elements
from ..ir.source import user_location

__all__ = ["einsum"]

_ELLIPSIS = "..."


def einsum(equation, *inputs, name=None, **unused):
    """Einstein summation over ``inputs`` as ``equation`` describes.

    Args:
        equation: e.g. ``"ij,jk->ik"``, ``"bqd,bkd->bqk"``, ``"ij->ji"``, ``"ij->"``, or
            implicit ``"ij,jk"``; ``...`` stands for leading broadcast dims.
        *inputs: one tensor per comma-separated term, all of one dtype.
        name: name of the result node.
    Returns:
        The tensor with one axis per output index, in the output's order.
    Raises:
        GraphError: a malformed equation, a repeated index in one term (traces and
            diagonals are not supported), an output index no input has, or the wrong
            number of inputs; the message quotes the equation and the user's line.
        ShapeError: an index whose sizes differ between operands.
    Example:
        >>> scores = gc.einsum("bqd,bkd->bqk", q, k)   # attention logits
    """
    if len(inputs) == 1 and isinstance(inputs[0], (list, tuple)):
        inputs = tuple(inputs[0])  # einsum(eq, [a, b]) as TF1 also accepts
    eq = _Equation(equation, [convert(x) for x in inputs])
    terms = list(zip(eq.nodes, eq.terms))
    x, letters = terms[0]
    for i, (y, ylet) in enumerate(terms[1:], start=1):
        later = set(eq.output).union(*[t for _, t in terms[i + 1:]])
        x, letters = _contract(x, letters, y, ylet, later)
    x, letters = _sum_out(x, letters, set(eq.output))
    if letters != eq.output:
        x = apply("transpose", [x], {"perm": tuple(letters.index(c) for c in eq.output)})
    return apply("identity", [x], name=name or "einsum")


class _Equation:
    """A parsed, checked equation: ``terms`` (one string of indices per input, ``...``
    expanded to fresh letters) and ``output``, with the static size of every index."""

    def __init__(self, equation, nodes):
        self.text, self.nodes = str(equation), nodes
        spec = self.text.replace(" ", "")
        lhs, arrow, out = spec.partition("->")
        raw = lhs.split(",")
        if len(raw) != len(nodes):
            self.fail(f"{len(raw)} input terms but {len(nodes)} tensors were passed")
        used = set(spec) - set(",->.")
        bad = sorted(c for c in used if c not in string.ascii_letters)
        if bad:
            self.fail(f"indices must be letters, found {bad!r}")
        fresh = [c for c in string.ascii_letters if c not in used]
        ell = [self._ellipsis_rank(t, n) for t, n in zip(raw, nodes)]
        self.ell = fresh[:max(ell, default=0)]
        self.terms = [self._expand(t, k) for t, k in zip(raw, ell)]
        for i, t in enumerate(self.terms):
            self._unique(t, f"input term {i} ('{raw[i]}')")
        if arrow:
            self.output = self._expand(out, len(self.ell))
            self._unique(self.output, "the output")
        else:
            once = sorted(c for c in set("".join(self.terms)) - set(self.ell)
                          if "".join(self.terms).count(c) == 1)
            self.output = "".join(self.ell) + "".join(once)
        missing = [c for c in self.output if not any(c in t for t in self.terms)]
        if missing:
            self.fail(f"output index {missing[0]!r} appears in no input term")
        self._broadcast_sizes()

    def fail(self, message, cls=GraphError, hint=None):
        raise cls(f"einsum: {message} in equation '{self.text}'", loc=user_location(),
                  hint=hint)

    def _ellipsis_rank(self, term, node):
        dots = term.count(_ELLIPSIS)
        if dots > 1 or term.replace(_ELLIPSIS, "").count(".") or \
                (not dots and "." in term):
            self.fail(f"bad ellipsis in term '{term}'")
        named = len(term) - 3 * dots
        if node.rank < named or (not dots and node.rank != named):
            self.fail(f"term '{term}' has {named} indices but '{node.node_name}' is "
                      f"{node.type_str()}", cls=ShapeError)
        return node.rank - named

    def _expand(self, term, rank):
        if _ELLIPSIS not in term:  # an explicit output without '...' sums those dims away
            return term
        # ellipsis dims align on the right, as NumPy broadcasting does
        return term.replace(_ELLIPSIS, "".join(self.ell[len(self.ell) - rank:]))

    def _unique(self, term, what):
        for c in term:
            if term.count(c) > 1:
                self.fail(f"index {c!r} repeats in {what}",
                          hint="traces and diagonals are not supported: take them with "
                               "explicit ops (e.g. a mask multiply and reduce_sum)")

    def _broadcast_sizes(self):
        """Check every index has one size; a size-1 broadcast dim against a larger one is
        summed away (squeezed) from the operand that has it."""
        for c in set("".join(self.terms)):
            seen = [(i, n.shape[t.index(c)]) for i, (n, t) in
                    enumerate(zip(self.nodes, self.terms)) if c in t]
            known = {s for _, s in seen if s is not None}
            if len(known) <= 1:
                continue
            if c not in self.ell or len(known - {1}) > 1:
                self.fail(f"index {c!r} has sizes {sorted(known)} in different operands",
                          cls=ShapeError)
            for i, s in seen:
                if s == 1:
                    t = self.terms[i]
                    self.nodes[i] = apply("squeeze", [self.nodes[i]],
                                          {"axis": (t.index(c),)})
                    self.terms[i] = t.replace(c, "")


def _sum_out(x, letters, keep):
    """Sum ``x`` over the indices not in ``keep``; returns (tensor, remaining letters)."""
    axes = tuple(i for i, c in enumerate(letters) if c not in keep)
    if not axes:
        return x, letters
    x = apply("reduce_sum", [x], {"axis": axes, "keepdims": False})
    return x, "".join(c for c in letters if c in keep)


def _contract(x, xl, y, yl, later):
    """One pairwise step: ``x`` (indices ``xl``) times ``y``, keeping the indices in
    ``later``; returns (tensor, its letters: batch, then x's free, then y's free)."""
    x, xl = _sum_out(x, xl, later | set(yl))
    y, yl = _sum_out(y, yl, later | set(xl))
    batch = [c for c in xl if c in yl and c in later]
    contracted = [c for c in xl if c in yl and c not in later]
    xfree = [c for c in xl if c not in yl]
    yfree = [c for c in yl if c not in xl]
    size = _sizes((x, xl), (y, yl))
    a = _group(x, xl, [batch, xfree, contracted], size)
    b = _group(y, yl, [batch, contracted, yfree], size)
    out = apply("matmul", [a, b], {"transpose_a": False, "transpose_b": False})
    letters = "".join(batch + xfree + yfree)
    return _reshape(out, [size[c] for c in letters]), letters


def _sizes(*pairs):
    size = {}
    for node, letters in pairs:
        for c, d in zip(letters, node.shape):
            if size.get(c) is None:
                size[c] = d
    return size


def _group(x, letters, groups, size):
    """``x`` transposed to the order of ``groups`` and reshaped to one axis per group after
    the first (batch) group, whose axes stay: ``[*batch, prod(g1), prod(g2)]``."""
    order = [c for g in groups for c in g]
    if order != list(letters):
        x = apply("transpose", [x], {"perm": tuple(letters.index(c) for c in order)})
    target = [size[c] for c in groups[0]] + [num_elements([size[c] for c in g])
                                              for g in groups[1:]]
    if all(len(g) == 1 for g in groups[1:]):
        return x
    return _reshape(x, target)


def _reshape(x, dims):
    """Reshape to ``dims`` (None: an unknown size, at most one); a no-op when the shapes
    already agree axis for axis (an unknown one then stands for the same index)."""
    if list(x.shape) == list(dims):
        return x
    if sum(d is None for d in dims) > 1:
        raise GraphError(f"einsum: cannot regroup {x.type_str()} to {dims}: more than one "
                         "unknown dimension", loc=user_location(),
                         hint="give the placeholders static sizes for the merged indices")
    return apply("reshape", [x], {"shape": tuple(-1 if d is None else int(d) for d in dims)})
