"""Shared fixtures and helpers: a fresh default graph per test, running fetches on the
reference (``Session(optimize=False)``) and the optimized NumPy pipeline, and float64 central
differences.

Helpers shared by test modules live in ``tests/support`` (a package: ``from tests.support.checks
import run_both``).

Tests that choose no backend run on NumPy: this file sets ``GRAPHC_BACKEND=numpy`` unless the
environment already names a backend, because an LLVM compilation (the default backend outside the
tests) costs ~0.2-0.5 s and most tests compile several steps. Tests that parametrize the backend
still run both; ``tests/api/test_backend_default.py`` unsets the variable to check the default
(LLVM) and the NumPy fallback.
"""
import os

import numpy as np
import pytest

import graphc as gc
from graphc.ir import graph as _graph

os.environ.setdefault("GRAPHC_BACKEND", "numpy")


@pytest.fixture(autouse=True)
def fresh_graph():
    """Every test builds into a new, empty default graph and leaves no default session."""
    while _graph.get_default_session() is not None:
        _graph.pop_default_session(_graph.get_default_session())
    gc.reset_default_graph()
    yield gc.get_default_graph()
    while _graph.get_default_session() is not None:
        _graph.pop_default_session(_graph.get_default_session())


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
