"""Memory planning: liveness intervals of every temporary, packed into one arena.

After in-place analysis and scheduling, each value is stored in one of: a feed, a variable, a
constant, a view of another value, the buffer of the input it overwrote, or a buffer of its own
in the arena. A buffer of its own lives from the node that writes it to the last node that
reads any value sharing it (views and in-place successors included; a fetched value lives to
the end of the step). Intervals are inclusive: a node never writes over an input it is still
reading unless the plan says in place. Two packings, by the number of buffers:

- up to ``GREEDY_AT_MOST`` buffers, the better (smaller arena) of two: greedy by size
  (largest first, at the lowest 64-byte aligned offset that overlaps no buffer whose interval
  intersects; its cost grows with the buffers live at once, which an unrolled loop makes
  large) and the linear scan below;
- more: only the linear scan, O(n log n) in the buffers whatever the live set: walking the
  schedule, each buffer's space returns to a free list (neighbours coalesced) after its last
  reader, and a new buffer takes the smallest free block that holds it (best fit), else
  grows the arena (over a free block at its top end when there is one).

``peak_bytes`` is the arena size; ``naive_bytes`` is one buffer per value node, what the
unplanned step allocates; ``live_peak`` (the most bytes live at once) is the lower bound any
packing could reach.
"""
import bisect
import heapq

import numpy as np

from ..program import MemoryPlan
from .common import nbytes, value_inputs
from .old_values import keep_old_values

ALIGN = 64
GREEDY_AT_MOST = 256  # more buffers than this: the linear scan alone (greedy costs ~0.1 ms each)


def _align(x):
    return (x + ALIGN - 1) // ALIGN * ALIGN


def ensure_plan(program):
    """``program.plan``, or a fresh plan with only the views (when in-place analysis is off)."""
    if program.plan is None:
        plan = MemoryPlan()
        for n in program.nodes:
            if n.opdef.view:
                plan.views[n] = n.inputs[0]
        for n in program.nodes:
            if n.op_name == "assign":
                plan.inplace[n] = n.inputs[0]
                plan.update_in_place[n] = False
        program.plan = plan
    return program.plan


class RootCache:
    """``plan`` as the scheduler and planner read it (``views``, ``inplace``, ``root``),
    with each node's storage root looked up once: they ask for every value's root many
    times, and change no aliasing meanwhile."""

    def __init__(self, plan):
        self.plan, self.views, self.inplace = plan, plan.views, plan.inplace
        self._roots = {}

    def root(self, node):
        r = self._roots.get(node)  # (nodes hash by identity)
        if r is None:
            r = self._roots[node] = self.plan.root(node)
        return r


def owns_buffer(n, plan):
    """Whether ``n`` needs arena storage of its own."""
    return (n.dtype is not None and not n.opdef.leaf and n not in plan.views
            and n not in plan.inplace)


def liveness(nodes, plan, fetches, reads=None):
    """Arena owners (schedule order) and {owner: (first, last)} inclusive positions.

    ``reads``: {id(node): the storage roots it reads} when the caller has them (the
    scheduler asks for several orders of one program)."""
    owners, interval = [], {}
    for i, n in enumerate(nodes):
        if owns_buffer(n, plan):
            owners.append(n)
            interval[n] = [i, i]  # (keyed by node: nodes hash by identity)
    for i, n in enumerate(nodes):
        for r in reads[id(n)] if reads is not None else map(plan.root, value_inputs(n)):
            span = interval.get(r)
            if span is not None and span[1] < i:
                span[1] = i
        r = plan.root(n)
        if r is not n:  # an in-place write keeps the buffer alive
            span = interval.get(r)
            if span is not None and span[1] < i:
                span[1] = i
    for f in fetches:
        if f is not None:
            r = plan.root(f)
            if r in interval:
                interval[r][1] = len(nodes)
    return owners, {k: tuple(v) for k, v in interval.items()}


def live_peak(nodes, plan, fetches, reads=None):
    """The most bytes of arena buffers live at one schedule position (a lower bound)."""
    return peak_of(*liveness(nodes, plan, fetches, reads), len(nodes))


def peak_of(owners, interval, length):
    """``live_peak`` from ``liveness``'s result over a schedule of ``length`` nodes."""
    delta = [0] * (length + 2)
    for n in owners:
        a, b = interval[n]
        delta[a] += nbytes(n)
        delta[b + 1] -= nbytes(n)
    peak = cur = 0
    for d in delta:
        cur += d
        peak = max(peak, cur)
    return peak


