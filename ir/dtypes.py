"""dtypes of the IR: a small closed set, each tied to a NumPy dtype and a short print name."""
import numpy as np

from graphc.errors import DTypeError


class DType:
    """An element type. Compare with ``==``; ``np`` is the NumPy dtype, ``short`` the dump name."""

    __slots__ = ("name", "short", "np", "kind")

    def __init__(self, name, short, np_dtype, kind):
        self.name, self.short, self.np, self.kind = name, short, np.dtype(np_dtype), kind

    @property
    def is_floating(self):
        return self.kind == "f"

    @property
    def is_integer(self):
        return self.kind == "i"

    @property
    def is_bool(self):
        return self.kind == "b"

    @property
    def itemsize(self):
        return self.np.itemsize

    def __repr__(self):
        return f"gc.{self.name}"

    def __reduce__(self):
        return (as_dtype, (self.name,))

    def as_numpy_dtype(self):
        return self.np.type


float32 = DType("float32", "f32", np.float32, "f")
float64 = DType("float64", "f64", np.float64, "f")
int8 = DType("int8", "i8", np.int8, "i")
int16 = DType("int16", "i16", np.int16, "i")
int32 = DType("int32", "i32", np.int32, "i")
int64 = DType("int64", "i64", np.int64, "i")
uint8 = DType("uint8", "u8", np.uint8, "i")
bool_ = DType("bool", "bool", np.bool_, "b")

ALL = (float32, float64, int8, int16, int32, int64, uint8, bool_)
_BY_NP = {d.np: d for d in ALL}
_ALIASES = {"float": float32, "double": float64, "half": None, "bool_": bool_}
_BY_NAME = {d.name: d for d in ALL}


def as_dtype(value):
    """Turn a DType, a NumPy dtype or type, or a TF1 dtype name into a DType.

    Args:
        value: ``gc.float32``, ``np.float32``, ``np.dtype("int64")``, ``"float"``, ``"int32"``...
    Returns:
        The DType.
    Raises:
        DTypeError: for a dtype graphc does not support (float16, complex, strings).
    Example:
        >>> as_dtype("float") is float32
        True
    """
    if isinstance(value, DType):
        return value
    if isinstance(value, str):
        d = _BY_NAME.get(value, _ALIASES.get(value))
        if d is not None:
            return d
    else:
        try:
            d = _BY_NP.get(np.dtype(value))
        except TypeError:
            d = None
        if d is not None:
            return d
    raise DTypeError(f"unsupported dtype {value!r}",
                     hint="use float32, float64, int32, int64, bool (int8, int16, uint8 for data)")


def result_type(*dtypes):
    """The dtype two operands of an elementwise op share; mixed dtypes are an error, as in TF."""
    first = dtypes[0]
    for d in dtypes[1:]:
        if d != first:
            return None
    return first
