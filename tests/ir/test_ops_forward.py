"""Forward semantics of every op against plain NumPy, on the reference pipeline
(``Session(optimize=False)``) and the optimized one, with static and None leading dims; the
op's own ``evaluate`` (used by constant folding) agrees too."""
import numpy as np
import pytest

import graphc as gc
from graphc.ir.ops import REGISTRY

from tests.support import optable
from tests.support.checks import assert_close, run_both

MODES = ["static", "dynamic"]


def _cases():
    for r in optable.ROWS:
        for dt in r.dtypes:
            for mode in MODES if r.dynamic else MODES[:1]:
                yield pytest.param(r, dt, mode, id=f"{r.name}-{dt}-{mode}")


@pytest.mark.parametrize("r,dtype,mode", list(_cases()))
def test_forward_matches_numpy(r, dtype, mode):
    phs, values, out = optable.instantiate(r, dtype, dynamic=mode == "dynamic")
    expected, exp_dtype = optable.reference(r, values)
    assert out.dtype.np == exp_dtype, f"{r.name}: node dtype {out.dtype} vs NumPy {exp_dtype}"
    assert len(out.shape) == expected.ndim and all(
        d is None or d == e for d, e in zip(out.shape, expected.shape)), \
        f"{r.name}: static shape {out.shape} vs {expected.shape}"
    ref, opt = run_both(out, dict(zip(phs, values)))
    for got, label in ((ref, "reference"), (opt, "optimized")):
        got = np.asarray(got)
        assert got.dtype == exp_dtype and got.shape == expected.shape, \
            f"{r.name} ({label}): {got.dtype}{got.shape} vs {exp_dtype}{expected.shape}"
        if exp_dtype.kind in "biu":
            np.testing.assert_array_equal(got, expected, err_msg=f"{r.name} ({label})")
        else:
            assert_close(got, expected, dtype, f"{r.name} ({label})")


@pytest.mark.parametrize("r", [r for r in optable.ROWS if r.op is not None
                               and REGISTRY[r.op].family != "state"], ids=lambda r: r.name)
def test_opdef_evaluate_matches_session(r):
    """``OpDef.evaluate`` (constant folding's semantics) agrees with the compiled step, on
    every node the row built."""
    dtype = r.dtypes[-1]
    phs, values, out = optable.instantiate(r, dtype)
    computed = dict(zip(phs, values))
    nodes = [n for n in out.graph.nodes if n.op_name != "placeholder"]
    for n in nodes:
        if n.op_name == "const":
            computed[n] = n.attrs["value"]
            continue
        computed[n] = n.opdef.evaluate([computed[i] for i in n.inputs], dict(n.attrs))
    fetched = run_both(nodes, dict(zip(phs, values)))[0]
    for n, got in zip(nodes, fetched):
        want = np.asarray(computed[n])
        assert np.asarray(got).dtype == want.dtype == n.dtype.np, n.describe()
        assert_close(got, want, dtype, n.describe())


@pytest.mark.parametrize("name,build,expected", optable.CREATION, ids=[c[0] for c in
                                                                        optable.CREATION])
def test_creation_ops(name, build, expected):
    t = build()
    assert t.dtype.np == expected.dtype and tuple(t.shape) == expected.shape
    for got in run_both(t):
        got = np.asarray(got)
        assert got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected)


def test_every_registered_op_has_a_row():
    covered = {r.op for r in optable.ROWS} | set(optable.NOT_IN_TABLE)
    missing = sorted(set(REGISTRY) - covered)
    assert not missing, (f"ops without a row in tests/support/optable.py: {missing}; "
                         "adding an op adds its row")
    assert not {r.op for r in optable.ROWS if r.op} - set(REGISTRY)


def test_every_op_of_the_issue_is_covered():
    apis = {r.api for r in optable.ROWS}
    creation = {name.split("[")[0] for name, _, _ in optable.CREATION}
    missing = [op for op in optable.ISSUE_OPS if op not in apis | creation]
    assert not missing
    for op in optable.ISSUE_OPS:
        assert hasattr(gc, op) or hasattr(gc.nn, op), f"gc.{op} / gc.nn.{op} is missing"


def test_integer_arithmetic_stays_integer():
    x = gc.placeholder(gc.int32, [3])
    y = x * 2 + 1 - x
    assert y.dtype == gc.int32
    for got in run_both(y, {x: np.array([1, 2, 3], np.int32)}):
        assert got.dtype == np.int32
        np.testing.assert_array_equal(got, [2, 3, 4])
