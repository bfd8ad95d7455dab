"""Every example on the LLVM backend: each script runs unchanged with ``GRAPHC_BACKEND=llvm``
and must show what it claims (the same assertions as ``test_examples``), and the numbers a
deterministic example prints agree with the NumPy backend's."""
import os
import re
import subprocess
import sys

import pytest

import tests.examples.test_examples as test_examples

ROOT = test_examples.ROOT


def _run(name, backend, *args, tmp_path=None):
    env = dict(os.environ, GRAPHC_BACKEND=backend)
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "examples", name), *args],
                          capture_output=True, text=True, timeout=300, env=env,
                          cwd=str(tmp_path) if tmp_path else ROOT)
    assert proc.returncode == 0, f"{name} ({backend}) failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


CLAIMS = [getattr(test_examples, n) for n in dir(test_examples) if n.startswith("test_")]


@pytest.mark.parametrize("claim", CLAIMS, ids=[c.__name__[5:] for c in CLAIMS])
def test_example_claims_hold_on_llvm(claim, monkeypatch, tmp_path):
    monkeypatch.setattr(test_examples, "run_example",
                        lambda name, *args, tmp_path=None: _run(name, "llvm", *args,
                                                                 tmp_path=tmp_path))
    if "tmp_path" in claim.__code__.co_varnames[:claim.__code__.co_argcount]:
        claim(tmp_path)
    else:
        claim()


def _numbers(text):
    return [float(v) for v in re.findall(r"-?\d+\.\d+(?:e[-+]?\d+)?", text)]


@pytest.mark.parametrize("name", ["second_order.py", "init_symmetry.py"])
def test_printed_numbers_agree_with_numpy(name):
    ref, got = _run(name, "numpy", "--quick"), _run(name, "llvm", "--quick")
    a, b = _numbers(ref), _numbers(got)
    assert len(a) == len(b) and a, f"{name}: outputs differ in shape:\n{ref}\n{got}"
    for x, y in zip(a, b):
        assert abs(x - y) <= 1e-3 + 1e-3 * abs(x), f"{name}: {x} vs {y}\n{ref}\n{got}"
