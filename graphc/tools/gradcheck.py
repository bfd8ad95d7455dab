"""``gc.check_gradients``: symbolic gradients against central differences, on users' models.

The check runs on a *float64 copy* of the part of the graph the loss needs, so it works on
float32 models without the user changing anything:
- every floating tensor (variables, placeholders, constants, casts) becomes float64; integer
  tensors (labels, indices) stay as they are;
- variables and the tensors checked become placeholders of the copy, fed the session's values
  (or the feeds), so nothing is assigned and perturbing one tensor touches nothing else;
- random ops (dropout masks included) are frozen to one sample: central differences need
  the same function on both sides of x;
- the copy is differentiated with the same autodiff and run by an unoptimized Session, so the
  check exercises the symbolic gradients the user's training step uses.

Each checked tensor compares every element (up to ``max_elements``) or, for larger tensors,
``num_projections`` random directions ``d``: ``<grad, d>`` against
``(f(x + eps d) - f(x - eps d)) / (2 eps)``. An entry passes when
``|symbolic - numeric| <= atol + rtol * |numeric|``.

Tolerances: in float64 (the default) eps = 1e-6, atol = 1e-5, rtol = 1e-3: truncation error
is O(eps^2) and rounding error about 1e-16 |f| / eps = 1e-10 |f|. With ``float64=False`` the
graph runs in its own dtype; for float32 the defaults become eps = 1e-3, atol = 1e-3,
rtol = 5e-2 (rounding error about 6e-8 |f| / eps), which catches wrong gradients but not
small inaccuracies. Points where the loss is not differentiable (relu at 0, ties of max)
can fail either way; the random data of a real model almost never hits them.
"""
import numpy as np

from ..errors import GradientError, GraphError
from ..ir import dtypes as D
from ..ir.autodiff import gradients
from ..ir.graph import Graph, Node, get_default_session
from ..ir.ops import get as get_op
from ..ir.program import needed_nodes
from ..ir.shapes import RuleError

TOLERANCES = {True: dict(eps=1e-6, atol=1e-5, rtol=1e-3),
              False: dict(eps=1e-3, atol=1e-3, rtol=5e-2)}


class GradientCheckRow:
    """One checked tensor: name, shape, what was compared, the symbolic gradient's norm,
    the worst absolute and relative errors, and the verdict."""

    def __init__(self, name, shape, checked, grad_norm, max_abs, max_rel, passed):
        self.name, self.shape, self.checked = name, tuple(shape), checked
        self.grad_norm = grad_norm
        self.max_abs_err, self.max_rel_err, self.passed = max_abs, max_rel, passed

    def __repr__(self):
        return (f"<{self.name} {list(self.shape)} abs={self.max_abs_err:.2e} "
                f"rel={self.max_rel_err:.2e} {'ok' if self.passed else 'FAIL'}>")


class GradientCheck:
    """The result of ``check_gradients``: one row per tensor, printable as a table.

    Attributes:
        rows: list of ``GradientCheckRow``.
        passed: True when every row passed.
        settings: eps, atol, rtol and the dtype the check ran in.
    """

    def __init__(self, rows, settings):
        self.rows, self.settings = rows, settings

    @property
    def passed(self):
        return all(r.passed for r in self.rows)

    def __iter__(self):
        return iter(self.rows)

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, key):
        if isinstance(key, int):
            return self.rows[key]
        for r in self.rows:
            if r.name == key:
                return r
        raise KeyError(key)

    def __bool__(self):
        return self.passed

    def __str__(self):
        s = self.settings
        head = (f"gradient check in {s['dtype']} (eps={s['eps']:g}, atol={s['atol']:g}, "
                f"rtol={s['rtol']:g}): {'PASSED' if self.passed else 'FAILED'}")
        width = max([len("tensor")] + [len(r.name) for r in self.rows])
        lines = [head, f"  {'tensor':<{width}}  {'shape':<14} {'checked':<16} "
                       f"{'|grad|':>9}  {'max abs err':>11}  {'max rel err':>11}  result"]
        for r in self.rows:
            lines.append(f"  {r.name:<{width}}  {str(list(r.shape)):<14} {r.checked:<16} "
                         f"{r.grad_norm:>9.2e}  {r.max_abs_err:>11.2e}  {r.max_rel_err:>11.2e}  "
                         f"{'ok' if r.passed else 'FAIL'}")
        return "\n".join(lines)

    __repr__ = __str__

    def raise_if_failed(self):
        """Raise GradientError with the table when some tensor failed."""
        if not self.passed:
            raise GradientError("check_gradients: symbolic and numeric gradients differ",
                                str(self).splitlines())
        return self


