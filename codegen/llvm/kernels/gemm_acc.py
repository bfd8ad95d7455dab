"""GEMM planning across a step: sums of products by BLAS accumulation, and the matmuls of an
unrolled loop batched into a few large GEMMs.

An unrolled RNN makes many small GEMMs that the fused update then sums: the weight gradient
is ``W - (M_1 + ... + M_31)`` with ``M_t = h_{t-1}^T da_t``, and each forward step computes
``tanh(x_t Wx + h Wh + b)``. Small GEMMs waste most of their time outside the multiply, so:

- projection batching: ``x_t Wx`` for every t where the x_t are consecutive blocks ``X[t]`` of
  one tensor read early safely (a feed, constant or variable) and Wx one such tensor too
  become ONE GEMM ``X Wx`` at the first of them, into a private buffer P; ``x_t Wx`` is P[t];
- stacked sums: a fused sum of ``A_t^T B_t`` products (a weight gradient) is ONE GEMM with
  K = the stacked rows: operands that are consecutive blocks of a feed or constant are read
  in place, others are copied into a private stack at their product's position (when the
  plan says they are live); the GEMM runs at the fused node;
- accumulation: any other fused sum of products used nowhere else makes every GEMM add into
  one private buffer (``beta = 1``; the first overwrites, or it starts from a batched P[t]);

and the fused node reads that one buffer in place of its whole add tree. Private buffers lie
past the planned arena (so no planned value shares their bytes) and plain accumulators are
reused by sums whose spans do not overlap.
"""
import functools
import os

import numpy as np

from ....ir import scalar as S
from ..loops import contiguous_strides
from .elementwise import emit_gemm
from .transpose import transpose_into

# Batch projections and stack weight-gradient sums into single large GEMMs. Off by default:
# measured on this 2-core machine, the stacked 128x992x128 GEMM ran slower (operands past L2,
# packing) than 31 small GEMMs accumulating into a cache-hot buffer (W3: 1.71 vs 1.45 ms);
# with more cores for BLAS it should win. ``GRAPHC_BATCH_GEMMS=1`` turns it on.
BATCH = os.environ.get("GRAPHC_BATCH_GEMMS") == "1"
TRANSPOSE_REUSE = 4  # GEMMs reading one B transposed before it gets a transposed copy


def _read_early(root):
    """A leaf holds its value from the step's start: it may be read before its reader."""
    return root.opdef.leaf


def _never_written(root):
    """A leaf no assign writes (not a variable): it may be read after its last planned
    reader."""
    return root.opdef.leaf and root.op_name != "variable"


def _add_leaves(e):
    """The operands of a tree of float additions rooted at ``e`` (``e`` itself if no add)."""
    leaves, stack = [], [e]
    while stack:  # left to right, iteratively: an unrolled loop's sum is thousands deep
        x = stack.pop()
        if x.op == "add" and x.dtype.is_floating:
            stack.extend((x.args[1], x.args[0]))
        else:
            leaves.append(x)
    return leaves


def summable_args(body, tree, cands):
    """The candidate args whose every occurrence in ``body`` is one leaf of add tree ``tree``.

    The rewrite deletes the product's own value (its GEMM adds into a shared buffer instead),
    so it is sound only for an arg that occurs exactly once in the whole body, read as a tree,
    and that once as a leaf of ``tree``: ``t + t + u`` reads ``t`` twice and ``(t + u) * t``
    reads it outside the sum, and neither may fold ``t``. Proved by counting occurrences,
    never by the shape of the pattern.
    """
    in_body, by_index = _body_counts(body)
    in_tree = S.occurrences(tree)
    leaves = [e.value for e in _add_leaves(tree) if e.op == "arg"]
    proved = set()
    for i in cands:
        nodes = by_index.get(i, [])
        if sum(in_body[id(e)] for e in nodes) == 1 and \
                sum(in_tree.get(id(e), 0) for e in nodes) == 1 and leaves.count(i) == 1:
            proved.add(i)
    return proved


@functools.lru_cache(maxsize=4)
def _body_counts(body):
    """(``S.occurrences(body)``, {arg number: its arg Exprs}): one walk of a body whose trees
    are tried one by one (Exprs are immutable, so the counts never go stale)."""
    by_index = {}
    for e in body.walk():
        if e.op == "arg":
            by_index.setdefault(e.value, []).append(e)
    return S.occurrences(body), by_index


