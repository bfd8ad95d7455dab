"""Neural-network kernels: softmax, log_softmax and the fused softmax cross-entropies.

All work on the last axis and subtract the row maximum first, so logits of +-1e4 give finite
losses and gradients; a row of all ``-inf`` (fully masked) gives uniform probabilities and
finite gradients (see ``shifted_logits``), and never leaks NaN into other rows. The
cross-entropy gradient is one fused kernel, ``softmax(z) - y``
(scaled by the label mass for dense labels), not a chain of generic ops; its own VJP is the
softmax Jacobian-vector product ``p * (v - sum(p * v))``, so second derivatives work.
"""
import numpy as np

from .. import dtypes as D
from graphc.errors import GradientError

from .. import examples as E
from ..shapes import normalize_axis
from .registry import F, defop, require, same_dtype


def _last_axis(axis, rank):
    require(axis in (-1, rank - 1), f"only the last axis is supported, got axis={axis}",
            hint="transpose the axis to the end first")


def _softmax_infer(nodes, axis=-1):
    (x,) = nodes
    same_dtype(nodes, "f")
    require(x.rank >= 1, "needs rank >= 1")
    _last_axis(axis, x.rank)
    return x.dtype, x.shape


def shifted_logits(x):
    """``x - max(x)`` per row, with 0 wherever ``x`` equals its row's max: a row that is all
    ``-inf`` (fully masked) then counts as equal logits, the limit of equal finite logits
    going to ``-inf`` (uniform probabilities, as ``-1e9`` masking gives), and ``+inf``
    entries share the mass. Never ``inf - inf = nan``."""
    m = np.max(x, axis=-1, keepdims=True)
    return np.where(x == m, 0.0, x - m)


def softmax_impl(x, axis=-1):
    e = np.exp(shifted_logits(x))
    return e / np.sum(e, axis=-1, keepdims=True)


def log_softmax_impl(x, axis=-1):
    z = shifted_logits(x)
    return z - np.log(np.sum(np.exp(z), axis=-1, keepdims=True))


def _softmax_jvp_t(p, v):
    """J^T v for J = diag(p) - p p^T (symmetric): p * (v - sum(p * v))."""
    return p * (v - F.reduce_sum(p * v, axis=-1, keepdims=True))


def _softmax_examples(node):
    """Every axis but the normalized one ties."""
    rank = len(node.shape)
    a = normalize_axis(node.attrs.get("axis", -1), rank)
    return [(0, k, k) for k in range(rank) if k != a]


SOFTMAX = defop("softmax", _softmax_infer,
                lambda g, out, x, axis=-1: [_softmax_jvp_t(out, g)],
                impl=softmax_impl, family="nn", destroys=(0,), tf_name="Softmax",
                examples=_softmax_examples)
LOG_SOFTMAX = defop(
    "log_softmax", _softmax_infer,
    lambda g, out, x, axis=-1: [g - F.exp(out) * F.reduce_sum(g, axis=-1, keepdims=True)],
    impl=log_softmax_impl, family="nn", destroys=(0,), tf_name="LogSoftmax",
    examples=_softmax_examples)


def _match_labels(labels, logits):
    """Labels agree with logits on every leading axis; the loss drops the class axis."""
    for i, (a, b) in enumerate(zip(labels.shape, logits.shape)):
        require(a is None or b is None or a == b,
                f"labels {labels.type_str()} do not match logits {logits.type_str()}",
                [f"axis {i}: {a} vs {b}"])
    return logits.dtype, logits.shape[:-1]


# -- sparse labels: loss_i = -log softmax(z_i)[y_i] ---------------------------------------------
def _sparse_infer(nodes):
    logits, labels = nodes
    require(logits.dtype.is_floating, f"logits must be floating, found {logits.dtype.name}",
            kind="dtype")
    require(labels.dtype.is_integer, f"labels must be integers, found {labels.dtype.name}",
            hint="sparse labels are class indices; use softmax_cross_entropy_with_logits "
                 "for one-hot or soft labels", kind="dtype")
    require(labels.rank == logits.rank - 1,
            f"labels {labels.type_str()} must have rank {logits.rank - 1} for logits "
            f"{logits.type_str()}")
    return _match_labels(labels, logits)


def sparse_xent_impl(logits, labels):
    lsm = log_softmax_impl(logits)
    return -np.take_along_axis(lsm, np.asarray(labels)[..., None].astype(np.int64),
                               axis=-1)[..., 0]


def sparse_xent_grad_impl(logits, labels, of=""):
    p = softmax_impl(logits)
    np.put_along_axis(p, np.asarray(labels)[..., None].astype(np.int64),
                      np.take_along_axis(p, np.asarray(labels)[..., None].astype(np.int64),
                                         axis=-1) - 1, axis=-1)
    return p


def _label_check(n):
    """Labels index the class axis: each must lie in [0, classes) (checked at run time)."""
    return 1, "label", n.inputs[0].shape[-1]


SPARSE_XENT = defop(
    "sparse_softmax_xent", _sparse_infer,
    lambda g, out, logits, labels:
    [F.expand_dims(g, axis=-1) * F.sparse_softmax_xent_grad(logits, labels,
                                                            of=out.describe()), None],
    impl=sparse_xent_impl, family="nn", index_check=_label_check,
    tf_name="SparseSoftmaxCrossEntropyWithLogits", loss_grad="sparse_softmax_xent_grad",
    loss_with_grad="sparse_softmax_xent_with_grad", examples=E.leading(1, (0, 1)))


