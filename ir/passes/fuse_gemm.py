"""GEMM epilogue fusion: an update ``w - a @ b`` whose product nothing else reads becomes one
``subtract_matmul`` node; an elementwise node that alone reads a product, one ``fused_matmul``.

SGD's update of a weight is ``W - dW`` with ``dW = A^T dY`` (the learning rate folded into dY
by ``scale``); the product is read by the subtract alone. As one node (``ir/ops/linalg.py``)
the update may overwrite W (its input 0) in place, and a backend's GEMM subtracts each tile
from W as it stores it: no product buffer, no second pass over the weight. Values are the
reference's: the product summed as the matmul sums it, then subtracted. Only 2-D products
of the minuend's own shape and dtype (no broadcasting) are rewritten. Part of the ``fuse``
pass (``fuse_elementwise`` runs it first).

The elementwise group right after a product (``relu(x @ W + b)``'s bias and ReLU, the ReLU
gradient ``where(h > 0, dh @ W^T, 0)``), when it alone reads the product, becomes
``fused_matmul(a, b, others...)`` with the group's body (``ir/ops/linalg.py``): the GEMM
applies it to each tile before storing it. Its other inputs are of the product's shape, one
value per column (a bias) or one value; only for bodies a backend's GEMMs apply
(``program.gemm_epilogues``: the scalar ops they can write, the LLVM backend's vector ones),
after the elementwise groups are made (``fuse_matmul_epilogues``).
"""
from .. import scalar as S
from .common import new_node, placed_before, replace_uses, users


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
                         _transposes(m), schedule=False)
        placed[id(n)] = fused
        replace_uses(program, n, fused)
    if placed:
        program.nodes = placed_before(program.nodes, placed)
    return len(sites)


def _transposes(m):
    """The transpose flags of matmul ``m``, as the fused nodes replacing it take them."""
    return {"transpose_a": bool(m.attrs.get("transpose_a")),
            "transpose_b": bool(m.attrs.get("transpose_b"))}


def _epilogue_of(f, users_of, fetched):
    """The product when ``f`` is an elementwise node that alone reads one 2-D float matmul of
    its own shape and dtype (the matmul read by nothing else, not fetched), its other inputs
    of that dtype, full, per column or single; else None."""
    if f.op_name == "fused":
        if f.attrs.get("reduce") is not None:
            return None
    elif not f.opdef.is_elementwise or f.dtype is None or f.shape is None:
        return None
    products = [x for x in f.inputs if x.op_name == "matmul"]
    if not f.dtype.is_floating or len(products) != 1 or f.rank != 2:
        return None
    m = products[0]
    if id(m) in fetched or len(users_of[m]) != 1 or m.dtype != f.dtype \
            or tuple(m.shape) != tuple(f.shape) or m.rank != 2 \
            or any(x.rank != 2 for x in m.inputs):
        return None
    n_cols = f.shape[1]
    for x in f.inputs:
        if x is m:
            continue
        if x.dtype != f.dtype or tuple(x.shape) not in (tuple(f.shape), (n_cols,), (1, n_cols),
                                                        (), (1,), (1, 1)):
            return None
    return m


def _body(f):
    """``f``'s formula over its inputs (arg k: input k)."""
    if f.op_name == "fused":
        return f.attrs["body"]
    return f.opdef.scalar_body([x.dtype for x in f.inputs], f.attrs)


def fuse_matmul_epilogues(program):
    """Rewrite each elementwise node ``f`` that alone reads a product ``a @ b`` (module
    docstring) as ``fused_matmul(a, b, others)``, when its body's ops are all among
    ``program.gemm_epilogues``.

    Args:
        program: an ``ir.program.Program`` (rewritten in place; the caller tracks uses and
            drops the dead nodes).
    Returns:
        The number of products given an epilogue.
    """
    ops = getattr(program, "gemm_epilogues", None)
    if not ops:
        return 0
    for n in program.nodes:  # (their bodies, programs of their own, are fused alike)
        if n.op_name == "loop":
            n.meta["gemm_epilogues"] = ops
    users_of = users(program.nodes)
    fetched = {id(f) for f in program.fetches if f is not None}
    placed = {}
    for f in program.nodes:
        m = _epilogue_of(f, users_of, fetched)
        if m is None or any(e.op not in ops for e in _body(f).walk()):
            continue
        others, slot = [], {}  # (an input read twice is one argument)
        for x in f.inputs:
            if x is not m and id(x) not in slot:
                slot[id(x)] = len(others) + 1
                others.append(x)
        args = [S.arg(0 if x is m else slot[id(x)], x.dtype) for x in f.inputs]
        body = S.substitute(_body(f), args)
        # (named as the product: its kernel is a GEMM, its profile row "matmul 'MatMul'")
        node = new_node(program, m, "fused_matmul", list(m.inputs) + others,
                        {"body": body, **_transposes(m)}, schedule=False)
        node.meta["members"] = [("matmul", m.node_name, m.loc.short if m.loc else "",
                                 m.is_grad)] + list(f.meta.get("members", [
                                     (f.op_name, f.node_name, f.loc.short if f.loc else "",
                                      f.is_grad)]))
        placed[id(f)] = node
        replace_uses(program, f, node)
    if placed:
        program.nodes = placed_before(program.nodes, placed)
    return len(placed)
