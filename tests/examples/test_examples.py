"""Every example runs in its quick mode (as a user would: a subprocess) and shows what it
claims to show; the assertions parse the numbers it prints."""
import os
import re
import subprocess
import sys
from tests.support.paths import ROOT



def run_example(name, *args, tmp_path=None):
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "examples", name), *args],
                          capture_output=True, text=True, timeout=300,
                          cwd=str(tmp_path) if tmp_path else ROOT)
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def number(pattern, text):
    m = re.search(pattern, text, re.M)
    assert m, f"no match for {pattern!r} in:\n{text}"
    return float(m.group(1))


def test_deep_residual_shows_vanishing_and_the_cure():
    out = run_example("deep_residual.py", "--quick")
    plain = number(r"^plain: first/last layer gradient norm ratio = (\S+)", out)
    resid = number(r"^residual: first/last layer gradient norm ratio = (\S+)", out)
    assert plain < 1e-6 and resid > 0.1
    assert number(r"^plain: vanishing layers per the gradient report: (\d+) of 20", out) >= 5
    assert number(r"^residual: vanishing layers per the gradient report: (\d+) of 20", out) == 0
    before = number(r"^residual: loss (\S+) ->", out)
    after = number(r"^residual: loss \S+ -> (\S+) after", out)
    assert after < before


def test_exploding_gradients_diverge_and_clipping_cures_them():
    out = run_example("exploding_clipping.py", "--quick")
    assert re.search(r"^no clipping: .*\(diverged\)$", out, re.M), out
    assert "exploding" in out
    start = number(r"^clipped to global norm 1: loss (\S+) at step 0", out)
    end = number(r"^clipped to global norm 1: loss \S+ at step 0, (\S+) at step", out)
    assert end < start / 10


def test_second_order_hvp_and_newton():
    out = run_example("second_order.py", "--quick")
    assert number(r"max relative error (\S+)$", out) < 1e-6
    assert number(r"symmetric to (\S+),", out) < 1e-12
    norms = [float(v) for v in re.search(r"^gradient norm: (.*)$", out, re.M).group(1)
             .split(" -> ")]
    assert len(norms) == 3 and norms[0] > norms[1] > norms[2]


def test_gradient_check_passes_the_correct_model_and_names_the_bug():
    out = run_example("gradient_check.py", "--quick")
    assert "correct layer norm: all gradients agree" in out
    assert "layer norm with stop_gradient: wrong gradients: dense1/W, dense1/b" in out
    assert out.count("PASSED") == 1 and out.count("FAILED") == 1


def test_zero_init_keeps_units_identical_random_breaks_symmetry():
    out = run_example("init_symmetry.py", "--quick")
    assert number(r"^all-zero init: (\d+) distinct hidden units of 32", out) == 1
    assert number(r"^random init \(Glorot uniform\): (\d+) distinct hidden units", out) == 32
    zero = number(r"^all-zero init: .*test accuracy (\S+)$", out)
    rand = number(r"^random init .*test accuracy (\S+)$", out)
    assert rand > zero + 0.3


def test_mlp_digits_trains_and_restores_its_checkpoint(tmp_path):
    out = run_example("mlp_digits.py", "--quick", "--checkpoint-dir", str(tmp_path),
                      tmp_path=tmp_path)
    acc = number(r"^test accuracy (\S+); after restoring", out)
    restored = number(r"after restoring the checkpoint (\S+)$", out)
    assert acc > 0.9 and restored == acc
    # named by the global step (2 x 45 batches), beside TF1's checkpoint state file, with the
    # meta graph that Saver.save writes as TF1's does
    assert sorted(os.listdir(tmp_path)) == ["checkpoint", "mlp-90.meta", "mlp-90.npz"]


def test_rnn_full_and_truncated_bptt():
    out = run_example("rnn_bptt.py", "--quick")
    assert number(r"^full BPTT: echo accuracy (\S+)", out) > 0.95
    assert number(r"^truncated BPTT, windows of 10: echo accuracy (\S+)", out) > 0.9
    # the recalled bit is 8 steps back: a 2-step window never sees its gradient
    assert number(r"^truncated BPTT, windows of 2: echo accuracy (\S+)", out) < 0.7


def test_cnn_digits_learns():
    out = run_example("cnn_digits.py", "--quick")
    assert number(r"^test accuracy (\S+)$", out) > 0.85
