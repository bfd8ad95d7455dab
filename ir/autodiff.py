"""Reverse-mode autodiff that writes adjoint nodes into the same graph.

The driver walks the nodes between ``xs`` and ``ys`` in reverse topological order and calls
each op's VJP (written with graph ops, so the result can be differentiated again). The driver
alone does the two things every VJP would otherwise get wrong:
- it sums each input's gradient back to the input's shape (``unbroadcast``), and
- it accumulates fan-out: a node used k times receives the sum of k contributions, built as
  explicit ``add`` nodes (so ``x * x`` gets ``g x + g x``).
Only floating tensors carry gradients; integer and bool tensors never do.
"""
import numpy as np

from graphc.errors import DTypeError, GradientError, ShapeError

from .graph import Node
from .ops.registry import F, ZERO, const_node
from .shapes import RuleError, broadcast_shapes, format_shape


def unbroadcast(grad, x, node=None, index=None):
    """Sum ``grad`` over the axes NumPy broadcasting added to reach it from ``x``'s shape.

    Static shapes decide it, except where ``x`` has an unknown dim that may be 1 at run time
    while the gradient's is larger (``x: [None, 4]`` broadcast against ``y: [None, 4]``): there
    a ``sum_to_like`` node defers the decision to the specialized shapes.

    Args:
        grad: the VJP's gradient for input ``index`` of the forward ``node``.
        x: that input.
    """
    if x.shape is None or grad.shape is None:  # a rank known only when specialized
        return F.sum_to_like(grad, x)
    shape = tuple(x.shape)
    if node is not None and None in shape and _may_hide_broadcast(grad.shape, shape, node,
                                                                  index):
        return F.sum_to_like(grad, x)
    if grad.shape == shape:
        return grad
    lead = grad.rank - len(shape)
    if lead > 0:
        grad = F.reduce_sum(grad, axis=tuple(range(lead)))
    axes = tuple(i for i, (d, s) in enumerate(zip(grad.shape, shape)) if s == 1 and d != 1)
    if axes:
        grad = F.reduce_sum(grad, axis=axes, keepdims=True)
    if grad.shape != tuple(shape) and None not in shape and None not in grad.shape:
        raise GradientError(f"gradient of shape {format_shape(grad.shape)} does not reduce "
                            f"to {format_shape(shape)}")
    return grad


def _may_hide_broadcast(gshape, shape, node, index):
    """True when some unknown dim of the input may be 1 while the gradient's is not."""
    core = node.opdef.broadcast_core
    for k in range(1, len(shape) + 1):  # axes counted from the end
        s, d = shape[-k], gshape[-k] if k <= len(gshape) else 1
        if s is not None or d == 1:
            continue
        if d is not None:
            return True
        if core is not None and k > core and any(
                j != index and k <= other.rank and other.shape[-k] != 1
                for j, other in enumerate(node.inputs)):
            return True
    return False


def _between(ys, xs):
    """Nodes on some path from an x to a y (both ends included), in creation order.

    One search up from all ys, then one down from the xs within what it found (a node on a
    path from an x to a y reaches that y too): linear in the ys' ancestors, where one search
    per x was quadratic in a deep model's variables. Only the graph's own nodes are followed
    up to their inputs."""
    nodes = ys[0].graph.nodes
    above, stack = set(), list(ys)
    while stack:
        n = stack.pop()
        if n in above:
            continue
        above.add(n)
        if 0 <= n.id < len(nodes) and nodes[n.id] is n:
            stack.extend(n.inputs)
    users = {}  # node -> the nodes of ``above`` reading it
    for n in above:
        if 0 <= n.id < len(nodes) and nodes[n.id] is n:
            for i in n.inputs:
                users.setdefault(i, []).append(n)
    below, stack = set(), [x for x in xs if x in above]
    while stack:
        n = stack.pop()
        if n in below:
            continue
        below.add(n)
        stack.extend(users.get(n, ()))
    return sorted(below, key=lambda n: n.id)


def _check_xs(xs):
    for x in xs:
        if not isinstance(x, Node):
            raise GradientError(f"gradients: expected tensors in xs, found {type(x).__name__}")
        if x.dtype is None or not x.dtype.is_floating:
            kind = "no value" if x.dtype is None else x.dtype.name
            raise DTypeError(f"gradients: cannot differentiate with respect to "
                             f"{x.describe()} of dtype {kind}",
                             loc=x.loc, hint="only floating tensors have gradients")


def _seed(ys, grad_ys):
    grads = {}
    for i, y in enumerate(ys):
        if y.dtype is None or not y.dtype.is_floating:
            raise DTypeError(f"gradients: cannot differentiate {y.describe()} of dtype "
                             f"{'no value' if y.dtype is None else y.dtype.name}", loc=y.loc)
        with y.graph.gradient_context(y):
            seed = _seed_value(y, None if grad_ys is None else grad_ys[i])
        grads.setdefault(y, []).append(seed)
    return grads


