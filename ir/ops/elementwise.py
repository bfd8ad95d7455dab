"""Elementwise ops: a scalar formula each (rendered by both backends, composed by fusion).

VJP conventions (the autodiff driver sums gradients back to each input's shape, so rules
return gradients of the broadcast shape):
- ``relu'(0) = 0``; ``abs'(0) = 0``; ``sign`` and comparisons are not differentiable.
- ``maximum``/``minimum`` split ties evenly: at ``x == y`` each side gets ``g / 2``.
- ``where``'s VJP is ``where(c, g, 0)`` / ``where(c, 0, g)``, never a mask multiply, so a NaN
  in the branch not taken never leaks into the gradient.
- ``pow``'s exponent gradient uses ``log(x)`` only where ``x > 0`` (0 elsewhere), as TF does.
- A zero cotangent gives an exactly zero gradient even at a pole or outside the domain
  (``sqrt``, ``log``, ``log1p``, ``divide``, ``pow``): ``where(g == 0, 0, ...)``, not
  ``0 * inf = nan``. So ``where(x > 0, sqrt(x), 0)`` or ``where(x != 0, 1 / x, 0)`` have finite
  gradients at ``x <= 0``, where the branch not taken is inf or NaN. (``multiply`` is not
  guarded: ``x * log(x)`` at 0 still needs ``log(where(x > 0, x, 1))``.)
- VJPs reuse the forward output where it is cheaper: ``d exp = g * out``,
  ``d sqrt = g / (2 out)``, ``d tanh = g (1 - out^2)``, ``d sigmoid = g out (1 - out)``.
"""
from .. import dtypes as D
from ..scalar import S
from .registry import F, ZERO, defop, require, same_dtype, broadcast_all

FLOAT, NUMERIC, BOOL = "f", "fi", "b"


def _infer(kinds, out_dtype=None):
    def infer(nodes, **attrs):
        dt = same_dtype(nodes, kinds)
        return (out_dtype or dt), broadcast_all(nodes)
    return infer


def unary(name, kinds, scalar, vjp, domain=(-2.0, 2.0), doc="", **props):
    return defop(name, _infer(kinds), vjp, scalar=scalar, domain=domain, arity=1, doc=doc,
                 family="elementwise", **props)


def binary(name, kinds, scalar, vjp, commutative=False, out_dtype=None, **props):
    return defop(name, _infer(kinds, out_dtype), vjp, scalar=scalar, commutative=commutative,
                 arity=2, family="elementwise", **props)


def _half_split(x, y, g, greater):
    """Mask for the ``x`` side of max/min: 1 where x wins, 1/2 on ties, else 0."""
    win = F.cast(F.greater(x, y) if greater else F.less(x, y), dtype=g.dtype)
    tie = F.cast(F.equal(x, y), dtype=g.dtype)
    mx = win + tie * 0.5
    return [g * mx, g * (1.0 - mx)]


def _zero_safe(g, grad):
    """``grad``, but exactly 0 where the cotangent ``g`` is 0 (see module docstring)."""
    return F.where(F.equal(g, 0.0), F.zeros_like(grad), grad)


def _nonzero_const(y):
    return y.op_name == "const" and bool((y.attrs["value"] != 0).all())


def _divide_vjp(g, out, x, y):
    gx, gy = g / y, -(g * out) / y
    if _nonzero_const(y):  # x / 2.0: no pole, no guard
        return [gx, gy]
    return [_zero_safe(g, gx), _zero_safe(g, gy)]


def _pow_vjp(g, out, x, y):
    positive = F.greater(x, 0.0)
    safe_log = F.where(positive, F.log(F.where(positive, x, F.ones_like(x))), F.zeros_like(x))
    return [_zero_safe(g, g * y * F.pow(x, y - 1.0)), _zero_safe(g, g * out * safe_log)]


# -- arithmetic ---------------------------------------------------------------------------
ADD = binary("add", NUMERIC, lambda x, y: x + y, lambda g, out, x, y: [g, g], commutative=True,
             linear="all", tf_name="add")
SUBTRACT = binary("subtract", NUMERIC, lambda x, y: x - y, lambda g, out, x, y: [g, -g],
                  linear="all", tf_name="sub")
MULTIPLY = binary("multiply", NUMERIC, lambda x, y: x * y,
                  lambda g, out, x, y: [g * y, g * x], commutative=True, linear="each",
                  tf_name="mul")
