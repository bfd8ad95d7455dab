"""Softmax cross-entropy fusion: a loss and its gradient of the same logits become one kernel.

A training step's forward pass computes ``sparse_softmax_xent(z, y)`` and its backward pass
``sparse_softmax_xent_grad(z, y)``: each finds the row maximum, the exponentials and their sum
again. When both read the same logits and labels, they become

    %g = sparse_softmax_xent_with_grad %z, %y      the gradient; its kernel keeps the losses
    %l = kept_loss %g                              the losses it kept

(``ir/ops/nn.py``): one pass over each row gives both, and the gradient may overwrite the
logits once nothing else reads them. Values are the reference's: the same formulas in the
same order, only computed once. Part of the ``fuse`` pass (``fuse_elementwise`` runs it
first).
"""
from .common import new_node, positions, replace_uses


def fuse_softmax_xent(program):
    """Rewrite each (sparse_softmax_xent, sparse_softmax_xent_grad) pair of the same inputs.

    Args:
        program: an ``ir.program.Program`` (rewritten in place; the caller tracks uses and
            drops the dead nodes).
    Returns:
        The number of pairs fused.
    Example:
        >>> fuse_softmax_xent(program)   # a step with the loss and its gradient
        1
    """
    losses = {}
    for n in program.nodes:
        if n.op_name == "sparse_softmax_xent":
            losses.setdefault((id(n.inputs[0]), id(n.inputs[1])), n)
    pairs = []
    for n in program.nodes:
        if n.op_name == "sparse_softmax_xent_grad":
            loss = losses.pop((id(n.inputs[0]), id(n.inputs[1])), None)
            if loss is not None:
                pairs.append((loss, n))
    if not pairs:
        return 0
    pos = positions(program.nodes)
    for loss, grad in pairs:
        first = loss if pos[id(loss)] < pos[id(grad)] else grad
        both = new_node(program, grad, "sparse_softmax_xent_with_grad", grad.inputs,
                        dict(grad.attrs), before=first)
        kept = new_node(program, loss, "kept_loss", [both], {}, before=first)
        replace_uses(program, loss, kept)
        replace_uses(program, grad, both)
    return len(pairs)
