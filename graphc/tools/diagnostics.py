"""Gradient health: norms as fetches of the step, and a report naming sick layers.

``gradient_norms`` builds graph tensors (so they compile into the training step and cost one
reduction each); fetch the dict together with the train op and pass the values to
``gradient_report``, which groups variables into layers by their name scope (``dense3/W`` and
``dense3/b`` form layer ``dense3``) and flags:

- **vanishing**: a layer's gradient norm is below ``vanish_rel`` (default 1e-3) times the
  largest layer's, or below ``vanish_abs`` (default 1e-10): that layer barely learns while
  others do. Typical of deep sigmoid/tanh stacks, cured by better initialization,
  normalization or skip connections.
- **exploding**: a non-finite gradient, a layer's gradient norm above ``explode_abs``
  (default 1e3), or an update larger than ``explode_ratio`` (default 1.0) times the weights
  it changes. Typical of recurrent nets and too-large learning rates, cured by clipping by
  global norm (``gc.clip_by_global_norm``) or a smaller learning rate.

The update-to-weight ratio ``||delta w|| / ||w||`` is exact when the train op is given (the
value each assign writes, minus the weights); with only a learning rate it is the SGD
estimate ``lr ||g|| / ||w||``. Around 1e-3 per step is the usual healthy range.
"""
import math

import numpy as np

from ..ops.clip_ops import global_norm
from ..errors import GraphError
from ..ir.graph import Node
from ..ops.math_ops import maximum, sqrt
from ..ops.reduction_ops import reduce_sum

__all__ = ["gradient_norms", "gradient_report", "GradientReport", "layer_of"]


def _norm(t):
    return sqrt(reduce_sum(t * t))


def _assigns_under(train_op):
    """{variable: assign node} for the assigns a train op (groups of groups) runs."""
    found, stack, seen = {}, [train_op], set()
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        if n.op_name == "assign":
            found[n.inputs[0]] = n
        elif n.op_name == "group":
            stack.extend(n.inputs)
    return found


def gradient_norms(grads_and_vars, learning_rate=None, train_op=None):
    """Per-variable gradient norms, the global norm and update-to-weight ratios, as tensors.

    Args:
        grads_and_vars: [(gradient, variable)] as ``compute_gradients`` returns (None
            gradients are skipped).
        learning_rate: for the SGD estimate of the update ratio (number or tensor).
        train_op: the op applying the gradients; gives the exact update ratio of every
            variable it assigns (the new value is read from the assign's input, so fetching
            the dict alone never updates anything).
    Returns:
        A fetchable dict: ``{"global_norm": t, "grad_norms": {name: t},
        "weight_norms": {name: t}, "update_ratios": {name: t}}`` (update ratios only when
        ``learning_rate`` or ``train_op`` is given).
    Example:
        >>> pairs = opt.compute_gradients(loss)
        >>> train_op = opt.apply_gradients(pairs)
        >>> health = gc.diagnostics.gradient_norms(pairs, train_op=train_op)
        >>> _, h = sess.run([train_op, health], feed)
        >>> print(gc.diagnostics.gradient_report(h))
    """
    pairs = [(g, v) for g, v in grads_and_vars if g is not None]
    if not pairs:
        raise GraphError("gradient_norms: every gradient is None")
    assigns = _assigns_under(train_op) if train_op is not None else {}
    out = {"global_norm": global_norm([g for g, _ in pairs]), "grad_norms": {},
           "weight_norms": {}}
    ratios = {}
    for g, v in pairs:
        name = v.node_name
        gn, wn = _norm(g), _norm(v)
        out["grad_norms"][name], out["weight_norms"][name] = gn, wn
        safe_wn = maximum(wn, 1e-12)
        if v in assigns:
            ratios[name] = _norm(assigns[v].inputs[1] - v) / safe_wn
        elif learning_rate is not None:
            lr = learning_rate if isinstance(learning_rate, Node) else float(learning_rate)
            ratios[name] = gn * lr / safe_wn
    if ratios:
        out["update_ratios"] = ratios
    return out


def layer_of(name):
    """The layer a variable belongs to: its name scope (``dense3/W`` -> ``dense3``)."""
    return name.rsplit("/", 1)[0] if "/" in name else name


