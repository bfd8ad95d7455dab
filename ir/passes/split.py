"""split: a step as a map over parts of its batch, the parts' sums added after.

A training step computes the same thing for every example of its batch and sums over the
examples at a few places only: the loss's mean, every weight gradient (``x^T dz``, the bias
gradient's column sums, a filter gradient's sum over images). Cut the batch into ``parts``
and the step is ``parts`` smaller steps over independent data, whose sums add up: data
parallelism inside one step, as data-parallel training does across machines. The backends
run the parts as the iterations of a ``loop`` with no carried state (``ir.loops``), which the
LLVM backend runs on several cores at once (``codegen/llvm/kernels/loop.py``): each core runs
a whole part's forward and backward pass with no hand-off between kernels, where splitting
every kernel in chunks hands off at every kernel (a 32-step RNN's small GEMMs: 190 hand-offs a
step).

Which axis holds the examples is found, not declared: every op says how it carries an axis
of independent rows (``OpDef.examples``, ``ir.examples``), which ties the axes of a node's
inputs to its output's. The class of tied axes holding an axis of a fed placeholder is the
example axis when, on every node it reaches, the node keeps it as one axis of one size (the
*per-example* nodes) or sums it away (the *sums*: a mean, a weight gradient). Then:

- the batch is cut in the most parts it divides into, at most ``parts``;
- the per-example nodes and the sums form the *region*; everything else stays (the weights
  it reads are captured, the updates after it read the sums);
- each placeholder or constant holding the axis becomes a sequence ``[parts, ...]``, its
  axis cut in ``parts`` (a view when the axis leads, else a transpose);
- the region is rebuilt on one part's shapes (``OpDef.example_attrs`` gives attributes that
  name the batch, a reshape's target shape) as the body of a loop over the parts;
- a sum's value after the loop is the reduction of its parts' values (``reduce_mean`` for a
  mean: the parts are equal, ``reduce_max``...); a float sum over at most ``ROW_SUMS`` parts
  adds each part's row of the loop's result (``loop_output`` with ``row``) in part order,
  adds that fusion joins to the update reading them and that the LLVM backend reads where
  the loop wrote them: a weight's gradient summed and its update in one pass, no copy (W4
  at 2 threads 3-7% faster, W3 2.5%); a per-example value read after the region is the
  parts' values put back together.

A step the rules cannot cut stays as it was: an op without a rule on the example axis, a
batch statistic read back by the examples (batch normalization), a random draw, an effect
or a loop in the region, a variable holding examples, a batch that ``parts`` does not divide.
Results change only by the order of the sums (parts added last), as when any sum is split.

Runs when ``program.split_parts`` is 2 or more (``graphc.client.pipeline`` sets it for the
LLVM backend from the thread policy: ``split_parts_for``); a body's program never splits.
"""
import os

from graphc.errors import CompileError, GraphError, ShapeError

from .. import examples as E
from ..loops import loop_var, make_loop, outputs
from ..ops.registry import apply
from ..shapes import num_elements
from .common import rewire, splat, splat_array

# Work (multiply-adds of GEMMs and convolutions, elements of the rest) a region needs to be
# cut: below it the parts' hand-offs and the sums after cost more than the parts save.
# ``GRAPHC_SPLIT_MIN_WORK`` overrides it (1: every step that can be cut; tests and the fuzzer).
MIN_WORK = 1 << 20


def min_work():
    env = os.environ.get("GRAPHC_SPLIT_MIN_WORK", "").strip()
    if not env:
        return MIN_WORK
    if not env.isdigit():
        raise CompileError(f"GRAPHC_SPLIT_MIN_WORK must be a count, found {env!r}")
    return int(env)


# Parts at most this many: a float sum over them is a chain of adds of their rows (one
# elementwise pass with the update that reads it); more, one reduction over the stacked rows.
ROW_SUMS = 8
REDUCERS = {"sum": "reduce_sum", "mean": "reduce_mean", "max": "reduce_max",
            "min": "reduce_min"}


class _Refused(Exception):
    """The step cannot be cut (the message says why, for the pass's record)."""


