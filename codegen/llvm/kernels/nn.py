"""Row kernels over the last axis: softmax, log_softmax, the softmax cross-entropies and their
gradients, and argmax / argmin along any axis.

Every softmax-family kernel makes the same three passes over a row: the maximum (NaN
propagating), the sum of ``exp(x - max)``, and the output, where ``x - max`` is 0 wherever x
equals the maximum (``ir.ops.nn.shifted_logits``: an all ``-inf`` row gives uniform
probabilities, not NaN). Sparse labels outside ``[0, classes)`` stop the step with a status
code (the label and its row) instead of reading out of bounds.

Rows of up to ``MAX_VECTORS`` registers (10 classes; up to 32 float32) are too short for the
loop vectorizer (LLVM leaves loops of fewer than 16 iterations scalar): each row is then one
explicit vector, read and written as ``<width x t>`` (whole and narrower registers; the
masked moves of AVX2 are microcoded on some cores), lanes past the row filled by a shuffle,
reduced by LLVM's vector reductions, with the math library's vector exp and log, 2 rows side
by side (``vector_row_function``). Longer rows run as loops, which vectorize (``row_function``).
Both sum a row's exponentials in a reassociated order (partial sums per lane, deliberately:
within rounding of the reference's order).

``sparse_softmax_xent_with_grad`` and ``softmax_xent_with_grad`` (``ir.passes.fuse_xent``)
write the gradient and keep each row's loss in a private range past the planned arena, which
``kept_loss`` copies out.
"""
import numpy as np

from ....ir.shapes import normalize_axis
from ..ir import KERNEL_ATTRS, Function, float_literal, mem_type, val_type
from .elementwise import combine
from . import row_columns
from ..registry import lowers
from ..loops import params
from .movement import STATUS_LABEL, exit_with_status

_ROW_OPS = ("softmax", "log_softmax", "sparse_softmax_xent", "sparse_softmax_xent_grad",
            "softmax_xent", "softmax_xent_grad", "sparse_softmax_xent_with_grad",
            "softmax_xent_with_grad")
VECTOR_BYTES = 32  # one AVX2 register: 8 float32 or 4 float64 lanes
MAX_VECTORS = 4  # rows up to this many registers wide run as one vector each
# Rows written side by side (``vector_row_function``). Each row inlines the math library's
# vector exp (and log), so the kernel's IR grows with the block: the 64-layer MLP's fused
# sparse cross-entropy gradient (128 rows of 10) cost 106 ms of LLVM at 8 rows, 42 at 2 and 26
# at 1, and took 1.2 us (2) and 4 us (1) longer per step than at 8 (the same bits: rows are
# independent). 2 keeps most of the overlap; the 1.2 us would take ~50,000 steps to cost
# what the 64 ms of compilation saved.
ROW_BLOCK = 2


def vector_lanes(dtype, width):
    """Lanes of the vector holding a row of ``width`` (a power of two, whole registers: the
    maximum halves it), or 0 when the row is long enough for loops."""
    per = VECTOR_BYTES // dtype.itemsize
    lanes = per
    while lanes < width:
        lanes *= 2
    return lanes if 0 < width and lanes <= MAX_VECTORS * per else 0


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
        """``x[j] - m``, 0 where ``x[j]`` is the maximum ``m`` (never ``inf - inf``)."""
        fn, t = self.fn, self.t
        v = fn.load(t, self.at(x, j))
        top = fn(f"fcmp oeq {t} {v}, {m}")
        return fn(f"select i1 {top}, {t} {self.lit(0.0)}, {t} {fn(f'fsub {t} {v}, {m}')}")

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
    """The kernel of one softmax-family op; parameters by ``index``: out, x, labels, status,
    kept losses (the ``*_with_grad`` ops)."""
    fn = Function("kernel", params(len(noalias), noalias))
    out, x, labels, status, kept = (f"%p{i}" if i is not None else None for i in index)
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
            _row_rest(op, row, out, orow, xr, m, lr.i, labels, label_dtype, status, kept)
    fn.ret()
    return fn


