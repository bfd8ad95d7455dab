"""The text IR after each pass, rendered only when someone reads it.

Rendering the text IR of every stage costs more than most passes, and a compile that
nobody inspects never reads it. ``capture`` records what the printer reads (per node one
tuple: op, inputs, attrs, annotations, type; the fetches and the plan summary) as cheap
shallow copies right after a pass; ``Stages`` builds the printer's objects from them
(``snapshot``) and renders a stage's text on first access, and keeps it. The text is exactly
what ``program_text`` printed at that moment: passes replace attribute and annotation
values instead of mutating them, so the shallow copies stay faithful (the tests compare
every stage with the eager rendering).

A loop node's body is a program of its own (``ir.loops``). The snapshot freezes what the
body is made of when the loop is first seen (its outputs and feed shapes:
``LoopBodySource``); when a stage is read, the body is built and run through the passes of
the pipeline around it (the same names, in the same order), and stage k of the program
shows stage k of its bodies. The body pipeline runs once per loop, and only when a stage is
read; ``body_programs`` gives the bodies after every pass (what the dumps write). These are
the passes ``codegen.loops.body_for_backend`` runs before a backend compiles the body.
"""
from collections.abc import Sequence
from itertools import chain

from ..graph import Node
from .. import printer
from ..printer import loop_summary, program_text, stable_numbers


class _Frozen:
    """What the printer reads of one node, as it was when the snapshot was taken."""

    __slots__ = ("op_name", "opdef", "inputs", "attrs", "meta", "loc", "is_grad", "node_name",
                 "dtype", "shape", "loop")
    type_str = Node.type_str


class _FrozenLoop:
    """What the printer reads of a loop node: its summary and its body's text (rendered by
    ``render`` when first read)."""

    __slots__ = ("summary", "render")

    def __init__(self, summary, render):
        self.summary, self.render = summary, render

    def text(self):
        return self.render()


def run_passes(program, passes):
    """``ir.passes.run_pipeline`` (set by that package: the pipeline builds on this module)."""
    return RUNNER(program, passes=passes)


RUNNER = None


class LoopBodySource:
    """A loop's body as it is now (outputs, feed shapes), and its programs after passes.

    Example:
        >>> src = LoopBodySource(loop)
        >>> print(src.text(("prune", "fold"), -1))   # the body after prune and fold
    """

    def __init__(self, loop):
        from ..loops import body_feed_shapes, body_program
        body = loop.attrs["body"]
        self.loop, self.outputs = loop, list(body.outputs)
        self.specialized = all(x.shape is not None and None not in x.shape
                               for x in loop.inputs)
        # a body is a program once every input's shape is known
        self.shapes = body_feed_shapes(loop) if self.specialized else None
        self.name = body_program(loop).name if self.specialized else f"body of '{body.name}'"
        self.labels = [f"next[{k}]" for k in range(len(body.next))] + \
            [f"stacked[{k}]" for k in range(len(body.stacked))] + \
            (["cond"] if body.cond is not None else [])
        self._programs = {}

    def program(self, passes):
        """The body Program after ``passes`` (a tuple of pass names; memoized), its
        ``stages`` holding the text after each of them."""
        prog = self._programs.get(passes)
        if prog is None:
            from ..loops import feed_roles
            from ..program import build_program
            prog = build_program(self.outputs, self.shapes)
            prog.name = self.name
            prog.gemm_epilogues = self.loop.meta.get("gemm_epilogues")  # (``fuse_gemm``)
            prog.feed_labels = {f: role if role == "counter" else f"{role}[{k}]"
                                for f, (role, k) in zip(prog.feeds,
                                                        feed_roles(prog, self.loop))}
            prog.fetch_labels = list(self.labels)
            run_passes(prog, passes=list(passes))
            self._programs[passes] = prog
        return prog

    def text(self, passes, k):
        """The text of stage ``k`` of the body run through ``passes`` (a note when the
        loop's input shapes are not all known)."""
        if not self.specialized:
            unknown = ", ".join(f"'{x.node_name}' {x.type_str()}" for x in self.loop.inputs
                                if x.shape is None or None in x.shape)
            return f";; {self.name}: not shown, the shapes of {unknown} are unknown\n"
        return self.program(passes).stages[k][1]


