"""``gc.cond`` and ``gc.case``: TF1's conditionals, in a graph that is compiled whole.

graphc steps are static: there is no branching at run time. So both branches are built and
computed, and each output is selected with ``where(pred, true_value, false_value)``. What
follows from that, and what users must know:

- Both branches run. A branch may therefore not create impure nodes (``assign``, random ops,
  ``group``...): their effect would happen whichever branch is taken, unlike TF1. They are
  refused when the graph is built, naming the node and its line; build them outside the
  ``cond`` (the random draw, the moving-average update) and pass the results in.
- Gradients flow only into the taken branch (``where``'s VJP is ``where(c, g, 0)``). But the
  untaken branch's *own* backward pass still runs: if it produces Inf or NaN there (``log``
  of 0, ``sqrt`` at 0, division by 0) it can still leak (``0 * inf = nan``). Keep the
  untaken branch finite, as with ``jnp.where``: ``cond(x > 0, lambda: log(safe_x), ...)``
  with ``safe_x = where(x > 0, x, 1.0)``.
- A Python bool (or a constant) ``pred`` picks one branch when the graph is built, as TF1's
  ``smart_cond`` does: then only that branch is built, and it may be impure.
"""
from .errors import GraphError, ShapeError, DTypeError
from .ir import dtypes as D
from .ir.graph import Node, get_default_graph
from .ir.ops import apply, convert
from .ir.source import user_location

__all__ = ["case", "cond"]


def cond(pred, true_fn=None, false_fn=None, strict=False, name=None, fn1=None, fn2=None):
    """``true_fn()`` where ``pred`` holds, else ``false_fn()``; both are computed.

    Args:
        pred: a scalar bool tensor, or a Python bool (then only one branch is built).
        true_fn, false_fn: callables without arguments, returning a tensor or a nested
            structure (tuple, list, dict) of tensors; both must return the same structure,
            with the same dtypes and shapes. (``fn1``/``fn2`` are TF1's old names.)
        strict: as TF1: when False, a one-element list or tuple result is unpacked.
        name: name scope of the nodes built.
    Returns:
        The selected value(s), in the branches' structure.
    Raises:
        GraphError: a branch creates an impure node (assign, random op...), or the branches
            return different structures.
        DTypeError, ShapeError: a pair of outputs differs in dtype or shape; ``pred`` is not
            a scalar bool.
    Example:
        >>> mean, var = gc.cond(is_training, lambda: (batch_mean, batch_var),
        ...                     lambda: (moving_mean, moving_var))
    """
    true_fn = true_fn if true_fn is not None else fn1
    false_fn = false_fn if false_fn is not None else fn2
    if not (callable(true_fn) and callable(false_fn)):
        raise GraphError("cond: true_fn and false_fn must be callables", loc=user_location(),
                         hint="wrap tensors in lambdas: gc.cond(p, lambda: a, lambda: b)")
    static = _static_pred(pred)
    if static is not None:
        return _unpack(true_fn() if static else false_fn(), strict)
    _check_pred("cond", pred)
    g = get_default_graph()
    with g.name_scope(name or "cond"):
        t = _branch(g, true_fn, "true_fn")
        f = _branch(g, false_fn, "false_fn")
        return _unpack(_select(pred, t, f), strict)


def case(pred_fn_pairs, default=None, exclusive=False, strict=False, name="case"):
    """The value of the first ``fn`` whose ``pred`` holds, else ``default()`` (TF1's case).

    Every branch is computed and the results selected (see ``cond`` and the module
    docstring: no impure nodes in branches; keep untaken branches finite).

    Args:
        pred_fn_pairs: a list of ``(pred, fn)`` pairs (or a dict: pairs in its order).
        default: a callable for when no pred holds; None: the last pair's fn is the default
            (as TF1 does).
        exclusive: TF1 checks at run time that at most one pred holds. graphc has no
            run-time assertions: it checks only Python-bool preds, and otherwise the first
            true pred wins.
        strict, name: as in ``cond``.
    Returns:
        The selected value(s), in the branches' common structure.
    Raises:
        GraphError: no pairs, a pair that is not (pred, callable), several Python-bool preds
            that hold with ``exclusive=True``; and everything ``cond`` raises.
    Example:
        >>> lr = gc.case([(step < 1000, lambda: gc.constant(0.1)),
        ...               (step < 5000, lambda: gc.constant(0.01))],
        ...              default=lambda: gc.constant(0.001))
    """
    pairs = list(pred_fn_pairs.items() if isinstance(pred_fn_pairs, dict) else pred_fn_pairs)
    if not pairs or not all(isinstance(p, (tuple, list)) and len(p) == 2 and callable(p[1])
                            for p in pairs):
        raise GraphError("case: pred_fn_pairs must be a non-empty list of (pred, callable)",
                         loc=user_location())
    if exclusive and sum(_static_pred(p) is True for p, _ in pairs) > 1:
        raise GraphError("case: exclusive=True but more than one pred is True",
                         loc=user_location())
    if default is None:
        pairs, default = pairs[:-1], pairs[-1][1]

    def chain(i):
        if i == len(pairs):
            return default()
        return cond(pairs[i][0], pairs[i][1], lambda: chain(i + 1), strict=True)
    with get_default_graph().name_scope(name or "case"):
        return _unpack(chain(0), strict)


