"""The fast paths of scheduling, in-place analysis, old-value copies and simplification
against the formulations they replaced: the same order, the same decisions, byte-identical IR.

Each reference below is the earlier implementation (networkx graphs, searches of whole
descendant sets); the test runs the whole pipeline once with the references patched in and
once as shipped, and compares every stage's text, the memory plan and the pass records.
"""
import networkx as nx
import numpy as np
import pytest

import graphc as gc
from graphc.ir import program as program_module
from graphc.ir.passes import memory, old_values, reachability, run_pipeline, schedule
from graphc.ir.passes import simplify
from graphc.ir.passes import inplace as inplace_module
from graphc.ir.passes.common import new_node, users
from graphc.ir.printer import stable_numbers
from graphc.ir.program import build_program
from graphc.ir import rollback
from graphc.ir.rollback import declared_failures, update_kernels


# -- the references -------------------------------------------------------------------------
def reference_schedule_nodes(nodes):
    dag = nx.DiGraph()
    dag.add_nodes_from(nodes)
    dag.add_edges_from((i, n) for n in nodes for i in n.inputs)
    assigned = {}
    for n in nodes:
        if n.op_name == "assign":
            var = n.inputs[0]
            assigned[var] = n
            later = None
            for reader in list(dag.successors(var)):
                if reader is n:
                    continue
                if later is None:
                    later = nx.descendants(dag, n)
                if reader not in later:
                    dag.add_edge(reader, n)
    reference_failure_edges(dag, declared_failures(nodes), update_kernels(nodes))
    rank = {n: i for i, n in enumerate(nodes)}
    return list(nx.lexicographical_topological_sort(dag, key=lambda n: rank[n]))


def reference_keep_old_values(program, plan):
    if getattr(program, "old_values_kept", False):
        return 0
    program.old_values_kept = True
    data = nx.DiGraph()
    for n in program.nodes:
        data.add_node(n)
        data.add_edges_from((x, n) for x in n.inputs)
    data.add_edges_from(getattr(program, "constraints", []))
    children = {}
    for n in program.nodes:
        if n in plan.views:
            children.setdefault(id(plan.views[n]), []).append(n)
    uses = users(program.nodes, values_only=True)
    made = 0
    for a in [n for n in program.nodes if n.op_name == "assign"]:
        var, value = a.inputs
        writer = value if plan.inplace.get(value) is var else a
        cls, stack = [], [var]
        while stack:
            m = stack.pop()
            cls.append(m)
            stack.extend(children.get(id(m), []))
        later = nx.descendants(data, writer) | nx.descendants(data, a) | {writer, a}
        copies = {}
        for m in cls:
            for u in list(uses.get(m, [])):
                if u in later and u is not writer and u is not a and not any(u is c for c in cls):
                    if id(m) not in copies:
                        copies[id(m)] = new_node(program, m, "copy", [m], {}, before=writer)
                        made += 1
                    u.inputs = [copies[id(m)] if x is m else x for x in u.inputs]
    return made


class ReferenceOrderedDag:
    """The ordered DAG over networkx views, searching whole stretches of the order."""

    def __init__(self, dag, order):
        self.dag = dag
        self.rank = {n: i for i, n in enumerate(order)}

    @classmethod
    def of_inputs(cls, nodes):
        dag = nx.DiGraph()
        for n in nodes:
            dag.add_node(n)
            for x in n.inputs:
                dag.add_edge(x, n)
        return cls(dag, nodes)

    def has_edge(self, u, v):
        return self.dag.has_edge(u, v)

    def has_path(self, a, b):
        if a is b:
            return True
        limit = self.rank[b]
        if self.rank[a] > limit:
            return False
        return b in self._reach(a, self.dag.succ, lambda n: self.rank[n] <= limit)

    def add_edge(self, u, v):
        if self.dag.has_edge(u, v):
            return
        self.dag.add_edge(u, v)
        lower, upper = self.rank[v], self.rank[u]
        if lower > upper:
            return
        after = self._reach(v, self.dag.succ, lambda n: self.rank[n] < upper)
        before = self._reach(u, self.dag.pred, lambda n: self.rank[n] > lower)
        moved = sorted(before, key=self.rank.__getitem__) + \
            sorted(after, key=self.rank.__getitem__)
        for n, k in zip(moved, sorted(self.rank[n] for n in moved)):
            self.rank[n] = k

    @staticmethod
    def _reach(start, adjacency, inside):
        seen, stack = {start}, [start]
        while stack:
            n = stack.pop()
            for m in adjacency[n]:
                if m not in seen and inside(m):
                    seen.add(m)
                    stack.append(m)
        return seen


