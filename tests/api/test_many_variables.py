"""A step with many small variables: what a warm compile-cache hit does with them at once
(their initial values known to the graph, the layout's variables as columns, all bound in one
go on the first call) gives what doing it one variable at a time gives."""
import pickle

import numpy as np
import pytest

import graphc as gc
from graphc.client import step_cache
from graphc.runtime.llvm_step import NativeStep, Slot, SlotColumns, StepLayout
from graphc.runtime.loaded_step import encode_layout


def _deep(layers=12, seed=0):
    """A deep narrow MLP whose variables come in several kinds (weights of two shapes,
    biases, a float64 scale, an int32 counter), with its SGD step."""
    rng = np.random.default_rng(seed)
    graph = gc.Graph()
    with graph.as_default():
        x = gc.placeholder(gc.float32, [4, 6], name="x")
        h, params = x, []
        for k in range(layers):
            cols = 6 if k % 3 else 5
            w = gc.Variable(rng.standard_normal((h.shape[1], cols)).astype(np.float32) * 0.4,
                            name=f"w{k}")
            b = gc.Variable(np.zeros(cols, np.float32), name=f"b{k}")
            h = gc.tanh(gc.matmul(h, w) + b)
            params += [w, b]
        scale = gc.Variable(np.float64(0.5), name="scale")
        count = gc.Variable(np.int32(0), name="count")
        loss = gc.reduce_mean(h * h) * gc.cast(scale, gc.float32)
        grads = gc.gradients(loss, params)
        train = gc.group(*[gc.assign_sub(p, 0.1 * g) for p, g in zip(params, grads)],
                         gc.assign_add(count, np.int32(1)))
    xv = rng.standard_normal((4, 6)).astype(np.float32)
    return graph, x, loss, train, xv


def test_variables_made_from_arrays_are_known_to_the_graph_and_copied_from_there():
    graph, x, loss, train, xv = _deep()
    variables = graph.get_collection("variables")
    assert set(graph.initial_arrays) == set(variables)
    for v in variables:
        const, array = graph.initial_arrays[v]
        assert const is v.initial_value and array is const.attrs["value"]
    with graph.as_default():  # a graph tensor's value is not known, a constant's either
        given = gc.Variable(gc.constant(np.ones(3, np.float32)), name="given")
        drawn = gc.Variable(gc.random_normal([3], seed=1), name="drawn")
        converted = gc.Variable(np.ones(3, np.float32), dtype=gc.float64, name="converted")
    assert given not in graph.initial_arrays and drawn not in graph.initial_arrays
    assert graph.initial_arrays[converted][1].dtype == np.float64
    step = gc.compile([loss, train], feeds=[x], backend="numpy")
    for v in variables:  # the step's own copies of the known arrays
        got = step.variables[v.node_name]
        assert not np.shares_memory(got, graph.initial_arrays[v][1])
        np.testing.assert_array_equal(got, graph.initial_arrays[v][1])


def test_an_imported_initializer_is_not_taken_from_the_known_arrays():
    """An importer that gives a variable its own initializer drops the known array."""
    graph, x, loss, train, xv = _deep(layers=2)
    w = graph.get_collection("variables")[0]
    with graph.as_default():
        other = gc.assign(w, gc.ones_like(w) * 3.0)
    w.meta["initializer"] = other
    graph.initial_arrays.pop(w)  # (what meta_graph's and tf_meta_graph's importers do)
    step = gc.compile([loss, train], feeds=[x], backend="numpy")
    np.testing.assert_array_equal(step.variables[w.node_name], 3.0)


def test_the_layout_pickles_its_variables_as_columns_and_runs_alike(tmp_path):
    graph, x, loss, train, xv = _deep()
    step = gc.compile([loss, train], feeds=[x], backend="llvm", cache=False)
    layout = step.compiled.code.layout
    assert type(layout.variables) is list and len(layout.variables) == 26
    back = pickle.loads(pickle.dumps(layout, 5))
    assert type(back) is StepLayout and type(back.variables) is SlotColumns
    assert len(back.variables.kinds) == 7  # (three weight shapes, two bias shapes, 2 scalars)
    assert list(back.variables) == layout.variables and back.variables == layout.variables
    assert back.variables[1:4] == layout.variables[1:4]
    assert encode_layout(back)[0] == encode_layout(layout)[0]  # (an artifact saves the same)

    def losses(fn, calls=4):
        values = tuple(np.array(step.variables[v.node_name])
                       for v in step.compiled.var_nodes)
        return [fn.run([xv], values)[0] for _ in range(calls)], values

    fresh = NativeStep(back, step.compiled.fn.loaded)
    one_by_one = NativeStep(layout, step.compiled.fn.loaded)
    one_by_one._var_run = None  # (bound as a layout of scattered slots would be)
    got, got_values = losses(fresh)
    want, want_values = losses(one_by_one)
    assert got == want and len(set(got)) == 4
    for a, b in zip(got_values, want_values):
        np.testing.assert_array_equal(a, b)


def test_variables_bound_at_once_only_when_each_is_as_the_step_takes_it():
    """One variable of another dtype, in Fortran order or not an array sends the whole
    tuple the one-by-one way: it is converted (a copy, the caller's array left as it was)
    and the rest are still updated in place."""
    graph, x, loss, train, xv = _deep(layers=3)
    step = gc.compile([loss, train], feeds=[x], backend="llvm", cache=False)
    fn, nodes = step.compiled.fn, step.compiled.var_nodes
    start = [np.array(step.variables[v.node_name]) for v in nodes]
    want = NativeStep(fn.layout, fn.loaded)
    plain = tuple(a.copy() for a in start)
    reference = [want.run([xv], plain)[0] for _ in range(2)]
    odd_at = next(k for k, a in enumerate(start) if a.ndim == 2)
    for odd in (np.asfortranarray(start[odd_at]), start[odd_at].astype(np.float64),
                start[odd_at].tolist()):
        fresh = NativeStep(fn.layout, fn.loaded)
        values = tuple(odd if k == odd_at else a.copy() for k, a in enumerate(start))
        assert not fresh._as_they_are(values)
        assert [fresh.run([xv], values)[0] for _ in range(2)] == reference
        for k, (got, ref) in enumerate(zip(values, plain)):
            if k != odd_at:
                np.testing.assert_array_equal(got, ref)
        np.testing.assert_array_equal(np.asarray(odd, np.float32), start[odd_at])
    assert NativeStep(fn.layout, fn.loaded)._as_they_are(plain)


