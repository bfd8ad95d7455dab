"""Prune: keep only what the fetches need, and cut dependencies on values read for their shape.

Once a step is specialized every shape is a constant, so an input read only for its shape is
no longer a dependency. The pass rewrites those ops into their static forms, so the producer
of the "like" tensor can die early (or not be computed at all):

    broadcast_like(x, like)   ->  broadcast_to(x, shape=like's shape)
    reshape_like(x, like)     ->  reshape(x, shape=like's shape)
    dim_size(x, axes)         ->  const (the element count, in x's dtype)
    shape_of(x)               ->  const (the shape vector)
    zeros_like(x), ones_like(x) -> splat const of x's shape
    sum_to_like(g, like)      ->  reduce_sum(g, axes, keepdims) (+ reshape), or g

then drops every node no fetch and no variable update depends on.
"""
import numpy as np

from .common import (live_nodes, make_const, new_node, replace_uses, splat_array,
                     tracked_uses)


def _static_form(program, n):
    """The replacement of shape-only op ``n``, or None when ``n`` is not one."""
    op = n.op_name
    if op == "broadcast_like":
        return new_node(program, n, "broadcast_to", [n.inputs[0]], {"shape": n.shape})
    if op == "reshape_like":
        return new_node(program, n, "reshape", [n.inputs[0]], {"shape": n.shape})
    if n.opdef.compile_time and n.inputs:  # a shape query: its value is known now
        like = splat_array(0, n.inputs[0].dtype.np, n.inputs[0].shape)
        value = np.asarray(n.opdef.impl(like, **n.attrs)).astype(n.dtype.np)
        return make_const(program, n, value)
    if op == "sum_to_like":
        return _sum_to(program, n)
    if n.opdef.is_elementwise and n.inputs and len(n.opdef.shape_only) == len(n.inputs):
        # reads no value (zeros_like, ones_like): its formula is a constant
        one = n.opdef.evaluate([np.zeros((), x.dtype.np) for x in n.inputs], n.attrs)
        return make_const(program, n, splat_array(one[()], n.dtype.np, n.shape))
    return None


def _sum_to(program, n):
    """sum_to_like(g, like) with static shapes: a reduce_sum (and reshape), or g itself."""
    g, shape = n.inputs[0], tuple(n.shape)
    lead = g.rank - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, d in enumerate(shape)
                                      if d == 1 and g.shape[lead + i] != 1)
    if not axes:
        return g if tuple(g.shape) == shape else \
            new_node(program, n, "reshape", [g], {"shape": shape})
    total = new_node(program, n, "reduce_sum", [g], {"axis": axes, "keepdims": True})
    if tuple(total.shape) == shape:
        return total
    return new_node(program, n, "reshape", [total], {"shape": shape})


def prune_unused(program):
    """Rewrite shape-only dependencies to static forms, then drop what no root needs.

    Args:
        program: an ``ir.program.Program`` (rewritten in place).
    Returns:
        {"static_shapes": ops rewritten, "removed": nodes dropped}.
    Example:
        >>> prune_unused(program)
        {'static_shapes': 3, 'removed': 4}
    """
    rewritten = 0
    with tracked_uses(program):  # each replacement visits the rewritten node's users only
        for n in list(program.nodes):
            if n.dtype is None or n.shape is None or None in n.shape:
                continue
            repl = _static_form(program, n)
            if repl is not None:
                replace_uses(program, n, repl)
                rewritten += 1
    before = len(program.nodes)
    program.nodes = live_nodes(program)
    return {"static_shapes": rewritten, "removed": before - len(program.nodes)}
