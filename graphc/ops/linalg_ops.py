"""TF1's linear-algebra functions built from graph ops: ``norm``, ``eye``, the
diagonals (``diag``, ``diag_part``, ``matrix_diag``, ``matrix_diag_part``), ``trace`` and
``tensordot`` (through einsum). Each composes existing ops, so both backends run it and
autodiff differentiates it.
"""
import builtins

import numpy as np

from ..errors import ShapeError
from ..ir import dtypes as D
from ..ir.graph import Node
from ..ir.ops import apply, const_node, convert
from .array_ops import (_known_dims, _max, _need_float, _need_rank, _static_size, _sum, fail,
                        static_int, static_ints)
from .reduction_ops import _reduce_args
from .special_math_ops import einsum


# -- norm -------------------------------------------------------------------------------------
def _vector_norm(x, ord, axes, keepdims):
    a = apply("abs", [x])
    if ord == 1:
        return _sum(a, axes, keepdims)
    if ord == np.inf:
        return _max(a, axes, keepdims)
    if ord == 2:  # sqrt of the sum of squares: no abs, so its gradient is x / norm
        return apply("sqrt", [_sum(apply("multiply", [x, x]), axes, keepdims)])
    powered = apply("pow", [a, convert(float(ord), x)])
    return apply("pow", [_sum(powered, axes, keepdims), convert(1.0 / ord, x)])

def _matrix_norm(x, ord, axes, keepdims):
    """ord 1: the largest column sum of |x|; inf: the largest row sum (rows on axes[0])."""
    rows, cols = axes
    a = apply("abs", [x])
    summed, other = (rows, cols) if ord == 1 else (cols, rows)
    sums = _sum(a, (summed,), True)
    return _max(sums, tuple(sorted(axes)), True) if keepdims else apply(
        "squeeze", [_max(sums, (other,), True)], {"axis": tuple(sorted(axes))})

def _norm_ord(fn, ord, matrix):
    """TF1's ord: 'euclidean' (also 'fro' for matrices), 1, inf, and p > 0 for vectors."""
    if isinstance(ord, str):
        if ord == "euclidean" or (ord == "fro" and matrix):
            return 2
        fail(fn, f"ord {ord!r} is not supported here",
             hint="'euclidean', 'fro' (matrix axes), 1, np.inf, or p > 0 (vectors)")
    if isinstance(ord, (bool, np.bool_)) or not isinstance(ord, (int, float, np.number)):
        fail(fn, f"ord must be a string or a number, found {ord!r}")
    ok = ord in (1, np.inf) if matrix else ord > 0
    if not ok:
        fail(fn, f"ord {ord!r} is not supported for {'matrix' if matrix else 'vector'} norms",
             hint="matrix norms: 'fro', 'euclidean', 1, np.inf (TF1 has no 2-norm of "
                  "matrices); vector norms: any p > 0")
    return float(ord) if ord != np.inf else np.inf

def norm(tensor, ord="euclidean", axis=None, keepdims=None, name=None, keep_dims=None):
    """TF1's ``tf.norm``: a vector norm over one axis (or all entries), or a matrix norm over
    two axes.

    Args:
        tensor: a floating tensor.
        ord: 'euclidean' (default; also 'fro' for matrices), 1, np.inf, or any p > 0 for
            vector norms. Matrix norms: 'euclidean'/'fro', 1 (largest column sum of |x|),
            np.inf (largest row sum).
        axis: None (all entries as one vector), an int, or a pair of ints (a matrix norm).
        keepdims: keep the reduced axes with size 1; ``keep_dims`` is TF1's alias.
        name: name of the result node.
    Returns:
        A tensor of the input's dtype.
    Raises:
        GraphError: an ord TF1 refuses (matrix 2-norm, p <= 0, unknown strings) or a
            tensor axis; DTypeError: a non-float tensor.
    Example:
        >>> gc.norm(x, axis=1)            # Euclidean length of each row
        >>> gc.norm(m, ord=1, axis=[0, 1])  # largest column sum of |m|
    """
    fn = "norm"
    x = convert(tensor)
    _need_float(fn, x)
    matrix = isinstance(axis, (list, tuple)) and len(axis) == 2
    if isinstance(axis, (list, tuple)) and len(axis) not in (1, 2):
        fail(fn, f"axis must be an int or a pair of ints, found {axis!r}")
    p = _norm_ord(fn, ord, matrix)
    axes, kd = _reduce_args(fn, x, axis, keepdims, None, keep_dims)
    if matrix and len(set(axes)) != 2:
        fail(fn, f"axis {list(axis)} names one axis twice")
    if matrix and p != 2:
        out = _matrix_norm(x, p, tuple(a % x.rank for a in axis), kd)
    else:
        out = _vector_norm(x, p, axes, kd)
    return apply("identity", [out], name=name or "norm")

