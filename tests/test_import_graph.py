"""The project's module import graph (issue 12): which layer may import which, and no cycles.

The graph is built from the source with ``ast``: one node per module of graphc/, ir/, codegen/
and runtime/ (named as installed: ``graphc.ir.graph``, ``graphc.codegen.llvm.lower``...), one
edge per import statement of a project module, function-local imports included (an import
inside a function still ties the two modules together; hiding it there only delays the
cycle). ``from package import name`` points at the submodule when ``name`` is one, else at the
package.
"""
import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import networkx as nx
import pytest
from tests.support.paths import ROOT

ROOTS = {"graphc": "graphc", "graphc.ir": "ir", "graphc.codegen": "codegen",
         "graphc.runtime": "runtime"}


def _modules():
    """{module name: file} of every project module."""
    out = {}
    for name, folder in ROOTS.items():
        base = ROOT / folder
        for path in base.rglob("*.py"):
            rel = path.relative_to(base).with_suffix("").parts
            if rel[-1] == "__init__":
                rel = rel[:-1]
            out[".".join((name,) + rel)] = path
    return out


def _resolve(module, is_package, node):
    """The absolute module a ``from``/``import`` statement names (None: not the project)."""
    if isinstance(node, ast.ImportFrom) and node.level:
        parts = module.split(".")
        base = parts if is_package else parts[:-1]
        base = base[:len(base) - (node.level - 1)]
        return ".".join(base + ([node.module] if node.module else []))
    if isinstance(node, ast.ImportFrom):
        return node.module
    return None


def import_graph():
    """A DiGraph of project modules; edge attribute ``local``: only inside a function."""
    mods = _modules()
    g = nx.DiGraph()
    g.add_nodes_from(mods)
    for mod, path in mods.items():
        is_package = path.name == "__init__.py"
        tree = ast.parse(path.read_text(), str(path))
        local = set()
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                local.update(id(n) for n in ast.walk(fn) if n is not fn)
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(mod, is_package, node)
                for a in node.names:
                    sub = f"{base}.{a.name}"
                    targets.append(sub if sub in mods else base)
            for t in targets:
                while t and t not in mods and "." in t:  # import a.b.c: the deepest known
                    t = t.rsplit(".", 1)[0]
                if t in mods and t != mod:
                    was_local = g.edges[mod, t]["local"] if g.has_edge(mod, t) else True
                    g.add_edge(mod, t, local=was_local and id(node) in local)
    return g


def _cycles(g, prefix):
    sub = g.subgraph([m for m in g if m == prefix or m.startswith(prefix + ".")])
    return [sorted(c) for c in nx.strongly_connected_components(sub) if len(c) > 1]


GRAPH = import_graph()


@pytest.mark.parametrize("layer", ["graphc.codegen", "graphc.ir", "graphc.runtime"])
def test_layer_is_acyclic(layer):
    assert _cycles(GRAPH, layer) == []


def test_runtime_never_reaches_the_compiler():
    runtime = [m for m in GRAPH if m.startswith("graphc.runtime")]
    reached = set().union(*(nx.descendants(GRAPH, m) for m in runtime))
    # the package itself: its ``__init__`` imports nothing but the leaf graphc.errors
    assert sorted(m for m in reached if not m.startswith("graphc.runtime")
                  and m not in ("graphc", "graphc.errors")) == []


def _ir_imports(layers):
    ir = [m for m in GRAPH if m.startswith("graphc.ir")]
    return sorted((a, b) for a in ir for b in GRAPH.successors(a) if b.startswith(layers))


def test_ir_imports_no_backend_nor_api():
    api = tuple(m for m in GRAPH if m.startswith("graphc.") and m != "graphc.errors"
                and not m.startswith(("graphc.ir", "graphc.codegen", "graphc.runtime")))
    assert _ir_imports(("graphc.codegen",) + api) == []


def test_ir_imports_no_runtime():
    assert _ir_imports(("graphc.runtime",)) == []


def test_codegen_imports_no_api():
    codegen = [m for m in GRAPH if m.startswith("graphc.codegen")]
    bad = sorted((a, b) for a in codegen for b in GRAPH.successors(a)
                 if not b.startswith(("graphc.codegen", "graphc.ir", "graphc.runtime"))
                 and b not in ("graphc.errors", "graphc"))
    assert bad == []


def test_the_llvm_kernels_register_through_a_leaf():
    """Kernel modules reach the registry, never the driver; the registry imports nothing."""
    reg = "graphc.codegen.llvm.registry"
    assert [b for b in GRAPH.successors(reg) if b.startswith("graphc.")] == []
    drivers = {"graphc.codegen.llvm.lower", "graphc.codegen.llvm.backend"}
    for m in GRAPH:
        if m.startswith("graphc.codegen.llvm.kernels."):
            assert not drivers & nx.descendants(GRAPH, m), m


def test_the_api_is_acyclic():
    assert _cycles(GRAPH, "graphc") == []


def test_lowering_a_host_call_needs_only_the_lowering_module():
    """``lower_program`` registers every kernel itself: a py_func lowers in a process that
    imported nothing of the LLVM backend but ``lower`` (it once needed ``backend`` first)."""
    code = textwrap.dedent("""
        import sys
        import numpy as np
        import graphc as gc
        from graphc.ir.passes import run_pipeline
        from graphc.ir.program import build_program
        x = gc.placeholder(gc.float32, [3], name="x")
        y = gc.py_func(lambda a: a * 2, [x], gc.float32, shape=[x])
        program = build_program([y], {x: (3,)})
        run_pipeline(program)
        assert not [m for m in sys.modules if m.startswith("graphc.codegen")]
        from graphc.codegen.llvm.lower import lower_program
        text, layout = lower_program(program)
        assert "graphc.codegen.llvm.backend" not in sys.modules
        print("host_call" in text or "callback" in text, len(text) > 0)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1] == "True"


def test_a_numpy_step_imports_nothing_of_the_llvm_backend():
    """``gc.compile(backend="numpy")`` (the split pass's "auto" included) never loads the LLVM
    code generator: ~8 ms of imports on a warm compile-cache hit of a few milliseconds."""
    code = textwrap.dedent("""
        import sys
        import numpy as np
        import graphc as gc
        x = gc.placeholder(gc.float32, [4, 3], name="x")
        step = gc.compile([gc.reduce_sum(gc.tanh(x) * x)], feeds=[x], backend="numpy")
        step({x: np.ones((4, 3), np.float32)})
        print(sorted(m for m in sys.modules if m.startswith("graphc.codegen.llvm")))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=300, env=dict(os.environ, GRAPHC_SPLIT_EXAMPLES="auto"))
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[-2] == "[]"


def test_a_compile_that_cuts_nothing_imports_no_networkx():
    """Importing networkx takes ~85 ms (every algorithm and its backends' entry points), more
    than the whole pipeline of a small step: a compile loads it only where it uses it (the
    split pass, once it cuts a step; a cycle to name)."""
    code = textwrap.dedent("""
        import sys
        import numpy as np
        import graphc as gc
        x = gc.placeholder(gc.float32, [4, 3], name="x")
        w = gc.Variable(np.ones((3, 2), np.float32), name="w")
        loss = gc.reduce_sum(gc.tanh(gc.matmul(x, w)))
        train = gc.train.GradientDescentOptimizer(0.1).minimize(loss)
        for backend in ("numpy", "llvm"):
            step = gc.compile([loss, train], feeds=[x], backend=backend)
            step({x: np.ones((4, 3), np.float32)})
        print("networkx" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=300, env=dict(os.environ, GRAPHC_SPLIT_EXAMPLES="auto"))
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1] == "False"
