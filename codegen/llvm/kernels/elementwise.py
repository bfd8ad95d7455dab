"""Kernels of the LLVM backend: elementwise and fused loops, reductions, matmul.

Each ``@lowers(op)`` function receives the ``Lowering`` and one node, builds a kernel function
for the node's concrete shapes (sizes are literals, so LLVM sees every trip count) and records
its call. The other kernel families (nn, data movement, random, windows, collective) register
themselves the same way; ``lower.lower_program`` imports them all.
"""
import numpy as np

from ....ir import scalar as S
from ....ir.passes.common import splat
from ....ir.shapes import normalize_axes
from ..buffers import const_value, is_elementwise
from .. import parallel
from .gemm import gemm_kernel, native_gemm_ok, stores_tiles_once, subtract_in_place
from .transpose import transpose_into
from .vector_body import vector_body_ok
from ..ir import Function, float_literal, literal, mem_type, val_type
from ..registry import KERNELS, lowers
from ..math import ESTIMATE_MAX_BYTES
from ..loops import (broadcast_strides, coalesce, contiguous_strides,
                         elementwise_function, fill_function, load_value, loop_nest,
                         multi_elementwise_function, params)
from ..scalar import render_expr


# -- elementwise and fused ----------------------------------------------------------------------
def scalar_const(node):
    """The value every element of a constant equals (inlined into loops), else None."""
    if node.op_name == "const":
        return splat(node)
    if node.opdef.compile_time and int(np.prod(node.shape)) == 1:
        return const_value(node).reshape(-1)[0].item()
    return None


def elementwise_operands(L, n, shape, body, extra=()):
    """Bind ``body``'s args to buffers: (body over parameter numbers, buffers, operands).

    Parameter 0 is the output; inputs the body does not read get no parameter, splat
    constants become literals, and an input stored in the output's bytes (in place) or
    repeated reads parameter 0 / its first parameter.
    """
    out = L.out(n)
    keys = [(out, n.dtype, contiguous_strides(n.shape))]
    used = {e.value for e in body.walk() if e.op == "arg"}
    subst = []
    for i, x in enumerate(n.inputs):
        c = scalar_const(x) if i in used else None
        if i not in used or c is not None:
            subst.append(S.const(0 if c is None else c, x.dtype))
            continue
        key = (L.buf(x), x.dtype, broadcast_strides(x.shape, shape))
        if key not in keys:
            keys.append(key)
        subst.append(S.arg(keys.index(key), x.dtype))
    for key in extra:  # operands beyond the node's inputs: arg(len(inputs) + j)
        if key not in keys:
            keys.append(key)
        subst.append(S.arg(keys.index(key), key[1]))
    return (S.substitute(body, subst), [k[0] for k in keys],
            [(dtype, 0, strides) for _, dtype, strides in keys])


def lower_elementwise(L, n):
    """``out = body(inputs)`` with broadcasting; splat constants become literals. Adjacent
    elementwise nodes of one shape that share a buffer join one loop (``ElementwiseGroup``)."""
    if n.op_name == "fused":
        if n.attrs.get("reduce") is not None:
            return lower_fused_reduction(L, n)
        body = n.attrs["body"]
    else:
        body = n.opdef.scalar_body([x.dtype for x in n.inputs], n.attrs)
    extra = ()
    acc = L.gemms.extra_operand(n) if L.gemms else None
    if acc is not None:  # a sum of matmul results that BLAS accumulated (gemm_acc)
        body, extra = acc
    body, bufs, operands = elementwise_operands(L, n, n.shape, body, extra)
    keys = [(b, dt, st) for b, (dt, _, st) in zip(bufs, operands)]
    pending = L.pending
    if pending is not None and pending.add(L, n, body, keys):
        return
    L.flush()
    L.pending = ElementwiseGroup(n, body, keys)


