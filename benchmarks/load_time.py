"""Time from process start to a loaded step's first result, without the compiler.

Saves the demo's training step (MLP 64 -> 128 -> 10, Adam, batch 32) on each backend, then
starts fresh Python processes that ``from graphc.runtime import load``, load it and run one
step; reports the median and minimum wall time of the whole process (interpreter start
included) over several runs, and whether any compiler module was imported.

    python benchmarks/load_time.py [--runs 7]
"""
import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import graphc as gc
from graphc.cli.demo import build_model

CHILD = """
import sys
from graphc.runtime import load
import numpy as np
step = load(sys.argv[1])
rng = np.random.default_rng(0)
step(x=rng.random((32, 64), dtype=np.float32), y=rng.integers(0, 10, 32))
print(any(m.startswith(("graphc.ir", "graphc.codegen", "networkx")) for m in sys.modules))
"""


def _timed(argv, **kwargs):
    """(wall seconds, CPU seconds of the child, its stdout) of one process run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run(argv, check=True, capture_output=True, text=True, **kwargs).stdout
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, out


def _ms(xs):
    return f"median {statistics.median(xs) * 1e3:.0f} ms, min {min(xs) * 1e3:.0f} ms"


def _save(backend, folder):
    gc.reset_default_graph()
    model = build_model(gc, 128, "adam", None, seed=0)
    step = gc.compile([model["loss"], model["train"]], backend=backend)
    rng = np.random.default_rng(0)
    step(x=rng.random((32, 64), dtype=np.float32), y=rng.integers(0, 10, 32))
    path = Path(folder) / f"demo_{backend}.gcx"
    step.save(path)
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        bare = [_timed([sys.executable, "-c", "import numpy"]) for _ in range(args.runs)]
        print(f"python -c 'import numpy': wall {_ms([w for w, _, _ in bare])}; "
              f"CPU {_ms([c for _, c, _ in bare])}")
        for backend in ("numpy", "llvm"):
            path = _save(backend, folder)
            runs = [_timed([sys.executable, "-c", CHILD, str(path)], cwd=folder)
                    for _ in range(args.runs)]
            compiler = sorted({out.strip() for _, _, out in runs})
            print(f"{backend:5s}: process start to first step: wall {_ms([w for w, _, _ in runs])}"
                  f"; CPU {_ms([c for _, c, _ in runs])}; compiler imported: "
                  f"{', '.join(compiler)}")


if __name__ == "__main__":
    main()
