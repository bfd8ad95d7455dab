"""What the compiler keeps instead of recomputing: a scalar body's walk, a node's op name,
the snapshots' shared attribute dicts. Each is checked against what it replaces."""
import graphc as gc
from graphc.ir import scalar as S
from graphc.ir.passes import _count
from graphc.ir.passes.stages import capture


def _fresh_walk(expr):
    """The operands-before-users order, recomputed (no memo)."""
    return expr._walk()


def test_a_body_is_walked_once_and_walks_in_the_same_order():
    x, y = S.arg(0, gc.float32), S.arg(1, gc.float32)
    body = (x * y + x) / (y - 1.0)
    first = body.walk()
    assert first is body.walk()  # kept: an Expr never changes
    assert first == _fresh_walk(body)
    assert [e.op for e in first].count("arg") == 2 and first[-1] is body
    assert S.substitute(body, [y, x]).walk() == _fresh_walk(S.substitute(body, [y, x]))


def test_long_bodies_are_walked_but_not_kept():
    body = S.arg(0, gc.float64)
    for t in range(1, S.WALK_KEPT + 10):
        body = body + S.arg(t, gc.float64)
    order = body.walk()
    assert len(order) > S.WALK_KEPT and order == _fresh_walk(body)
    assert body.walk() is not order  # (every prefix of a chain kept would be quadratic)


def test_op_name_is_the_declarations_name():
    g = gc.Graph()
    with g.as_default():
        a = gc.placeholder(gc.float32, [2], name="a")
        b = gc.nn.relu(a * 2.0)
    for n in g.nodes:
        assert n.op_name == n.opdef.name
    assert b.op_name == "relu"


def _program():
    from graphc.ir.program import build_program
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, [4, 3], name="x")
        w = gc.Variable(gc.ones([3, 2]), name="w")
        loss = gc.reduce_sum(gc.nn.relu(gc.matmul(x, w)))
        train = gc.train.GradientDescentOptimizer(0.1).minimize(loss)
    return build_program([loss, train], {x: (4, 3)})


def test_the_node_count_skips_fed_and_variable_nodes_as_before():
    program = _program()
    assert _count(program) == sum(1 for n in program.nodes if not n.opdef.external)
    assert _count(program) < len(program.nodes)


def test_a_snapshot_shares_attrs_and_copies_annotations():
    program = _program()
    snap = capture(program)
    node = next(n for n in program.nodes if n.op_name == "matmul")
    static, inputs, meta, _ = snap.state[node]
    assert static[1] is node.attrs  # never changed in place once a node is made
    assert inputs == tuple(node.inputs)
    node.meta["buffer"] = "b9"  # a later pass annotates: the snapshot does not see it
    assert "buffer" not in meta
    assert capture(program).state[node][2] == {"buffer": "b9"}
    fresh = _program()  # (an empty annotation dict is shared between snapshots, unchanged)
    assert capture(fresh).state[next(n for n in fresh.nodes if n.op_name == "matmul")][2] == {}


def test_the_stages_of_one_compile_share_each_nodes_fixed_part():
    from graphc.ir.passes.stages import Stages
    program = _program()
    stages = Stages()
    stages.record("a", program)
    stages.record("b", program)
    first, second = (stages._snaps[k].state for k in (0, 1))
    assert all(first[n][0] is second[n][0] for n in program.nodes)
    assert stages[0][1] == stages[1][1]


def test_value_inputs_is_a_copy_and_skips_what_it_skipped():
    from graphc.ir.graph import value_inputs
    program = _program()
    for n in program.nodes:
        got = value_inputs(n)
        assert got is not n.inputs
        if n.op_name == "assign":
            assert got == [n.inputs[1]]
        elif n.opdef.orders is None:
            assert got == [x for i, x in enumerate(n.inputs) if i not in n.opdef.shape_only]


def test_a_lowered_nodes_buffer_is_looked_up_once_and_is_the_plans():
    from graphc.codegen.llvm import buffers
    from graphc.codegen.llvm.lower import lower_program
    from graphc.ir.passes import run_pipeline
    program = _program()
    run_pipeline(program)
    seen = []
    original = buffers.PlannedStorage._buf

    def counted(self, node):
        seen.append(node)
        return original(self, node)
    buffers.PlannedStorage._buf = counted
    try:
        lower_program(program)
    finally:
        buffers.PlannedStorage._buf = original
    assert seen and len(seen) == len(set(seen))  # each node's buffer computed once