def split_examples(program):
    """Cut ``program``'s batch in ``program.split_parts`` parts (module docstring).

    Returns:
        {"parts": n, "region": nodes moved into the loop} when cut; {} when not asked;
        {"not split": 1} when the step cannot be cut (``program.split_refused`` says why).
    """
    parts = int(getattr(program, "split_parts", 1) or 1)
    if parts < 2:
        return {}
    try:
        cut = _find(program, parts)
        _rewrite(program, cut, cut.parts)
    except _Refused as why:
        program.split_refused = str(why)
        return {"not split": 1}
    program.split_done = (cut.parts, cut.size)
    return {"parts": cut.parts, "region": len(cut.region)}


class _Cut:
    """What ``_find`` decided: the example axis of each node reached, the region, its sums."""

    def __init__(self, axis, size, region, sums, leaves):
        self.axis, self.size, self.region, self.sums, self.leaves = axis, size, region, sums, \
            leaves


def _find(program, parts):
    """The cut of ``program`` along the best example axis, or _Refused."""
    parent = {}

    def find(key):
        root = key
        while parent.get(root, root) != root:
            root = parent[root]
        while parent.get(key, key) != root:
            parent[key], key = root, parent[key]
        return root

    rules = {}
    for n in program.nodes:
        rule = n.opdef.example_rule(n) if n.shape is not None else None
        rules[n] = rule
        summed = {}  # input -> its first summed axis: one sum index across inputs (GEMM's k)
        for i, k, out in rule or ():
            if isinstance(out, int):
                other = (id(n), out)
            else:
                summed.setdefault(i, k)
                first = next(iter(summed.items()))
                if first[0] == i:
                    continue
                other = (id(n.inputs[first[0]]), first[1])
            a, b = find((id(n.inputs[i]), k)), find(other)
            if a != b:
                parent[a] = b
    seen, why = [], None
    best = None
    for p in program.feeds:
        for k in range(len(p.shape or ())):
            root = find((id(p), k))
            if root in seen:
                continue
            seen.append(root)
            try:
                cut = _check(program, rules, find, root, parts)
            except _Refused as e:
                why = why or e
                continue
            if best is None or cut.work > best.work:
                best = cut
    if best is None:
        raise why or _Refused("no fed placeholder has an axis of examples")
    least = min_work()
    if best.work < least:
        raise _Refused(f"too little work per step to cut ({best.work} < {least})")
    chunked = getattr(program, "split_if_faster", None)
    if chunked is not None:
        whole, cut = _estimates(program, best, *chunked)
        if cut > GAIN * whole:
            raise _Refused(f"not faster cut (estimated {cut:.3g} against {whole:.3g} with "
                           "kernels in chunks)")
    return best


# "auto" (``program.split_if_faster``: the backend's least work of a kernel run in chunks and
# the work a hand-off between threads costs) cuts a step only when the estimate says the
# parts beat every big kernel run in chunks by this much: a step cut in as many parts as
# threads cannot move work from a slow thread to a free one (chunks can), so beside a busy
# process it loses more of its speed. The estimate counts work (``_work``) and each hand-off
# (one kernel's chunks, or the loop over the parts; ``codegen.llvm.parallel.HANDOFF``). On a
# 2-vCPU EPYC with AVX2: W4, cut at an estimated 0.90, ran as fast as whole (0.375 against
# 0.372 ms) and 1.81-2.03x slower beside a busy process (1.58x whole); W3, at 0.79, ran
# 1.38x faster and 1.86-1.93x slower beside one; W1 2.59 against 2.34 ms, W5 2.60 against
# 2.54. On one with AVX-512 (a hand-off twice the work there): W3 at 0.69 ran 0.58 against
# 0.82 ms, W4 at 0.83 0.150-0.157 against 0.172-0.178 (1.83x slower beside a busy process,
# 1.53x whole), W1 and W5 (0.98) slower cut.
GAIN = 0.85


def _estimates(program, cut, least, handoff):
    """(the step with its big kernels in chunks, the step cut in parts) in units of work."""
    parts, inside = cut.parts, set(cut.region)

    def chunked(n):
        w = _work(n)
        return w / parts + handoff if w >= least else w
    outside = [n for n in program.nodes if n not in inside and not n.opdef.leaf
               and n.shape is not None]
    whole = sum(chunked(n) for n in outside) + sum(chunked(n) for n in cut.region)
    after = sum(num_elements(n.shape) * parts for n in cut.region if n in cut.sums)
    split = sum(chunked(n) for n in outside) + cut.work / parts + parts * handoff + after
    return whole, split


