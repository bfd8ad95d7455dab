"""``examples/tf1_classic.py``, a whole TF1-era training script written the way such scripts
were, runs unchanged on graphc in a fresh process: compat.v1 import, flags and logging,
tf.data with an initializable iterator and OutOfRangeError, contrib layers with an L2
regularizer, a CNN with conv2d_transpose in an auxiliary reconstruction head, tf.summary into
a FileWriter, a while_loop-computed schedule value, a Saver checkpoint, and evaluation on
held-out data."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.support.paths import ROOT

SCRIPT = ROOT / "examples" / "tf1_classic.py"


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_a_tf1_era_script_runs_unchanged(tmp_path, backend):
    env = dict(os.environ, GRAPHC_BACKEND=backend)
    out = subprocess.run([sys.executable, str(SCRIPT), "--epochs", "4", "--lr=0.02",
                          f"--logdir={tmp_path}"], capture_output=True, text=True,
                         timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    words = out.stdout.split()
    steps, accuracy, n_train = int(words[1]), float(words[3]), int(words[5])
    assert steps == 4 * -(-n_train // 64)       # the last batch of each epoch is smaller
    assert accuracy > 0.8, out.stdout
    assert "epoch 3 done" in out.stderr          # tf.logging at INFO
    events = [p for p in os.listdir(tmp_path) if p.startswith("events.out.tfevents")]
    assert len(events) == 1 and os.path.getsize(tmp_path / events[0]) > 1000
    assert any(p.startswith("model-") for p in os.listdir(tmp_path))
