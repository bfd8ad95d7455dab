"""Data-movement kernels: broadcast, transpose, concat, stack, strided slices and their
gradient, gather / scatter-add, one_hot.

Most are strided copies: the output (or a region of it) and the input are affine views with
their own base offsets and strides, and ``llvm.loops`` walks them. Gather and scatter-add read
indices at run time; an index outside ``[0, n)`` writes a status code (with the offending
value and its position) instead of touching memory out of bounds, and the step returns at
once so Python can raise (``runtime.step_errors``: the message both backends give).
"""
import numpy as np

from ....ir import scalar as S
from ....ir.shapes import normalize_axis
from ..ir import Function, float_literal, literal, mem_type, val_type
from .elementwise import fill
from ..registry import lowers
from .transpose import transpose_into
from ..loops import (broadcast_strides, contiguous_strides, elementwise_function,
                         params)

STATUS_INDEX, STATUS_LABEL = 1, 2  # codes of runtime.llvm_step.STATUS_MESSAGES


def strided_copy(L, dst, dst_view, src, src_view, shape, dtype, node):
    """Copy ``shape`` elements from an affine view of ``src`` to one of ``dst``.

    Args:
        dst_view, src_view: (base offset, strides) in elements, strides per dim of ``shape``.
    """
    if int(np.prod(shape, dtype=np.int64)) == 0:
        return
    uniq, index = L.distinct([dst, src])
    operands = [(dtype, dst_view[0], dst_view[1])]
    if len(uniq) == 2:
        operands.append((dtype, src_view[0], src_view[1]))
    fn = elementwise_function(L.math, shape, operands, S.arg(index[1], dtype),
                              L.noalias(uniq))
    L.call(fn, uniq, node)


def _dense(shape):
    return 0, contiguous_strides(shape)


@lowers("broadcast_to", "broadcast_like")
def lower_broadcast(L, n):
    x = n.inputs[0]
    strided_copy(L, L.out(n), _dense(n.shape), L.buf(x),
                 (0, broadcast_strides(x.shape, n.shape)), n.shape, n.dtype, n)


@lowers("transpose")
def lower_transpose(L, n):
    x = n.inputs[0]
    perm = n.attrs.get("perm")
    perm = tuple(reversed(range(x.rank))) if perm is None else tuple(perm)
    if perm == (1, 0) and not L.buf(x).overlaps(L.out(n)):  # register blocks (transpose)
        transpose_into(L, L.out(n), L.buf(x), x.shape[0], x.shape[1], x.dtype, n)
        return
    xs = contiguous_strides(x.shape)
    strided_copy(L, L.out(n), _dense(n.shape), L.buf(x), (0, tuple(xs[p] for p in perm)),
                 n.shape, n.dtype, n)


@lowers("concat")
def lower_concat(L, n):
    axis = normalize_axis(n.attrs["axis"], n.rank)
    os_ = contiguous_strides(n.shape)
    at = 0
    for x in n.inputs:
        strided_copy(L, L.out(n), (at * os_[axis], os_), L.buf(x), _dense(x.shape), x.shape,
                     n.dtype, n)
        at += x.shape[axis]


@lowers("concat_slice")
def lower_concat_slice(L, n):
    g, xs = n.inputs[0], n.inputs[1:]
    axis = normalize_axis(n.attrs["axis"], g.rank)
    start = sum(x.shape[axis] for x in xs[:n.attrs["index"]])
    spec = tuple(("s", start, start + n.shape[axis], None) if d == axis else
                 ("s", None, None, None) for d in range(g.rank))
    base, strides, shape = slice_view(spec, g.shape)
    strided_copy(L, L.out(n), (0, contiguous_strides(shape)), L.buf(g), (base, strides),
                 shape, n.dtype, n)


@lowers("stack")
def lower_stack(L, n):
    axis = normalize_axis(n.attrs.get("axis", 0), n.rank)
    os_ = contiguous_strides(n.shape)
    dst_strides = os_[:axis] + os_[axis + 1:]
    for i, x in enumerate(n.inputs):
        strided_copy(L, L.out(n), (i * os_[axis], dst_strides), L.buf(x), _dense(x.shape),
                     x.shape, n.dtype, n)


