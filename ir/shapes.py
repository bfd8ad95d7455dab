"""Shapes as the graph builder knows them: partial until the step is specialized.

Representation (``Node.shape``):
- a tuple of ints, with None for a dim known only when the step is specialized
  (``placeholder(f32, [None, 784])`` is ``(None, 784)``);
- ``None`` itself for an *unknown rank*: a value node whose number of dims is known only when
  the step is specialized (``placeholder("float")``, and what ops compute from it). A node
  without a value (``group``) has ``dtype`` None as well; an unknown-rank node has a dtype.
  ``format_shape`` prints an unknown rank as ``[...]``; ``TensorShape(None)`` (what
  ``get_shape()`` answers for it) has ``ndims`` None, as in TF1.

Shape rules see known ranks only: an op applied to an unknown-rank input runs its rule on
stand-ins of every rank up to ``PROBE_RANKS`` (``unknown_rank_infer``) and keeps what all the
ranks that fit agree on; ``specialize`` runs the rule again on the concrete shapes, where a
mismatch is a ShapeError at the user's line.

Shape rules raise ``RuleError`` (message, details, hint); the node builder turns it into a
ShapeError or DTypeError that names the op, the node and the user's line.
"""


class RuleError(Exception):
    """Raised by shape/dtype rules; ``kind`` is "shape", "dtype" or "argument" (a value
    the op cannot take, as an argmax over an empty axis: InvalidArgumentError)."""

    def __init__(self, message, details=(), hint=None, kind="shape"):
        super().__init__(message)
        self.message, self.details, self.hint, self.kind = message, tuple(details), hint, kind


def format_shape(shape):
    """``[?,784]`` for ``(None, 784)``, ``[...]`` for an unknown rank."""
    if shape is None:
        return "[...]"
    return "[" + ",".join("?" if d is None else str(d) for d in shape) + "]"


def normalize_shape(shape):
    """Turn a user shape (list, tuple, int, None dims, TensorShape) into a tuple."""
    if shape is None:
        return None
    if isinstance(shape, TensorShape):
        return shape.dims
    if isinstance(shape, int):
        return (shape,)
    out = []
    for d in shape:
        if d is None:
            out.append(None)
        elif isinstance(d, TensorShape) or hasattr(d, "value"):
            out.append(getattr(d, "value", None))
        else:
            d = int(d)
            if d < 0:
                raise RuleError(f"negative dimension {d} in shape {list(shape)}")
            out.append(d)
    return tuple(out)


def broadcast_shapes(a, b):
    """NumPy broadcasting of two partial shapes.

    Raises:
        RuleError: naming the first axis (counted from the end) whose sizes disagree.
    """
    if a == b:  # (the common cases first: equal shapes, or one the trailing dims of the other)
        return tuple(a)
    la, lb = len(a), len(b)  # (len: None, an unknown rank, is a TypeError as below)
    if lb < la and tuple(a)[la - lb:] == tuple(b):  # b a scalar or a's trailing dims (a bias)
        return tuple(a)
    if la < lb and tuple(b)[lb - la:] == tuple(a):
        return tuple(b)
    n = max(la, lb)
    pa = (1,) * (n - len(a)) + tuple(a)
    pb = (1,) * (n - len(b)) + tuple(b)
    out = []
    for x, y in zip(pa, pb):
        if x == 1:
            out.append(y)
        elif y == 1 or x == y:
            out.append(x)
        elif x is None or y is None:
            out.append(x if y is None else y)
        else:
            i = len(out)
            raise RuleError(f"cannot broadcast {format_shape(a)} with {format_shape(b)}",
                            [f"axis {i - n}: {x} vs {y}"],
                            "trailing dimensions must match or be 1")
    return tuple(out)


def normalize_axis(axis, rank, what="axis"):
    """One axis in [-rank, rank) to [0, rank)."""
    if not -rank <= axis < max(rank, 1):
        raise RuleError(f"{what} {axis} is out of range for rank {rank}")
    return axis % rank if rank else 0


def normalize_axes(axis, rank):
    """None (all axes), an int or a list to a sorted tuple of distinct non-negative axes."""
    if axis is None:
        return tuple(range(rank))
    if isinstance(axis, int):
        axis = [axis]
    axes = sorted({normalize_axis(int(a), rank) for a in axis})
    return tuple(axes)


def num_elements(shape):
    if shape is None:
        return None
    n = 1
    for d in shape:
        if d is None:
            return None
        n *= d
    return n


def compatible(a, b):
    """Whether shapes ``a`` and ``b`` (tuples with None for unknown dims; None or an
    ``UnknownShape`` for an unknown rank) can be the same shape once the step is fed: TF1's
    ``TensorShape.is_compatible_with``."""
    if a is None or b is None or isinstance(a, UnknownShape) or isinstance(b, UnknownShape):
        return True
    return len(a) == len(b) and all(x is None or y is None or x == y for x, y in zip(a, b))