def _sparse_grad_vjp(g, out, logits, labels, of=""):
    return [_softmax_jvp_t(F.softmax(logits), g), None]


SPARSE_XENT_GRAD = defop(
    "sparse_softmax_xent_grad", lambda nodes, of="": (nodes[0].dtype, nodes[0].shape),
    _sparse_grad_vjp, impl=sparse_xent_grad_impl, family="nn",
    doc="softmax(logits) - one_hot(labels)", index_check=_label_check, destroys=(0,),
    examples=E.leading(1, (0, 1)))


# -- the loss and its gradient in one kernel ------------------------------------------------
# A training step computes both sparse_softmax_xent(z, y) and sparse_softmax_xent_grad(z, y):
# the same row maximum, exponentials and sums twice. ``fuse`` (``ir.passes.fuse_xent``)
# rewrites the pair into ``sparse_softmax_xent_with_grad(z, y)``, whose value is the gradient
# and whose kernel keeps each row's loss beside it, and ``kept_loss`` of that node, which
# reads the kept losses (as ``host_output`` reads what its call left); dense labels' pair
# (softmax_xent, softmax_xent_grad) becomes ``softmax_xent_with_grad`` the same way. They are
# made by the passes, after autodiff: nothing differentiates them (as ``fused`` nodes), and
# the VJP of a ``*_with_grad`` is its gradient op's.

def _kept_loss_infer(nodes):
    (pair,) = nodes
    require(pair.opdef.keeps_loss,
            "kept_loss reads the losses a *_with_grad node kept (sparse_softmax_xent_with_grad, "
            f"softmax_xent_with_grad), found {pair.op_name}")
    return pair.dtype, pair.shape[:-1]


def kept_loss_impl(grad):
    raise NotImplementedError("kept_loss has no value of its own: backends read the losses "
                              "its *_with_grad input kept")


def _kept_loss_vjp(g, out, pair):
    # The losses' gradient is a function of the logits, which kept_loss does not read: a zero
    # here would be a silent wrong answer. The node is made by the passes, after autodiff.
    loss = pair.op_name[:-len("_with_grad")]
    raise GradientError(f"kept_loss ({out.describe()}) is made by the fuse pass after "
                        f"gradients are taken: differentiate {loss} instead")


SPARSE_XENT_WITH_GRAD = defop(
    "sparse_softmax_xent_with_grad", lambda nodes, of="": _sparse_infer(nodes[:2]) and
    (nodes[0].dtype, nodes[0].shape), _sparse_grad_vjp, impl=sparse_xent_grad_impl,
    family="nn", index_check=_label_check, destroys=(0,), keeps_loss=True,
    doc="softmax(logits) - one_hot(labels); the kernel keeps each row's loss (kept_loss)")
KEPT_LOSS = defop(
    "kept_loss", _kept_loss_infer, _kept_loss_vjp, impl=kept_loss_impl, family="nn",
    doc="the per-row softmax cross-entropy its *_with_grad input computed and kept")


# -- dense labels: loss_i = -sum_j y_ij log softmax(z_i)_j --------------------------------------
def _dense_infer(nodes):
    logits, labels = nodes
    same_dtype(nodes, "f")
    require(labels.rank == logits.rank, f"labels {labels.type_str()} and logits "
            f"{logits.type_str()} must have the same shape")
    return _match_labels(labels, logits)


def dense_xent_impl(logits, labels):
    # a zero label takes no part, even where a masked logit makes log p = -inf (0 log 0 = 0)
    return -np.sum(np.where(labels == 0, 0.0, labels * log_softmax_impl(logits)), axis=-1)


def dense_xent_grad_impl(logits, labels):
    return softmax_impl(logits) * np.sum(labels, axis=-1, keepdims=True) - labels


def _dense_grad_vjp(g, out, logits, labels):
    p = F.softmax(logits)
    mass = F.reduce_sum(labels, axis=-1, keepdims=True)
    return [_softmax_jvp_t(p, g) * mass,
            F.reduce_sum(g * p, axis=-1, keepdims=True) - g]


DENSE_XENT = defop(
    "softmax_xent", _dense_infer,
    lambda g, out, logits, labels:
    [F.expand_dims(g, axis=-1) * F.softmax_xent_grad(logits, labels),
     -(F.expand_dims(g, axis=-1) * F.log_softmax(logits))],
    impl=dense_xent_impl, family="nn", tf_name="softmax_cross_entropy_with_logits",
    loss_grad="softmax_xent_grad", loss_with_grad="softmax_xent_with_grad",
    examples=E.leading(1, (0, 1)))
DENSE_XENT_GRAD = defop(
    "softmax_xent_grad", lambda nodes: (nodes[0].dtype, nodes[0].shape), _dense_grad_vjp,
    impl=dense_xent_grad_impl, family="nn", destroys=(0,),
    doc="softmax(logits) * sum(labels) - labels", examples=E.leading(1, (0, 1)))
# (the pair fused, as the sparse one: the loss kept beside the gradient, read by kept_loss)
DENSE_XENT_WITH_GRAD = defop(
    "softmax_xent_with_grad", lambda nodes: _dense_infer(nodes) and
    (nodes[0].dtype, nodes[0].shape), _dense_grad_vjp, impl=dense_xent_grad_impl,
    family="nn", destroys=(0,), keeps_loss=True,
    doc="softmax(logits) * sum(labels) - labels; the kernel keeps each row's loss (kept_loss)")

__all__ = ["D"]
