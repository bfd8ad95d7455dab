"""Algebraic simplification: local rewrites that keep IEEE semantics.

Each rule is listed in ``RULES`` (name, what it does) and tested on its own. A rule returns the
node that replaces ``n`` (an existing node or a new one) or None. Rules only fire when the
replacement has exactly ``n``'s shape and dtype. Values stay bit for bit the same, except that
``log-softmax`` is more accurate than the chain it replaces and ``matmul-transpose`` lets BLAS
pick its summation order. ``x * 0 -> 0`` and ``x - x -> 0`` are NOT rules (NaN and Inf), nor
is reassociating constants; signed zeros are respected (``x + 0.0`` is not ``x`` at -0.0).

| rule | rewrite |
|---|---|
| identity | identity(x), stop_gradient(x) -> x (gradients are already built) |
| add-zero | x + 0, 0 + x -> x (integers; floats only for a -0.0 addend) |
| sub-zero | x - 0 -> x (integers, and floats for +0.0) |
| zero-sub | 0 - x -> negative(x) (integers; floats only for -0.0) |
| mul-one | x * 1, 1 * x -> x |
| div-one | x / 1 -> x |
| mul-minus-one | x * -1, -1 * x -> negative(x) |
| neg-neg | negative(negative(x)) -> x |
| add-neg | x + negative(y) -> x - y;  negative(x) + y -> y - x |
| sub-neg | x - negative(y) -> x + y |
| cast-same | cast(x) to x's own dtype -> x |
| where-same | where(c, x, x) -> x |
| transpose-identity | transpose(x, identity perm) -> x |
| transpose-transpose | transpose(transpose(x, p), q) -> transpose(x, p[q]) |
| matmul-transpose | matmul(transpose(a), b) -> matmul(a, b, transpose_a=not ...) (last two axes) |
| reshape-noop | reshape / expand_dims / squeeze / broadcast_to to x's own shape -> x |
| reshape-chain | a chain of reshape / expand_dims / squeeze -> one reshape |
| log-softmax | log(softmax(x)) -> log_softmax(x) |
| reduce-noop | a reduction over no axes -> x |
| relu-mask | x > 0 -> relu(x) > 0 when relu(x) is computed (relu's gradient mask) |
"""
import numpy as np

from .common import index_of, new_node, replace_uses, splat, tracked_uses


def _same_type(a, b):
    return a.dtype == b.dtype and tuple(a.shape) == tuple(b.shape)


def _keep_if_same(n, x):
    return x if _same_type(n, x) else None


def _const_is(node, value):
    s = splat(node)
    return s is not None and not isinstance(s, bool) and s == value


def _zero(node):
    """None if ``node`` is not a zero splat; else "int", "+0.0" or "-0.0"."""
    s = splat(node)
    if s is None or isinstance(s, bool) or s != 0:
        return None
    if not node.dtype.is_floating:
        return "int"
    return "-0.0" if np.signbit(node.attrs["value"].reshape(-1)[0]) else "+0.0"


def r_identity(n, p):
    if n.opdef.identity:
        return _keep_if_same(n, n.inputs[0])
    return None


def r_add_zero(n, p):
    # x + (+0.0) turns x = -0.0 into +0.0, so for floats only a -0.0 addend is an identity.
    if n.op_name == "add":
        a, b = n.inputs
        for c, x in ((b, a), (a, b)):
            if _zero(c) in ("int", "-0.0"):
                return _keep_if_same(n, x)
    return None


def r_sub_zero(n, p):
    if n.op_name == "subtract" and _zero(n.inputs[1]) in ("int", "+0.0"):
        return _keep_if_same(n, n.inputs[0])
    return None


def r_zero_sub(n, p):
    # (+0.0) - (+0.0) = +0.0 but -(+0.0) = -0.0: for floats only a -0.0 minuend qualifies.
    if n.op_name == "subtract" and _zero(n.inputs[0]) in ("int", "-0.0") and \
            _same_type(n, n.inputs[1]):
        return new_node(p, n, "negative", [n.inputs[1]], {})
    return None


def r_mul_one(n, p):
    if n.op_name == "multiply":
        a, b = n.inputs
        if _const_is(b, 1):
            return _keep_if_same(n, a)
        if _const_is(a, 1):
            return _keep_if_same(n, b)
    return None


def r_div_one(n, p):
    if n.op_name == "divide" and _const_is(n.inputs[1], 1):
        return _keep_if_same(n, n.inputs[0])
    return None


def r_mul_minus_one(n, p):
    if n.op_name == "multiply":
        a, b = n.inputs
        for c, x in ((b, a), (a, b)):
            if _const_is(c, -1) and _same_type(n, x):
                return new_node(p, n, "negative", [x], {})
    return None


def r_neg_neg(n, p):
    if n.op_name == "negative" and n.inputs[0].op_name == "negative":
        return _keep_if_same(n, n.inputs[0].inputs[0])
    return None