# -- eye, diagonals, trace --------------------------------------------------------------------
def eye(num_rows, num_columns=None, batch_shape=None, dtype=D.float32, name=None):
    """The identity matrix (ones on the main diagonal), optionally repeated over a batch.

    Args:
        num_rows: an int (static).
        num_columns: an int; None means ``num_rows``.
        batch_shape: a list of ints prepended to the shape, or None.
        dtype: the result's dtype.
        name: name of the constant.
    Returns:
        A constant of shape ``batch_shape + [num_rows, num_columns]``.
    Example:
        >>> gc.eye(2, 3)   # [[1, 0, 0], [0, 1, 0]]
    """
    fn = "eye"
    rows = _static_size(fn, "num_rows", num_rows)
    cols = rows if num_columns is None else _static_size(fn, "num_columns", num_columns)
    batch = () if batch_shape is None else tuple(static_ints(fn, "batch_shape", batch_shape)
                                                  .reshape(-1).tolist())
    value = np.broadcast_to(np.eye(rows, cols, dtype=D.as_dtype(dtype).np), batch + (rows, cols))
    return const_node(np.array(value), name=name or "eye")


def matrix_diag(diagonal, name=None):
    """``[..., N]`` -> ``[..., N, N]`` with ``diagonal`` on the main diagonal, zeros elsewhere
    (``tf.linalg.diag``).

    Example:
        >>> gc.linalg.diag([1.0, 2.0])   # [[1, 0], [0, 2]]
    """
    fn = "linalg.diag"
    v = convert(diagonal)
    _need_rank(fn, v, 1)
    (n,) = _known_dims(fn, v, [v.rank - 1])
    ones = const_node(np.eye(n, dtype=v.dtype.np))
    return apply("multiply", [apply("expand_dims", [v], {"axis": -1}), ones],
                 name=name or "MatrixDiag")

def matrix_diag_part(input, name=None):  # noqa: A002  (TF1's argument name)
    """``[..., M, N]`` -> ``[..., min(M, N)]``: the main diagonal (``tf.linalg.diag_part``).

    Example:
        >>> gc.linalg.diag_part([[1.0, 2.0], [3.0, 4.0]])   # [1, 4]
    """
    fn = "linalg.diag_part"
    x = convert(input)
    _need_rank(fn, x, 2)
    m, n = _known_dims(fn, x, [x.rank - 2, x.rank - 1])
    picked = apply("multiply", [x, const_node(np.eye(m, n, dtype=x.dtype.np))])
    rows = apply("reduce_sum", [picked], {"axis": x.rank - 1, "keepdims": False})
    if m > n:  # rows past the last column hold no diagonal entry
        spec = tuple(("s", None, None, None) for _ in builtins.range(x.rank - 2))
        rows = apply("strided_slice", [rows], {"spec": spec + (("s", 0, n, None),)})
    return apply("identity", [rows], name=name or "MatrixDiagPart")

def diag(diagonal, name=None):
    """TF1's ``tf.diag``: a rank-k tensor -> rank 2k, ``out[i.., i..] = diagonal[i..]``.

    Example:
        >>> gc.diag([1.0, 2.0])   # [[1, 0], [0, 2]]
    """
    v = convert(diagonal)
    _need_rank("diag", v, 1)
    dims = _known_dims("diag", v, builtins.range(v.rank))
    flat = apply("reshape", [v], {"shape": (int(np.prod(dims)),)})
    return apply("reshape", [matrix_diag(flat)], {"shape": tuple(dims) * 2},
                 name=name or "Diag")