class GradientReport:
    """Per-layer gradient health. ``vanishing`` and ``exploding`` list the layer names.

    Attributes:
        rows: [(layer, grad norm, update ratio or None, status)], in the variables' order.
        global_norm: the global gradient norm.
        thresholds: the thresholds used.
    """

    def __init__(self, rows, global_norm, thresholds):
        self.rows, self.global_norm, self.thresholds = rows, global_norm, thresholds

    @property
    def vanishing(self):
        return [r[0] for r in self.rows if r[3] == "vanishing"]

    @property
    def exploding(self):
        return [r[0] for r in self.rows if r[3] == "exploding"]

    @property
    def healthy(self):
        return not self.vanishing and not self.exploding

    def __str__(self):
        width = max([5] + [len(r[0]) for r in self.rows])
        lines = [f"gradient health: global norm {self.global_norm:.3e}; "
                 + ("healthy" if self.healthy else
                    f"{len(self.vanishing)} vanishing, {len(self.exploding)} exploding"),
                 f"  {'layer':<{width}}  {'grad norm':>10}  {'update/weight':>13}  status"]
        for layer, gn, ratio, status in self.rows:
            r = "-" if ratio is None else f"{ratio:.2e}"
            lines.append(f"  {layer:<{width}}  {gn:>10.3e}  {r:>13}  {status}")
        if not self.healthy:
            t = self.thresholds
            lines.append(f"  (vanishing: < {t['vanish_rel']:g} x the largest layer or "
                         f"< {t['vanish_abs']:g}; exploding: > {t['explode_abs']:g}, "
                         f"non-finite, or update/weight > {t['explode_ratio']:g})")
        return "\n".join(lines)

    __repr__ = __str__


def gradient_report(values, vanish_rel=1e-3, vanish_abs=1e-10, explode_abs=1e3,
                    explode_ratio=1.0):
    """Group fetched ``gradient_norms`` values by layer and flag vanishing or exploding ones.

    Args:
        values: the fetched dict of ``gradient_norms`` (NumPy values).
        vanish_rel, vanish_abs, explode_abs, explode_ratio: thresholds (module docstring).
    Returns:
        A printable ``GradientReport``.
    Example:
        >>> report = gc.diagnostics.gradient_report(sess.run(health, feed))
        >>> report.vanishing
        ['layer01', 'layer02']
    """
    layers = {}
    for name, gn in values["grad_norms"].items():
        entry = layers.setdefault(layer_of(name), {"sq": 0.0, "upd": 0.0, "w": 0.0,
                                                   "has_ratio": False})
        entry["sq"] += float(gn) ** 2
        ratio = values.get("update_ratios", {}).get(name)
        if ratio is not None:
            wn = float(values["weight_norms"][name])
            entry["upd"] += (float(ratio) * wn) ** 2
            entry["w"] += wn ** 2
            entry["has_ratio"] = True
    rows = []
    for layer, e in layers.items():
        gn = math.sqrt(e["sq"])
        ratio = math.sqrt(e["upd"]) / max(math.sqrt(e["w"]), 1e-12) if e["has_ratio"] else None
        # A layer whose weights are still ~0 (fresh biases) has no meaningful ratio.
        ratio_counts = ratio is not None and e["w"] > 1e-16
        exploding = not np.isfinite(gn) or gn > explode_abs or \
            (ratio_counts and ratio > explode_ratio)
        rows.append([layer, gn, ratio, "exploding" if exploding else "ok"])
    # Vanishing is relative to the largest layer that is not itself exploding.
    largest = max((r[1] for r in rows if r[3] == "ok"), default=0.0)
    for r in rows:
        if r[3] == "ok" and (r[1] < vanish_abs or r[1] < vanish_rel * largest):
            r[3] = "vanishing"
    rows = [tuple(r) for r in rows]
    thresholds = dict(vanish_rel=vanish_rel, vanish_abs=vanish_abs, explode_abs=explode_abs,
                      explode_ratio=explode_ratio)
    return GradientReport(rows, float(values["global_norm"]), thresholds)
