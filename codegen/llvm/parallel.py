"""Kernels run in chunks on the runtime's thread pool (``runtime.parallel``).

A kernel marks its outer loop ``fn.loop(extent, split=work)`` when the loop's iterations are
independent and hold all it does (``ir.Function.loop``). When that work is at least
``MIN_WORK`` (measured: below it, waking a second thread costs more than it saves), the
lowering renders the kernel over a range ``[lo, hi)`` of the loop, two more i64 parameters,
and calls it through a task::

    define internal void @k7_Conv2D.task(ptr %ctx, i64 %c)    ; chunk c of CHUNKS
      lo, hi = c * extent / chunks, (c + 1) * extent / chunks
      call @k7_Conv2D(ctx[0], ctx[1], ctx[2], lo, hi)

and the step hands ``parallel_for(@task, ctx, chunks)`` the buffer pointers in a stack array.
Chunks are fixed at compile time, so the same program computes the same bits at any thread
count: the pool only decides which thread runs which chunk.

A sum over the split loop (``fn.partials``: a filter gradient summed over the batch) gets
one partial buffer per chunk, past the planned arena; after the chunks, one loop adds them
into the real output in chunk order.
"""
import os

from graphc.errors import CompileError

from .ir import Function, mem_type
from .loops import params

# Work (multiply-adds, window taps x channels, or elementwise operations) a kernel needs to be
# split. Measured (``benchmarks/bench_threads.py --sweep``, a kernel alone, 2 cores): split
# kernels gained from about 2^16-2^17 (tanh of 16k floats 1.6x, x*y+x of 64k 1.3x, a 3x3
# 1->8 conv of 2 images 1.5x); in a whole step, W2's 32x64x64 GEMMs (2^17) split made it
# 0.87-0.89x as fast, for lack of work to share and with data moving between the cores.
MIN_WORK = 1 << 18
CHUNKS = 8  # per split loop (fewer when the loop is shorter); sums: at most this many partials
# Work a flat sum into one value counts per element (``kernels.elementwise._sum_in_chunks``):
# such a sum mostly reads what a kernel split over the cores just wrote (a global norm reads
# every gradient), half of it in the other core's cache. In W5's step at 2 threads
# (``GRAPHC_PROFILE``), the norm's sums of 200,704 and 65,536 gradients took 27.6k and 9.5k
# cycles on one core, 12.1k and 5.6k split: sums of 2^16 elements and up are split.
SUM_WEIGHT = 4


# What handing work to another thread costs, in the work it could have done: a kernel's chunks
# or a loop's parts wait for the slower thread and move data between the cores. Measured on
# W3 (159 GEMMs): in chunks at 2 threads ~90k multiply-adds a kernel more than half on a
# 2-vCPU EPYC with AVX2 (znver1, 23 GMAC/s a core); on one with AVX-512 (znver4, 58 GMAC/s)
# the same hand-off is fewer microseconds but more multiply-adds, and the estimate of
# ``ir.passes.split`` matched the cut steps measured there with twice as many (W3 0.69
# estimated against 0.71 measured, W4 0.83 against 0.87-0.88; W1 and W5 0.98, measured
# slower cut). Per 32 bytes of the host's vectors, then.
HANDOFF = 1 << 16


