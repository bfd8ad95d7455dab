"""Every example honours ``GRAPHC_BACKEND``: none fixes a backend in code, and a ``--backend``
option defaults to None (the default backend: ``$GRAPHC_BACKEND``, else LLVM where it works)."""
import ast

import pytest

from tests.support.paths import EXAMPLES

SCRIPTS = sorted(EXAMPLES.glob("*.py"))


def _backend_arguments(tree):
    """(line, value) of every ``backend=...`` keyword and every ``--backend`` option's default."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        for kw in node.keywords:
            if kw.arg == "backend":
                yield node.lineno, kw.value
        option = [a.value for a in node.args if isinstance(a, ast.Constant)]
        if option == ["--backend"]:
            for kw in node.keywords:
                if kw.arg == "default":
                    yield node.lineno, kw.value


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.name for s in SCRIPTS])
def test_no_example_fixes_a_backend(script):
    tree = ast.parse(script.read_text(), str(script))
    fixed = [(line, ast.unparse(value)) for line, value in _backend_arguments(tree)
             if isinstance(value, ast.Constant) and value.value is not None]
    assert not fixed, f"{script.name} fixes a backend (overrides GRAPHC_BACKEND): {fixed}"


def test_the_check_sees_a_fixed_backend():
    tree = ast.parse('p.add_argument("--backend", default="numpy")\ngc.Session(backend="llvm")')
    assert [ast.unparse(v) for _, v in _backend_arguments(tree)] == ["'numpy'", "'llvm'"]
