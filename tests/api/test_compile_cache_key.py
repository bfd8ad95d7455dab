"""The compile cache's key (``step_cache.step_key``, read by ``graph_key``): one change of
anything a compiled step depends on changes it (an attribute, a shape, a constant's value, a
dtype, the order of an op's inputs, the pass list, the backend, the checks), the same graph
built again (here or in a new process) gives it again, and what is kept on nodes between two
keys (``Node.key_desc``) is only what cannot change: a writable array, a renamed or moved node
is read again."""
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import graphc as gc
from graphc.client import graph_key, step_cache
from graphc.ir import passes as P
from graphc.ir.ops import get as get_op
from graphc.ir.program import needed_nodes

MODEL = textwrap.dedent('''
    import numpy as np
    import graphc as gc

    def build(transpose=False, batch=8, scale=0.5, dtype=gc.float32, swap=False):
        """fetches and feed shapes of a small tanh network trained by SGD."""
        x = gc.placeholder(dtype, [None, 6], name="x")
        w = gc.Variable(np.linspace(-1, 1, 30).reshape(6, 5).astype(dtype.np), name="w")
        v = gc.Variable(np.linspace(-1, 1, 25).reshape(5, 5).astype(dtype.np), name="v")
        b = gc.Variable(np.zeros(5, dtype.np), name="b")
        h = gc.tanh(gc.matmul(x, w) * scale)
        h = (b - h) if swap else (h - b)
        h = gc.matmul(h, v, transpose_b=transpose)
        loss = gc.reduce_mean(gc.square(h))
        train = gc.train.GradientDescentOptimizer(0.1).minimize(loss)
        return [loss, train], {x: (batch, 6)}
''')
SCRIPT = textwrap.dedent('''
    import sys
    import graphc as gc
    from graphc.client import step_cache
    from graphc.ir import passes as P
    sys.path.insert(0, sys.argv[1])
    from model import build
    for backend in ("numpy", "llvm"):
        with gc.Graph().as_default():
            fetches, shapes = build()
            print(step_cache.step_key(fetches, shapes, backend, list(P.DEFAULT_PIPELINE),
                                      ())[0])
''')


@pytest.fixture
def model(tmp_path, monkeypatch):
    (tmp_path / "model.py").write_text(MODEL)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("model", None)
    import model
    yield model
    sys.modules.pop("model", None)


def _key(model, backend="numpy", passes=None, checks=(), **kw):
    with gc.Graph().as_default():
        fetches, shapes = model.build(**kw)
        names = list(P.DEFAULT_PIPELINE if passes is None else passes)
        return step_cache.step_key(fetches, shapes, backend, names, checks)[0]


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_one_change_of_what_compiles_changes_the_key(model, backend):
    base = _key(model, backend)
    assert base is not None and _key(model, backend) == base
    changed = {
        "an attribute": _key(model, backend, transpose=True),
        "a feed shape": _key(model, backend, batch=4),
        "a constant": _key(model, backend, scale=0.25),
        "a dtype": _key(model, backend, dtype=gc.float64),
        "the order of inputs": _key(model, backend, swap=True),
        "the pass list": _key(model, backend, passes=["cse", "dce"]),
        "the backend": _key(model, "llvm" if backend == "numpy" else "numpy"),
        "the checks": _key(model, backend, checks=("numerics",)),
    }
    assert None not in changed.values()
    for what, key in changed.items():
        assert key != base, what
    assert len(set(changed.values())) == len(changed)


