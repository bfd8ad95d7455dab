"""The wheel holds every package of the source tree: a normal install works, not only -e.

Packages are found by setup.py, never listed by hand; this builds the wheel the way
``pip install .`` does and compares its folders with every folder that has an
``__init__.py`` below the four source roots.
"""
import subprocess
import sys
import zipfile
from pathlib import Path
from tests.support.paths import ROOT

ROOTS = {"graphc": "graphc", "ir": "graphc/ir", "codegen": "graphc/codegen",
         "runtime": "graphc/runtime"}


def _source_packages():
    found = set()
    for folder, name in ROOTS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            found.add(str(Path(name) / rel) if str(rel) != "." else name)
    return found


def test_the_wheel_holds_every_package_and_the_data(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps",
                    "--no-build-isolation", "-q", "-w", str(tmp_path)],
                   check=True, capture_output=True, cwd=tmp_path)
    wheel = next(tmp_path.glob("graphc-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    packaged = {str(Path(n).parent) for n in names if n.endswith("__init__.py")}
    missing = _source_packages() - packaged
    assert not missing, f"packages left out of the wheel: {sorted(missing)}"
    assert {"graphc/contrib", "graphc/ir/ops", "graphc/ir/passes"} <= packaged
    assert any(n.startswith("graphc/data/") and n.endswith(".npz") for n in names)
