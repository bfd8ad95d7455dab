"""The text IR after each pass, rendered only when someone reads it.

Rendering the text IR of every stage costs more than most passes, and a compile that
nobody inspects never reads it. ``snapshot`` records what the printer reads (per node: op,
inputs, attrs, annotations, type; the fetches and the plan summary) as cheap shallow copies
right after a pass, and ``Stages`` renders a stage's text on first access and keeps it.
The text is exactly what ``program_text`` printed at that moment: passes replace attribute
and annotation values instead of mutating them, so the shallow copies stay faithful (the
tests compare every stage with the eager rendering).
"""
from collections.abc import Sequence

from ..graph import Node
from ..printer import program_text, stable_numbers


class _Frozen:
    """What the printer reads of one node, as it was when the snapshot was taken."""

    __slots__ = ("op_name", "opdef", "inputs", "attrs", "meta", "loc", "is_grad", "name",
                 "dtype", "shape")
    type_str = Node.type_str


class _FrozenPlan:
    __slots__ = ("planned", "arena_bytes", "offsets", "naive_bytes", "inplace", "views")


class _FrozenProgram:
    __slots__ = ("nodes", "name", "fetches", "plan", "numbers", "stage_notes")


def _freeze(node, frozen):
    f = _Frozen()
    f.op_name, f.opdef, f.loc = node.op_name, node.opdef, node.loc
    f.is_grad, f.name = node.is_grad, node.name
    f.dtype, f.shape = node.dtype, node.shape
    f.inputs = [frozen.get(i) or _freeze(i, frozen) for i in node.inputs]
    f.attrs = dict(node.attrs)
    meta = node.meta
    if "inplace_of" in meta:
        meta = dict(meta)
        target = meta["inplace_of"]
        meta["inplace_of"] = frozen.get(target) or _freeze(target, frozen)
    else:
        meta = dict(meta)
    f.meta = meta
    frozen[node] = f
    return f


def snapshot(program):
    """A structural copy of what ``program_text(program)`` reads (no text rendered)."""
    frozen = {}
    numbers = stable_numbers(program)
    p = _FrozenProgram()
    p.nodes = [frozen.get(n) or _freeze(n, frozen) for n in program.nodes]
    p.numbers = {frozen[n]: k for n, k in numbers.items() if n in frozen}
    p.stage_notes = list(getattr(program, "stage_notes", ()))
    p.name = program.name
    p.fetches = [frozen.get(f) or _freeze(f, frozen) for f in program.fetches
                 if f is not None]
    plan = program.plan
    p.plan = None
    if plan is not None and getattr(plan, "planned", False):
        q = p.plan = _FrozenPlan()
        q.planned, q.arena_bytes, q.naive_bytes = True, plan.arena_bytes, plan.naive_bytes
        # the printer only counts these
        q.offsets, q.inplace, q.views = (range(len(plan.offsets)), range(len(plan.inplace)),
                                         range(len(plan.views)))
    return p


class Stages(Sequence):
    """[(stage name, text IR)] with each text rendered on first access.

    Example:
        >>> stages = Stages(); stages.record("input", program)
        >>> name, text = stages[0]
    """

    def __init__(self):
        self._names, self._snaps, self._texts = [], [], []

    def record(self, name, program):
        """Snapshot ``program`` as stage ``name`` (rendered later, when read)."""
        self._names.append(name)
        self._snaps.append(snapshot(program))
        self._texts.append(None)

    def __len__(self):
        return len(self._names)

    def __getitem__(self, k):
        if isinstance(k, slice):
            return [self[i] for i in range(*k.indices(len(self)))]
        if self._texts[k] is None:
            self._texts[k] = program_text(self._snaps[k])
            self._snaps[k] = None
        return self._names[k], self._texts[k]

    def __eq__(self, other):
        return list(self) == list(other)

    def __repr__(self):
        return f"Stages({self._names})"
