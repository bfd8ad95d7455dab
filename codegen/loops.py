"""What both backends need to run a ``loop`` node: its body as a Program, result positions.

A loop's body is compiled as a program of its own (``ir.loops.body_program``), through the
same passes as the step around it when that step is optimized: CSE, folding, fusion,
in-place decisions and the memory plan all work inside bodies, each body planned apart.
"""
from ..ir.loops import body_feed_shapes, body_program
from ..ir.program import build_program

# The iteration limit of a while loop without a bound (its condition alone stops it).
UNBOUNDED = 1 << 62


def body_for_backend(loop, step):
    """The body's Program of a specialized ``loop`` in program ``step``: through the passes
    the step ran (a new program each time: passes rewrite in place), or the reference when
    the step is not planned (``optimize=False``)."""
    if not getattr(step.plan, "planned", False):
        return body_program(loop)
    from ..ir.passes import run_pipeline
    body = loop.attrs["body"]
    prog = build_program(body.outputs, body_feed_shapes(loop))
    prog.name = body_program(loop).name
    prog.gemm_epilogues = loop.meta.get("gemm_epilogues")  # (the step's backend's: fuse_gemm)
    run_pipeline(prog, [r["name"] for r in step.records] or None)
    return prog


def row_index(node):
    """The index text selecting a ``loop_output``'s row of its stacked result ("" for the
    whole result)."""
    row = node.attrs.get("row")
    return "" if row is None else f"[{int(row)}]"


def output_index(node):
    """Position of ``loop_output`` ``node`` among its loop's results: carried values, then
    stacked values, then the iteration count."""
    loop = node.inputs[0]
    role, k = node.attrs["role"], node.attrs["index"]
    nc = loop.attrs["n_carried"]
    return {"carried": k, "stacked": nc + k,
            "count": nc + len(loop.attrs["body"].stacked)}[role]
