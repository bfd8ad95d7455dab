"""LLVM lowering of ``loop``: a native loop in the step, calling the body's own function.

The body (``codegen.loops.body_for_backend``: optimized and memory-planned apart) is lowered
into the same module as an internal function ``@body_<k>_<name>(ptr %frame)`` with its own
table layout, the *frame*: its kernels are the step's (deduplicated with them), its arena is a
private range of the step's arena, and its constants and BLAS entry points are slots of the
step's table, copied into the frame. At the loop's place the step:

    builds the frame (an alloca'd array of pointers) and copies the initial state in;
    loops while the condition holds and fewer than ``limit`` iterations ran:
        t = n (reverse: limit - 1 - n); frame slots of sliced inputs <- &sequence[t];
        frame slots of stacked outputs written by the body alone <- &stack[t];
        call @body(frame); stop the step if it reported a status;
        copy the next state into the state buffers (and stacked values the body computed
        elsewhere into &stack[t]); read the condition;
    stores the iteration count.

Results (carried state, stacks, count) live in private arena ranges past the plan's. Their
``loop_output`` nodes (a stack's one row, with ``row``) are read there, where nothing the plan
places can write over them first (``PlannedStorage.keep_in``), and copied into their planned
buffers otherwise (``lower_loop_output``).

A loop whose iterations are independent (no carried state, no condition, no count: a map, as
``ir.passes.split`` makes over the parts of a batch) runs them on the thread pool instead
(``parallel_for``, one iteration a chunk), each on a frame of its own: its sliced inputs and
stacked outputs at row t, and a private range for what an iteration writes besides (the
body's arena, its status words, its counter). A failing iteration stops the step after all
ran, with the first failure's status (``GRAPHC_PARALLEL_LOOPS=0``: in order, as any loop).
Such a body's GEMMs are native (an iteration runs on one core); one that still calls BLAS (a
host without the vectors, ``GRAPHC_NATIVE_GEMM=0``) runs its iterations in order: BLAS has
threads of its own.
"""
import os

from graphc.errors import CompileError

from ....ir import dtypes as D
from ....ir.loops import check_trip, feed_roles, split_inputs
from ...loops import UNBOUNDED, body_for_backend, output_index
from ..buffers import nbytes_of
from ..ir import Function, symbol
from ..registry import Buf, lowers


def _bytes(shape, dtype):
    n = dtype.itemsize
    for d in shape:
        n *= int(d)
    return n