def check_gradients(loss, wrt=None, feed_dict=None, session=None, float64=True, eps=None,
                    atol=None, rtol=None, max_elements=64, num_projections=8, seed=0):
    """Compare ``gc.gradients(loss, wrt)`` with central differences of ``loss``.

    Args:
        loss: a floating tensor (non-scalar losses are summed, as ``gc.gradients`` does).
        wrt: a tensor or list of tensors: variables, placeholders or intermediate tensors
            (default: the trainable variables the loss depends on).
        feed_dict: values of the placeholders the loss needs.
        session: holds the variables' values (default: the default session; variables it
            has no value for use their constant initial value).
        float64: run in float64 (default) or in the graph's own dtypes.
        eps, atol, rtol: override the defaults (see the module docstring).
        max_elements: tensors up to this size are checked element by element.
        num_projections: random directions checked for larger tensors.
        seed: seed of the random directions and of frozen random ops.
    Returns:
        A ``GradientCheck`` (``print`` it; ``.passed``; ``.raise_if_failed()``).
    Raises:
        GraphError: a variable without a value, or an impure op that cannot be frozen.
    Example:
        >>> result = gc.check_gradients(loss, [W1, b1], {x: xb, y: yb}, session=sess)
        >>> print(result); assert result.passed
    """
    tol = dict(TOLERANCES[bool(float64)])
    tol.update({k: v for k, v in dict(eps=eps, atol=atol, rtol=rtol).items() if v is not None})
    wrt = _wrt_list(loss, wrt)
    session = session or get_default_session()
    copy = _Float64Copy(loss, wrt, feed_dict or {}, session, float64, seed)
    rng = np.random.default_rng(seed)
    rows = []
    for x, xc in zip(wrt, copy.wrt):
        rows.append(_check_one(copy, x, xc, rng, tol, max_elements, num_projections))
    dtype = "float64" if float64 else "the graph's dtypes"
    return GradientCheck(rows, dict(tol, dtype=dtype))


def _wrt_list(loss, wrt):
    if wrt is None:
        needed = set(needed_nodes([loss]))
        wrt = [v for v in loss.graph.get_collection("trainable_variables") if v in needed]
        if not wrt:
            raise GradientError(f"check_gradients: {loss.describe()} depends on no trainable "
                                "variable", hint="pass wrt= explicitly")
    wrt = list(wrt) if isinstance(wrt, (list, tuple)) else [wrt]
    for x in wrt:
        if not isinstance(x, Node) or x.dtype is None or not x.dtype.is_floating:
            raise GradientError(f"check_gradients: can only check floating tensors, found "
                                f"{x.describe() if isinstance(x, Node) else repr(x)}")
    return wrt


def _check_one(copy, x, xc, rng, tol, max_elements, num_projections):
    """Compare one tensor's symbolic gradient with central differences."""
    base = copy.feeds[xc]
    sym = copy.symbolic[xc]
    eps = tol["eps"]
    if base.size <= max_elements:
        directions = [(idx, None) for idx in np.ndindex(base.shape)]
        checked = f"all {base.size}"
    else:
        directions = []
        for _ in range(num_projections):
            d = rng.standard_normal(base.shape)
            directions.append((None, d / np.linalg.norm(d)))
        checked = f"{num_projections} projections"
    num, ana = [], []
    for idx, d in directions:
        if d is None:
            d = np.zeros(base.shape)
            d[idx] = 1.0
        step = (eps * d).astype(base.dtype)
        num.append((copy.evaluate(xc, base + step) - copy.evaluate(xc, base - step))
                   / (2 * eps))
        ana.append(float(np.sum(sym * d)))
    num, ana = np.array(num), np.array(ana)
    err = np.abs(ana - num)
    scale = np.maximum(np.abs(ana), np.abs(num))
    rel = np.where(scale > tol["atol"], err / np.where(scale > 0, scale, 1.0), 0.0)
    passed = bool(np.all(err <= tol["atol"] + tol["rtol"] * np.abs(num)))
    return GradientCheckRow(x.node_name, base.shape, checked, float(np.linalg.norm(sym)),
                            float(err.max(initial=0.0)),
                            float(rel.max(initial=0.0)), passed)