def _best_tree(body, cands):
    """The add node of ``body`` and its proved summable args (see ``summable_args``) where
    the most of them meet (at least 2; the first in ``body.walk()`` order among equals), or
    (None, set()).

    A tree's candidate leaves bound what it can prove, so trees are tried from the most
    leaves down and the search stops below the best found: on an unrolled loop's add chain,
    thousands deep, the whole chain is tried first and proving it ends the search (trying
    each subchain would take time quadratic in its length).
    """
    order = body.walk()
    leaves = {}  # id(add) -> candidate args among its add-tree leaves, counted as a tree
    for e in order:
        if e.op == "add" and e.dtype.is_floating:
            leaves[id(e)] = sum(leaves[id(a)] if id(a) in leaves else
                                int(a.op == "arg" and a.value in cands) for a in e.args)
    adds = sorted((k for k, e in enumerate(order) if id(e) in leaves),
                  key=lambda k: (-leaves[id(order[k])], k))
    best, best_args, best_k = None, set(), None
    for k in adds:
        e = order[k]
        if leaves[id(e)] < max(2, len(best_args)):
            break  # no tree from here on can prove as many
        proved = summable_args(body, e, cands)
        if len(proved) > max(1, len(best_args)) or \
                (best is not None and len(proved) == len(best_args) and k < best_k):
            best, best_args, best_k = e, proved, k
    return best, best_args


def _replace(body, target, replacement):
    memo = {}
    for e in body.walk():
        if e is target:
            memo[id(e)] = replacement
        elif e.op in ("arg", "const"):
            memo[id(e)] = e
        else:
            memo[id(e)] = S.Expr(e.op, tuple(memo[id(a)] for a in e.args), e.value, e.dtype)
    return memo[id(body)]


def _flags(m):
    return bool(m.attrs.get("transpose_a")), bool(m.attrs.get("transpose_b"))


