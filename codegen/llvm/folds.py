"""Named folds: a node's kernel also computes a neighbour, so the neighbour gets no kernel.

A fold is a peephole of the LLVM backend, and like a pass it shows in the dumps: every fold
that fires is listed in the lowering's stats (``stats["folds"]``), at the top of ``step.ll``
and in ``folds.txt`` of a dump directory, naming the fold, the nodes and the user's lines.

    conv_epilogue    conv2d + the fused bias/activation right after it: one kernel applies
                     the epilogue to each output row in registers
    conv_pool        conv2d (+ its folded epilogue) + max_pool right after it: one kernel pools
                     each band of output rows from a stack buffer; the convolution's full-size
                     output is never stored (the backward pool ops read the saved argmax)
    relu_mask        max_pool_grad + ``where(x > 0, ., 0)`` right after it (a pooled ReLU's
                     gradient): only windows whose maximum is > 0 route their gradient
    bias_gradient    ``reduce_sum(dy, [0, 1, 2])`` right before conv2d_backprop_filter: one
                     pass over dy computes the filter gradient and the bias gradient
    routed_filter_gradient
                     max_pool_grad (+ its relu_mask, + the bias gradient's sum) right before
                     conv2d_backprop_filter: the filter gradient routes each pooled gradient
                     from the saved argmax as it loads dy; the routing is never stored
    gemm_accumulate  a fused sum of matmuls: every GEMM adds into one buffer (BLAS beta = 1),
                     the fused node reads it (``kernels/gemm_acc.py`` proves each term)
    gemm_stack       a sum of ``A_t^T B_t``: one GEMM over the stacked operands
    gemm_batch       ``X[t] @ W`` over consecutive t: one GEMM (``GRAPHC_BATCH_GEMMS=1``)

``apply_folds`` runs the matchers over the schedule before lowering (never in a
numerics-checked build, which keeps and checks every value); a kernel asks ``L.fold(node,
name)`` for what its fold claimed. The GEMM folds are decided by ``kernels.gemm_acc.GemmPlan``
and recorded here by name.
"""
from dataclasses import dataclass

import numpy as np

from ...ir.shapes import normalize_axes
from .kernels.conv import _row_blocked, _vectorizable, const_scalar
from .kernels.conv_lanes import lane_group
from .kernels import pool
from .kernels.vector_body import _VECTOR_OPS
from .kernels.windows import VECTOR_CHANNELS, _geometry, _tiled, _unpadded
from .loops import broadcast_strides


@dataclass(frozen=True)
class Fold:
    """A fold's name, the op whose kernel absorbs the other nodes, and its matcher
    ``match(L, node) -> (claim, [absorbed nodes]) or None`` (None: decided elsewhere)."""
    name: str
    op: str = None
    match: object = None


FOLDS = {name: Fold(name) for name in ("gemm_accumulate", "gemm_stack", "gemm_batch")}


def fold(name, op):
    """Register ``match(L, node)`` as the fold ``name`` of nodes of ``op``."""
    def register(fn):
        FOLDS[name] = Fold(name, op, fn)
        return fn
    return register


def one_line(text):
    """``text`` safe in an LLVM comment (which ends at the line's end): control characters
    become ``\\xNN`` escapes."""
    text = str(text)
    if text.isprintable():  # (no control character: the usual case, at C speed)
        return text
    return "".join(c if " " <= c != "\x7f" else f"\\x{ord(c):02x}" for c in text)


def node_note(n, label=None):
    """``op 'name' file.py:12`` (``label`` in place of ``op 'name'``), for LLVM comments."""
    what = label or f"{n.op_name} '{n.node_name}'"
    where = f" {n.loc.short}" if n.loc is not None and n.loc.lineno else ""
    return one_line(what + where)


def record(L, name, nodes):
    """Note that fold ``name`` fired over ``nodes`` (the absorbing node first)."""
    L.fold_notes.append(f"{name}: " + " + ".join(node_note(n) for n in nodes))


def apply_folds(L):
    """Run every registered matcher over the schedule; ``L.fold`` then answers kernels."""
    if L.numerics:
        return
    by_op = {}
    for f in FOLDS.values():
        if f.match is not None:
            by_op.setdefault(f.op, []).append(f)
    for n in L.p.nodes:
        for f in by_op.get(n.op_name, ()):
            hit = f.match(L, n)
            if hit is not None:
                claim, absorbed = hit
                L.folded[n] = (f.name, claim)
                record(L, f.name, [n] + absorbed)
                break