def _static_pred(pred):
    """True/False when ``pred`` is known when the graph is built (a Python or NumPy bool,
    or a constant node), else None."""
    if isinstance(pred, Node):
        if pred.op_name == "const" and pred.attrs["value"].size == 1 and pred.dtype.is_bool:
            return bool(pred.attrs["value"].reshape(()))
        return None
    if hasattr(pred, "dtype") and getattr(pred, "size", 1) == 1 and pred.dtype.kind == "b":
        return bool(pred)
    if isinstance(pred, bool):
        return pred
    raise GraphError(f"cond: pred must be a bool tensor or a Python bool, found {pred!r}",
                     loc=user_location())


def _check_pred(fn, pred):
    if pred.dtype != D.bool_:
        raise DTypeError(f"{fn}: pred must be bool, found {pred.describe()} "
                         f"({pred.dtype.name})", loc=user_location(),
                         hint="compare first, e.g. gc.greater(x, 0)")
    if pred.shape is not None and pred.rank != 0:
        raise ShapeError(f"{fn}: pred must be a scalar, found {pred.type_str()}",
                         loc=user_location(), hint="for elementwise selection use gc.where")


def _branch(g, fn, which):
    """Call ``fn``; refuse impure nodes it created. Returns its (nested) result."""
    first = len(g.nodes)
    out = fn()
    new = g.nodes[first:]
    # a variable's initializer (possibly random) runs at initialization, not in the step
    init_only = _ancestors([v.meta["initial_value"] for v in new
                            if v.op_name == "variable"], first)
    for n in new:
        if n.opdef.impure and n not in init_only:
            raise GraphError(
                f"cond: {which} creates impure node {n.describe()}, but graphc computes both "
                "branches, so its effect would happen whichever branch is taken",
                [f"created at {n.loc.format()}"], loc=user_location(),
                hint="build it outside the cond and pass its value in (e.g. draw the dropout "
                     "mask, or run the moving-average update, outside)")
    return out


def _ancestors(nodes, first):
    """The nodes created since index ``first`` that ``nodes`` depend on (and themselves)."""
    seen, stack = set(), [n for n in nodes if n.id >= first]
    while stack:
        n = stack.pop()
        if n not in seen:
            seen.add(n)
            stack.extend(i for i in n.inputs if i.id >= first)
    return seen


def _select(pred, t, f, path="output"):
    """``where(pred, t, f)`` leaf by leaf over matching nested structures."""
    if isinstance(t, dict) or isinstance(f, dict):
        if not (isinstance(t, dict) and isinstance(f, dict)) or set(t) != set(f):
            _mismatch(path, t, f)
        return type(t)((k, _select(pred, t[k], f[k], f"{path}[{k!r}]")) for k in t)
    if isinstance(t, (list, tuple)) or isinstance(f, (list, tuple)):
        if type(t) is not type(f) or len(t) != len(f):
            _mismatch(path, t, f)
        items = [_select(pred, a, b, f"{path}[{i}]") for i, (a, b) in enumerate(zip(t, f))]
        return type(t)(*items) if hasattr(t, "_fields") else type(t)(items)
    return _select_leaf(pred, t, f, path)


def _select_leaf(pred, t, f, path):
    if t is None or f is None:
        _mismatch(path, t, f)
    like = t if isinstance(t, Node) else f if isinstance(f, Node) else None
    t, f = convert(t, like), convert(f, like)
    if t is f:
        return t
    if t.dtype != f.dtype:
        raise DTypeError(f"cond: {path} has dtype {t.dtype.name} in true_fn but "
                         f"{f.dtype.name} in false_fn",
                         [f"true: {t.describe()}", f"false: {f.describe()}"],
                         loc=user_location(), hint="cast one of them with gc.cast")
    if t.shape != f.shape:
        raise ShapeError(f"cond: {path} has shape {t.type_str()} in true_fn but "
                         f"{f.type_str()} in false_fn",
                         [f"true: {t.describe()}", f"false: {f.describe()}"],
                         loc=user_location(), hint="both branches must give the same shape")
    return apply("where", [pred, t, f], name="select")


def _mismatch(path, t, f):
    raise GraphError(f"cond: the branches return different structures at {path}",
                     [f"true_fn:  {_describe(t)}", f"false_fn: {_describe(f)}"],
                     loc=user_location(), hint="return the same nesting from both branches")


def _describe(v):
    if isinstance(v, Node):
        return v.type_str()
    if isinstance(v, dict):
        return "dict with keys " + repr(sorted(map(str, v)))
    if isinstance(v, (list, tuple)):
        return f"{type(v).__name__} of {len(v)}"
    return repr(v)


def _unpack(result, strict):
    if not strict and isinstance(result, (list, tuple)) and len(result) == 1:
        return result[0]
    return result
