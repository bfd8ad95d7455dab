"""Data-parallel training on every rank vs single-process training on the whole batch.

Run by tests/runtime/test_distributed.py as ``mpiexec -n N python data_parallel.py OUT SCENARIO...``
where a scenario is ``optimizer:backend:api``: optimizer ``sgd`` (plain SGD) or ``adam``
(Adam after clipping by global norm), backend ``numpy`` or ``llvm`` (``-ref``: without the
pass pipeline), api ``session`` or ``compile``. Each rank writes ``OUT/rank<r>.npz`` holding, per scenario:

- ``<scenario>/init/<var>``: its weights right after ``broadcast_variables`` (ranks start
  from DIFFERENT random weights, so equality after it is the broadcast's doing);
- ``<scenario>/dist/<var>``: its weights after STEPS data-parallel steps, each rank on its
  shard of every global batch (``gc.data.batches(..., rank, size)``);
- ``<scenario>/resync/<var>``: after shifting each rank's live arrays by its rank,
  broadcasting again and one more step (equal only if the broadcast wrote in place);
- ``<scenario>/ref/<var>``: the weights of a single-process run (no MPI in the graph) from
  rank 0's initial weights on the whole global batches;
- ``<scenario>/allreduce_nodes``, ``/allreduce_calls``, ``/norms``: the number of
  allreduce nodes in the compiled step, the Allreduce calls made, the (averaged) global
  norms seen by the clipper;
- for ``compile`` scenarios, ``<scenario>/loaded/<var>`` and ``/again/<var>``: one more step
  on the rank's own shard by the step saved and loaded with ``gc.load`` and by the compiled
  step, and ``/artifact_calls``, the Allreduce calls the two made;
and ``blas_threads``: the BLAS thread counts after initialization.
"""
import sys
from pathlib import Path

import numpy as np

import graphc as gc
from graphc.runtime import collectives

dist = gc.distributed
N_IN, N_HID, N_OUT = 12, 16, 3
PER_RANK, STEPS, CLIP = 8, 5, 0.05
OUT_DIR = None


def build(optimizer, distributed, seed):
    """The model in a fresh graph; initial weights from ``seed``."""
    rng = np.random.RandomState(seed)
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, [None, N_IN], name="x")
        y = gc.placeholder(gc.int64, [None], name="y")
        w1 = gc.Variable(rng.uniform(-0.5, 0.5, (N_IN, N_HID)).astype(np.float32), name="W1")
        b1 = gc.Variable(rng.uniform(-0.1, 0.1, N_HID).astype(np.float32), name="b1")
        w2 = gc.Variable(rng.uniform(-0.5, 0.5, (N_HID, N_OUT)).astype(np.float32), name="W2")
        b2 = gc.Variable(np.zeros(N_OUT, np.float32), name="b2")
        logits = gc.matmul(gc.nn.relu(gc.matmul(x, w1) + b1), w2) + b2
        loss = gc.reduce_mean(gc.nn.sparse_softmax_cross_entropy_with_logits(labels=y,
                                                                             logits=logits))
        if optimizer == "sgd":
            opt = gc.train.GradientDescentOptimizer(0.5)
        else:
            opt = gc.train.AdamOptimizer(0.05)
        if distributed:
            opt = dist.DistributedOptimizer(opt)
        grads, variables = zip(*opt.compute_gradients(loss))
        norm = gc.global_norm(list(grads))
        if optimizer == "adam":
            grads, norm = gc.clip_by_global_norm(list(grads), CLIP)
        train = opt.apply_gradients(list(zip(grads, variables)))
        init = gc.global_variables_initializer()
    return dict(graph=g, x=x, y=y, loss=loss, norm=norm, train=train, init=init,
                variables=[w1, b1, w2, b2])


def data(seed=0):
    rng = np.random.RandomState(seed)
    n = PER_RANK * dist.size() * STEPS
    return rng.rand(n, N_IN).astype(np.float32), rng.randint(0, N_OUT, n).astype(np.int64)


