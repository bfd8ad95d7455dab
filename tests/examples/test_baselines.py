"""The hand-written NumPy benchmark baselines are correct: gradients, updates, dtypes."""

import importlib.util
import pathlib

import numpy as np
import pytest
from tests.support.paths import ROOT

_PATH = ROOT / "benchmarks" / "baselines.py"
_spec = importlib.util.spec_from_file_location("baselines", _PATH)
baselines = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(baselines)

NAMES = list(baselines.WORKLOADS)


def test_gradients_match_central_differences():
    report = baselines.check_gradients()
    assert set(report) == set(NAMES) | {"W4 ties"}
    for name, model in [(n, baselines.WORKLOADS[n]()) for n in NAMES]:
        assert set(report[name]) == set(model.params)


def test_steps_apply_sgd_and_clipped_adam():
    baselines.check_updates()


@pytest.mark.parametrize("name", NAMES)
def test_make_data_shapes(name):
    x, y = baselines.make_data(name, seed=1)
    assert x.shape == baselines.WORKLOADS[name].input_shape and x.dtype == np.float32
    assert y.dtype == np.int64 and y.min() >= 0 and y.max() < 10
    batch = x.shape[1] if name == "W3" else x.shape[0]
    assert y.shape == (batch,)
    np.testing.assert_array_equal(baselines.make_data(name, seed=1)[0], x)


@pytest.mark.parametrize("name", NAMES)
def test_float32_step_stays_float32_and_agrees_with_float64(name):
    x64, y = baselines.make_data(name, seed=5, dtype=np.float64)
    m32 = baselines.WORKLOADS[name](seed=3)
    m64 = baselines.WORKLOADS[name](seed=3, dtype=np.float64)
    loss32 = m32.loss_and_grads(x64.astype(np.float32), y)
    loss64 = m64.loss_and_grads(x64, y)
    assert loss32 == pytest.approx(loss64, rel=1e-5)
    for k in m64.grads:
        scale = np.abs(m64.grads[k]).max()
        np.testing.assert_allclose(m32.grads[k], m64.grads[k], atol=1e-4 * scale, err_msg=k)
    m32.step(x64.astype(np.float32), y)
    floating = {k: v for k, v in vars(m32).items()
                if isinstance(v, np.ndarray) and v.dtype.kind == "f"}
    assert floating and all(v.dtype == np.float32 for v in floating.values()), \
        {k: v.dtype for k, v in floating.items()}
    assert np.isfinite(m32.flat_params).all()


def test_step_is_deterministic():
    x, y = baselines.make_data("W3")
    a, b = baselines.W3(seed=0), baselines.W3(seed=0)
    assert [a.step(x, y) for _ in range(3)] == [b.step(x, y) for _ in range(3)]
    np.testing.assert_array_equal(a.flat_params, b.flat_params)


def test_w2_learns_the_digits():
    from graphc.data import batches, load_digits, train_test_split

    x_train, x_test, y_train, y_test = train_test_split(*load_digits(), seed=0)
    model = baselines.W2(seed=0)
    model.lr = 0.5  # the benchmark's 0.01 is for timing; this checks learning quickly
    for epoch in range(15):
        for xb, yb in batches(x_train, y_train, 32, seed=epoch, drop_last=True):
            model.step(xb, yb)
    hits = []
    for xb, yb in batches(x_test, y_test, 32, shuffle=False, drop_last=True):
        model._forward(xb, yb)
        hits.append(model.out[-1].argmax(axis=1) == yb)
    assert np.mean(np.concatenate(hits)) > 0.9
