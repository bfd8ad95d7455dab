"""Loop unrolling: a loop of few iterations, known when the step is compiled, becomes copies
of its body, one per iteration.

A loop node runs its body through a call per iteration, with a copy of the carried state and
of each stacked value; a short loop pays that more than it saves in code size and compile
time. This pass copies the specialized body (``ir.loops.body_program``) once per iteration in
place of the loop: element t of each sequence is a slice, the counter a constant, the stacked
results one ``stack``; the later passes then fuse and plan across iterations as in any graph.
It takes loops whose trip count is static (no ``cond``, no run-time count) and at most
``UNROLL_AT_MOST`` (``GRAPHC_UNROLL=N`` sets it; 0 keeps every loop a loop), and whose copies
stay under ``NODES_AT_MOST`` nodes. The bound is measured (README, "Loops"): at T = 16 the
unrolled RNN step was about 10-20% faster than the loop, at T = 64 they were equal.
"""
import os

import numpy as np

from ..loops import body_program, feed_roles, split_inputs, trip_bound
from .common import index_of, new_node, refresh, replace_uses

UNROLL_AT_MOST = 16
NODES_AT_MOST = 4000


def _limit():
    value = os.environ.get("GRAPHC_UNROLL", "").strip()
    return int(value) if value.isdigit() else UNROLL_AT_MOST


def unroll_loops(program):
    """Replace short static loops by copies of their bodies.

    Args:
        program: an ``ir.program.Program`` (rewritten in place).
    Returns:
        {"unrolled": loops unrolled, "copied": body nodes copied}.
    Example:
        >>> unroll_loops(program)          # a dynamic_rnn over 8 steps
        {'unrolled': 2, 'copied': 96}
    """
    limit, done, copied = _limit(), 0, 0
    for loop in [n for n in program.nodes if n.op_name == "loop"]:
        body = loop.attrs["body"]
        if body.cond is not None or loop.attrs["has_count"]:
            continue
        trip = trip_bound(loop)
        if trip is None or trip > limit:
            continue
        prog = body_program(loop)
        if len(prog.nodes) * trip > NODES_AT_MOST:
            continue
        made = _unroll(program, loop, prog, trip)
        at = index_of(program.nodes, loop)
        program.nodes[at:at] = made  # their inputs precede the loop; its users follow it
        done, copied = done + 1, copied + len(made)
    if done:
        refresh(program)
    return {"unrolled": done, "copied": copied}


def _unroll(program, loop, prog, trip):
    """The nodes computing ``loop``'s results without it (the results' users rewired)."""
    made = []

    def node(like, op, inputs, attrs):
        m = new_node(program, like, op, inputs, attrs, schedule=False)
        made.append(m)
        return m
    ins, roles = split_inputs(loop), feed_roles(prog, loop)
    body = loop.attrs["body"]
    nc, ns = len(body.next), len(body.stacked)
    state, rows = list(ins["init"]), [[None] * trip for _ in range(ns)]
    for i in range(trip):
        t = trip - 1 - i if loop.attrs["reverse"] else i
        env = {}
        for f, (role, k) in zip(prog.feeds, roles):
            if role == "carried":
                env[f] = state[k]
            elif role == "sliced":
                env[f] = node(loop, "strided_slice", [ins["sequences"][k]],
                              {"spec": (("i", t),)})
            elif role == "counter":
                value = np.array(t, np.int32)
                value.setflags(write=False)
                env[f] = node(loop, "const", [], {"value": value})
            else:
                env[f] = ins["captured"][k]
        for n in prog.nodes:
            if n not in env:
                env[n] = node(n, n.opdef, [env[x] for x in n.inputs], n.attrs)
        outs = [env[f] for f in prog.fetches]
        state = outs[:nc]
        for j in range(ns):
            rows[j][t] = outs[nc + j]
    results = {("carried", k): v for k, v in enumerate(state)}
    for j in range(ns):
        results[("stacked", j)] = node(loop, "stack", rows[j], {"axis": 0}) if trip else None
    count = np.array(trip, np.int32)
    count.setflags(write=False)
    results[("count", 0)] = node(loop, "const", [], {"value": count})
    for proj in [n for n in program.nodes if n.op_name == "loop_output" and n.inputs[0] is loop]:
        row = proj.attrs.get("row")
        if row is not None:  # (one iteration's row of a stacked result: that iteration's value)
            new = rows[proj.attrs["index"]][row]
        else:
            new = results.get((proj.attrs["role"], proj.attrs["index"]))
        if new is not None:
            replace_uses(program, proj, new)
    return made
