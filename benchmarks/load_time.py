"""Time from process start to a loaded step's first result, without the compiler.

Saves the demo's training step (MLP 64 -> 128 -> 10, Adam, batch 32) on each backend, then
starts fresh Python processes that ``from graphc.runtime import load``, load it and run one
step; reports the median and minimum wall time of the whole process (interpreter start
included) over several runs, and whether any compiler module was imported.

    python benchmarks/load_time.py [--runs 7]
"""
import argparse
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
        bare = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", "import numpy"], check=True)
            bare.append(time.perf_counter() - t0)
        print(f"python -c 'import numpy': median {statistics.median(bare) * 1e3:.0f} ms, "
              f"min {min(bare) * 1e3:.0f} ms")
        for backend in ("numpy", "llvm"):
            path = _save(backend, folder)
            times, compiler = [], set()
            for _ in range(args.runs):
                t0 = time.perf_counter()
                out = subprocess.run([sys.executable, "-c", CHILD, str(path)], check=True,
                                     capture_output=True, text=True, cwd=folder).stdout
                times.append(time.perf_counter() - t0)
                compiler.add(out.strip())
            print(f"{backend:5s}: process start to first step: median "
                  f"{statistics.median(times) * 1e3:.0f} ms, min {min(times) * 1e3:.0f} ms; "
                  f"compiler imported: {', '.join(sorted(compiler))}")


if __name__ == "__main__":
    main()
