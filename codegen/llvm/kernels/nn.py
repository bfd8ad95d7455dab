"""Row kernels over the last axis: softmax, log_softmax, the softmax cross-entropies and their
gradients, and argmax / argmin along any axis.

Every softmax-family kernel makes the same three passes over a row: the maximum (NaN
propagating), the sum of ``exp(x - max)`` (a reassociable sum, so it vectorizes with the
inlined exp), and the output. Sparse labels outside ``[0, classes)`` stop the step with a
status code (the label and its row) instead of reading out of bounds.
"""
import numpy as np

from ....ir.shapes import normalize_axis
from ..ir import Function, float_literal, mem_type, val_type
from .elementwise import combine
from ..registry import lowers
from ..loops import params
from .movement import STATUS_LABEL, exit_with_status

_ROW_OPS = ("softmax", "log_softmax", "sparse_softmax_xent", "sparse_softmax_xent_grad",
            "softmax_xent", "softmax_xent_grad")


class _Row:
    """Helpers writing one row's passes; ``x`` is the row's base pointer."""

    def __init__(self, fn, math, dtype, width):
        self.fn, self.math, self.dtype, self.width = fn, math, dtype, width
        self.t = val_type(dtype)

    def lit(self, v):
        return float_literal(v, self.dtype)

    def at(self, base, j):
        return self.fn.gep(self.t, base, j)

    def max(self, x):
        fn = self.fn
        with fn.loop(self.width) as lp:
            acc = lp.carry(self.t, self.lit(-np.inf))
            lp.update(acc, combine(fn, "max", self.dtype, acc, fn.load(self.t, self.at(x, lp.i))))
        return acc

    def shifted(self, x, j, m):
        return self.fn(f"fsub {self.t} {self.fn.load(self.t, self.at(x, j))}, {m}")

    def exp(self, v):
        return self.math.call(self.fn, "exp", self.dtype, v)

    def sum(self, per_element):
        """Sum over the row of ``per_element(j)`` (reassociable: vectorizes)."""
        fn = self.fn
        with fn.loop(self.width) as lp:
            acc = lp.carry(self.t, self.lit(0.0))
            lp.update(acc, combine(fn, "sum", self.dtype, acc, per_element(lp.i)))
        return acc

    def each(self, body):
        with self.fn.loop(self.width) as lp:
            body(lp.i)

    def log(self, v):
        return self.math.call(self.fn, "log", self.dtype, v)


def _label(fn, labels, dtype, r, width, status):
    """The row's label as i64; leaves the kernel with a status when outside [0, width)."""
    it = val_type(dtype)
    raw = fn.load(it, fn.gep(it, labels, r))
    y = raw if it == "i64" else fn(f"sext {it} {raw} to i64")
    exit_with_status(fn, fn(f"icmp uge i64 {y}, {width}"), status, STATUS_LABEL, y, r)
    return y


def row_function(op, math, dtype, rows, width, label_dtype, index, noalias):
    """The kernel of one softmax-family op; parameters by ``index``: out, x, labels, status."""
    fn = Function("kernel", params(len(noalias), noalias))
    out, x, labels, status = (f"%p{i}" if i is not None else None for i in index)
    t = val_type(dtype)
    with fn.loop(rows) as lr:
        row = _Row(fn, math, dtype, width)
        xr = fn.gep(t, x, fn.mul(lr.i, width))
        orow = fn.gep(t, out, fn.mul(lr.i, width))
        m = row.max(xr)
        if op == "softmax":
            s = row.sum(lambda j: _store_exp(row, orow, xr, j, m))
            row.each(lambda j: fn.store(t, fn(f"fdiv {t} {fn.load(t, row.at(orow, j))}, {s}"),
                                        row.at(orow, j)))
        else:
            _row_rest(op, row, out, orow, xr, m, lr.i, labels, label_dtype, status)
    fn.ret()
    return fn


def _row_rest(op, row, out, orow, xr, m, r, labels, label_dtype, status):
    """The passes after the row maximum for every op but softmax."""
    fn, t, width = row.fn, row.t, row.width
    if op.endswith("_grad"):  # exp(x - max) is kept in the output row for the last pass
        s = row.sum(lambda j: _store_exp(row, orow, xr, j, m))
        if op == "sparse_softmax_xent_grad":
            y = _label(fn, labels, label_dtype, r, width, status)
            row.each(lambda j: _sparse_grad(row, orow, j, s, y))
        else:
            yr = fn.gep(t, labels, fn.mul(r, width))
            mass = row.sum(lambda j: fn.load(t, row.at(yr, j)))
            row.each(lambda j: _dense_grad(row, orow, yr, j, s, mass))
        return
    s = row.sum(lambda j: row.exp(row.shifted(xr, j, m)))
    logs = row.log(s)
    if op == "log_softmax":
        row.each(lambda j: fn.store(t, fn(f"fsub {t} {row.shifted(xr, j, m)}, {logs}"),
                                    row.at(orow, j)))
    elif op == "sparse_softmax_xent":
        y = _label(fn, labels, label_dtype, r, width, status)
        picked = row.shifted(xr, y, m)
        fn.store(t, fn(f"fsub {t} {logs}, {picked}"), fn.gep(t, out, r))
    else:
        yr = fn.gep(t, labels, fn.mul(r, width))
        total = row.sum(lambda j: fn(f"fmul {t} {fn.load(t, row.at(yr, j))}, "
                                     f"{fn(f'fsub {t} {logs}, {row.shifted(xr, j, m)}')}"))
        fn.store(t, total, fn.gep(t, out, r))


