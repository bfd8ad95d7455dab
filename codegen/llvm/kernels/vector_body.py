"""Elementwise bodies on whole vectors: the epilogues a kernel applies to its register tiles.

A direct convolution (``folds.conv_epilogue``) and a GEMM (``fused_matmul``) compute their
output a vector at a time and apply the elementwise body that follows them before storing:
``render_vector`` writes that body (an ``ir.scalar.Expr`` over float arguments) as vector
instructions. ``VECTOR_BODY_OPS`` are the operations it can write; ``vector_body_ok`` says
whether a body holds only those, on one float dtype (comparisons give masks that only a
``where`` reads).
"""
import numpy as np

from ..ir import float_literal

# max(a, +0) as a compare and a select (see ``render_vector``)
RELU_SELECT = True

_VECTOR_OPS = {"add": "fadd", "sub": "fsub", "mul": "fmul", "div": "fdiv"}
# ordered compares, as the scalar form's (a NaN compares false; ``!=`` is unordered)
_FCMP = {"eq": "oeq", "ne": "une", "lt": "olt", "le": "ole", "gt": "ogt", "ge": "oge"}
VECTOR_BODY_OPS = frozenset(("arg", "const", "neg", "max", "min", "where")) | \
    frozenset(_VECTOR_OPS) | frozenset(_FCMP)


def _zero_const(e):
    """Whether expression ``e`` is the constant +0 (a Python bool: ``render_vector`` indexes
    a max's arguments with it, and a NumPy bool is no index)."""
    return bool(e.op == "const" and e.value == 0.0 and not np.signbit(e.value))


def vector_body_ok(body, dtype):
    """Whether ``render_vector`` can write ``body`` on vectors of ``dtype`` (a float): only
    ``VECTOR_BODY_OPS``, every value of ``dtype`` but the compares' masks, read by ``where``
    alone as its condition."""
    masks = set()
    for e in body.walk():
        if e.op not in VECTOR_BODY_OPS:
            return False
        if e.op in _FCMP:
            if e.args[0].dtype != dtype or e.args[1].dtype != dtype:
                return False
            masks.add(id(e))
            continue
        if e.dtype != dtype:
            return False
        if e.op == "where":
            if id(e.args[0]) not in masks:
                return False
            if any(id(x) in masks for x in e.args[1:]):
                return False
        elif any(id(x) in masks for x in e.args):
            return False
    return id(body) not in masks


def render_vector(fn, body, vals, vt):
    """``body`` on whole vectors of type ``vt`` (``<16 x float>``), its arguments' values
    ``vals`` ({arg index: vector}); returns the result's vector (``vector_body_ok`` bodies)."""
    lanes, elem = vt[1:-1].split(" x ")
    sfx = f"v{lanes}{'f32' if elem == 'float' else 'f64'}"
    memo = {}
    for e in body.walk():
        if e.op == "arg":
            memo[id(e)] = vals[e.value]
        elif e.op == "const":
            memo[id(e)] = f"splat ({elem} {float_literal(e.value, e.dtype)})"
        elif e.op in _VECTOR_OPS:
            a, b = (memo[id(x)] for x in e.args)
            memo[id(e)] = fn(f"{_VECTOR_OPS[e.op]} {vt} {a}, {b}")
        elif e.op == "neg":
            memo[id(e)] = fn(f"fneg {vt} {memo[id(e.args[0])]}")
        elif e.op in _FCMP:
            a, b = (memo[id(x)] for x in e.args)
            memo[id(e)] = fn(f"fcmp {_FCMP[e.op]} {vt} {a}, {b}")
        elif e.op == "where":
            c, a, b = (memo[id(x)] for x in e.args)
            memo[id(e)] = fn(f"select <{lanes} x i1> {c}, {vt} {a}, {vt} {b}")
        elif RELU_SELECT and e.op == "max" and any(_zero_const(x) for x in e.args):
            # max(a, +0) as "a > 0 or a NaN ? a : +0": the same values (-0 -> +0, NaN
            # stays), two instructions where llvm.maximum takes three on AVX2
            a = memo[id(e.args[_zero_const(e.args[0])])]
            keep = fn(f"fcmp ugt {vt} {a}, zeroinitializer")
            memo[id(e)] = fn(f"select <{lanes} x i1> {keep}, {vt} {a}, {vt} zeroinitializer")
        else:  # max / min, NaN-propagating like the scalar form
            name = "maximum" if e.op == "max" else "minimum"
            memo[id(e)] = fn.call(vt, f"llvm.{name}.{sfx}", [(vt, memo[id(x)]) for x in e.args])
    return memo[id(body)]


__all__ = ["render_vector", "vector_body_ok", "VECTOR_BODY_OPS", "RELU_SELECT"]
