"""Nests: the one way graphc walks nested structures of values (TF1's ``tf.nest``).

A nest is a leaf, or a list, tuple, namedtuple or dict of nests. Leaves come out in one fixed
order: sequences in order, dicts by sorted key (as TensorFlow does, so ``{"b": x, "a": y}``
flattens to ``[y, x]`` whatever the insertion order). ``pack_sequence_as`` is the inverse
and keeps each container's type (a dict keeps its insertion order).

``tf.data`` treats a list as one value, not a sequence (TF's data nest does the same): those
callers pass ``lists=False``.
"""
from ..errors import GraphError
from ..ir.source import user_location

__all__ = ["is_nested", "flatten", "pack_sequence_as", "map_structure", "flatten_up_to",
           "assert_same_structure", "describe"]


def is_nested(x, lists=True):
    """Whether ``x`` is a container of the nest (else a leaf)."""
    return isinstance(x, (dict, tuple)) or (lists and isinstance(x, list))


def _children(x):
    if isinstance(x, dict):
        return [x[k] for k in sorted(x)]
    return list(x)


def flatten(structure, lists=True):
    """The leaves of ``structure``, in the nest's order (iterative: no depth limit)."""
    out, stack = [], [structure]
    while stack:
        x = stack.pop()
        if is_nested(x, lists):
            stack.extend(reversed(_children(x)))
        else:
            out.append(x)
    return out


def pack_sequence_as(structure, flat, lists=True):
    """The structure of ``structure`` holding the values of ``flat`` (in ``flatten`` order).

    Raises:
        ValueError: ``flat`` has another number of values than ``structure`` has leaves.
    """
    it = iter(flat)

    def build(s):
        if not is_nested(s, lists):
            return next(it)
        if isinstance(s, dict):
            built = {k: build(s[k]) for k in sorted(s)}
            return type(s)((k, built[k]) for k in s)
        items = [build(v) for v in s]
        return type(s)(*items) if hasattr(s, "_fields") else type(s)(items)

    try:
        out = build(structure)
    except StopIteration:
        raise ValueError(f"pack_sequence_as: {len(flat)} values for a structure of "
                         f"{len(flatten(structure, lists))} leaves") from None
    if next(it, it) is not it:
        raise ValueError(f"pack_sequence_as: {len(flat)} values for a structure of "
                         f"{len(flatten(structure, lists))} leaves")
    return out


def map_structure(fn, *structures, lists=True):
    """``fn`` applied leaf by leaf over equally nested ``structures``; the first one's
    structure is kept."""
    for s in structures[1:]:
        assert_same_structure(structures[0], s, lists=lists)
    leaves = zip(*(flatten(s, lists) for s in structures))
    return pack_sequence_as(structures[0], [fn(*xs) for xs in leaves], lists)


def flatten_up_to(shallow, structure, leaf_ok=None):
    """The parts of ``structure`` at the leaves of ``shallow`` (a leaf of ``shallow`` may
    stand for a whole sub-structure of ``structure``, e.g. a shape list); ``leaf_ok(part)``
    True also stops the descent."""
    if isinstance(shallow, dict):
        return [leaf for k in sorted(shallow)
                for leaf in flatten_up_to(shallow[k], structure[k], leaf_ok)]
    if isinstance(shallow, (list, tuple)) and not (leaf_ok and leaf_ok(structure)):
        return [leaf for r, v in zip(shallow, structure)
                for leaf in flatten_up_to(r, v, leaf_ok)]
    return [structure]


def assert_same_structure(a, b, lists=True, op="nest", names=("a", "b")):
    """Raise ``GraphError`` naming the first place where ``a`` and ``b`` are nested
    differently (lists and tuples are interchangeable; namedtuple types and dict keys are
    not)."""
    stack = [(a, b, "")]
    while stack:
        x, y, path = stack.pop()
        where = path or "the top level"
        if isinstance(x, dict) or isinstance(y, dict):
            if not (isinstance(x, dict) and isinstance(y, dict)) or set(x) != set(y):
                _mismatch(op, names, a, b, where)
            stack.extend((x[k], y[k], f"{path}[{k!r}]") for k in sorted(x, reverse=True))
        elif is_nested(x, lists) or is_nested(y, lists):
            if not (is_nested(x, lists) and is_nested(y, lists)) or len(x) != len(y) or (
                    (hasattr(x, "_fields") or hasattr(y, "_fields")) and type(x) is not type(y)):
                _mismatch(op, names, a, b, where)
            stack.extend((u, v, f"{path}[{i}]")
                         for i, (u, v) in reversed(list(enumerate(zip(x, y)))))


def describe(s):
    """A short text of what ``s`` is: a tensor's type, a dict's keys, a sequence's length."""
    if hasattr(s, "type_str"):
        return s.type_str()
    if isinstance(s, dict):
        return "dict with keys " + repr(sorted(map(str, s)))
    if isinstance(s, (list, tuple)):
        return f"{type(s).__name__} of {len(s)}"
    return repr(s)


def _mismatch(op, names, a, b, where):
    raise GraphError(f"{op}: {names[1]} returns another structure than {names[0]} at {where}",
                     [f"{names[0]}: {describe(a)}", f"{names[1]}: {describe(b)}"],
                     loc=user_location(), hint=f"return the same nesting as {names[0]}")