class ElementwiseGroup:
    """Adjacent elementwise nodes of one shape lowered as ONE loop (fewer passes over memory:
    Adam's moment and parameter updates read the gradient once, for instance).

    A node joins when it has the group's shape, reads a buffer the group touches, and no
    buffer written in the loop is read through another index map (a broadcast, or other
    bytes overlapping it): then every element is written before any later member reads it
    at the same index, and never read elsewhere, so one loop computes what the sequence did.

    A member whose value only later members read (not fetched, no reader after the group)
    is not stored: its formula is inlined into the members reading it (``_inline_dead``).
    Clipping before Adam is the case: ``g * scale`` joins the moments' loop and is never
    written back (one read of ``g``, no store).
    """

    MAX_MEMBERS = 8

    def __init__(self, node, body, keys):
        self.shape, self.nodes = tuple(node.shape), [node]
        self.keys = list(keys)
        self.members = [(0, body)]

    def add(self, L, node, body, keys):
        if tuple(node.shape) != self.shape or len(self.nodes) >= self.MAX_MEMBERS:
            return False
        if not any(k in self.keys for k in keys[1:]) and keys[0] not in self.keys:
            return False  # nothing shared: separate loops vectorize as well
        union = self.keys + [k for k in keys if k not in self.keys]
        written = {self.keys[out][0] for out, _ in self.members} | {keys[0][0]}
        for i, a in enumerate(union):
            for b in union[i + 1:]:
                if a[0].overlaps(b[0]) and (a[0] in written or b[0] in written):
                    return False
        index = [union.index(k) for k in keys]
        self.members.append((index[0], _renumber(body, index)))
        self.keys = union
        self.nodes.append(node)
        L.merged += 1
        return True

    def emit(self, L):
        bufs = [k[0] for k in self.keys]
        operands = [(dt, 0, st) for _, dt, st in self.keys]
        members = self._inline_dead(L)
        L.math.estimates = sum(b.nbytes for b in bufs) <= ESTIMATE_MAX_BYTES
        if len(members) == 1 and members[0][0] == 0:
            fn = L.built(elementwise_function, L.math, self.shape, tuple(operands),
                         members[0][1], tuple(L.noalias(bufs)))
        else:
            fn = L.built(multi_elementwise_function, L.math, self.shape, tuple(operands),
                         tuple(members), tuple(L.noalias(bufs)))
        L.math.estimates = True
        L.emit_call(fn, bufs, self.nodes[0], label=" + ".join(
            f"{n.op_name} '{n.node_name}'" for n in self.nodes))

    def _dead(self, L, node):
        """Whether only later members read ``node``'s value (so it need not be stored)."""
        if node in L.fetch_bufs:
            return False
        readers = getattr(L, "ew_readers", None)
        if readers is None:  # {id(node): its readers}, built once per lowering
            readers = L.ew_readers = {}
            for n in L.p.nodes:
                for x in n.inputs:
                    readers.setdefault(id(x), []).append(n)
        return all(any(u is m for m in self.nodes) for u in readers.get(id(node), ()))

    def _inline_dead(self, L):
        """The members to run: dead ones (``_dead``) dropped, their formula substituted where
        later members read their output. A member stays when a later one overwrites a buffer
        its formula reads (the inlined copy would see the new value); so does the last."""
        members, pending = [], {}  # pending: parameter -> formula of a dropped member
        outs = [out for out, _ in self.members]
        for j, (node, (out, body)) in enumerate(zip(self.nodes, self.members)):
            args = {e.value for e in body.walk() if e.op == "arg"}
            if pending and args:
                body = S.substitute(body, [pending[k] if k in pending else
                                           S.arg(k, self.keys[k][1])
                                           for k in range(max(args) + 1)])
                args = {e.value for e in body.walk() if e.op == "arg"}
            if not args & set(outs[j + 1:]) and j + 1 < len(outs) and self._dead(L, node):
                pending[out] = body
                L.dead_stores = getattr(L, "dead_stores", 0) + 1
            else:
                pending.pop(out, None)
                members.append((out, body))
        return members


def _renumber(body, index):
    """``body`` with ``arg(k)`` replaced by ``arg(index[k])``."""
    args = {}
    for e in body.walk():
        if e.op == "arg":
            args[e.value] = S.arg(index[e.value], e.dtype)
    top = max(args, default=-1) + 1
    return S.substitute(body, [args.get(k, S.const(0, body.dtype)) for k in range(top)])


KERNELS["fused"] = lower_elementwise


def kernel_for(node):
    """The lowering function of ``node`` (elementwise ops share one), or None."""
    fn = KERNELS.get(node.op_name)
    if fn is None and is_elementwise(node):
        return lower_elementwise
    return fn


# -- reductions ---------------------------------------------------------------------------------