def comment_block(notes):
    """The fold notes as LLVM comment lines (empty when none fired)."""
    if not notes:
        return ""
    return "".join(f"; fold {note}\n" for note in notes) + "\n"


# -- the matchers -----------------------------------------------------------------------------------
def _next_sole_reader(L, n):
    """The node scheduled right after ``n`` when it alone reads ``n`` and ``n`` is not
    fetched (nothing else can see n's value), else None."""
    users = L.p.users().get(n, [])
    nodes = L.p.nodes
    i = next(k for k, m in enumerate(nodes) if m is n)
    if len(users) != 1 or i + 1 >= len(nodes) or nodes[i + 1] is not users[0] or \
            any(f is n for f in L.p.fetches if f is not None):
        return None
    return users[0]


@fold("conv_epilogue", "conv2d")
def conv_epilogue(L, n):
    """The fused node right after conv2d ``n`` that alone reads it (bias + activation), when
    the direct vector kernel runs and the epilogue can run on each output row in registers:
    arithmetic, max and min only, other inputs per output channel (or splat constants). Safe
    because nothing runs in between and its buffer overlaps none of the bytes the convolution
    reads. Claims (node, body, conv arg, other inputs {arg: node})."""
    x, w = n.inputs
    if not _vectorizable(_geometry(n, x, w.shape), w.shape[3]):
        return None
    f = _next_sole_reader(L, n)
    if f is None or f.op_name != "fused" or f.attrs.get("reduce") is not None \
            or f.dtype != n.dtype or tuple(f.shape) != tuple(n.shape):
        return None
    body = f.attrs["body"]
    if any(e.op not in ("arg", "const", "neg", "max", "min") + tuple(_VECTOR_OPS)
           for e in body.walk()) or any(e.dtype != n.dtype for e in body.walk()):
        return None
    cout, others, conv_arg = n.shape[-1], {}, None
    for k, v in enumerate(f.inputs):
        if v is n:
            conv_arg = k
            continue
        lanes = broadcast_strides(v.shape, f.shape)
        size = int(np.prod(v.shape))
        if v.dtype != n.dtype or any(lanes[:-1]) or size not in (1, cout) or \
                (size == 1 and const_scalar(v) is None):
            return None
        others[k] = v
    out = L.out(f)
    if conv_arg is None or any(out.overlaps(L.buf(v)) for v in list(n.inputs) +
                               list(others.values())):
        return None
    return (f, body, conv_arg, others), [f]


# The largest stack buffer (bytes) a pooling convolution keeps a band of output rows in.
BAND_BYTES = 1 << 16


@fold("conv_pool", "max_pool")
def conv_pool(L, m):
    """The direct vector convolution whose output (after its folded epilogue, if any) max_pool
    ``m`` reads, scheduled right before ``m``, when the windows do not overlap (stride =
    window) and lie inside the output: the convolution's kernel computes each band of
    ``kh`` output rows into a stack buffer and pools it there (``conv_vector_function``'s
    ``pool``). Only when nothing reads that output at run time but ``m``: it is not fetched,
    and its other readers are the backward pool ops of the same windows, which route from
    the argmax ``m`` saves, and the ``where`` of a pooled ReLU's gradient that ``relu_mask``
    folds into them. Claims (conv node, pooled geometry); ``L.pooled_conv[conv]`` is ``m``."""
    v, nodes = m.inputs[0], L.p.nodes
    i = next(k for k, u in enumerate(nodes) if u is m)
    if i == 0 or nodes[i - 1] is not v or not v.dtype.is_floating:
        return None
    conv = v if v.op_name == "conv2d" and v not in L.folded else None
    if conv is None and i >= 2:
        claim = L.fold(nodes[i - 2], "conv_epilogue")
        conv = nodes[i - 2] if claim is not None and claim[0] is v else None
    if conv is None:
        return None
    x, w = conv.inputs
    cg, pg = _geometry(conv, x, w.shape), _geometry(m, v)
    if not (_vectorizable(cg, w.shape[3]) and pg.kh == pg.sh and pg.kw == pg.sw
            and _unpadded(pg) and pg.kh * pg.kw <= pool.TOGETHER_MAX_TAPS and pool.SAVE
            and pg.kh * cg.ow * w.shape[3] * v.dtype.itemsize <= BAND_BYTES):
        return None
    if any(f is v for f in L.p.fetches if f is not None):
        return None
    # The kernel writes m's output while it still reads the convolution's operands: the plan,
    # which saw them dead once the convolution ran, may have put m's output over one of them.
    epilogue = L.fold(conv, "conv_epilogue")
    operands = [x, w] + (list(epilogue[3].values()) if epilogue is not None else [])
    if any(L.out(m).overlaps(L.buf(u)) for u in operands):
        return None
    readers = [u for u in L.p.users().get(v, []) if u is not m]
    routed = [u for u in readers if u.op_name in pool.READERS and u.inputs[0] is v
              and u.inputs[1] is not v and pool._key(v, _geometry(u, v)) == pool._key(v, pg)]
    masks = {id(hit[0]) for hit in (relu_mask(L, u) for u in routed  # (the fold's own op)
                                     if u.op_name == "max_pool_grad") if hit is not None}
    if any(u not in routed and id(u) not in masks for u in readers) or \
            any(sum(a is v for a in u.inputs) != 1 for u in readers if id(u) in masks):
        return None
    vars(L).setdefault("pooled_conv", {})[conv] = m
    return (conv, pg), [conv] + ([v] if v is not conv else [])


