"""Resealed, structure-aware mutations of saved steps: how many the loader refuses cleanly,
how many still run (harmless edits: a message text, a statistic), and how many crash.

Saves the test model's training step on each backend, writes N one-field edits of its
manifest and a set of member edits (arrays of other shapes, random state), every checksum
recomputed as an attacker would (``tests/support/artifact_fuzz.py``), and loads and runs each in
worker processes; a worker killed by a signal counts a crash.

    python benchmarks/fuzz_artifacts.py [--mutations 1000] [--backends numpy,llvm]
                                        [--graphc-path DIR]   # another graphc (before/after)
"""
import argparse
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from tests.support import artifact_fuzz as F  # noqa: E402

import graphc as gc  # noqa: E402


def build(backend, path):
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, [8, 5], name="x")
        y = gc.placeholder(gc.int64, [8], name="y")
        W = gc.Variable(np.linspace(-1, 1, 15, dtype=np.float32).reshape(5, 3), name="W")
        b = gc.Variable(np.zeros(3, np.float32), name="b")
        h = gc.nn.dropout(gc.nn.relu(gc.matmul(x, W) + b), 0.9)
        loss = gc.reduce_mean(gc.nn.sparse_softmax_cross_entropy_with_logits(labels=y,
                                                                             logits=h))
        train = gc.train.AdamOptimizer(0.1).minimize(loss)
        step = gc.compile({"loss": loss, "train": train}, feeds=[x, y], backend=backend)
        step(x=np.ones((8, 5), np.float32), y=np.zeros(8, np.int64))
        step.save(path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mutations", type=int, default=1000)
    ap.add_argument("--backends", default="numpy,llvm")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--graphc-path", help="run the loader of the graphc in this folder "
                                          "(a folder holding a 'graphc' package)")
    args = ap.parse_args()
    env = None
    if args.graphc_path:
        env = dict(os.environ, PYTHONPATH=args.graphc_path)
    for backend in args.backends.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            src = os.path.join(tmp, "step.gcx")
            build(backend, src)
            described = F.write_mutants(src, os.path.join(tmp, "m"), args.mutations,
                                        args.seed)
            results = F.run_all(os.path.join(tmp, "m"), env=env)
            counts = F.summary(results)
            raw = counts.get("raw", 0) + counts.get("raw-run", 0)
            print(f"{backend}: {len(results)} resealed mutations: refused "
                  f"{counts.get('refused', 0)}, ran {counts.get('ran', 0)}, refused at the "
                  f"call {counts.get('run-error', 0)}, raw Python exceptions {raw}, crashed "
                  f"{counts.get('crash', 0)}")
            for name, (outcome, detail) in sorted(results.items()):
                if outcome not in ("refused", "ran", "run-error"):
                    print(f"  {outcome:<8} {described[name]}  ({detail[:100]})")


if __name__ == "__main__":
    main()
