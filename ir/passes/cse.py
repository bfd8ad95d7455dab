"""Common-subexpression elimination: one node per distinct pure computation.

Two nodes merge when they apply the same op, with equal attributes, to the same input nodes.
Operands of commutative ops (``add``, ``multiply``, ``maximum``, ``equal``...) are put in a
canonical order (by schedule position), so ``a + b`` and ``b + a`` merge. Constants merge by
value (dtype, shape and bits, so ``0.0`` and ``-0.0`` stay apart), keyed by a compact form:
a splat by its value, another array by a SHA-256 of its bytes, so keying a broadcast seed
never materializes it (it did: a compile needed about 3x the step's planned peak).

Never merged: impure ops (``assign``, ``group``, random ops: two draws are two values) and every
node without inputs other than constants that is not itself a constant (placeholders,
variables, random ops): each is a distinct value by definition.
"""
import hashlib

import numpy as np

from ..printer import stable_numbers
from .common import positions, rewire


def _attr_key(v):
    if isinstance(v, np.ndarray):
        return _array_key(v)
    if isinstance(v, float):
        return ("float", repr(v))  # 0.0 == -0.0 as floats; their reprs differ
    if isinstance(v, tuple):
        return tuple(_attr_key(x) for x in v)
    return v


def _array_key(v):
    """A constant's key in its compact form, never a copy of its bytes: a splat (one value
    everywhere: a broadcast scalar, as gradient seeds are, or an array of equal values) by
    that value and its shape, any other array by a SHA-256 of its bytes (read in place when
    contiguous). Values compare by bits, so 0.0 and -0.0, or two NaN payloads, stay apart."""
    if _is_splat(v):
        first = v.reshape(-1)[:1] if v.size else v
        return ("splat", v.dtype.str, v.shape, np.ascontiguousarray(first).tobytes())
    data = v if v.flags.c_contiguous else np.ascontiguousarray(v)
    return ("array", v.dtype.str, v.shape, hashlib.sha256(memoryview(data).cast("B")).digest())


_CHUNK = 1 << 16


def _is_splat(v):
    """Whether every element of ``v`` has the bits of the first (stride-0 views at once;
    other arrays compared chunk by chunk, so no copy of ``v`` is made)."""
    if v.size <= 1 or not any(v.strides):
        return True
    if not v.flags.c_contiguous:
        return False
    bits = v.reshape(-1).view(f"u{v.dtype.itemsize}")
    first = bits[0]
    return all((bits[i:i + _CHUNK] == first).all() for i in range(0, bits.size, _CHUNK))


def _key(n, pos):
    if n.op_name == "const":
        return ("const", _attr_key(n.attrs["value"]))
    ins = [pos[id(x)] for x in n.inputs]
    if n.opdef.commutative:
        ins.sort()
    attrs = tuple(sorted((k, _attr_key(v)) for k, v in n.attrs.items()))
    return (n.op_name, tuple(ins), attrs, n.dtype.name if n.dtype else None)


def mergeable(n):
    """Whether CSE may merge ``n`` with an equal node."""
    if n.op_name == "const":
        return True
    if n.opdef.impure or n.dtype is None:
        return False
    return any(x.op_name != "const" for x in n.inputs)


def eliminate_common_subexpressions(program):
    """Merge equal pure nodes into the first one scheduled.

    Args:
        program: an ``ir.program.Program`` (rewritten in place; merged nodes are left unused
            for dead-code elimination).
    Returns:
        {"merged": nodes replaced by an equal earlier node}; each merge is also named in
        ``program.stage_notes`` (``merged %12 add 'b/add' into %7 'a/add'``), since in the
        text IR a merge shows only as operands renamed.
    Example:
        >>> eliminate_common_subexpressions(program)   # x*y and y*x
        {'merged': 1}
    """
    seen = {}
    mapping = {}
    pos = positions(program.nodes)
    for n in program.nodes:
        if mapping:
            # Inputs merged earlier now point at their representative: key on it.
            n.inputs = [mapping.get(id(x), x) for x in n.inputs]
        if not mergeable(n):
            continue
        try:
            key = _key(n, pos)
            hash(key)
        except TypeError:
            continue  # an unhashable attribute: leave the node alone
        first = seen.get(key)
        if first is None:
            seen[key] = n
        else:
            mapping[id(n)] = first
    if mapping:
        numbers = stable_numbers(program)
        notes = program.__dict__.setdefault("stage_notes", [])
        for n in program.nodes:
            first = mapping.get(id(n))
            if first is not None:
                notes.append(f"merged {_ref(n, numbers)} into {_ref(first, numbers)}")
        rewire(program, mapping)
    return {"merged": len(mapping)}


def _ref(n, numbers):
    return f"%{numbers[n]} {n.op_name} '{n.node_name}'"