class _FrozenPlan:
    __slots__ = ("planned", "arena_bytes", "offsets", "naive_bytes", "inplace", "views")


class _FrozenProgram:
    __slots__ = ("nodes", "name", "fetches", "plan", "numbers", "stage_notes", "feed_labels",
                 "fetch_labels")


def _capture(node, loops, statics):
    """What the printer reads of ``node`` now, as one tuple (cheap: most are never read):
    (what never changes once the node is made, its inputs, its annotations, its loop).

    A node's op, ``attrs`` (frozen: passes make a new node to change them), type, name,
    gradient flag and line are set when it is made, so one tuple of them (``statics``:
    {node: tuple}, shared by the stages of a compile) serves every snapshot; ``meta`` gets
    annotations added in place, so it is copied (an empty one is shared)."""
    s = statics.get(node)
    if s is None:
        s = statics[node] = _static(node)
    meta = node.meta
    return (s, tuple(node.inputs), meta.copy() if meta else _NO_META,
            loops(node) if node.op_name == "loop" else None)


def _static(n):
    return (n.opdef, n.attrs, n.dtype, n.shape, n.node_name, n.is_grad, n.loc)


_NO_META = {}  # (read only)


def _freeze(node, state, frozen):
    """The ``_Frozen`` of ``node`` from its captured ``state`` (inputs frozen first)."""
    f = frozen.get(node)
    if f is not None:
        return f
    f = frozen[node] = _Frozen()
    static, inputs, meta, loop = state[node]
    opdef, attrs, f.dtype, f.shape, f.node_name, f.is_grad, f.loc = static
    if loop is not None:
        f.loop = loop
    f.op_name, f.opdef, f.attrs = opdef.name, opdef, attrs
    f.inputs = [frozen.get(i) or _freeze(i, state, frozen) for i in inputs]
    if "inplace_of" in meta:
        meta = dict(meta)
        target = meta["inplace_of"]
        meta["inplace_of"] = frozen.get(target) or _freeze(target, state, frozen)
    f.meta = meta
    return f


def _standalone_loop(program):
    """Frozen loops of a snapshot taken outside ``Stages``: bodies after the program's
    passes so far."""
    passes = tuple(r["name"] for r in getattr(program, "records", ()))

    def make(loop):
        src = LoopBodySource(loop)
        return _FrozenLoop(loop_summary(loop), lambda: src.text(passes, -1))
    return make


class _Capture:
    """A program's state after one pass, as tuples (``_capture``); ``freeze`` builds the
    ``_FrozenProgram`` the printer reads, when the stage is rendered."""

    __slots__ = ("nodes", "state", "fetches", "numbers", "numbered", "rest")

    def freeze(self):
        frozen, state = {}, self.state
        p = _FrozenProgram()
        p.nodes = [_freeze(n, state, frozen) for n in self.nodes]
        p.fetches = [_freeze(f, state, frozen) for f in self.fetches]
        numbers, numbered = self.numbers, self.numbered  # (numbers only grow: the first
        p.numbers = {f: numbers[n] for n, f in frozen.items()  # ``numbered`` were given then)
                     if numbers.get(n, numbered) < numbered}
        p.name, p.stage_notes, p.fetch_labels, feed_labels, p.plan = self.rest
        p.feed_labels = {frozen[f]: lab for f, lab in feed_labels.items() if f in frozen}
        return p