def test_the_same_graph_built_in_a_new_process_has_the_same_key(model, tmp_path):
    (tmp_path / "script.py").write_text(SCRIPT)
    out = subprocess.run([sys.executable, str(tmp_path / "script.py"), str(tmp_path)],
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == [_key(model, "numpy"), _key(model, "llvm")]


def test_a_second_key_reads_the_descriptions_kept_on_nodes(model, monkeypatch):
    with gc.Graph().as_default():
        fetches, shapes = model.build()
        names = list(P.DEFAULT_PIPELINE)
        first, nodes = step_cache.step_key(fetches, shapes, "llvm", names, ())
        assert all(n.key_desc is not None for n in nodes)
        described = []
        monkeypatch.setattr(graph_key, "_describe_all",
                            lambda *a: described.append(a) or pytest.fail("described again"))
        monkeypatch.setattr(graph_key, "describe", described.append)
        assert step_cache.step_key(fetches, shapes, "llvm", names, ())[0] == first
        assert described == []


def test_a_writable_array_attribute_is_read_again_at_each_key():
    with gc.Graph().as_default() as graph:
        x = gc.placeholder(gc.float32, [3], name="x")
        value = np.arange(3, dtype=np.float32)  # (writable: gc.constant's are read-only)
        c = graph.add_node(get_op("const"), [], {"value": value}, gc.float32, (3,))
        out = x + c
        first = step_cache.step_key([out], {x: (3,)}, "numpy", [], ())[0]
        assert c.key_desc is None and x.key_desc is not None
        value[1] = 7.0
        assert step_cache.step_key([out], {x: (3,)}, "numpy", [], ())[0] != first
        value[1] = 1.0
        assert step_cache.step_key([out], {x: (3,)}, "numpy", [], ())[0] == first


def test_renaming_or_moving_a_node_changes_the_llvm_key_after_descriptions_are_kept():
    from graphc.ir.source import Location
    with gc.Graph().as_default() as graph:
        x = gc.placeholder(gc.float32, [3], name="x")
        out = gc.tanh(x, name="t") * 2.0
        keys = {b: step_cache.step_key([out], {x: (3,)}, b, [], ())[0]
                for b in ("numpy", "llvm")}
        graph.rename(out.inputs[0], "renamed")
        assert step_cache.step_key([out], {x: (3,)}, "llvm", [], ())[0] != keys["llvm"]
        assert step_cache.step_key([out], {x: (3,)}, "numpy", [], ())[0] == keys["numpy"]
        renamed = step_cache.step_key([out], {x: (3,)}, "llvm", [], ())[0]
        out.loc = Location(out.loc.filename, out.loc.lineno + 1)
        assert step_cache.step_key([out], {x: (3,)}, "llvm", [], ())[0] != renamed


def test_equal_values_of_other_types_describe_apart_in_one_graph():
    """1, True and 1.0 are equal keys of a dict: nodes alike but for them never share a
    description (``graph_key._known``)."""
    with gc.Graph().as_default() as graph:
        x = gc.placeholder(gc.float32, [3], name="x")
        nodes = [graph.add_node(get_op("tanh"), [x], {"k": v}, gc.float32, (3,))
                 for v in (1, True, 1.0, (1,), (True,))]
        _, needed = graph_key.graph_rows(nodes, {x: (3,)}, False)
        descs = [n.key_desc for n in nodes]
        assert None not in descs and len(set(descs)) == len(descs)
        assert [graph_key.describe(n) for n in nodes] == descs


def test_a_step_is_keyed_the_same_whether_its_nodes_were_described_before_or_not(model):
    """The column path (``_describe_all``) and one node at a time (``describe``) agree, and
    a key is the same whether some, all or none of the nodes had kept descriptions."""
    keys = []
    for prepare in ("none", "some", "all"):
        with gc.Graph().as_default():
            fetches, shapes = model.build()
            nodes = needed_nodes(fetches, shapes)
            for n in nodes[::2] if prepare == "some" else nodes if prepare == "all" else []:
                graph_key.describe(n)
            keys.append(step_cache.step_key(fetches, shapes, "llvm", [], ())[0])
    assert keys[0] is not None and len(set(keys)) == 1


def test_keys_of_one_graph_for_other_fetches_or_feeds_are_their_own(monkeypatch):
    """What a graph keeps for one fetch list and fed set (``Graph.key_rows``) is only read
    for the same ones: a second key of the same step searches no node again."""
    with gc.Graph().as_default():
        x = gc.placeholder(gc.float32, [4, 4], name="x")
        h = gc.matmul(x, x)
        out = gc.reduce_sum(gc.tanh(h) * 2.0)
        other = gc.reduce_sum(h)

        def key(fetches, fed):
            return step_cache.step_key(fetches, fed, "llvm", [], ())[0]
        keys = [key([out], {x: (4, 4)}), key([out], {h: (4, 4)}), key([other], {x: (4, 4)}),
                key([out, other], {x: (4, 4)}), key([other, out], {x: (4, 4)}),
                key([out], {x: (4, 4), h: (4, 4)})]
        assert None not in keys and len(set(keys[:5])) == 5
        assert keys[5] == keys[1]  # (x, behind the fed h, is not needed: not in the key)
        monkeypatch.setattr(graph_key, "user_needed_nodes", lambda *a: pytest.fail("searched"))
        again = [key([out], {x: (4, 4)}), key([out], {h: (4, 4)}), key([other], {x: (4, 4)}),
                 key([out, other], {x: (4, 4)}), key([other, out], {x: (4, 4)}),
                 key([out], {x: (4, 4), h: (4, 4)})]
        assert again == keys


def test_a_hit_searches_no_graph_and_another_cut_searches_again(monkeypatch, tmp_path):
    """A graph built with the cache on keeps a running hash of its nodes: a second process's
    ``gc.compile`` of the same step finds its nodes and its key remembered under that hash
    and searches nothing; a fed set that cuts the graph elsewhere is searched on its own,
    and finds fewer nodes."""
    from graphc.ir import program
    monkeypatch.setenv("GRAPHC_STEP_CACHE", "1")
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("GRAPHC_NO_CACHE", raising=False)

    def build():
        x = gc.placeholder(gc.float32, [4, 4], name="x")
        h = gc.tanh(gc.matmul(x, x))
        return x, h, gc.reduce_sum(h * 2.0)
    with gc.Graph().as_default():
        x, h, out = build()
        gc.compile(out, feeds=[x], backend="numpy")  # (a miss: fills the cache)
    searches = []
    search = program.needed_nodes
    monkeypatch.setattr(program, "needed_nodes",
                        lambda *a, **k: searches.append(a) or search(*a, **k))
    with gc.Graph().as_default():
        x, h, out = build()
        step = gc.compile(out, feeds=[x], backend="numpy")
        assert step.compiled.cache_hit and len(searches) == 0
        assert step(x=np.ones((4, 4), np.float32)) == pytest.approx(2 * 16 * np.tanh(4.0),
                                                                    rel=1e-6)
        whole = program.user_needed_nodes([out], [x])
        found = len(searches)
        assert len(program.user_needed_nodes([out], [h])) < len(whole)
        assert len(searches) == found + 1  # (a fed node with inputs: a search of its own)


def test_the_host_is_in_the_llvm_key_only(model, monkeypatch):
    """A NumPy step is Python and NumPy: its key names no host (so a NumPy hit needs no LLVM);
    an LLVM step's key is the host's."""
    from graphc.runtime import jit
    keys = {b: _key(model, b) for b in ("numpy", "llvm")}
    other = jit.HostTarget("other-triple", "other-cpu", "+other")
    monkeypatch.setattr(jit, "host_target", lambda: other)
    assert _key(model, "numpy") == keys["numpy"]
    assert _key(model, "llvm") != keys["llvm"]
    monkeypatch.setattr(jit, "host_target", lambda: pytest.fail("the host was read"))
    assert _key(model, "numpy") == keys["numpy"]


def test_nested_tuples_of_plain_values_are_described_as_canon_describes_them():
    """A slice spec or an axis list, tuples of plain values at any depth, is written as it is
    (what ``_canon`` gives back): 0, False, 0.0 and 1 inside it still differ, and a list
    inside one still marks the attributes as ones that could change."""
    import marshal
    specs = [(("i", 0),), (("i", False),), (("i", 0.0),), (("i", 1),), (("i", (0, None)),),
             (("i", 0), ("s", (1, 2, None)))]
    descs = [graph_key._attrs_desc({"spec": s, "n": 2}) for s in specs]
    assert len(set(descs)) == len(specs)
    for spec, desc in zip(specs, descs):
        canon = marshal.dumps({"spec": graph_key._canon(spec), "n": 2}, graph_key.MARSHAL)
        assert desc == canon
    volatile = []
    attrs = {"spec": (("i", [0]),)}
    graph_key._attrs_desc(attrs, volatile)
    assert volatile == [attrs]
    volatile = []
    graph_key._attrs_desc({"spec": specs[-1]}, volatile)
    assert volatile == []


def test_the_fast_paths_of_attributes_describe_as_canon_does():
    """Dtypes, shapes and arrays are described without ``_canon`` and ``_frozen`` (the
    attributes of variables and constants): what they give is what those two give."""
    import marshal
    from graphc.ir.shapes import TensorShape
    read_only = np.arange(4, dtype=np.float32)
    read_only.setflags(write=False)
    values = [gc.float32, gc.int64, TensorShape((2, None)), TensorShape(()), read_only,
              np.arange(4, dtype=np.float32), read_only[1:], np.zeros((20, 20)),
              np.zeros((20, 20))[:, ::2], np.array(["2020-01-01"] * 20, "datetime64[D]"),
              np.float32(0.5), np.zeros(4, np.int32)]
    for v in values:
        volatile = []
        desc = graph_key._attrs_desc({"v": v, "n": 2}, volatile)
        assert desc == marshal.dumps({"v": graph_key._canon(v), "n": 2}, graph_key.MARSHAL)
        assert volatile == ([] if graph_key._frozen(v) else [{"v": v, "n": 2}]), repr(v)


def _frozen(a):
    a.setflags(write=False)
    return a


def test_nodes_alike_but_for_a_type_a_sign_or_a_layout_are_described_apart(monkeypatch):
    """The first key of a process describes each kind of node (op, dtype, shape,
    attributes) once (``graph_key._known``): values that are equal keys of a dict (0.0 and
    -0.0; 1, 1.0 and True), arrays of the same bytes in other dtypes or shapes, shapes of
    other dim types, never share a description, whether their kinds were known before, new,
    or came after the table was emptied."""
    from graphc.ir.shapes import TensorShape
    values = [0.0, 1, (1,), TensorShape((2, 3)), _frozen(np.zeros(4, np.float32)), gc.float32,
              -0.0, 1.0, True, (1.0,), (2, 3), TensorShape((True, 3)),
              _frozen(np.zeros(4, np.int32)), _frozen(np.zeros((2, 2), np.float32)),
              np.float32(0), gc.float64]
    for some, full in ((values[:6], False), (values[:12], False), (values, True)):
        if full:  # (the table, holding these kinds, is emptied when it holds over 10,000)
            table = dict(graph_key._known)
            table.update({(k,): b"" for k in range(10001)})
            monkeypatch.setattr(graph_key, "_known", table)
        with gc.Graph().as_default() as graph:
            x = gc.placeholder(gc.float32, [3], name="x")
            nodes = [graph.add_node(get_op("tanh"), [x], {"k": v}, gc.float32, (3,))
                     for v in some]
            writable = graph.add_node(get_op("tanh"), [x], {"k": np.zeros(4, np.float32)},
                                      gc.float32, (3,))
            graph_key.graph_rows(nodes + [writable], {x: (3,)}, False)
        descs = [n.key_desc for n in nodes]
        assert None not in descs and len(set(descs)) == len(descs)
        assert [graph_key.describe(n) for n in nodes] == descs
        assert writable.key_desc is None and graph_key.describe(writable) == descs[4]
    assert len(graph_key._known) <= len(values) + 2


def _recipe_key(recipe, backend, prefix="g"):
    """(key, the step's input IR) of ``recipe`` built into a new graph."""
    from graphc.testing import graphs
    with gc.Graph().as_default():
        fetches, feeds = graphs.build(recipe, prefix)
        shapes = {p: v.shape for p, v in feeds.items()}
        key = step_cache.step_key(fetches, shapes, backend, list(P.DEFAULT_PIPELINE), ())[0]
        ir = gc.compile(fetches, feeds=list(feeds), backend="numpy", optimize=False).ir("input")
    return key, ir


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_random_graphs_share_a_key_only_when_they_are_the_same_program(backend):
    """Over the fuzzer's random graphs (every op family, attributes, constants, shapes) and
    each with its last op cut out: equal keys only for equal input IR (a false hit would run
    another program), and a graph built again keys the same."""
    from graphc.testing import graphs
    by_key, cached = {}, 0
    for seed in range(60):
        recipe = graphs.generate(seed, large=seed % 3 == 0)
        last = max(i for i, it in enumerate(recipe.items) if isinstance(it, graphs.Op))
        for r in (recipe, recipe.cut(last, "leaf")):
            key, ir = _recipe_key(r, backend)
            if key is None:  # (a random op without a seed, a host call: not cached)
                continue
            cached += 1
            assert _recipe_key(r, backend)[0] == key
            assert by_key.setdefault(key, ir) == ir, f"seed {seed}: two programs, one key"
    assert cached >= 80 and len(by_key) >= 0.9 * cached, (cached, len(by_key))
    if backend == "llvm":  # (its object code holds the names; a variable's name is its
        # identity on every backend)
        first = next(graphs.generate(s) for s in range(60)
                     if _recipe_key(graphs.generate(s), backend)[0] is not None)
        assert _recipe_key(first, backend, prefix="other")[0] != _recipe_key(first, backend)[0]
