"""Dumps: ``GRAPHC_DUMP`` / ``dump_dir=`` write, per compiled signature, the IR after every pass,
a diff per pass, a DOT graph, the generated source, the pass table and the memory plan, byte
for byte the same when the same graph is compiled again; ``GRAPHC_DEBUG`` prints to stderr."""
import os
import subprocess
import sys
import textwrap

import numpy as np

import graphc as gc
from graphc.ir.dot import BACKWARD, FORWARD

from tests.support.pass_testing import mlp

SCRIPT = textwrap.dedent("""
    import numpy as np, graphc as gc
    x = gc.placeholder(gc.float32, [None, 5], name="x")
    y = gc.placeholder(gc.int64, [None], name="y")
    # (a seeded random initializer: compiled, so it is dumped too; a constant one is copied)
    w = gc.Variable(gc.random_normal([5, 3], seed=3), name="w")
    b = gc.Variable(np.zeros(3, np.float32), name="b")
    h = gc.tanh(gc.matmul(x, w) + b)
    loss = gc.reduce_mean(gc.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=h))
    train = gc.train.GradientDescentOptimizer(0.1).minimize(loss)
    step = gc.compile([loss, train])
    step(x=np.ones((4, 5), np.float32), y=np.arange(4) % 3)
""")


def _tree(root):
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            path = os.path.join(d, f)
            with open(path, "rb") as fh:
                out[os.path.relpath(path, root)] = fh.read()
    return out


def _compile_in(dump_dir):
    x, y, loss, train, feeds = mlp(sizes=(5, 4, 3), dtype=np.float32)
    step = gc.compile([loss, train], dump_dir=str(dump_dir))
    step(feeds)
    return step


def test_dump_directory_holds_every_stage_diff_graph_source_and_tables(tmp_path):
    step = _compile_in(tmp_path)
    (sig,) = os.listdir(tmp_path)
    files = sorted(os.listdir(tmp_path / sig))
    stages = [f for f in files if f.endswith(".ir")]
    assert stages[0] == "00-input.ir" and stages[-1].endswith("-plan.ir")
    assert len(stages) == len(step.stats["passes"]) + 1
    assert len([f for f in files if f.endswith(".diff")]) == len(step.stats["passes"])
    for f in ("graph.dot", "passes.txt", "plan.txt", "step.py"):
        assert f in files
    read = lambda f: (tmp_path / sig / f).read_text()  # noqa: E731
    assert read("step.py") == step.source
    fuse_diff = read(next(f for f in files if f.endswith("-fuse.diff")))
    assert fuse_diff.startswith("---") and "+  %" in fuse_diff and "fused{" in fuse_diff
    final = read(stages[-1])
    assert "pass_testing.py:" in final and "body: " in final and "buf=arena[" in final
    assert "in place over %" in final
    table = read("passes.txt")
    assert "fuse" in table and "groups=" in table and "planned peak" in table
    assert " ms" not in table  # timings would make dumps differ between runs
    plan = read("plan.txt")
    assert "decisions:" in plan and "in place" in plan and "update" in plan


def test_dot_clusters_fused_groups_and_colours_forward_and_backward_apart(tmp_path):
    _compile_in(tmp_path)
    (sig,) = os.listdir(tmp_path)
    dot = (tmp_path / sig / "graph.dot").read_text()
    assert dot.startswith('digraph "step" {') and dot.rstrip().endswith("}")
    assert "subgraph cluster_" in dot
    assert f'fillcolor="{FORWARD}"' in dot and f'fillcolor="{BACKWARD}"' in dot
    assert dot.count("{") == dot.count("}")


def test_compiling_the_same_graph_twice_gives_identical_bytes(tmp_path):
    _compile_in(tmp_path / "a")
    gc.reset_default_graph()
    _compile_in(tmp_path / "b")
    a, b = _tree(tmp_path / "a"), _tree(tmp_path / "b")
    assert sorted(a) == sorted(b) and len(a) > 20
    for name in a:
        assert a[name] == b[name], name


def test_dumps_are_identical_across_processes_through_graphc_dump(tmp_path):
    trees = []
    for run in ("one", "two"):
        env = dict(os.environ, GRAPHC_DUMP=str(tmp_path / run))
        subprocess.run([sys.executable, "-c", SCRIPT], env=env, check=True, cwd=tmp_path)
        trees.append(_tree(tmp_path / run))
    assert trees[0] == trees[1]
    assert len({k.split(os.sep)[0] for k in trees[0]}) == 2  # initializer + training step


def test_session_dump_dir_writes_one_directory_per_signature(tmp_path):
    x, y, loss, train, feeds = mlp(sizes=(5, 3))
    with gc.Session(dump_dir=str(tmp_path)) as sess:
        sess.run(gc.global_variables_initializer())
        sess.run([loss, train], feeds)
        feeds[x], feeds[y] = feeds[x][:2], feeds[y][:2]
        sess.run([loss, train], feeds)
    assert len(os.listdir(tmp_path)) == 3


def test_graphc_debug_levels_print_more_and_more(tmp_path, monkeypatch, capsys):
    x = gc.placeholder(gc.float32, [3], name="x")
    out = gc.tanh(x * 2.0) + 1.0
    seen = []
    for level in (1, 2, 3, 4):
        monkeypatch.setenv("GRAPHC_DEBUG", str(level))
        gc.compile(out)
        seen.append(capsys.readouterr().err)
    assert "[graphc] compiled 'step'" in seen[0] and " ms" in seen[0]
    assert "IR after fuse" not in seen[0] and "IR after fuse" in seen[1]
    assert "memory plan" in seen[2] and "memory plan" not in seen[1]
    assert "generated source" in seen[3] and "def make_step" in seen[3]
    monkeypatch.setenv("GRAPHC_DEBUG", "0")
    gc.compile(out)
    assert capsys.readouterr().err == ""
