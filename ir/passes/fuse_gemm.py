"""GEMM epilogue fusion: an update ``w - a @ b`` whose product nothing else reads becomes one
``subtract_matmul`` node.

SGD's update of a weight is ``W - dW`` with ``dW = A^T dY`` (the learning rate folded into dY
by ``scale``); the product is read by the subtract alone. As one node (``ir/ops/linalg.py``)
the update may overwrite W (its input 0) in place, and a backend's GEMM subtracts each tile
from W as it stores it: no product buffer, no second pass over the weight. Values are the
reference's: the product summed as the matmul sums it, then subtracted. Only 2-D products
of the minuend's own shape and dtype (no broadcasting) are rewritten. Part of the ``fuse``
pass (``fuse_elementwise`` runs it first).
"""
from .common import new_node, replace_uses, users


def _product(n, users_of, fetched):
    """The matmul ``n`` subtracts, when it is a 2-D float product only ``n`` reads."""
    if n.op_name != "subtract" or len(n.inputs) != 2:
        return None
    w, m = n.inputs
    if m.op_name != "matmul" or id(m) in fetched or len(users_of[m]) != 1 or w is m:
        return None
    a, b = m.inputs
    if not (m.dtype.is_floating and m.dtype == w.dtype == n.dtype and m.rank == 2
            and a.rank == 2 and b.rank == 2 and tuple(w.shape) == tuple(m.shape)
            == tuple(n.shape)):
        return None
    return m


def fuse_subtract_matmul(program):
    """Rewrite each ``subtract(w, matmul(a, b))`` whose product has no other reader.

    Args:
        program: an ``ir.program.Program`` (rewritten in place; the caller tracks uses and
            drops the dead nodes).
    Returns:
        The number of updates fused.
    Example:
        >>> fuse_subtract_matmul(program)   # an SGD step of a 2-layer MLP
        2
    """
    users_of = users(program.nodes)
    fetched = {id(f) for f in program.fetches if f is not None}
    sites = [(n, m) for n in program.nodes
             for m in [_product(n, users_of, fetched)] if m is not None]
    placed = {}  # id(n) -> its fused node, scheduled right before n (one rebuild, no walks)
    for n, m in sites:
        fused = new_node(program, n, "subtract_matmul", [n.inputs[0]] + list(m.inputs),
                         {"transpose_a": bool(m.attrs.get("transpose_a")),
                          "transpose_b": bool(m.attrs.get("transpose_b"))}, schedule=False)
        placed[id(n)] = fused
        replace_uses(program, n, fused)
    if placed:
        program.nodes = [m for n in program.nodes
                         for m in ((placed[id(n)], n) if id(n) in placed else (n,))]
    return len(sites)
