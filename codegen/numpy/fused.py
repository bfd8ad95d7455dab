"""A fused elementwise body -> a sequence of NumPy ufunc calls writing with ``out=``.

Each operation of the body's DAG becomes one ufunc call. Its destination is the node's output
buffer when it is the root, else a temporary: the output buffer itself once no later call reads
an input stored there (in place), an input buffer the plan says is dead after this node (the
same trick a hand-written step uses: ``g *= lr; W -= g``), or a scratch array the step
allocates once at load time (never per step). ``where`` has no ``out=`` in NumPy: for 4- and
8-byte dtypes it selects bits with a mask (``_select_bits``), else it is ``np.copyto`` calls.

The result is bit for bit what the unfused reference computes: the same ufuncs on the same
dtypes in the same order; only the storage differs.
"""
import math

import numpy as np

from ...ir import scalar as S
from .templates import reduce_lines


def literal(value):
    """Python source for a body constant (NaN and infinities spelled through numpy)."""
    if isinstance(value, float):
        if math.isnan(value):
            return "np.nan"
        if math.isinf(value):
            return "np.inf" if value > 0 else "-np.inf"
    return repr(value)


class Slot:
    """A buffer the sequence can write: a name, its shape and dtype."""

    __slots__ = ("name", "shape", "dtype")

    def __init__(self, name, shape, dtype):
        self.name, self.shape, self.dtype = name, tuple(shape), np.dtype(dtype)


