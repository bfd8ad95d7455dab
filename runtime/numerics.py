"""The one ``NumericsError`` message for a NaN or Inf found by a check, on every backend.

A check site describes, as plain data, the node whose value is checked: the NumPy backend
builds one from the node when its generated code stops; the LLVM backend writes one per
checking kernel into the step's layout (where the value lives, so the runtime can read it
after the step stopped), which also travels in saved steps. Both give ``numerics_error`` the
value, so both backends raise the same text.

This module imports only numpy and ``graphc.errors``: a saved step raises it without the
compiler.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from graphc.errors import NumericsError

__all__ = ["NumericsSite", "numerics_error", "HINT"]

HINT = ("look at this node's inputs: a log of 0, a division by 0, an overflowing exp, "
        "or a learning rate too large")


@dataclass
class NumericsSite:
    """A checked value: its node as the error names it and, in native steps, where it lives.

    Attributes:
        node: ``op 'name'``; op, name: the node's op and scoped name.
        type: its type as the IR prints it (``f32[3]``).
        loc: the user's line, formatted (``model.py:12    y = gc.log(x)``), or None.
        grad: a gradient node (the line is the forward computation it differentiates).
        message: the message of an explicit ``gc.check_numerics`` node, else None.
        entry: the index of the checking kernel in the layout's ``node_names`` (native).
        slot, offset, shape, dtype: the table slot, byte offset, shape and NumPy dtype name of
            the value (native: read after the step stopped, before anything overwrote it).
    """
    node: str
    op: str
    name: str
    type: str
    loc: str | None = None
    grad: bool = False
    message: str | None = None
    entry: int = -1
    slot: int = -1
    offset: int = 0
    shape: tuple = ()
    dtype: str = "float32"

    @classmethod
    def of(cls, node, message=None, **where):
        """The site of an IR node (read through its methods: no import of the IR here)."""
        loc = node.loc.format() if node.loc is not None else None
        return cls(node=node.describe(), op=node.op_name, name=node.node_name,
                   type=node.type_str(), loc=loc, grad=bool(node.is_grad), message=message,
                   **where)


class _Where:
    """A formatted user line where ``GraphcError`` expects a location."""

    def __init__(self, text):
        self.text = text

    def format(self):
        return self.text


def numerics_error(site, value=None, flat=None):
    """The NumericsError for ``site`` holding ``value`` (None: not known).

    Names the node (op and name), how many NaN and Inf it holds, the first one's index (and
    its flat index, as the native check reports it), the explicit check's message, and the
    user's line; a gradient node says that the line is the forward computation. ``flat``: the
    flat index the check found, said instead when ``value`` is all finite (its buffer was
    restored before it could be read).
    """
    details = []
    if value is not None and np.isfinite(value).all():
        value = None
        if flat is not None:
            details.append(f"NaN or Inf at flat index {flat} of {site.type}")
    if value is not None:
        a = np.asarray(value)
        bad = np.flatnonzero(~np.isfinite(a))
        first = ""
        if len(bad) and a.ndim:
            index = tuple(int(i) for i in np.unravel_index(bad[0], a.shape))
            first = f", the first at index {index} (flat index {int(bad[0])})"
        details.append(f"{int(np.isnan(a).sum())} NaN and {int(np.isinf(a).sum())} Inf among "
                       f"{a.size} values of {site.type}{first}")
    if site.message is not None:
        details.append(f"message: {site.message}")
    if site.grad:
        details.append("a gradient node: the line below is the forward computation it "
                       "differentiates")
    if site.op in ("placeholder", "variable"):
        what = f"{site.op} '{site.name}' holds NaN or Inf"
    elif site.message is not None:
        what = f"{site.node} found NaN or Inf"
    else:
        what = f"{site.node} produced NaN or Inf (the first node to do so)"
    loc = _Where(site.loc) if site.loc else None
    return NumericsError(f"check_numerics: {what}", details, loc, HINT)
