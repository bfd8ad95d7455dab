"""Loops: ``loop`` (a node owning its body) and ``loop_output`` (one of its results).

The structure of a loop (its body, loop variables, captured inputs, trip count) lives in
``ir/loops.py``; here are the two ops' rules. ``loop`` has no value of its own (dtype None,
like ``group``): its results are ``loop_output`` nodes, one per ``(role, index)``, which
``ir.loops.outputs`` makes. A ``loop_output`` with attribute ``row`` is one iteration's row
of a stacked result (``ir.passes.split`` sums its parts' rows, after the gradients).
``loop``'s VJP takes the cotangents of all its outputs at once (``multi_output``): the
autodiff driver gathers them from the ``loop_output`` nodes, whose own VJP only passes their
cotangent on (``projects``).
"""
from .. import dtypes as D
from ..shapes import format_shape
from .registry import defop, require


# What the rules need of a loop's body as a program, and its adjoint, live in ``ir.loops``,
# which builds on the op registry: it fills this table when imported (a loop node exists only
# once ``ir.loops.make_loop`` made one). Keys: "body_types", "stacked_type", "vjp".
STRUCTURE = {}


def split_inputs(loop):
    """{"count": node|None, "cond0": node|None, "init": [...], "sequences": [...],
    "captured": [...]} of a loop node."""
    a, ins = loop.attrs, list(loop.inputs)
    out = {"count": ins.pop(0) if a["has_count"] else None}
    out["cond0"] = ins.pop(0) if a["body"].cond is not None else None
    k, s = a["n_carried"], a["n_sequences"]
    out["init"], out["sequences"], out["captured"] = ins[:k], ins[k:k + s], ins[k + s:]
    return out


def trip_bound(loop):
    """The static bound on iterations, or None while the sequences' leading dim is unknown."""
    if loop.attrs["length"] is not None:
        return int(loop.attrs["length"])
    seqs = split_inputs(loop)["sequences"]
    dims = {s.shape[0] for s in seqs if s.shape is not None and s.shape[0] is not None}
    return dims.pop() if len(dims) == 1 else None


def _loop_infer(nodes, body, length, reverse, has_count, n_carried, n_sequences):
    k = (1 if has_count else 0) + (1 if body.cond is not None else 0)
    if has_count:
        c = nodes[0]
        require(c.dtype == D.int32 and c.shape == (), f"the trip count must be an int32 "
                f"scalar, found {c.type_str()}", kind="dtype")
    if body.cond is not None:
        c0 = nodes[1 if has_count else 0]
        require(c0.dtype == D.bool_ and c0.shape == (), f"the loop condition must be a bool "
                f"scalar, found {c0.type_str()}", kind="dtype")
    init = nodes[k:k + n_carried]
    for v, x in zip(body.carried, init):
        require(x.dtype == v.dtype, f"initial value '{x.node_name}' is {x.dtype.name}, its loop "
                f"variable {v.dtype.name}", kind="dtype")
    seqs = nodes[k + n_carried:k + n_carried + n_sequences]
    for s in seqs:
        require(s.shape is None or len(s.shape) >= 1,
                f"sequence '{s.node_name}' is a scalar: loops iterate over axis 0")
    if length is not None:
        require(int(length) >= 0, f"negative number of iterations {length}")
    if all(x.shape is not None and None not in x.shape for x in nodes):
        body_types = STRUCTURE["body_types"]  # specialized: the body's types are concrete
        for v, x, (dtype, shape) in zip(body.carried, init, body_types(body, nodes)):
            require(dtype == x.dtype and tuple(shape) == tuple(x.shape),
                    f"the body returns {dtype.short}{format_shape(shape)} for loop variable "
                    f"'{v.node_name}' of {x.type_str()}",
                    hint="a loop variable keeps its dtype and shape across iterations (to let "
                         "a shape change, pass shape_invariants: the loop is then unrolled)")
    for s in seqs:
        if length is not None and s.shape is not None and s.shape[0] is not None:
            require(s.shape[0] >= int(length),
                    f"{length} iterations over sequence '{s.node_name}' {format_shape(s.shape)}")
    return None, None


def _output_infer(nodes, role, index, row=None):
    stacked_type = STRUCTURE["stacked_type"]
    (loop,) = nodes
    require(loop.op_name == "loop", "loop_output reads a loop node")
    require(row is None or role == "stacked", f"a row of the {role} output", kind="graph")
    if role == "carried":
        x = split_inputs(loop)["init"][index]
        return x.dtype, x.shape
    if role == "count":
        return D.int32, ()
    require(role == "stacked", f"unknown loop output role {role!r}")
    dtype, shape = stacked_type(loop, index)
    if row is None:
        return dtype, shape
    # one iteration's row (``ir.passes.split`` sums its parts' rows): every row is written
    require(loop.attrs["body"].cond is None and not loop.attrs["has_count"],
            "a row of the stacked output of a loop that may stop early", kind="graph")
    require(shape is not None and shape[0] is not None and 0 <= int(row) < shape[0],
            f"row {row} of a stacked output of {format_shape(shape)}")
    return dtype, tuple(shape[1:])


def _loop_vjp(cotangents, node, *inputs, **attrs):
    loop_vjp = STRUCTURE["vjp"]
    return loop_vjp(cotangents, node)


# may_fail: a body op may stop the step (an index out of range); the scheduler runs loops
# before the variable writes they do not feed, as any op that may fail.
LOOP = defop("loop", _loop_infer, _loop_vjp, family="control", multi_output=True,
             may_fail=True,
             doc="runs its body (attrs['body'], ir.loops.LoopBody); results via loop_output")
LOOP_OUTPUT = defop("loop_output", _output_infer, lambda g, out, loop, **a: [None],
                    family="control", projects=True,
                    doc="result (role, index) of the loop it reads; attrs['row']: only that "
                        "iteration's row of a stacked result")
