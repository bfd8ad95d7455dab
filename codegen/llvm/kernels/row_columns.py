"""Softmax-family rows narrower than a vector, a block of rows at a time, a column a vector.

``nn.vector_row_function`` holds a row of 10 classes in one 16-lane register: 6 lanes of each
exponential idle, the row's maximum and sum horizontal reductions (four shuffle steps each),
every row one long dependent chain. Here a block of ``L`` rows (the host's lanes) is read as
its ``width`` columns, vector c holding element c of every row of the block (gathers):

    m         = max over c of x[:, c]              elementwise, no shuffles
    sh[:, c]  = x[:, c] - m (0 where equal)        e[:, c] = exp(sh[:, c]): every lane used
    s         = sum over c of e[:, c]              one log for L rows
    out[:, c] = e[:, c] / s - (y == c), ...        (each op as ``nn._vector_probabilities``
                                                    and ``nn._vector_logs`` write it)

Columns, exponentials and outputs wait in a block on the stack between three loops over the
columns, so that the kernel inlines one vector exp and one log whatever the width; the rows'
outputs go back row-major by gathers of fixed indices from that block, one whole vector
store each. The sum adds the columns in order, the maximum is ``a > b ? a : b`` as the row
kernels' (a NaN still makes every output of its row NaN).

W2 (32 rows of 10 classes, Zen 5, one thread): see ``COLUMN_BLOCKS``.
"""
from ..ir import float_literal, val_type
from . import gemm

# Softmax-family rows of ``2 <= width < lanes`` run in blocks of ``lanes`` rows where there
# is at least one block (rows past the last whole block: ``nn``'s row kernel).
COLUMN_BLOCKS = True


def block_rows(dtype, rows, width):
    """Rows per column block (the host's lanes of ``dtype``), or 0: rows one by one."""
    unit = gemm.vector_unit() if COLUMN_BLOCKS else None
    if unit is None:
        return 0
    lanes = unit.bytes // dtype.itemsize
    return lanes if 2 <= width < lanes and rows >= lanes else 0


def attributes():
    """Function attributes letting the block's ``<L x t>`` vectors be whole registers."""
    bits = gemm.vector_unit().bytes * 8
    return f' "prefer-vector-width"="{bits}" "min-legal-vector-width"="{bits}"'


class _Block:
    """Vectors of one block of ``n`` rows: ``<n x t>`` values and ``<n x i32>`` indices."""

    def __init__(self, fn, math, dtype, width, n):
        self.fn, self.math, self.dtype, self.w, self.n = fn, math, dtype, width, n
        self.t = val_type(dtype)
        self.vt, self.it, self.bt = f"<{n} x {self.t}>", f"<{n} x i32>", f"<{n} x i1>"
        sfx = "f32" if self.t == "float" else "f64"
        self.gather_name = f"llvm.masked.gather.v{n}{sfx}.v{n}p0"
        self.size = dtype.itemsize

    def lit(self, v):
        return f"splat ({self.t} {float_literal(v, self.dtype)})"

    def ints(self, values):
        return "<" + ", ".join(f"i32 {v}" for v in values) + ">"

    def isplat(self, v):
        return gemm.splat(self.fn, "i32", v, self.n)

    def gather(self, base, idx):
        """``base[idx[k]]`` for every lane k."""
        fn = self.fn
        ptrs = fn(f"getelementptr inbounds {self.t}, ptr {base}, {self.it} {idx}", "gp")
        return fn.call(self.vt, self.gather_name,
                       [(f"<{self.n} x ptr>", ptrs), ("i32", str(self.size)),
                        (self.bt, "splat (i1 true)"), (self.vt, "poison")], "g")

    def column(self, buf, c):
        return self.fn.gep(self.t, buf, self.fn.mul(c, self.n))

    def op(self, name, a, b):
        return self.fn(f"{name} {self.vt} {a}, {b}")

    def select(self, cond, a, b):
        return self.fn(f"select {self.bt} {cond}, {self.vt} {a}, {self.vt} {b}")


