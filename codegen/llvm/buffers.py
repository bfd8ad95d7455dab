"""Where each value of a native step lives: feeds, variables, fetch outputs, the arena.

With a memory plan (the optimized pipeline, ``program.plan.planned``) the plan decides, as
``ir/program.py`` documents: each value's storage is its root's (views and in-place writes
share bytes), arena owners sit at their planned offsets, an ``assign`` whose value was not
computed in place copies it into the variable at the assign's position. One refinement: a
fetched value that owns an arena buffer is computed straight into its fetch output instead
(the plan keeps fetched buffers live to the end, so no other value needs those bytes).

Without a plan (``optimize=False``, the reference pipeline) every computed node gets its own
arena range, views (reshape, expand_dims, squeeze, identity...) share their input's bytes,
fetched nodes are computed into their fetch outputs, and a variable update is done in place
when every other read of the old value (through any view) is scheduled before the kernel
computing the new value and that kernel reads the old value only elementwise at the same
index. Otherwise the ``assign`` keeps its value in the arena and the variable is copied at the
end of the step, after every kernel (so swaps such as ``a, b = b, a`` stay correct).
"""
from collections import defaultdict

import numpy as np


def shares_input(node):
    """Whether the unplanned layout stores ``node`` in input 0's bytes: views, and identities
    too (no pass ran to drop them; sharing saves their copy)."""
    return node.opdef.aliases_input


def computed(node):
    """Whether a kernel of its own computes ``node`` in the unplanned layout: not a leaf, a
    compile-time value (a constant buffer), a shared input, an assign (the storage copies or
    updates in place) nor a value-less group."""
    op = node.opdef
    return not (op.leaf or op.compile_time or shares_input(node) or node.dtype is None
                or node.op_name == "assign")


def root_of(node):
    """The node whose buffer ``node`` views in the unplanned layout (itself if no view)."""
    while shares_input(node):
        node = node.inputs[0]
    return node


def is_elementwise(node):
    return node.opdef.is_elementwise or node.op_name == "fused"


def nbytes_of(node):
    return int(np.prod(node.shape, dtype=np.int64)) * node.dtype.itemsize


def const_value(node):
    """The value of a constant-like node (shape queries are constants once specialized)."""
    if node.op_name == "const":
        return np.ascontiguousarray(node.attrs["value"])
    x = node.inputs[0]
    value = node.opdef.impl(np.empty(x.shape, x.dtype.np), **node.attrs)
    return np.ascontiguousarray(np.asarray(value).astype(node.dtype.np))


def _fetch_outputs(L):
    """One output buffer per distinct fetched value; fills the layout's fetch map."""
    first = {}
    L.layout.fetch_outputs = []
    for f in L.p.fetches:
        if f is None or f.dtype is None:
            L.layout.fetch_outputs.append(None)
        elif f in first:
            L.layout.fetch_outputs.append(first[f])
        else:
            k, buf = L.output(f.shape, f.dtype)
            first[f] = k
            L.fetch_bufs[f] = buf
            L.layout.fetch_outputs.append(k)
    index = {v: i for i, v in enumerate(L.p.variables)}
    L.layout.updated = [index[v] for v, _ in L.p.updates]


class PlannedStorage:
    """Storage from ``program.plan`` (see the module docstring)."""

    def __init__(self, L):
        self.L, self.plan = L, L.p.plan
        L.arena_size = self.plan.arena_bytes  # private buffers go past the planned ones
        self.homes = {}
        self._bufs = {}  # node -> its Buf (the plan, homes and slots are fixed once made)
        for f, buf in L.fetch_bufs.items():
            r = self.plan.root(f)
            if r in self.plan.offsets and r not in self.homes:
                self.homes[r] = buf

    def is_view(self, node):
        return node in self.plan.views

    def keep_in(self, node, buf):
        """Make ``buf`` (bytes past the plan's, which only ``node``'s producer writes: a loop's
        results) ``node``'s storage instead of its planned buffer, and say whether it did: not
        for a fetched value, one whose buffer a reader already has, nor one that anything is
        planned to overwrite in place or view (the plan would let it write over ``buf``, which
        a later reader of the producer's bytes may still read)."""
        plan = self.plan
        if node in self.homes or node in self._bufs or plan.root(node) is not node:
            return False
        if any(v is node for v in plan.inplace.values()) or \
                any(plan.root(v) is node for v in plan.views):
            return False
        self.homes[node] = buf
        return True

    def buf(self, node):
        found = self._bufs.get(node)  # (a node's buffer is asked for by each of its readers)
        if found is None:
            found = self._bufs[node] = self._buf(node)
        return found

    def _buf(self, node):
        L, r = self.L, self.plan.root(node)
        if r in self.homes:
            return self.homes[r]
        if r in self.plan.offsets:
            return L.arena_at(self.plan.offsets[r], self.plan.nbytes[r])
        if r.opdef.compile_time:
            return L.const_buf(r)
        return L.bufs[r]

    def lower_assign(self, n):
        if not self.plan.update_in_place.get(n, False):
            var, value = n.inputs
            self.L.copy(self.buf(var), self.buf(value), var.shape, var.dtype, n)

    def finish(self):
        pass


