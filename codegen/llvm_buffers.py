"""Where each value of a native step lives: feeds, variables, fetch outputs, the arena.

Without a memory plan (``program.plan is None``) every computed node gets its own 64-byte
aligned arena range; views (reshape, expand_dims, squeeze, identity...) share their input's
bytes. Two decisions save whole passes over memory:

- a fetched node is computed straight into its fetch output buffer;
- a variable update is done in place: the kernel computing the new value writes into the
  variable's own array when every other read of the old value (through any view) is
  scheduled before that kernel, and the kernel itself reads the old value only elementwise at
  the same index (so each element is read before it is overwritten).

Otherwise the ``assign`` keeps its value in the arena and the variable is copied at the end
of the step, after every kernel (so swaps such as ``a, b = b, a`` stay correct).
"""
from collections import defaultdict

VIEW_OPS = ("reshape", "reshape_like", "expand_dims", "squeeze", "identity", "stop_gradient")
LEAF_OPS = ("placeholder", "variable", "const", "dim_size", "shape_of")
_NOT_KERNELS = LEAF_OPS + VIEW_OPS + ("assign", "group")


def root_of(node):
    """The node whose buffer ``node`` views (itself when it is not a view)."""
    while node.op_name in VIEW_OPS:
        node = node.inputs[0]
    return node


def is_elementwise(node):
    return node.opdef.is_elementwise or node.op_name == "fused"


def _nbytes(node):
    n = 1
    for d in node.shape:
        n *= d
    return n * node.dtype.itemsize


def _readers(program, pos):
    """variable -> [(position, reader node, input index or None for a fetch copy)]."""
    readers = defaultdict(list)
    for n in program.nodes:
        if n.op_name in VIEW_OPS or n.op_name == "group":
            continue
        for k, x in enumerate(n.inputs):
            if n.op_name == "assign" and k == 0:
                continue  # the assign's target is not a read
            r = root_of(x)
            if r.op_name == "variable":
                readers[r].append((pos[n], n, k))
    for f in program.fetches:
        if f is not None and f.dtype is not None and f.op_name in VIEW_OPS:
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
        if k.op_name in _NOT_KERNELS or k in chosen or k.dtype != var.dtype \
                or _nbytes(k) != _nbytes(var):
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


def assign_buffers(L):
    """Decide every node's buffer (see the module docstring); fills ``L.bufs``."""
    p = L.p
    L.fetch_bufs, L.assign_copies = {}, set()
    first = {}
    L.layout.fetch_outputs = []
    for f in p.fetches:
        if f is None or f.dtype is None:
            L.layout.fetch_outputs.append(None)
        elif f in first:
            L.layout.fetch_outputs.append(first[f])
        else:
            k, buf = L.output(f.shape, f.dtype)
            first[f] = k
            L.fetch_bufs[f] = buf
            L.layout.fetch_outputs.append(k)
    index = {v: i for i, v in enumerate(p.variables)}
    L.layout.updated = [index[v] for v, _ in p.updates]
    inplace = find_inplace_updates(p)
    for n in p.nodes:
        if n.op_name in _NOT_KERNELS:
            continue
        if n in inplace:
            L.bufs[n] = L.bufs[inplace[n]]
        elif n in L.fetch_bufs:
            L.bufs[n] = L.fetch_bufs[n]
        else:
            L.bufs[n] = L.arena(_nbytes(n))
    for var, asg in p.updates:
        k = root_of(asg.inputs[1])
        if inplace.get(k) is var:
            L.bufs[asg] = L.bufs[var]
        elif k.op_name not in _NOT_KERNELS or k.op_name == "assign":
            L.bufs[asg] = L.buf(asg.inputs[1])  # arena or output bytes, never overwritten
        else:
            L.bufs[asg] = L.arena(_nbytes(asg))
            L.assign_copies.add(asg)


def fetch_copies(L, node):
    """Copy ``node``'s value into its fetch output unless it was computed there."""
    dst = L.fetch_bufs.get(node)
    if dst is not None and L.buf(node) != dst:
        L.copy(dst, L.buf(node), node.shape, node.dtype)


def leaf_fetch_copies(L):
    """Fetched feeds, variables and constants: copied first, before any update."""
    for f in L.fetch_bufs:
        if f.op_name in LEAF_OPS:
            fetch_copies(L, f)


def final_updates(L):
    """Copy new values into variables that were not updated in place."""
    for var, asg in L.p.updates:
        if L.buf(asg) != L.bufs[var]:
            L.copy(L.bufs[var], L.buf(asg), var.shape, var.dtype)
