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

``gc.while_loop`` is unrolled when the graph is built, by the same reasoning: its ``cond`` is
evaluated on constants and static shapes (``StaticValues``), and ``body`` is applied until it
turns False. A ``cond`` that reads run-time data is accepted only with ``maximum_iterations``:
then every iteration is built and the loop variables are frozen with ``where`` once ``cond``
has turned False (see ``while_loop``).
"""
import numpy as np

from ..errors import GraphError, ShapeError, DTypeError
from ..ir import dtypes as D
from ..ir import loops as Lp
from .array_ops import scalar_arg
from .math_ops import broadcast_to, shape
from ..ir.graph import Node, get_default_graph
from ..ir.ops import apply, convert
from ..ir.shapes import TensorShape, compatible
from ..ir.static import StaticValues
from ..framework.nest import (assert_same_structure, describe, flatten, flatten_up_to,
                              map_structure, pack_sequence_as)
from ..ir.source import user_location

__all__ = ["case", "cond", "while_loop"]

# Unrolling more than this many iterations is almost surely a cond that never turns False.
MAX_UNROLL = 10000


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
    pred = _check_pred("cond", pred)
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
    return scalar_arg(pred)  # a shapeless bool placeholder: a scalar, checked when fed


def _branch(g, fn, which):
    """Call ``fn``; refuse impure nodes it created. Returns its (nested) result."""
    first = len(g.nodes)
    out = fn()
    _refuse_impure(g, first, f"cond: {which}", "graphc computes both branches, so its effect "
                   "would happen whichever branch is taken",
                   "build it outside the cond and pass its value in (e.g. draw the dropout "
                   "mask, or run the moving-average update, outside)")
    return out


def _refuse_impure(g, first, what, why, hint):
    """Raise a GraphError naming the first impure node created since index ``first``."""
    new = g.nodes[first:]
    # a variable's initializer (possibly random) runs at initialization, not in the step
    init_only = _ancestors([v.meta["initial_value"] for v in new
                            if v.op_name == "variable"], first)
    for n in new:
        if n.opdef.impure and n not in init_only:
            raise GraphError(f"{what} creates impure node {n.describe()}, but {why}",
                             [f"created at {n.loc.format()}"], loc=user_location(), hint=hint)


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
    if not compatible(t.shape, f.shape):  # (TF1's rule: [8, 7] and [None, 7] may meet)
        raise ShapeError(f"cond: {path} has shape {t.type_str()} in true_fn but "
                         f"{f.type_str()} in false_fn",
                         [f"true: {t.describe()}", f"false: {f.describe()}"],
                         loc=user_location(), hint="both branches must give the same shape")
    if t.shape != f.shape:  # each broadcast to the other's: equal once fed, or refused then
        t, f = broadcast_to(t, shape(f)), broadcast_to(f, shape(t))
    return apply("where", [pred, t, f], name="select")


def _mismatch(path, t, f):
    raise GraphError(f"cond: the branches return different structures at {path}",
                     [f"true_fn:  {describe(t)}", f"false_fn: {describe(f)}"],
                     loc=user_location(), hint="return the same nesting from both branches")


def _unpack(result, strict):
    if not strict and isinstance(result, (list, tuple)) and len(result) == 1:
        return result[0]
    return result


# -- while_loop: unrolled when the graph is built --------------------------------------------

def while_loop(cond, body, loop_vars, shape_invariants=None, parallel_iterations=10,
               back_prop=True, swap_memory=False, name=None, maximum_iterations=None,
               return_same_structure=False, unroll=False):
    """Repeat ``loop_vars = body(*loop_vars)`` while ``cond(*loop_vars)``: a loop at run time.

    The body is built once, as the body of a ``loop`` node (``ir.loops``): it runs as a real
    loop in the compiled step (a Python ``while`` on NumPy, a native loop on LLVM), and
    ``cond`` may read run-time data (the trip count is then known only when the step runs).
    What the body reads but does not compute from the loop variables (weights, variables a
    cell creates) is computed once, before the loop. Gradients run a backward loop over the
    values the forward loop saves; they need a bound on the iterations: ``maximum_iterations``,
    or a ``cond`` computable from constants and static shapes (``i < 10``), whose trip count
    graphc finds when the graph is built.

    Effects (``assign``, random ops) that depend on the loop variables cannot run per
    iteration inside a loop node: such a loop, one whose variables change shape
    (``shape_invariants`` with None dims), one carrying a ``TensorArray``, and any loop with
    ``unroll=True`` (a graphc option) are unrolled when the graph is built instead: the body
    is built once per iteration, ``cond`` must then be static or ``maximum_iterations`` given
    (the variables are then frozen with ``where`` once ``cond`` turns False).

    Args:
        cond: callable on the loop variables returning a scalar bool tensor (or Python bool).
        body: callable returning new loop variables in the structure of ``loop_vars``.
        loop_vars: a tensor, or a (nested) list, tuple, namedtuple or dict of tensors.
        shape_invariants: per loop variable, a shape with None where the dim may change
            between iterations (or None: any shape). Default: shapes may not change.
        parallel_iterations, swap_memory: accepted for TF1 compatibility; no effect.
        back_prop: False stops gradients at the loop's outputs.
        name: name scope of the nodes built.
        maximum_iterations: an int (or constant tensor): at most this many iterations.
        return_same_structure: False returns a lone tensor for one loop variable, as TF1.
        unroll: build the body once per iteration (graphc; see above).
    Returns:
        The loop variables after the last iteration.
    Raises:
        GraphError: ``cond`` depends on run-time values without ``maximum_iterations`` (the
            message names the node it depends on), the loop runs more than ``MAX_UNROLL``
            iterations, the body returns another structure, or (frozen variant) creates an
            impure node.
        DTypeError, ShapeError: a loop variable changes dtype, or shape beyond its invariant.
    Example:
        >>> i, total = gc.while_loop(lambda i, s: i < 10, lambda i, s: (i + 1, s + x),
        ...                          (0, gc.zeros_like(x)))
    """
    if not (callable(cond) and callable(body)):
        raise GraphError("while_loop: cond and body must be callables", loc=user_location())
    loop = _Unroller(cond, body, loop_vars, shape_invariants, maximum_iterations)
    with get_default_graph().name_scope(name or "while") as scope:
        if unroll or not _loopable(loop):
            state = loop.run()
        else:
            state = _real_loop(loop, scope.rstrip("/"))
    if not back_prop:
        state = [v._loop_stop_gradient() if _carried(v) else apply("stop_gradient", [v])
                 for v in state]
    out = pack_sequence_as(loop.structure, state)
    if (not return_same_structure and isinstance(out, (list, tuple))
            and not hasattr(out, "_fields") and len(state) == 1):
        return out[0]
    return out


def _loopable(loop):
    """Whether ``loop`` (an ``_Unroller`` not yet run) can be a loop node: no TensorArray
    loop variable, no shape allowed to change between iterations."""
    if any(_carried(v) and not hasattr(v, "in_loop") for v in loop.state):
        return False
    return all(_carried(v) or inv is not None and v.shape is not None
               and tuple(inv) == tuple(v.shape)
               or inv is None and v.shape is None and not loop.relaxed
               for v, inv in zip(loop.state, loop.invariants))


def _real_loop(loop, name):
    """Build ``loop`` as a loop node (``ir.loops.make_loop``); the final loop variables.
    Falls back to unrolling when the body has effects that depend on the loop variables."""
    g = get_default_graph()
    init = list(loop.state)
    start = len(g.nodes)
    c0 = loop._call(loop.cond)
    if not isinstance(c0, Node):
        if not _static_pred(c0):
            return init
        c0 = convert(bool(c0))
    c0 = _check_pred("while_loop", c0)
    arrays = [k for k, x in enumerate(init) if _carried(x)]  # TensorArrays: stacked
    vars_ = [x.in_loop() if _carried(x) else
             Lp.loop_var(g, x.dtype, x.shape, f"{name.split('/')[-1]}_var{k}")
             for k, x in enumerate(init)]
    loop.state = vars_
    body_first = len(g.nodes)
    try:
        new = loop._match(loop._call(loop.body))
        loop.state = new
        cn = loop._call(loop.cond)
    except GraphError as e:
        if "known only when the step runs" not in str(e):
            raise
        # The body needs the loop's state as build-time values (a slice bound x[i:i + 2] of
        # the counter): unrolled, as such TF1 code expects. The attempt's nodes are dropped
        # unless it created a Variable (collections hold it).
        if not any(n.op_name == "variable" for n in g.nodes[start:]):
            del g.nodes[start:]
        loop.state = init
        return loop.run()
    loop.state = init
    cn = convert(bool(cn)) if not isinstance(cn, Node) else cn
    cn = _check_pred("while_loop", cn)
    tensors = [k for k in range(len(init)) if k not in arrays]
    tv, ti, tn = ([vars_[k] for k in tensors], [init[k] for k in tensors],
                  [new[k] for k in tensors])
    trip = loop.limit
    if trip is None:
        trip = Lp.static_trip_count(tv, ti, tn, cn, c0)
    stacked = _array_writes(arrays, vars_, init, new, tv, ti, tn, trip)
    made = set(g.nodes[body_first:])
    if stacked is None or any(n.opdef.impure for n in Lp.body_nodes_from(
            made, tn + [v for v in stacked if v is not None] + [cn])):
        if not any(n.op_name == "variable" for n in g.nodes[start:]):
            del g.nodes[start:]
        loop.state = init  # unrolled: effects once per iteration, or writes it cannot stack
        return loop.run()
    writes = [v for v in stacked if v is not None]
    node = Lp.make_loop(tv, ti, [], [], None, tn, writes, cond=cn, cond0=c0, length=trip,
                        name=name)
    out, j = list(init), 0
    for k, x in enumerate(init):
        if k in arrays:
            if stacked[arrays.index(k)] is not None:
                out[k] = x.filled(Lp.outputs(node, "stacked", j))
                j += 1
        else:
            out[k] = Lp.outputs(node, "carried", tensors.index(k))
    return out


def _array_writes(arrays, vars_, init, new, tv, ti, tn, trip):
    """Per TensorArray loop variable, the value the body writes at the loop's counter (None
    when it writes nothing), or None when a write cannot be stacked: an index that is not a
    counter (a loop variable from 0 stepping by 1), several writes, or no bound on the
    iterations matching the array's size."""
    out = []
    for k in arrays:
        writes = new[k].writes
        if not writes:
            out.append(None)
            continue
        if len(writes) != 1 or trip is None:
            return None
        index, value = writes[0]
        if index not in tv or not _counter(index, ti[tv.index(index)], tn[tv.index(index)]):
            return None
        size = len(init[k]._elements)
        if size != trip and not (init[k].dynamic_size and size <= trip):
            return None
        out.append(value)
    return out