DIVIDE = binary("divide", FLOAT, lambda x, y: x / y, _divide_vjp, linear="first", tf_name="truediv")
POW = binary("pow", FLOAT, lambda x, y: S.pow(x, y), _pow_vjp, tf_name="Pow")
MAXIMUM = binary("maximum", NUMERIC, lambda x, y: S.max(x, y),
                 lambda g, out, x, y: _half_split(x, y, g, True), commutative=True,
                 tf_name="Maximum")
MINIMUM = binary("minimum", NUMERIC, lambda x, y: S.min(x, y),
                 lambda g, out, x, y: _half_split(x, y, g, False), commutative=True,
                 tf_name="Minimum")
NEGATIVE = unary("negative", NUMERIC, lambda x: -x, lambda g, out, x: [-g], linear="first",
                 tf_name="Neg")
SQUARE = unary("square", NUMERIC, lambda x: x * x, lambda g, out, x: [g * (x * 2.0)],
               tf_name="Square")
ABS = unary("abs", NUMERIC, lambda x: S.abs(x), lambda g, out, x: [g * F.sign(x)], tf_name="Abs")
SIGN = unary("sign", NUMERIC, lambda x: S.sign(x), ZERO, tf_name="Sign")
FLOOR = unary("floor", FLOAT, lambda x: S.floor(x), ZERO, tf_name="Floor")


def _floormod_vjp(g, out, x, y):
    """TF's rule for floats: d(x % y)/dx = 1, d(x % y)/dy = -(x // y) (the jumps at
    multiples of y are ignored, as TF does)."""
    return [g, -(g * F.floordiv(x, y))]


# Floor division and modulo as NumPy (and TF's FloorDiv/FloorMod) define them: the quotient
# rounds to -inf, the remainder takes the divisor's sign; integer x // 0 and x % 0 are 0.
FLOORDIV = binary("floordiv", NUMERIC, lambda x, y: S.floordiv(x, y), ZERO, tf_name="floordiv")
FLOORMOD = binary("floormod", NUMERIC, lambda x, y: S.mod(x, y), _floormod_vjp, tf_name="mod")

# -- transcendental -------------------------------------------------------------------------
SQRT = unary("sqrt", FLOAT, lambda x: S.sqrt(x),
             lambda g, out, x: [_zero_safe(g, g / (out * 2.0))], domain=(0.1, 2.0), tf_name="Sqrt")
EXP = unary("exp", FLOAT, lambda x: S.exp(x), lambda g, out, x: [g * out], tf_name="Exp")
LOG = unary("log", FLOAT, lambda x: S.log(x), lambda g, out, x: [_zero_safe(g, g / x)],
            domain=(0.1, 2.0), tf_name="Log")
LOG1P = unary("log1p", FLOAT, lambda x: S.log1p(x),
              lambda g, out, x: [_zero_safe(g, g / (x + 1.0))], domain=(-0.5, 2.0), tf_name="Log1p")
TANH = unary("tanh", FLOAT, lambda x: S.tanh(x), lambda g, out, x: [g * (1.0 - out * out)],
             tf_name="Tanh")
SIN = unary("sin", FLOAT, lambda x: S.sin(x), lambda g, out, x: [g * F.cos(x)],
            domain=(-4.0, 4.0), tf_name="Sin")
COS = unary("cos", FLOAT, lambda x: S.cos(x), lambda g, out, x: [-(g * F.sin(x))],
            domain=(-4.0, 4.0), tf_name="Cos")
SIGMOID = unary("sigmoid", FLOAT, lambda x: 1.0 / (1.0 + S.exp(-x)),
                lambda g, out, x: [g * (out * (1.0 - out))], tf_name="Sigmoid")
RELU = unary("relu", NUMERIC, lambda x: S.max(x, 0),
             lambda g, out, x: [F.where(F.greater(x, 0), g, F.zeros_like(g))], tf_name="Relu")
SOFTPLUS = unary("softplus", FLOAT,
                 lambda x: S.max(x, 0.0) + S.log1p(S.exp(-S.abs(x))),
                 lambda g, out, x: [g * F.sigmoid(x)], domain=(-4.0, 4.0), tf_name="Softplus")
LEAKY_RELU = defop(
    "leaky_relu", _infer(FLOAT), family="elementwise", arity=1,
    scalar=lambda x, alpha: S.where(S.gt(x, 0.0), x, x * alpha),
    vjp=lambda g, out, x, alpha: [F.where(F.greater(x, 0.0), g, g * alpha)], tf_name="LeakyRelu")