def test_slot_columns_refuse_a_kind_per_index_mismatch_and_read_as_slots():
    cols = SlotColumns.of([Slot(3, (2, 2), "float32"), Slot(4, (), "int32"),
                           Slot(5, (2, 2), "float32")])
    assert cols.indices == [3, 4, 5] and len(cols.kinds) == 2 and cols.kind_of == [0, 1, 0]
    assert cols[2] == Slot(5, (2, 2), "float32") and cols[-1] == cols[2]
    assert SlotColumns.of(cols) is cols
    with pytest.raises(ValueError, match="one kind per index"):
        SlotColumns([1, 2], [((), "float32")], [0])


def test_positions_take_reads_the_asked_positions_without_the_whole_list():
    with gc.Graph().as_default() as graph:
        x = gc.placeholder(gc.float32, [3], name="x")
        for _ in range(60):
            x = x + 1.0
    nodes = graph.nodes
    order = [n for k, n in enumerate(nodes) if k % 4 != 3]  # (runs of three)
    _, got = step_cache.nodes_at(graph, step_cache.node_ids(order))
    ks = [0, 5, 2, len(order) - 1, 7, 7, 40]
    assert got.take(ks) == [order[k] for k in ks] and got._whole is None
    assert got.take([3]) == [order[3]] and got.take([]) == []
    for bad in ([0, len(order)], [-1, 2]):
        with pytest.raises(IndexError):
            got.take(bad)
    assert step_cache._taken(order, ks) == [order[k] for k in ks]


def test_many_increasing_positions_are_remembered_as_bits_and_read_back_alike():
    """Positions in increasing order that runs would take more room for (a deep model's
    needed nodes, broken by the initial values it does not need) are kept as a bitmap over
    the graph; read back, they are the same nodes, with the same head; any other order is
    kept as runs; a bitmap of the wrong length or past the graph is refused."""
    with gc.Graph().as_default() as graph:
        x = gc.placeholder(gc.float32, [3], name="x")
        for _ in range(100):
            x = x + 1.0
    nodes = graph.nodes
    order = [n for k, n in enumerate(nodes) if k % 3 != 1]  # (100 runs)
    data = step_cache.node_ids(order, head=[7, 9])
    assert np.frombuffer(data, np.int64, 1)[0] == step_cache._BITMAP
    assert len(data) < 16 * 100 // 4
    head, got = step_cache.nodes_at(graph, data, head=2)
    assert head == [7, 9] and list(got) == order and got[-1] is order[-1]
    assert got.take([5, 0, 99]) == [order[5], order[0], order[99]]
    shuffled = order[1:] + order[:1]
    runs = step_cache.node_ids(shuffled, head=[3])
    assert np.frombuffer(runs, np.int64, 1)[0] == 3
    assert list(step_cache.nodes_at(graph, runs, head=1)[1]) == shuffled
    assert step_cache.nodes_at(graph, data, head=1) is None  # (another head)
    assert step_cache.nodes_at(graph, data[:-1], head=2) is None
    assert step_cache.nodes_at(graph, data + b"\0", head=2) is None
    past = np.frombuffer(data[:40], np.int64).copy()
    past[-1] = len(nodes) + 8
    assert step_cache.nodes_at(graph, past.tobytes() + b"\xff" * ((len(nodes) + 15) // 8),
                               head=2) is None
    assert step_cache.nodes_at(graph, np.array([step_cache._BITMAP], np.int64).tobytes()
                               + b"\0" * 8, head=0) is None


@pytest.mark.parametrize("placeholders_first", [True, False])
def test_remembered_feeds_and_variables_come_back_apart_in_either_creation_order(
        placeholders_first, tmp_path, monkeypatch):
    """What ``gc.compile`` needs is remembered as the feeds, then the variables: a bitmap
    when the placeholders were made first, runs when not; either way a second compile of
    the graph reads them back as they were found."""
    from graphc.client import feeds
    monkeypatch.setenv("GRAPHC_STEP_CACHE", "1")
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("GRAPHC_NO_CACHE", raising=False)
    graph = gc.Graph()
    with graph.as_default():
        if placeholders_first:
            x = gc.placeholder(gc.float32, [2, 3], name="x")
        ws = [gc.Variable(np.full((3, 3), k, np.float32), name=f"w{k}") for k in range(20)]
        if not placeholders_first:
            x = gc.placeholder(gc.float32, [2, 3], name="x")
        h = x
        for w in ws:
            h = gc.matmul(h, w)
        loss = gc.reduce_sum(h)
    seen = []
    real = feeds.needed_and_leaf_feeds
    monkeypatch.setattr(feeds, "needed_and_leaf_feeds", lambda *a: seen.append(1) or real(*a))
    first = feeds.variables_and_leaf_feeds([loss], [], True)
    again = feeds.variables_and_leaf_feeds([loss], [], True)
    assert len(seen) == 1  # (the second was remembered)
    assert list(first[0]) == ws and list(first[1]) == [x]
    assert list(again[0]) == ws and list(again[1]) == [x]