@fold("relu_mask", "max_pool_grad")
def relu_mask(L, n):
    """The node ``where(x > 0, max_pool_grad(x, dy), 0)`` right after ``max_pool_grad`` node
    ``n`` (a pooled ReLU's gradient: x is the pool's input, the ReLU's output), when the vector
    kernels run and the mask can be folded into the routing: route only windows whose maximum
    is > 0, straight into the where's buffer. Safe when nothing runs between the two and the
    where's bytes overlap neither input of ``n`` (the only values live then that the plan may
    have put there), or are exactly x's with windows that tile x. Claims the where node."""
    g = _geometry(n, n.inputs[0])
    if g.c > VECTOR_CHANNELS:
        return None
    f = _next_sole_reader(L, n)
    if f is None or tuple(f.shape) != tuple(n.shape) or f.dtype != n.dtype \
            or not (f.op_name == "fused" and f.attrs.get("reduce") is None):
        return None
    body = f.attrs["body"]
    if not (body.op == "where" and body.args[0].op == "gt" and body.args[1].op == "arg"
            and body.args[2].op == "const" and body.args[2].value == 0.0
            and body.args[0].args[0].op == "arg" and body.args[0].args[1].op == "const"
            and body.args[0].args[1].value == 0.0):
        return None
    if f.inputs[body.args[1].value] is not n or \
            f.inputs[body.args[0].args[0].value] is not n.inputs[0]:
        return None
    out, (x, dy) = L.out(f), (L.buf(v) for v in n.inputs)
    if out.overlaps(dy) or (out.overlaps(x) and not (
            out == x and (_tiled(g) or _argmax_saved_before(L, n, g)))):
        return None  # (over x itself is fine when windows tile: each reads its taps first;
        # or when the routing reads the argmax a forward max_pool saved, not x)
    return f, [f]


def _argmax_saved_before(L, n, g):
    """Whether a forward max_pool of ``n``'s x with ``n``'s windows runs before the backward
    pool op ``n``: it saves the argmax (``kernels.pool``), and ``n`` routes from it."""
    x, key = n.inputs[0], pool._key(n.inputs[0], g)
    if not pool.SAVE:
        return False
    for m in L.p.nodes:  # the schedule
        if m is n:
            return False
        if m.op_name == "max_pool" and m.inputs[0] is x and pool._key(x, _geometry(m, x)) == key:
            return True
    return False


ROUTE_FILTER_GRADIENT = True  # off: max_pool_grad stores the routing, as before