def _counter(var, first, nxt):
    """Whether loop variable ``var`` counts iterations: 0 first, then ``var + 1``."""
    value = StaticValues().value(first)
    if not isinstance(value, np.ndarray) or value.shape != () or int(value) != 0:
        return False
    if nxt.op_name != "add" or var not in nxt.inputs:
        return False
    other = nxt.inputs[1] if nxt.inputs[0] is var else nxt.inputs[0]
    one = StaticValues().value(other)
    return isinstance(one, np.ndarray) and one.shape == () and int(one) == 1


class _Unroller:
    """One ``while_loop``: its state (flat loop variables), invariants and the static
    evaluator of ``cond``; ``active`` is the run-time "still looping" flag once ``cond``
    reads data (the frozen variant), else None."""

    def __init__(self, cond, body, loop_vars, shape_invariants, maximum_iterations):
        self.cond, self.body = cond, body
        self.single = not isinstance(loop_vars, (list, tuple))
        self.structure = map_structure(lambda v: v if _carried(v) else convert(v), loop_vars)
        self.state = flatten(self.structure)
        self.invariants = self._invariants(shape_invariants)
        self.relaxed = shape_invariants is not None  # the user's invariants, maybe looser
        self.static = StaticValues()
        self.limit = self._limit(maximum_iterations)
        self.active = None

    def run(self):
        g, k = get_default_graph(), 0
        while self.limit is None or k < self.limit:
            first = len(g.nodes)
            if not self._keep_going(self._call(self.cond)):
                break
            if k >= MAX_UNROLL:
                raise GraphError(f"while_loop: cond still holds after {MAX_UNROLL} unrolled "
                                 "iterations", loc=user_location(),
                                 hint="graphc unrolls while_loop when the graph is built; "
                                      "check that cond turns False, or pass "
                                      "maximum_iterations")
            new = self._match(self._call(self.body))
            if self.active is not None:
                _refuse_impure(g, first, "while_loop: the body (or cond)", "cond depends on "
                               "run-time data, so graphc builds all maximum_iterations "
                               "iterations and its effect would happen in every one",
                               "compute the trip count from constants or static shapes, "
                               "so that the loop is unrolled exactly")
                new = [self._freeze(n, o) for n, o in zip(new, self.state)]
            self.state = new
            k += 1
        return self.state

    def _call(self, fn):
        args = pack_sequence_as(self.structure, self.state)
        return fn(args) if self.single else fn(*args)

    def _keep_going(self, pred):
        """False when ``pred`` is known False; True to run the body (maybe frozen)."""
        if not isinstance(pred, Node):
            return bool(_static_pred(pred))
        pred = _check_pred("while_loop", pred)
        value = self.static.value(pred)
        if isinstance(value, np.ndarray):
            return bool(value)
        if self.limit is None:
            _data_dependent(pred, value)
        if self.limit > MAX_UNROLL:
            raise GraphError(f"while_loop: maximum_iterations={self.limit} is more than "
                             f"graphc unrolls ({MAX_UNROLL})", loc=user_location())
        self.active = pred if self.active is None else \
            apply("logical_and", [self.active, pred], name="active")
        return True

    def _match(self, result):
        """The body's result as a flat list, checked against the loop variables."""
        if not self.single and not isinstance(result, (list, tuple, dict)) \
                and len(self.structure) == 1:
            result = [result]  # TF1 accepts a lone tensor for one loop variable
        out = []
        assert_same_structure(self.structure, result, op="while_loop",
                              names=("loop_vars", "body"))
        flat = flatten_up_to(self.structure, result)
        for k, (old, new, inv) in enumerate(zip(self.state, flat, self.invariants)):
            if _carried(old):
                out.append(old._loop_match(new, f"#{k}"))
                continue
            new = convert(new, old)
            _check_leaf(old, new, inv)
            out.append(new)
        return out

    def _freeze(self, new, old):
        if _carried(old):
            raise GraphError(f"while_loop: cond depends on {self.active.describe()}, known "
                             "only when the step runs, so the loop variables are frozen with "
                             f"where; a {type(old).__name__} loop variable cannot be",
                             [f"cond created at {self.active.loc.format()}"],
                             loc=user_location(), hint="compute the trip count from constants "
                             "or static shapes, so that the loop is unrolled exactly")
        if new.shape != old.shape:
            raise ShapeError(f"while_loop: loop variable '{old.node_name}' changes shape from "
                             f"{old.type_str()} to {new.type_str()}, but a data-dependent "
                             "cond needs fixed shapes (the variables are frozen with where)",
                             loc=user_location())
        return new if new is old else apply("where", [self.active, new, old], name="frozen")

    def _invariants(self, shape_invariants):
        if shape_invariants is None:
            return [None if _carried(v) or v.shape is None else tuple(v.shape)
                    for v in self.state]
        try:
            invs = flatten_up_to(self.structure, shape_invariants,
                                leaf_ok=lambda v: isinstance(v, TensorShape))
        except (KeyError, TypeError, IndexError):
            invs = []
        if len(invs) != len(self.state):
            raise GraphError("while_loop: shape_invariants must have the structure of "
                             f"loop_vars ({len(self.state)} shapes), found "
                             f"{shape_invariants!r}", loc=user_location())
        invs = [None if s is None else tuple(s) for s in invs]
        for v, inv in zip(self.state, invs):
            if not _carried(v) and not _fits(v.shape, inv):
                raise ShapeError(f"while_loop: loop variable '{v.node_name}' {v.type_str()} does "
                                 f"not fit its shape invariant {list(inv)}",
                                 loc=user_location())
        return invs

    def _limit(self, maximum_iterations):
        if maximum_iterations is None:
            return None
        value = self.static.value(convert(maximum_iterations)) \
            if isinstance(maximum_iterations, Node) else np.asarray(maximum_iterations)
        if not isinstance(value, np.ndarray) or value.shape != () or value.dtype.kind not in "iu":
            raise GraphError("while_loop: maximum_iterations must be an int known when the "
                             f"graph is built, found {maximum_iterations!r}",
                             loc=user_location())
        return max(int(value), 0)


