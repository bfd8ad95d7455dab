"""Program -> readable NumPy source: one Python function per step, one statement per node.

The emitted module imports only numpy. Elementwise nodes (and fused groups) render their scalar
formula as ufunc calls; other ops render from ``TEMPLATES`` (one line of NumPy each) or call the
op's reference kernel, whose source is copied into the module so that it stands alone. When the
program has a memory plan, results are written into planned arena views with ``out=``.

Module layout::

    import numpy as np
    <kernel functions>
    def make_step(consts, arena, seeds):
        <buffer views into the arena, constants, RNGs>
        def step(<feeds>, <variables>):
            ...
            return (<fetches>,), (<new variable values>,)
        return step
"""
import inspect
import types

import numpy as np

from ...ir import scalar as S
from ...ir.ops.nn import dense_xent_impl, sparse_xent_impl
from ...ir.ops.registry import index_check_of
from ...ir.rollback import snapshot_variables
from graphc.runtime.source_text import comment_text, identifier
from graphc.runtime.step_errors import IndexCheck
from .fused import literal
from .loop import loop_lines, output_index, row_index
from .templates import TEMPLATES, attr_literal, kernel_of, reduce_call

MAX_NESTING = 64  # calls nested in one generated expression (Python's parser allows 200)

# Run-time checks any step may need (indices read at run time). ``StepFault`` stops the step;
# the caller turns it into the graphc error the site describes (``runtime.step_errors``).
FAULT_PRELUDE = '''
class StepFault(Exception):
    """A run-time check failed: args are (kind, site index, detail...)."""


def _index_fault(idx, bound, k):
    """Stop the step at the first index outside [0, bound) (bound: an int, or one per entry
    of the last axis)."""
    bad = np.flatnonzero((idx < 0) | (idx >= np.asarray(bound))).item(0)
    raise StepFault("index", k, int(idx.reshape(-1)[bad]), bad)


def _restore(arrays, saved):
    for a, old in zip(arrays, saved):
        np.copyto(a, old)
'''


def node_note(n):
    """``op 'name' file.py:12``: the comment naming a node in generated code. Names and file
    names are the user's: ``comment_text`` keeps them from ending the comment."""
    where = f" {comment_text(n.loc.short)}" if n.loc is not None and n.loc.lineno else ""
    return f"{n.op_name} '{comment_text(n.node_name)}'{where}"