class GemmPlan:
    """What happens to each matmul of the step (see the module docstring).

    Attributes:
        gemm: {matmul: (Buf, beta)}: the GEMM writes (beta 0) or adds (beta 1) there.
        fused: {fused node: (body, extra arg number, Buf)}: the sum is read from Buf.
        skip: nodes whose own kernel is not emitted (batched products, dead slices).
        copies: {matmul: [(stack Buf, operand node)]}: copies made instead of the GEMM.
        before: {node: [(kind, args)]}: GEMMs emitted right before ``node``.
        result: {matmul: Buf} where a batched product's value lives.
    """

    def __init__(self, L):
        self.gemm, self.fused, self.skip, self.copies, self.before, self.result = \
            {}, {}, set(), {}, {}, {}
        self.folds = []  # (fold name, [absorbing node, nodes]): listed in the dumps (folds.py)
        p = L.p
        self.L, self.users = L, p.users()
        self.fetched = {id(f) for f in p.fetches if f is not None}
        self.pos = {id(n): i for i, n in enumerate(p.nodes)}
        families = self._projections(p) if BATCH else {}
        groups = self._sum_groups(p)
        batchable = {id(m) for ms in families.values() for _, m in ms}
        excluded = set()
        for g in groups:  # a sum can start from one batched product only
            excluded.update(id(m) for m in [m for m in g[3] if id(m) in batchable][1:])
        for ms in families.values():
            self._batch_projection(sorted(((t, m) for t, m in ms if id(m) not in excluded),
                                          key=lambda tm: tm[0]))
        free = []
        for g in groups:
            free = self._lower_sum(g, free)
        self.transposed = {}  # product node -> contiguous B^T Buf (B reused by many GEMMs)
        self._plan_transposes(p)

    # -- finding the patterns ---------------------------------------------------------------------
    def _root(self, x):
        plan = self.L.p.plan
        return plan.root(x) if plan is not None else x

    def _block(self, s, root_ok):
        """(X, t) when ``s`` is ``X[t]`` (an index on axis 0, the rest whole) of an X whose
        storage root passes ``root_ok``, else None."""
        if s.op_name != "strided_slice":
            return None
        spec = s.attrs["spec"]
        if not spec or spec[0][0] != "i" or any(
                e[0] != "s" or e[1] is not None or e[2] is not None or e[3] not in (None, 1)
                for e in spec[1:]):
            return None
        x = s.inputs[0]
        if not root_ok(self._root(x)):
            return None
        return x, spec[0][1] % x.shape[0]

    def _only_for(self, x, m):
        """``x`` feeds nothing but ``m`` and is not fetched."""
        return id(x) not in self.fetched and all(u is m for u in self.users.get(x, []))

    def _projections(self, p):
        """{(id X, id W): [(t, matmul)]} for matmuls ``X[t] @ W`` (no transposes)."""
        families = {}
        for m in p.nodes:
            if m.op_name != "matmul" or not m.dtype.is_floating or any(_flags(m)) \
                    or m.rank != 2 or id(m) in self.fetched:
                continue
            hit = self._block(m.inputs[0], _read_early)
            w = m.inputs[1]
            if hit is None or not _read_early(self._root(w)):
                continue
            families.setdefault((id(hit[0]), id(w)), []).append((hit[1], m))
        return families

    def _sum_groups(self, p):
        """[(fused node, add tree, its leaves, its matmuls by position)] for fused sums of at
        least two matmul results that nothing else uses."""
        groups = []
        for n in p.nodes:
            if n.op_name != "fused" or n.attrs.get("reduce") is not None:
                continue
            shape = tuple(n.attrs.get("shape", n.shape))
            cands = {i for i, x in enumerate(n.inputs)
                     if x.op_name == "matmul" and x.dtype == n.dtype and x.dtype.is_floating
                     and tuple(x.shape) == shape and self._only_for(x, n)
                     and sum(1 for y in n.inputs if y is x) == 1}
            tree, proved = _best_tree(n.attrs["body"], cands) if len(cands) >= 2 \
                else (None, set())
            if tree is None:
                continue
            leaves = _add_leaves(tree)
            args = [e.value for e in leaves if e.op == "arg" and e.value in proved]
            matmuls = sorted((n.inputs[i] for i in args), key=lambda m: self.pos[id(m)])
            groups.append((n, tree, leaves, matmuls))
        return groups

    # -- deciding -------------------------------------------------------------------------------------
    def _batch_projection(self, members):
        """One GEMM for ``X[t] @ W`` over consecutive t (at the first of them)."""
        ts = [t for t, _ in members]
        if len(members) < 2 or ts != list(range(ts[0], ts[0] + len(ts))):
            return
        L, m0 = self.L, members[0][1]
        x, w = m0.inputs[0].inputs[0], m0.inputs[1]
        rows, inner = m0.inputs[0].shape
        cols = m0.shape[1]
        item = m0.dtype.itemsize
        block = L.buf(x)
        a = type(block)(block.slot, block.offset + ts[0] * rows * inner * item,
                        len(ts) * rows * inner * item)
        out = L.arena(len(ts) * rows * cols * item)
        first = min((m for _, m in members), key=lambda m: self.pos[id(m)])
        self.folds.append(("gemm_batch", [first] + [m for _, m in members if m is not first]))
        dims = (len(ts) * rows, cols, inner, inner, cols)
        self.before.setdefault(first, []).append((m0, out, a, L.buf(w), dims, (False, False)))
        for k, (_, m) in enumerate(members):
            self.result[m] = type(out)(out.slot, out.offset + k * rows * cols * item,
                                       rows * cols * item)
            self.skip.add(m)
            if self._only_for(m.inputs[0], m):
                self.skip.add(m.inputs[0])

    def _lower_sum(self, group, free):
        n, tree, leaves, matmuls = group
        L = self.L
        nbytes = int(np.prod(n.shape)) * n.dtype.itemsize
        summed = {id(m) for m in matmuls}
        stacked = self._stack(n, matmuls)
        if stacked is not None:
            buf = stacked
        else:
            base = next((m for m in matmuls if m in self.result), None)
            if base is not None:
                buf = self.result[base]
            else:
                start = self.pos[id(matmuls[0])]
                buf = next((b for end, b in free if end < start and b.nbytes == nbytes), None)
                free = [(e, b) for e, b in free if b is not buf]
                buf = buf or L.arena(nbytes)
                free.append((self.pos[id(n)], buf))
            for k, m in enumerate(matmuls):
                if m is not base:
                    self.gemm[m] = (buf, 0.0 if k == 0 and base is None else 1.0)
        extra = len(n.inputs)
        acc = S.arg(extra, n.dtype)
        for leaf in leaves:
            if not (leaf.op == "arg" and id(n.inputs[leaf.value]) in summed):
                acc = S.call("add", acc, leaf)
        self.fused[n] = (_replace(n.attrs["body"], tree, acc), extra, buf)
        self.folds.append(("gemm_stack" if stacked is not None else "gemm_accumulate",
                           [n] + list(matmuls)))
        return free

    def _stack(self, n, matmuls):
        """For a sum of ``A_t^T B_t``: stack the operands, one GEMM before ``n``; its Buf."""
        if not BATCH or len(matmuls) < 2 or any(m in self.result for m in matmuls):
            return None
        m0 = matmuls[0]
        if _flags(m0) != (True, False) or any(
                _flags(m) != (True, False) or m.rank != 2 or
                tuple(m.inputs[0].shape) != tuple(m0.inputs[0].shape) or
                tuple(m.inputs[1].shape) != tuple(m0.inputs[1].shape) for m in matmuls):
            return None
        L = self.L
        rows, inner = m0.inputs[0].shape
        cols = m0.inputs[1].shape[1]
        item = m0.dtype.itemsize
        order, views = list(matmuls), [None, None]
        for side in (0, 1):
            run = self._block_run(order, side)
            if run is not None and (views[0] is None or run[1] == order):
                views[side], order = run
        sides = [views[side] or L.arena(len(order) * rows * m0.inputs[side].shape[1] * item)
                 for side in (0, 1)]
        for k, m in enumerate(order):
            self.copies[m] = []
            self.skip.add(m)
            for side in (0, 1):
                x = m.inputs[side]
                if views[side] is not None:
                    if self._only_for(x, m):
                        self.skip.add(x)  # a slice read in place: its copy is not needed
                    continue
                width = x.shape[1]
                stack = sides[side]
                self.copies[m].append((type(stack)(stack.slot, stack.offset +
                                                   k * rows * width * item, rows * width * item),
                                       x))
        out = L.arena(int(np.prod(n.shape)) * n.dtype.itemsize)
        dims = (inner, cols, len(order) * rows, inner, cols)
        self.before.setdefault(n, []).append((m0, out, sides[0], sides[1], dims, (True, False)))
        return out

    def _block_run(self, order, side):
        """(view Buf, order by t) when every operand ``side`` is a consecutive block of one
        never-written tensor, else None."""
        hits = [self._block(m.inputs[side], _never_written) for m in order]
        if any(h is None for h in hits) or len({id(h[0]) for h in hits}) != 1:
            return None
        ranked = sorted(zip(hits, order), key=lambda hm: hm[0][1])
        ts = [h[1] for h, _ in ranked]
        if ts != list(range(ts[0], ts[0] + len(ts))):
            return None
        x = hits[0][0]
        rows, width = order[0].inputs[side].shape
        item = order[0].dtype.itemsize
        block = self.L.buf(x)
        view = type(block)(block.slot, block.offset + ts[0] * rows * width * item,
                           len(ts) * rows * width * item)
        return view, [m for _, m in ranked]

    def _plan_transposes(self, p):
        """Give a B read transposed by many GEMMs one contiguous B^T copy (at its first use):
        small GEMMs against a transposed operand ran about half as fast here."""
        uses = {}
        for m in p.nodes:
            if m.opdef.product is not None and m.dtype.is_floating and m.rank == 2 \
                    and _flags(m)[1] and m not in self.skip:
                uses.setdefault(id(m.inputs[m.opdef.product[1]]), []).append(m)
        for ms in uses.values():
            if len(ms) < TRANSPOSE_REUSE:
                continue
            b = ms[0].inputs[ms[0].opdef.product[1]]
            bt = self.L.arena(int(np.prod(b.shape)) * b.dtype.itemsize)
            first = min(ms, key=lambda m: self.pos[id(m)])
            self.before.setdefault(first, []).insert(0, ("transpose", b, bt))
            for m in ms:
                self.transposed[m] = bt

    # -- used by the lowering ---------------------------------------------------------------------
    def emit_before(self, L, node):
        """Batched GEMMs scheduled right before ``node``."""
        for action in self.before.get(node, ()):
            if action[0] == "transpose":
                _, b, bt = action
                transpose_into(L, bt, L.buf(b), b.shape[0], b.shape[1], b.dtype, node)
                continue
            m, out, a, b, dims, flags = action
            emit_gemm(L, m, out, a, b, dims, flags)

    def replaces(self, L, m):
        """Lower matmul ``m`` the planned way; True when its own GEMM is not needed."""
        if m in self.copies:
            for dst, x in self.copies[m]:
                L.copy(dst, L.buf(x), x.shape, x.dtype, m)
            return True
        return m in self.skip

    def extra_operand(self, node):
        """(body, [(Buf, dtype, strides)]) to lower fused ``node`` with, or None."""
        hit = self.fused.get(node)
        if hit is None:
            return None
        body, _, buf = hit
        return body, [(buf, node.dtype, contiguous_strides(node.shape))]