def _carried(v):
    """A loop variable that is a Python object holding tensors (gc.TensorArray), not a
    tensor: it checks the body's value itself (``_loop_match``) and cannot be frozen."""
    return hasattr(v, "_loop_match")


def _check_leaf(old, new, invariant):
    if new.dtype != old.dtype:
        raise DTypeError(f"while_loop: loop variable '{old.node_name}' enters as "
                         f"{old.dtype.name} but the body returns {new.dtype.name}",
                         [f"body returned {new.describe()}"], loc=user_location(),
                         hint="cast in the body with gc.cast")
    if not _fits(new.shape, invariant):
        raise ShapeError(f"while_loop: loop variable '{old.node_name}' has shape "
                         f"{list(invariant)} but the body returns {new.type_str()}",
                         [f"body returned {new.describe()}"], loc=user_location(),
                         hint="to let the shape change between iterations, pass "
                              "shape_invariants with None for the dims that change")


def _fits(shape, invariant):
    """``shape`` is compatible with ``invariant`` (None: any shape; None dims: any size)."""
    if invariant is None:
        return True
    return len(shape) == len(invariant) and all(
        a is None or b is None or a == b for a, b in zip(shape, invariant))


def _data_dependent(pred, runtime):
    node, why = runtime
    raise GraphError(
        f"while_loop: cond depends on {node.describe()}, {why}; graphc unrolls while_loop "
        "when the graph is built, so cond must be computable from constants and static shapes",
        [f"cond: {pred.describe()} created at {pred.loc.format()}",
         f"{node.describe()} created at {node.loc.format()}"], loc=user_location(),
        hint="pass maximum_iterations=N: graphc then builds N iterations and freezes the loop "
             "variables with where once cond turns False (the body must be pure); or compute "
             "the trip count in Python")


