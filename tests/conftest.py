"""Shared fixtures and helpers: a fresh default graph per test, running fetches on the
reference (``Session(optimize=False)``) and the optimized NumPy pipeline, and float64 central
differences.

Helpers shared by test modules live in ``tests/support`` (a package: ``from tests.support.checks
import run_both``).
"""
import numpy as np
import pytest

import graphc as gc
from graphc.ir import graph as _graph


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