def diag_part(input, name=None):  # noqa: A002  (TF1's argument name)
    """TF1's ``tf.diag_part``: a rank-2k tensor of shape ``D + D`` -> its diagonal, shape D."""
    x = convert(input)
    k = x.rank // 2
    if x.rank == 0 or x.rank % 2 or x.shape[:k] != x.shape[k:]:
        fail("diag_part", f"needs shape D + D (even rank), found {x.type_str()}",
             cls=ShapeError, hint="gc.linalg.diag_part takes the last two axes' diagonal")
    dims = _known_dims("diag_part", x, builtins.range(k))
    n = int(np.prod(dims))
    square = apply("reshape", [x], {"shape": (n, n)})
    return apply("reshape", [matrix_diag_part(square)], {"shape": tuple(dims)},
                 name=name or "DiagPart")

def trace(x, name=None):
    """Sum of the main diagonal of the last two axes: ``[..., M, N]`` -> ``[...]``.

    Example:
        >>> gc.trace([[1.0, 2.0], [3.0, 4.0]])   # 5.0
    """
    d = matrix_diag_part(x)
    return apply("reduce_sum", [d], {"axis": d.rank - 1, "keepdims": False},
                 name=name or "Trace")

# -- tensordot --------------------------------------------------------------------------------
def _tensordot_axes(fn, a, b, axes):
    """(axes of a, axes of b) contracted, as lists of non-negative ints."""
    if isinstance(axes, Node):
        fail(fn, f"axes must be static, found tensor '{axes.node_name}'",
             hint="pass an int or a pair of lists of ints")
    if np.ndim(axes) == 0:
        n = static_int(fn, "axes", axes)
        if not 0 <= n <= min(a.rank, b.rank):
            fail(fn, f"axes={n} does not fit {a.type_str()} and {b.type_str()}",
                 cls=ShapeError)
        return list(builtins.range(a.rank - n, a.rank)), list(builtins.range(n))
    if len(axes) != 2:
        fail(fn, f"axes must be an int or a pair of lists, found {axes!r}")
    pair = []
    for x, part in zip((a, b), axes):
        ax = static_ints(fn, "axes", [part] if np.ndim(part) == 0 else part).reshape(-1)
        if any(not -x.rank <= i < x.rank for i in ax):
            fail(fn, f"axes {ax.tolist()} out of range for {x.type_str()}", cls=ShapeError)
        pair.append([int(i) % x.rank for i in ax])
    if len(pair[0]) != len(pair[1]):
        fail(fn, f"axes {pair[0]} and {pair[1]} differ in length", cls=ShapeError)
    return pair

def tensordot(a, b, axes, name=None):
    """Sum of products over ``axes``: the free axes of ``a``, then those of ``b``.

    Args:
        a, b: tensors of one dtype.
        axes: an int n (the last n axes of ``a`` with the first n of ``b``) or a pair of
            lists ``[[a axes], [b axes]]`` (an int in place of a list is one axis).
        name: name of the result node.
    Returns:
        A tensor of shape ``a's free dims + b's free dims``.
    Raises:
        GraphError: tensor ``axes``, or a malformed pair; ShapeError: out-of-range axes, or
            contracted sizes that differ.
    Example:
        >>> gc.tensordot(x, w, [[2], [0]])   # [B, T, D] x [D, H] -> [B, T, H]
    """
    a = convert(a, b if isinstance(b, Node) else None)
    b = convert(b, a)
    axes_a, axes_b = _tensordot_axes("tensordot", a, b, axes)
    letters = iter("abcdefghijklmnopqrstuvwxyz")
    la = [next(letters) for _ in builtins.range(a.rank)]
    lb = [next(letters) for _ in builtins.range(b.rank)]
    for i, j in zip(axes_a, axes_b):
        if None not in (a.shape[i], b.shape[j]) and a.shape[i] != b.shape[j]:
            fail("tensordot", f"contracted axes {i} of {a.type_str()} and {j} of "
                              f"{b.type_str()} differ in size", cls=ShapeError)
        lb[j] = la[i]
    out = [c for i, c in enumerate(la) if i not in axes_a] + [
        c for j, c in enumerate(lb) if j not in axes_b]
    return einsum(f"{''.join(la)},{''.join(lb)}->{''.join(out)}", a, b,
                  name=name or "Tensordot")
