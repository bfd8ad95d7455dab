"""Program -> one LLVM module: buffers, table slots, kernel calls and the exported step.

``Lowering`` walks the schedule once. Every value lives in a ``Buf``: a byte range of one
table slot (a feed, a variable, a fetch output, a constant, or the arena). Each node is
lowered by the function registered for its op in ``registry.KERNELS`` (``@lowers("matmul")``
in a module of ``kernels/``, all imported with that package), which builds an ``internal
noinline`` kernel function (deduplicated by body, named after the node: ``@k3_dense1_matmul``)
and records a call with the buffers it touches. ``step_function`` then writes
``void step(ptr %table)``: load the slots, call the kernels in order (returning early when a
kernel reports a status), return. Compile time stays linear in the number of kernels, and the
32 identical time steps of an unrolled RNN share one kernel each.

Beyond one kernel per node: adjacent elementwise nodes sharing a buffer run as one loop
(``kernels.elementwise.ElementwiseGroup``), GEMMs are planned across the step
(``kernels.gemm_acc``), and a few producer/consumer pairs run as one kernel: the named folds
of ``folds`` (``L.skip`` holds the consumers folded in), each listed at the top of the module.

Kernels with enough work whose outer loop is independent (convolutions, pooling, GEMMs,
elementwise loops) run in chunks on the runtime's thread pool (``parallel``): the step
calls ``parallel_for`` with a task per kernel instead of the kernel.

``noalias`` goes on a kernel parameter only when its byte range overlaps no other parameter
of that call; buffers that are the same bytes are passed once (an in-place update reads and
writes one pointer).
"""
import numpy as np

from graphc.errors import CompileError
from graphc.runtime.blas import blas_threads, gemm_entry
from graphc.runtime.jit import host_target
from graphc.runtime.llvm_step import Slot, StepLayout
from graphc.runtime.step_errors import IndexCheck

from ...ir import scalar as S
from ...ir.ops.registry import index_check_of
from ...ir.rollback import planned_writers, snapshot_variables

from . import call_table, parallel
from .buffers import computed, const_value, find_inplace_updates, make_storage, nbytes_of
from .folds import apply_folds, comment_block, node_note, one_line, record
from .ir import Function, Module
from .kernels import numerics as numerics_kernels
from .kernels.elementwise import kernel_for
from .kernels.gemm_acc import GemmPlan
from .loops import contiguous_strides, elementwise_function, params
from .math import MathLib
from .registry import KERNELS, Buf, lowers  # noqa: F401  (KERNELS, lowers: re-exported)