def is_static(shape):
    return shape is not None and all(d is not None for d in shape)


# ranks tried for an unknown-rank input (0-D to 6-D: every op's rule accepts one of them)
PROBE_RANKS = range(7)


def unknown_rank_infer(rule, nodes, attrs, stand_in):
    """Run shape rule ``rule`` with unknown-rank inputs stood in for by each rank in turn.

    Args:
        rule: the op's rule, ``rule(nodes, **attrs) -> (dtype, shape)``.
        nodes: its inputs; those with a dtype and shape None have an unknown rank.
        attrs: its attributes.
        stand_in: ``stand_in(node, rank)``, a node like ``node`` of shape ``(None,) * rank``.
    Returns:
        (dtype, shape): the shape the ranks that fit agree on: () when each gives (), a
        partial shape when each gives the same rank (dims that differ become None), else None
        (an unknown rank).
    Raises:
        RuleError: no rank fits (a dtype error is reported first: it holds for every rank).
    Example:
        >>> unknown_rank_infer(reduce_rule, [x], {"axis": None}, stand_in)   # x: f32[...]
        (float32, ())
    """
    found, errors = [], []
    for r in PROBE_RANKS:
        probe = [stand_in(n, r) if n.dtype is not None and n.shape is None else n
                 for n in nodes]
        try:
            found.append(rule(probe, **attrs))
        except RuleError as e:
            errors.append(e)
        except Exception:  # noqa: BLE001  (a rank the rule cannot take at all)
            continue
    if not found:
        dtype_errors = [e for e in errors if e.kind == "dtype"]
        if dtype_errors:
            raise dtype_errors[0]
        unknown = [n.node_name for n in nodes if n.dtype is not None and n.shape is None]
        raise RuleError(f"no rank of {', '.join(repr(u) for u in unknown)} (unknown when the "
                        "graph is built) fits this op",
                        [errors[-1].message] if errors else (),
                        "give the placeholder a shape (None for dims that vary)")
    dtype = found[0][0]
    shapes = [s for _, s in found]
    if any(s is None for s in shapes) or len({len(s) for s in shapes}) != 1:
        return dtype, None
    return dtype, tuple(d[0] if len(set(d)) == 1 else None for d in zip(*shapes))


class Dimension:
    """TF1's Dimension: ``.value`` is the int or None."""

    def __init__(self, value):
        self.value = value

    def __int__(self):
        return self.value

    __index__ = __int__

    def __eq__(self, other):
        return self.value == getattr(other, "value", other)

    def __hash__(self):
        return hash(self.value)

    def __repr__(self):
        return f"Dimension({self.value})"


class TensorShape(tuple):
    """TF1's TensorShape: a tuple of ints (None for unknown dims) that also answers TF1's
    ``as_list()``, ``ndims``, ``num_elements()``, ``is_fully_defined()``. Nodes' shapes are
    TensorShapes, so ``x.shape.as_list()`` and ``x.shape[0]`` both work."""

    __slots__ = ()

    def __new__(cls, dims=()):
        if dims is None:
            return tuple.__new__(UnknownShape, ())
        return tuple.__new__(cls, dims)

    @property
    def dims(self):
        return tuple(self)

    def as_list(self):
        return list(self)

    @property
    def ndims(self):
        return len(self)

    rank = ndims

    def num_elements(self):
        return num_elements(self)

    def is_fully_defined(self):
        return is_static(self)

    def is_compatible_with(self, other):
        """TF1's: whether this shape and ``other`` (a TensorShape, a list or tuple of ints
        and None) can be the same once their unknown dims are known."""
        return compatible(self, other if other is None or isinstance(other, tuple)
                          else tuple(other))

    def __getitem__(self, i):
        if isinstance(i, slice):
            return TensorShape(tuple.__getitem__(self, i))
        return tuple.__getitem__(self, i)

    # repr stays a tuple's: code generators print shapes as Python literals.
    def __repr__(self):
        return repr(tuple(self))

    __str__ = __repr__


class UnknownShape(TensorShape):
    """TF1's ``TensorShape(None)``: a shape whose rank is not known when the graph is built
    (``placeholder("float").get_shape()``)."""

    __slots__ = ()

    @property
    def dims(self):
        return None

    def as_list(self):
        raise ValueError("as_list() is not defined on an unknown TensorShape.")

    @property
    def ndims(self):
        return None

    rank = ndims

    def num_elements(self):
        return None

    def is_fully_defined(self):
        return False

    def __eq__(self, other):
        return isinstance(other, UnknownShape)

    def __ne__(self, other):
        return not self == other

    __hash__ = tuple.__hash__

    def __repr__(self):
        return "TensorShape(None)"

    __str__ = __repr__
