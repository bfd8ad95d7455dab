"""The scalar expression form: what one element of an elementwise op computes.

Every elementwise op declares its formula here (``scalar=lambda x: S.exp(x)``); both backends
render the same trees (NumPy: ufunc calls; LLVM: scalar instructions inside a fused loop), and
constant folding evaluates them with ``evaluate``. Fusion composes trees into one body.

An ``Expr`` is immutable and hash-consed by structure, so equal subtrees are one object and a
fused body is a DAG. The primitive set is small on purpose (see ``PRIMS``).
"""
import numpy as np

from . import dtypes as D

# name -> (arity, NumPy function used by the reference evaluator and the NumPy backend)
PRIMS = {
    "add": (2, "add"), "sub": (2, "subtract"), "mul": (2, "multiply"), "div": (2, "divide"),
    "pow": (2, "power"), "max": (2, "maximum"), "min": (2, "minimum"),
    "neg": (1, "negative"), "exp": (1, "exp"), "log": (1, "log"), "log1p": (1, "log1p"),
    "expm1": (1, "expm1"), "tanh": (1, "tanh"), "sqrt": (1, "sqrt"), "abs": (1, "absolute"),
    "sign": (1, "sign"), "floor": (1, "floor"), "sin": (1, "sin"), "cos": (1, "cos"),
    "floordiv": (2, "floor_divide"), "mod": (2, "remainder"),  # integer x // 0, x % 0: 0
    "eq": (2, "equal"), "ne": (2, "not_equal"), "lt": (2, "less"), "le": (2, "less_equal"),
    "gt": (2, "greater"), "ge": (2, "greater_equal"),
    "and": (2, "logical_and"), "or": (2, "logical_or"), "not": (1, "logical_not"),
    "where": (3, "where"), "cast": (1, None), "isfinite": (1, "isfinite"),
}
COMPARISONS = {"eq", "ne", "lt", "le", "gt", "ge", "and", "or", "not", "isfinite"}
# Rough cost in multiplies, for fusion's "never duplicate expensive work" rule.
COST = {"exp": 20, "log": 20, "log1p": 20, "expm1": 20, "tanh": 20, "pow": 40, "sqrt": 8,
        "sin": 24, "cos": 24, "div": 4, "floordiv": 12, "mod": 12}

_INTERN = {}
WALK_KEPT = 512


class Expr:
    """A node of a scalar expression: ``op`` is a primitive, "arg" or "const".

    ``args`` are Exprs; ``value`` is the argument index (arg), the Python number (const), or
    the target DType (cast). ``dtype`` is the result's DType.
    """

    __slots__ = ("op", "args", "value", "dtype", "_order", "__weakref__")

    def __new__(cls, op, args, value, dtype):
        key = (op, tuple(id(a) for a in args), value, dtype.name)
        hit = _INTERN.get(key)
        if hit is not None and hit.args == tuple(args):
            return hit
        e = object.__new__(cls)
        e.op, e.args, e.value, e.dtype = op, tuple(args), value, dtype
        e._order = None
        _INTERN[key] = e
        return e

    # Operators keep declarations readable: ``g * (1 - out * out)``.
    def __add__(self, o): return call("add", self, o)
    def __radd__(self, o): return call("add", o, self)
    def __sub__(self, o): return call("sub", self, o)
    def __rsub__(self, o): return call("sub", o, self)
    def __mul__(self, o): return call("mul", self, o)
    def __rmul__(self, o): return call("mul", o, self)
    def __truediv__(self, o): return call("div", self, o)
    def __rtruediv__(self, o): return call("div", o, self)
    def __neg__(self): return call("neg", self)

    def __repr__(self):
        return format_expr(self)

    def walk(self):
        """All distinct subexpressions, operands before users (a tuple). Kept for bodies of
        up to ``WALK_KEPT`` subexpressions: an Expr never changes, and fusion and both
        backends walk the same bodies again (longer ones, an unrolled loop's add chain whose
        every prefix was a body, would keep memory quadratic in its length)."""
        order = self._order
        if order is None:
            order = self._walk()
            if len(order) <= WALK_KEPT:
                self._order = order
        return order

    def _walk(self):
        seen, order = {id(self)}, []
        stack = [(self, 0)]  # iterative depth-first: a fused sum can be thousands deep
        while stack:
            e, k = stack[-1]
            if k < len(e.args):
                stack[-1] = (e, k + 1)
                a = e.args[k]
                if id(a) not in seen:
                    seen.add(id(a))
                    stack.append((a, 0))
            else:
                stack.pop()
                order.append(e)
        return tuple(order)


