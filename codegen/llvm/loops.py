"""Strided loop nests: the index math behind elementwise, copy and reduction kernels.

Every operand of a loop kernel is an affine view of a dense buffer: element
``base + sum_d i_d * strides[d]`` at loop index ``(i_0, ..., i_{r-1})``. Broadcasting is a
stride of 0, a transpose permutes strides, a slice adds an offset and scales strides. Before
emitting loops, ``coalesce`` drops size-1 dims and merges neighbours that every operand walks
contiguously, so ``[128, 256] + [256]`` becomes two loops and ``[128, 256] * [128, 256]``
becomes one; the innermost loop then has stride 0 or 1 for every operand whenever the data
allows, which is what LLVM's loop vectorizer needs.
"""
from .ir import Function, mem_type, val_type
from .scalar import render_expr


def contiguous_strides(shape):
    """Row-major element strides of ``shape``."""
    strides, acc = [], 1
    for d in reversed(shape):
        strides.append(acc)
        acc *= d
    return tuple(reversed(strides))


def broadcast_strides(in_shape, out_shape):
    """Strides (in elements of the input) to read ``in_shape`` broadcast to ``out_shape``."""
    lead = len(out_shape) - len(in_shape)
    own = contiguous_strides(in_shape)
    out = [0] * lead
    for d, (n, s) in enumerate(zip(in_shape, own)):
        out.append(0 if n == 1 and out_shape[lead + d] != 1 else s)
    return tuple(out)


def coalesce(shape, strides_list):
    """Drop size-1 dims and merge dims that all operands traverse contiguously.

    Args:
        shape: loop extents, outermost first.
        strides_list: one tuple of strides per operand (same length as ``shape``).
    Returns:
        (shape, strides_list) with the fewest loops computing the same element offsets.
    """
    dims = [d for d in range(len(shape)) if shape[d] != 1]
    out_shape, out_strides = [], [[] for _ in strides_list]
    for d in dims:
        if out_shape and all(st[-1] == s[d] * shape[d] for st, s in zip(out_strides,
                                                                         strides_list)):
            out_shape[-1] *= shape[d]
            for st, s in zip(out_strides, strides_list):
                st[-1] = s[d]
            continue
        out_shape.append(shape[d])
        for st, s in zip(out_strides, strides_list):
            st.append(s[d])
    return tuple(out_shape), [tuple(s) for s in out_strides]


def loop_nest(fn, shape, strides_list, bases, inner, split=0):
    """Emit loops over ``shape``; call ``inner(offsets)`` with each operand's i64 offset.

    Args:
        fn: the Function being written.
        shape, strides_list: as for ``coalesce`` (already coalesced or not).
        bases: per operand, an element offset (int or SSA i64) added to every index.
        inner: callback receiving the list of offsets (SSA names or literals).
        split: the kernel's work, when the outer loop is all the kernel does and its
            iterations are independent (``Function.loop``); 0: not split.
    """
    offsets = [str(b) for b in bases]

    def level(d, offs):
        if d == len(shape):
            inner(offs)
            return
        with fn.loop(shape[d], split=split if d == 0 else 0) as lp:
            level(d + 1, [fn.add(o, fn.mul(lp.i, s[d])) for o, s in zip(offs, strides_list)])
    level(0, offsets)


def carried_nest(fn, extents, carried, body, split=0):
    """Nested loops over ``extents`` carrying values [(type, init)] through every level.

    ``body(indices, values)`` returns the next values; returns the values after the last
    iteration (what accumulators in registers need: no memory round trip per iteration).
    ``split``: as for ``loop_nest`` (with carried sums, the kernel lists ``fn.partials``).
    """
    def level(d, values):
        if d == len(extents):
            return body(indices, values)
        with fn.loop(extents[d], split=split if d == 0 else 0) as lp:
            indices.append(lp.i)
            phis = [lp.carry(ty, v) for (ty, _), v in zip(carried, values)]
            for phi, new in zip(phis, level(d + 1, phis)):
                lp.update(phi, new)
            indices.pop()
        return phis
    indices = []
    return level(0, [init for _, init in carried])