def reference_failure_edges(dag, failing, writers):
    """The rule as first written: one networkx search of each writer's descendants."""
    added = []
    if not failing:
        return added
    seen = set()
    for w, _ in writers:
        if id(w) in seen:
            continue
        seen.add(id(w))
        after = nx.descendants(dag, w)
        for m in failing:
            if m is not w and m not in after and not dag.has_edge(m, w):
                dag.add_edge(m, w)
                added.append((m, w))
    return added


def reference_failure_edges_from(pred, failing, writers):
    dag = nx.DiGraph()
    for w, sources in pred.items():
        dag.add_node(w)
        dag.add_edges_from((x, w) for x in sources)
    added = reference_failure_edges(dag, failing, writers)
    for m, w in added:
        pred[w].add(m)
    return added


def reference_live_peak(nodes, plan, fetches, reads=None):
    pos = {id(n): i for i, n in enumerate(nodes)}
    owners = [n for n in nodes if memory.owns_buffer(n, plan)]
    interval = {id(n): [pos[id(n)], pos[id(n)]] for n in owners}
    for n in nodes:
        for x in memory.value_inputs(n):
            r = plan.root(x)
            if id(r) in interval:
                interval[id(r)][1] = max(interval[id(r)][1], pos[id(n)])
        r = plan.root(n)
        if r is not n and id(r) in interval:
            interval[id(r)][1] = max(interval[id(r)][1], pos[id(n)])
    for f in fetches:
        if f is not None and id(plan.root(f)) in interval:
            interval[id(plan.root(f))][1] = len(nodes)
    delta = [0] * (len(nodes) + 2)
    for n in owners:
        a, b = interval[id(n)]
        delta[a] += memory.nbytes(n)
        delta[b + 1] -= memory.nbytes(n)
    peak = cur = 0
    for d in delta:
        cur += d
        peak = max(peak, cur)
    return peak


def reference_first_fit(busy, size):
    return _shipped_first_fit(np.asarray(busy, dtype=np.int64).reshape(-1, 2), size)


_shipped_first_fit = memory._first_fit


# -- models ---------------------------------------------------------------------------------
def _mlp(depth, optimizer):
    x = gc.placeholder(gc.float32, [8, 12], name="x")
    y = gc.placeholder(gc.int64, [8], name="y")
    h = x
    for i in range(depth):
        w = gc.Variable(np.full((12, 12), 0.05 * (i + 1), np.float32), name=f"W{i}")
        b = gc.Variable(np.zeros(12, np.float32), name=f"b{i}")
        h = gc.nn.relu(gc.matmul(h, w) + b)
    loss = gc.reduce_mean(gc.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=h))
    if optimizer == "adam":  # clipping by the global norm: all scalings ready at once
        opt = gc.train.AdamOptimizer(1e-3)
        grads, variables = zip(*opt.compute_gradients(loss))
        clipped, _ = gc.clip_by_global_norm(list(grads), 1.0)
        train = opt.apply_gradients(list(zip(clipped, variables)))
    else:
        train = gc.train.GradientDescentOptimizer(0.1).minimize(loss)
    return [loss, train], {x: (8, 12), y: (8,)}


def _rnn(steps):
    xs = gc.placeholder(gc.float32, [steps, 4, 6], name="xs")
    wx = gc.Variable(np.full((6, 6), 0.1, np.float32), name="Wx")
    wh = gc.Variable(np.full((6, 6), 0.1, np.float32), name="Wh")
    b = gc.Variable(np.zeros(6, np.float32), name="b")
    h = gc.zeros([4, 6])
    for t in range(steps):
        h = gc.tanh(gc.matmul(xs[t], wx) + gc.matmul(h, wh) + b)
    loss = gc.reduce_mean(gc.square(h))
    train = gc.train.GradientDescentOptimizer(0.01).minimize(loss)
    return [loss, train], {xs: (steps, 4, 6)}


def _old_values():
    """Readers of a variable's old value that depend on its update (copies are made)."""
    x = gc.placeholder(gc.float64, [3, 2], name="x")
    w = gc.Variable(np.ones((3, 2)), name="w")
    v = gc.Variable(np.ones((3, 2)), name="v")
    y = gc.reduce_sum(gc.assign(w, w * x) * w * x)
    z = gc.reduce_sum(gc.reshape(gc.assign(v, v - x), [6]) * gc.reshape(v, [6]))
    return [y, z], {x: (3, 2)}


