"""The compile cache's running hash of a graph (``graphc.client.node_digest``): built as the
graph is, it names a step so that a warm hit in a new process searches no node; the same
graph built again hashes alike and one change anywhere changes it; a graph that grew, or
whose built nodes changed, or a step that needs a node no key can stand for, is keyed by
reading the graph as before, and gives the miss's numbers."""
import linecache
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import graphc as gc
from graphc.client import node_digest, step_cache

MODEL = textwrap.dedent('''
    import numpy as np
    import graphc as gc

    def build(scale=0.5, name="h", extra=False):
        """A tanh layer trained by SGD: (graph, x, y, loss, train)."""
        graph = gc.Graph()
        with graph.as_default():
            x = gc.placeholder(gc.float32, [8, 6], name="x")
            y = gc.placeholder(gc.float32, [8, 5], name="y")
            w = gc.Variable(np.linspace(-1, 1, 30).reshape(6, 5).astype(np.float32), name="w")
            if extra:
                gc.identity(x, name="unused")
            h = gc.tanh(gc.matmul(x, w) * scale, name=name)
            loss = gc.reduce_mean(gc.square(h - y))
            train = gc.train.GradientDescentOptimizer(0.1).minimize(loss)
        return graph, x, y, loss, train
''')


@pytest.fixture
def model(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHC_STEP_CACHE", "1")
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("GRAPHC_NO_CACHE", raising=False)
    (tmp_path / "model.py").write_text(MODEL)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("model", None)
    import model
    yield model
    sys.modules.pop("model", None)


def _data():
    rs = np.random.RandomState(3)
    return rs.randn(8, 6).astype(np.float32), rs.randn(8, 5).astype(np.float32)


def _hash(graph):
    graph.key_flush()
    return graph.key_hash.digest()


def test_the_cache_off_hashes_nothing(monkeypatch):
    monkeypatch.delenv("GRAPHC_STEP_CACHE", raising=False)
    graph = gc.Graph()
    assert graph.key_hash is None and graph.digest_node is None
    with graph.as_default():
        x = gc.placeholder(gc.float32, [3], name="x")
    assert node_digest.fast_rows([x * 2.0], {x: (3,)}) is None


def test_the_same_graph_hashes_alike_and_one_change_changes_it(model):
    first = _hash(model.build()[0])
    assert _hash(model.build()[0]) == first
    for change in ({"scale": 0.25}, {"name": "g"}, {"extra": True}):
        assert _hash(model.build(**change)[0]) != first, change


def test_a_line_or_its_text_changes_the_hash(tmp_path, model):
    """The LLVM step's messages quote each node's line: a moved line or an edited text is
    another graph."""
    def hashed(source, name):
        path = tmp_path / name
        path.write_text(source)
        node_digest._LINES.clear()  # (what this process read of the file before)
        linecache.checkcache(str(path))
        scope = {}
        exec(compile(source, str(path), "exec"), scope)
        return _hash(scope["build"]())
    body = "import graphc as gc\ndef build():\n    g = gc.Graph()\n    with g.as_default():\n" \
           "        x = gc.placeholder(gc.float32, [3], name='x')\n        y = x * 2.0\n" \
           "    return g\n"
    same = hashed(body, "a.py")
    assert hashed(body, "a.py") == same
    assert hashed(body.replace("y = x * 2.0", "y = x * 2.00"), "a.py") != same
    assert hashed("\n" + body, "a.py") != same
    assert hashed(body, "b.py") != same


def test_a_node_renamed_as_it_is_built_hashes_as_if_built_so(model):
    """Importers build a node under a private name and rename it at once: the last node is
    hashed only when the next is built or a key is read."""
    def build(rename):
        graph = gc.Graph()
        with graph.as_default():
            x = gc.placeholder(gc.float32, [3], name="tmp" if rename else "x")
            if rename:
                graph.rename(x, "x")
            gc.identity(x * 2.0, name="out")
        return graph
    graph = build(True)
    assert not graph.key_stale and _hash(graph) == _hash(build(False))


def test_a_built_node_changed_later_stales_the_hash_and_the_step_still_hits_right(model):
    graph, x, y, loss, train = model.build()
    step = gc.compile([loss, train], feeds=[x, y], backend="numpy")
    data = _data()
    want = [step({x: data[0], y: data[1]})[0] for _ in range(2)]
    graph, x, y, loss, train = model.build()
    graph.rename(x, "inputs")  # (built before the rest: its consumers' rows said "x")
    assert graph.key_stale
    assert node_digest.fast_rows([loss, train], {x: (8, 6), y: (8, 5)}) is None
    step = gc.compile([loss, train], feeds=[x, y], backend="numpy")
    assert step.compiled.cache_hit  # (the NumPy key, read from the graph, names no node)
    assert [step({x: data[0], y: data[1]})[0] for _ in range(2)] == want


def test_a_step_needing_a_node_no_key_stands_for_has_no_fast_key(model):
    with gc.Graph().as_default():
        x = gc.placeholder(gc.float32, [3], name="x")
        noisy = x + gc.random_uniform([3])
        seeded = x + gc.random_uniform([3], seed=7)
        after = noisy * 2.0
    assert node_digest.fast_rows([after], {x: (3,)}) is None
    assert noisy.key_tainted and after.key_tainted and not seeded.key_tainted
    assert node_digest.fast_rows([seeded], {x: (3,)}) is not None


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_a_graph_that_grew_hits_by_reading_it_and_is_remembered(model, backend, monkeypatch):
    """Another node built first changes the running hash: that graph misses the memory,
    reads the graph (a hit all the same), and remembers it; the next such graph reads
    nothing."""
    graph, x, y, loss, train = model.build()
    data = _data()
    want = [gc.compile([loss, train], feeds=[x, y], backend=backend)({x: data[0], y: data[1]})[0]]
    reads = []
    rows = step_cache.graph_rows
    monkeypatch.setattr(step_cache, "graph_rows", lambda *a: reads.append(a) or rows(*a))
    for expect in (1, 0):
        graph, x, y, loss, train = model.build(extra=True)
        step = gc.compile([loss, train], feeds=[x, y], backend=backend)
        assert step.compiled.cache_hit and len(reads) == expect
        assert [step({x: data[0], y: data[1]})[0]] == want
        reads.clear()


def test_a_damaged_memory_reads_the_graph(model, monkeypatch):
    graph, x, y, loss, train = model.build()
    data = _data()
    want = gc.compile([loss, train], feeds=[x, y], backend="numpy")({x: data[0], y: data[1]})[0]
    for damaged in (b"z" * 70, b"0" * 64 + np.array([10 ** 6], np.int64).tobytes()):
        monkeypatch.setattr(step_cache, "recall", lambda objects, key, d=damaged: d)
        graph, x, y, loss, train = model.build()
        step = gc.compile([loss, train], feeds=[x, y], backend="numpy")
        assert step.compiled.cache_hit and step({x: data[0], y: data[1]})[0] == want


def test_remembered_feeds_still_say_which_placeholder_is_missing(model):
    graph, x, y, loss, train = model.build()
    gc.compile([loss, train], feeds=[x, y], backend="numpy")
    graph, x, y, loss, train = model.build()
    with pytest.raises(gc.errors.FeedError, match="'y'"):
        gc.compile([loss, train], feeds=[x], backend="numpy")
    graph, x, y, loss, train = model.build()
    step = gc.compile([loss, train], feeds=[x, y], backend="numpy")
    assert step._feeds == [x, y] and list(step.variables) == ["w"]


SCRIPT = textwrap.dedent('''
    import sys
    sys.path.insert(0, sys.argv[1])
    import numpy as np
    import graphc as gc
    from graphc.client import step_cache
    from graphc.ir import program
    from model import build
    searched = []
    for module, name in ((program, "needed_nodes"), (step_cache, "graph_rows")):
        def counted(*a, fn=getattr(module, name), name=name, **k):
            searched.append(name)
            return fn(*a, **k)
        setattr(module, name, counted)
    graph, x, y, loss, train = build()
    rs = np.random.RandomState(3)
    data = rs.randn(8, 6).astype(np.float32), rs.randn(8, 5).astype(np.float32)
    if sys.argv[3] == "session":
        with graph.as_default():
            init = gc.global_variables_initializer()
        sess = gc.Session(graph=graph, backend=sys.argv[2])
        sess.run(init)
        losses = [float(sess.run([loss, train], {x: data[0], y: data[1]})[0]).hex()
                  for _ in range(3)]
        step = type("Ran", (), {"compiled": list(sess._cache.values())[-1]})
    else:
        step = gc.compile([loss, train], feeds=[x, y], backend=sys.argv[2])
        losses = [float(step({x: data[0], y: data[1]})[0]).hex() for _ in range(3)]
    print(bool(getattr(step.compiled, "cache_hit", False)), len(searched), *losses)
''')


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
@pytest.mark.parametrize("how", ["compile", "session"])
def test_a_new_process_hits_without_searching_and_gives_the_misses_bits(model, backend, how,
                                                                        tmp_path):
    (tmp_path / "run.py").write_text(SCRIPT)

    def run():
        out = subprocess.run([sys.executable, str(tmp_path / "run.py"), str(tmp_path),
                              backend, how], capture_output=True, text=True,
                             check=True).stdout
        hit, searched, *losses = out.split()
        return hit == "True", int(searched), losses
    cold = run()
    warm = run()
    assert not cold[0] and cold[1] > 0
    assert warm[:2] == (True, 0) and warm[2] == cold[2]


def test_remembered_positions_come_back_as_the_same_nodes_or_not_at_all():
    """Runs of consecutive positions are written as (first, count) pairs: any order of
    nodes comes back as it went; positions outside the graph or cut pairs read as damaged."""
    with gc.Graph().as_default() as graph:
        x = gc.placeholder(gc.float32, [3], name="x")
        for _ in range(9):
            x = x + 1.0
    nodes = graph.nodes
    for order in ([], nodes, nodes[3:7] + nodes[:2] + [nodes[9], nodes[8], nodes[12]],
                  [nodes[5]] * 3, nodes[::2], [nodes[9], nodes[2], nodes[0]]):  # (singles)
        data = step_cache.node_ids(order, head=[4, 7])
        head, got = step_cache.nodes_at(graph, data, head=2)
        assert head == [4, 7] and list(got) == order
    assert len(step_cache.node_ids(nodes)) == 16  # (one run: a pair)
    for damaged in (np.array([-1, 2], np.int64), np.array([len(nodes) - 1, 2], np.int64),
                    np.array([0, 0], np.int64), np.array([0, 1, 2], np.int64),
                    np.array([0, 1, len(nodes), 1], np.int64),  # (single nodes, one outside)
                    np.array([-1, 1, 3, 1], np.int64)):
        assert step_cache.nodes_at(graph, damaged.tobytes()) is None
    assert step_cache.nodes_at(graph, b"abc") is None


def test_many_remembered_runs_are_read_as_asked_for_and_equal_the_list():
    """Past a few runs, the nodes come as a sequence read on demand: every index, negative
    ones, slices and iteration give the list's nodes, before and after it is made whole;
    a run outside the graph is still refused."""
    with gc.Graph().as_default() as graph:
        x = gc.placeholder(gc.float32, [3], name="x")
        for _ in range(40):
            x = x + 1.0
    nodes = graph.nodes
    order = [n for k, n in enumerate(nodes) if k % 3 != 2]  # (runs of two: 27 of them)
    head, got = step_cache.nodes_at(graph, step_cache.node_ids(order, head=[5]), head=1)
    assert head == [5] and isinstance(got, step_cache.Positions) and len(got) == len(order)
    assert [got[k] for k in (0, 1, 2, 17, len(order) - 1, -1, -len(order))] == \
        [order[k] for k in (0, 1, 2, 17, len(order) - 1, -1, -len(order))]
    with pytest.raises(IndexError):
        got[len(order)]
    assert got[3:9] == order[3:9] and list(got) == order
    assert [got[k] for k in range(len(order))] == order  # (past the eager threshold too)
    runs = np.array([[k, 2] for k in range(0, 60, 3)] + [[len(nodes) - 1, 2]], np.int64)
    assert step_cache.nodes_at(graph, runs.tobytes()) is None


def test_what_the_hash_keeps_on_each_node_is_what_the_key_reads(model):
    """The running hash describes each node by its own fast paths (plain, frozen and one-array
    attributes): each kept description is what ``graph_key.describe`` gives."""
    from graphc.client import graph_key
    graph = model.build()[0]
    with graph.as_default():
        gc.constant(np.arange(40, dtype=np.float32).reshape(8, 5), name="big")
        gc.constant(np.float32(2.5), name="small")
    graph.key_flush()
    initial = {id(v.initial_value) for v in graph.get_collection("variables")}
    assert initial and all(n.key_tainted and n.key_desc is None  # (left out: see below)
                           for n in graph.nodes if id(n) in initial)
    kept = [(n, n.key_desc) for n in graph.nodes if id(n) not in initial]
    assert all(d is not None for _, d in kept)
    for n, desc in kept:
        n.key_desc = None
        assert graph_key.describe(n) == desc, n


def _big(seed, use_const, side=256):
    """A layer whose weight starts from a 256 KB array (more than ``EAGER_BYTES``; or of
    ``side`` squared floats), or which multiplies by such a constant: (graph, x, loss,
    train)."""
    graph = gc.Graph()
    with graph.as_default():
        x = gc.placeholder(gc.float32, [4, side], name="x")
        value = np.random.RandomState(seed).randn(side, side).astype(np.float32) * 0.05
        w = gc.constant(value) if use_const else gc.Variable(value, name="w")
        b = gc.Variable(np.zeros(side, np.float32), name="b")
        loss = gc.reduce_mean(gc.square(gc.matmul(x, w) + b))
        train = gc.train.GradientDescentOptimizer(0.1).minimize(loss)
    return graph, x, loss, train


@pytest.mark.parametrize("side", [256, 8])
def test_an_initial_value_is_not_hashed_and_the_hit_starts_from_the_new_one(model, side):
    """A variable's initial value, 256 KB or 256 bytes (an initializer without a seed draws
    another in every process), is left out of the running hash (the training step does not
    need it): another initial value names the same step by the same hash, hits it, and the
    step starts from the new value."""
    data = np.random.RandomState(5).randn(4, side).astype(np.float32)
    losses, rows = {}, {}
    for seed in (1, 2):
        graph, x, loss, train = _big(seed, use_const=False, side=side)
        step = gc.compile([loss, train], feeds=[x], backend="numpy")
        losses[seed] = [step({x: data})[0] for _ in range(2)]
        rows[seed] = node_digest.fast_rows([loss, train], {x: (4, side)})
        assert rows[seed] is not None
        assert getattr(step.compiled, "cache_hit", False) == (seed == 2)
    assert rows[1] == rows[2]
    gc_off = {}
    for seed in (1, 2):  # (the same steps compiled without the cache)
        graph, x, loss, train = _big(seed, use_const=False, side=side)
        step = gc.compile([loss, train], feeds=[x], backend="numpy", cache=False)
        gc_off[seed] = [step({x: data})[0] for _ in range(2)]
    assert losses == gc_off and losses[1] != losses[2]


def test_a_step_that_needs_a_large_constant_reads_its_graph_and_keys_the_value(model):
    data = np.random.RandomState(5).randn(4, 256).astype(np.float32)
    for seed in (1, 2):
        graph, x, loss, train = _big(seed, use_const=True)
        assert node_digest.fast_rows([loss, train], {x: (4, 256)}) is None
        step = gc.compile([loss, train], feeds=[x], backend="numpy")
        assert not getattr(step.compiled, "cache_hit", False)  # (another constant)
        want = gc.compile([loss, train], feeds=[x], backend="numpy", cache=False)
        assert step({x: data})[0] == want({x: data})[0]
