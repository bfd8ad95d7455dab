"""Runs of kernel calls as data: a table of records that one small loop walks.

A deep model's step is hundreds of calls (the 64-layer MLP: 457), each a few loads of table
slots, an address and a call. Written out, that glue was 60% of the module's text and ~57 ms
of LLVM (parse 20, emit 31, optnone as it is) plus its lowering. Instead, ``Lowering.
step_function`` turns each run of plain calls into records of one constant array in the
module (``@gc.call_records``), and the step calls ``@gc.run_calls`` once per run:

    record: [nargs | kind << 8, callee, chunks, pool slot, (slot, offset) x nargs]
    kind 0, a kernel:       kernels[callee](table[slot_0] + offset_0, ...)
    kind 1, in chunks:      table[pool slot](kernels[callee], ctx, chunks), ctx holding
                            the pointers (``parallel.emitter``'s context array)

``callee`` indexes the step's array of kernel addresses (``%kernels``). The words are i32
when every one of them fits (``word_type``; else i64): the 10k-node RNN's 4,708 records are
179 KB of the object code instead of 358, and each copy of the code a warm cache hit makes
(the file read, LLVM's object file, its loaded section) is that much smaller. Calls that report a
status, profiled builds, loops and anything else the step writes itself stay written out, and
split the runs. The records are part of the code (the IR text, the object cache's key, the
object file): a saved step's data cannot steer its calls.
"""
from .ir import Function

# Programs with fewer plain calls than this keep every call written out (a call through the
# table costs a few ns more: loads of the record and a switch on its arity).
MIN_CALLS = 32
MIN_RUN = 2  # shorter runs are written out
MAX_ARGS = 8  # pointers per call (more: written out)
NAME = "gc.run_calls"
RECORDS = "gc.call_records"
KERNEL, CHUNKED = 0, 1
HEAD = 4  # words before the (slot, offset) pairs


def record(kind, callee, bufs, chunks=0, pool=0):
    """The words of one call: ``bufs`` are ``Buf``s (slot and byte offset)."""
    words = [len(bufs) | kind << 8, callee, chunks, pool]
    for b in bufs:
        words += [b.slot, b.offset]
    return words


def word_type(records):
    """"i32" when every word of ``records`` fits in 32 signed bits, else "i64"."""
    return "i32" if all(-2**31 <= w < 2**31 for r in records for w in r) else "i64"


def global_text(records, word="i64", name=RECORDS):
    """The module-level definition of ``@<name>`` (``@gc.call_records``; a loop body's:
    ``@gc.call_records.<body>``) holding ``records`` as ``word``s (``word_type``), and its
    length in words."""
    flat = [w for r in records for w in r]
    body = ", ".join(f"{word} {w}" for w in flat)
    return (f"@{name} = private unnamed_addr constant [{len(flat)} x {word}] [{body}]",
            len(flat))


def run_calls(module, word="i64"):
    """Define ``void @gc.run_calls(ptr %table, ptr %kernels, ptr %rec, i64 %n)`` once (of
    ``word``s: ``@gc.run_calls.i32`` for i32 records): it runs the records in ``%rec[0:%n]``
    (words) in order; returns its name."""
    name = NAME if word == "i64" else f"{NAME}.{word}"

    def read(fn, ptr):  # a word, as i64
        value = fn.load(word, ptr)
        return value if word == "i64" else fn(f"sext {word} {value} to i64")

    def build():
        fn = Function(name, [("ptr", "%table", "noalias readonly"),
                             ("ptr", "%kernels", "noalias readonly"),
                             ("ptr", "%rec", "noalias readonly"), ("i64", "%n", "")],
                      attrs="noinline nounwind optnone")
        ctx = fn(f"alloca ptr, i64 {MAX_ARGS}", "ctx")
        fn.br("head")
        fn.block("head")
        fn.emit("%pc = phi i64 [0, %entry], [%next, %latch]")
        fn.emit("%more = icmp slt i64 %pc, %n")
        fn.emit("br i1 %more, label %record, label %done")
        fn.block("record")
        head = [read(fn, fn.gep(word, "%rec", fn(f"add nsw i64 %pc, {k}")))
                if k else read(fn, fn.gep(word, "%rec", "%pc")) for k in range(HEAD)]
        code, callee, chunks, pool = head
        nargs = fn(f"and i64 {code}, 255", "nargs")
        kind = fn(f"lshr i64 {code}, 8", "kind")
        target = fn.load("ptr", fn.gep("ptr", "%kernels", callee))
        pairs = fn.gep(word, "%rec", fn(f"add nsw i64 %pc, {HEAD}"))
        with fn.loop(nargs, "a") as la:  # ctx[a] = table[slot] + offset
            pair = fn.gep(word, pairs, fn(f"shl nsw i64 {la.i}, 1"))
            slot = read(fn, pair)
            offset = read(fn, fn.gep(word, pair, 1))
            base = fn.load("ptr", fn.gep("ptr", "%table", slot))
            fn.store("ptr", fn(f"getelementptr inbounds i8, ptr {base}, i64 {offset}"),
                     fn.gep("ptr", ctx, la.i))
        chunked = fn(f"icmp eq i64 {kind}, {CHUNKED}")
        fn.emit(f"br i1 {chunked}, label %chunked, label %kernel")
        fn.block("chunked")
        pool_fn = fn.load("ptr", fn.gep("ptr", "%table", pool))
        fn.emit(f"call void {pool_fn}(ptr {target}, ptr {ctx}, i64 {chunks})")
        fn.br("latch")
        fn.block("kernel")
        cases = " ".join(f"i64 {k}, label %args{k}" for k in range(1, MAX_ARGS + 1))
        fn.emit(f"switch i64 {nargs}, label %args0 [ {cases} ]")
        for k in range(MAX_ARGS + 1):
            fn.block(f"args{k}")
            args = [fn.load("ptr", fn.gep("ptr", ctx, j)) for j in range(k)]
            fn.emit(f"call void {target}(" + ", ".join(f"ptr {a}" for a in args) + ")")
            fn.br("latch")
        fn.block("latch")
        size = fn(f"shl nsw i64 {nargs}, 1")
        fn.emit(f"%next = add nsw i64 {fn(f'add nsw i64 %pc, {HEAD}')}, {size}")
        fn.br("head")
        fn.block("done")
        fn.ret()
        return fn
    return module.helper(name, build)


__all__ = ["record", "word_type", "global_text", "run_calls", "MIN_CALLS", "MIN_RUN", "MAX_ARGS", "KERNEL",
           "CHUNKED"]