class Lowering:
    """State of one program's lowering (see module docstring)."""

    def __init__(self, program, profile=False, numerics=False, parent=None):
        self.p = program
        self.numerics = numerics  # a numerics-checked build: every value is kept and checked
        self.parent = parent
        self.module = Module() if parent is None else parent.module
        self.math = MathLib(self.module) if parent is None else parent.math
        self.layout = StepLayout(entry="step", n_slots=0)
        if parent is not None:  # a loop body: status entries are the step's
            self.layout.node_names = parent.layout.node_names
            self.layout.index_checks = parent.layout.index_checks
        self.bufs = {}
        self.calls = []
        self.arena_size = 0
        self._slot_of = {}
        self._seeds = []
        self._const_slots = {}
        self.fetch_bufs = {}
        self.storage = None
        self.profile = profile
        self.pending = None
        self.gemms = None
        self.blas_threads = blas_threads()  # small GEMMs go native; how small depends on it
        self.gemm_calls = {"native": 0, "blas": 0}
        self.merged = 0  # elementwise nodes that joined another's loop
        self.parallel_calls = 0  # kernels run in chunks on the thread pool
        self._blas_slots = set()  # (a BLAS call after a split kernel: the pool rests first)
        self.skip = set()  # nodes a previous kernel already computed (folded in)
        self.deferred = {}  # node -> the later node whose kernel computes it (see ``folds``)
        self.folded = {}  # node -> (fold name, what it claimed): see ``fold``
        self.fold_notes = []  # one line per fold that fired, for the dumps
        self._built = {}  # (builder, arguments) -> its kernel Function (``built``)
        # module-level constants of the step and its loop bodies (``call_table``): one list
        self.globals = [] if parent is None else parent.globals
        for n in program.feeds:
            self.layout.feeds.append(self._leaf_slot(n))
        for n in program.variables:
            self.layout.variables.append(self._leaf_slot(n))

    # -- slots and buffers ----------------------------------------------------------------------
    def new_slot(self):
        self.layout.n_slots += 1
        return self.layout.n_slots - 1

    def _leaf_slot(self, node):
        slot = self.new_slot()
        self.bufs[node] = Buf(slot, 0, nbytes_of(node))
        return Slot(slot, tuple(node.shape), node.dtype.np.name)

    def arena(self, nbytes):
        """A fresh 64-byte aligned arena range (the unplanned layout never reuses memory)."""
        off = self.arena_size
        self.arena_size += -(-max(int(nbytes), 1) // 64) * 64
        return Buf(self._special("arena"), off, int(nbytes))

    def output(self, shape, dtype):
        """A new fetch output buffer owned by the step; returns (output index, Buf)."""
        slot = self.new_slot()
        self.layout.outputs.append(Slot(slot, tuple(shape), dtype.np.name))
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        return len(self.layout.outputs) - 1, Buf(slot, 0, nbytes)

    def _special(self, kind):
        if kind not in self._slot_of:
            self._slot_of[kind] = self.new_slot()
        return self._slot_of[kind]

    def status(self):
        return Buf(self._special("status"), 0, 32)

    def blas(self, dtype):
        """(slot Buf of the gemm entry point, the width of its integer arguments)."""
        key = f"blas_{dtype.name}"
        bits = gemm_entry(dtype.np)[1]
        if key not in self._slot_of:
            self.layout.blas.append((self._special(key), dtype.np.name, bits))
            self._blas_slots.add(self._slot_of[key])
        return Buf(self._slot_of[key], 0, 0), bits

    def rng(self, seed):
        """(state Buf, index of this op's key): state[0] is the step counter."""
        self._seeds.append(seed)
        return Buf(self._special("rng"), 0, 8 * 64), len(self._seeds)

    def const_buf(self, node):
        """A slot holding a constant's array (made on first use)."""
        if node not in self._const_slots:
            slot = self.new_slot()
            self.layout.consts.append((slot, const_value(node)))
            self._const_slots[node] = Buf(slot, 0, nbytes_of(node))
        return self._const_slots[node]

    def buf(self, node):
        """The buffer holding ``node``'s value (constants get a slot on first use)."""
        if self.gemms is not None and node in self.gemms.result:
            return self.gemms.result[node]  # a product batched into a larger GEMM
        return self.storage.buf(node)

    def out(self, node):
        return self.storage.buf(node)

    def arena_at(self, offset, nbytes):
        """The planned arena range at ``offset`` (the arena grows to cover it)."""
        self.arena_size = max(self.arena_size, int(offset) + -(-max(int(nbytes), 1) // 64) * 64)
        return Buf(self._special("arena"), int(offset), int(nbytes))

    def fold(self, node, name):
        """What fold ``name`` claimed for ``node``'s kernel (``folds.apply_folds``), or None."""
        hit = self.folded.get(node)
        return hit[1] if hit is not None and hit[0] == name else None

    # -- calls ------------------------------------------------------------------------------------
    def built(self, build, *args):
        """``build(*args)``: a kernel Function, built once per lowering for equal (hashable)
        arguments. A kernel's text is a function of its arguments alone, and the 64 layers of
        a deep MLP ask for the same few GEMMs, transposes and loops over and over: building
        each again only for ``Module.add_kernel`` to find its twin was half of lowering.
        The math library's setting for the kernel being built is part of the key."""
        key = (build, args, self.math.estimates)
        fn = self._built.get(key)
        if fn is None:
            fn = self._built[key] = build(*args)
        return fn

    @staticmethod
    def distinct(bufs):
        """Unique buffers in order and, per input position, its parameter index."""
        uniq, index = [], []
        for b in bufs:
            if b not in uniq:
                uniq.append(b)
            index.append(uniq.index(b))
        return uniq, index

    @staticmethod
    def noalias(bufs):
        """Per parameter: True when its bytes overlap no other parameter's."""
        return [all(not a.overlaps(b) for j, b in enumerate(bufs) if j != k)
                for k, a in enumerate(bufs)]

    def call(self, fn, bufs, node, fallible=False):
        """Add ``fn`` to the module (deduplicated) and call it with ``bufs`` in the step.

        ``fallible``: the kernel may set the status word; the step then stops right after it
        and the runtime raises, naming the node (a str value overrides the name shown).
        """
        self.flush()
        return self.emit_call(fn, bufs, node, fallible)

    def emit_call(self, fn, bufs, node, fallible=False, label=None, prefix=None):
        """``call`` without flushing the pending elementwise group (the group's own emit).

        The kernel is named after ``node`` (``prefix``: a word before the name) and both its
        definition and its call in the step carry a comment: ``label`` (default: the node's op
        and name) and the node's source line.
        """
        base = "copy" if node is None else node.node_name
        note = _call_note(node, label)
        if node in self.folded:  # its kernel computes a neighbour too (``folds``)
            note += f"  [fold {self.folded[node][0]}]"
        if self.parallel_calls and any(b.slot in self._blas_slots for b in bufs):
            self.calls.append((parallel.rest(self), [], None, "rest", "the pool's workers sleep"))
        split = parallel.wanted(self, fn, fallible)
        fn.parallel = split
        name = self.module.add_kernel(fn, f"{prefix}_{base}" if prefix else base, note)
        if split:  # run in chunks on the thread pool (``parallel``)
            partials = {k: self.arena(nbytes * parallel.chunks_of(fn))
                        for k, nbytes in fn.partials.items()}
            name = parallel.emitter(self, name, fn, list(bufs), partials)
            self.parallel_calls += 1
        entry = None
        if fallible:
            text = fallible if isinstance(fallible, str) else f"{node.op_name} '{node.node_name}'"
            self.layout.node_names.append(text)
            entry = len(self.layout.node_names) - 1
            self._index_check(node, entry)
        if label is None:
            label = "copy" if node is None else f"{node.op_name} '{node.node_name}'"
        self.calls.append((name, list(bufs), entry, label, note))
        return name

    def _index_check(self, node, entry):
        """Record what an index check's failure message needs (``runtime.step_errors``)."""
        check = index_check_of(node) if node is not None else None
        if check is not None:
            i, what, bound, label = check
            x = node.inputs[i]
            loc = node.loc.format() if getattr(node.loc, "lineno", None) else None
            self.layout.index_checks.append(
                [entry, IndexCheck(label, what, x.shape, bound, loc).to_json()])

    def flush(self):
        """Emit the pending group of elementwise nodes (``elementwise.ElementwiseGroup``)."""
        pending, self.pending = self.pending, None
        if pending is not None:
            pending.emit(self)

    def copy(self, dst, src, shape, dtype, node=None):
        """Copy a dense value between buffers (no-op when they are the same bytes)."""
        if dst == src:
            return
        strides = contiguous_strides(shape)
        operands = [(dtype, 0, strides), (dtype, 0, strides)]
        fn = elementwise_function(self.math, shape, operands, S.arg(1, dtype),
                                  self.noalias([dst, src]))
        self.call(fn, [dst, src], node)

    def nested(self, program, no_blas=False):
        """A loop body ``program`` lowered into this module (``lower_body``)."""
        return lower_body(self, program, no_blas)

    # -- the step -----------------------------------------------------------------------------------
    def step_function(self, name="step", linkage=""):
        """``void step(ptr %table)`` (a loop body: ``name``, internal, over its frame).

        The step is glue: pointers from the table, then calls. The exported one is not
        optimized (``optnone``): at O2 it cost about as much to compile as all the kernels
        together (hundreds of calls in one block: dead-store elimination and register
        allocation over pointers kept live across all of them) for no measurable gain at
        run time. Each call loads the pointers it passes (an L1 hit) instead of keeping
        them live from the first call; context arrays are allocated once, at entry.
        Kernels are called through their addresses, stored in an array at entry: LLVM's
        fast instruction selector, which compiles unoptimized code, gives up on direct
        calls under the JIT's code model and hands each to the slow one (measured: 586
        calls, 92 -> 52 ms to emit). A step of many calls makes runs of plain ones from a
        table of records instead (``call_table``: one call per run). A loop body's step is
        glue too, over its frame, ``optnone`` and calling through addresses for the same
        reasons, with records of its own (``@gc.call_records.<body>``): a cut step's body
        written out call by call took LLVM 4.3 s for 550 dense layers. ``module_parts`` lets
        the kernels go to other parts (each kernel with the pipeline it asks for).
        """
        top = self.parent is None and linkage == ""
        fn = Function(name, [("ptr", "%table", "noalias readonly")], linkage=linkage,
                      attrs="nounwind noinline optnone")
        bases, ptrs, callees = {}, {}, {}
        fn.cur = "calls"  # (the entry block stores the kernels' addresses: _entry_block)

        def symbol(kernel):  # the kernel's address, named after it
            k = callees.setdefault(kernel, len(callees))
            return fn(f"load ptr, ptr {fn.gep('ptr', '%kernels', k)}", kernel)
        fn.symbol = symbol

        def pointer(b):
            if b not in ptrs:
                if b.slot not in bases:
                    slot_ptr = fn.gep("ptr", "%table", b.slot)
                    bases[b.slot] = fn(f"load ptr, ptr {slot_ptr}", "s")
                base = bases[b.slot]
                ptrs[b] = fn.gep("i8", base, b.offset) if b.offset else base
            return ptrs[b]
        restore = _flush_denormals(fn)
        prof = pointer(Buf(self._special("profile"), 0, 8)) if self.profile else None
        runs = self._call_runs(fn, callees, top) if not prof else {}
        k = 0
        while k < len(self.calls):
            if top:  # (values of one call only: see above)
                bases.clear()
                ptrs.clear()
            if k in runs:
                k = runs[k](pointer)
                continue
            name, bufs, entry, _, note = self.calls[k]
            k += 1
            args = ", ".join(f"ptr {pointer(b)}" for b in bufs)
            fn.emit(f"; {note}")
            if prof:
                t0 = fn.call("i64", "llvm.readcyclecounter", [])
            if callable(name):  # a loop (``kernels.loop``): it writes its own control flow
                name(fn, pointer, restore)
            else:
                fn.emit(f"call void {fn.symbol(name)}({args})")
            if prof:
                t1 = fn.call("i64", "llvm.readcyclecounter", [])
                _accumulate(fn, prof, k - 1, fn(f"sub i64 {t1}, {t0}"))
            if entry is not None:
                word = fn.load("i64", pointer(self.status()))
                bad = fn(f"icmp ne i64 {word}, 0")
                ok, fail = fn.label("ok"), fn.label("fail")
                fn.emit(f"br i1 {bad}, label %{fail}, label %{ok}")
                fn.block(fail)
                fn.store("i64", str(entry), fn.gep("i64", pointer(self.status()), 1))
                restore()
                fn.ret()
                fn.block(ok)
        if self._seeds:
            state = pointer(Buf(self._special("rng"), 0, 8))
            count = fn.load("i64", state)
            fn.store("i64", fn(f"add i64 {count}, 1"), state)
        restore()
        fn.ret()
        _hoist_allocas(fn)
        _entry_block(fn, callees)
        return fn

    def _call_runs(self, fn, callees, top=True):
        """Runs of plain calls as records of a call table (``call_table``), when there are
        enough of them: {index of a run's first call: a function writing the run's one call
        into ``fn`` (given ``pointer``) and returning the index after the run}. A loop
        body's records are a constant of their own (``top`` False: named after ``fn``)."""
        plain = [_record_of(c) for c in self.calls]
        if sum(r is not None for r in plain) < call_table.MIN_CALLS:
            return {}
        records, spans, k = [], [], 0  # spans: (first call, end, first word, end word)
        while k < len(plain):
            end = k
            while end < len(plain) and plain[end] is not None:
                end += 1
            if end - k < call_table.MIN_RUN:
                k = end + 1
                continue
            start = sum(len(r) for r in records)
            for kind, name, bufs, chunks, pool in plain[k:end]:
                callee = callees.setdefault(name, len(callees))
                records.append(call_table.record(kind, callee, bufs, chunks, pool))
            spans.append((k, end, start, sum(len(r) for r in records)))
            k = end
        if not spans:
            return {}
        word = call_table.word_type(records)
        table = call_table.RECORDS if top else f"{call_table.RECORDS}.{fn.name}"
        self.globals.append(call_table.global_text(records, word, table)[0])
        return {span[0]: self._run_writer(fn, word, table, *span) for span in spans}

    def _run_writer(self, fn, word, table, first, end, start, stop):
        def write(pointer):  # (``pointer``: what every writer of the step is given)
            for _, _, _, _, note in self.calls[first:end]:
                fn.emit(f"; {note}")
            rec = fn.gep(word, f"@{table}", start)
            runner = call_table.run_calls(self.module, word)
            fn.emit(f"call void {fn.symbol(runner)}(ptr %table, "
                    f"ptr %kernels, ptr {rec}, i64 {stop - start})")
            return end
        return write

    def finish(self):
        """Fill the layout's remaining fields; returns (module text, layout)."""
        self.flush()
        lay = self.layout
        lay.arena = (self._slot_of.get("arena"), self.arena_size)
        lay.status = self._slot_of.get("status")
        lay.rng = (self._slot_of.get("rng"), list(self._seeds))
        if self.profile:
            lay.profile = (self._special("profile"), [c[3] for c in self.calls])
        step = self.step_function()
        self.module.declare_uses(step)
        text = comment_block(self.fold_notes) + self.module.text() + "\n" + "".join(
            g + "\n\n" for g in self.globals) + step.text() + "\n"
        return text, lay


def _record_of(call):
    """(kind, callee, bufs, chunks, pool slot) of a call the call table can make, or None."""
    name, bufs, entry, _, _ = call
    if entry is not None or len(bufs) > call_table.MAX_ARGS:
        return None
    if isinstance(name, str):
        return call_table.KERNEL, name, bufs, 0, 0
    chunked = getattr(name, "chunked", None)
    if chunked is None or len(chunked[3]) > call_table.MAX_ARGS:
        return None
    task, pool, chunks, args = chunked
    return call_table.CHUNKED, task, args, chunks, pool.slot


def _call_note(node, label):
    """The comment on a kernel and its call: what it computes and the user's line."""
    return one_line(label or "copy") if node is None else node_note(node, label)


def lower_program(program, profile=False, stats=None, checks=()):
    """Lower ``program`` to (LLVM module text, StepLayout).

    Args:
        program: the Program.
        profile: count CPU cycles per kernel call (``NativeStep.profile()`` reports them).
        stats: a dict to fill with what the lowering did: kernel calls, distinct kernel
            functions, elementwise loops merged, matmuls accumulated by BLAS, arena bytes.
        checks: ("numerics",) stops the step at the first float value holding NaN or Inf
            (``numerics``); nothing is emitted for it otherwise.

    Raises:
        CompileError: an op without an LLVM kernel, naming the op and the node.
    """
    numerics = "numerics" in checks
    L = Lowering(program, profile, numerics)
    _lower_nodes(L, program, numerics)
    L.layout.snapshot = _snapshot(L, program, checks)
    text, layout = L.finish()
    if stats is not None:
        stats.update(_stats(L))
    return text, layout


def lower_body(L, program, no_blas=False):
    """Lower a loop body ``program`` into ``L``'s module: its own table layout (the loop's
    frame), kernels shared with the step; returns its finished ``Lowering`` (``calls``,
    ``layout``), whose ``step_function`` the loop kernel names and adds. ``no_blas``: its
    GEMMs native wherever the host's vectors can do them (``native_gemm_ok``, threads 0)."""
    B = Lowering(program, parent=L)
    if no_blas:
        B.blas_threads = 0
    _lower_nodes(B, program, False)
    B.flush()
    return B


def _lower_nodes(L, program, numerics):
    """Storage, folds and one kernel per node of ``program`` (in schedule order) into ``L``."""
    for n in program.nodes:
        if kernel_for(n) is None and computed(n):
            raise CompileError(
                f"{n.describe()}: the LLVM backend has no kernel for op '{n.op_name}'",
                loc=n.loc, hint="use backend='numpy' for this program")
    L.storage = make_storage(L)
    L.gemms = GemmPlan(L) if getattr(program.plan, "planned", False) and not numerics \
        else None
    if numerics:  # feeds and variables at entry, as the NumPy backend checks them
        for n in program.feeds + program.variables:
            numerics_kernels.check_value(L, n)
    for f in L.fetch_bufs:  # fetched feeds, variables and constants: first, before updates
        if f.opdef.leaf:
            _fetch_copy(L, f)
    apply_folds(L)
    for name, nodes in (L.gemms.folds if L.gemms is not None else ()):
        record(L, name, nodes)
    for n in program.nodes:
        _lower_node(L, n, kernel_for)
        if numerics and numerics_kernels.checked(L, n):
            numerics_kernels.check_value(L, n)
    L.storage.finish()


def _snapshot(L, program, checks):
    """Indices into the step's variables that a failure after their write must restore
    (``ir.rollback``): the plan's in-place writers, or the unplanned storage's."""
    if getattr(program.plan, "planned", False):
        writers = planned_writers(program)
    else:
        writers = [(k, v) for k, v in find_inplace_updates(program).items()]
    snap = {id(v) for v in snapshot_variables(program, writers, checks)}
    return [k for k, v in enumerate(program.variables) if id(v) in snap]


def _lower_node(L, n, kernel_for):
    """Emit what node ``n`` needs at its place in the schedule (maybe nothing)."""
    op, store, gemms = n.op_name, L.storage, L.gemms
    if gemms is not None:
        gemms.emit_before(L, n)
        if n in gemms.skip and op != "matmul":
            return  # a slice only a batched GEMM read (in place)
    if n in L.deferred:  # computed by the kernel of a later node (copied to its fetch
        return  # output, if fetched, after that kernel)
    if n in L.skip:  # computed by the kernel of the node before it
        _fetch_copy(L, n)
        return
    if op == "check_numerics":  # a view of its input, checked where it is computed
        kernel_for(n)(L, n)
    elif n.opdef.leaf or op == "group" or store.is_view(n):
        pass
    elif n.opdef.compile_time:  # a shape query the plan gave a buffer: materialize it
        L.copy(L.out(n), L.const_buf(n), n.shape, n.dtype, n)
    elif op == "assign":
        store.lower_assign(n)
    else:
        kernel_for(n)(L, n)
    if not n.opdef.leaf:
        _fetch_copy(L, n)
        for d in [d for d, later in L.deferred.items() if later is n]:
            _fetch_copy(L, d)  # (a fetched value n's kernel computed: now in its buffer)


def _stats(L):
    g = L.gemms
    batched = (g.skip & set(g.result)) | set(g.copies) if g else ()
    return dict(kernel_calls=len(L.calls), kernel_functions=len(L.module.functions),
                folded_nodes=len(L.skip | set(L.deferred)), merged_loops=L.merged,
                arena_bytes=L.arena_size,
                saved_argmax=len(getattr(L, "saved_argmax", ())),
                accumulated_matmuls=len(g.gemm) if g else 0,
                accumulated_sums=len(g.fused) if g else 0, batched_matmuls=len(batched),
                transposed_operands=len({id(b) for b in g.transposed.values()}) if g else 0,
                native_gemms=L.gemm_calls["native"], blas_gemms=L.gemm_calls["blas"],
                parallel_kernels=L.parallel_calls,
                folds=list(L.fold_notes))


# MXCSR bits: flush results that would be subnormal to zero (FTZ), read subnormal inputs as
# zero (DAZ). TensorFlow runs its CPU kernels this way too: subnormals take a microcode
# assist per operation (measured: Adam moments of dead units decay into them after ~900 W5
# steps and the step ran twice as slow). Values below ~1e-38 (f32) become 0.
_FTZ_DAZ = 0x8040


def _flush_denormals(fn):
    """Switch the calling thread to FTZ/DAZ for the step (x86); returns the restorer."""
    if not host_target().triple.startswith("x86_64"):
        return lambda: None
    saved, mode = fn("alloca i32", "mxcsr"), fn("alloca i32", "mxcsr")
    fn.call("void", "llvm.x86.sse.stmxcsr", [("ptr", saved)])
    fn.store("i32", fn(f"or i32 {fn.load('i32', saved)}, {_FTZ_DAZ}"), mode)
    fn.call("void", "llvm.x86.sse.ldmxcsr", [("ptr", mode)])
    return lambda: fn.call("void", "llvm.x86.sse.ldmxcsr", [("ptr", saved)])


def _hoist_allocas(fn):
    """Move ``fn``'s allocas (all of constant size) to its entry block: one stack frame for
    the whole call, whatever block asked for them."""
    allocas, rest = [], []
    for line in fn.lines:  # (instructions only: a comment may quote a node's name)
        (allocas if " = alloca " in line and line.startswith("  %") else rest).append(line)
    fn.lines = allocas + rest


def _entry_block(fn, callees):
    """Open ``fn`` (its allocas first) with a block storing the address of every kernel it
    calls into ``%kernels`` (``symbol`` loads them), then branching to its calls."""
    k = next((i for i, line in enumerate(fn.lines) if " = alloca " not in line), len(fn.lines))
    entry = [f"  %kernels = alloca [{max(len(callees), 1)} x ptr]"]
    for name, i in callees.items():
        entry.append(f"  %kernels.{i} = getelementptr inbounds ptr, ptr %kernels, i64 {i}")
        entry.append(f"  store ptr @{name}, ptr %kernels.{i}")
    fn.lines[k:k] = entry + ["  br label %calls", "calls:"]


def _accumulate(fn, counters, k, cycles):
    """counters[k] += cycles (profiling builds only)."""
    p = fn.gep("i64", counters, k)
    fn.store("i64", fn(f"add i64 {fn.load('i64', p)}, {cycles}"), p)


def _fetch_copy(L, node):
    """Copy ``node``'s value into its fetch output unless it was computed there."""
    dst = L.fetch_bufs.get(node)
    if dst is not None and L.buf(node) != dst:
        L.copy(dst, L.buf(node), node.shape, node.dtype)


__all__ = ["Buf", "Lowering", "lowers", "lower_program", "KERNELS", "params"]
