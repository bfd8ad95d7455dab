"""The README is the front door: its example runs as written, and CI runs exactly its two
Quickstart commands."""
import pathlib
import re
import subprocess
import sys
from tests.support.paths import ROOT

README = (ROOT / "README.md").read_text()


def test_readme_example_runs_and_trains(tmp_path):
    code = re.search(r"```python\n(.*?)```", README, re.S).group(1)
    script = tmp_path / "example.py"
    script.write_text(code)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    loss = float(re.search(r"loss ([0-9.e-]+)", out.stdout).group(1))
    assert loss < 0.7  # ln(10) = 2.30 before training


def test_ci_runs_exactly_the_quickstart_commands():
    block = README.split("## Quickstart", 1)[1].split("```", 2)[1]
    commands = [line.strip() for line in block.strip().splitlines() if line.strip()]
    assert len(commands) == 2
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    ci_commands = [line.strip() for line in ci if line.strip() and not line.startswith("#")
                   and not line.startswith(("set ", "cd "))]
    assert ci_commands == commands
