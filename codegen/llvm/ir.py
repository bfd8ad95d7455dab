"""Textual LLVM IR building blocks: types, exact constants, functions with structured loops.

The LLVM backend writes IR as text (fast to produce, easy to dump and diff) through
``Function``: it hands out fresh SSA names, tracks the current basic block, and builds
counted loops whose carried values (reduction accumulators) are phi nodes filled in when the
loop closes::

    fn = Function("k", [("ptr", "%x", "noalias"), ("ptr", "%out", "noalias")])
    with fn.loop(1024) as lp:
        p = fn.gep("float", "%x", lp.i)
        ...
    fn.ret()

``Module`` collects functions (deduplicated by body: identical kernels are emitted once) and
the declarations of the intrinsics they call.
"""
import hashlib
import re
import struct

import numpy as np

# Kernels are separate functions: compile time stays linear in their number. (LLVM keeps
# 256-bit vectors on AVX-512 hosts by default; 512-bit ones were measured slower here: the
# core's switch to wide vectors stalls for microseconds at the start of every small step.)
KERNEL_ATTRS = "noinline nounwind"
# ... except in loops computing a transcendental (``llvm.math``): compute-bound, they gain from
# twice the lanes (W3's tanh kernels: 270k -> 205k cycles; W2's step, tanh too, no slower).
# Where vectors are 256 bits at most the attribute changes nothing.
MATH_KERNEL_ATTRS = KERNEL_ATTRS + ' "prefer-vector-width"="512"'
# ... and kernels written as vector code already (register tiles, K loops as wanted) ask to
# skip O2's loop work, which they gain nothing from (``runtime.llvm_compile.PIPELINES``;
# honoured where the module is split in parts: ``runtime.module_parts``).
VECTOR_CODE = ' "graphc-pipeline"="vector"'

_MEM = {"float32": "float", "float64": "double", "int8": "i8", "int16": "i16",
        "int32": "i32", "int64": "i64", "uint8": "i8", "bool": "i8"}


def mem_type(dtype):
    """The LLVM type of one element in memory (bool is a byte, as in NumPy)."""
    return _MEM[dtype.name]


def val_type(dtype):
    """The LLVM type of one element in registers (bool is i1)."""
    return "i1" if dtype.is_bool else _MEM[dtype.name]


def float_literal(value, dtype):
    """An exact LLVM literal for a float: the IEEE double bits in hex, which LLVM requires
    to be representable in ``float`` for f32 (so the value is rounded to f32 first)."""
    v = float(np.float32(value)) if dtype.name == "float32" else float(value)
    return "0x%016X" % struct.unpack("<Q", struct.pack("<d", v))[0]


def literal(value, dtype):
    """An LLVM literal of ``value`` in ``dtype``'s register type."""
    if dtype.is_floating:
        return float_literal(value, dtype)
    if dtype.is_bool:
        return "true" if value else "false"
    if dtype.name == "uint8":
        return str(int(value) & 0xFF)
    return str(int(value))


def _align(ty):
    """Vectors are only element-aligned in our buffers (LLVM would assume their ABI size)."""
    if not ty.startswith("<"):
        return ""
    elem = ty.split(" x ")[1].rstrip(">")
    return f", align {_ELEM_BYTES.get(elem, 1)}"


_ELEM_BYTES = {"float": 4, "double": 8, "i64": 8, "i32": 4, "i16": 2, "i8": 1, "i1": 1}


def byte_size(dtype):
    return dtype.itemsize


class Loop:
    """A counted loop under construction; ``i`` is its i64 index (0 .. count-1)."""

    def __init__(self, fn, i, head_at, latch):
        self.fn, self.i, self._head_at, self._latch = fn, i, head_at, latch
        self._carried = []  # [phi name, type, init, next value]

    def carry(self, ty, init):
        """A loop-carried value starting at ``init``; set its next value with ``update``."""
        name = self.fn.fresh("acc")
        self._carried.append([name, ty, init, None])
        return name

    def update(self, phi, value):
        for c in self._carried:
            if c[0] == phi:
                c[3] = value
                return
        raise KeyError(phi)