@lowers("loop")
def lower_loop(L, n):
    L.flush()
    bound = check_trip(n)
    body = n.attrs["body"]
    prog = body_for_backend(n, L.p)
    ins = split_inputs(n)
    independent = _independent(L, n, ins, bound)
    B = L.nested(prog, no_blas=independent)
    if B._seeds or B.layout.callbacks:
        raise CompileError(f"{n.describe()}: random ops or host calls in a loop body",
                           loc=n.loc)
    name = f"body{len(L.module.functions)}_{symbol(n.node_name)}"
    fn_body = B.step_function(name=name, linkage="internal")
    L.module.add(fn_body)
    roles = feed_roles(prog, n)
    nc = len(body.next)
    # outer storage: state, stacks, count, counter, the body's arena
    state = [L.arena(nbytes_of(x)) for x in ins["init"]]
    stacks = []
    for j in range(len(body.stacked)):
        f = prog.fetches[nc + j]
        stacks.append((L.arena(bound * _bytes(f.shape, f.dtype)), _bytes(f.shape, f.dtype)))
    parallel = independent and not B.layout.blas
    copies_of = bound if parallel else 1  # (per-iteration storage: one range per iteration)
    count_buf, counter_buf = L.arena(4), L.arena(8 * copies_of)
    L.loop_results = getattr(L, "loop_results", {})
    L.loop_results[n] = state + [s for s, _ in stacks] + [count_buf]
    frame = {}  # frame slot -> outer Buf (fixed for the whole loop)
    own = {}  # frame slot -> (outer Buf of every iteration's copies, bytes of one)
    for slot, value in B.layout.consts:
        outer = L.new_slot()
        L.layout.consts.append((outer, value))
        frame[slot] = Buf(outer, 0, 0)
    for slot, dtype_name, _ in B.layout.blas:
        frame[slot] = L.blas(D.as_dtype(dtype_name))[0]
    arena_slot = B._slot_of.get("arena")
    if arena_slot is not None:
        if parallel:
            size = -(-B.arena_size // 64) * 64
            own[arena_slot] = (L.arena(size * bound), size)
        else:
            frame[arena_slot] = L.arena(B.arena_size)
    status = L.status()  # the body's status word is the step's
    status_slot = B._slot_of.get("status")
    if status_slot is not None:
        if parallel:
            own[status_slot] = (L.arena(16 * bound), 16)
        else:
            frame[status_slot] = status
    sliced = []  # (frame slot, sequence Buf, row bytes)
    for feed_slot, (role, k) in zip(B.layout.feeds, roles):
        if role == "carried":
            frame[feed_slot.index] = state[k]
        elif role == "counter":
            if parallel:
                own[feed_slot.index] = (counter_buf, 8)
            else:
                frame[feed_slot.index] = counter_buf
        elif role == "captured":
            frame[feed_slot.index] = L.buf(ins["captured"][k])
        else:
            seq = ins["sequences"][k]
            sliced.append((feed_slot.index, L.buf(seq), _bytes(seq.shape[1:], seq.dtype)))
    users = {}
    for i, j in enumerate(B.layout.fetch_outputs):
        users.setdefault(j, []).append(i)
    direct, copies, cond_buf = [], [], None  # (frame slot, stack j); (fetch i, scratch Buf)
    for j, slot in enumerate(B.layout.outputs):
        fetched = users.get(j, [])
        if len(fetched) == 1 and nc <= fetched[0] < nc + len(stacks):
            direct.append((slot.index, fetched[0] - nc))
            continue
        size = _bytes(slot.shape, D.as_dtype(slot.dtype))
        scratch = L.arena(size * copies_of)
        if parallel:
            own[slot.index] = (scratch, size)
        else:
            frame[slot.index] = scratch
        for i in fetched:
            if i < nc + len(stacks):
                copies.append((i, scratch))
            else:
                cond_buf = scratch
    fixed = (n.attrs["reverse"], bound, ins, state, stacks, count_buf, counter_buf, frame,
             sliced, direct, copies, cond_buf, B.layout.n_slots, name, nc, status)
    if parallel:
        task = _iteration(L, name, B.layout.n_slots, own, sliced, direct, stacks, copies,
                          n.attrs["reverse"], bound, counter_slot(roles, B))
        fixed = (bound, frame, own, sliced, direct, stacks, copies, B.layout.n_slots, task,
                 status, status_slot, count_buf, _pool(L))

    def emit(fn, pointer, restore):
        (_emit_parallel if parallel else _emit_loop)(fn, pointer, restore, L, fixed)
    L.calls.append((emit, [], None, f"loop '{n.node_name}'", f"loop '{n.node_name}' ({bound} "
                    f"iterations at most) calling @{name}"))


def _memcpy(fn, dst, src, nbytes):
    if nbytes:
        fn.call("void", "llvm.memcpy.p0.p0.i64",
                [("ptr", dst), ("ptr", src), ("i64", str(nbytes)), ("i1", "false")])


def _emit_loop(fn, pointer, restore, L, fixed):
    (reverse, bound, ins, state, stacks, count_buf, counter_buf, frame, sliced, direct,
     copies, cond_buf, n_slots, name, nc, status_buf) = fixed
    table = fn(f"alloca [{max(n_slots, 1)} x ptr]", "frame")
    for slot, buf in frame.items():
        fn.store("ptr", pointer(buf), fn.gep("ptr", table, slot))
    for buf, x in zip(state, ins["init"]):
        _memcpy(fn, pointer(buf), pointer(L.buf(x)), nbytes_of(x))
    stack_ptr = [pointer(s) for s, _ in stacks]
    variable_trip = ins["count"] is not None or ins["cond0"] is not None
    if variable_trip:
        for (s, _), p in zip(stacks, stack_ptr):
            fn.call("void", "llvm.memset.p0.i64",
                    [("ptr", p), ("i8", "0"), ("i64", str(s.nbytes)), ("i1", "false")])
    limit = str(bound) if bound is not None else str(UNBOUNDED)
    if ins["count"] is not None:
        c = fn(f"sext i32 {fn.load('i32', pointer(L.buf(ins['count'])))} to i64")
        c = fn(f"select i1 {fn(f'icmp slt i64 {c}, 0')}, i64 0, i64 {c}")
        limit = fn(f"select i1 {fn(f'icmp slt i64 {c}, {bound}')}, i64 {c}, i64 {bound}")
    go0 = "true"
    if ins["cond0"] is not None:
        go0 = fn(f"icmp ne i8 {fn.load('i8', pointer(L.buf(ins['cond0'])))}, 0")
    seq_ptr = [(slot, pointer(buf), row) for slot, buf, row in sliced]
    counter = pointer(counter_buf)
    cond_ptr = pointer(cond_buf) if cond_buf is not None else None
    copy_ptr = [(i, pointer(buf)) for i, buf in copies]
    state_ptr = [pointer(b) for b in state]
    status = pointer(status_buf)
    pre = fn.cur
    head, body, latch, done, fail = (fn.label(x) for x in ("lhead", "lbody", "llatch", "lexit",
                                                          "lfail"))
    fn.br(head)
    fn.block(head)
    i, inext = fn.fresh("n"), fn.fresh("nn")
    go, gonext = fn.fresh("go"), fn.fresh("gon")
    fn.lines.append(f"  {i} = phi i64 [0, %{pre}], [{inext}, %{latch}]")
    fn.lines.append(f"  {go} = phi i1 [{go0}, %{pre}], [{gonext}, %{latch}]")
    more = fn(f"and i1 {go}, {fn(f'icmp slt i64 {i}, {limit}')}")
    fn.emit(f"br i1 {more}, label %{body}, label %{done}")
    fn.block(body)
    t = fn(f"sub i64 {fn(f'sub i64 {limit}, 1')}, {i}") if reverse else i
    fn.store("i32", fn(f"trunc i64 {t} to i32"), counter)
    for slot, base, row in seq_ptr:
        fn.store("ptr", fn.gep("i8", base, fn.mul(t, row)), fn.gep("ptr", table, slot))
    for slot, j in direct:
        fn.store("ptr", fn.gep("i8", stack_ptr[j], fn.mul(t, stacks[j][1])),
                 fn.gep("ptr", table, slot))
    fn.emit(f"call void {fn.symbol(name)}(ptr {table})")
    bad = fn(f"icmp ne i64 {fn.load('i64', status)}, 0")
    ok = fn.label("lok")
    fn.emit(f"br i1 {bad}, label %{fail}, label %{ok}")
    fn.block(fail)
    restore()
    fn.ret()
    fn.block(ok)
    for i_fetch, src in copy_ptr:
        if i_fetch < nc:
            _memcpy(fn, state_ptr[i_fetch], src, state[i_fetch].nbytes)
        else:
            j = i_fetch - nc
            _memcpy(fn, fn.gep("i8", stack_ptr[j], fn.mul(t, stacks[j][1])), src,
                    stacks[j][1])
    if cond_ptr is not None:
        fn.emit(f"br label %{latch}")
        fn.block(latch)
        fn.lines.append(f"  {gonext} = icmp ne i8 {fn.load('i8', cond_ptr)}, 0")
    else:
        fn.emit(f"br label %{latch}")
        fn.block(latch)
        fn.lines.append(f"  {gonext} = or i1 true, true")
    fn.lines.append(f"  {inext} = add nuw nsw i64 {i}, 1")
    fn.br(head)
    fn.block(done)
    fn.store("i32", fn(f"trunc i64 {i} to i32"), pointer(count_buf))


def _independent(L, n, ins, bound):
    """Whether the iterations of loop ``n`` may run at once (module docstring)."""
    return (L.parent is None and not L.numerics and n.attrs["n_carried"] == 0
            and ins["count"] is None and ins["cond0"] is None and bound is not None
            and bound > 1 and os.environ.get("GRAPHC_PARALLEL_LOOPS", "1") != "0")


def counter_slot(roles, B):
    for feed_slot, (role, _) in zip(B.layout.feeds, roles):
        if role == "counter":
            return feed_slot.index
    return None


def _pool(L):
    from .collective import callback
    return callback(L, "parallel_for")


def _iteration(L, name, n_slots, own, sliced, direct, stacks, copies, reverse, bound,
               counter):
    """``void @<body>.iteration(ptr %ctx, i64 %c)``: iteration t (c, or bound-1-c reversed)
    on a frame of its own, copied from the template ``ctx[0]``. ``ctx`` then holds, in this
    order, the bases of: the per-iteration ranges (``own``), the sliced sequences, the stacks."""
    task = f"{name}.iteration"
    fn = Function(task, [("ptr", "%ctx", "noalias readonly"), ("i64", "%c", "")])
    t = fn(f"sub i64 {bound - 1}, %c") if reverse else "%c"
    frame = fn(f"alloca [{max(n_slots, 1)} x ptr]", "frame")
    template = fn.load("ptr", fn.gep("ptr", "%ctx", 0))
    fn.call("void", "llvm.memcpy.p0.p0.i64", [("ptr", frame), ("ptr", template),
                                              ("i64", str(8 * max(n_slots, 1))), ("i1", "false")])
    k = 1
    mine = {}
    for slot, (_, size) in sorted(own.items()):
        base = fn.load("ptr", fn.gep("ptr", "%ctx", k))
        mine[slot] = fn(f"getelementptr inbounds i8, ptr {base}, i64 {fn.mul(t, size)}")
        fn.store("ptr", mine[slot], fn.gep("ptr", frame, slot))
        k += 1
    if counter is not None:
        fn.store("i32", fn(f"trunc i64 {t} to i32"), mine[counter])
    for slot, _, row in sliced:
        base = fn.load("ptr", fn.gep("ptr", "%ctx", k))
        fn.store("ptr", fn(f"getelementptr inbounds i8, ptr {base}, i64 {fn.mul(t, row)}"),
                 fn.gep("ptr", frame, slot))
        k += 1
    bases = []
    for _, stride in stacks:
        bases.append(fn.load("ptr", fn.gep("ptr", "%ctx", k)))
        k += 1
    for slot, j in direct:
        fn.store("ptr", fn(f"getelementptr inbounds i8, ptr {bases[j]}, i64 "
                           f"{fn.mul(t, stacks[j][1])}"), fn.gep("ptr", frame, slot))
    fn.emit(f"call void @{name}(ptr {frame})")
    for i_fetch, scratch in copies:  # (no carried state: every copy is a stacked value)
        slot = next(sl for sl, (buf, _) in own.items() if buf == scratch)
        j = i_fetch
        _memcpy(fn, fn(f"getelementptr inbounds i8, ptr {bases[j]}, i64 "
                       f"{fn.mul(t, stacks[j][1])}"), mine[slot], stacks[j][1])
    fn.ret()
    return L.module.helper(task, lambda: fn)


def _emit_parallel(fn, pointer, restore, L, fixed):
    (bound, frame, own, sliced, direct, stacks, copies, n_slots, task, status, status_slot,
     count_buf, pool) = fixed
    table = fn(f"alloca [{max(n_slots, 1)} x ptr]", "frame")
    for slot, buf in frame.items():
        fn.store("ptr", pointer(buf), fn.gep("ptr", table, slot))
    if status_slot is not None:  # (every iteration's status words start at 0)
        buf, size = own[status_slot]
        fn.call("void", "llvm.memset.p0.i64", [("ptr", pointer(buf)), ("i8", "0"),
                                               ("i64", str(size * bound)), ("i1", "false")])
    args = [table] + [pointer(buf) for _, (buf, _) in sorted(own.items())]
    args += [pointer(buf) for _, buf, _ in sliced] + [pointer(s) for s, _ in stacks]
    ctx = fn(f"alloca ptr, i64 {len(args)}", "ctx")
    for k, a in enumerate(args):
        fn.store("ptr", a, fn.gep("ptr", ctx, k))
    fn.emit(f"call void {pointer(pool)}(ptr {fn.symbol(task)}, ptr {ctx}, i64 {bound})")
    if status_slot is not None:  # the first failing iteration's status is the step's
        words, step_status = pointer(own[status_slot][0]), pointer(status)
        for t in range(bound):
            code = fn.load("i64", fn.gep("i64", words, 2 * t))
            bad = fn(f"icmp ne i64 {code}, 0")
            ok, fail = fn.label("iok"), fn.label("ifail")
            fn.emit(f"br i1 {bad}, label %{fail}, label %{ok}")
            fn.block(fail)
            fn.store("i64", code, step_status)
            fn.store("i64", fn.load("i64", fn.gep("i64", words, 2 * t + 1)),
                     fn.gep("i64", step_status, 1))
            restore()
            fn.ret()
            fn.block(ok)
    fn.store("i32", str(bound), pointer(count_buf))


@lowers("loop_output")
def lower_loop_output(L, n):
    src = L.loop_results[n.inputs[0]][output_index(n)]
    row = n.attrs.get("row")
    if row is not None:  # (one iteration's row of a stacked result)
        nbytes = _bytes(n.shape, n.dtype)
        src = Buf(src.slot, src.offset + int(row) * nbytes, nbytes)
    # The readers read the loop's own range where they can (nothing else writes it: it lies
    # past the plan's ranges) instead of a copy of it; at the step's level only (kept simple
    # where bodies nest).
    kept = getattr(L.storage, "keep_in", None)
    if L.parent is not None or kept is None or not kept(n, src):
        L.copy(L.out(n), src, n.shape, n.dtype, n)
