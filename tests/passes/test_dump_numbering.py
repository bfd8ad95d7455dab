"""Dumps keep each value's number through every stage and name CSE's merges.

A pass's diff must show only what the pass changed: when numbers were renewed per stage,
removing one node renumbered every later line.
"""
import difflib
import re

import numpy as np

import graphc as gc


def _step():
    x = gc.placeholder(gc.float32, [4, 3], name="x")
    w = gc.Variable(np.ones((3, 2), np.float32), name="W")
    a = gc.matmul(x, w, name="first") + 1.0
    b = gc.matmul(x, w, name="second") + 1.0
    loss = gc.reduce_sum(gc.tanh(a) * b, name="loss")
    return gc.compile([loss], backend="numpy")


def _numbers(text):
    """{value number: op} of each line of a text IR."""
    return dict(re.findall(r"^  (%\d+) = (\S+)", text, re.M))


def test_a_value_keeps_its_number_from_input_to_final():
    step = _step()
    first = _numbers(step.ir("input"))
    final = _numbers(step.ir("final"))
    kept = {k: v for k, v in final.items() if k in first}
    assert kept and all(first[k] == v for k, v in kept.items())
    assert "%0" in final and final["%0"].startswith("matmul")  # the first matmul stays %0
    created = set(final) - set(first)  # fused nodes take new numbers after the input's
    assert created and min(int(k[1:]) for k in created) >= len(first)


def test_cse_names_its_merges_and_its_diff_is_small():
    step = _step()
    cse = step.ir("cse")
    merges = re.findall(r"^;; merged (%\d+) (\w+) '([^']+)' into (%\d+) \w+ '([^']+)'$", cse,
                        re.M)
    assert ("%3", "matmul", "second", "%0", "first") in merges
    assert len(merges) == 3  # the second matmul, its constant 1.0 and its add
    before = step.ir("simplify") if "simplify" in [n for n, _ in step.program.stages] \
        else step.ir("input")
    changed = [line for line in difflib.unified_diff(before.splitlines(), cse.splitlines(),
                                                     lineterm="", n=0)
               if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    # two rewired operands (old and new line each) and the three merge notes
    assert len(changed) <= 2 * 2 + 3, changed