class Function:
    """One LLVM function being written (see the module docstring).

    Args:
        name: the symbol, without ``@``.
        params: list of (type, "%name", attributes string).
        linkage: "internal" for kernels, "" for the exported entry point.
        attrs: function attributes.
    """

    def __init__(self, name, params, linkage="internal", attrs=KERNEL_ATTRS,
                 ret_type="void"):
        self.name, self.params, self.linkage, self.attrs = name, params, linkage, attrs
        self.ret_type = ret_type
        self.lines = []
        self.cur = "entry"
        self._n = 0
        self.uses = set()  # intrinsic names called (for declarations)
        # A kernel whose outer loop may run in chunks on several threads (``loop(split=)``):
        # (extent, work); ``parallel`` (set by the caller) renders it over [%split.lo,
        # %split.hi), two more parameters, else over [0, extent) as any loop.
        self.split = None
        self.parallel = False
        self.partials = {}  # parameter -> bytes: a sum over the split loop (``codegen.llvm.parallel``)

    # -- names and raw instructions -------------------------------------------------------
    def fresh(self, hint="t"):
        """A new SSA name; the dot keeps it apart from parameters such as ``%p0``."""
        self._n += 1
        return f"%{hint}.{self._n}"

    def label(self, hint="b"):
        self._n += 1
        return f"{hint}.{self._n}"

    def __call__(self, text, hint="t"):
        """Emit ``%name = text``; returns the name."""
        name = self.fresh(hint)
        self.lines.append(f"  {name} = {text}")
        return name

    def emit(self, text):
        self.lines.append(f"  {text}")

    def block(self, label):
        self.lines.append(f"{label}:")
        self.cur = label

    def br(self, label):
        self.emit(f"br label %{label}")

    def ret(self, value=None):
        self.emit("ret void" if value is None else f"ret {self.ret_type} {value}")

    def symbol(self, name):
        """The function ``@name`` as a callee or argument (the exported step loads it from
        an array of addresses instead: ``Lowering.step_function``)."""
        return f"@{name}"

    # -- common instructions ----------------------------------------------------------------
    def gep(self, elem, base, index):
        """``&base[index]`` for an i64 (or literal) index."""
        if index == "0" or index == 0:
            return base
        return self(f"getelementptr inbounds {elem}, ptr {base}, i64 {index}", "p")

    def load(self, ty, ptr):
        return self(f"load {ty}, ptr {ptr}{_align(ty)}", "v")

    def store(self, ty, value, ptr):
        self.emit(f"store {ty} {value}, ptr {ptr}{_align(ty)}")

    def call(self, ret, fname, args, hint="c"):
        """Call ``@fname`` with [(type, value)]; intrinsics are declared automatically."""
        if fname.startswith("llvm."):
            self.uses.add((fname, ret, tuple(t for t, _ in args)))
        text = f"call {ret} @{fname}(" + ", ".join(f"{t} {v}" for t, v in args) + ")"
        if ret == "void":
            self.emit(text)
            return None
        return self(text, hint)

    def add(self, a, b):
        """i64 ``a + b`` folding literal zeros (index arithmetic)."""
        if a in ("0", 0):
            return str(b)
        if b in ("0", 0):
            return str(a)
        return self(f"add nsw i64 {a}, {b}", "o")

    def mul(self, a, b):
        """i64 ``a * b`` folding literal ones and zeros (index arithmetic)."""
        if a in ("0", 0) or b in ("0", 0):
            return "0"
        if a in ("1", 1):
            return str(b)
        if b in ("1", 1):
            return str(a)
        return self(f"mul nsw i64 {a}, {b}", "o")

    # -- loops --------------------------------------------------------------------------------
    def loop(self, count, hint="i", split=0):
        """Context manager: a loop running its body ``count`` times (an int or i64 value).

        ``split``: the kernel's whole work (about one unit per multiply-add or element) when
        iterations of this loop are independent and it holds everything the kernel does:
        the backend may then run ranges of it on several threads (``codegen.llvm.parallel``).
        The first such loop of a function counts; others are plain loops.
        """
        if split and self.split is None and isinstance(count, int) and count > 1:
            self.split = (count, int(split))
            return _LoopContext(self, "%split.hi", hint, start="%split.lo")
        return _LoopContext(self, count, hint)

    def counted(self, count, hint="i"):
        """Context manager: a loop running its body ``count`` times (a literal int; 0 makes
        a plain ``loop``), tested at the bottom (``i + 1 == count``): the form LLVM's O2 gives a loop (rotated,
        the exit test an equality), so that code optimized without O2's loop passes (the
        ``vector`` pipeline: ``VECTOR_CODE``) counts its index the same way."""
        if not isinstance(count, int) or count < 0:
            raise ValueError(f"a bottom-tested loop needs a literal count, got {count!r}")
        return _BottomTestedLoop(self, count, hint) if count else _LoopContext(self, 0, hint)

    def if_then(self, cond):
        """Context manager: the body runs only when the i1 ``cond`` holds."""
        return _IfContext(self, cond)

    def _rendered(self):
        """(params, lines) as emitted: a split loop over its range parameters, or whole."""
        if self.split is None:
            return self.params, self.lines
        if self.parallel:
            return self.params + [("i64", "%split.lo", ""), ("i64", "%split.hi", "")], \
                self.lines
        extent = str(self.split[0])
        return self.params, [line.replace("%split.lo", "0").replace("%split.hi", extent)
                             if "%split." in line else line for line in self.lines]

    def text(self):
        params, lines = self._rendered()
        params = ", ".join(f"{t} {a + ' ' if a else ''}{n}" for t, n, a in params)
        link = self.linkage + " " if self.linkage else ""
        head = f"define {link}{self.ret_type} @{self.name}({params})"
        return "\n".join([f"{head} {self.attrs} {{", "entry:"] + lines + ["}"])

    def body_key(self):
        """A digest of ``body_text`` (kept: a kernel asked for again is not rendered again;
        its body is complete when it is added, only ``parallel`` may differ)."""
        cached = getattr(self, "_key", None)
        if cached is None or cached[0] != self.parallel:
            cached = self._key = (self.parallel,
                                  hashlib.sha1(self.body_text().encode()).hexdigest())
        return cached[1]

    def body_text(self):
        """The body alone with a fixed name: the key that deduplicates identical kernels."""
        params, lines = self._rendered()
        params = ", ".join(f"{t} {a}" for t, _, a in params)
        return f"({params}) {self.attrs}\n" + "\n".join(lines)