MODELS = {"mlp sgd": lambda: _mlp(6, "sgd"), "mlp adam": lambda: _mlp(3, "adam"),
          "rnn": lambda: _rnn(7), "old values": _old_values}


def _compiled_text(model):
    graph = gc.Graph()
    with graph.as_default():
        fetches, shapes = MODELS[model]()
        program = build_program(fetches, shapes)
        order = [n.node_name for n in program.nodes]
        run_pipeline(program)
    numbers = stable_numbers(program)
    plan = program.plan
    rows = [f"{numbers.get(n)} {plan.offsets.get(n)} {plan.intervals.get(n)} "
            f"{plan.inplace.get(n) is not None} {plan.update_in_place.get(n)} "
            f"{plan.notes.get(n)}" for n in program.nodes]
    records = [(r["name"], r["nodes_before"], r["nodes_after"], sorted(r["changes"].items()))
               for r in program.records]
    constraints = [(numbers.get(a), numbers.get(b)) for a, b in program.constraints]
    return order, [text for _, text in program.stages], rows, records, constraints, \
        (plan.arena_bytes, plan.live_peak)


def _patch_references(monkeypatch):
    monkeypatch.setattr(program_module, "schedule_nodes", reference_schedule_nodes)
    monkeypatch.setattr(schedule, "keep_old_values", reference_keep_old_values)
    monkeypatch.setattr(memory, "keep_old_values", reference_keep_old_values)
    monkeypatch.setattr(inplace_module, "OrderedDag", ReferenceOrderedDag)
    monkeypatch.setattr(schedule, "live_peak", reference_live_peak)
    monkeypatch.setattr(schedule, "failure_edges", reference_failure_edges_from)
    monkeypatch.setattr(simplify, "GATES", {})  # every rule tried on every node
    monkeypatch.setattr(memory, "_first_fit", reference_first_fit)


@pytest.mark.parametrize("model", list(MODELS))
def test_the_pipeline_gives_byte_identical_ir_with_the_reference_implementations(
        model, monkeypatch):
    fast = _compiled_text(model)
    with monkeypatch.context() as m:
        _patch_references(m)
        slow = _compiled_text(model)
    assert fast[0] == slow[0]  # the unoptimized schedule (schedule_nodes)
    for (name, a), b in zip(zip(["input"] + [r[0] for r in fast[3]], fast[1]), slow[1]):
        assert a == b, f"stage {name} differs"
    assert fast[2:] == slow[2:]  # plan, records (counts of every pass), constraints


def test_the_old_value_model_exercises_copies_and_the_adam_model_failure_edges():
    *_, records, _, _ = _compiled_text("old values")
    sched = dict(next(r for r in records if r[0] == "schedule")[3])
    assert sched["old_value_copies"] == 2
    *_, records, _, _ = _compiled_text("mlp adam")
    assert dict(next(r for r in records if r[0] == "schedule")[3])["failure_edges"] > 0


def test_old_value_reachability_matches_networkx_descendants_on_random_dags():
    rng = np.random.RandomState(3)

    class N:  # a node with inputs (the search reads nothing else)
        def __init__(self, inputs):
            self.inputs = inputs

    for trial in range(20):
        nodes = []
        for k in range(40):
            picks = rng.choice(k, size=min(k, rng.randint(0, 3)), replace=False) if k else []
            nodes.append(N([nodes[int(i)] for i in picks]))

        class P:
            pass
        program = P()
        program.nodes = nodes
        program.constraints = [(nodes[a], nodes[b]) for a, b in
                               (sorted(rng.choice(40, 2, replace=False)) for _ in range(5))]
        succ = old_values._successors(program)
        rank = old_values._ranks(program, succ)
        dag = nx.DiGraph()
        dag.add_nodes_from(nodes)
        dag.add_edges_from((x, n) for n in nodes for x in n.inputs)
        dag.add_edges_from(program.constraints)
        starts = [nodes[i] for i in rng.choice(40, 2, replace=False)]
        targets = [nodes[i] for i in rng.choice(40, 8, replace=False)]
        want = set()
        for s in starts:
            want |= nx.descendants(dag, s) | {s}
        for r in (rank, None):  # the bounded search and the plain one
            got = old_values._reaches(succ, r, starts, targets)
            assert got == {id(t) for t in targets if t in want}