def _row_rest(op, row, out, orow, xr, m, r, labels, label_dtype, status, kept):
    """The passes after the row maximum for every op but softmax."""
    fn, t, width = row.fn, row.t, row.width
    if op == "sparse_softmax_xent_with_grad":  # the label's logit before the row is written
        y = _label(fn, labels, label_dtype, r, width, status)
        picked = row.shifted(xr, y, m)
        s = row.sum(lambda j: _store_exp(row, orow, xr, j, m))
        fn.store(t, fn(f"fsub {t} {row.log(s)}, {picked}"), fn.gep(t, kept, r))
        row.each(lambda j: _sparse_grad(row, orow, j, s, y))
        return
    if op == "softmax_xent_with_grad":
        _dense_row_with_grad(row, orow, xr, m, fn.gep(t, labels, fn.mul(r, width)),
                             fn.gep(t, kept, r))
        return
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
        total = row.sum(lambda j: _dense_term(row, fn.load(t, row.at(yr, j)),
                                              fn(f"fsub {t} {logs}, {row.shifted(xr, j, m)}")))
        fn.store(t, total, fn.gep(t, out, r))


def _dense_term(row, y, nlogp):
    """``y * v`` for a label ``y`` and ``v`` its class's ``-log p`` (or shifted logit), 0
    where ``y`` is 0 even if ``v`` is infinite (a masked logit: ``0 log 0 = 0``, as
    ``ir.ops.nn.dense_xent_impl``); a NaN label stays NaN."""
    fn, t = row.fn, row.t
    zero = fn(f"fcmp oeq {t} {y}, {row.lit(0.0)}")
    return fn(f"select i1 {zero}, {t} {row.lit(0.0)}, {t} {fn(f'fmul {t} {y}, {nlogp}')}")


def _dense_row_with_grad(row, orow, xr, m, yr, kept):
    """A long row's dense loss and gradient in two passes after the maximum, one exp each:
    the exponentials stored (over the logits, each read first), their sum, the labels' mass
    and ``sum(y * shifted)`` in one; then the gradient. The loss is
    ``mass * log(sum) - sum(y * shifted)``, the reference's ``sum(y * (log(sum) - shifted))``
    rearranged (within rounding of it: with labels >= 0 both parts are >= 0, so nothing
    cancels); a zero label adds nothing (``_dense_term``)."""
    fn, t = row.fn, row.t
    with fn.loop(row.width) as lp:
        s, mass, dot = (lp.carry(t, row.lit(0.0)) for _ in range(3))
        sh = row.shifted(xr, lp.i, m)
        e = row.exp(sh)
        fn.store(t, e, row.at(orow, lp.i))
        y = fn.load(t, row.at(yr, lp.i))
        lp.update(s, combine(fn, "sum", row.dtype, s, e))
        lp.update(mass, combine(fn, "sum", row.dtype, mass, y))
        lp.update(dot, combine(fn, "sum", row.dtype, dot, _dense_term(row, y, sh)))
    loss = fn(f"fsub {t} {fn(f'fmul {t} {mass}, {row.log(s)}')}, {dot}")
    fn.store(t, loss, kept)
    row.each(lambda j: _dense_grad(row, orow, yr, j, s, mass))


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