class _LoopContext:
    def __init__(self, fn, count, hint, start="0"):
        self.fn, self.count, self.hint, self.start = fn, count, hint, start

    def __enter__(self):
        fn = self.fn
        head, body = fn.label("head"), fn.label("body")
        self.latch, self.exit = fn.label("latch"), fn.label("exit")
        pre = fn.cur
        fn.br(head)
        fn.block(head)
        i = fn.fresh(self.hint)
        self.inext = fn.fresh(self.hint + "n")
        fn.lines.append(f"  {i} = phi i64 [{self.start}, %{pre}], [{self.inext}, %{self.latch}]")
        self.pre, self.head = pre, head
        self.loop = Loop(fn, i, len(fn.lines), self.latch)
        cond = fn(f"icmp slt i64 {i}, {self.count}", "c")
        fn.emit(f"br i1 {cond}, label %{body}, label %{self.exit}")
        fn.block(body)
        return self.loop

    def __exit__(self, *exc):
        if exc[0] is not None:
            return False
        fn, lp = self.fn, self.loop
        fn.br(self.latch)
        fn.block(self.latch)
        fn.lines.append(f"  {self.inext} = add nuw nsw i64 {lp.i}, 1")
        fn.br(self.head)
        fn.block(self.exit)
        phis = []
        for name, ty, init, nxt in lp._carried:
            if nxt is None:
                raise ValueError(f"loop-carried {name} never updated")
            phis.append(f"  {name} = phi {ty} [{init}, %{self.pre}], [{nxt}, %{self.latch}]")
        fn.lines[lp._head_at:lp._head_at] = phis
        return False


class _BottomTestedLoop:
    def __init__(self, fn, count, hint):
        self.fn, self.count, self.hint = fn, count, hint

    def __enter__(self):
        fn = self.fn
        body = fn.label("body")
        self.exit = fn.label("exit")
        self.pre = fn.cur
        fn.br(body)
        fn.block(body)
        i = fn.fresh(self.hint)
        self.inext = fn.fresh(self.hint + "n")
        self.body = body
        fn.lines.append(f"  {i} = phi i64 [0, %{self.pre}], [{self.inext}, %{{latch}}]")
        self.loop = Loop(fn, i, len(fn.lines), None)
        return self.loop

    def __exit__(self, *exc):
        if exc[0] is not None:
            return False
        fn, lp = self.fn, self.loop
        latch = fn.cur  # (the body's last block: the back edge leaves from it)
        fn.lines[lp._head_at - 1] = fn.lines[lp._head_at - 1].replace("{latch}", latch)
        # A carried value's name means its value after the loop (the last update, through a
        # phi of the exit block); inside the body it is renamed to the header's phi.
        inner = {name: fn.fresh("acc") for name, _, _, _ in lp._carried}
        if inner:
            names = re.compile("|".join(re.escape(n) for n in inner) + r"(?![\w.])")
            fn.lines[lp._head_at:] = [names.sub(lambda m: inner[m.group(0)], line)
                                      for line in fn.lines[lp._head_at:]]
        fn.lines.append(f"  {self.inext} = add nuw nsw i64 {lp.i}, 1")
        done = fn(f"icmp eq i64 {self.inext}, {self.count}", "c")
        fn.emit(f"br i1 {done}, label %{self.exit}, label %{self.body}")
        fn.block(self.exit)
        phis = []
        for name, ty, init, nxt in lp._carried:
            if nxt is None:
                raise ValueError(f"loop-carried {name} never updated")
            nxt = inner.get(nxt, nxt)
            phis.append(f"  {inner[name]} = phi {ty} [{init}, %{self.pre}], [{nxt}, %{latch}]")
            fn.lines.append(f"  {name} = phi {ty} [{nxt}, %{latch}]")
        fn.lines[lp._head_at:lp._head_at] = phis
        return False