def _check(program, rules, find, root, parts):
    """The cut along the class ``root``, or _Refused saying why not."""
    axis, size = {}, None
    for n in program.nodes:
        if n.shape is None:
            continue
        found = [k for k in range(len(n.shape)) if find((id(n), k)) == root]
        if len(found) > 1:
            raise _Refused(f"{n.describe()} holds examples on two axes")
        if found:
            d = n.shape[found[0]]
            if size is None:
                size = d
            if d != size:
                raise _Refused(f"{n.describe()}: examples along an axis of {d}, not {size}")
            axis[n] = found[0]
    most, parts = parts, next((p for p in range(parts, 1, -1) if size and size % p == 0), None)
    if parts is None:
        raise _Refused(f"a batch of {size} does not cut in {most} parts or fewer")
    region, sums, leaves, work = [], {}, [], 0
    inside, after = set(), set()  # after: nodes reading the region's results (run after it)
    for n in program.nodes:
        ins = [(i, axis[x]) for i, x in enumerate(n.inputs) if x in axis]
        if n not in axis and not ins:
            kind = _linear_in_sums(n, sums, inside | after)
            if kind is not None:  # a sum of the parts' sums is one too: added after
                sums[n] = kind
                region.append(n)
                inside.add(n)
                work += _work(n)
            elif any(x in inside or x in after for x in n.inputs):
                after.add(n)
            continue
        if n.opdef.leaf:  # fed or constant: cut into the parts' sequence
            if n.op_name == "variable":
                raise _Refused(f"{n.describe()} holds examples across steps")
            leaves.append(n)
            continue
        if n.opdef.impure or n.opdef.multi_output or n.opdef.projects:
            raise _Refused(f"{n.describe()} (an effect, a random draw or a loop) reads examples")
        rule = rules.get(n)
        if rule is None:
            raise _Refused(f"{n.describe()}: its op does not say how it carries examples")
        kinds = set()
        for i, a in ins:
            out = E.combine(rule, i, a)
            if n in axis:
                if out != axis[n]:
                    raise _Refused(f"{n.describe()} mixes the examples of input {i}")
            elif out in E.KINDS:
                kinds.add(out)
            else:
                raise _Refused(f"{n.describe()} mixes the examples of input {i}")
        if n in axis and not ins and n.opdef.example_attrs is None:
            raise _Refused(f"{n.describe()} makes an axis of examples from no input")
        if len(kinds) > 1:
            raise _Refused(f"{n.describe()} reduces its inputs' examples differently")
        if kinds:
            sums[n] = kinds.pop()
        region.append(n)
        inside.add(n)
        work += _work(n)
    for n in region:
        for x in n.inputs:
            if x in after or (n in axis and x in sums):
                raise _Refused(f"{n.describe()} reads '{x.node_name}', which needs the sums "
                               "over the whole batch (a batch statistic)")
    for n in _sums_after(program, region, sums, axis, parts):
        region.remove(n)
        del sums[n]
        work -= _work(n)
    cut = _Cut(axis, size, region, sums, leaves)
    cut.work, cut.parts = work, parts
    return cut


def _sums_after(program, region, sums, axis, parts):
    """Sums better computed after the loop, on the examples put back together: those whose
    parts' values (``parts`` copies, added after) are bigger than the per-example values
    computing them reads. A wide layer's weight gradient x^T dz is 784 x 256 a part against
    dz's 128 x 256 (x is fed: no copy); a 32-step RNN's recurrent gradient, 32 products summed
    in the part, is 128 x 128 against 32 x 2 x 32 x 128. Each sum read after the region is
    decided with every sum it adds up (``_linear_in_sums``); a sum shared by two is kept."""
    inside = set(region)
    read = {id(f) for f in program.fetches if f is not None}
    read.update(id(x) for u in program.nodes if u not in inside for x in u.inputs)
    chains, owner = [], {}
    for f in region:
        if f not in sums or id(f) not in read:
            continue
        chain, stack = [], [f]
        while stack:
            n = stack.pop()
            if n in chain:
                continue
            chain.append(n)
            stack.extend(x for x in n.inputs if x in sums)
        for n in chain:
            owner[n] = owner.get(n, 0) + 1
        chains.append(chain)
    moved = []
    for chain in chains:
        if any(owner[n] > 1 for n in chain):
            continue
        copies = {x for n in chain for x in n.inputs if x in axis and not x.opdef.leaf}
        if sum(num_elements(x.shape) for x in copies) < num_elements(chain[0].shape) * parts:
            moved.extend(chain)
    return moved