def _store_exp(row, orow, xr, j, m):
    e = row.exp(row.shifted(xr, j, m))
    row.fn.store(row.t, e, row.at(orow, j))
    return e


def _sparse_grad(row, orow, j, s, y):
    """softmax - one_hot(y), from the exponentials stored in the row."""
    fn, t = row.fn, row.t
    p = fn(f"fdiv {t} {fn.load(t, row.at(orow, j))}, {s}")
    hot = fn(f"select i1 {fn(f'icmp eq i64 {j}, {y}')}, {t} {row.lit(1.0)}, {t} {row.lit(0.0)}")
    fn.store(t, fn(f"fsub {t} {p}, {hot}"), row.at(orow, j))


def _dense_grad(row, orow, yr, j, s, mass):
    """softmax * sum(labels) - labels, from the exponentials stored in the row."""
    fn, t = row.fn, row.t
    p = fn(f"fdiv {t} {fn.load(t, row.at(orow, j))}, {s}")
    v = fn(f"fsub {t} {fn(f'fmul {t} {p}, {mass}')}, {fn.load(t, row.at(yr, j))}")
    fn.store(t, v, row.at(orow, j))


@lowers(*_ROW_OPS)
def lower_row(L, n):
    x = n.inputs[0]
    width = x.shape[-1]
    rows = int(np.prod(x.shape[:-1], dtype=np.int64))
    bufs = [L.out(n), L.buf(x)]
    label_dtype = None
    fallible = n.op_name.startswith("sparse")
    if len(n.inputs) > 1:
        bufs.append(L.buf(n.inputs[1]))
        label_dtype = n.inputs[1].dtype
    if fallible:
        bufs.append(L.status())
    uniq, index = L.distinct(bufs)
    index = index + [None] * (4 - len(index))
    fn = row_function(n.op_name, L.math, x.dtype, rows, width, label_dtype, index,
                      L.noalias(uniq))
    L.call(fn, uniq, n, fallible=fallible)


# -- argmax / argmin ------------------------------------------------------------------------------
@lowers("argmax", "argmin")
def lower_arg(L, n):
    x = n.inputs[0]
    axis = normalize_axis(n.attrs.get("axis", 0), x.rank)
    outer = int(np.prod(x.shape[:axis], dtype=np.int64))
    inner = int(np.prod(x.shape[axis + 1:], dtype=np.int64))
    dim = x.shape[axis]
    fn = Function("kernel", params(2, L.noalias([L.out(n), L.buf(x)])))
    t, ot = val_type(x.dtype), mem_type(n.dtype)
    better = "gt" if n.op_name == "argmax" else "lt"
    with fn.loop(outer) as lo, fn.loop(inner) as lt:
        base = fn.add(fn.mul(lo.i, dim * inner), lt.i)
        first = fn.load(t, fn.gep(t, "%p1", base))
        with fn.loop(dim) as lk:
            best = lk.carry(t, first)
            where = lk.carry("i64", "0")
            v = fn.load(t, fn.gep(t, "%p1", fn.add(base, fn.mul(lk.i, inner))))
            take = _better(fn, x.dtype, better, v, best)
            lk.update(best, fn(f"select i1 {take}, {t} {v}, {t} {best}"))
            lk.update(where, fn(f"select i1 {take}, i64 {lk.i}, i64 {where}"))
        idx = where if ot == "i64" else fn(f"trunc i64 {where} to {ot}")
        fn.store(ot, idx, fn.gep(ot, "%p0", fn.add(fn.mul(lo.i, inner), lt.i)))
    fn.ret()
    L.call(fn, [L.out(n), L.buf(x)], n)


def _better(fn, dtype, rel, v, best):
    """First strictly better element wins; a NaN wins over any number (NumPy's rule)."""
    t = val_type(dtype)
    if not dtype.is_floating:
        op = ("u" if dtype.name == "uint8" else "s") + rel
        return fn(f"icmp {op} {t} {v}, {best}")
    strict = fn(f"fcmp o{rel} {t} {v}, {best}")
    nan_first = fn(f"and i1 {fn(f'fcmp uno {t} {v}, {v}')}, {fn(f'fcmp ord {t} {best}, {best}')}")
    return fn(f"or i1 {strict}, {nan_first}")