def _first_fit(busy, size):
    """The lowest aligned offset where ``size`` bytes overlap none of the ``busy`` (offset,
    end) blocks (a list of pairs or a (k, 2) array). Many blocks (an unrolled loop keeps
    thousands live) go through NumPy: the offset tried before each block (in offset order) is
    the largest aligned end so far."""
    if len(busy) < 64:
        off = 0
        for o, e in sorted(map(tuple, busy) if isinstance(busy, np.ndarray) else busy):
            if off + size <= o:
                break
            if e > off:  # (off stays aligned: max(off, _align(e)))
                off = (e + ALIGN - 1) // ALIGN * ALIGN
        return int(off)
    blocks = np.asarray(busy, dtype=np.int64).reshape(-1, 2)
    blocks = blocks[np.lexsort((blocks[:, 1], blocks[:, 0]))]
    ends = np.maximum.accumulate((blocks[:, 1] + ALIGN - 1) // ALIGN * ALIGN)
    tried = np.concatenate(([0], ends[:-1]))
    fits = np.flatnonzero(tried + size <= blocks[:, 0])
    return int(tried[fits[0]] if fits.size else ends[-1])


def _place(owners, interval):
    """Greedy-by-size packing; returns {id(owner): offset} and the arena size.

    The buffers placed so far are columns of arrays, so finding those whose interval meets
    the new one's is one vectorized comparison (a scan in Python per buffer made planning
    quadratic in Python steps on an unrolled loop, whose live set grows with its length).
    """
    order = sorted(range(len(owners)), key=lambda i: (-nbytes(owners[i]),
                                                      interval[owners[i]][0], i))
    first, last, start, end = (np.empty(len(owners), np.int64) for _ in range(4))
    offsets, top = {}, 0
    for k, i in enumerate(order):
        n = owners[i]
        size = max(nbytes(n), 1)
        a, b = interval[n]
        meet = np.flatnonzero((first[:k] <= b) & (last[:k] >= a))
        if len(meet) < 64:  # (pairs of Python ints: rows of an array sort slowly)
            busy = list(zip(start[meet].tolist(), end[meet].tolist()))
        else:
            busy = np.column_stack((start[meet], end[meet]))
        off = _first_fit(busy, size)
        offsets[id(n)] = off
        first[k], last[k], start[k], end[k] = a, b, off, off + size
        top = max(top, _align(off + size))
    return offsets, top


class _FreeList:
    """Free blocks of the arena: best fit by (size, offset), neighbours coalesced."""

    def __init__(self):
        self.blocks = []      # sorted (size, offset)
        self.at = {}          # offset -> size
        self.ending = {}      # end -> offset

    def _remove(self, off):
        size = self.at.pop(off)
        del self.ending[off + size]
        del self.blocks[bisect.bisect_left(self.blocks, (size, off))]
        return size

    def add(self, off, size):
        if off + size in self.at:          # the block after it
            size += self._remove(off + size)
        if off in self.ending:             # the block before it
            before = self.ending[off]
            size += self._remove(before)
            off = before
        self.at[off], self.ending[off + size] = size, off
        bisect.insort(self.blocks, (size, off))

    def take(self, size):
        """The offset of the smallest block of at least ``size`` bytes (its rest stays free),
        or None."""
        i = bisect.bisect_left(self.blocks, (size, -1))
        if i == len(self.blocks):
            return None
        have, off = self.blocks[i]
        self._remove(off)
        if have > size:
            self.add(off + size, have - size)
        return off

    def take_top(self, top):
        """The offset of a free block ending at ``top`` (removed), or None."""
        off = self.ending.get(top)
        if off is not None:
            self._remove(off)
        return off


def _scan(owners, interval):
    """Linear-scan packing (see module docstring): {id(owner): offset} and the arena size.
    ``owners`` are in schedule order (each one's interval starts at its own position)."""
    free, ending = _FreeList(), []   # ending: heap of (last position, offset, size)
    offsets, top = {}, 0
    for n in owners:
        a, b = interval[n]
        while ending and ending[0][0] < a:
            _, off, size = heapq.heappop(ending)
            free.add(off, size)
        size = _align(max(nbytes(n), 1))
        off = free.take(size)
        if off is None:
            below = free.take_top(top)
            off = top if below is None else below
            top = off + size
        offsets[id(n)] = off
        heapq.heappush(ending, (b, off, size))
    return offsets, top


def pack(owners, interval):
    """{id(owner): offset} and the arena size (see module docstring for the choice)."""
    scanned = _scan(owners, interval)
    if len(owners) > GREEDY_AT_MOST:
        return scanned
    greedy = _place(owners, interval)
    return greedy if greedy[1] <= scanned[1] else scanned


def naive_bytes(nodes):
    """One buffer per value node that is not a leaf or a view (the unplanned step)."""
    return sum(nbytes(n) for n in nodes
               if n.dtype is not None and not n.opdef.leaf and not n.opdef.view)


def plan_memory(program):
    """Assign every arena buffer an offset; fill ``program.plan``.

    Args:
        program: an ``ir.program.Program`` in its final schedule.
    Returns:
        {"buffers": arena buffers, "arena_bytes", "naive_bytes", "live_peak",
        "aliases": values stored in another node's buffer (in place or view)}.
    Example:
        >>> plan_memory(program)["arena_bytes"] <= program.plan.naive_bytes
        True
    """
    plan = ensure_plan(program)
    keep_old_values(program, plan)  # (done already when the schedule pass ran)
    owners, interval = liveness(program.nodes, RootCache(plan), program.fetches)
    offsets, top = pack(owners, interval)
    plan.offsets = {n: offsets[id(n)] for n in owners}
    plan.nbytes = {n: nbytes(n) for n in owners}
    plan.intervals = {n: interval[n] for n in owners}
    plan.arena_bytes = plan.peak_bytes = top
    plan.naive_bytes = naive_bytes(program.nodes)
    plan.live_peak = peak_of(owners, interval, len(program.nodes))
    plan.planned = True
    for n in program.nodes:
        if n in plan.offsets:
            off = plan.offsets[n]
            n.meta["buffer"] = f"arena[{off}:{off + plan.nbytes[n]}]"
        elif n in plan.inplace and n.op_name != "assign":
            n.meta["inplace_of"] = plan.inplace[n]
        if n in plan.notes and (n not in plan.inplace or n.op_name == "assign"):
            n.meta["note"] = plan.notes[n]  # refusals and copies; "in place over %k" says the rest
    aliases = sum(1 for n in program.nodes if n in plan.views or
                  (n in plan.inplace and n.op_name != "assign"))
    return {"buffers": len(owners), "arena_bytes": top, "naive_bytes": plan.naive_bytes,
            "live_peak": plan.live_peak, "aliases": aliases}
