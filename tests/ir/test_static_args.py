"""The IR rule for specialization-time attributes (``ir.static``) and unknown ranks
(``ir.shapes.unknown_rank_infer``): an attribute given as a tensor is stored as its value when
that is known while the graph is built, else kept as a trailing input and a ``Pending`` until
``specialize`` resolves it; specialized graphs hold concrete attributes only."""
import numpy as np
import pytest

import graphc as gc
from graphc.errors import GraphError
from graphc.ir import dtypes as D
from graphc.ir.graph import Graph
from graphc.ir.ops import apply
from graphc.ir.ops.registry import REGISTRY
from graphc.ir.program import specialize
from graphc.ir.shapes import RuleError, unknown_rank_infer
from graphc.ir.static import Pending, data_dependency, partial_ints
from graphc.ir.verifier import verify


def test_a_tensor_known_now_is_stored_as_the_attribute():
    x = gc.placeholder(gc.float32, [4, 3])
    r = apply("reshape", [x], {"shape": gc.shape(x)[::-1]})
    assert r.inputs == [x] and r.attrs["shape"] == (3, 4) and r.shape == (3, 4)


def test_a_tensor_known_at_specialization_is_a_trailing_input_and_a_pending():
    x = gc.placeholder(gc.float32, [None, 3])
    target = gc.stack([gc.shape(x)[0] * 3])
    r = apply("reshape", [x], {"shape": target})
    assert r.inputs == [x, target] and r.attrs["shape"] == Pending((None,))
    assert r.shape == (None,)
    verify(gc.get_default_graph().nodes)  # the verifier reads pending nodes as the builder
    graph, mapping = specialize([r], {x: (5, 3)})
    private = mapping[r]
    assert private.attrs["shape"] == (15,) and private.inputs == [mapping[x]]
    assert private.shape == (15,)
    assert not any(isinstance(v, Pending) for n in graph.nodes for v in n.attrs.values())


def test_partial_values_keep_the_known_entries():
    x = gc.placeholder(gc.float32, [None, 3, None])
    s = gc.shape(x)
    assert partial_ints(s) == (None, 3, None)
    assert partial_ints(gc.stack([s[0], 7, s[1]])) == (None, 7, 3)
    assert partial_ints(gc.concat([s[:1], gc.constant([2])], 0)) == (None, 2)
    assert partial_ints(s[::-1]) == (None, 3, None)
    assert partial_ints(s[1:]) == (3, None)
    assert gc.reshape(gc.placeholder(gc.float32, [None, 3]), s[:2][::-1]).shape == (3, None)
    assert partial_ints(gc.shape(gc.placeholder("float"))) is None


def test_a_node_left_without_inputs_becomes_its_constant():
    x = gc.placeholder(gc.float32, [None])
    r = gc.range(1, gc.shape(x)[0] * 2, 3)
    assert r.op_name == "range" and r.shape == (None,)
    graph, mapping = specialize([r], {x: (5,)})
    assert mapping[r].op_name == "const"
    np.testing.assert_array_equal(mapping[r].attrs["value"], np.arange(1, 10, 3))


def test_data_dependency_follows_values_not_shapes():
    n = gc.placeholder(gc.int32, [], name="n")
    x = gc.placeholder(gc.float32, [None, 3], name="x")
    assert data_dependency(gc.shape(x)[0] * 2 + 1) is None
    node, why = data_dependency(gc.shape(x)[0] + n)
    assert node is n and "placeholder 'n'" in why
    with pytest.raises(GraphError, match="shape must be known when the step is specialized"):
        apply("broadcast_to", [gc.constant(0.0)], {"shape": gc.stack([n])})


def _stand_in(node, rank):
    return type("StandIn", (), {"dtype": node.dtype, "shape": (None,) * rank,
                                "rank": rank, "name": node.name})()


class _Unknown:
    dtype, shape, name = D.float32, None, "X"


def test_unknown_rank_infer_keeps_what_every_fitting_rank_agrees_on():
    x = _Unknown()
    sum_rule = REGISTRY["reduce_sum"].rule
    assert unknown_rank_infer(sum_rule, [x], {"axis": None}, _stand_in) == (D.float32, ())
    assert unknown_rank_infer(sum_rule, [x], {"axis": 1, "keepdims": False},
                              _stand_in) == (D.float32, None)

    def rank_two_only(nodes):
        (a,) = nodes
        if a.rank != 2:
            raise RuleError("needs rank 2")
        return a.dtype, (a.shape[0], 4)
    assert unknown_rank_infer(rank_two_only, [x], {}, _stand_in) == (D.float32, (None, 4))

    def never(nodes):
        raise RuleError("no", kind="dtype")
    with pytest.raises(RuleError, match="no"):
        unknown_rank_infer(never, [x], {}, _stand_in)


def test_fully_static_graphs_are_built_as_before():
    g = Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, [2, 3])
        gc.reshape(x, [3, 2])
        gc.zeros([2, 2])
        gc.range(4)
    assert [n.op_name for n in g.nodes] == ["placeholder", "reshape", "const", "const"]
    assert all(len(n.inputs) <= 1 for n in g.nodes)
