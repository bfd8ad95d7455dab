"""Softmax cross-entropy fusion: a loss and its gradient of the same logits become one kernel.

A training step's forward pass computes ``sparse_softmax_xent(z, y)`` and its backward pass
``sparse_softmax_xent_grad(z, y)``: each finds the row maximum, the exponentials and their sum
again. When both read the same logits and labels, they become

    %g = sparse_softmax_xent_with_grad %z, %y      the gradient; its kernel keeps the losses
    %l = kept_loss %g                              the losses it kept

(``ir/ops/nn.py``): one pass over each row gives both, and the gradient may overwrite the
logits once nothing else reads them. Dense labels' pair (``softmax_xent``,
``softmax_xent_grad``) becomes ``softmax_xent_with_grad`` the same way. Values are the
reference's: the same formulas in the same order, only computed once. Part of the ``fuse``
pass (``fuse_elementwise`` runs it first).
"""
from .common import new_node, positions, replace_uses


def fuse_softmax_xent(program):
    """Rewrite each loss and its gradient op (the loss op's ``loss_grad``) reading the same
    inputs into the op computing both (``loss_with_grad``) and a ``kept_loss``.

    Args:
        program: an ``ir.program.Program`` (rewritten in place; the caller tracks uses and
            drops the dead nodes).
    Returns:
        The number of pairs fused.
    Example:
        >>> fuse_softmax_xent(program)   # a step with the loss and its gradient
        1
    """
    losses = {}  # (its gradient op, inputs) -> the loss
    for n in program.nodes:
        if n.opdef.loss_grad is not None:
            losses.setdefault((n.opdef.loss_grad, id(n.inputs[0]), id(n.inputs[1])), n)
    pairs = []
    if losses:
        for n in program.nodes:
            loss = losses.pop((n.op_name, id(n.inputs[0]), id(n.inputs[1])), None) \
                if len(n.inputs) == 2 else None
            if loss is not None:
                pairs.append((loss, n))
    if not pairs:
        return 0
    pos = positions(program.nodes)
    for loss, grad in pairs:
        first = loss if pos[id(loss)] < pos[id(grad)] else grad
        both = new_node(program, grad, loss.opdef.loss_with_grad, grad.inputs,
                        dict(grad.attrs), before=first)
        kept = new_node(program, loss, "kept_loss", [both], {}, before=first)
        replace_uses(program, loss, kept)
        replace_uses(program, grad, both)
    return len(pairs)