def column_block(op, fn, math, dtype, width, n, ptrs, r0, label_dtype, check_labels):
    """Rows ``r0 .. r0 + n - 1`` of ``op`` (``nn._ROW_OPS``); ``ptrs`` as
    ``nn.vector_row_function``'s; ``check_labels(r0)`` writes the per-row label checks run
    when some label of the block is outside [0, width) (they leave the kernel)."""
    b = _Block(fn, math, dtype, width, n)
    t, vt, w = b.t, b.vt, width
    xb = fn.gep(t, ptrs["x"], fn.mul(r0, w))
    cols, exps = fn.gep(t, "%cols", "0"), fn.gep(t, "%exps", "0")
    sparse, dense = op.startswith("sparse"), op.startswith("softmax_xent")
    y = _labels(b, ptrs, r0, label_dtype, check_labels) if sparse else None
    rows = b.ints(k * w for k in range(n))  # each row's first element in the block

    # 1: the columns (kept), their maximum; dense labels' columns and sums
    with fn.loop(w, "c") as lc:
        m = lc.carry(vt, b.lit(float("-inf")))
        ysum = lc.carry(vt, b.lit(0.0)) if dense else None
        c32 = fn(f"trunc i64 {lc.i} to i32")
        idx = fn(f"add {b.it} {rows}, {b.isplat(c32)}")
        col = b.gather(xb, idx)
        fn.store(vt, col, b.column(cols, lc.i))
        lc.update(m, b.select(fn(f"fcmp ogt {vt} {col}, {m}"), col, m))
        if dense:
            yc = b.gather(fn.gep(t, ptrs["labels"], fn.mul(r0, w)), idx)
            fn.store(vt, yc, b.column("%ycols", lc.i))
            lc.update(ysum, b.op("fadd", ysum, yc))

    # 2: shifted columns (kept where an op reads them again), exponentials, their sums
    keep_shifted = op in ("log_softmax",) or dense
    with fn.loop(w, "c") as lc:
        s = lc.carry(vt, b.lit(0.0))
        shy = lc.carry(vt, b.lit(0.0)) if sparse and op != "sparse_softmax_xent_grad" else None
        col = fn.load(vt, b.column(cols, lc.i))
        top = fn(f"fcmp oeq {vt} {col}, {m}")
        sh = b.select(top, "zeroinitializer", b.op("fsub", col, m))
        e = math.call(fn, "exp", dtype, sh, lanes=n)
        lc.update(s, b.op("fadd", s, e))
        fn.store(vt, e, b.column(exps, lc.i))
        if keep_shifted:
            fn.store(vt, sh, b.column(cols, lc.i))
        if shy is not None:
            hit = fn(f"icmp eq {b.it} {y}, {b.isplat(fn(f'trunc i64 {lc.i} to i32'))}")
            lc.update(shy, b.select(hit, sh, shy))
    probabilities = op in ("softmax", "sparse_softmax_xent_grad", "softmax_xent_grad")
    logs = None if probabilities else math.call(fn, "log", dtype, s, lanes=n)
    losses = {"sparse_softmax_xent": "out", "sparse_softmax_xent_with_grad": "kept",
              "softmax_xent": "out", "softmax_xent_with_grad": "kept"}.get(op)
    if op in ("sparse_softmax_xent", "sparse_softmax_xent_with_grad"):
        fn.store(vt, b.op("fsub", logs, shy), fn.gep(t, ptrs[losses], r0))
    if op in ("sparse_softmax_xent", "softmax_xent"):
        if op == "softmax_xent":
            fn.store(vt, _dense_loss(b, logs), fn.gep(t, ptrs[losses], r0))
        return
    if op == "softmax_xent_with_grad":
        fn.store(vt, _dense_loss(b, logs), fn.gep(t, ptrs[losses], r0))

    # 3: each output column, in place of its exponentials
    with fn.loop(w, "c") as lc:
        e = fn.load(vt, b.column(exps, lc.i))
        if op == "log_softmax":
            out = b.op("fsub", fn.load(vt, b.column(cols, lc.i)), logs)
        else:
            out = b.op("fdiv", e, s)
            if sparse:
                hit = fn(f"icmp eq {b.it} {y}, {b.isplat(fn(f'trunc i64 {lc.i} to i32'))}")
                out = b.op("fsub", out, fn(f"uitofp {b.bt} {hit} to {vt}"))
            elif dense:
                out = b.op("fsub", b.op("fmul", out, ysum),
                           fn.load(vt, b.column("%ycols", lc.i)))
        fn.store(vt, out, b.column(exps, lc.i))
    _write_rows(b, exps, fn.gep(t, ptrs["out"], fn.mul(r0, w)))