def _seed_value(y, grad):
    """The cotangent of ``y``: ones, or ``grad`` (a tensor, array or number in y's dtype,
    broadcast to y's shape)."""
    if grad is None:
        return F.ones_like(y)
    if not isinstance(grad, Node):
        grad = const_node(np.asarray(grad, dtype=y.dtype.np), graph=y.graph)
    if grad.dtype != y.dtype:
        raise DTypeError(f"gradients: grad_ys for {y.describe()} has dtype {grad.dtype.name}, "
                         f"expected {y.dtype.name}", loc=grad.loc)
    try:
        shape = broadcast_shapes(grad.shape, y.shape)
    except RuleError as e:
        shape = e
    if isinstance(shape, RuleError) or len(shape) != len(y.shape) or any(
            a is not None and b is not None and a != b for a, b in zip(shape, y.shape)):
        raise ShapeError(f"gradients: grad_ys for {y.describe()} has shape "
                         f"{format_shape(grad.shape)}, expected {format_shape(y.shape)}",
                         loc=grad.loc)
    return grad if grad.shape == y.shape else F.broadcast_like(grad, y)


def _accumulate(parts):
    total = parts[0]
    for p in parts[1:]:
        total = total + p
    return total


def gradients(ys, xs, grad_ys=None, unconnected_gradients="zero", stop_gradients=()):
    """Symbolic gradients of ``sum(ys)`` with respect to each of ``xs`` (TF1's tf.gradients).

    Args:
        ys: a tensor or list of tensors (their gradients are summed).
        xs: a tensor or list of floating tensors (variables, placeholders, any node).
        grad_ys: optional cotangents, one per y (tensors or numbers).
        unconnected_gradients: "zero" (zeros of x's shape), "none" (None, as TF1) or "raise".
        stop_gradients: tensors treated as constants.
    Returns:
        A list of gradient nodes (or None), one per x, in the same graph.
    Raises:
        DTypeError: an x or y that is not floating.
        GradientError: an unconnected x with ``"raise"``.
    Example:
        >>> dx, = gradients(F.reduce_sum(x * x), [x])   # 2 x
    """
    ys = list(ys) if isinstance(ys, (list, tuple)) else [ys]
    xs_list = list(xs) if isinstance(xs, (list, tuple)) else [xs]
    if grad_ys is not None and not isinstance(grad_ys, (list, tuple)):
        grad_ys = [grad_ys]
    _check_xs(xs_list)
    grads = _seed(ys, grad_ys)
    stops = set(stop_gradients)
    results = {}  # multi-output node -> {result node: its cotangent}
    for node in reversed(_between(ys, xs_list)):
        opdef = node.opdef
        if opdef.multi_output:  # a loop: one VJP for the cotangents of all its results
            if node in stops or node not in results:
                continue
            with node.graph.gradient_context(node):
                in_grads = opdef.vjp(results[node], node, *node.inputs, **node.attrs)
            _collect(grads, node, in_grads)
            continue
        parts = grads.get(node)
        if not parts or node in stops or not node.inputs:
            continue
        if opdef.vjp is ZERO or not node.dtype.is_floating:
            continue
        if opdef.projects:
            with node.graph.gradient_context(node):
                g = _accumulate(parts)
            grads[node] = [g]
            results.setdefault(node.inputs[0], {})[node] = g
            continue
        with node.graph.gradient_context(node):
            g = _accumulate(parts)
            grads[node] = [g]
            in_grads = opdef.vjp(g, node, *node.inputs, **node.attrs)
            _collect(grads, node, in_grads)
    return [_result(x, grads.get(x), unconnected_gradients) for x in xs_list]


def _collect(grads, node, in_grads):
    """Add the VJP's gradient of each input of ``node`` to that input's parts."""
    for i, (inp, ig) in enumerate(zip(node.inputs, in_grads)):
        if ig is None or inp.dtype is None or not inp.dtype.is_floating:
            continue
        grads.setdefault(inp, []).append(unbroadcast(ig, inp, node, i))


def _result(x, parts, mode):
    if parts:
        if len(parts) == 1:
            return parts[0]
        with x.graph.gradient_context(x):
            return _accumulate(parts)
    if mode == "none":
        return None
    if mode == "raise":
        raise GradientError(f"gradients: {x.describe()} is not connected to any y", loc=x.loc,
                            hint='pass unconnected_gradients="zero" to get zeros')
    with x.graph.gradient_context(x):
        return F.zeros_like(x)


def hessian_vector_product(ys, xs, vs):
    """H v for H the Hessian of sum(ys) with respect to xs: the gradient of <grad, v>.

    Args:
        ys: scalar tensor(s).
        xs: list of tensors.
        vs: list of tensors, arrays or numbers shaped like xs (arrays take x's dtype).
    Returns:
        A list of tensors shaped like xs.
    Raises:
        GradientError: a different number of vs and xs.
    Example:
        >>> hv, = hessian_vector_product(F.reduce_sum(x * x * x), [x], [np.ones(3)])  # 6 x
    """
    xs = list(xs) if isinstance(xs, (list, tuple)) else [xs]
    vs = list(vs) if isinstance(vs, (list, tuple)) else [vs]
    if len(vs) != len(xs):
        raise GradientError(f"hessian_vector_product: {len(xs)} xs but {len(vs)} vs")
    grads = gradients(ys, xs)
    inner = []
    for x, g, v in zip(xs, grads, vs):
        v = F.stop_gradient(v) if isinstance(v, Node) else \
            const_node(np.asarray(v, dtype=x.dtype.np), graph=x.graph)
        inner.append(F.reduce_sum(g * v))
    return gradients(inner, xs)
