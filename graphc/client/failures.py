"""What a failed step raises: the graphc error for an exception from inside a compiled step,
named after the node whose kernel failed and the user's line (bad indices and labels, NaN or
Inf under check_numerics, undeclared writes), never a NumPy traceback from generated code."""
import re

from ..errors import CompileError, GraphcError
from ..runtime.numerics import NumericsSite
from ..runtime.numerics import numerics_error as site_error


def step_error(compiled, exc):
    """The graphc error for an exception raised inside a compiled step.

    Debugging checks become ``NumericsError`` (first NaN/Inf, naming the node, its op and the
    user's line; a gradient node names the forward line it differentiates) or
    ``CompileError`` (an undeclared write); other failures are named by their node.
    """
    if type(exc).__name__ == "StepFault" and exc.args:
        kind, k = exc.args[0], exc.args[1]
        site_kind, node, detail = compiled.sites[k]
        if kind == "numerics":
            return numerics_error(node, exc.args[2] if len(exc.args) > 2 else None,
                                  detail if site_kind == "check" else None)
        if kind == "index":  # a bad index or label (runtime.step_errors: one message)
            return detail.error(exc.args[2], exc.args[3])
        if kind == "writes":
            return CompileError(f"{node.describe()}: wrote into '{exc.args[2]}', a buffer it "
                                "was not given (an undeclared write)",
                                ["the memory plan or the kernel is wrong: please report it"],
                                node.loc)
    if isinstance(exc, FloatingPointError) and str(exc).startswith("check_numerics:"):
        node = failed_node(compiled, exc)  # the check's node, from the generated line
        if node is not None:
            return numerics_error(node, getattr(exc, "value", None),
                                  str(exc)[len("check_numerics: "):])
    return step_failure(compiled, exc)


def numerics_error(node, value, message=None):
    """NumericsError naming ``node`` and what it produced; ``message`` (not None) marks an
    explicit ``gc.check_numerics`` node. The text is ``runtime.numerics``'s, which the LLVM
    backend's checks (and saved steps) raise too."""
    return site_error(NumericsSite.of(node, message), value)


def failed_node(compiled, exc):
    """The node whose generated line (its ``# op 'name'`` note) raised ``exc`` inside a
    compiled NumPy step, or None."""
    lines = compiled.source.splitlines() if isinstance(compiled.source, str) else []
    node, tb = None, exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.startswith("<graphc"):
            noted = _noted_node(compiled.program, lines, tb.tb_lineno)
            node = node if noted is None else noted
        tb = tb.tb_next
    return node


def step_failure(compiled, exc):
    """A GraphcError for an exception raised inside a compiled NumPy step, naming the node
    whose generated line failed (its ``# op 'name'`` note) and the user's line."""
    node = failed_node(compiled, exc)
    what = node.describe() if node is not None else "the compiled step"
    return GraphcError(f"{what}: failed at run time: {type(exc).__name__}: {exc}",
                       loc=None if node is None else node.loc,
                       hint="an index or label out of range for the fed or stored values?")


def _noted_node(program, lines, lineno):
    """The node named by the ``# op 'name'`` note on a generated line or the lines above it
    (within its statement block)."""
    for i in range(min(lineno, len(lines)) - 1, -1, -1):
        m = re.search(r"# (\w+) '([^']+)'", lines[i])
        if m:
            return next((n for n in program.nodes if n.node_name == m.group(2)), None)
        if lines[i].lstrip().startswith(("def ", "with ")):
            return None
    return None