# -- selection, casts, identity -------------------------------------------------------------


def _where_infer(nodes):
    c, a, b = nodes
    if c.dtype != D.bool_:  # (the message only when it fails)
        require(False, f"condition must be bool, found {c.dtype.name}",
                [f"'{c.node_name}': {c.type_str()}"], kind="dtype")
    dt = same_dtype([a, b], what="branches")
    return dt, broadcast_all(nodes)


WHERE = defop("where", _where_infer, family="elementwise", arity=3,
              scalar=lambda c, a, b: S.where(c, a, b),
              vjp=lambda g, out, c, a, b: [None, F.where(c, g, F.zeros_like(g)),
                                           F.where(c, F.zeros_like(g), g)], tf_name="Select")


def _cast_vjp(g, out, x, dtype):
    if not (x.dtype.is_floating and out.dtype.is_floating):
        return [None]
    return [F.cast(g, dtype=x.dtype)]


CAST = defop("cast", lambda nodes, dtype: (D.as_dtype(dtype), nodes[0].shape), _cast_vjp,
             family="elementwise", arity=1,
             scalar=lambda x, dtype: S.cast(x, D.as_dtype(dtype)), tf_name="Cast")
IDENTITY = defop("identity", lambda nodes: (nodes[0].dtype, nodes[0].shape),
                 lambda g, out, x: [g], scalar=lambda x: x, arity=1, family="elementwise",
                 identity=True, rearranges=True, linear="first", tf_name="Identity")
# A value copied into a buffer of its own (never a view): the scheduler reads a variable's old
# value through one when a reader of that value also depends on the variable's update
# (``assign(w, w * 0.5) * w``); nothing else creates it.
COPY = defop("copy", lambda nodes: (nodes[0].dtype, nodes[0].shape), lambda g, out, x: [g],
             scalar=lambda x: x, arity=1, family="elementwise", linear="first")
STOP_GRADIENT = defop("stop_gradient", lambda nodes: (nodes[0].dtype, nodes[0].shape), ZERO,
                      scalar=lambda x: x, arity=1, family="elementwise", identity=True,
                      rearranges=True, tf_name="StopGradient")

ZEROS_LIKE = defop("zeros_like", lambda nodes: (nodes[0].dtype, nodes[0].shape), ZERO,
                   scalar=lambda x: S.const(0, x.dtype), arity=1, family="elementwise",
                   shape_only=(0,), tf_name="zeros_like")
ONES_LIKE = defop("ones_like", lambda nodes: (nodes[0].dtype, nodes[0].shape), ZERO,
                  scalar=lambda x: S.const(1, x.dtype), arity=1, family="elementwise",
                  shape_only=(0,), tf_name="ones_like")

# -- comparisons and logic (bool results, not differentiable) --------------------------------
for _name, _prim, _tf in [("equal", "eq", "Equal"), ("not_equal", "ne", "NotEqual"),
                          ("less", "lt", "Less"), ("less_equal", "le", "LessEqual"),
                          ("greater", "gt", "Greater"), ("greater_equal", "ge", "GreaterEqual")]:
    binary(_name, "fib", (lambda p: lambda x, y: getattr(S, p)(x, y))(_prim), ZERO,
           commutative=_prim in ("eq", "ne"), out_dtype=D.bool_, tf_name=_tf)
binary("logical_and", BOOL, lambda x, y: getattr(S, "and")(x, y), ZERO, commutative=True,
       tf_name="LogicalAnd")
binary("logical_or", BOOL, lambda x, y: getattr(S, "or")(x, y), ZERO, commutative=True,
       tf_name="LogicalOr")
unary("logical_not", BOOL, lambda x: getattr(S, "not")(x), ZERO, tf_name="LogicalNot")
defop("is_finite", _infer(FLOAT, D.bool_), ZERO, scalar=lambda x: S.isfinite(x), arity=1,
      family="elementwise", tf_name="IsFinite")

# -- fused losses ---------------------------------------------------------------------------
SIGMOID_XENT = defop(
    "sigmoid_xent", _infer(FLOAT), family="elementwise", arity=2,
    doc="sigmoid_cross_entropy_with_logits(labels z, logits x), the stable form",
    scalar=lambda z, x: S.max(x, 0.0) - x * z + S.log1p(S.exp(-S.abs(x))),
    vjp=lambda g, out, z, x: [-(g * x), g * (F.sigmoid(x) - z)], tf_name="logistic_loss")
