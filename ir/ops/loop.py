"""Loops: ``loop`` (a node owning its body) and ``loop_output`` (one of its results).

The structure of a loop (its body, loop variables, captured inputs, trip count) lives in
``ir/loops.py``; here are the two ops' rules. ``loop`` has no value of its own (dtype None,
like ``group``): its results are ``loop_output`` nodes, one per ``(role, index)``, which
``ir.loops.outputs`` makes. ``loop``'s VJP takes the cotangents of all its outputs at once
(``multi_output``): the autodiff driver gathers them from the ``loop_output`` nodes, whose
own VJP only passes their cotangent on (``projects``).
"""
from .. import dtypes as D
from ..shapes import format_shape
from .registry import defop, require


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
        require(x.dtype == v.dtype, f"initial value '{x.name}' is {x.dtype.name}, its loop "
                f"variable {v.dtype.name}", kind="dtype")
    seqs = nodes[k + n_carried:k + n_carried + n_sequences]
    for s in seqs:
        require(s.shape is None or len(s.shape) >= 1,
                f"sequence '{s.name}' is a scalar: loops iterate over axis 0")
    if length is not None:
        require(int(length) >= 0, f"negative number of iterations {length}")
    for s in seqs:
        if length is not None and s.shape is not None and s.shape[0] is not None:
            require(s.shape[0] >= int(length),
                    f"{length} iterations over sequence '{s.name}' {format_shape(s.shape)}")
    return None, None


def _output_infer(nodes, role, index):
    from ..loops import split_inputs, stacked_type
    (loop,) = nodes
    require(loop.op_name == "loop", "loop_output reads a loop node")
    if role == "carried":
        x = split_inputs(loop)["init"][index]
        return x.dtype, x.shape
    if role == "count":
        return D.int32, ()
    require(role == "stacked", f"unknown loop output role {role!r}")
    return stacked_type(loop, index)


def _loop_vjp(cotangents, node, *inputs, **attrs):
    from ..loops import loop_vjp
    return loop_vjp(cotangents, node)


# may_fail: a body op may stop the step (an index out of range); the scheduler runs loops
# before the variable writes they do not feed, as any op that may fail.
LOOP = defop("loop", _loop_infer, _loop_vjp, family="control", multi_output=True,
             may_fail=True,
             doc="runs its body (attrs['body'], ir.loops.LoopBody); results via loop_output")
LOOP_OUTPUT = defop("loop_output", _output_infer, lambda g, out, loop, **a: [None],
                    family="control", projects=True,
                    doc="result (role, index) of the loop it reads")