def test_the_ordered_dag_of_inputs_answers_like_networkx():
    graph = gc.Graph()
    with graph.as_default():
        fetches, shapes = _mlp(4, "sgd")
        program = build_program(fetches, shapes)
    nodes = program.nodes
    od = reachability.OrderedDag.of_inputs(nodes)
    dag = nx.DiGraph()
    dag.add_nodes_from(nodes)
    dag.add_edges_from((x, n) for n in nodes for x in n.inputs)
    rng = np.random.RandomState(5)
    added = 0
    for _ in range(400):
        u, v = (nodes[int(k)] for k in rng.choice(len(nodes), 2, replace=False))
        assert od.has_path(u, v) == nx.has_path(dag, u, v)
        if not od.has_path(v, u):
            od.add_edge(u, v)
            dag.add_edge(u, v)
            added += 1
            assert od.has_edge(u, v)
    assert added > 100
    assert all(od.rank[a] < od.rank[b] for a, b in dag.edges())


def test_failure_edges_from_ancestors_match_a_search_of_descendants():
    """Several may-fail nodes, writers that reach some of them: the edges added (in order)
    are those of a search of each writer's descendants, also when an added edge makes new
    ancestors."""
    rng = np.random.RandomState(7)
    for trial in range(40):
        nodes = list(range(30))
        pred = {v: {int(u) for u in rng.choice(v, size=min(v, rng.randint(0, 3)),
                                                replace=False)} if v else set()
                for v in nodes}
        failing = [int(k) for k in rng.choice(30, rng.randint(1, 4), replace=False)]
        writers = [(int(k), None) for k in rng.choice(30, 10)]  # (repeats: skipped)
        dag = nx.DiGraph()
        dag.add_nodes_from(nodes)
        dag.add_edges_from((u, v) for v in nodes for u in pred[v])
        want = reference_failure_edges(dag, failing, writers)
        got = rollback.failure_edges(pred, failing, writers)
        assert got == want
        assert {(u, v) for v in nodes for u in pred[v]} == set(dag.edges())


def test_simplify_gates_pass_every_op_a_rule_fires_on():
    """Every rule fires in its own test (test_passes_simplify); here: the gates let through
    the ops those rules name, and nothing gates a rule the table does not list."""
    from graphc.ir.ops.registry import REGISTRY
    names = {k for k, _ in simplify.RULES}
    assert set(simplify.GATES) <= names
    for rule, op in [("add-zero", "add"), ("relu-mask", "greater"), ("reduce-noop", "reduce_sum"),
                     ("reshape-noop", "reshape"), ("reshape-noop", "broadcast_to"),
                     ("reshape-chain", "expand_dims"), ("identity", "identity"),
                     ("matmul-transpose", "matmul"), ("log-softmax", "log")]:
        assert simplify.GATES[rule](REGISTRY[op]), (rule, op)
    assert not simplify.GATES["reshape-chain"](REGISTRY["check_numerics"])


def test_in_place_analysis_of_deeper_models_reorders_no_more(monkeypatch):
    """The ordered DAG starts from an order by depth: an MLP's weight updates (last in the
    schedule) no longer reorder the backward pass once per layer, which made the analysis
    quadratic in the depth (counted in reorderings, not in time)."""
    calls = []
    reach = reachability.OrderedDag._reach

    def counted(self, start, adjacency, inside):
        found = reach(self, start, adjacency, inside)
        calls.append(len(found))
        return found
    monkeypatch.setattr(reachability.OrderedDag, "_reach", counted)
    visited = {}
    for depth in (6, 24):
        calls.clear()
        graph = gc.Graph()
        with graph.as_default():
            fetches, shapes = _mlp(depth, "sgd")
            program = build_program(fetches, shapes)
            run_pipeline(program, passes=["prune", "fold", "simplify", "cse", "dce", "scale",
                                          "fuse", "inplace"])
        assert program.records[-1]["changes"]["inplace"] > depth  # it did decide sites
        visited[depth] = sum(calls)
    assert visited[24] <= visited[6]


def test_a_cycle_in_the_ordering_constraints_is_named():
    class N:
        def __init__(self, name):
            self.node_name, self.inputs = name, []
    a, b, c = N("a"), N("b"), N("c")
    dag = schedule._Dag([a, b, c])
    for u, v in ((a, b), (b, c), (c, b)):
        dag.add_edge(u, v)
    with pytest.raises(gc.errors.CompileError, match="'b' -> 'c'|'c' -> 'b'"):
        schedule._check_acyclic(dag, [a])