class Emitter:
    """Renders one Program. ``source`` is the module text, ``consts`` the arrays it needs."""

    def __init__(self, program):
        self.p = program
        self.names = {}
        self.consts = []
        self.kernels = {}
        self.seeds = []
        self.lines = []
        self.setup = []
        self.sites = []  # (kind, node, detail) of each run-time check, by StepFault index
        self.snapshot = []  # names of the variables the step restores when it fails
        self.checked = set()  # (index node, bound) checked so far
        self.hoisted = []  # statements of deep subexpressions, written before their node's

    def _site(self, kind, node, detail=""):
        self.sites.append((kind, node, detail))
        return len(self.sites) - 1

    def index_lines(self, n):
        """The run-time check of ``n``'s index input, before ``n`` reads it (or nothing)."""
        check = index_check_of(n)
        if check is None:
            return []
        i, what, bound, label = check
        x = n.inputs[i]
        if (x, bound) in self.checked:  # values never change: the label's grad reads the
            return []                   # labels its loss checked
        self.checked.add((x, bound))
        if not x.size:
            return []
        site = self._site("index", n, IndexCheck(label, what, x.shape, bound, n.loc))
        # Seen as unsigned, a negative index is huge: one compare per index finds both.
        seen = f"{self.name(x)}.view(np.uint{8 * x.dtype.itemsize})"
        if isinstance(bound, int):
            test = f"{seen}.max() >= {bound}"
        else:
            bounds = self.const(np.asarray(bound, f"u{x.dtype.itemsize}"))
            test = f"({seen} >= {bounds}).any()"
        return [f"if {test}:", f"    _index_fault({self.name(x)}, {bound!r}, {site})"]

    # -- names -------------------------------------------------------------------------------
    def name(self, node):
        return self.names[node]

    def _assign_names(self):
        used = set()
        for i, n in enumerate(self.p.feeds + self.p.variables):
            base = identifier(n.node_name)
            base = ("f_" if n.op_name == "placeholder" else "v_") + base
            name, k = base, 1
            while name in used:
                name, k = f"{base}_{k}", k + 1
            used.add(name)
            self.names[n] = name
        counter = 0
        for n in self.p.nodes:
            if n not in self.names:
                self.names[n] = f"t{counter}"
                counter += 1

    # -- rendering -----------------------------------------------------------------------------
    def render_expr(self, body, args):
        """Nested ufunc calls for a scalar Expr; ``args`` are the operand names.

        Python's parser refuses more than 200 nested parentheses, and a fused sum of an
        unrolled loop nests as deep as it is long: a subexpression nested ``MAX_NESTING``
        deep becomes a statement of its own (``self.hoisted``, written before the node's).
        """
        memo, depth = {}, {}
        for e in body.walk():
            if e.op == "arg":
                memo[id(e)] = args[e.value]
            elif e.op == "const":
                memo[id(e)] = literal(e.value)
            elif e.op == "cast":
                memo[id(e)] = f"np.asarray({memo[id(e.args[0])]}).astype(np.{e.dtype.np.name})"
            else:
                fn = S.PRIMS[e.op][1]
                memo[id(e)] = f"np.{fn}(" + ", ".join(memo[id(a)] for a in e.args) + ")"
            depth[id(e)] = 1 + max((depth[id(a)] for a in e.args), default=0)
            if depth[id(e)] >= MAX_NESTING and e is not body:
                name = f"h{len(self.hoisted)}_"
                self.hoisted.append(f"{name} = {memo[id(e)]}")
                memo[id(e)], depth[id(e)] = name, 0
        return memo[id(body)]

    def kernel(self, fn):
        """Copy ``fn`` (and the module-level functions it calls) into the generated module."""
        if fn.__name__ not in self.kernels:
            self.kernels[fn.__name__] = inspect.getsource(fn)
            mod = inspect.getmodule(fn)
            for name in fn.__code__.co_names:
                dep = getattr(mod, name, None)
                if isinstance(dep, types.FunctionType) and dep.__module__ == fn.__module__:
                    self.kernel(dep)
        return fn.__name__

    def const(self, value):
        self.consts.append(np.require(value, requirements="C"))  # keeps 0-d as 0-d
        return f"consts[{len(self.consts) - 1}]"

    def expression(self, n):
        """The right-hand side computing node ``n`` (None for value-less nodes)."""
        op = n.op_name
        args = [self.name(i) for i in n.inputs]
        if op == "group":
            return None
        if op == "const":
            v = n.attrs["value"]
            if v.ndim == 0:
                return f"np.{v.dtype.name}({v.item()!r})"
            return self.const(v)
        if n.opdef.compile_time:  # a shape query; shapes are concrete now: a constant
            like = np.broadcast_to(np.zeros((), n.inputs[0].dtype.np), n.inputs[0].shape)
            return self.const(np.asarray(n.opdef.impl(like, **n.attrs)).astype(n.dtype.np))
        if n.opdef.random:
            self.seeds.append(n.attrs.get("seed"))
            k = self.kernel(n.opdef.impl)
            return (f"{k}(rngs[{len(self.seeds) - 1}], {n.shape!r}, "
                    + ", ".join(f"{a}={attr_literal(v)}" for a, v in sorted(n.attrs.items())
                                if a not in ("shape",)) + ")")
        if op == "assign":
            return f"np.array({args[1]})"
        if op == "loop_output":
            return f"{args[0]}[{output_index(n)}]{row_index(n)}"
        if op == "kept_loss":  # unplanned, every value is its own array: compute the loss
            pair = n.inputs[0]
            k = self.kernel(sparse_xent_impl if pair.op_name.startswith("sparse")
                            else dense_xent_impl)
            return f"{k}({', '.join(self.name(i) for i in pair.inputs)})"
        if n.opdef.is_elementwise or op == "fused":
            body = n.attrs["body"] if op == "fused" else \
                n.opdef.scalar_body([i.dtype for i in n.inputs], n.attrs)
            shape = tuple(n.attrs["shape"]) if op == "fused" else n.shape
            text = self.render_expr(body, args)
            if not any(e.op == "arg" for e in body.walk()) or \
                    tuple(np.broadcast_shapes(*[i.shape for i in n.inputs])) != shape:
                text = f"np.broadcast_to({text}, {shape!r}).astype(np.{n.dtype.np.name})"
            red = n.attrs.get("reduce") if op == "fused" else None
            if red is not None:
                text = reduce_call(red[0], text, red[1], red[2], shape, n.dtype.np)
            return text
        tmpl = TEMPLATES.get(op)
        if tmpl is not None:
            return tmpl(n, args)
        k = self.kernel(kernel_of(n))
        extra = [f"{a}={attr_literal(v)}" for a, v in sorted(n.attrs.items())]
        return f"{k}({', '.join(args + extra)})"  # a kernel may take no inputs

    def nested(self, program):
        """An emitter of a loop body ``program`` (rendered unplanned, ``numpy.loop``)."""
        return Emitter(program)

    def body_lines(self):
        """The statements of the step's body, one per node (loops: several)."""
        self._assign_names()
        body = []
        for n in self.p.nodes:
            if n.opdef.external:
                continue
            if n.op_name == "loop":
                body += [f"# {node_note(n)}"] + loop_lines(self, n)
                continue
            rhs = self.expression(n)
            if rhs is None:
                continue
            note = f"  # {node_note(n)}"
            body += self.index_lines(n) + self.hoisted
            self.hoisted = []
            body.append(f"{self.name(n)} = {rhs}{note}")
        return body

    def emit(self):
        p = self.p
        body = self.body_lines()
        fetches = ", ".join("None" if f is None or f.dtype is None else self.name(f)
                            for f in p.fetches)
        snapshot_variables(p, [])  # values are new arrays: a failure leaves variables as is
        prelude = FAULT_PRELUDE.strip("\n").split("\n") + [""] if self.sites else []
        return self.module(body, fetches, "# generated by graphc: one function per compiled "
                           "step", setup=self.setup + [""], prelude=prelude)

    def module(self, body, fetches, title, setup=(), prelude=()):
        """The module text around the step's ``body`` lines (``fetches``: the return text).

        With ``self.snapshot`` (variable names), the step copies those variables first and
        copies them back if the body raises (``ir.rollback``)."""
        p = self.p
        updates = ", ".join(self.name(v) for _, v in p.updates)
        params = ", ".join(self.name(n) for n in p.feeds + p.variables)
        if self.snapshot and not prelude:
            prelude = FAULT_PRELUDE.strip("\n").split("\n") + [""]
        out = [title, "import numpy as np", ""] + list(prelude)
        for src in self.kernels.values():
            out += [src.rstrip(), ""]
        out += ["", "def make_step(consts, arena=None, seeds=()):",
                "    rngs = [np.random.default_rng(s) for s in seeds]"]
        out += ["    " + line if line else "" for line in setup]
        out += [f"    def {p.name}({params}):"]
        inner = ["with np.errstate(all='ignore'):"]
        inner += ["    " + line for line in body] or ["    pass"]
        if self.snapshot:  # variables written before the step's last check (ir.rollback)
            names = "".join(f"{v}, " for v in self.snapshot)
            inner = ([f"_saved = [a.copy() for a in ({names})]", "try:"]
                     + ["    " + line for line in inner]
                     + ["except BaseException:", f"    _restore(({names}), _saved)",
                        "    raise"])
        out += ["        " + line for line in inner]
        out += [f"        return ({fetches}{',' if fetches else ''}), "
                f"({updates}{',' if updates else ''})", "",
                f"    return {p.name}", ""]
        return "\n".join(out)