def handoff_work(unit):
    """``HANDOFF`` scaled by the width of the host's vectors ``unit`` (``kernels.gemm.
    vector_unit``; None: none)."""
    return HANDOFF * max(unit.bytes // 32, 1) if unit is not None else HANDOFF


def min_work():
    """``MIN_WORK``, or ``GRAPHC_PARALLEL_MIN_WORK`` (1: every kernel that can; the tests
    use it to run small programs in chunks)."""
    env = os.environ.get("GRAPHC_PARALLEL_MIN_WORK", "").strip()
    if not env:
        return MIN_WORK
    if not env.isdigit() or int(env) < 1:
        raise CompileError(f"GRAPHC_PARALLEL_MIN_WORK must be a positive integer, found {env!r}")
    return int(env)


def wanted(L, fn, fallible):
    """Whether the call of ``fn`` being lowered runs in chunks."""
    return (fn.split is not None and not fallible and L.parent is None and not L.numerics
            and fn.split[1] >= min_work())


def likely(program):
    """Whether some kernel of ``program`` will probably run in chunks (a node with at least
    ``min_work()`` elements, or a matmul with as many multiply-adds): known before lowering,
    so that the process's thread pool compiles while the program is lowered."""
    least = min_work()
    for n in program.nodes:
        if n.shape is None or n.dtype is None or n.opdef.leaf:
            continue
        work = 1
        for d in n.shape:
            work *= d
        if n.op_name == "matmul":
            a = n.inputs[0].shape
            work *= a[-2] if n.attrs.get("transpose_a") else a[-1]
        if work >= least:
            return True
    return False


def chunks_of(fn):
    return min(fn.split[0], CHUNKS)


def task(module, name, fn):
    """``void <name>.task.<extent>(ptr %ctx, i64 %c)`` calling kernel ``name`` on chunk c
    (defined once per kernel and extent); partial parameters move to chunk c's copy."""
    extent, chunks = fn.split[0], chunks_of(fn)
    # (twin kernels differing only in the split loop's extent share a body: tasks are per
    # extent and partial sizes)
    task_name = f"{name}.task.{extent}" + "".join(f".{k}_{b}" for k, b in
                                                  sorted(fn.partials.items()))
    if task_name in module.helpers:
        return task_name
    t = Function(task_name, [("ptr", "%ctx", "noalias readonly"), ("i64", "%c", "")])
    args = []
    for k in range(len(fn.params)):
        p = t.load("ptr", t.gep("ptr", "%ctx", k))
        if k in fn.partials:
            p = t(f"getelementptr inbounds i8, ptr {p}, i64 {t.mul('%c', fn.partials[k])}")
        args.append(("ptr", p))
    lo = t(f"udiv i64 {t.mul('%c', extent)}, {chunks}")
    hi = t(f"udiv i64 {t.mul(t.add('%c', 1), extent)}, {chunks}")
    t.call("void", name, args + [("i64", lo), ("i64", hi)])
    t.ret()
    return module.helper(task_name, lambda: t)


def emitter(L, name, fn, bufs, partial_bufs):
    """What the step function writes for this call (a callable ``Lowering.step_function``
    runs with (step fn, pointer, restore)): the context array, parallel_for, the sums."""
    from .kernels.collective import callback
    pool = callback(L, "parallel_for")
    task_name = task(L.module, name, fn)
    chunks = chunks_of(fn)
    sums = [(bufs[k], partial_bufs[k], fn.partials[k]) for k in sorted(fn.partials)]
    dtype = fn.partial_dtype if sums else None

    def emit(step, pointer, restore):
        ctx = step(f"alloca ptr, i64 {len(bufs)}", "ctx")
        for k, b in enumerate(bufs):
            step.store("ptr", pointer(partial_bufs.get(k, b)), step.gep("ptr", ctx, k))
        step.emit(f"call void {pointer(pool)}(ptr {step.symbol(task_name)}, ptr {ctx}, "
                  f"i64 {chunks})")
        for out, part, nbytes in sums:
            step.emit(f"call void {step.symbol(_sum_kernel(L.module, dtype, nbytes, chunks))}"
                      f"(ptr {pointer(out)}, ptr {pointer(part)})")
    # (task, pool slot, chunks, pointers): a record of the step's call table (``call_table``)
    emit.chunked = None if sums else (task_name, pool, chunks, list(bufs))
    return emit


def rest(L):
    """What the step writes before a BLAS call that follows a split kernel: the pool's
    workers stop watching for the next call and sleep (BLAS's own threads need the cores)."""
    from .kernels.collective import callback
    slot = callback(L, "parallel_rest")

    def emit(step, pointer, restore):
        step.emit(f"call void {pointer(slot)}()")
    return emit


def _sum_kernel(module, dtype, nbytes, chunks):
    """``out[i] = sum over chunks of part[c][i]`` (chunk order: a fixed rounding)."""
    t = mem_type(dtype)
    count = nbytes // dtype.itemsize
    name = f"sum_partials_{t}_{count}_{chunks}"

    def build():
        fn = Function(name, params(2, [True, True]))
        with fn.loop(count) as li:
            acc = fn.load(t, fn.gep(t, "%p1", li.i))
            for c in range(1, chunks):
                acc = fn(f"fadd {t} {acc}, {fn.load(t, fn.gep(t, '%p1', fn.add(li.i, c * count)))}")
            fn.store(t, acc, fn.gep(t, "%p0", li.i))
        fn.ret()
        return fn
    return module.helper(name, build)
