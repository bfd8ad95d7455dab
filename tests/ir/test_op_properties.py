"""Op properties live in the op's declaration, nowhere else (DESIGN: one op, one declaration).

Two halves: no module of the compiler keeps a side table of op names (a literal tuple, set,
list or dict whose strings are mostly registered op names), and the declared properties are
consistent with what the ops build (every view has one value input of its size, every leaf
has no inputs, ...), checked on every node the op table and its gradients create.
"""
import ast

import numpy as np
import pytest

import graphc as gc
from graphc.ir.ops import REGISTRY
from graphc.ir.passes import fuse  # noqa: F401  (registers the "fused" op)

from tests.support import optable
from tests.support.paths import ROOT

SCANNED = ("ir", "codegen", "graphc")

# Literal collections of op names that are not property tables, with why. Keyed by the file
# (or a folder, ending in "/") and the op names the literal holds (None: any), so that a new
# table next to them is still reported.
ALLOWED = {
    # scalar expression primitives (ir.scalar), whose names happen to match graph ops
    ("ir/scalar.py", frozenset({"exp", "log", "log1p", "tanh", "pow", "sqrt", "floordiv",
                                "sin", "cos"})),
    ("codegen/llvm/scalar.py", frozenset({"sqrt", "floor"})),
    ("codegen/llvm/scalar.py", frozenset({"exp", "log", "log1p", "tanh", "pow", "sin", "cos"})),
    # the math library's helpers that also come as vectors (named as the scalar ones)
    ("codegen/llvm/math.py", frozenset({"exp", "log"})),
    # the DOT picture colours and dashes the two state ops its legend names
    ("ir/dot.py", frozenset({"assign", "group"})),
    # TF1's feed rule: feeding these would replace their effect by a value
    ("graphc/", frozenset({"assign", "group"})),
    # kernel dispatch: op -> the code that runs it (a backend's table, not a property)
    ("codegen/numpy/templates.py", None),
    ("codegen/llvm/kernels/random.py", None),
    ("codegen/llvm/kernels/nn.py", None),
    ("codegen/llvm/kernels/row_columns.py", None),  # (nn's softmax family, rows in blocks)
    ("codegen/llvm/kernels/pool.py", None),
    # the public API: TF1 wrappers built from op names, and a namespace's list of names
    ("graphc/ops/", None),
    ("graphc/math.py", None),
    # the random-graph fuzzer's recipes: op -> how to build it and bound its output
    ("graphc/testing/", None),
}


def _literal_op_names(node, names):
    if isinstance(node, (ast.Tuple, ast.Set, ast.List)):
        elts = node.elts
    elif isinstance(node, ast.Dict):
        elts = [k for k in node.keys if k is not None]
    else:
        return None
    strings = [e.value for e in elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
    ops = [s for s in strings if s in names]
    if len(ops) >= 2 and 2 * len(ops) > len(elts):
        return frozenset(ops)
    return None


def _allowed(path, ops):
    return any((p == path or p.endswith("/") and path.startswith(p))
               and (allowed is None or allowed == ops) for p, allowed in ALLOWED)


def _tables():
    names = set(REGISTRY)
    for folder in SCANNED:
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            for node in ast.walk(ast.parse(path.read_text(), rel)):
                ops = _literal_op_names(node, names)
                if ops is not None and not _allowed(rel, ops):
                    yield f"{rel}:{node.lineno}: {sorted(ops)}"


def test_no_side_tables_of_op_names():
    found = list(_tables())
    assert not found, ("op properties belong in the op's declaration (ir/ops, OpDef); "
                       "these literals list op names:\n" + "\n".join(found))


def test_the_scan_finds_a_table():
    names = set(REGISTRY)
    tree = ast.parse('VIEWS = ("reshape", "squeeze", "expand_dims")\nop in ("add", "x")')
    found = [n for n in ast.walk(tree) if _literal_op_names(n, names)]
    assert len(found) == 1 and found[0].lineno == 1


# -- the properties agree with the ops ---------------------------------------------------------

def test_declared_properties_fit_together():
    for op in REGISTRY.values():
        assert not (op.view and op.identity), op
        if op.identity:
            assert op.is_elementwise and op.arity == 1, op
        if op.destroys:
            assert not op.is_elementwise, f"{op}: elementwise ops may overwrite any input"
        if op.random:
            assert op.impure, op
        if op.compile_time:
            assert not op.impure and (op.leaf or op.shape_only), op
        if op.leaf:
            assert not (op.view or op.identity or op.shape_only or op.destroys), op
        assert op.reduce in (None, "sum", "mean", "max", "min"), op
        assert op.linear in (None, "first", "each", "all"), op
        if op.domain is not None:  # where the op table samples a unary op's input
            assert op.is_elementwise and op.arity == 1 and op.domain[0] < op.domain[1], op
        if op.linear in ("each", "all"):
            assert op.arity == 2 or op.broadcast_core == 2, op
    leaves = {n for n, op in REGISTRY.items() if op.leaf}
    assert leaves == {"placeholder", "variable", "const"}
    assert {n for n in leaves if REGISTRY[n].external} == {"placeholder", "variable"}


def _nodes_of_the_op_table():
    """Every node the op table's rows (and their gradients) build, with static shapes."""
    nodes = []
    for r in optable.ROWS:
        g = gc.Graph()
        with g.as_default():
            phs, _, out = optable.instantiate(r, r.dtypes[0], dynamic=False)
            if r.grad and out.dtype.is_floating:
                wrt = [p for p, a in zip(phs, r.args) if a.diff]
                gc.gradients(gc.reduce_sum(out), wrt)
        nodes += g.nodes
    g = gc.Graph()
    with g.as_default():  # the ops no row builds: RNG, control dependencies, checks
        x = gc.placeholder(gc.float32, [3, 4])
        w = gc.Variable(np.ones((3, 4), np.float32))
        with gc.control_dependencies([gc.assign(w, x)]):
            y = gc.check_numerics(x * 2.0, "y") + gc.random_normal([3, 4])
        gc.nn.dropout(y, rate=0.5) + gc.random_uniform([4]) + gc.truncated_normal([4])
    return nodes + g.nodes


@pytest.fixture(scope="module")
def table_nodes():
    return _nodes_of_the_op_table()


def test_every_property_holds_on_the_nodes_ops_build(table_nodes):
    seen = set()
    for n in table_nodes:
        op, label = n.opdef, n.describe()
        seen.add(op.name)
        if op.leaf:
            assert not n.inputs, label
        for i in op.shape_only + op.destroys:
            assert i < len(n.inputs), f"{label}: no input {i}"
        if op.orders is not None:
            assert 0 < op.orders <= len(n.inputs), label
        if op.view or op.identity:
            x = n.inputs[0]
            assert n.dtype == x.dtype and np.prod(n.shape) == np.prod(x.shape), \
                f"{label}: a view must have its input's dtype and size"
        if op.identity:
            assert tuple(n.shape) == tuple(n.inputs[0].shape), label
        for i in op.destroys:
            assert n.inputs[i].dtype == n.dtype, f"{label}: overwrites input {i} of another type"
    declared = {n for n, op in REGISTRY.items()
                if op.view or op.identity or op.shape_only or op.destroys or op.compile_time
                or op.random or op.orders is not None}
    # made by the fuse pass: tests/passes/test_passes_fuse_xent.py, test_passes_fuse_gemm.py
    made_by_passes = {"sparse_softmax_xent_with_grad", "softmax_xent_with_grad",
                      "subtract_matmul"}
    assert not declared - seen - {"allreduce_mean"} - made_by_passes, \
        "ops with properties the table never built"
