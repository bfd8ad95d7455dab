"""Prune, constant folding, CSE and DCE: what each removes, merges or folds, with the values
still those of the unoptimized reference (and the verifier clean after every pass)."""
import numpy as np
import pytest

import graphc as gc
from graphc.errors import CompileError
from graphc.ir.passes import resolve

from tests.support.pass_testing import check_passes, mlp, ops, program_of

X = np.array([[0.5, -1.0, 2.0], [1.5, 0.25, -3.0]])


def test_prune_rewrites_shape_only_dependencies():
    x = gc.placeholder(gc.float64, [None, 3], name="x")
    big = gc.exp(x) * 2.0  # read only for its shape below
    y = gc.reduce_mean(x * x) + gc.reduce_sum(gc.zeros_like(big)) + gc.reduce_sum(
        gc.ones_like(big))
    g, = gc.gradients(y, [x])
    opt = check_passes([g], {x: X}, passes=["prune"])
    changes = opt.records[0]["changes"]
    assert changes["static_shapes"] >= 3 and changes["removed"] >= 2
    names = ops(opt)
    assert "exp" not in names and "broadcast_like" not in names and "dim_size" not in names


def test_fold_turns_the_loss_seed_into_one_splat_constant():
    x, y, loss, train, feeds = mlp()
    opt = check_passes([loss, train], feeds, passes=["prune", "fold", "dce"])
    assert opt.records[1]["changes"]["folded"] >= 4
    splats = [n for n in opt.nodes if n.op_name == "const" and n.attrs["value"].size > 1
              and all(s == 0 for s in n.attrs["value"].strides)]
    assert splats, "the broadcast seed 1/batch should be a zero-strided splat"
    assert not any(n.op_name in ("ones_like", "divide", "broadcast_to") for n in opt.nodes)


def test_fold_keeps_random_ops_and_large_tables_for_run_time():
    big = gc.constant(np.arange(1 << 17, dtype=np.float64))
    r = gc.random_normal([3], seed=1, dtype=gc.float64)
    x = gc.placeholder(gc.float64, [3], name="x")
    out = [gc.reduce_sum(big * 2.0) + x, r * 1.0]
    prog = program_of(out, {x: np.ones(3)}, passes=["fold"])
    names = ops(prog)
    assert "random_normal" in names and "multiply" in names  # big*2 is not a splat: kept


def test_cse_merges_commutative_operands_and_equal_constants():
    x = gc.placeholder(gc.float64, [2, 3], name="x")
    w = gc.placeholder(gc.float64, [3], name="w")
    a = x * w + gc.constant(1.0, gc.float64)
    b = w * x + gc.constant(1.0, gc.float64)
    opt = check_passes([gc.exp(a) - gc.exp(b)], {x: X, w: np.array([1.0, 2.0, -1.0])},
                       passes=["cse", "dce"])
    assert opt.records[0]["changes"]["merged"] == 4  # const, multiply, add, exp
    assert ops(opt).count("multiply") == 1 and ops(opt).count("exp") == 1


@pytest.mark.parametrize("what,make", [
    ("random draws", lambda x: (gc.random_normal([2, 3], seed=3, dtype=gc.float64),
                                gc.random_normal([2, 3], seed=3, dtype=gc.float64))),
    ("placeholders", lambda x: (gc.placeholder(gc.float64, [2, 3], name="p"),
                                gc.placeholder(gc.float64, [2, 3], name="q"))),
    ("0.0 and -0.0", lambda x: (gc.constant(0.0, gc.float64), gc.constant(-0.0, gc.float64))),
])
def test_cse_never_merges_distinct_values(what, make):
    x = gc.placeholder(gc.float64, [2, 3], name="x")
    a, b = make(x)
    feeds = {x: X}
    for p in (a, b):
        if p.op_name == "placeholder":
            feeds[p] = X * (2.0 if p.op.name == "q" else 1.0)
    out = [x + a, x + b]
    prog = program_of(out, feeds, passes=["cse"])
    assert prog.records[0]["changes"]["merged"] == 0, what


def test_cse_keeps_assigns_apart_and_dce_drops_what_is_unused():
    v = gc.Variable(np.zeros(3), name="v")
    x = gc.placeholder(gc.float64, [3], name="x")
    unused = gc.exp(x) * 3.0  # noqa: F841  (never fetched)
    a1 = gc.assign(v, x * 2.0)
    twice = x * 2.0
    opt = check_passes([a1, twice + 1.0], {x: np.array([1.0, 2.0, 3.0])},
                       passes=["cse", "dce"], steps=2)
    assert opt.records[0]["changes"]["merged"] == 2  # the constants 2.0 and the two x * 2.0
    assert ops(opt).count("assign") == 1 and "exp" not in ops(opt)


def test_unknown_pass_is_a_clear_error():
    with pytest.raises(CompileError,
                       match="(?s)unknown pass .fuse_all.*known passes: unroll, prune"):
        resolve(["prune", "fuse_all"])


def test_default_pipeline_on_a_training_step_over_several_steps():
    x, y, loss, train, feeds = mlp(act="tanh")
    opt = check_passes([loss, train], feeds, steps=3)
    names = [r["name"] for r in opt.records]
    assert names == ["unroll", "prune", "fold", "simplify", "cse", "dce", "scale", "fuse",
                     "inplace", "schedule", "plan"]
    assert opt.records[0]["nodes_before"] > opt.records[-1]["nodes_after"]
