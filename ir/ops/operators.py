"""Python operators on nodes (``x + y``, ``a @ b``, ``x[:, 1:3]``), attached to ir.Node.

``==`` and ``!=`` keep Python identity semantics, as TF1 tensors do (nodes are dict keys);
use ``gc.equal`` for the elementwise comparison.
"""
from ..graph import Node
from .registry import apply


def _binary(op, reflected=False):
    if reflected:
        return lambda self, other: apply(op, [other, self])
    return lambda self, other: apply(op, [self, other])


def _key_to_spec(node, key):
    """Turn a basic-indexing key into a strided_slice spec (ints, slices, one Ellipsis)."""
    if not isinstance(key, tuple):
        key = (key,)
    if any(k is Ellipsis for k in key):
        i = key.index(Ellipsis)
        fill = node.rank - (len(key) - 1)
        key = key[:i] + (slice(None),) * fill + key[i + 1:]
    spec = []
    for k in key:
        if isinstance(k, slice):
            spec.append(("s", k.start, k.stop, k.step))
        elif hasattr(k, "__index__") and not isinstance(k, Node):
            spec.append(("i", int(k)))
        else:
            raise TypeError(f"tensor '{node.name}': only basic indexing (ints, slices, ...) is "
                            f"supported, found {type(k).__name__}; use gc.gather for lookups")
    return tuple(spec)


def _getitem(self, key):
    return apply("strided_slice", [self], {"spec": _key_to_spec(self, key)})


OPERATORS = {
    "__add__": _binary("add"), "__radd__": _binary("add", True),
    "__sub__": _binary("subtract"), "__rsub__": _binary("subtract", True),
    "__mul__": _binary("multiply"), "__rmul__": _binary("multiply", True),
    "__truediv__": _binary("divide"), "__rtruediv__": _binary("divide", True),
    "__pow__": _binary("pow"), "__rpow__": _binary("pow", True),
    "__matmul__": _binary("matmul"), "__rmatmul__": _binary("matmul", True),
    "__lt__": _binary("less"), "__le__": _binary("less_equal"),
    "__gt__": _binary("greater"), "__ge__": _binary("greater_equal"),
    "__and__": _binary("logical_and"), "__rand__": _binary("logical_and", True),
    "__or__": _binary("logical_or"), "__ror__": _binary("logical_or", True),
    "__neg__": lambda self: apply("negative", [self]),
    "__abs__": lambda self: apply("abs", [self]),
    "__invert__": lambda self: apply("logical_not", [self]),
    "__getitem__": _getitem,
}

for _name, _fn in OPERATORS.items():
    setattr(Node, _name, _fn)
