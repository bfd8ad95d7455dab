"""The optimized NumPy backend: the planned Program rendered into one arena, no per-step allocation.

Every value the plan stores in the arena is a view made once when the step is loaded
(``b3 = arena[0:131072].view(np.float32).reshape((128, 256))``); statements write into those
views with ``out=`` (fused groups through ``numpy.fused``, matmul, reductions, the softmax
kernels) or, for kernels NumPy cannot write in place, ``np.copyto`` their result. In-place
nodes reuse their input's name, so ``W -= lr * g`` really updates the variable's array.
Fetched values are copied on return (the arena is reused by the next call).

Debugging checks (``checks``):
- "numerics": after every node producing floats (and for every feed and variable at entry),
  raise ``StepFault("numerics", k)`` at the first NaN or Inf; ``sites[k]`` names the node.
- "writes": before each node, snapshot every live buffer the node must not write (all but its
  output, the input it overwrites in place and the dead inputs it uses as scratch), and raise
  ``StepFault("writes", k, name)`` if one changed: an undeclared write.
"""
import numpy as np

from ...ir.rollback import planned_writers, snapshot_variables
from .emitter import FAULT_PRELUDE, Emitter, node_note
from .fused import FusedRenderer, Slot, literal
from .loop import loop_lines, output_index, row_index
from .templates import OUT_TEMPLATES, attr_literal, kernel_of

_PRELUDE = FAULT_PRELUDE + '''

def _finite(a, k):
    if not np.isfinite(a).all():
        raise StepFault("numerics", k, np.array(a))  # a copy: restores may follow


def _snap(*arrays):
    return [a.tobytes() for a in arrays]


def _same(before, arrays, names, k):
    for old, a, name in zip(before, arrays, names):
        if a.tobytes() != old:
            raise StepFault("writes", k, name)
'''


