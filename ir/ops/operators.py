"""Python operators on nodes (``x + y``, ``a @ b``, ``x[:, 1:3]``), attached to ir.Node.

``==`` and ``!=`` keep Python identity semantics, as TF1 tensors do (nodes are dict keys);
use ``gc.equal`` for the elementwise comparison.
"""
from graphc.errors import GraphError

from .. import dtypes as D
from ..graph import Node
from ..source import user_location
from ..static import static_value
from .registry import apply, convert

# TF1's truediv: integers are cast to a float wide enough for them before dividing
_TRUEDIV_FLOAT = {"int8": D.float32, "int16": D.float32, "uint8": D.float32,
                  "int32": D.float64, "int64": D.float64}


def true_divide(x, y, name=None):
    """``x / y`` as TF1 has it: floats divide as they are; integer operands of one dtype are
    cast first, int8/int16/uint8 to float32 and int32/int64 to float64 (``7 / 2 = 3.5``).

    Raises:
        DTypeError: operands of different dtypes (TF never promotes), or bools.
    """
    like = x if isinstance(x, Node) else y if isinstance(y, Node) else None
    x, y = convert(x, like), convert(y, like)
    target = _TRUEDIV_FLOAT.get(x.dtype.name) if x.dtype == y.dtype else None
    if target is not None:
        x, y = (apply("cast", [v], {"dtype": target}) for v in (x, y))
    return apply("divide", [x, y], name=name)


def _binary(op, reflected=False):
    if reflected:
        return lambda self, other: apply(op, [other, self])
    return lambda self, other: apply(op, [self, other])


def _expand_ellipsis(node, key):
    if not isinstance(key, tuple):
        key = (key,)
    if any(k is Ellipsis for k in key):
        i = key.index(Ellipsis)
        fill = node.rank - sum(1 for k in key if k is not None and k is not Ellipsis)
        key = key[:i] + (slice(None),) * fill + key[i + 1:]
    return key


def _static_int(node):
    """The Python int a scalar integer tensor holds when the graph is built, else None."""
    value = static_value(node)
    return None if value is None else int(value)


def _check_index_tensor(node, k, what):
    if k.dtype is None or not k.dtype.is_integer or k.shape is None or k.rank != 0:
        raise TypeError(f"tensor '{node.node_name}': a tensor {what} must be a scalar integer, "
                        f"found {k.describe()} : {k.type_str()}; use gc.gather for lookups of several indices")


def _resolve_tensors(node, key):
    """``key`` with tensors known when the graph is built replaced by ints; the remaining
    scalar int tensors stay (they become gathers).

    Raises:
        TypeError: a tensor index that is not a scalar integer.
        GraphError: a slice bound whose value is known only at run time.
    """
    out = []
    for k in key:
        if isinstance(k, Node):
            _check_index_tensor(node, k, "index")
            static = _static_int(k)
            out.append(k if static is None else static)
        elif isinstance(k, slice):
            out.append(slice(*(_static_bound(node, b) for b in (k.start, k.stop, k.step))))
        else:
            out.append(k)
    return tuple(out)


def _static_bound(node, bound):
    if not isinstance(bound, Node):
        return bound
    _check_index_tensor(node, bound, "slice bound")
    static = _static_int(bound)
    if static is None:
        raise GraphError(f"strided_slice: slice bound {bound.describe()} of tensor "
                         f"'{node.node_name}' is known only when the step runs",
                         ["graphc shapes are static, so a slice's bounds must be known when "
                          "the graph is built"], loc=user_location(),
                         hint="use Python ints or constants for slice bounds, or gc.gather "
                              "with an index range")
    return static


def _key_to_spec(node, key):
    """Turn a basic-indexing key into a strided_slice spec (ints, slices, one Ellipsis);
    a run-time tensor index keeps its whole axis here (it is gathered afterwards)."""
    key = _expand_ellipsis(node, key)
    spec = []
    for k in key:
        if isinstance(k, slice):
            spec.append(("s", k.start, k.stop, k.step))
        elif isinstance(k, Node):
            spec.append(("s", None, None, None))
        elif hasattr(k, "__index__"):
            spec.append(("i", int(k)))
        else:
            raise TypeError(f"tensor '{node.node_name}': only basic indexing (ints, slices, "
                            f"...) is supported, found {type(k).__name__}; use gc.gather for lookups")
    return tuple(spec)


def _gather_index(x, axis, i):
    """``x`` indexed by the run-time scalar ``i`` along ``axis``; negative ``i`` wraps as in
    Python (``i + dim`` where ``i < 0``)."""
    dim = x.shape[axis]
    if dim is None:
        dims = apply("shape_of", [x], {"out_type": i.dtype})
        dim = apply("strided_slice", [dims], {"spec": (("i", axis),)})
    wrapped = apply("where", [apply("less", [i, 0]), apply("add", [i, dim]), i])
    return apply("gather", [x, wrapped], {"axis": axis})


def _getitem(self, key):
    """``x[:, 1:3]``, ``x[i]``, ``x[..., 0]``; ``None`` (gc.newaxis) inserts a size-1 axis.

    A scalar integer tensor may stand wherever an int does (``x[i]``, ``x[:, i]``): when its
    value is known when the graph is built (a constant, an unrolled loop's counter) it is that
    int, else the axis is gathered at run time (negative indices wrap). Tensor slice bounds
    (``x[i:i + 2]``) must be known when the graph is built.
    """
    key = _resolve_tensors(self, _expand_ellipsis(self, key))
    rest = tuple(k for k in key if k is not None)
    out = apply("strided_slice", [self], {"spec": _key_to_spec(self, rest)}) \
        if rest or not key else self
    kept, gathers = 0, []
    for k in rest:  # axes of the slice: run-time indices are gathered, last axis first
        if isinstance(k, Node):
            gathers.append((kept, k))
        if isinstance(k, (slice, Node)):
            kept += 1
    for axis, i in reversed(gathers):
        out = _gather_index(out, axis, i)
    axis = 0
    for k in key:  # output axes: slices and new axes keep one, integer indices drop theirs
        if k is None:
            out = apply("expand_dims", [out], {"axis": axis})
        if k is None or isinstance(k, slice):
            axis += 1
    return out


OPERATORS = {
    "__add__": _binary("add"), "__radd__": _binary("add", True),
    "__sub__": _binary("subtract"), "__rsub__": _binary("subtract", True),
    "__mul__": _binary("multiply"), "__rmul__": _binary("multiply", True),
    "__truediv__": lambda self, other: true_divide(self, other),
    "__rtruediv__": lambda self, other: true_divide(other, self),
    "__floordiv__": _binary("floordiv"), "__rfloordiv__": _binary("floordiv", True),
    "__mod__": _binary("floormod"), "__rmod__": _binary("floormod", True),
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
