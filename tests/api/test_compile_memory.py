"""CSE keys constants by a compact form: a splat by its value and shape, other arrays by a
SHA-256 of their bytes, never by a copy of the bytes.

Before: ``_attr_key`` keyed every constant by ``np.ascontiguousarray(v).tobytes()``, so a
broadcast seed (a stride-0 view of one scalar) was materialized, twice over, while CSE ran:
keying a 2048 x 2048 float32 seed cost 32 MiB (its bytes, then the key), for a value that
needs 4.
"""
import tracemalloc

import numpy as np

import graphc as gc
from graphc.ir.passes import run_pipeline
from graphc.ir.passes.cse import _attr_key, eliminate_common_subexpressions
from graphc.ir.program import build_program

N = 2048


def program_with_seeds():
    """Gradients of two means over N x N values: their seeds are broadcast constants."""
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, [N, N], name="x")
        y = gc.placeholder(gc.float32, [N, N], name="y")
        loss = gc.reduce_mean(x * y) + gc.reduce_mean(x * 2.0)
        program = build_program(gc.gradients(loss, [x, y]), {x: (N, N), y: (N, N)})
    run_pipeline(program, passes=["prune", "fold"])  # folding makes the seeds broadcasts
    return program


def test_cse_keys_a_broadcast_seed_without_materializing_it():
    program = program_with_seeds()
    big = [n for n in program.nodes if n.op_name == "const" and n.attrs["value"].size > 1]
    assert big and all(not any(n.attrs["value"].strides) for n in big), "seeds stay views"
    tracemalloc.start()
    changes = eliminate_common_subexpressions(program)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert changes["merged"] >= 1  # the two equal seeds are one constant
    assert peak < 1 << 20, f"CSE allocated {peak} bytes keying {N}x{N} constants"


def test_compact_keys_keep_values_apart_by_bits():
    ones = np.ones((300, 300), np.float32)
    assert _attr_key(ones) == _attr_key(np.broadcast_to(np.float32(1), (300, 300)))
    assert _attr_key(np.zeros(5)) != _attr_key(-np.zeros(5))  # 0.0 and -0.0
    nan2 = np.full(4, np.nan).view(np.uint64) | 1
    assert _attr_key(np.full(4, np.nan)) != _attr_key(nan2.view(np.float64))
    a = np.arange(100000, dtype=np.float64)
    b = a.copy()
    b[-1] += 1
    assert _attr_key(a) == _attr_key(a.copy()) != _attr_key(b)
    assert _attr_key(a[::2]) == _attr_key(np.ascontiguousarray(a[::2]))
    assert _attr_key(a.reshape(100, 1000)) != _attr_key(a.reshape(1000, 100))  # shape counts
    assert _attr_key(a.astype(np.float32)) != _attr_key(a)  # and dtype
    key = _attr_key(np.random.default_rng(0).random((512, 512)))
    assert sum(len(k) if isinstance(k, bytes) else 0 for k in key) <= 32  # a digest, not bytes