# -- rows as explicit vectors ---------------------------------------------------------------------
class _VectorRow:
    """One row of ``width`` held in a ``<lanes x t>`` vector; lanes past the row are masked."""

    def __init__(self, fn, math, dtype, width, lanes):
        self.fn, self.math, self.dtype, self.lanes, self.width = fn, math, dtype, lanes, width
        self.t = val_type(dtype)
        self.vt, self.bt = f"<{lanes} x {self.t}>", f"<{lanes} x i1>"
        self.sfx = f"v{lanes}{'f32' if self.t == 'float' else 'f64'}"
        self.mask = "<" + ", ".join(f"i1 {'true' if k < width else 'false'}"
                                    for k in range(lanes)) + ">"
        self.iota = "<" + ", ".join(f"i64 {k}" for k in range(lanes)) + ">"

    def splat(self, v):
        return f"splat ({self.t} {float_literal(v, self.dtype)})" if isinstance(v, float) \
            else self.fn(f"shufflevector {self.vt} "
                         f"{self.fn(f'insertelement {self.vt} poison, {self.t} {v}, i64 0')}, "
                         f"{self.vt} poison, <{self.lanes} x i32> zeroinitializer")

    def load(self, base, fill):
        """The row at ``base``; lanes past it hold ``fill``. A ``<width x t>`` load, which
        LLVM splits into whole and narrower registers that never read past the row (the
        masked load and store of AVX2 are slow on some cores: microcoded stores on Zen)."""
        fn, w, n = self.fn, self.width, self.lanes
        if w == n:
            return fn.load(self.vt, base)
        pad = f"splat ({self.t} {float_literal(fill, self.dtype)})"
        if w == 1:  # (no <1 x t>: LLVM's backend asserts on some of them)
            return fn(f"insertelement {self.vt} {pad}, {self.t} {fn.load(self.t, base)}, i64 0")
        nt = f"<{w} x {self.t}>"
        v = fn.load(nt, base)
        mask = ", ".join(f"i32 {k if k < w else w}" for k in range(n))
        return fn(f"shufflevector {nt} {v}, {nt} {pad}, <{n} x i32> <{mask}>", "row")

    def store(self, v, base):
        fn, w, n = self.fn, self.width, self.lanes
        if w == n:
            fn.store(self.vt, v, base)
            return
        if w == 1:
            fn.store(self.t, fn(f"extractelement {self.vt} {v}, i64 0"), base)
            return
        nt = f"<{w} x {self.t}>"
        mask = ", ".join(f"i32 {k}" for k in range(w))
        fn.store(nt, fn(f"shufflevector {self.vt} {v}, {self.vt} poison, <{w} x i32> <{mask}>"),
                 base)

    def max(self, v):
        """The row maximum by halving the vector: ``a > b ? a : b`` (one vmaxps), NaNs not
        propagated: a NaN in the row still makes its lane, the sum and so every output NaN,
        whatever maximum was found (as ``_Row.max``'s NaN-propagating one gives)."""
        fn, n, t = self.fn, self.lanes, self.t
        while n > 2:
            h = n // 2
            vt, ht = f"<{n} x {t}>", f"<{h} x {t}>"
            lo = fn(f"shufflevector {vt} {v}, {vt} poison, <{h} x i32> <" +
                    ", ".join(f"i32 {k}" for k in range(h)) + ">")
            hi = fn(f"shufflevector {vt} {v}, {vt} poison, <{h} x i32> <" +
                    ", ".join(f"i32 {k + h}" for k in range(h)) + ">")
            gt = fn(f"fcmp ogt {ht} {lo}, {hi}")
            v, n = fn(f"select <{h} x i1> {gt}, {ht} {lo}, {ht} {hi}"), h
        lo, hi = (fn(f"extractelement <2 x {t}> {v}, i64 {k}") for k in (0, 1))
        return fn(f"select i1 {fn(f'fcmp ogt {t} {lo}, {hi}')}, {t} {lo}, {t} {hi}")

    def sum(self, v):
        """The sum of the row's lanes (those past it are zeroed first)."""
        fn = self.fn
        v = fn(f"select {self.bt} {self.mask}, {self.vt} {v}, {self.vt} zeroinitializer")
        name = f"llvm.vector.reduce.fadd.{self.sfx}"
        fn.uses.add((name, self.t, (self.t, self.vt)))
        return fn(f"call reassoc {self.t} @{name}({self.t} {float_literal(-0.0, self.dtype)}, "
                  f"{self.vt} {v})", "sum")

    def shifted(self, v, m):
        """``v - m`` with 0 where ``v`` equals the maximum (``_Row.shifted``)."""
        fn, vt = self.fn, self.vt
        ms = self.splat(m)
        top = fn(f"fcmp oeq {vt} {v}, {ms}")
        diff = fn(f"fsub {vt} {v}, {ms}")
        return fn(f"select {self.bt} {top}, {vt} zeroinitializer, {vt} {diff}")

    def exp(self, v):
        return self.math.call(self.fn, "exp", self.dtype, v, lanes=self.lanes)

    def op(self, name, a, b):
        return self.fn(f"{name} {self.vt} {a}, {b}")

    def one_hot(self, y):
        """1.0 in lane ``y`` (an i64), 0.0 elsewhere."""
        fn = self.fn
        ys = fn(f"shufflevector <{self.lanes} x i64> "
                f"{fn(f'insertelement <{self.lanes} x i64> poison, i64 {y}, i64 0')}, "
                f"<{self.lanes} x i64> poison, <{self.lanes} x i32> zeroinitializer")
        hit = fn(f"icmp eq <{self.lanes} x i64> {self.iota}, {ys}")
        return fn(f"uitofp {self.bt} {hit} to {self.vt}")