class _IfContext:
    def __init__(self, fn, cond):
        self.fn, self.cond = fn, cond

    def __enter__(self):
        fn = self.fn
        then, self.join = fn.label("then"), fn.label("join")
        fn.emit(f"br i1 {self.cond}, label %{then}, label %{self.join}")
        fn.block(then)

    def __exit__(self, *exc):
        if exc[0] is None:
            self.fn.br(self.join)
            self.fn.block(self.join)
        return False


def symbol(name, limit=48):
    """``name`` as the tail of an LLVM symbol: ASCII letters, digits and ``_`` only."""
    out = "".join(c if c.isascii() and c.isalnum() else "_" for c in str(name))
    return "_".join(part for part in out.split("_") if part)[:limit] or "anon"


class Module:
    """Functions and intrinsic declarations of one LLVM module.

    ``add_kernel`` names a kernel after the node it computes (``@k12_dense1_matmul``: the
    kernel's number in the module, then the node's name) and puts a comment naming the node's
    op, name and source line before its definition. It deduplicates: a kernel whose body
    equals an earlier one's is not emitted again; the earlier function's name is returned and
    the node joins that comment's list (the 32 time steps of an unrolled RNN share a kernel).
    Names and lines are the user's, so the text (the object cache's key) stays deterministic.
    """

    SHOWN_USERS = 16  # the comment of a shared kernel lists this many other nodes at most

    def __init__(self):
        self.functions = []
        self._by_body = {}
        self.decls = {}
        self.helpers = {}  # name -> definition text (math functions), emitted once each

    def add_kernel(self, fn, name="kernel", note=None):
        """Add kernel ``fn`` as ``@k<N>_<name>`` (or find its twin); returns its symbol.

        Args:
            fn: the kernel's Function.
            name: what it computes (a node's name; sanitized by ``symbol``).
            note: the comment naming the node (``op 'name' file.py:12``), or None.
        """
        key = fn.body_key()
        twin = self._by_body.get(key)
        if twin is not None:
            if note:
                twin.notes.append(note)
            return twin.name
        fn.name = f"k{len(self.functions)}_{symbol(name)}"
        fn.notes = [note] if note else []
        self._by_body[key] = fn
        self.add(fn)
        return fn.name

    def _commented(self, fn):
        """``fn``'s definition after a comment naming the nodes it computes."""
        notes = getattr(fn, "notes", ())
        if not notes:
            return fn.text()
        lines = [f"; kernel {notes[0]}"]
        lines += [f";   also {n}" for n in notes[1:1 + self.SHOWN_USERS]]
        if len(notes) > 1 + self.SHOWN_USERS:
            lines.append(f";   and {len(notes) - 1 - self.SHOWN_USERS} more")
        return "\n".join(lines) + "\n" + fn.text()

    def add(self, fn):
        self.functions.append(fn)
        self.declare_uses(fn)

    def declare_uses(self, fn):
        for fname, ret, types in fn.uses:
            self.decls[fname] = f"declare {ret} @{fname}({', '.join(types)})"

    def helper(self, name, build):
        """Define helper ``name`` once: ``build()`` returns its Function."""
        if name not in self.helpers:
            fn = build()
            self.helpers[name] = fn.text()
            self.declare_uses(fn)
        return name

    def text(self):
        parts = [self._commented(f) for f in self.functions] + [self.helpers[k] for k in
                                                      sorted(self.helpers)]
        parts += sorted(self.decls.values())
        return "\n\n".join(parts) + "\n"