def capture(program, loops=None, statics=None):
    """The state of what ``program_text(program)`` reads, to be rendered later (see
    ``snapshot``); ``statics``: what the snapshots of one compile share (``_capture``)."""
    loops = loops or _standalone_loop(program)
    statics = {} if statics is None else statics
    numbers = stable_numbers(program)
    c = _Capture()
    c.nodes = list(program.nodes)
    c.fetches = [f for f in program.fetches if f is not None]
    empty, static, known = _NO_META, _static, statics.get
    state = c.state = {}
    for n in c.nodes:  # (``_capture`` inlined: this runs for every node after every pass)
        s = known(n)
        if s is None:
            s = statics[n] = static(n)
        meta = n.meta
        state[n] = (s, tuple(n.inputs), meta.copy() if meta else empty,
                    loops(n) if n.op_name == "loop" else None)
    # nodes read but not scheduled (none, while the program is well formed) are kept too;
    # whether there are any is asked of sets first (nodes hash by identity)
    extra = []
    if not state.keys() >= set(chain.from_iterable(n.inputs for n in c.nodes)):
        extra = [x for n in c.nodes for x in state[n][1] if x not in state]
    extra += [f for f in c.fetches if f not in state]
    extra += [n.meta["inplace_of"] for n in c.nodes if "inplace_of" in n.meta]
    while extra:
        n = extra.pop()
        if n not in state:
            state[n] = _capture(n, loops, statics)
            extra.extend(state[n][1])
            if "inplace_of" in n.meta:
                extra.append(n.meta["inplace_of"])
    c.numbers, c.numbered = numbers, len(numbers)
    labels = getattr(program, "fetch_labels", None)
    fetch_labels = None if labels is None else [
        lab for f, lab in zip(program.fetches, labels) if f is not None]
    feed_labels = dict(getattr(program, "feed_labels", None) or {})
    plan, frozen_plan = program.plan, None
    if plan is not None and getattr(plan, "planned", False):
        q = frozen_plan = _FrozenPlan()
        q.planned, q.arena_bytes, q.naive_bytes = True, plan.arena_bytes, plan.naive_bytes
        # the printer only counts these
        q.offsets, q.inplace, q.views = (range(len(plan.offsets)), range(len(plan.inplace)),
                                         range(len(plan.views)))
    c.rest = (program.name, list(getattr(program, "stage_notes", ())), fetch_labels,
              feed_labels, frozen_plan)
    return c


def snapshot(program, loops=None):
    """A structural copy of what ``program_text(program)`` reads (no text rendered).

    Args:
        loops: ``f(loop node) -> _FrozenLoop`` (``Stages`` gives one that shares each body
            pipeline between stages; None: the body after the program's passes so far).
    """
    return capture(program, loops).freeze()


class Stages(Sequence):
    """[(stage name, text IR)] with each text rendered on first access.

    Example:
        >>> stages = Stages(); stages.record("input", program)
        >>> name, text = stages[0]
    """

    def __init__(self):
        self._names, self._snaps, self._texts = [], [], []
        self._statics = {}  # node -> what its snapshots share (``_capture``)
        self._sources = {}  # loop node -> LoopBodySource (frozen when first seen)

    def record(self, name, program):
        """Snapshot ``program`` as stage ``name`` (rendered later, when read)."""
        self._names.append(name)
        self._snaps.append(capture(program, self._frozen_loop, self._statics))
        self._texts.append(None)

    def _frozen_loop(self, loop):
        k = len(self._names) - 1
        src = self.source(loop)
        return _FrozenLoop(loop_summary(loop),
                           lambda: src.text(tuple(self._names[1:]), k))

    def source(self, loop):
        """The ``LoopBodySource`` of ``loop`` these stages show."""
        src = self._sources.get(loop)
        if src is None:
            src = self._sources[loop] = LoopBodySource(loop)
        return src

    def passes(self):
        """The passes recorded after the input stage, in order."""
        return tuple(self._names[1:])

    def __len__(self):
        return len(self._names)

    def __getitem__(self, k):
        if isinstance(k, slice):
            return [self[i] for i in range(*k.indices(len(self)))]
        if self._texts[k] is None:
            self._texts[k] = program_text(self._snaps[k].freeze())
            self._snaps[k] = None
        return self._names[k], self._texts[k]

    def __eq__(self, other):
        return list(self) == list(other)

    def __repr__(self):
        return f"Stages({self._names})"


def body_programs(program):
    """[(loop node, its body Program after the passes ``program`` went through)] for every
    loop of ``program``'s schedule whose input shapes are known; each body's ``stages`` hold
    its text after each pass.

    Example:
        >>> for loop, body in body_programs(step.program):
        ...     print(body.name, [name for name, _ in body.stages])
    """
    stages = getattr(program, "stages", None)
    if isinstance(stages, Stages):
        source, passes = stages.source, stages.passes()
    else:
        source = LoopBodySource
        passes = tuple(r["name"] for r in getattr(program, "records", ()))
    sources = [(n, source(n)) for n in program.nodes if n.op_name == "loop"]
    return [(n, src.program(passes)) for n, src in sources if src.specialized]


def _render_body(loop, passes):
    return LoopBodySource(loop).text(passes, -1)


printer.body_renderer = _render_body  # live programs show their loops' bodies (ir.printer)