def _labels(b, ptrs, r0, label_dtype, check_labels):
    """The block's labels as ``<n x i32>`` (checked: ``check_labels`` where one is outside
    [0, width), which never returns)."""
    fn, n = b.fn, b.n
    lt = val_type(label_dtype)
    raw = fn.load(f"<{n} x {lt}>", fn.gep(lt, ptrs["labels"], r0))
    wide = raw if lt == "i64" else fn(f"sext <{n} x {lt}> {raw} to <{n} x i64>")
    bad = fn(f"icmp uge <{n} x i64> {wide}, splat (i64 {b.w})")
    any_bad = fn(f"icmp ne i{n} {fn(f'bitcast {b.bt} {bad} to i{n}')}, 0")
    with fn.if_then(any_bad):
        check_labels(r0)
    return fn(f"trunc <{n} x i64> {wide} to {b.it}")


def _dense_loss(b, logs):
    """sum over c of y[:, c] (log s - sh[:, c]), a term 0 where y is (0 log 0 = 0)."""
    fn, vt = b.fn, b.vt
    with fn.loop(b.w, "c") as lc:
        acc = lc.carry(vt, b.lit(0.0))
        yc = fn.load(vt, b.column("%ycols", lc.i))
        term = b.op("fmul", yc, b.op("fsub", logs, fn.load(vt, b.column("%cols", lc.i))))
        zero = fn(f"fcmp oeq {vt} {yc}, zeroinitializer")
        lc.update(acc, b.op("fadd", acc, b.select(zero, "zeroinitializer", term)))
    return acc


def _write_rows(b, block, out):
    """``out[q n + k]`` (the block's rows, row-major) from the column layout: element
    (row r, column c) at ``block[c n + r]``, gathered a vector at a time."""
    fn, n, w = b.fn, b.n, b.w
    with fn.loop(w, "q") as lq:
        q = fn(f"trunc i64 {lq.i} to i32")
        flat = fn(f"add {b.it} {b.isplat(fn(f'mul i32 {q}, {n}'))}, {b.ints(range(n))}")
        r = fn(f"udiv {b.it} {flat}, splat (i32 {w})")
        c = fn(f"sub {b.it} {flat}, {fn(f'mul {b.it} {r}, splat (i32 {w})')}")
        idx = fn(f"add {b.it} {fn(f'mul {b.it} {c}, splat (i32 {n})')}, {r}")
        fn.store(b.vt, b.gather(block, idx), fn.gep(b.t, out, fn.mul(lq.i, n)))


def scratch(fn, dtype, op, width, n):
    """The stack blocks ``column_block`` uses (in the kernel's entry block)."""
    t = val_type(dtype)
    fn.emit(f"%cols = alloca {t}, i64 {width * n}, align 64")
    fn.emit(f"%exps = alloca {t}, i64 {width * n}, align 64")
    if op.startswith("softmax_xent"):
        fn.emit(f"%ycols = alloca {t}, i64 {width * n}, align 64")


__all__ = ["block_rows", "column_block", "scratch", "attributes", "COLUMN_BLOCKS"]