def _linear_in_sums(n, sums, reached):
    """The kind of sum ``n`` is when it is linear in sums already made and reads nothing
    else (an add of two weight gradients, as BPTT sums a weight's gradient over the steps;
    a reshape of one), so that the parts' values of ``n`` add up to its value: "sum" or
    "mean"; None otherwise (``OpDef.linear``). A product with a constant (a learning rate)
    stays after the loop, where the scale pass folds it into the update."""
    if not any(x in sums for x in n.inputs) or n.opdef.impure or n.opdef.leaf:
        return None
    values = [x for k, x in enumerate(n.inputs) if not (n.opdef.orders is not None
                                                         and k >= n.opdef.orders)]
    kinds = {sums[x] for x in values if x in sums}
    if len(kinds) != 1 or not kinds <= {"sum", "mean"} or any(
            x in reached and x not in sums for x in values):
        return None
    which = [k for k, x in enumerate(values) if x in sums]
    linear = n.opdef.linear
    if linear == "all" and len(which) == len(values) \
            or linear == "first" and which == [0] and len(values) == 1:
        return kinds.pop()
    return None


def _work(n):
    """Multiply-adds of a GEMM or convolution (``OpDef.macs``), else the elements it writes."""
    macs = n.opdef.multiply_adds(n)
    return num_elements(n.shape) if macs is None else macs


def _part_shape(shape, axis, half):
    return tuple(half if k == axis else d for k, d in enumerate(shape))


