"""Algebraic simplification: every rule in ``RULES`` fires on a graph made for it, leaves the
values as the reference computes them, and refuses where IEEE arithmetic differs."""
import numpy as np
import pytest

import graphc as gc
from graphc.ir.ops import apply
from graphc.ir.passes.simplify import RULES

from tests.support.pass_testing import check_passes, mlp, ops, program_of

A = np.array([[1.5, -2.0, 0.0], [-0.0, 3.25, -1.0]])


def _x(shape=(2, 3), name="x"):
    return gc.placeholder(gc.float64, list(shape), name=name)


def _cases():
    """rule -> (builder returning (fetches, feeds), op that must be gone afterwards)."""
    def unary(f):
        def build():
            x = _x()
            return [f(x)], {x: A}
        return build

    def matmul_t():
        a, b = _x((3, 2), "a"), _x((3, 4), "b")
        return [gc.matmul(gc.transpose(a), b)], {a: A.T.copy(), b: np.arange(12.0).reshape(3, 4)}

    def ints(f):
        def build():
            k = gc.placeholder(gc.int32, [3], name="k")
            return [f(k)], {k: np.array([3, -4, 0], np.int32)}
        return build

    def log_softmax():
        x = _x()
        return [gc.log(gc.nn.softmax(x))], {x: A}

    def relu_mask():
        x = _x()
        r = gc.nn.relu(x)
        return [r, gc.cast(gc.greater(x, 0.0), gc.float64)], {x: A}

    return {
        "identity": (unary(lambda x: gc.identity(x) * 3.0), "identity"),
        "add-zero": (ints(lambda k: k + 0), "add"),
        "sub-zero": (unary(lambda x: x - 0.0), "subtract"),
        "zero-sub": (ints(lambda k: 0 - k), "subtract"),
        "mul-one": (unary(lambda x: x * 1.0), "multiply"),
        "div-one": (unary(lambda x: x / 1.0), "divide"),
        "mul-minus-one": (unary(lambda x: x * -1.0), "multiply"),
        "neg-neg": (unary(lambda x: -(-x) + 1.0), "negative"),
        "add-neg": (unary(lambda x: gc.exp(x) + (-x)), "negative"),
        "sub-neg": (unary(lambda x: gc.exp(x) - (-x)), "negative"),
        "cast-same": (unary(lambda x: apply("cast", [x], {"dtype": gc.float64}) * 2.0), "cast"),
        "where-same": (unary(lambda x: (lambda e: gc.where(x > 0.0, e, e))(gc.exp(x))), "where"),
        "transpose-identity": (unary(lambda x: gc.transpose(x, [0, 1]) * 2.0), "transpose"),
        "transpose-transpose": (unary(lambda x: gc.transpose(gc.transpose(x)) * 2.0),
                                "transpose"),
        "matmul-transpose": (matmul_t, "transpose"),
        "reshape-noop": (unary(lambda x: gc.reshape(x, [2, 3]) * 2.0), "reshape"),
        "reshape-chain": (unary(lambda x: gc.reshape(gc.reshape(x, [3, 2]), [6])), None),
        "log-softmax": (log_softmax, "softmax"),
        "reduce-noop": (unary(lambda x: gc.reduce_sum(x, axis=[]) * 2.0), "reduce_sum"),
        "relu-mask": (relu_mask, None),
    }


CASES = _cases()


def test_every_rule_has_a_case():
    assert sorted(CASES) == sorted(name for name, _ in RULES)


@pytest.mark.parametrize("rule", sorted(CASES))
def test_rule_fires_and_preserves_values(rule):
    build, gone = CASES[rule]
    fetches, feeds = build()
    prog = program_of(fetches, feeds, passes=["simplify"])
    fired = prog.records[0]["changes"]
    assert fired.get(rule, 0) >= 1, fired
    exact = rule not in ("log-softmax", "matmul-transpose")
    opt = check_passes(fetches, feeds, passes=["simplify", "dce"],
                       rtol=1e-15 if exact else 1e-12, atol=0 if exact else 1e-14)
    if gone is not None:
        assert gone not in ops(opt), ops(opt)


def test_reshape_chain_becomes_one_reshape():
    x = _x()
    y = gc.expand_dims(gc.reshape(gc.squeeze(gc.reshape(x, [1, 6])), [3, 2]), 0)
    opt = check_passes([y * 2.0], {x: A}, passes=["simplify", "dce"])
    assert ops(opt).count("reshape") + ops(opt).count("expand_dims") == 1


def test_relu_mask_lets_the_preactivation_die_after_relu():
    x, y, loss, train, feeds = mlp()
    opt = check_passes([loss, train], feeds, passes=["prune", "fold", "simplify", "dce"])
    relu_in = [n.inputs[0] for n in opt.nodes if n.op_name == "relu"]
    users = [n for n in opt.nodes if any(i is r for r in relu_in for i in n.inputs)]
    assert all(u.op_name == "relu" for u in users)


def test_relu_mask_keeps_the_schedule_topological_when_relu_comes_later():
    """The fuzzer's seed 601581, shrunk: elu's mask ``t > 0`` (read by elu's select) is
    rewritten to read ``relu(t)``, which the user built after elu. The rewrite used to be
    placed after relu, behind the select that reads it (fusion then crashed); now relu moves
    up before the mask. ``program_of`` verifies the schedule after every pass."""
    x = _x((5, 4))
    t = gc.identity(x)
    e = gc.nn.elu(t)
    y = gc.nn.relu(t) - e
    feeds = {x: np.random.default_rng(0).normal(size=(5, 4))}
    opt = check_passes([y], feeds)
    assert opt.records[[r["name"] for r in opt.records].index("simplify")]["changes"][
        "relu-mask"] == 1


@pytest.mark.parametrize("what,fn", [
    ("x + 0.0 (turns -0.0 into +0.0)", lambda x: x + 0.0),
    ("0.0 - x (differs from -x at +0.0)", lambda x: 0.0 - x),
    ("x - (-0.0)", lambda x: x - gc.constant(-0.0, gc.float64)),
    ("x * 0 (NaN and Inf)", lambda x: x * 0.0),
    ("x - x (NaN and Inf)", lambda x: x - x),
])
def test_rules_that_would_change_ieee_results_do_not_fire(what, fn):
    x = _x()
    feeds = {x: np.array([[-0.0, np.inf, np.nan], [1.0, -np.inf, 0.0]])}
    prog = program_of([fn(x)], feeds, passes=["simplify"])
    assert prog.records[0]["changes"] == {}, what
    check_passes([fn(x)], feeds, passes=["simplify"], rtol=0, atol=0)


def test_negative_zero_addend_is_dropped_bit_for_bit():
    x = _x()
    feeds = {x: np.array([[-0.0, 1.0, -2.5], [0.0, np.nan, np.inf]])}
    y = x + gc.constant(-0.0, gc.float64)
    prog = program_of([y * 2.0], feeds, passes=["simplify", "dce"])
    assert prog.records[0]["changes"] == {"add-zero": 1}
    check_passes([y * 2.0], feeds, passes=["simplify", "dce"], rtol=0, atol=0)
