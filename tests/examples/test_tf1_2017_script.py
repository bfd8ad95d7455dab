"""examples/tf1_2017.py, a 2017-style TF1 script (shapeless placeholders, tf.shape-driven sizes,
"name:0" fetches, get_variable, dynamic_rnn, FileWriter, Saver), runs unchanged but for its
import on both backends: it learns, saves under TF1's prefix and restores the same accuracy."""
import os
import re
import subprocess
import sys

import pytest

from tests.support.paths import ROOT

SCRIPT = ROOT / "examples" / "tf1_2017.py"


def test_only_the_import_line_names_graphc():
    code = [line for line in SCRIPT.read_text().splitlines()
            if "graphc" in line and not line.lstrip().startswith("#")]
    code = [line for line in code if not line.startswith(("    python", "    GRAPHC_"))]
    assert code == ["import graphc as tf  # the original: import tensorflow as tf"]


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_a_2017_script_learns_saves_and_restores(tmp_path, backend):
    env = dict(os.environ, GRAPHC_BACKEND=backend)
    out = subprocess.run([sys.executable, str(SCRIPT), "--steps", "60",
                          f"--logdir={tmp_path}"], capture_output=True, text=True,
                         timeout=300, env=env, cwd=str(tmp_path))
    assert out.returncode == 0, out.stderr[-3000:]
    final = re.findall(r"^step 60, test cost (\S+), test accuracy (\S+)$", out.stdout, re.M)
    assert final, out.stdout
    cost, accuracy = map(float, final[0])
    assert accuracy > 0.85 and cost < 0.4, out.stdout   # chance is 0.5 and ln 2
    prefix = str(tmp_path / "model.ckpt-60")
    assert f"Model saved in file: {prefix}\n" in out.stdout
    restored = re.search(rf"^Restored from {re.escape(prefix)}, test accuracy (\S+)$",
                         out.stdout, re.M)
    assert restored and float(restored.group(1)) == accuracy
    files = sorted(os.listdir(tmp_path))
    assert "model.ckpt-60.npz" in files and "checkpoint" in files
    events = [f for f in files if f.startswith("events.out.tfevents")]
    assert len(events) == 1 and os.path.getsize(tmp_path / events[0]) > 1000
