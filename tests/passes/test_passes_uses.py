"""Rewrites in time linear in the graph: use lists instead of whole-program sweeps, a
reachability order kept under edge insertions, and iterative walks over fused bodies (a sum
of thousands of terms is as deep as it is long: no RecursionError anywhere, both backends).
"""
import sys

import networkx as nx
import numpy as np
import pytest

import graphc as gc
from graphc.ir import scalar as S
from graphc.ir.passes.common import UseIndex, replace_uses, rewire, tracked_uses, users
from graphc.ir.passes.reachability import OrderedDag

from tests.support.pass_testing import check_passes, program_of

STEPS = 2000


def _slice_sum(steps):
    """x[0] + x[1] + ... + x[steps]: one fused add chain ``steps`` deep with ``steps + 1``
    inputs (the slices), as an unrolled loop's weight gradient sums one term per step."""
    x = gc.placeholder(gc.float64, [steps + 1, 3], name="x")
    s = x[0]
    for t in range(1, steps + 1):
        s = s + x[t] * float(t % 5 + 1)
    xv = np.random.RandomState(0).randn(steps + 1, 3)
    want = xv[0] + sum(xv[t] * float(t % 5 + 1) for t in range(1, steps + 1))
    return x, s, xv, want


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_a_2000_step_add_chain_compiles_runs_and_prints_on_both_backends(backend):
    assert sys.getrecursionlimit() <= 5000  # the walks must not lean on a raised limit
    x, s, xv, want = _slice_sum(STEPS)
    step = gc.compile([s], feeds=[x], backend=backend)
    (got,) = step(x=xv)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    (fused,) = [n for n in step.program.nodes if n.op_name == "fused"]
    assert len(fused.inputs) == STEPS + 1
    adds = sum(1 for e in fused.attrs["body"].walk() if e.op == "add")
    assert adds == STEPS
    assert step.ir().count("add(") >= STEPS  # the dump prints the whole body


def test_a_deep_body_formats_evaluates_and_counts_occurrences_iteratively():
    body = S.arg(0, gc.float64)
    for t in range(1, 5000):
        body = body + S.arg(t, gc.float64)
    text = S.format_expr(body)
    assert text.startswith("add(" * 4999 + "$0, $1)") and text.endswith(", $4999)")
    args = [np.float64(t) for t in range(5000)]
    assert S.evaluate(body, args) == sum(range(5000))
    counts = S.occurrences(body)
    assert all(counts[id(S.arg(t, gc.float64))] == 1 for t in range(5000))


def _chain_program(n=6):
    with gc.Graph().as_default():  # (a graph of its own: two calls give the same names)
        x = gc.placeholder(gc.float64, [4], name="x")
        h = x
        for _ in range(n):
            h = gc.tanh(h) * 2.0
        return program_of([h, h * 3.0], {x: np.ones(4)}, passes=[])


def test_the_use_index_lists_users_and_follows_replacements():
    program = _chain_program()
    uses = UseIndex(program.nodes)
    swept = users(program.nodes)
    for n in program.nodes:
        assert [id(u) for u in uses.users(n)] == [id(u) for u in swept[n]]
    tanh = next(n for n in program.nodes if n.op_name == "tanh")
    (reader,) = uses.users(tanh)
    other = next(n for n in program.nodes if n.op_name == "tanh" and n is not tanh)
    assert replace_uses(program, tanh, other, uses) == 1
    assert uses.users(tanh) == []
    assert any(u is reader for u in uses.users(other))
    assert any(x is other for x in reader.inputs)


def test_an_indexed_rewire_visits_only_the_users_and_matches_a_sweep():
    a, b = _chain_program(), _chain_program()

    class Watched(list):
        """A schedule that fails when iterated: an indexed rewire must not sweep it."""
        def __iter__(self):
            raise AssertionError("rewire swept the whole program")

    mapping_a = {id(n): n.inputs[0] for n in a.nodes if n.op_name == "tanh"}
    mapping_b = {id(n): n.inputs[0] for n in b.nodes if n.op_name == "tanh"}
    uses = UseIndex(a.nodes)
    nodes = a.nodes
    a.nodes = Watched(nodes)
    got = rewire(a, mapping_a, uses)
    a.nodes = nodes
    assert got == rewire(b, mapping_b) == 6
    assert [[x.op.name for x in n.inputs] for n in a.nodes] == \
        [[x.op.name for x in n.inputs] for n in b.nodes]
    assert [f.op.name for f in a.fetches] == [f.op.name for f in b.fetches]


def test_tracked_uses_serves_new_nodes_and_is_dropped_after_the_pass():
    program = _chain_program(2)
    x = program.feeds[0]
    with tracked_uses(program) as uses:
        assert program.uses is uses
        with tracked_uses(program) as inner:
            assert inner is uses  # nested blocks share one index
        from graphc.ir.passes.common import new_node
        made = new_node(program, x, "negative", [x], {}, before=program.nodes[1])
        assert any(u is made for u in uses.users(x))
    assert program.uses is None


def test_the_ordered_dag_answers_reachability_like_networkx_as_edges_arrive():
    rng = np.random.RandomState(1)
    nodes = list(range(60))
    dag = nx.DiGraph()
    dag.add_nodes_from(nodes)
    for v in nodes:
        for u in rng.choice(v, size=min(v, 2), replace=False) if v else []:
            dag.add_edge(int(u), v)
    od = OrderedDag(dag, nodes)
    added = 0
    for _ in range(300):
        u, v = (int(k) for k in rng.choice(60, 2, replace=False))
        assert od.has_path(u, v) == nx.has_path(dag, u, v)
        if not od.has_path(v, u):  # u -> v closes no cycle: add it, often against the order
            od.add_edge(u, v)
            added += 1
            assert nx.is_directed_acyclic_graph(dag)
            assert all(od.rank[a] < od.rank[b] for a, b in dag.edges())
    assert added > 50


def test_fusion_of_a_long_chain_keeps_values_and_makes_one_group():
    x, s, xv, want = _slice_sum(300)
    opt = check_passes([s], {x: xv}, passes=["fuse"])
    assert opt.records[0]["changes"]["groups"] == 1


def test_first_fit_over_many_busy_blocks_matches_the_plain_scan():
    from graphc.ir.passes.memory import ALIGN, _first_fit
    rng = np.random.RandomState(2)
    for trial in range(200):
        k = int(rng.randint(0, 200))
        starts = rng.randint(0, 40, size=k) * ALIGN
        busy = [(int(o), int(o + rng.randint(1, 5 * ALIGN))) for o in starts]
        size = int(rng.randint(1, 3 * ALIGN))
        off = 0
        for o, e in sorted(busy):
            if off + size <= o:
                break
            off = max(off, -(-e // ALIGN) * ALIGN)
        assert _first_fit(busy, size) == off, (trial, busy, size)