class PlannedEmitter(Emitter):
    """Renders a planned Program (see the module docstring). ``sites`` describes checks."""

    def __init__(self, program, checks=()):
        super().__init__(program)
        self.plan = program.plan
        self.checks = set(checks)
        self.scratch_pool = []  # (name, shape, dtype)
        self.pos = {id(n): i for i, n in enumerate(program.nodes)}
        self.static = set()  # names bound once in make_step
        self.reserved = set()  # scratch names kept for one kernel's later partner
        self.shared = {}  # what a kernel leaves for a later one (see numpy_templates)
        self.const_names = {}

    # -- names and storage -------------------------------------------------------------------
    def _assign_names(self):
        super()._assign_names()
        plan, names = self.plan, self.names
        for k, n in enumerate(self.p.nodes):
            if n in plan.offsets:
                names[n] = f"b{k}"
                self.static.add(names[n])
        for n in self.p.nodes:  # aliases resolve in schedule order (inputs first)
            target = plan.inplace.get(n)
            if n.op_name == "check_numerics":
                names[n] = names[n.inputs[0]]  # the same array, checked
            elif target is not None:
                names[n] = names[target]
            elif n.op_name == "const":
                names[n] = self._const_name(n)

    def _const_name(self, n):
        v = n.attrs["value"]
        if v.ndim == 0:
            return f"np.{v.dtype.name}({literal(v.item())})"
        name = f"c{len(self.consts)}"
        self.setup.append(f"{name} = {self.const(v)}")
        self.static.add(name)
        return name

    def scratch(self, shape, dtype, busy=()):
        """A preallocated array of ``shape``/``dtype`` whose name is not in ``busy``."""
        dtype = np.dtype(dtype)
        for name, sh, dt in self.scratch_pool:
            if sh == tuple(shape) and dt == dtype and name not in busy and \
                    name not in self.reserved:
                return name
        name = f"s{len(self.scratch_pool)}"
        self.scratch_pool.append((name, tuple(shape), dtype))
        return name

    def reserve(self, shape, dtype):
        """A preallocated array no other kernel will use (it carries a value to a later one)."""
        name = f"s{len(self.scratch_pool)}"
        self.scratch_pool.append((name, tuple(shape), np.dtype(dtype)))
        self.reserved.add(name)
        return name

    def const_array(self, value):
        """The name of a constant array bound once at load time (equal values share it)."""
        value = np.asarray(value)
        key = (value.dtype.str, value.shape, value.tobytes())
        if key not in self.const_names:
            name = f"c{len(self.consts)}"
            self.setup.append(f"{name} = {self.const(value)}")
            self.const_names[key] = name
        return self.const_names[key]

    def has_partner(self, n, op):
        """Whether a node ``op`` with ``n``'s inputs is scheduled after ``n``."""
        k = self.pos[id(n)]
        return any(m.op_name == op and len(m.inputs) == len(n.inputs) and
                   all(a is b for a, b in zip(m.inputs, n.inputs))
                   for m in self.p.nodes[k + 1:])

    def scratch_bytes(self):
        return sum(int(np.prod(sh, dtype=np.int64)) * dt.itemsize
                   for _, sh, dt in self.scratch_pool)

    def _arena_lines(self):
        lines = []
        for n, off in self.plan.offsets.items():
            nb = self.plan.nbytes[n]
            lines.append(f"{self.names[n]} = arena[{off}:{off + nb}]"
                         f".view(np.{n.dtype.np.name}).reshape({tuple(n.shape)!r})")
        for name, sh, dt in self.scratch_pool:
            lines.append(f"{name} = np.empty({sh!r}, np.{dt.name})")
        return lines

    # -- statements --------------------------------------------------------------------------
    def _clobber_and_alias(self, n):
        """Input indices stored in n's output (alias) and inputs dead after n (scratch)."""
        plan, k = self.plan, self.pos[id(n)]
        own = plan.root(n)
        alias, clobber = [], []
        roots = [plan.root(x) for x in n.inputs]
        names_of = {}  # id(root buffer) -> the names the inputs stored in it go by
        for x, r in zip(n.inputs, roots):
            names_of.setdefault(id(r), set()).add(self.names[x])
        for i, (x, r) in enumerate(zip(n.inputs, roots)):
            if r is own:
                alias.append(i)
            elif r in plan.offsets and plan.intervals[r][1] == k and \
                    len(names_of[id(r)]) == 1:  # every input in that buffer is x itself
                clobber.append(i)
        return alias, clobber

    def _fused_lines(self, n):
        alias, clobber = self._clobber_and_alias(n)
        args = [Slot(self.names[x], x.shape, x.dtype.np) for x in n.inputs]
        out = Slot(self.names[n], n.shape, n.dtype.np)
        if n.op_name == "fused":
            body, shape, red = n.attrs["body"], n.attrs["shape"], n.attrs.get("reduce")
        else:
            body = n.opdef.scalar_body([x.dtype for x in n.inputs], n.attrs)
            shape, red = n.shape, None
        r = FusedRenderer(body, args, out, shape, red, alias, clobber, self.scratch)
        self.clobbered = [args[i].name for i in clobber]
        return r.render()

    def statement(self, n):
        """Lines computing ``n`` into its storage (empty for leaves and value-less nodes)."""
        op, plan = n.op_name, self.plan
        self.clobbered = []
        if op == "loop":
            return loop_lines(self, n)
        if op == "loop_output":
            return [f"np.copyto({self.names[n]}, {self.names[n.inputs[0]]}"
                    f"[{output_index(n)}]{row_index(n)})"]
        if n.opdef.leaf or n.dtype is None:
            return []
        if op == "check_numerics":
            site = self._site("check", n, n.attrs.get("message", ""))
            return [f"_finite({self.names[n]}, {site})"]
        if n in plan.views:
            line = f"{self.names[n]} = {self.names[plan.views[n]]}.reshape({tuple(n.shape)!r})"
            if self.names[plan.views[n]] in self.static:
                self.setup.append(line)
                self.static.add(self.names[n])
                return []
            return [line]
        if op == "assign":
            if plan.update_in_place.get(n):
                return []
            return [f"np.copyto({self.names[n.inputs[0]]}, {self.names[n.inputs[1]]})"]
        if op == "fused" or n.opdef.is_elementwise:
            return self._fused_lines(n)
        args = [self.names[x] for x in n.inputs]
        out = self.names[n]
        tmpl = OUT_TEMPLATES.get(op)
        if tmpl is not None:
            return tmpl(n, args, out, self)
        if n.opdef.random:
            rhs = self.expression(n)
        else:
            k = self.kernel(kernel_of(n))
            extra = [f"{a}={attr_literal(v)}" for a, v in sorted(n.attrs.items())]
            rhs = f"{k}({', '.join(args + extra)})"  # a kernel may take no inputs
        return [f"np.copyto({out}, {rhs}, casting='unsafe')"]

    # -- checks ----------------------------------------------------------------------------
    def _live_names(self, k, n, written):
        """Buffers holding values read after node k that node k must not write."""
        plan = self.plan
        names = []
        for m in self.p.feeds + self.p.variables:
            names.append(self.names[m])
        for j, m in enumerate(self.p.nodes[:k]):
            if m in plan.offsets and plan.intervals[m][1] >= k:
                names.append(self.names[m])
        names += [self.names[x] for x in n.inputs if x.dtype is not None
                  and not (x.op_name == "const" and x.attrs["value"].ndim == 0)]
        # A view (``t7 = b7.reshape(...)``) and its base are one buffer: compare roots.
        owner = {}
        for m in self.p.feeds + self.p.variables + self.p.nodes:
            owner.setdefault(self.names.get(m), m)
        written_roots = {id(plan.root(owner[w])) for w in written if w in owner}
        out = []
        for name in names:
            if name in written or name in out or name.startswith("np."):
                continue
            if name in owner and id(plan.root(owner[name])) in written_roots:
                continue
            out.append(name)
        return out

    def _guard(self, k, n, lines):
        if "writes" not in self.checks or not lines:
            return lines
        written = {self.names.get(n)} | set(self.clobbered)
        if n.op_name == "assign" or n in self.plan.inplace:
            written.add(self.names[self.plan.root(n)] if self.plan.root(n) in self.names
                        else self.names[n])
        guard = self._live_names(k, n, written)
        if not guard:
            return lines
        site = self._site("writes", n)
        arrays = ", ".join(guard)
        names = ", ".join(repr(g) for g in guard)
        return ([f"_before = _snap({arrays},)"] + lines +
                [f"_same(_before, ({arrays},), ({names},), {site})"])

    def _numerics(self, n, lines):
        if "numerics" not in self.checks or n.dtype is None or not n.dtype.is_floating:
            return lines
        if n.op_name == "const" or not lines and not n.opdef.external:
            return lines
        return lines + [f"_finite({self.names[n]}, {self._site('numerics', n)})"]

    # -- module -----------------------------------------------------------------------------
    def emit(self):
        self._assign_names()
        p = self.p
        body = []
        for n in p.feeds + p.variables:
            body += self._numerics(n, [])
        for k, n in enumerate(p.nodes):
            lines = self.statement(n)
            if lines:
                lines = self.index_lines(n) + lines
            lines = self._numerics(n, self._guard(k, n, lines))
            if lines:
                note = f"# {node_note(n)}"
                body += [note] + lines
        return self._module(body)

    def _fetch_expr(self, f):
        if f is None or f.dtype is None:
            return "None"
        kind = self.plan.storage(f)[0]
        name = self.names[f]
        return name if kind in ("feed", "const") else f"np.array({name})"

    def _module(self, body):
        snap = snapshot_variables(self.p, planned_writers(self.p), self.checks)
        self.snapshot = [self.names[v] for v in snap]
        fetches = ", ".join(self._fetch_expr(f) for f in self.p.fetches)
        prelude = _PRELUDE.strip("\n").split("\n") + [""] if self.checks or self.sites else []
        setup = self._arena_lines() + self.setup + [""]
        return self.module(body, fetches, "# generated by graphc: one function per compiled "
                           "step (memory-planned)", setup, prelude)