def arg(index, dtype):
    return Expr("arg", (), index, dtype)


def const(value, dtype):
    value = bool(value) if dtype.is_bool else (int(value) if dtype.is_integer else float(value))
    return Expr("const", (), value, dtype)


def _lift(x, like):
    return x if isinstance(x, Expr) else const(x, like.dtype)


def call(op, *args):
    """Build ``op(args)``; Python numbers take the dtype of the Expr operand beside them."""
    typed = next((a for a in args if isinstance(a, Expr)), None)
    if op == "where":
        typed = next((a for a in args[1:] if isinstance(a, Expr)), typed)
    args = tuple(_lift(a, typed) for a in args)
    if op in COMPARISONS:
        dtype = D.bool_
    elif op == "where":
        dtype = args[1].dtype
    else:
        dtype = args[0].dtype
    return Expr(op, args, None, dtype)


def cast(x, dtype):
    return Expr("cast", (x,), dtype.name, dtype)


def substitute(expr, args):
    """Replace ``arg(i)`` by ``args[i]`` (an Expr): how fusion inlines one body into another."""
    memo = {}
    for e in expr.walk():
        if e.op == "arg":
            memo[id(e)] = args[e.value]
        elif e.op == "const":
            memo[id(e)] = e
        else:
            memo[id(e)] = Expr(e.op, tuple(memo[id(a)] for a in e.args), e.value, e.dtype)
    return memo[id(expr)]


def occurrences(expr):
    """{id(subexpression): how many times it occurs in ``expr`` read as a tree}.

    A body is a DAG of shared subexpressions, so one node stands for every place it is read:
    ``add(x, x)`` reads ``x`` twice, and a shared ``x + y`` read twice reads ``x`` twice. A
    rewrite that replaces "the" occurrence of an argument must first prove this count is 1.
    Counted over root-to-node paths in users-before-operands order (iterative: no recursion
    depth limit on long add chains).
    """
    order = expr.walk()
    count = {id(e): 0 for e in order}
    count[id(expr)] = 1
    for e in reversed(order):
        for a in e.args:
            count[id(a)] += count[id(e)]
    return count


def cost(expr):
    return sum(COST.get(e.op, 1) for e in expr.walk() if e.op not in ("arg", "const"))


def evaluate(expr, args):
    """Reference semantics: evaluate on NumPy arrays (used by constant folding and tests)."""
    vals = {}
    with np.errstate(all="ignore"):
        for e in expr.walk():
            if e.op == "arg":
                v = np.asarray(args[e.value])
            elif e.op == "const":
                v = np.asarray(e.value, dtype=e.dtype.np)
            elif e.op == "cast":
                v = vals[id(e.args[0])].astype(e.dtype.np)
            else:
                v = getattr(np, PRIMS[e.op][1])(*(vals[id(a)] for a in e.args))
                v = np.asarray(v).astype(e.dtype.np, copy=False)
            vals[id(e)] = v
    return vals[id(expr)]


def format_expr(expr, names=None):
    """Readable infix-ish text of an expression DAG, for dumps (iterative: a fused sum of
    thousands of terms is as deep as it is long)."""
    names = names or {}
    text = {}
    for e in expr.walk():  # operands before users
        if e.op == "arg":
            t = names.get(e.value, f"${e.value}")
        elif e.op == "const":
            t = repr(e.value)
        elif e.op == "cast":
            t = f"cast<{e.value}>({text[id(e.args[0])]})"
        else:
            t = f"{e.op}(" + ", ".join(text[id(a)] for a in e.args) + ")"
        text[id(e)] = t
    return text[id(expr)]


class _S:
    """``S.exp(x)``: the namespace op declarations write formulas with."""

    def __getattr__(self, op):
        if op not in PRIMS:
            raise AttributeError(op)
        return lambda *args: call(op, *args)

    cast = staticmethod(cast)
    const = staticmethod(const)


S = _S()