class FusedRenderer:
    """Renders one fused node.

    Args:
        body: the ``ir.scalar.Expr``.
        args: one Slot per input (its array name, shape, dtype).
        out: the Slot receiving the result (the node's buffer).
        elem_shape: the shape the body is evaluated at.
        reduce: None or (kind, axes, keepdims) applied to the elementwise result.
        alias: indices of inputs stored in ``out`` (the in-place input), never written early.
        clobber: indices of inputs whose buffers are dead after this node (usable as temps).
        scratch: ``scratch(shape, dtype, busy) -> name``: a preallocated array not in ``busy``.
    """

    def __init__(self, body, args, out, elem_shape, reduce, alias, clobber, scratch):
        self.body, self.args, self.out = body, args, out
        self.elem_shape, self.reduce = tuple(elem_shape), reduce
        self.alias, self.clobber, self.scratch = set(alias), list(clobber), scratch
        self.lines = []
        self.ops = [e for e in body.walk() if e.op not in ("arg", "const")]
        self.shape = {}
        self.name = {}
        self.last_read = {}  # id(expr) -> index of the last op reading it
        self.arg_last = {}  # arg name -> index of the last op reading it
        for k, e in enumerate(self.ops):
            for a in e.args:
                self.last_read[id(a)] = k
                if a.op == "arg":
                    # by name: an input passed twice is one buffer
                    self.arg_last[args[a.value].name] = k

    # -- shapes and operands -------------------------------------------------------------------
    def _shape(self, e):
        if e.op == "arg":
            return self.args[e.value].shape
        if e.op == "const":
            return ()
        if id(e) not in self.shape:
            self.shape[id(e)] = tuple(np.broadcast_shapes(*[self._shape(a) for a in e.args]))
        return self.shape[id(e)]

    def _operand(self, e):
        if e.op == "arg":
            return self.args[e.value].name
        if e.op == "const":
            return literal(e.value)
        return self.name[id(e)]

    # -- destinations ------------------------------------------------------------------------
    def _free_slots(self, k):
        """Candidate temporaries at op ``k``: the output buffer, then dead inputs (lazily:
        the caller takes the first that fits, and a fused sum may have thousands)."""
        last, seen = self.arg_last, set()
        if self.reduce is None and not any(last.get(self.args[i].name, -1) > k
                                           for i in self.alias):
            seen.add(id(self.out))
            if self.out.name not in self.holding:
                yield self.out
        for i in self.clobber:
            s = self.args[i]
            if last.get(s.name, -1) <= k and id(s) not in seen:
                seen.add(id(s))
                if s.name not in self.holding:
                    yield s

    def _dest(self, k, e):
        shape, dtype = self._shape(e), np.dtype(e.dtype.np)
        for s in self._free_slots(k):
            if s.shape == shape and s.dtype == dtype:
                return s.name
        return self._scratch(shape, dtype)

    def _scratch(self, shape, dtype, also=()):
        return self.scratch(tuple(shape), np.dtype(dtype), set(self.holding) | set(also))

    # -- emission ----------------------------------------------------------------------------
    def render(self):
        """The lines computing the node (into ``out``)."""
        self.holding = {}  # buffer name -> id(expr) whose value it holds
        if not self.ops:
            self._finish(self._operand(self.body), self._shape(self.body))
            return self.lines
        root = self.ops[-1]
        for k, e in enumerate(self.ops):
            if e is root and self.reduce is None:
                dest = self.out.name
            else:
                if e.op != "where":
                    self._release(k)
                dest = self._dest(k, e)
            self._emit(k, e, dest)
            self._release(k)
            self.name[id(e)] = dest
            self.holding[dest] = id(e)
        if self.reduce is not None:
            self._finish(self.name[id(root)], self._shape(root))
        return self.lines

    def _release(self, k):
        for name, eid in list(self.holding.items()):
            if self.last_read.get(eid, -1) <= k:
                del self.holding[name]

    def _emit(self, k, e, dest):
        ops = [self._operand(a) for a in e.args]
        if e.op == "where":
            self._where(k, e, ops, dest)
        elif e.op == "cast":
            self.lines.append(f"np.copyto({dest}, {ops[0]}, casting='unsafe')")
        else:
            fn = S.PRIMS[e.op][1]
            self.lines.append(f"np.{fn}({', '.join(ops)}, out={dest})")

    def _where(self, k, e, ops, dest):
        dt = np.dtype(e.dtype.np)
        if dt.kind in "fiu" and dt.itemsize in (4, 8) and e.args[0].op != "const":
            self._select_bits(e, ops, dest, dt)
            return
        c, x, y = ops
        if dest == c:
            # The condition lives in the destination (bool branches): go through a temporary.
            tmp = self._scratch(self._shape(e), e.dtype.np, {dest})
            self.lines += [f"np.copyto({tmp}, {y})", f"np.copyto({tmp}, {x}, where={c})",
                           f"np.copyto({dest}, {tmp})"]
        elif dest == x:
            # dest already holds the true branch: overwrite where the condition is false.
            cond = e.args[0]
            reuse = cond.op not in ("arg", "const") and self.last_read.get(id(cond)) == k \
                and self.holding.get(c) == id(cond)
            mask = c if reuse else self._scratch(self._shape(cond), bool, {dest, c})
            self.lines.append(f"np.logical_not({c}, out={mask})")
            self.lines.append(f"np.copyto({dest}, {y}, where={mask})")
        elif dest == y:
            self.lines.append(f"np.copyto({dest}, {x}, where={c})")
        else:
            self.lines.append(f"np.copyto({dest}, {y})")
            self.lines.append(f"np.copyto({dest}, {x}, where={c})")

    def _select_bits(self, e, ops, dest, dt):
        """``where(c, x, y)`` as bit operations on unsigned views: mask = all ones where c
        (``0 - c`` in unsigned arithmetic), then ``x & mask`` (y is +0), ``y & ~mask`` (x is
        +0) or ``y ^ ((x ^ y) & mask)``. The chosen branch's bits are copied exactly as
        ``np.where`` copies them, at ufunc speed (``np.copyto(..., where=)`` is ~10x slower)."""
        c, x, y = ops
        cond, xe, ye = e.args
        udt = np.dtype(f"uint{8 * dt.itemsize}")
        u = f"np.{udt.name}"
        mask = self._scratch(self._shape(cond), udt, {dest, c, x, y})

        def bits(name, expr):
            if expr.op == "const":
                return f"{u}({int(np.array(expr.value, dt).view(udt))})"
            return f"{name}.view({u})"
        dv = f"{dest}.view({u})"
        if bits(y, ye) == f"{u}(0)":
            self.lines += [f"np.subtract(0, {c}, out={mask}, dtype={u})",
                           f"np.bitwise_and({bits(x, xe)}, {mask}, out={dv})"]
        elif bits(x, xe) == f"{u}(0)":
            self.lines += [f"np.subtract({c}, 1, out={mask}, dtype={u})",
                           f"np.bitwise_and({bits(y, ye)}, {mask}, out={dv})"]
        else:
            t = self._scratch(self._shape(e), udt, {dest, c, x, y, mask})
            self.lines += [f"np.subtract(0, {c}, out={mask}, dtype={u})",
                           f"np.bitwise_xor({bits(x, xe)}, {bits(y, ye)}, out={t})",
                           f"np.bitwise_and({t}, {mask}, out={t})",
                           f"np.bitwise_xor({bits(y, ye)}, {t}, out={dv})"]

    def _finish(self, src, shape):
        """Copy/fill a trivial body into ``out``, or apply the reduction epilogue."""
        if self.reduce is None:
            if src != self.out.name:
                self.lines.append(f"np.copyto({self.out.name}, {src}, casting='unsafe')")
            return
        kind, axes, keepdims = self.reduce
        if tuple(shape) != self.elem_shape:
            src = f"np.broadcast_to({src}, {self.elem_shape!r})"
        count = 1
        for ax in axes:
            count *= self.elem_shape[ax]
        self.lines += reduce_lines(kind, src, axes, keepdims, self.out.name,
                                   self.out.dtype.name, count)
