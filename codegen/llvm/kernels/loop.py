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

Results (carried state, stacks, count) live in private arena ranges until the ``loop_output``
nodes copy them into their planned buffers (``lower_loop_output``).
"""
from graphc.errors import CompileError

from ....ir import dtypes as D
from ....ir.loops import check_trip, feed_roles, split_inputs
from ...loops import UNBOUNDED, body_for_backend, output_index
from ..buffers import nbytes_of
from ..ir import symbol
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
    B = L.nested(prog)
    if B._seeds or B.layout.callbacks:
        raise CompileError(f"{n.describe()}: random ops or host calls in a loop body",
                           loc=n.loc)
    name = f"body{len(L.module.functions)}_{symbol(n.node_name)}"
    fn_body = B.step_function(name=name, linkage="internal")
    L.module.add(fn_body)
    ins, roles = split_inputs(n), feed_roles(prog, n)
    nc = len(body.next)
    # outer storage: state, stacks, count, counter, the body's arena
    state = [L.arena(nbytes_of(x)) for x in ins["init"]]
    stacks = []
    for j in range(len(body.stacked)):
        f = prog.fetches[nc + j]
        stacks.append((L.arena(bound * _bytes(f.shape, f.dtype)), _bytes(f.shape, f.dtype)))
    count_buf, counter_buf = L.arena(4), L.arena(4)
    L.loop_results = getattr(L, "loop_results", {})
    L.loop_results[n] = state + [s for s, _ in stacks] + [count_buf]
    frame = {}  # frame slot -> outer Buf (fixed for the whole loop)
    for slot, value in B.layout.consts:
        outer = L.new_slot()
        L.layout.consts.append((outer, value))
        frame[slot] = Buf(outer, 0, 0)
    for slot, dtype_name, _ in B.layout.blas:
        frame[slot] = L.blas(D.as_dtype(dtype_name))[0]
    arena_slot = B._slot_of.get("arena")
    if arena_slot is not None:
        frame[arena_slot] = L.arena(B.arena_size)
    status = L.status()  # the body's status word is the step's
    status_slot = B._slot_of.get("status")
    if status_slot is not None:
        frame[status_slot] = status
    sliced = []  # (frame slot, sequence Buf, row bytes)
    for feed_slot, (role, k) in zip(B.layout.feeds, roles):
        if role == "carried":
            frame[feed_slot.index] = state[k]
        elif role == "counter":
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
        scratch = L.arena(_bytes(slot.shape, D.as_dtype(slot.dtype)))
        frame[slot.index] = scratch
        for i in fetched:
            if i < nc + len(stacks):
                copies.append((i, scratch))
            else:
                cond_buf = scratch
    fixed = (n.attrs["reverse"], bound, ins, state, stacks, count_buf, counter_buf, frame,
             sliced, direct, copies, cond_buf, B.layout.n_slots, name, nc, status)

    def emit(fn, pointer, restore):
        _emit_loop(fn, pointer, restore, L, fixed)
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


@lowers("loop_output")
def lower_loop_output(L, n):
    src = L.loop_results[n.inputs[0]][output_index(n)]
    L.copy(L.out(n), src, n.shape, n.dtype, n)