def identity_literal(kind, dtype):
    """The neutral element of a reduction, as an LLVM literal."""
    if kind == "sum":
        return literal(0, dtype)
    if dtype.is_floating:
        return float_literal(-np.inf if kind == "max" else np.inf, dtype)
    info = np.iinfo(dtype.np)
    return literal(info.min if kind == "max" else info.max, dtype)


def combine(fn, kind, dtype, a, b):
    """``a (+|max|min) b``; float sums may be reassociated (that is what vectorizes them)."""
    t = val_type(dtype)
    if kind == "sum":
        return fn(f"fadd reassoc nsz {t} {a}, {b}") if dtype.is_floating else \
            fn(f"add {t} {a}, {b}")
    if dtype.is_floating:
        name = "maximum" if kind == "max" else "minimum"
        return fn.call(t, f"llvm.{name}.{'f32' if t == 'float' else 'f64'}", [(t, a), (t, b)])
    name = ("u" if dtype.name == "uint8" else "s") + kind
    return fn.call(t, f"llvm.{name}.{t}", [(t, a), (t, b)])


def reduction_function(kind, math_lib, shape, axes, operands, body, noalias, scale=None):
    """``%p0[kept] = reduce(body(inputs))`` over ``axes`` of the elementwise ``shape``.

    Args:
        kind: "sum", "max" or "min"; ``scale`` divides the result (means).
        operands: per parameter (0 is the output), (dtype, base, strides); input strides are
            in the elementwise index space (0 where broadcast); the output's are computed.
        body: Expr over parameter numbers giving each element's value.

    The loop nest walks the elementwise space in row-major order. When the innermost dim is
    reduced, a register accumulator runs over it (vectorized through ``reassoc``); when it is
    kept, the output row accumulates elementwise (vectorized over the row).
    """
    fn = Function("kernel", params(len(operands), noalias))
    dtype = operands[0][0]
    t, mt = val_type(dtype), mem_type(dtype)
    kept = [d for d in range(len(shape)) if d not in axes]
    out_strides = [0] * len(shape)
    for d, s in zip(kept, contiguous_strides([shape[d] for d in kept])):
        out_strides[d] = s
    n_out = int(np.prod([shape[d] for d in kept], dtype=np.int64))
    init = identity_literal(kind, dtype)
    with fn.loop(n_out) as lp:
        fn.store(mt, init, fn.gep(mt, "%p0", lp.i))
    cshape, cstrides = coalesce(tuple(shape), [tuple(out_strides)] + [o[2] for o in operands[1:]])
    read = sorted({e.value for e in body.walk() if e.op == "arg"})

    def value(offs):
        vals = {k: load_value(fn, operands[k][0], fn.gep(mem_type(operands[k][0]), f"%p{k}",
                                                         offs[k])) for k in read}
        return render_expr(fn, math_lib, body, vals)
    bases = [0] + [o[1] for o in operands[1:]]
    if _row_vector_case(cshape, cstrides, body):
        _vector_rows(fn, kind, dtype, cshape, cstrides, bases, init, body.value)
    elif _chunked_sum(kind, scale, n_out, cshape, dtype):
        _sum_in_chunks(fn, dtype, cshape[0], cstrides, bases, value)
    elif cshape and cstrides[0][-1] == 0:
        def row(offs):
            with fn.loop(cshape[-1]) as lp:
                acc = lp.carry(t, init)
                inner = [fn.add(o, fn.mul(lp.i, s[-1])) for o, s in zip(offs, cstrides)]
                lp.update(acc, combine(fn, kind, dtype, acc, value(inner)))
            po = fn.gep(mt, "%p0", offs[0])
            fn.store(mt, combine(fn, kind, dtype, fn.load(mt, po), acc), po)
        loop_nest(fn, cshape[:-1], [s[:-1] for s in cstrides], bases, row)
    else:
        def elem(offs):
            po = fn.gep(mt, "%p0", offs[0])
            fn.store(mt, combine(fn, kind, dtype, fn.load(mt, po), value(offs)), po)
        loop_nest(fn, cshape, cstrides, bases, elem)
    if scale is not None:  # a mean: integer means truncate toward zero, as TF's
        div = f"fdiv {t}" if dtype.is_floating else f"sdiv {t}"
        with fn.loop(n_out) as lp:
            po = fn.gep(mt, "%p0", lp.i)
            fn.store(mt, fn(f"{div} {fn.load(mt, po)}, {literal(scale, dtype)}"), po)
    fn.ret()
    return fn