def load_value(fn, dtype, ptr):
    """Load one element as its register type (bool bytes become i1)."""
    v = fn.load(mem_type(dtype), ptr)
    return fn(f"icmp ne i8 {v}, 0", "b") if dtype.is_bool else v


def store_value(fn, dtype, value, ptr):
    if dtype.is_bool:
        value = fn(f"zext i1 {value} to i8", "b")
    fn.store(mem_type(dtype), value, ptr)


def params(n, noalias):
    """Pointer parameters %p0..%p{n-1}, ``noalias`` where the caller proved disjointness."""
    return [("ptr", f"%p{k}", "noalias" if noalias[k] else "") for k in range(n)]


def elementwise_function(math_lib, shape, operands, body, noalias):
    """A kernel computing ``%p0 = body(...)`` over ``shape``.

    Args:
        math_lib: the module's MathLib (transcendentals).
        shape: the output shape (loop extents).
        operands: per pointer parameter, (dtype, base offset, strides); parameter 0 is the
            output, and ``body``'s ``arg(k)`` reads parameter k (k = 0 too when the output
            overwrites an input of the same shape: it is read before it is written).
        body: ir.scalar.Expr.
        noalias: per parameter, whether it may be marked ``noalias``.
    Returns:
        The Function (named later, when the module deduplicates it).
    """
    return multi_elementwise_function(math_lib, shape, operands, [(0, body)], noalias)


def multi_elementwise_function(math_lib, shape, operands, members, noalias):
    """One loop computing several elementwise results of one shape, in order.

    ``members`` is [(output parameter, body)]; at each index, member j's value is stored
    before member j+1 runs, and a later member reading an earlier member's output gets the
    value just computed (forwarded in a register). Callers guarantee that every buffer both
    written and read in the loop is accessed at the same index by all (no broadcast reads of
    a written buffer), so fusing the loops keeps the sequential semantics.
    """
    fn = Function("kernel", params(len(operands), noalias))
    cshape, cstrides = coalesce(tuple(shape), [o[2] for o in operands])
    bases = [o[1] for o in operands]

    def inner(offs):
        vals = {}
        for out, body in members:
            for k in sorted({e.value for e in body.walk() if e.op == "arg"}):
                if k not in vals:
                    dtype = operands[k][0]
                    vals[k] = load_value(fn, dtype, fn.gep(mem_type(dtype), f"%p{k}", offs[k]))
            result = render_expr(fn, math_lib, body, vals)
            dtype = operands[out][0]
            store_value(fn, dtype, result, fn.gep(mem_type(dtype), f"%p{out}", offs[out]))
            vals[out] = result
    work = _count(cshape) * sum(_size(body) for _, body in members)
    loop_nest(fn, cshape, cstrides, bases, inner, split=work)
    fn.ret()
    return fn


def fill_function(shape, dtype, value_literal, noalias=(True,)):
    """A kernel setting every element of %p0 (dense ``shape``) to a literal."""
    fn = Function("kernel", params(1, noalias))
    n = 1
    for d in shape:
        n *= d

    def inner(offs):
        fn.store(mem_type(dtype), value_literal, fn.gep(mem_type(dtype), "%p0", offs[0]))
    loop_nest(fn, (n,) if n != 1 else (), [(1,)] if n != 1 else [()], [0], inner, split=n)
    fn.ret()
    return fn


def _count(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def _size(body):
    """Operations in an elementwise body (a transcendental counts as ten)."""
    return sum(10 if e.op in _COSTLY else 1 for e in body.walk() if e.op not in ("arg", "const"))


_COSTLY = {"exp", "log", "tanh", "sigmoid", "sin", "cos", "pow", "sqrt", "rsqrt", "div",
           "log1p", "expm1", "erf", "atan", "atan2", "asin", "acos", "sinh", "cosh"}


def value_type(dtype):
    return val_type(dtype)