class UnplannedStorage:
    """One arena buffer per computed node, plus in-place variable updates of its own."""

    def __init__(self, L):
        self.L, p = L, L.p
        self.assign_copies = set()
        inplace = find_inplace_updates(p)
        for n in p.nodes:
            if not computed(n):
                continue
            if n in inplace:
                L.bufs[n] = L.bufs[inplace[n]]
            elif n in L.fetch_bufs:
                L.bufs[n] = L.fetch_bufs[n]
            else:
                L.bufs[n] = L.arena(nbytes_of(n))
        for var, asg in p.updates:
            k = root_of(asg.inputs[1])
            if inplace.get(k) is var:
                L.bufs[asg] = L.bufs[var]
            elif computed(k) or k.op_name == "assign":
                L.bufs[asg] = self.buf(asg.inputs[1])  # bytes never overwritten later
            else:
                L.bufs[asg] = L.arena(nbytes_of(asg))
                self.assign_copies.add(asg)

    def is_view(self, node):
        return shares_input(node)

    def buf(self, node):
        L, r = self.L, root_of(node)
        if node in L.bufs:
            return L.bufs[node]
        if r.opdef.compile_time:
            return L.const_buf(r)
        return L.bufs[r]

    def lower_assign(self, n):
        if n in self.assign_copies:
            self.L.copy(self.L.bufs[n], self.buf(n.inputs[1]), n.shape, n.dtype, n)

    def finish(self):
        """Copy new values into variables that were not updated in place."""
        L = self.L
        for var, asg in L.p.updates:
            if self.buf(asg) != L.bufs[var]:
                L.copy(L.bufs[var], self.buf(asg), var.shape, var.dtype)


def make_storage(L):
    """The storage strategy for ``L.p``: the plan's when it has one."""
    _fetch_outputs(L)
    plan = getattr(L.p, "plan", None)
    if plan is not None and getattr(plan, "planned", False):
        return PlannedStorage(L)
    return UnplannedStorage(L)


# -- the unplanned layout's in-place variable updates ------------------------------------------
def _readers(program, pos):
    """variable -> [(position, reader node, input index or None for a fetch copy)]."""
    readers = defaultdict(list)
    for n in program.nodes:
        if shares_input(n) or n.dtype is None:
            continue
        for k, x in enumerate(n.inputs):
            if n.op_name == "assign" and k == 0:
                continue  # the assign's target is not a read
            r = root_of(x)
            if r.op_name == "variable":
                readers[r].append((pos[n], n, k))
    for f in program.fetches:
        if f is not None and f.dtype is not None and shares_input(f):
            r = root_of(f)
            if r.op_name == "variable":
                readers[r].append((pos[f], f, None))
    return readers


def find_inplace_updates(program):
    """{kernel node: variable} for updates the kernel can write into the variable directly."""
    pos = {n: i for i, n in enumerate(program.nodes)}
    readers = _readers(program, pos)
    chosen = {}
    for var, asg in program.updates:
        k = root_of(asg.inputs[1])
        if not computed(k) or k in chosen or k.dtype != var.dtype \
                or nbytes_of(k) != nbytes_of(var):
            continue
        ok = True
        for at, reader, index in readers[var]:
            if reader is k:
                ok = ok and is_elementwise(k) and tuple(k.inputs[index].shape) == tuple(k.shape)
            elif at >= pos[k]:
                ok = False
        if ok:
            chosen[k] = var
    return chosen
