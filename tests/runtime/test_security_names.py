"""Tensor, feed and variable names never become code: names with newlines, quotes, three
quotes, backslashes and non-ASCII compile, run, save, load and export on both backends, and
none of them runs what it says.

Before: a loss named ``'l\\nprint(...)\\n#'`` broke the NumPy step's source (a SyntaxError
or IndentationError at best; a well-formed payload ran at every call), and a feed named
with three quotes ended ``export_python``'s docstring.
"""
import importlib.util
import os
import sys

import numpy as np
import pytest

import graphc as gc

from tests.support import artifact_fuzz as F  # noqa: E402

PAYLOAD = "import os; open(os.environ['GRAPHC_TEST_MARKER'], 'a').write('ran')"
NAMES = {
    "newline": "a\n" + PAYLOAD + "\n#",
    "indented": "b\n        " + PAYLOAD + "  #",
    "quotes": "c'\"" + "'''" + '"""\n' + PAYLOAD + '\n"""',
    "backslash": "d\\\n" + PAYLOAD + "\\",
    "non_ascii": "\u00e9t\u00e9/\u4e2d\u6587/\U0001F600\u2028" + PAYLOAD,
    "nfkc": "\ufb01",  # the ligature NFKC-normalizes to "fi": a Python identifier would merge
}


@pytest.fixture(autouse=True)
def marker(tmp_path, monkeypatch):
    path = tmp_path / "marker"
    monkeypatch.setenv("GRAPHC_TEST_MARKER", str(path))
    yield path
    assert not path.exists(), "a name ran as code"


def build(backend, tag):
    """A step whose every user-given name carries the payload ``NAMES[tag]``."""
    name = NAMES[tag]
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, [4, 3], name="x" + name)
        fi = gc.placeholder(gc.float32, [4, 3], name="fi")  # meets "\ufb01" after NFKC
        W = gc.Variable(np.full((3, 2), 0.5, np.float32), name="W" + name)
        with gc.name_scope("scope" + name):
            h = gc.matmul(x + fi, W, name="mm" + name)
        loss = gc.reduce_sum(h * h, name="loss" + name)
        train = gc.train.GradientDescentOptimizer(0.01).minimize(loss, name="train" + name)
        step = gc.compile([loss, train], feeds=[x, fi], backend=backend)
    return step, {x.op.name: np.ones((4, 3), np.float32), "fi": np.ones((4, 3), np.float32)}


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
@pytest.mark.parametrize("tag", sorted(NAMES))
def test_names_compile_run_save_load(backend, tag, tmp_path):
    step, feeds = build(backend, tag)
    first = step(feeds)[0]
    assert np.isclose(first, 4 * 2 * (3 * 2 * 0.5) ** 2)
    path = str(tmp_path / "s.gcx")
    step.save(path)
    loaded = gc.load(path)
    assert loaded.feeds[0]["name"] == "x" + NAMES[tag]  # the name itself survives
    assert np.isclose(loaded(feeds)[0], step(feeds)[0])
    if backend == "numpy":
        for k, module_path in enumerate([tmp_path / "exported.py", tmp_path / "again.py"]):
            (step if k == 0 else loaded).export_python(str(module_path))
            spec = importlib.util.spec_from_file_location(f"exported_{tag}_{k}", module_path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            assert np.isfinite(module.step(feeds)[0])


def test_names_from_a_manifest_do_not_reach_code(tmp_path):
    """A manifest edited to hold such names (checksums recomputed): export_python and the
    loaded step's messages quote them, nothing runs."""
    step, feeds = build("numpy", "newline")
    src = str(tmp_path / "s.gcx")
    step.save(src)
    m, members = F.read_zip(src)
    evil = '"""\n' + PAYLOAD + '\n"""'
    for where in (m["feeds"], m["signatures"][0]["feeds"]):
        where[1]["name"] = evil
    m["name"] = evil
    m["signatures"][0]["fetches"][0]["name"] = evil
    edited = str(tmp_path / "edited.gcx")
    F.reseal(edited, m, members)
    loaded = gc.load(edited)
    out = tmp_path / "from_manifest.py"
    loaded.export_python(str(out))
    spec = importlib.util.spec_from_file_location("from_manifest", out)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    x_name = [f["name"] for f in loaded.feeds][0]
    module.step({x_name: feeds[x_name], evil: feeds["fi"]})


def test_one_escaping_function():
    from graphc.runtime.source_text import comment_text, identifier
    for name in NAMES.values():
        text = comment_text(name)
        assert text.isascii() and text.isprintable()
        assert not set(text) & set("'\"") and "\n" not in text
        assert eval('"""' + text + '"""') == name  # an escape, not a loss: it reads back
        assert identifier(name).isidentifier() or identifier(name)[0].isdigit()
        assert identifier(name).isascii()
