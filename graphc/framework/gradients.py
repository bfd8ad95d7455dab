"""``gc.gradients``, ``gc.hessians``: TF1's signatures over ``ir.autodiff``."""
import enum

from ..ir.autodiff import gradients as _gradients


class UnconnectedGradients(enum.Enum):
    """TF's ``tf.UnconnectedGradients``: what ``gradients`` gives an unconnected x."""
    NONE = "none"
    ZERO = "zero"


def gradients(ys, xs, grad_ys=None, name="gradients", colocate_gradients_with_ops=False,
              gate_gradients=False, aggregation_method=None, stop_gradients=None,
              unconnected_gradients="none"):
    """Symbolic d(sum ys)/d xs as graph nodes, differentiable again.

    As TF1, an x that ``ys`` do not depend on (or only through non-differentiable ops such
    as ``round``, ``argmax`` or ``stop_gradient``) gets None, so code filtering
    ``g is not None`` skips it rather than training on zeros.

    Args:
        ys, xs: tensors or lists of tensors.
        grad_ys: cotangents seeding each y.
        stop_gradients: tensors held constant.
        unconnected_gradients: "none" (None, TF1's default), "zero" (zeros shaped like x)
            or "raise"; also ``gc.UnconnectedGradients.ZERO`` and the like.
    Returns:
        A list with one gradient (or None) per x.
    Example:
        >>> gW, gu = gc.gradients(loss, [W, unused])   # gu is None
    """
    mode = getattr(unconnected_gradients, "value", unconnected_gradients)
    return _gradients(ys, xs, grad_ys, mode, stop_gradients or ())


def hessians(ys, xs, name="hessians", colocate_gradients_with_ops=False, gate_gradients=False,
             aggregation_method=None):
    """TF1's ``tf.hessians``: for each x, the second derivatives of ``sum(ys)``, of shape
    ``x.shape + x.shape``.

    Built as one ``gradients`` call per element of the first derivative (x's size must be
    static), so keep x small; a Hessian-vector product (``gc.hessian_vector_product``) costs
    one. A zero second derivative (a loss linear in x) is zeros.

    Example:
        >>> H, = gc.hessians(gc.reduce_sum(x ** 3), [x])   # diag(6 x)
    """
    from ..ops.math_ops import reshape, stack, unstack, zeros_like
    xs_list = list(xs) if isinstance(xs, (list, tuple)) else [xs]
    result = []
    for x in xs_list:
        if x.shape is None or None in x.shape:
            from ..errors import GraphError
            raise GraphError(f"hessians: the shape of {x.describe()} must be static, found "
                             f"{x.type_str()}", loc=x.loc,
                             hint="give the placeholder a full shape")
        (dx,) = gradients(ys, [x], unconnected_gradients="zero")
        size = 1
        for d in x.shape:
            size *= d
        rows = [gradients(g, [x], unconnected_gradients="zero")[0]
                for g in unstack(reshape(dx, [size]), num=size)]
        result.append(reshape(stack(rows) if rows else zeros_like(dx),
                              list(x.shape) + list(x.shape)))
    return result