class Runner:
    """One model behind either API: ``run(xb, yb) -> norm``, ``weights()``, ``program``."""

    def __init__(self, m, backend, api):
        self.m, self.api = m, api
        fetches = [m["loss"], m["norm"], m["train"]]
        backend, _, ref = backend.partition("-")  # "llvm-ref": the unoptimized pipeline
        optimize = ref != "ref"
        if api == "session":
            self.sess = gc.Session(graph=m["graph"], backend=backend, optimize=optimize)
            self.sess.run(m["init"])
            self.target = self.sess
            self._run = lambda xb, yb: self.sess.run(fetches, {m["x"]: xb, m["y"]: yb})
        else:
            step = gc.compile(fetches, feeds=[m["x"], m["y"]], backend=backend,
                              optimize=optimize)
            self.target = step
            self._run = lambda xb, yb: step(x=xb, y=yb)

    def run(self, xb, yb):
        return float(self._run(xb, yb)[1])

    def live(self):
        """{name: the array the step reads and updates}."""
        if self.api == "session":
            return {v.op.name: self.sess.values[v] for v in self.m["variables"]}
        return {v.op.name: self.target.variables[v.op.name] for v in self.m["variables"]}

    def weights(self):
        return {k: np.array(a) for k, a in self.live().items()}

    def allreduce_nodes(self):
        """allreduce_mean nodes in the compiled programs (the initializer's has none)."""
        programs = [c.program for c in self.sess._cache.values()] if self.api == "session" \
            else [self.target.program]
        return sum(1 for p in programs for n in p.nodes if n.op_name == "allreduce_mean")


def scenario(name, out):
    optimizer, backend, api = name.split(":")
    r, n = dist.rank(), dist.size()
    x, y = data()
    # Distributed: every rank starts from other weights; the broadcast makes them rank 0's.
    par = Runner(build(optimizer, True, seed=100 + r), backend, api)
    dist.broadcast_variables(par.target, root=0)
    for k, v in par.weights().items():
        out[f"{name}/init/{k}"] = v
    calls = collectives.stats["allreduce_calls"]
    norms = [par.run(xb, yb) for xb, yb in gc.data.batches(x, y, PER_RANK, seed=0,
                                                            rank=r, size=n)]
    out[f"{name}/allreduce_calls"] = collectives.stats["allreduce_calls"] - calls
    out[f"{name}/allreduce_nodes"] = par.allreduce_nodes()
    out[f"{name}/norms"] = np.array(norms)
    for k, v in par.weights().items():
        out[f"{name}/dist/{k}"] = v
    # Desynchronize the live arrays of a step that has run, broadcast again, step once more:
    # ranks agree only if the broadcast wrote into the very arrays the step holds.
    for a in par.live().values():
        a += np.float32(r)
    dist.broadcast_variables(par.target)
    par.run(x[:PER_RANK], y[:PER_RANK])
    for k, v in par.weights().items():
        out[f"{name}/resync/{k}"] = v
    if api == "compile":
        saved_step(name, par, (x[r * PER_RANK:(r + 1) * PER_RANK],
                               y[r * PER_RANK:(r + 1) * PER_RANK]), out)
    # Single process, whole global batches, rank 0's initial weights.
    ref = Runner(build(optimizer, False, seed=100), "numpy", "compile")
    ref_norms = [ref.run(xb, yb) for xb, yb in gc.data.batches(x, y, PER_RANK * n, seed=0)]
    out[f"{name}/ref_norms"] = np.array(ref_norms)
    for k, v in ref.weights().items():
        out[f"{name}/ref/{k}"] = v


def saved_step(name, par, shard, out):
    """Save the step (an artifact), load it without the compiler, and step it and the
    compiled step once more on this rank's own shard: the loaded one must average over the
    ranks as the compiled one does (else the ranks' shards pull them apart)."""
    path = OUT_DIR / f"{name.replace(':', '_')}-rank{dist.rank()}.gcx"
    par.target.save(str(path))
    loaded = gc.load(str(path))
    calls = collectives.stats["allreduce_calls"]
    loaded(x=shard[0], y=shard[1])
    par.run(*shard)
    out[f"{name}/artifact_calls"] = collectives.stats["allreduce_calls"] - calls
    for k, v in par.weights().items():
        out[f"{name}/again/{k}"] = v
        out[f"{name}/loaded/{k}"] = np.array(loaded.variables[k])


def main():
    global OUT_DIR
    out_dir = OUT_DIR = Path(sys.argv[1])
    dist.init()
    out = {"size": dist.size(), "rank": dist.rank(), "local_rank": dist.local_rank()}
    threads = collectives.blas_threads()
    out["blas_threads"] = np.array(sorted(threads.values()) or [-1])
    for name in sys.argv[2:]:
        scenario(name, out)
    np.savez(out_dir / f"rank{dist.rank()}.npz", **out)


if __name__ == "__main__":
    main()
