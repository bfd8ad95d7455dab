"""One rank fails; the job must end promptly with that rank's error, never hang.

Run by tests/runtime/test_mpi_failures.py as ``mpiexec -n 2 python failures.py SCENARIO BACKEND``:

- ``raise``: rank 1 raises ValueError before its first step, while rank 0 enters the step's
  allreduce (which would wait for rank 1 forever); the excepthook aborts the job.
- ``stall``: rank 1 sleeps instead of stepping; rank 0's allreduce times out after
  GRAPHC_COLLECTIVE_TIMEOUT seconds with CollectiveTimeoutError, which (uncaught) aborts.
"""
import sys
import time

import numpy as np

import graphc as gc

scenario, backend = sys.argv[1], sys.argv[2]
dist = gc.distributed
g = gc.Graph()
with g.as_default():
    x = gc.placeholder(gc.float32, [4, 3], name="x")
    W = gc.Variable(np.ones((3, 2), np.float32), name="W")
    loss = gc.reduce_sum(gc.matmul(x, W) ** 2)
    train = dist.DistributedOptimizer(gc.train.GradientDescentOptimizer(0.1)).minimize(loss)
    step = gc.compile([loss, train], feeds=[x], backend=backend)
dist.init()
step({x: np.ones((4, 3), np.float32)})  # both ranks: compiled, one allreduce done
print(f"rank {dist.rank()}: first step done", flush=True)
if dist.rank() == 1:
    if scenario == "raise":
        raise ValueError("rank one's data loader broke")
    time.sleep(120)
    sys.exit(0)
for _ in range(3):
    step({x: np.ones((4, 3), np.float32)})
print("rank 0: NOT REACHED", flush=True)