def slice_view(spec, in_shape):
    """(base, strides, shape) of ``x[spec]`` as an affine view of dense ``in_shape``."""
    xs = contiguous_strides(in_shape)
    spec = tuple(spec) + (("s", None, None, None),) * (len(in_shape) - len(spec))
    base, strides, shape = 0, [], []
    for entry, dim, st in zip(spec, in_shape, xs):
        if entry[0] == "i":
            base += (entry[1] % dim) * st
            continue
        start, stop, step = slice(entry[1], entry[2], entry[3]).indices(dim)
        size = len(range(start, stop, step))
        base += start * st if size else 0
        strides.append(step * st)
        shape.append(size)
    return base, tuple(strides), tuple(shape)


@lowers("strided_slice")
def lower_slice(L, n):
    x = n.inputs[0]
    base, strides, shape = slice_view(n.attrs["spec"], x.shape)
    strided_copy(L, L.out(n), (0, contiguous_strides(shape)), L.buf(x), (base, strides),
                 shape, n.dtype, n)


@lowers("strided_slice_grad")
def lower_slice_grad(L, n):
    g = n.inputs[0]
    base, strides, shape = slice_view(n.attrs["spec"], n.shape)
    fill(L, L.out(n), n.shape, n.dtype, 0, n)
    strided_copy(L, L.out(n), (base, strides), L.buf(g), (0, contiguous_strides(shape)), shape,
                 n.dtype, n)


# -- gather / scatter-add -------------------------------------------------------------------------
def checked_index(fn, idx_dtype, idx_ptr, dim, status, position):
    """Load an index and leave the kernel with a status (the value and its flat
    ``position``) unless it lies in [0, dim): one unsigned compare, negatives included."""
    it = val_type(idx_dtype)
    raw = fn.load(it, idx_ptr)
    i64 = raw if it == "i64" else fn(f"sext {it} {raw} to i64")
    exit_with_status(fn, fn(f"icmp uge i64 {i64}, {dim}"), status, STATUS_INDEX, i64,
                     position)
    return i64


def exit_with_status(fn, bad, status, code, value, position=None):
    """When i1 ``bad`` holds: store ``code``, the i64 ``value`` and its i64 ``position`` in
    the status block and leave the kernel (the step then stops and the runtime raises)."""
    fail, ok = fn.label("bad"), fn.label("ok")
    fn.emit(f"br i1 {bad}, label %{fail}, label %{ok}")
    fn.block(fail)
    fn.store("i64", str(code), status)
    fn.store("i64", value, fn.gep("i64", status, 2))
    if position is not None:
        fn.store("i64", position, fn.gep("i64", status, 3))
    fn.ret()
    fn.block(ok)


def _gather_dims(params_shape, idx_shape, axis):
    outer = int(np.prod(params_shape[:axis], dtype=np.int64))
    inner = int(np.prod(params_shape[axis + 1:], dtype=np.int64))
    return outer, int(np.prod(idx_shape, dtype=np.int64)), params_shape[axis], inner


def gather_function(dtype, idx_dtype, dims, scatter, index, noalias):
    """Gather rows (``out[o, j] = p[o, idx[j]]``) or scatter-add them (``out[o, idx[j]] +=
    upd[o, j]``); parameters by ``index``: out, data, indices, status."""
    fn = Function("kernel", params(max(index) + 1, noalias))
    out, data, idx, status = (f"%p{i}" for i in index)
    outer, nidx, dim, inner = dims
    mt, t = mem_type(dtype), val_type(dtype)
    with fn.loop(outer) as lo, fn.loop(nidx) as lj:
        row = checked_index(fn, idx_dtype, fn.gep(mem_type(idx_dtype), idx, lj.i), dim, status,
                            lj.i)
        picked = fn.mul(fn.add(fn.mul(lo.i, dim), row), inner)
        dense = fn.mul(fn.add(fn.mul(lo.i, nidx), lj.i), inner)
        with fn.loop(inner) as lt:
            src = fn.gep(mt, data, fn.add(dense if scatter else picked, lt.i))
            dst = fn.gep(mt, out, fn.add(picked if scatter else dense, lt.i))
            v = fn.load(mt, src)
            if scatter:
                old = fn.load(mt, dst)
                v = fn(f"fadd {t} {old}, {v}") if dtype.is_floating else fn(f"add {t} {old}, {v}")
            fn.store(mt, v, dst)
    fn.ret()
    return fn