def _rewrite(program, cut, parts):
    """Rebuild the region as the body of a loop over the parts (module docstring)."""
    graph = program.graph
    half = cut.size // parts
    inside = set(cut.region)
    created, mapping, sliced, sequences = [], {}, [], []
    try:
        for s in cut.leaves:
            if not any(s in n.inputs for n in cut.region):
                continue
            a, shape = cut.axis[s], tuple(s.shape)
            value = splat(s) if s.op_name == "const" else None
            if value is not None:  # every element equal: the part's own, inlined as before
                with graph.as_default():
                    mapping[s] = apply("const", [], {"value": splat_array(
                        value, s.dtype.np, _part_shape(shape, a, half))}, name="examples/splat")
                created.append(mapping[s])  # (read by the loop: captured)
                continue
            seq = apply("reshape", [s], {"shape": shape[:a] + (parts, half) + shape[a + 1:]},
                        name="examples/parts")
            created.append(seq)
            if a:
                perm = (a,) + tuple(range(a)) + tuple(range(a + 1, len(shape) + 1))
                seq = apply("transpose", [seq], {"perm": perm}, name="examples/parts")
                created.append(seq)
            v = loop_var(graph, s.dtype, _part_shape(shape, a, half), "examples/part")
            mapping[s] = v
            sliced.append(v)
            sequences.append(seq)
        for n in cut.region:
            attrs = n.attrs
            if n in cut.axis and n.opdef.example_attrs is not None:
                attrs = n.opdef.example_attrs(n, cut.axis[n], half)
            m = apply(n.opdef, [mapping.get(x, x) for x in n.inputs], attrs,
                      name=n.node_name.split("/")[-1])
            want = _part_shape(n.shape, cut.axis[n], half) if n in cut.axis else n.shape
            if tuple(m.shape) != tuple(want):
                raise _Refused(f"{n.describe()} on one part is {m.type_str()}, not "
                               f"{want}")
            m.loc, m.is_grad = n.loc, n.is_grad
            mapping[n] = m
    except (ShapeError, GraphError) as e:
        raise _Refused(f"the region does not rebuild on one part: {e}") from None
    used = {id(f) for f in program.fetches if f is not None}
    used.update(id(x) for u in program.nodes if u not in inside for x in u.inputs)
    read_after = [n for n in cut.region if id(n) in used]
    stacked = [mapping[n] for n in read_after]
    if any(v in stacked for v in sliced):
        raise _Refused("a part's value is one of its inputs as it is")  # (nothing to run)
    try:
        loop = make_loop([], [], sliced, sequences, None, [], stacked=stacked,
                         name="examples", hoist=False)
    except (ShapeError, GraphError) as e:  # (nothing of the program is changed yet)
        raise _Refused(f"the parts do not make a loop: {e}") from None
    # Body nodes that read no part's input (a broadcast of a weight) are the loop's captured
    # inputs, computed once before it: scheduled with the loop's other new nodes.
    known = set(program.nodes) | set(created)
    before, stack = [], [x for x in loop.inputs if x not in known]
    while stack:
        x = stack.pop()
        if x in known:
            continue
        known.add(x)
        before.append(x)
        stack.extend(x.inputs)
    created.extend(sorted(before, key=lambda n: n.id))
    created.append(loop)
    replace = {}
    for j, n in enumerate(read_after):
        if n in cut.sums and cut.sums[n] == "sum" and n.dtype.is_floating \
                and parts <= ROW_SUMS:
            # the parts' rows added where the loop wrote them, in the order a sum over the
            # parts would: an elementwise chain that fusion joins to the update reading it
            # (a weight gradient's sum and its SGD or Adam step: one pass, no copy)
            whole = None
            for r in range(parts):
                row = apply("loop_output", [loop], {"role": "stacked", "index": j, "row": r},
                            name=f"examples/part_{r}")
                created.append(row)
                if whole is None:
                    whole = row
                else:
                    whole = apply("add", [whole, row], {}, name="examples/sum")
                    created.append(whole)
        elif n in cut.sums:
            st = outputs(loop, "stacked", j)
            created.append(st)
            whole = apply(REDUCERS[cut.sums[n]], [st], {"axis": (0,)}, name="examples/sum")
            created.append(whole)
        else:
            st = outputs(loop, "stacked", j)
            created.append(st)
            a = cut.axis[n]
            if a:
                perm = tuple(range(1, a + 1)) + (0,) + tuple(range(a + 1, len(n.shape) + 1))
                st = apply("transpose", [st], {"perm": perm}, name="examples/whole")
                created.append(st)
            whole = apply("reshape", [st], {"shape": tuple(n.shape)}, name="examples/whole")
            created.append(whole)
        whole.loc, whole.is_grad = n.loc, n.is_grad
        replace[id(n)] = whole
    rewire(program, replace)
    _reschedule(program, inside, created, loop)


def _reschedule(program, inside, created, loop):
    """``program.nodes`` without the region and with the loop's nodes, topological, close to
    the old order (the loop where the region ended); every write of a variable the loop
    reads comes after it."""
    old = [n for n in program.nodes if n not in inside]
    last = max(k for k, n in enumerate(program.nodes) if n in inside)
    rank = {n: k for k, n in enumerate(program.nodes)}
    for n in created:
        rank[n] = last + 0.5
    keep = old + created
    import networkx as nx  # (here: importing it takes ~85 ms, and most compiles cut nothing)
    g = nx.DiGraph()
    g.add_nodes_from(keep)
    present = set(keep)
    g.add_edges_from((x, n) for n in keep for x in n.inputs if x in present)
    # the variables whose value before their update the loop reads, directly or through what
    # it captures (a view, a transpose of a weight), not through an update's result: every
    # assign of one waits for the loop (an assign the loop reads the result of precedes it)
    before = nx.ancestors(g, loop)
    assigns = [n for n in before if n.op_name == "assign"]
    read = {x for x in nx.ancestors(nx.restricted_view(g, assigns, []), loop)
            if x.op_name == "variable"}
    g.add_edges_from((loop, n) for n in old
                     if n.op_name == "assign" and n.inputs[0] in read and n not in before)
    order = {n: (rank[n], k) for k, n in enumerate(keep)}
    program.nodes = list(nx.lexicographical_topological_sort(g, key=order.__getitem__))


__all__ = ["split_examples", "MIN_WORK"]
