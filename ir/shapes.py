"""Static shapes: tuples of ints, with None for a dim known only when the step is specialized.

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
    if shape is None:
        return "[?]"
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
    n = max(len(a), len(b))
    pa = (1,) * (n - len(a)) + tuple(a)
    pb = (1,) * (n - len(b)) + tuple(b)
    out = []
    for i, (x, y) in enumerate(zip(pa, pb)):
        if x == 1:
            out.append(y)
        elif y == 1 or x == y:
            out.append(x)
        elif x is None or y is None:
            out.append(x if y is None else y)
        else:
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
    n = 1
    for d in shape:
        if d is None:
            return None
        n *= d
    return n


def is_static(shape):
    return shape is not None and all(d is not None for d in shape)


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
        return tuple.__new__(cls, () if dims is None else dims)

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

    def __getitem__(self, i):
        if isinstance(i, slice):
            return TensorShape(tuple.__getitem__(self, i))
        return tuple.__getitem__(self, i)

    # repr stays a tuple's: code generators print shapes as Python literals.
    def __repr__(self):
        return repr(tuple(self))

    __str__ = __repr__
