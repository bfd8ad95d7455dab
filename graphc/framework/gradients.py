"""``gc.gradients``: TF1's signature over ``ir.autodiff``."""
from ..ir.autodiff import gradients as _gradients


def gradients(ys, xs, grad_ys=None, name="gradients", colocate_gradients_with_ops=False,
              gate_gradients=False, aggregation_method=None, stop_gradients=None,
              unconnected_gradients="zero"):
    """Symbolic d(sum ys)/d xs as graph nodes, differentiable again.

    Args:
        ys, xs: tensors or lists of tensors.
        grad_ys: cotangents seeding each y.
        stop_gradients: tensors held constant.
        unconnected_gradients: "zero" (zeros shaped like x), "none" (None, as TF1), "raise".
    Returns:
        A list with one gradient (or None) per x.
    """
    mode = getattr(unconnected_gradients, "value", unconnected_gradients)
    return _gradients(ys, xs, grad_ys, mode, stop_gradients or ())
