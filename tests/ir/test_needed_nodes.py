"""``ir.program.needed_nodes``: every ancestor of the fetches, stopping at fed nodes, in
creation order, whether it is read off the graph's node list (most of the graph) or sorted
(a few nodes, or a node dropped from the list since); and ``user_needed_nodes``, which a
graph remembers, finds what a new search finds after the graph has grown."""
import pytest

import graphc as gc
from graphc.ir import program
from graphc.ir.program import needed_nodes, user_needed_nodes


def _ancestors(fetches, fed=()):
    """The reference: ancestors by recursion, sorted by creation id."""
    seen = set()

    def visit(n):
        if n not in seen:
            seen.add(n)
            if n not in fed:
                for i in n.inputs:
                    visit(i)
    for f in fetches:
        visit(f)
    return sorted(seen, key=lambda n: n.id)


def _model():
    x = gc.placeholder(gc.float32, [4, 4], name="x")
    w = gc.Variable(gc.ones([4, 4]), name="w")
    h = gc.tanh(gc.matmul(x, w))
    side = gc.reduce_sum(x * 3.0)
    loss = gc.reduce_sum(h * h) + side
    train = gc.train.GradientDescentOptimizer(0.1).minimize(loss)
    return x, h, side, loss, train


def test_needed_nodes_are_the_ancestors_in_creation_order():
    with gc.Graph().as_default() as graph:
        x, h, side, loss, train = _model()
        for fetches, fed in (([loss, train], ()), ([loss], [h]), ([side], ()),
                             ([train, side], [h])):
            found = needed_nodes(fetches, fed)
            assert found == _ancestors(fetches, set(fed))
            assert [n.id for n in found] == sorted(n.id for n in found)
        assert 2 * len(needed_nodes([loss, train])) >= len(graph.nodes)  # (read off the list)
        assert 2 * len(needed_nodes([side])) < len(graph.nodes)  # (sorted)


def test_remembered_nodes_are_a_new_search_s_after_the_graph_grows(monkeypatch):
    """Nodes never change their inputs once built, so what the graph remembers for a fetch
    list and fed set stays right when nodes are added later, even ones reading the fetches;
    another fed set is another search."""
    with gc.Graph().as_default() as graph:
        x, h, side, loss, train = _model()
        first = user_needed_nodes([loss], [h])
        more = gc.reduce_sum(gc.exp(loss) * h)  # (new nodes, some reading the fetch)
        with gc.control_dependencies([more]):
            gc.identity(loss)
        monkeypatch.setattr(program, "needed_nodes", lambda *a: pytest.fail("searched again"))
        assert user_needed_nodes([loss], [h]) == first
        monkeypatch.undo()
        assert first == needed_nodes([loss], [h]) == _ancestors([loss], {h})
        assert user_needed_nodes([loss], [x]) == _ancestors([loss])
        assert user_needed_nodes([more]) == _ancestors([more])


def test_a_node_dropped_from_the_graph_s_list_is_still_found():
    """``while_loop`` drops the nodes of an attempt it unrolls instead (``del g.nodes[k:]``),
    and new nodes take their ids: a fetch reaching a dropped node still finds every
    ancestor (sorted by ids, which no longer tell creation order here)."""
    with gc.Graph().as_default() as graph:
        x, h, side, loss, train = _model()
        start = len(graph.nodes)
        dropped = gc.tanh(loss) * 2.0
        del graph.nodes[start:]
        later = gc.reduce_sum(dropped + loss)  # (ids of the dropped nodes again)
        for fetches in ([later], [later, train]):  # (sorted; most of the graph's list)
            found = needed_nodes(fetches)
            assert len(found) == len(set(found)) and set(found) == set(_ancestors(fetches))
        assert 2 * len(found) >= len(graph.nodes)
        assert needed_nodes([loss]) == _ancestors([loss])
