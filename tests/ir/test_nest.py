"""graphc.framework.nest: the one nest walker (while_loop, scan/map_fn, RNN states, tf.data)."""
import collections

import pytest

import graphc as gc
from graphc.errors import GraphError
from graphc.framework import nest

Pair = collections.namedtuple("Pair", "c h")


def test_dicts_flatten_by_sorted_key_and_pack_keeps_insertion_order():
    s = {"b": 1, "a": (2, [3, Pair(4, 5)])}
    assert nest.flatten(s) == [2, 3, 4, 5, 1]
    packed = nest.pack_sequence_as(s, [20, 30, 40, 50, 10])
    assert list(packed) == ["b", "a"] and packed["b"] == 10
    assert packed["a"] == (20, [30, Pair(40, 50)]) and type(packed["a"][1][1]) is Pair


def test_lists_can_be_leaves_as_tf_data_reads_them():
    assert nest.flatten(([1, 2], {"x": 3}), lists=False) == [[1, 2], 3]
    assert nest.map_structure(len, ([1, 2], [3]), lists=False) == (2, 1)


def test_pack_refuses_the_wrong_number_of_values():
    with pytest.raises(ValueError, match="3 values for a structure of 2 leaves"):
        nest.pack_sequence_as((1, 2), [1, 2, 3])
    with pytest.raises(ValueError, match="1 values for a structure of 2 leaves"):
        nest.pack_sequence_as((1, 2), [1])


def test_structure_mismatch_names_the_place():
    with pytest.raises(GraphError, match=r"scan: fn returns another structure than elems at "
                                         r"\[1\]\['k'\]"):
        nest.assert_same_structure((1, {"k": (2, 3)}), (1, {"k": 2}), op="scan",
                                   names=("elems", "fn"))
    with pytest.raises(GraphError, match="at the top level"):
        nest.assert_same_structure(Pair(1, 2), (1, 2))
    nest.assert_same_structure([1, (2, 3)], (4, [5, 6]))  # lists and tuples interchange


def test_deep_nests_flatten_without_recursion():
    deep = 0
    for _ in range(5000):
        deep = (deep,)
    assert nest.flatten(deep) == [0]


def test_while_loop_over_a_dict_keeps_keys_and_values():
    i = gc.constant(0)
    out = gc.while_loop(lambda s: s["i"] < 3,
                        lambda s: [{"z": s["z"] * 2.0, "i": s["i"] + 1}],
                        [{"z": gc.constant(1.0), "i": i}])
    with gc.Session() as sess:
        assert sess.run(out) == [{"z": 8.0, "i": 3}]