class _Float64Copy:
    """The loss's subgraph copied with floats widened, leaves and checked tensors as feeds.

    Attributes:
        wrt: the copy's placeholders standing for the checked tensors.
        feeds: {copy placeholder: base value}.
        symbolic: {checked placeholder: symbolic gradient value at the base point}.
    """

    def __init__(self, loss, wrt, feed_dict, session, widen, seed):
        from ..client.session import Session
        self.widen, self.seed = widen, seed
        self.graph = Graph()
        self.map, self.feeds = {}, {}
        user_feeds = {(self._by_name(loss, k) if isinstance(k, str) else k): v
                      for k, v in feed_dict.items()}
        wrt_set = set(wrt)
        for n in needed_nodes([loss] + wrt):
            self._copy_node(n, n in wrt_set, user_feeds, session)
        self.loss = self.map[loss]
        self.wrt = [self.map[x] if x.opdef.external else self.map[x].inputs[1]
                    for x in wrt]
        self.sess = Session(graph=self.graph, optimize=False)
        grads = gradients(self.loss, self.wrt)
        values = self.sess.run(grads, self.feeds)
        self.symbolic = {xc: np.asarray(v, np.float64) for xc, v in zip(self.wrt, values)}

    @staticmethod
    def _by_name(loss, name):
        return loss.graph.get_tensor_by_name(name)

    def dtype(self, dt):
        return D.float64 if self.widen and dt is not None and dt.is_floating else dt

    def _placeholder(self, node, value):
        dt = self.dtype(node.dtype)
        value = np.asarray(value, dt.np)
        p = self.graph.add_node(get_op("placeholder"), [], {"shape": value.shape, "dtype": dt},
                                dt, value.shape, node.node_name, node.loc)
        self.feeds[p] = value
        return p

    def _copy_node(self, n, checked, user_feeds, session):
        op = n.op_name
        if n.opdef.external:
            self.map[n] = self._placeholder(n, self._leaf_value(n, user_feeds, session))
        elif op == "assign":
            self.map[n] = self.map[n.inputs[1]]  # an assign's value is the value assigned
        elif n.opdef.impure:
            self.map[n] = self._frozen_random(n)
        else:
            self.map[n] = self._rebuild(n)
        if checked and not n.opdef.external:
            # A checked intermediate h is replaced by h + delta, delta a zero placeholder:
            # d loss / d delta is d loss / d h, and the paths through h to other checked
            # tensors stay intact.
            delta = self._placeholder(n, np.zeros(self.map[n].shape))
            self.map[n] = self._add_node(get_op("add"), [self.map[n], delta], {}, n)

    def _leaf_value(self, n, user_feeds, session):
        if n.op_name == "placeholder":
            if n not in user_feeds:
                raise GraphError(f"check_gradients: placeholder '{n.node_name}' must be fed",
                                 loc=n.loc, hint="add it to feed_dict")
            return user_feeds[n]
        value = None if session is None else session.values.get(n)
        if value is None:
            init = n.meta.get("initial_value")
            if init is None or init.op_name != "const":
                raise GraphError(f"check_gradients: variable '{n.node_name}' has no value",
                                 loc=n.loc, hint="pass session= after running the "
                                                 "initializer")
            value = init.attrs["value"]
        return value

    def _frozen_random(self, n):
        """One sample of a random op (``impl(rng, shape, **attrs)``, as every random op's
        kernel is called), as a constant: the function differentiated must not change."""
        attrs = {k: self._widen_attr(v) for k, v in n.attrs.items()}
        try:
            _, shape = n.opdef.infer([self.map[i] for i in n.inputs], **attrs)
            attrs.pop("shape", None)
            rng = np.random.default_rng(self.seed if attrs.get("seed") is None
                                        else attrs["seed"])
            value = n.opdef.impl(rng, shape, **attrs)
        except (TypeError, RuleError):
            raise GraphError(f"check_gradients: cannot freeze impure {n.describe()} to one "
                             "sample", loc=n.loc,
                             hint="check a graph without it (e.g. dropout keep_prob=1)") from None
        return self._const(np.asarray(value, self.dtype(n.dtype).np), n)

    def _const(self, value, like):
        value.setflags(write=False)
        return self.graph.add_node(get_op("const"), [], {"value": value},
                                   D.as_dtype(value.dtype), value.shape, like.node_name, like.loc)

    def _rebuild(self, n):
        inputs = [self.map[i] for i in n.inputs]
        attrs = {k: self._widen_attr(v) for k, v in n.attrs.items()}
        if n.op_name == "const":
            return self._const(np.array(attrs["value"]), n)
        return self._add_node(n.opdef, inputs, attrs, n)

    def _add_node(self, opdef, inputs, attrs, like):
        try:
            dtype, shape = opdef.infer(inputs, **attrs)
        except RuleError as e:
            raise GraphError(f"check_gradients: cannot copy {like.describe()} in float64: "
                             f"{e.message}", e.details, like.loc) from None
        m = self.graph.add_node(opdef, inputs, attrs, dtype, shape, like.node_name, like.loc)
        m.is_grad = like.is_grad
        self.graph.node_changed(m)
        return m

    def _widen_attr(self, v):
        if isinstance(v, D.DType):
            return self.dtype(v)
        if isinstance(v, np.ndarray) and v.dtype.kind == "f" and self.widen:
            return v.astype(np.float64)
        return v

    def evaluate(self, xc, value):
        """The summed loss with the checked placeholder ``xc`` set to ``value``."""
        feeds = dict(self.feeds)
        feeds[xc] = value
        return float(np.sum(self.sess.run(self.loss, feeds)))


__all__ = ["check_gradients", "GradientCheck", "GradientCheckRow"]