@lowers("gather", "scatter_add")
def lower_gather(L, n):
    """gather reads rows of its first input at the indices; scatter_add (its gradient) adds
    rows of updates into zeros at them (repeated indices accumulate)."""
    scatter = n.op_name == "scatter_add"
    data, idx = n.inputs[:2]
    rank = n.rank if scatter else data.rank
    axis = normalize_axis(n.attrs.get("axis", 0), rank)
    if scatter:
        fill(L, L.out(n), n.shape, n.dtype, 0, n)
    dims = _gather_dims(n.shape if scatter else data.shape, idx.shape, axis)
    uniq, index = L.distinct([L.out(n), L.buf(data), L.buf(idx), L.status()])
    fn = gather_function(n.dtype, idx.dtype, dims, scatter, index, L.noalias(uniq))
    L.call(fn, uniq, n, fallible=True)


@lowers("check_index")
def lower_check_index(L, n):
    """Copy gather_nd / scatter_nd indices, checking entry j of the last axis against
    [0, bounds[j]) (one unsigned compare each)."""
    (idx,) = n.inputs
    bounds = tuple(int(b) for b in n.attrs["bounds"])
    rows = int(np.prod(idx.shape[:-1], dtype=np.int64))
    uniq, index = L.distinct([L.out(n), L.buf(idx), L.status()])
    fn = Function("kernel", params(len(uniq), L.noalias(uniq)))
    out, src, status = (f"%p{i}" for i in index)
    mt = mem_type(idx.dtype)
    with fn.loop(rows) as lr:
        for j, bound in enumerate(bounds):
            at = fn.add(fn.mul(lr.i, len(bounds)), j)
            v = checked_index(fn, idx.dtype, fn.gep(mt, src, at), bound, status, at)
            fn.store(mt, v if mt == "i64" else fn(f"trunc i64 {v} to {mt}"), fn.gep(mt, out, at))
    fn.ret()
    L.call(fn, uniq, n, fallible=True)


# -- one_hot ------------------------------------------------------------------------------------
@lowers("one_hot")
def lower_one_hot(L, n):
    (idx,) = n.inputs
    axis = normalize_axis(n.attrs.get("axis", -1), idx.rank + 1)
    depth = int(n.attrs["depth"])
    outer = int(np.prod(idx.shape[:axis], dtype=np.int64))
    inner = int(np.prod(idx.shape[axis:], dtype=np.int64))
    dt = n.dtype
    on = _lit(n.attrs.get("on_value", 1.0), dt)
    off = _lit(n.attrs.get("off_value", 0.0), dt)
    fn = Function("kernel", params(2, L.noalias([L.out(n), L.buf(idx)])))
    it, mt = val_type(idx.dtype), mem_type(dt)
    with fn.loop(outer) as lo, fn.loop(depth) as ld, fn.loop(inner) as lt:
        raw = fn.load(it, fn.gep(it, "%p1", fn.add(fn.mul(lo.i, inner), lt.i)))
        i64 = raw if it == "i64" else fn(f"sext {it} {raw} to i64")
        hit = fn(f"icmp eq i64 {i64}, {ld.i}")
        v = fn(f"select i1 {hit}, {mt} {on}, {mt} {off}")
        dst = fn.add(fn.mul(fn.add(fn.mul(lo.i, depth), ld.i), inner), lt.i)
        fn.store(mt, v, fn.gep(mt, "%p0", dst))
    fn.ret()
    L.call(fn, [L.out(n), L.buf(idx)], n)


def _lit(value, dtype):
    if dtype.is_bool:
        return "1" if value else "0"
    return float_literal(value, dtype) if dtype.is_floating else literal(value, dtype)