def r_add_neg(n, p):
    if n.op_name != "add":
        return None
    a, b = n.inputs
    if b.op_name == "negative":
        return new_node(p, n, "subtract", [a, b.inputs[0]], {})
    if a.op_name == "negative":
        return new_node(p, n, "subtract", [b, a.inputs[0]], {})
    return None


def r_sub_neg(n, p):
    if n.op_name == "subtract" and n.inputs[1].op_name == "negative":
        return new_node(p, n, "add", [n.inputs[0], n.inputs[1].inputs[0]], {})
    return None


def r_cast_same(n, p):
    if n.op_name == "cast" and n.inputs[0].dtype == n.dtype:
        return _keep_if_same(n, n.inputs[0])
    return None


def r_where_same(n, p):
    if n.op_name == "where" and n.inputs[1] is n.inputs[2]:
        return _keep_if_same(n, n.inputs[1])
    return None


def _perm(n):
    perm = n.attrs.get("perm")
    return tuple(reversed(range(n.inputs[0].rank))) if perm is None else tuple(perm)


def r_transpose_identity(n, p):
    if n.op_name == "transpose" and _perm(n) == tuple(range(n.rank)):
        return _keep_if_same(n, n.inputs[0])
    return None


def r_transpose_transpose(n, p):
    if n.op_name == "transpose" and n.inputs[0].op_name == "transpose":
        inner = n.inputs[0]
        p1, p2 = _perm(inner), _perm(n)
        composed = tuple(p1[i] for i in p2)
        x = inner.inputs[0]
        if composed == tuple(range(x.rank)):
            return _keep_if_same(n, x)
        return new_node(p, n, "transpose", [x], {"perm": composed})
    return None


def _swaps_last_two(t):
    perm = _perm(t)
    r = t.rank
    return r >= 2 and perm == tuple(range(r - 2)) + (r - 1, r - 2)


def r_matmul_transpose(n, p):
    if n.op_name != "matmul":
        return None
    a, b = n.inputs
    ta, tb = bool(n.attrs.get("transpose_a")), bool(n.attrs.get("transpose_b"))
    if a.op_name == "transpose" and _swaps_last_two(a):
        return new_node(p, n, "matmul", [a.inputs[0], b],
                        {"transpose_a": not ta, "transpose_b": tb})
    if b.op_name == "transpose" and _swaps_last_two(b):
        return new_node(p, n, "matmul", [a, b.inputs[0]],
                        {"transpose_a": ta, "transpose_b": not tb})
    return None


def _reshapes(n):
    """A view that only reshapes: ``after`` also orders the step (control dependencies) and
    ``check_numerics`` checks its input; neither is ever dropped."""
    return _reshapes_op(n.opdef)


def _reshapes_op(op):
    return op.view and op.orders is None and not op.may_fail


def r_reshape_noop(n, p):
    if (_reshapes(n) or n.op_name == "broadcast_to") and _same_type(n, n.inputs[0]):
        return n.inputs[0]
    return None


def r_reshape_chain(n, p):
    if _reshapes(n) and _reshapes(n.inputs[0]):
        return new_node(p, n, "reshape", [n.inputs[0].inputs[0]], {"shape": tuple(n.shape)})
    return None


def r_log_softmax(n, p):
    if n.op_name == "log" and n.inputs[0].op_name == "softmax":
        sm = n.inputs[0]
        return new_node(p, n, "log_softmax", [sm.inputs[0]], dict(sm.attrs))
    return None


def r_relu_mask(n, p):
    # relu(x) > 0 is exactly x > 0 (NaN and -0.0 included); reading relu's output lets the
    # pre-activation die early and fuse with relu (the hand-written backward does the same).
    if n.op_name == "greater" and _zero(n.inputs[1]) is not None:
        x = n.inputs[0]
        readers = p.uses.users(x) if getattr(p, "uses", None) is not None else p.nodes
        relu = next((m for m in readers if m.op_name == "relu" and m.inputs[0] is x), None)
        if relu is not None and tuple(relu.shape) == tuple(x.shape):
            at = _schedule_before(p, relu, n)
            mask = new_node(p, n, "greater", [relu, n.inputs[1]], {}, schedule=False)
            p.nodes.insert(at, mask)  # (just before n: where new_node would put it)
            return mask
    return None


def _schedule_before(p, a, b):
    """Move ``a`` (whose inputs all come before ``b``) to just before ``b`` when it runs
    later: the replacement of ``b`` reads ``a`` and takes ``b``'s place, before every reader of
    ``b`` (placing it after ``a`` instead put it after readers of ``b`` that precede ``a``).
    Returns ``b``'s position afterwards."""
    for j, m in enumerate(p.nodes):  # (one walk: whichever of the two comes first)
        if m is a:
            return index_of(p.nodes, b, j + 1)  # a already runs before b
        if m is b:
            del p.nodes[index_of(p.nodes, a, j + 1)]
            p.nodes.insert(j, a)
            return j + 1