def vector_row_function(op, math, dtype, rows, width, label_dtype, index, noalias):
    """``row_function`` for rows of at most ``MAX_VECTORS`` registers: each row one vector,
    read whole before anything is written (so the output may be the input's buffer).

    A row's work is one long dependent chain (maximum, exponentials, sum, log, output);
    ``ROW_BLOCK`` rows are written phase by phase side by side, so that the core overlaps
    their chains."""
    columns = row_columns.block_rows(dtype, rows, width)
    fn = Function("kernel", params(len(noalias), noalias),
                  attrs=KERNEL_ATTRS + (row_columns.attributes() if columns else ""))
    ptrs = dict(zip(("out", "x", "labels", "status", "kept"),
                    (f"%p{i}" if i is not None else None for i in index)))
    vr = _VectorRow(fn, math, dtype, width, vector_lanes(dtype, width))
    done = 0
    if columns:  # blocks of rows a column a vector (``row_columns``)
        row_columns.scratch(fn, dtype, op, width, columns)

        def check(r0):
            with fn.loop(columns) as lk:
                _label(fn, ptrs["labels"], label_dtype, fn.add(r0, lk.i), width, ptrs["status"])
        with fn.loop(rows // columns) as lb:
            row_columns.column_block(op, fn, math, dtype, width, columns, ptrs,
                                     fn.mul(lb.i, columns), label_dtype, check)
        done = rows - rows % columns
    block = ROW_BLOCK if rows - done >= ROW_BLOCK else 1
    if (rows - done) // block:
        with fn.loop((rows - done) // block) as lb:
            _vector_rows(op, vr, [fn.add(fn.add(fn.mul(lb.i, block), k), done)
                                  for k in range(block)], ptrs, label_dtype, width)
    if (rows - done) % block:
        with fn.loop((rows - done) % block) as lt:
            _vector_rows(op, vr, [fn.add(lt.i, rows - (rows - done) % block)], ptrs,
                         label_dtype, width)
    fn.ret()
    return fn


def _vector_rows(op, vr, rs, ptrs, label_dtype, width):
    """The rows ``rs`` (i64 indices), each phase written for all of them before the next."""
    fn, t = vr.fn, vr.t
    ys = [_label(fn, ptrs["labels"], label_dtype, r, width, ptrs["status"])
          if op.startswith("sparse") else None for r in rs]
    vs = [vr.load(fn.gep(t, ptrs["x"], fn.mul(r, width)), -np.inf) for r in rs]
    ms = [vr.max(v) for v in vs]
    shs = [vr.shifted(v, m) for v, m in zip(vs, ms)]
    es = [vr.exp(sh) for sh in shs]
    ss = [vr.sum(e) for e in es]
    probabilities = op in ("softmax", "sparse_softmax_xent_grad", "softmax_xent_grad")
    logs = None if probabilities else _logs(vr, ss)
    for k, (r, y, sh, e, s) in enumerate(zip(rs, ys, shs, es, ss)):
        orow = fn.gep(t, ptrs["out"], fn.mul(r, width))
        if probabilities:
            _vector_probabilities(op, vr, e, s, y, ptrs["labels"], r, width, orow)
        else:
            _vector_logs(op, vr, sh, e, s, logs[k], y, ptrs["labels"], r, width, orow,
                         ptrs["out"], ptrs["kept"])


def _logs(vr, ss):
    """The logs of the row sums ``ss``: one vector log for a block."""
    fn, t, n = vr.fn, vr.t, len(ss)
    if n == 1:
        return [vr.math.call(fn, "log", vr.dtype, ss[0])]
    v = "poison"
    for k, s in enumerate(ss):
        v = fn(f"insertelement <{n} x {t}> {v}, {t} {s}, i64 {k}")
    v = vr.math.call(fn, "log", vr.dtype, v, lanes=n)
    return [fn(f"extractelement <{n} x {t}> {v}, i64 {k}") for k in range(n)]


def _vector_probabilities(op, vr, e, s, y, labels, r, width, orow):
    """softmax and the cross-entropy gradients of one row, from its exponentials."""
    fn, t = vr.fn, vr.t
    p = vr.op("fdiv", e, vr.splat(s))
    if op == "sparse_softmax_xent_grad":
        p = vr.op("fsub", p, vr.one_hot(y))
    elif op == "softmax_xent_grad":
        yv = vr.load(fn.gep(t, labels, fn.mul(r, width)), 0.0)
        p = vr.op("fsub", vr.op("fmul", p, vr.splat(vr.sum(yv))), yv)
    vr.store(p, orow)


def _vector_logs(op, vr, sh, e, s, logs, y, labels, r, width, orow, out, kept):
    """The ops that take the log of the row sum (``logs``): log_softmax and the losses."""
    fn, t = vr.fn, vr.t
    if op == "log_softmax":
        vr.store(vr.op("fsub", sh, vr.splat(logs)), orow)
    elif op in ("softmax_xent", "softmax_xent_with_grad"):
        yv = vr.load(fn.gep(t, labels, fn.mul(r, width)), 0.0)
        terms = vr.op("fmul", yv, vr.op("fsub", vr.splat(logs), sh))
        zero = fn(f"fcmp oeq {vr.vt} {yv}, zeroinitializer")  # (0 log 0 = 0: _dense_term)
        terms = fn(f"select {vr.bt} {zero}, {vr.vt} zeroinitializer, {vr.vt} {terms}")
        fn.store(t, vr.sum(terms), fn.gep(t, out if op == "softmax_xent" else kept, r))
        if op == "softmax_xent_with_grad":  # (as _vector_probabilities' softmax_xent_grad)
            p = vr.op("fdiv", e, vr.splat(s))
            vr.store(vr.op("fsub", vr.op("fmul", p, vr.splat(vr.sum(yv))), yv), orow)
    else:  # the loss log(sum) - shifted[y]; with_grad also writes the gradient
        loss = fn(f"fsub {t} {logs}, {fn(f'extractelement {vr.vt} {sh}, i64 {y}')}")
        fn.store(t, loss, fn.gep(t, out if op == "sparse_softmax_xent" else kept, r))
        if op == "sparse_softmax_xent_with_grad":
            vr.store(vr.op("fsub", vr.op("fdiv", e, vr.splat(s)), vr.one_hot(y)), orow)


def _kept(L):
    """{*_with_grad node: the private Buf of the losses it kept}."""
    return vars(L).setdefault("kept_losses", {})


@lowers(*_ROW_OPS)
def lower_row(L, n):
    x = n.inputs[0]
    width = x.shape[-1]
    rows = int(np.prod(x.shape[:-1], dtype=np.int64))
    fallible = n.op_name.startswith("sparse")
    label_dtype = n.inputs[1].dtype if len(n.inputs) > 1 else None
    if n.opdef.keeps_loss:
        _kept(L)[n] = L.arena(max(rows, 1) * x.dtype.itemsize)
    # (out, x, labels, status, kept losses: those the op has, then their parameter numbers)
    slots = [L.out(n), L.buf(x), label_dtype and L.buf(n.inputs[1]),
             L.status() if fallible else None, _kept(L).get(n)]
    uniq, index = L.distinct([b for b in slots if b is not None])
    index = iter(index)
    index = [None if b is None else next(index) for b in slots]
    build = vector_row_function if vector_lanes(x.dtype, width) and rows else row_function
    fn = L.built(build, n.op_name, L.math, x.dtype, rows, width, label_dtype, tuple(index),
                 tuple(L.noalias(uniq)))
    L.call(fn, uniq, n, fallible=fallible)


@lowers("kept_loss")
def lower_kept_loss(L, n):
    """The losses its input's kernel kept, copied into the node's buffer."""
    L.copy(L.out(n), _kept(L)[n.inputs[0]], tuple(n.shape), n.dtype, n)


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
    # (strictly better, or v NaN while best is not: "unordered or better" while best is
    # ordered)
    return fn(f"and i1 {fn(f'fcmp u{rel} {t} {v}, {best}')}, "
              f"{fn(f'fcmp ord {t} {best}, {best}')}")
