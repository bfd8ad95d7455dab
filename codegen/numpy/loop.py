"""Loops in the NumPy backend: a Python ``while`` in the step, calling the body's function.

The body (``ir.loops.body_program``; optimized by the same passes when the step is) is
rendered by a nested ``Emitter`` as a function ``body_<name>(<loop variables and captured
values>)`` returning its outputs (next state, stacked values, condition), defined once in
``make_step``. The loop statement in the step reads::

    # loop 'rnn/while' (at most 256 iterations)
    l3_c = [t1]                          # the carried state
    l3_s = [np.zeros((256, 32, 128), np.float32)]
    l3_n, l3_go = 0, True
    while l3_go and l3_n < 256:
        l3_t = l3_n                      # (reverse: 255 - l3_n)
        l3_r = body_rnn_while(l3_c[0], f_x[l3_t], v_W)
        l3_c = list(l3_r[:1])
        l3_s[0][l3_t] = l3_r[1]
        l3_n += 1
    t4 = (*[np.array(c) for c in l3_c], *l3_s, np.int32(l3_n))  # what loop_outputs read

Bodies are rendered without a memory plan: each iteration makes new arrays (the step's own
values around the loop keep their planned buffers).
"""
from ...ir.loops import check_trip, feed_roles, split_inputs
from ..loops import UNBOUNDED, body_for_backend, output_index, row_index


def loop_lines(em, n):
    """Statements running loop node ``n`` in emitter ``em``'s step; defines the body
    function in ``em.setup``. ``em.name(n)`` is bound to the tuple of results."""
    body = n.attrs["body"]
    bound = check_trip(n)
    prog = body_for_backend(n, em.p)
    sub = em.nested(prog)
    sub.consts, sub.kernels, sub.seeds, sub.sites = em.consts, em.kernels, em.seeds, em.sites
    fn = prog.name
    taken = getattr(em, "body_names", set())
    k = 1
    while fn in taken:
        fn, k = f"{prog.name}_{k}", k + 1
    taken.add(fn)
    em.body_names = taken
    sub.body_names = taken
    lines = sub.body_lines()
    params = ", ".join(sub.name(f) for f in prog.feeds)
    outs = ", ".join(sub.name(f) for f in prog.fetches)
    em.setup += sub.setup + [f"def {fn}({params}):  # {body_note(n)}",
                             "    with np.errstate(all='ignore'):"]
    em.setup += ["        " + line for line in lines] or ["        pass"]
    em.setup += [f"    return ({outs}{',' if prog.fetches else ''})", ""]
    ins = split_inputs(n)
    p = f"l{n.id}_"
    nc, ns = len(body.next), len(body.stacked)
    args = []
    for role, j in feed_roles(prog, n):
        if role == "carried":
            args.append(f"{p}c[{j}]")
        elif role == "sliced":
            args.append(f"{em.name(ins['sequences'][j])}[{p}t]")
        elif role == "counter":
            args.append(f"np.int32({p}t)")
        else:
            args.append(em.name(ins["captured"][j]))
    limit = str(bound) if bound is not None else str(UNBOUNDED)
    if ins["count"] is not None:
        limit = f"min({bound}, int({em.name(ins['count'])}))"
    out = [f"{p}c = [{', '.join(em.name(x) for x in ins['init'])}]"]
    shapes = [prog.fetches[nc + j] for j in range(ns)]
    out.append(f"{p}s = [" + ", ".join(
        f"np.zeros({(bound,) + tuple(s.shape)!r}, np.{s.dtype.np.name})" for s in shapes) + "]")
    go = "True" if ins["cond0"] is None else f"bool({em.name(ins['cond0'])})"
    out += [f"{p}n, {p}go, {p}limit = 0, {go}, {limit}",
            f"while {p}go and {p}n < {p}limit:",
            f"    {p}t = {p}limit - 1 - {p}n" if n.attrs["reverse"] else f"    {p}t = {p}n",
            f"    {p}r = {fn}({', '.join(args)})"]
    if nc:
        out.append(f"    {p}c = list({p}r[:{nc}])")
    for j in range(ns):
        out.append(f"    {p}s[{j}][{p}t] = {p}r[{nc + j}]")
    if body.cond is not None:
        out.append(f"    {p}go = bool({p}r[{nc + ns}])")
    out.append(f"    {p}n += 1")
    # The results own their memory: a carried value may still be an input's planned buffer
    # (no iteration ran, or the body passed a value through), which later nodes reuse.
    out.append(f"{em.name(n)} = (*[np.array(c) for c in {p}c], *{p}s, np.int32({p}n))")
    return out


def body_note(n):
    body = n.attrs["body"]
    return (f"body of loop '{n.node_name}': {len(body.carried)} carried, {len(body.sliced)} "
            f"sliced, {len(body.stacked)} stacked")


__all__ = ["loop_lines", "output_index", "row_index"]
