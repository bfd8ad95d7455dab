"""Where things are: the repository root and the tests' own data."""
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
ROOT = TESTS.parent
DATA = TESTS / "data"
MPI_SCRIPTS = TESTS / "mpi_scripts"
BENCHMARKS = ROOT / "benchmarks"
EXAMPLES = ROOT / "examples"


def load_npz(path):
    """An .npz file's arrays as a dict, the file closed (an open one warns when collected)."""
    import numpy as np
    with np.load(path) as npz:
        return dict(npz)