def _chunked_sum(kind, scale, n_out, cshape, dtype):
    """A floating sum of one flat run of at least ``parallel.CHUNKS`` elements and
    ``parallel.min_work()`` work (``parallel.SUM_WEIGHT`` a element) into one value (a loss,
    a norm): summed in ``parallel.CHUNKS`` fixed ranges (``_sum_in_chunks``)."""
    return (kind == "sum" and scale is None and n_out == 1 and len(cshape) == 1
            and dtype.is_floating and cshape[0] >= parallel.CHUNKS
            and cshape[0] * parallel.SUM_WEIGHT >= parallel.min_work())


def _sum_in_chunks(fn, dtype, count, cstrides, bases, value):
    """%p0 += the sum of ``value`` over ``count`` elements, in ``parallel.CHUNKS`` ranges
    of ``ceil(count / CHUNKS)``, each summed from zero (a register accumulator, as a whole
    row is) and added to %p0 in range order. The ranges are the split loop's iterations:
    run in chunks on the pool, each range's sum goes to a partial of its own, and the
    partials are added in chunk order afterwards: the same additions in the same order, so
    the bits do not depend on the threads (nor on whether the kernel ran in chunks)."""
    t, mt = val_type(dtype), mem_type(dtype)
    chunks = parallel.CHUNKS
    size = -(-count // chunks)
    fn.partials = {0: dtype.itemsize}
    fn.partial_dtype = dtype
    with fn.loop(chunks, split=count * parallel.SUM_WEIGHT) as lc:
        lo = fn.mul(lc.i, size)
        hi = fn.call("i64", "llvm.umin.i64", [("i64", fn.add(lo, size)), ("i64", str(count))])
        with fn.loop(fn(f"sub i64 {hi}, {lo}")) as lp:
            acc = lp.carry(t, identity_literal("sum", dtype))
            i = fn.add(lo, lp.i)
            offs = [fn.add(str(b), fn.mul(i, st[0])) for b, st in zip(bases, cstrides)]
            lp.update(acc, combine(fn, "sum", dtype, acc, value(offs)))
        # (in order, as the partials are added: no reassociation across the ranges)
        fn.store(mt, fn(f"fadd {t} {fn.load(mt, '%p0')}, {acc}"), "%p0")


def _row_vector_case(cshape, cstrides, body):
    """A plain input reduced over rows of a short kept row (a bias gradient: [N, C] -> [C])."""
    return (len(cshape) >= 2 and body.op == "arg" and cstrides[0][-1] == 1
            and cstrides[0][-2] == 0 and cstrides[body.value][-1] == 1 and cshape[-1] <= 64)


def _vector_rows(fn, kind, dtype, cshape, cstrides, bases, init, k):
    """Sum rows as vectors carried in a register, then add the result to the output row."""
    t, c = val_type(dtype), cshape[-1]
    vt = f"<{c} x {t}>"
    sfx = f"v{c}{'f32' if t == 'float' else 'f64' if t == 'double' else t}"

    def vcombine(a, b):
        if kind == "sum":
            return fn(f"fadd reassoc nsz {vt} {a}, {b}") if dtype.is_floating else \
                fn(f"add {vt} {a}, {b}")
        name = ("maximum" if kind == "max" else "minimum") if dtype.is_floating else \
            ("u" if dtype.name == "uint8" else "s") + kind
        return fn.call(vt, f"llvm.{name}.{sfx}", [(vt, a), (vt, b)])

    nrows, step = cshape[-2], cstrides[k][-2]
    lanes = ROW_ACCUMULATORS if nrows >= 4 * ROW_ACCUMULATORS else 1

    def rows(offs):
        # several independent accumulators hide the add's latency; a tail loop takes the rest
        with fn.loop(nrows // lanes) as lp:
            accs = [lp.carry(vt, f"splat ({t} {init})") for _ in range(lanes)]
            base = fn.add(offs[k], fn.mul(lp.i, step * lanes))
            for j, acc in enumerate(accs):
                v = fn.load(vt, fn.gep(t, f"%p{k}", fn.add(base, j * step)))
                lp.update(acc, vcombine(acc, v))
        total = accs[0]
        for acc in accs[1:]:
            total = vcombine(total, acc)
        if nrows % lanes:
            with fn.loop(nrows % lanes) as lp:
                acc = lp.carry(vt, total)
                row = fn.add(lp.i, nrows - nrows % lanes)
                v = fn.load(vt, fn.gep(t, f"%p{k}", fn.add(offs[k], fn.mul(row, step))))
                lp.update(acc, vcombine(acc, v))
            total = acc
        po = fn.gep(t, "%p0", offs[0])
        fn.store(vt, vcombine(fn.load(vt, po), total), po)
    loop_nest(fn, cshape[:-2], [st[:-2] for st in cstrides], bases, rows)


ROW_ACCUMULATORS = 4  # vector accumulators per row reduction (hides the add's latency)


def lower_reduction(L, n, x, axes, kind, scale=None):
    """Reduce input ``x`` of ``n`` over ``axes`` into ``n``'s buffer."""
    bufs = [L.out(n), L.buf(x)]
    operands = [(n.dtype, 0, ()), (x.dtype, 0, contiguous_strides(x.shape))]
    fn = L.built(reduction_function, kind, L.math, tuple(x.shape), frozenset(axes),
                 tuple(operands), S.arg(1, x.dtype), tuple(L.noalias(bufs)), scale)
    L.call(fn, bufs, n)


@lowers("reduce_sum", "reduce_mean", "reduce_max", "reduce_min")
def lower_reduce(L, n):
    x = n.inputs[0]
    axes = normalize_axes(n.attrs.get("axis"), x.rank)
    kind, scale = n.opdef.reduce, None
    if kind == "mean":  # a sum, scaled
        kind, scale = "sum", float(np.prod([x.shape[a] for a in axes]))
    lower_reduction(L, n, x, axes, kind, scale)


def lower_fused_reduction(L, n):
    """A fused elementwise body reduced over some axes (the fusion pass's epilogue)."""
    shape = tuple(n.attrs["shape"])
    kind, axes, _ = n.attrs["reduce"]
    body, bufs, operands = elementwise_operands(L, n, shape, n.attrs["body"])
    operands[0] = (n.dtype, 0, ())
    scale = float(np.prod([shape[a] for a in axes])) if kind == "mean" else None
    fn = L.built(reduction_function, "sum" if kind == "mean" else kind, L.math, shape,
                 frozenset(axes), tuple(operands), body, tuple(L.noalias(bufs)), scale)
    L.call(fn, bufs, n)


@lowers("sum_to_like")
def lower_sum_to_like(L, n):
    """A gradient summed back to an input's shape: a reduction once shapes are concrete."""
    g, like = n.inputs
    lead = g.rank - like.rank
    axes = set(range(lead)) | {lead + i for i, d in enumerate(like.shape)
                               if d == 1 and g.shape[lead + i] != 1}
    if not axes:
        L.copy(L.out(n), L.buf(g), n.shape, n.dtype, n)
        return
    lower_reduction(L, n, g, axes, "sum")


# -- matmul -------------------------------------------------------------------------------------
def _matrix_strides(shape, batch):
    """Per batch dim, the element stride between consecutive matrices (0 when broadcast)."""
    size = shape[-1] * shape[-2]
    return tuple(s * size for s in broadcast_strides(tuple(shape[:-2]), batch))


def gemm_function(dtype, batch, strides, dims, flags, index, noalias, int_bits=32, beta=0.0):
    """Call BLAS gemm once per batch entry: ``C[b] = op(A[b]) op(B[b])`` (row-major).

    Args:
        batch: batch shape; strides: (C, A, B) element strides per batch dim.
        dims: (M, N, K, lda, ldb); flags: (transpose_a, transpose_b).
        index: parameter index of (gemm pointer, C, A, B) (A and B may share one).
        int_bits: width of the Fortran integer arguments (32, or 64 for an ILP64 BLAS).
        beta: 1.0 adds the product to C (accumulation), 0.0 overwrites C.
    """
    fn = Function("kernel", params(max(index) + 1, noalias))
    t = val_type(dtype)
    m, n, k, lda, ldb = dims

    def slot(ty, value):
        p = fn(f"alloca {ty}", "a")
        fn.store(ty, value, p)
        return p
    ta, tb = (slot("i8", ord("T" if f else "N")) for f in flags)
    ints = {name: slot(f"i{int_bits}", v) for name, v in
            (("m", n), ("n", m), ("k", k), ("lda", lda), ("ldb", ldb), ("ldc", n))}
    alpha, beta = slot(t, float_literal(1.0, dtype)), slot(t, float_literal(beta, dtype))
    g, c, a, b = (f"%p{i}" for i in index)

    def call(offs):
        pc, pa, pb = (fn.gep(t, base, off) for base, off in zip((c, a, b), offs))
        # Column-major C^T = op(B)^T op(A)^T: B first, with B's flag (see runtime.blas).
        fn.emit(f"call void {g}(ptr {tb}, ptr {ta}, ptr {ints['m']}, ptr {ints['n']}, "
                f"ptr {ints['k']}, ptr {alpha}, ptr {pb}, ptr {ints['ldb']}, ptr {pa}, "
                f"ptr {ints['lda']}, ptr {beta}, ptr {pc}, ptr {ints['ldc']})")
    shape, cstrides = coalesce(tuple(batch), list(strides))
    loop_nest(fn, shape, cstrides, [0, 0, 0], call)
    fn.ret()
    return fn


def int_matmul_function(dtype, batch, strides, dims, flags, noalias):
    """Integer matmul (no BLAS): a plain triple loop per batch entry."""
    fn = Function("kernel", params(3, noalias))
    t = val_type(dtype)
    m, n, k, lda, ldb = dims
    ta, tb = flags

    def one(offs):
        with fn.loop(m) as li, fn.loop(n) as lj:
            with fn.loop(k) as lk:
                acc = lk.carry(t, "0")
                ia = fn.add(offs[1], fn.add(fn.mul(li.i, 1 if ta else lda),
                                            fn.mul(lk.i, lda if ta else 1)))
                ib = fn.add(offs[2], fn.add(fn.mul(lk.i, 1 if tb else ldb),
                                            fn.mul(lj.i, ldb if tb else 1)))
                prod = fn(f"mul {t} {fn.load(t, fn.gep(t, '%p1', ia))}, "
                          f"{fn.load(t, fn.gep(t, '%p2', ib))}")
                lk.update(acc, fn(f"add {t} {acc}, {prod}"))
            ic = fn.add(offs[0], fn.add(fn.mul(li.i, n), lj.i))
            fn.store(t, acc, fn.gep(t, "%p0", ic))
    shape, cstrides = coalesce(tuple(batch), list(strides))
    loop_nest(fn, shape, cstrides, [0, 0, 0], one)
    fn.ret()
    return fn


@lowers("matmul")
def lower_matmul(L, n):
    a, b = n.inputs
    ta, tb = bool(n.attrs.get("transpose_a")), bool(n.attrs.get("transpose_b"))
    m, nn = n.shape[-2], n.shape[-1]
    k = a.shape[-2] if ta else a.shape[-1]
    batch = tuple(n.shape[:-2])
    strides = [_matrix_strides(n.shape, batch), _matrix_strides(a.shape, batch),
               _matrix_strides(b.shape, batch)]
    if batch and not ta and all(s == 0 for s in strides[2]) and tuple(a.shape[:-2]) == batch:
        # A batched, B shared: the batch folds into one GEMM with M' = batch * M rows.
        m, batch, strides = m * int(np.prod(batch)), (), [(), (), ()]
    dims = (m, nn, k, a.shape[-1], b.shape[-1])
    if int(np.prod(n.shape)) == 0 or k == 0:  # BLAS rejects zero leading dimensions
        if int(np.prod(n.shape)):
            fill(L, L.out(n), n.shape, n.dtype, 0, n)  # an empty sum: zeros
        return
    if not n.dtype.is_floating:
        bufs = [L.out(n), L.buf(a), L.buf(b)]
        fn = int_matmul_function(n.dtype, batch, strides, dims, (ta, tb), L.noalias(bufs))
        L.call(fn, bufs, n)
        return
    plan = L.gemms
    if plan is not None and plan.replaces(L, n):  # batched or stacked (gemm_acc)
        return
    out, beta, bbuf = L.out(n), 0.0, L.buf(b)
    if plan is not None and n in plan.gemm:  # a term of a sum (gemm_acc)
        out, beta = plan.gemm[n]
    if not batch:
        bbuf, tb, dims = _b_for_native(L, n, bbuf, dims, (ta, tb), native_gemm_ok)
    emit_gemm(L, n, out, L.buf(a), bbuf, dims, (ta, tb), beta, batch, strides)


def _b_for_native(L, n, bbuf, dims, flags, native):
    """(B's buffer, tb, dims) for the 2-D product of ``n``: B^T as ``gemm_acc`` keeps it
    contiguous for several GEMMs, or B^T copied contiguous when that makes the GEMM native
    (``native(dtype, dims, flags, threads)``: one column panel; wider GEMMs pack B^T
    themselves): the copy costs N*K moves against M*N*K multiply-adds, and BLAS ran A B^T
    slower (128x256x256: 414k cycles against 294k + the copy; 128x256x10: 52k against 16k);
    else as they are."""
    ta, tb = flags
    plan, nn = L.gemms, dims[1]
    if plan is not None and n in plan.transposed:
        return plan.transposed[n], False, dims[:4] + (nn,)
    if tb and dims[2] and native(n.dtype, dims[:4] + (nn,), (ta, False), L.blas_threads) \
            and not native(n.dtype, dims, (ta, True), L.blas_threads):
        b = n.inputs[1]
        bt = L.arena(int(np.prod(b.shape)) * b.dtype.itemsize)
        transpose_into(L, bt, bbuf, b.shape[0], b.shape[1], b.dtype, n)
        return bt, False, dims[:4] + (nn,)
    return bbuf, tb, dims


def emit_gemm(L, node, out, a, b, dims, flags, beta=0.0, batch=(), strides=((), (), ())):
    """``out = op(a) op(b) (+ out when beta = 1)`` on buffers: a native loop for small GEMMs
    (``gemm``), else a BLAS call; ``dims`` is (M, N, K, lda, ldb) of the row-major
    operands (see ``gemm_function``)."""
    if native_gemm_ok(node.dtype, dims, flags, L.blas_threads):
        uniq, index = L.distinct([out, a, b])
        fn = L.built(gemm_kernel, node.dtype, tuple(batch), tuple(strides), tuple(dims),
                     tuple(flags), tuple(index), tuple(L.noalias(uniq)), beta)
        L.call(fn, uniq, node)
        L.gemm_calls["native"] += 1
        return
    L.gemm_calls["blas"] += 1
    gemm, bits = L.blas(node.dtype)
    uniq, index = L.distinct([gemm, out, a, b])
    noalias = L.noalias(uniq)
    noalias[0] = False
    fn = L.built(gemm_function, node.dtype, tuple(batch), tuple(strides), tuple(dims),
                 tuple(flags), tuple(index), tuple(noalias), bits, beta)
    L.call(fn, uniq, node)


@lowers("subtract_matmul")
def lower_subtract_matmul(L, n):
    """``w - op(a) op(b)`` (2-D): w into the output (nothing to copy when in place), then a
    native GEMM subtracting each tile's product as it stores it; a GEMM the native kernel
    cannot do so (BLAS, a packed or transposed B) computes the product into a private buffer
    that a loop then subtracts."""
    w, a, b = n.inputs
    ta, tb = bool(n.attrs.get("transpose_a")), bool(n.attrs.get("transpose_b"))
    m, nn = n.shape
    k = a.shape[0] if ta else a.shape[1]
    dims = (m, nn, k, a.shape[1], b.shape[1])
    out, bbuf, plan = L.out(n), L.buf(b), L.gemms
    if m * nn == 0:
        return
    if plan is not None and n in plan.transposed:  # B^T kept contiguous (gemm_acc)
        bbuf, tb, dims = plan.transposed[n], False, dims[:4] + (nn,)
    if k and subtract_in_place(n.dtype, dims, (ta, tb), L.blas_threads):
        L.copy(out, L.buf(w), tuple(n.shape), n.dtype, n)
        _native_tiles(L, n, [out, L.buf(a), bbuf], dims, (ta, tb), subtract=True)
        return
    product = _product_apart(L, n, L.buf(a), bbuf, dims, (ta, tb))
    strides = contiguous_strides(tuple(n.shape))
    operands = [(n.dtype, 0, strides)] * 3
    body = S.arg(1, n.dtype) - S.arg(2, n.dtype)
    bufs = [out, L.buf(w), product]
    fn = elementwise_function(L.math, tuple(n.shape), operands, body, L.noalias(bufs))
    L.call(fn, bufs, n)


@lowers("fused_matmul")
def lower_fused_matmul(L, n):
    """``body(op(a) op(b), others)`` (2-D): a native GEMM running the body on each tile's
    vectors as it stores it, where it stores each tile once (``stores_tiles_once``) and can
    write the body on vectors (``vector_body_ok``); else the product into a private buffer
    (native or BLAS, as ``matmul``) and the body as an elementwise loop."""
    a, b, *others = n.inputs
    ta, tb = bool(n.attrs.get("transpose_a")), bool(n.attrs.get("transpose_b"))
    body = n.attrs["body"]
    m, nn = n.shape
    k = a.shape[0] if ta else a.shape[1]
    dims = (m, nn, k, a.shape[1], b.shape[1])
    if m * nn == 0:
        return
    kinds = [_epilogue_kind(x, n) for x in others]
    bbuf, tb, dims = _b_for_native(L, n, L.buf(b), dims, (ta, tb), stores_tiles_once)
    if k and None not in kinds and vector_body_ok(body, n.dtype) \
            and stores_tiles_once(n.dtype, dims, (ta, tb), L.blas_threads):
        _native_tiles(L, n, [L.out(n), L.buf(a), bbuf] + [L.buf(x) for x in others], dims,
                      (ta, tb), epilogue=(body, tuple(kinds)))
        return
    # The product into the output's bytes and the body over them in place, as the two nodes
    # ran; into a private range when an operand of the body lies there (written in place).
    out, shape = L.out(n), tuple(n.shape)
    apart = any(out.overlaps(L.buf(x)) for x in others)
    product = _product_apart(L, n, L.buf(a), bbuf, dims, (ta, tb), None if apart else out)
    bufs = [out] + ([product] if apart else []) + [L.buf(x) for x in others]
    first = 2 if apart else 1  # (parameter of the body's arg 1)
    operands = [(n.dtype, 0, contiguous_strides(shape))] * first + [
        (x.dtype, 0, broadcast_strides(x.shape, shape)) for x in others]
    fn = elementwise_function(L.math, shape, operands,
                              _renumber(body, [first - 1] + list(range(first, first + len(others)))),
                              L.noalias(bufs))
    L.call(fn, bufs, n)


def _native_tiles(L, n, bufs, dims, flags, subtract=False, epilogue=None):
    """The native GEMM of ``n`` on ``bufs`` = [C, A, B, epilogue operands...], subtracting
    each tile from C or running ``epilogue`` = (body, operand kinds) on it as it is stored."""
    uniq, index = L.distinct(bufs)
    if epilogue is not None:
        body, kinds = epilogue
        epilogue = (body, tuple((j + 1, kind, index[3 + j]) for j, kind in enumerate(kinds)))
    fn = L.built(gemm_kernel, n.dtype, (), ((), (), ()), dims, flags, tuple(index[:3]),
                 tuple(L.noalias(uniq)), 0.0, subtract, epilogue)
    L.call(fn, uniq, n)
    L.gemm_calls["native"] += 1


def _product_apart(L, n, a, b, dims, flags, product=None):
    """``op(a) op(b)`` of ``n``'s shape into ``product`` (default a private range), native or
    BLAS as ``matmul`` does (zeros for an empty sum); returns the buffer."""
    if product is None:
        product = L.arena(int(np.prod(n.shape)) * n.dtype.itemsize)
    if dims[2]:
        emit_gemm(L, n, product, a, b, dims, flags)
    else:
        fill(L, product, n.shape, n.dtype, 0, n)
    return product


def _epilogue_kind(x, n):
    """How a GEMM epilogue reads ``x`` beside ``n``'s product: "full" (the product's shape),
    "column" (one value per column), "one", or None (another broadcast: not in registers)."""
    if x.dtype != n.dtype:
        return None
    size = int(np.prod(x.shape))
    if tuple(x.shape) == tuple(n.shape):
        return "full"
    if size == 1:
        return "one"
    if size == n.shape[1] and tuple(x.shape)[-1] == n.shape[1]:
        return "column"
    return None


def fill(L, buf, shape, dtype, value, node=None):
    """Set a whole buffer to ``value``."""
    lit = "1" if dtype.is_bool and value else ("0" if dtype.is_bool else literal(value, dtype))
    L.call(fill_function(shape, dtype, lit), [buf], node)


__all__ = ["kernel_for", "lower_elementwise", "fill", "load_value", "emit_gemm"]
