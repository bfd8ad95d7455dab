"""Memory growth of a process that keeps compiling new LLVM steps (new feed shapes).

Compiles and runs a small training step for N feed shapes with the object cache off and
reports the resident-set growth per compile after a warm-up, for each
GRAPHC_COMPILE_WORKER mode (0: every compilation in the process; auto: the first 32 there,
the rest in a helper process replaced every 100 compilations).

    python benchmarks/compile_leak.py [--compiles 300] [--modes 0,auto]
"""
import argparse
import os
import subprocess
import sys

CHILD = """
import gc as pygc, os, sys
os.environ["GRAPHC_NO_CACHE"] = "1"
import numpy as np
import graphc as gc

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

def compile_for(n):
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, [n, 8], name="x")
        W = gc.Variable(np.ones((8, 4), np.float32), name="W")
        loss = gc.reduce_sum(gc.nn.relu(gc.matmul(x, W)) ** 2)
        train = gc.train.GradientDescentOptimizer(0.01).minimize(loss)
        step = gc.compile([loss, train], feeds=[x], backend="llvm")
        step({x: np.ones((n, 8), np.float32)})

count = int(sys.argv[1])
for k in range(20):
    compile_for(4 + k)
pygc.collect(); before = rss()
for k in range(count):
    compile_for(24 + k)
pygc.collect()
print((rss() - before) / count / 1024)
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--compiles", type=int, default=300)
    ap.add_argument("--modes", default="0,auto")
    args = ap.parse_args()
    for mode in args.modes.split(","):
        env = dict(os.environ, GRAPHC_COMPILE_WORKER=mode)
        out = subprocess.run([sys.executable, "-c", CHILD, str(args.compiles)], env=env,
                             check=True, capture_output=True, text=True).stdout
        print(f"GRAPHC_COMPILE_WORKER={mode}: {float(out):.1f} KiB per compile over "
              f"{args.compiles} compiles")


if __name__ == "__main__":
    main()