def r_reduce_noop(n, p):
    if n.op_name.startswith("reduce_") and n.attrs.get("axis") == () and \
            _same_type(n, n.inputs[0]):
        return n.inputs[0]
    return None


RULES = [
    ("identity", r_identity), ("add-zero", r_add_zero), ("sub-zero", r_sub_zero),
    ("zero-sub", r_zero_sub), ("mul-one", r_mul_one), ("div-one", r_div_one),
    ("mul-minus-one", r_mul_minus_one), ("neg-neg", r_neg_neg), ("add-neg", r_add_neg),
    ("sub-neg", r_sub_neg), ("cast-same", r_cast_same), ("where-same", r_where_same),
    ("transpose-identity", r_transpose_identity),
    ("transpose-transpose", r_transpose_transpose),
    ("matmul-transpose", r_matmul_transpose), ("reshape-noop", r_reshape_noop),
    ("reshape-chain", r_reshape_chain), ("log-softmax", r_log_softmax),
    ("reduce-noop", r_reduce_noop), ("relu-mask", r_relu_mask),
]
MAX_ROUNDS = 8


def _op_is(*names):
    return lambda op: op.name in names


# What a rule needs of the node's op before it looks at anything else (each rule returns None
# for any other op): ``simplify_algebra`` tries on a node only the rules its op passes, found
# once per op. A rule missing here is tried on every node.
GATES = {
    "identity": lambda op: bool(op.identity), "add-zero": _op_is("add"),
    "sub-zero": _op_is("subtract"), "zero-sub": _op_is("subtract"),
    "mul-one": _op_is("multiply"), "div-one": _op_is("divide"),
    "mul-minus-one": _op_is("multiply"), "neg-neg": _op_is("negative"),
    "add-neg": _op_is("add"), "sub-neg": _op_is("subtract"), "cast-same": _op_is("cast"),
    "where-same": _op_is("where"), "transpose-identity": _op_is("transpose"),
    "transpose-transpose": _op_is("transpose"), "matmul-transpose": _op_is("matmul"),
    "reshape-noop": lambda op: _reshapes_op(op) or op.name == "broadcast_to",
    "reshape-chain": lambda op: _reshapes_op(op), "log-softmax": _op_is("log"),
    "reduce-noop": lambda op: op.name.startswith("reduce_"), "relu-mask": _op_is("greater"),
}


def _rules_for(opdef, table, cache):
    """The rules of ``table`` that can fire on a node of ``opdef`` (table order)."""
    rules = cache.get(id(opdef))
    if rules is None:
        rules = cache[id(opdef)] = [(k, f) for k, f in table
                                    if k not in GATES or GATES[k](opdef)]
    return rules


def simplify_algebra(program, rules=None):
    """Apply ``RULES`` (or the named subset) until none fires.

    Args:
        program: an ``ir.program.Program`` (rewritten in place; replaced nodes are left for
            dead-code elimination).
        rules: optional list of rule names to apply.
    Returns:
        {rule name: times it fired} (rules that never fired are left out).
    Example:
        >>> simplify_algebra(program)
        {'mul-one': 1, 'transpose-transpose': 1}
    """
    table = [(k, f) for k, f in RULES if rules is None or k in rules]
    by_op = {}  # id(opdef) -> the rules that can fire on its nodes
    fired, replaced = {}, {}
    with tracked_uses(program) as uses:  # each replacement visits the replaced node's users
        dirty = None  # None: every node (the first round)
        for _ in range(MAX_ROUNDS):
            visit = [n for n in program.nodes if dirty is None or id(n) in dirty]
            dirty = {}
            for n in visit:
                if n.dtype is None or not n.inputs or id(n) in replaced:
                    continue
                for name, rule in _rules_for(n.opdef, table, by_op):
                    repl = rule(n, program)
                    if repl is not None and repl is not n:
                        rewired = uses.users(n)
                        replace_uses(program, n, repl)
                        replaced[id(n)] = n
                        fired[name] = fired.get(name, 0) + 1
                        _touched(uses, [repl] + rewired, dirty)
                        break
            if not dirty:
                break
    return fired


def _touched(uses, nodes, dirty):
    """Mark what a later round must look at again after ``nodes`` (a replacement and the
    users rewired to it) changed: they, their users (rules read an input's input) and the
    other readers of their inputs (``relu-mask`` looks for a sibling relu). No other node's
    rules can see the change: later rounds visit only these, not the whole program."""
    for m in nodes:
        dirty[id(m)] = m
        for u in uses.users(m):
            dirty[id(u)] = u
        for x in m.inputs:
            for u in uses.users(x):
                dirty[id(u)] = u
