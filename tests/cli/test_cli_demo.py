"""``graphc demo``: runs, prints per-epoch loss and accuracy, reaches 0.95 with the defaults,
writes its IR dump and generated code, and the CLI handles bad usage."""
import os
import re
import subprocess
import sys

import pytest

from graphc import cli


def run_demo(capsys, *argv):
    code = cli.main(["demo", *argv])
    out = capsys.readouterr().out
    return code, out


def final_accuracy(out):
    m = re.search(r"^test accuracy (\d\.\d+) after", out, re.M)
    assert m, out
    return float(m.group(1))


def test_one_epoch_prints_accuracy_and_writes_dumps(capsys, tmp_path):
    code, out = run_demo(capsys, "--epochs", "1", "--dump-dir", str(tmp_path))
    assert code == 0
    assert re.search(r"^epoch 1/1 \[#+\] 44/44 loss \d\.\d{4}  acc \d\.\d{4}  test acc "
                     r"\d\.\d{4}", out, re.M), out
    assert final_accuracy(out) > 0.8  # one epoch of Adam: far above chance (0.1)
    assert re.search(r"^step time: \d+\.\d+ ms median over 43 training steps", out, re.M)
    assert f"written to {tmp_path}" in out
    step_dir = tmp_path / "train_step"
    code = [f for f in os.listdir(step_dir) if f.startswith("train_step.")]
    assert len(code) == 1 and f"train_step/{code[0]}" in out
    assert len((step_dir / code[0]).read_text()) > 1000
    # the pass pipeline's dumps of the training step, and its table in the output
    assert (step_dir / "00-input.ir").exists() and (step_dir / "passes.txt").exists()
    assert "what the passes did to the training step:" in out
    ir = (tmp_path / "graph.ir.txt").read_text()
    assert "matmul" in ir and "assign" in ir and "sparse_softmax_xent" in ir


def test_defaults_reach_the_promised_accuracy(capsys, tmp_path):
    code, out = run_demo(capsys, "--dump-dir", str(tmp_path))
    assert code == 0
    assert out.count("test acc ") == 10
    assert final_accuracy(out) >= 0.95


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "rmsprop"])
def test_every_optimizer_reaches_the_promised_accuracy(capsys, tmp_path, optimizer):
    code, out = run_demo(capsys, "--optimizer", optimizer, "--backend", "numpy",
                         "--dump-dir", str(tmp_path), "--seed", "1")
    assert code == 0 and f"{optimizer} lr=" in out
    losses = [float(v) for v in re.findall(r"\] 44/44 loss (\d\.\d+)", out)]
    assert len(losses) == 10 and losses[-1] < losses[0] / 5
    assert final_accuracy(out) >= 0.95


def test_numpy_backend_on_request_and_unknown_backend_rejected(capsys, tmp_path):
    code, out = run_demo(capsys, "--backend", "numpy", "--epochs", "1", "--dump-dir",
                         str(tmp_path))
    assert code == 0 and "backend: numpy" in out and "not available" not in out
    with pytest.raises(SystemExit) as info:
        cli.main(["demo", "--backend", "cuda"])
    assert info.value.code == 2
    assert "invalid choice: 'cuda'" in capsys.readouterr().err


def test_no_command_prints_help(capsys):
    assert cli.main([]) == 2
    assert "demo" in capsys.readouterr().out


def test_console_entry_point_runs_as_a_process(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "graphc.cli", "demo", "--epochs", "1",
                           "--dump-dir", str(tmp_path / "d")], capture_output=True, text=True,
                          timeout=120, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "test accuracy" in proc.stdout and os.path.isdir(tmp_path / "d")