@fold("routed_filter_gradient", "conv2d_backprop_filter")
def routed_filter_gradient(L, n):
    """The filter gradient ``n`` of a pooled convolution whose dy is ``max_pool_grad``'s
    routing (or the ``where`` of a pooled ReLU that ``relu_mask`` folded into it), with
    nothing scheduled between them but that where, the bias gradient's sum
    (``bias_gradient``'s conditions) and assigns outside the arena: ``n``'s kernel routes
    each pooled gradient from the argmax codes a forward max_pool saved as it loads dy, so
    the routing's full-size output (three quarters zeros under 2x2 windows) is neither
    written nor read. Only where a group of positions sharing a vector is exactly a window's
    row (``conv_lanes``: P = window width = stride, windows tiling the convolution's output)
    and nothing else reads the routing. Claims (the max_pool_grad node, whether masked, the
    bias sum or None); the routing, its where and the sum are deferred to ``n``'s kernel."""
    if not ROUTE_FILTER_GRADIENT:
        return None
    x, dy = n.inputs
    nodes, users = L.p.nodes, L.p.users()
    i = next(k for k, m in enumerate(nodes) if m is n)
    r = _bias_sum(L, n)  # (any other node before n fails the check below)
    if dy.op_name == "max_pool_grad":
        routing, masked = dy, False
    else:
        routing = next((u for u in dy.inputs if u.op_name == "max_pool_grad"
                        and L.fold(u, "relu_mask") is dy), None)
        masked = True
    if routing is None:
        return None
    # Between the routing and n: dy (the where) and r, deferred to n's kernel, and nodes
    # that write nothing of the arena the pooled gradient lies in (a variable's assign).
    pooled = L.buf(routing.inputs[1])
    j = next(k for k, m in enumerate(nodes) if m is routing)
    if any(u is not dy and u is not r and (u.op_name != "assign" or L.out(u).overlaps(pooled))
           for u in nodes[j + 1:i]):
        return None
    if n.dtype != routing.dtype or any(f is v for f in L.p.fetches if f is not None
                                       for v in (routing, dy)):
        return None
    readers = [u for u in users.get(dy, []) if u is not n and u is not r]
    if readers or {id(u) for u in users.get(routing, [])} != \
            {id(u) for u in ([dy] if masked else [n] + ([r] if r is not None else []))}:
        return None
    pg = _geometry(routing, routing.inputs[0])
    cg = _geometry(n, x, n.attrs["filter_shape"])
    cout = n.shape[3]
    if not (_vectorizable(cg, cout) and _tiled(pg) and pg.c == cout <= VECTOR_CHANNELS
            and lane_group(cg, cout, n.dtype, _row_blocked(cg)) == pg.kw
            and _argmax_saved_before(L, routing, pg)):
        return None
    # The pooled gradient is read by n's kernel now, past its planned life: only the deferred
    # nodes run in between, and n's kernel stores its outputs (which the plan may have put
    # over it) once, after its last read (the filter gradient and bias sums stay in
    # registers; on threads, in partial buffers past the arena).
    for u in (routing, dy, r):
        if u is not None:
            L.deferred[u] = n
    absorbed = [routing] + ([dy] if masked else []) + ([r] if r is not None else [])
    return (routing, masked, r), absorbed


@fold("bias_gradient", "conv2d_backprop_filter")
def bias_gradient(L, n):
    """``reduce_sum(dy, axis=(0, 1, 2))`` scheduled right before the filter gradient ``n`` of
    the same dy: the vectorized filter-gradient loop loads those dy rows anyway, so one pass
    over dy computes both. Only when nothing runs in between (the sum's value cannot be needed
    earlier) and its bytes overlap none the kernel reads or writes. Claims the sum, which is
    deferred to n's kernel (a fetched sum, as a cut step's body returns its bias gradient,
    is copied to its fetch output after that kernel, if it was not computed there)."""
    r = _bias_sum(L, n)
    if r is None:
        return None
    L.deferred[r] = n
    return r, [r]


def _bias_sum(L, n):
    """``bias_gradient``'s sum for filter gradient ``n``, or None."""
    x, dy = n.inputs
    nodes = L.p.nodes
    i = next(k for k, m in enumerate(nodes) if m is n)
    r = nodes[i - 1] if i else None
    if r is None or r.op_name != "reduce_sum" or r.inputs[0] is not dy or r.dtype != n.dtype \
            or dy.rank != 4 or r.size != n.shape[3] \
            or sorted(normalize_axes(r.attrs.get("axis"), 4)) != [0, 1, 2] \
            or not _vectorizable(_geometry(n, x, n.attrs["filter_shape"]), n.shape[3]):
        return None
    if any(L.out(r).overlaps(b) for b in (L.out(n), L.buf(x), L.buf(dy))):
        return None  # cannot share the kernel: the sum runs first, as scheduled
    return r
