"""GEMM accumulation: sums of matrix products computed by BLAS's ``beta = 1``.

Backpropagation through an unrolled RNN sums one weight-gradient product per time step, and
the fused update of the weight then reads 31 temporaries: ``W - (M_1 + M_2 + ... + M_31)``.
When a fused node's body adds up matmul results that nothing else uses, each of those GEMMs
instead accumulates into ONE private buffer (the first with ``beta = 0``, the rest with
``beta = 1``), at its own position in the schedule (so its operands are live exactly when the
plan says), and the fused node reads that buffer in place of the whole add tree. The forward
step ``tanh(x_t Wx + h Wh + b)`` gets the same treatment. Private buffers lie past the planned
arena and are reused by sums whose spans (first GEMM .. fused node) do not overlap.
"""
import numpy as np

from ..ir import scalar as S
from .llvm_loops import contiguous_strides


def _add_leaves(e):
    """The operands of a tree of float additions rooted at ``e`` (``e`` itself if no add)."""
    if e.op == "add" and e.dtype.is_floating:
        return _add_leaves(e.args[0]) + _add_leaves(e.args[1])
    return [e]


def _candidates(node, users, fetched):
    """Input indices of ``node`` that are float matmuls used only by it, of its shape."""
    out = set()
    for i, x in enumerate(node.inputs):
        if (x.op_name == "matmul" and x.dtype == node.dtype and x.dtype.is_floating
                and tuple(x.shape) == tuple(node.attrs.get("shape", node.shape))
                and id(x) not in fetched and len({id(u) for u in users.get(x, [])}) == 1
                and sum(1 for y in node.inputs if y is x) == 1):
            out.add(i)
    return out


def _best_tree(body, cands):
    """The add node of ``body`` whose leaves hold the most candidate args (at least 2)."""
    best, best_count = None, 1
    for e in body.walk():
        if e.op != "add" or not e.dtype.is_floating:
            continue
        count = sum(1 for leaf in _add_leaves(e) if leaf.op == "arg" and leaf.value in cands)
        if count > best_count:
            best, best_count = e, count
    return best


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


class Accumulations:
    """Which matmuls accumulate into which private buffer, and the rewritten fused bodies."""

    def __init__(self, L):
        self.gemm = {}    # matmul node -> (Buf, beta)
        self.fused = {}   # fused node -> (rewritten body, extra arg number, Buf)
        program = L.p
        users = program.users()
        fetched = {id(f) for f in program.fetches if f is not None}
        pos = {id(n): i for i, n in enumerate(program.nodes)}
        free = []  # (end position, Buf) of private buffers, reusable after their end
        for n in program.nodes:
            if n.op_name != "fused" or n.attrs.get("reduce") is not None:
                continue
            body = n.attrs["body"]
            cands = _candidates(n, users, fetched)
            tree = _best_tree(body, cands) if len(cands) >= 2 else None
            if tree is None:
                continue
            leaves = _add_leaves(tree)
            summed = [leaf.value for leaf in leaves if leaf.op == "arg" and leaf.value in cands]
            matmuls = sorted((n.inputs[i] for i in summed), key=lambda m: pos[id(m)])
            start, nbytes = pos[id(matmuls[0])], int(np.prod(n.shape)) * n.dtype.itemsize
            buf = next((b for end, b in free if end < start and b.nbytes == nbytes), None)
            if buf is None:
                buf = L.arena(nbytes)
            else:
                free = [(e, b) for e, b in free if b is not buf]
            free.append((pos[id(n)], buf))
            for k, m in enumerate(matmuls):
                self.gemm[m] = (buf, 0.0 if k == 0 else 1.0)
            extra = len(n.inputs)
            acc = S.arg(extra, n.dtype)
            rest = [leaf for leaf in leaves if not (leaf.op == "arg" and leaf.value in summed)]
            for leaf in rest:
                acc = S.call("add", acc, leaf)
            self.fused[n] = (_replace(body, tree, acc), extra, buf)

    def extra_operand(self, node):
        """(body, [(Buf, dtype, strides)]) to lower fused ``node`` with, or None."""
        hit = self.fused.get(node)
        if hit is None:
            return None
        body, _, buf = hit
        return body, [(buf, node.dtype, contiguous_strides(node.shape))]
