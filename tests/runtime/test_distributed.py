"""gc.distributed: data-parallel training over MPI.

The MPI tests launch ``mpiexec -n 2`` themselves (once per module, every scenario in one
launch) on ``tests/mpi_scripts/data_parallel.py`` and compare what each rank wrote. The
single-process tests run here, without MPI.
"""
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import graphc as gc
from graphc.client.pipeline import compile_program
from graphc.errors import GraphError, ShapeError
from graphc.runtime import collectives
from tests.support.paths import MPI_SCRIPTS, load_npz

SCRIPTS = MPI_SCRIPTS
HAVE_MPI4PY = importlib.util.find_spec("mpi4py") is not None
SCENARIOS = ["sgd:numpy:session", "adam:numpy:compile", "sgd:llvm:compile",
             "adam:llvm:session", "adam:numpy-ref:session", "sgd:llvm-ref:compile"]
VARS = ("W1", "b1", "W2", "b2")


def mpiexec():
    """The launcher next to this Python (a venv's mpich), else the one on PATH."""
    here = Path(sys.executable).parent / "mpiexec"
    return str(here) if here.exists() else shutil.which("mpiexec")


def _launch_env():
    """This environment minus any MPI launcher's variables (pytest may run under one)."""
    drop = ("PMI_", "PMIX_", "OMPI_", "MPI_LOCAL", "HYDRA_", "GRAPHC_MPI", "OPENBLAS_NUM",
            "OMP_NUM", "MKL_NUM")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    """Run every scenario on 2 ranks once; returns the two ranks' results."""
    if not HAVE_MPI4PY:
        pytest.skip("mpi4py is not installed: pip install '.[distributed]' (or '.[test]')")
    launcher = mpiexec()
    assert launcher, "mpi4py is installed but no mpiexec was found (next to python or on PATH)"
    out = tmp_path_factory.mktemp("mpi")
    cmd = [launcher, "-n", "2", sys.executable, str(SCRIPTS / "data_parallel.py"), str(out)]
    proc = subprocess.run(cmd + SCENARIOS, capture_output=True, text=True, timeout=120,
                          env=_launch_env(), cwd=str(out))
    assert proc.returncode == 0, f"mpiexec failed:\n{proc.stdout}\n{proc.stderr}"
    return [load_npz(out / f"rank{r}.npz") for r in (0, 1)]


def test_two_ranks_see_each_other(ranks):
    assert [int(r["size"]) for r in ranks] == [2, 2]
    assert [int(r["rank"]) for r in ranks] == [0, 1]
    assert [int(r["local_rank"]) for r in ranks] == [0, 1]


def test_blas_threads_pinned_per_rank(ranks):
    """Each rank gets its share of the cores (2 ranks on 2 cores: 1 thread each)."""
    cores = len(os.sched_getaffinity(0))
    for r in ranks:
        threads = [t for t in r["blas_threads"].tolist() if t != -1]
        assert threads, "no BLAS library was found to pin"
        assert max(threads) <= max(1, cores // 2)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_broadcast_variables_makes_ranks_equal(ranks, scenario):
    """Ranks build their variables from different seeds; after the broadcast they hold rank
    0's values bit for bit (and rank 0 the single-process run's initial values)."""
    a, b = ranks
    for v in VARS:
        np.testing.assert_array_equal(a[f"{scenario}/init/{v}"], b[f"{scenario}/init/{v}"])
    assert not np.array_equal(a[f"{scenario}/init/W1"], a[f"{scenario}/dist/W1"])
    for v in VARS:  # a broadcast into the arrays a running step holds (rank 1 was shifted)
        np.testing.assert_array_equal(a[f"{scenario}/resync/{v}"], b[f"{scenario}/resync/{v}"])


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_two_ranks_on_half_batches_equal_one_process_on_whole(ranks, scenario):
    """Averaged gradients make 2 ranks x 8 examples train exactly like 1 x 16: the same
    weights on both ranks, equal to the single-process weights within float32 rounding."""
    a, b = ranks
    for v in VARS:
        np.testing.assert_array_equal(a[f"{scenario}/dist/{v}"], b[f"{scenario}/dist/{v}"])
        np.testing.assert_allclose(a[f"{scenario}/dist/{v}"], a[f"{scenario}/ref/{v}"],
                                   rtol=1e-5, atol=1e-6, err_msg=f"{scenario} {v}")


@pytest.mark.parametrize("scenario", [s for s in SCENARIOS if s.startswith("adam")])
def test_clipping_sees_the_averaged_gradients(ranks, scenario):
    """The global norm the clipper computes is the single-process norm of the whole batch
    (not the rank's own), and it is above the clip norm, so clipping acted."""
    a, b = ranks
    np.testing.assert_allclose(a[f"{scenario}/norms"], a[f"{scenario}/ref_norms"], rtol=1e-5)
    np.testing.assert_array_equal(a[f"{scenario}/norms"], b[f"{scenario}/norms"])
    assert (a[f"{scenario}/norms"] > 0.05).all()


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_one_allreduce_node_and_one_call_per_step(ranks, scenario):
    for r in ranks:
        assert int(r[f"{scenario}/allreduce_nodes"]) == 1
        assert int(r[f"{scenario}/allreduce_calls"]) == len(r[f"{scenario}/norms"]) == 5


@pytest.mark.parametrize("scenario", [s for s in SCENARIOS if s.endswith("compile")])
def test_saved_step_averages_over_ranks(ranks, scenario):
    """A step saved with step.save and loaded with gc.load (no compiler) makes its allreduce:
    after one more step on each rank's own shard it equals the compiled step, on both ranks."""
    a, b = ranks
    for r in ranks:
        assert int(r[f"{scenario}/artifact_calls"]) == 2
    for v in VARS:
        np.testing.assert_array_equal(a[f"{scenario}/loaded/{v}"], a[f"{scenario}/again/{v}"])
        np.testing.assert_array_equal(a[f"{scenario}/loaded/{v}"], b[f"{scenario}/loaded/{v}"])


# -- one process, no MPI ---------------------------------------------------------------------
def test_single_process_needs_no_mpi():
    code = ("import sys, graphc as gc; d = gc.distributed; "
            "print(d.size(), d.rank(), d.local_rank(), 'mpi4py' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, env=_launch_env())
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", "0", "0", "False"]


def _mlp(seed=0):
    rng = np.random.RandomState(seed)
    x = gc.placeholder(gc.float32, [None, 6], name="x")
    y = gc.placeholder(gc.int64, [None], name="y")
    w = gc.Variable(rng.uniform(-1, 1, (6, 4)).astype(np.float32), name="W")
    b = gc.Variable(np.zeros(4, np.float32), name="b")
    v = gc.Variable(rng.uniform(-1, 1, (4, 3)).astype(np.float32), name="V")
    logits = gc.matmul(gc.tanh(gc.matmul(x, w) + b), v)
    loss = gc.reduce_mean(gc.nn.sparse_softmax_cross_entropy_with_logits(labels=y,
                                                                         logits=logits))
    return x, y, loss, [w, b, v]


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_single_process_training_unchanged(backend):
    """Alone, the allreduce is the identity: the wrapped optimizer trains bit for bit as the
    bare one (Adam after clipping), on either backend."""
    rng = np.random.RandomState(1)
    xs, ys = rng.rand(4, 8, 6).astype(np.float32), rng.randint(0, 3, (4, 8))
    results = []
    for wrap in (False, True):
        with gc.Graph().as_default():
            x, y, loss, variables = _mlp()
            opt = gc.train.AdamOptimizer(0.1)
            if wrap:
                opt = gc.distributed.DistributedOptimizer(opt)
            grads, vs = zip(*opt.compute_gradients(loss))
            clipped, _ = gc.clip_by_global_norm(list(grads), 0.1)
            step = gc.compile([loss, opt.apply_gradients(list(zip(clipped, vs)))],
                              feeds=[x, y], backend=backend)
            losses = [step(x=xb, y=yb)[0] for xb, yb in zip(xs, ys)]
            results.append((losses, [step.variables[v.op.name].copy() for v in variables]))
    (l0, w0), (l1, w1) = results
    np.testing.assert_allclose(l1, l0, rtol=1e-6)
    for a, b in zip(w0, w1):
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-7)
    assert collectives.size() == 1


def test_broadcast_variables_alone_is_a_no_op():
    with gc.Graph().as_default():
        x, y, loss, variables = _mlp()
        step = gc.compile([loss], feeds=[x, y])
        before = {k: v.copy() for k, v in step.variables.items()}
        assert gc.distributed.broadcast_variables(step) == 3
        for k, v in step.variables.items():
            np.testing.assert_array_equal(v, before[k])
        sess = gc.Session()
        sess.run(gc.global_variables_initializer())
        assert gc.distributed.broadcast_variables(sess, root=0) == 3
        with pytest.raises(gc.errors.GraphcError, match="root 1 is not a rank"):
            gc.distributed.broadcast_variables(sess, root=1)
        with pytest.raises(TypeError, match="compiled step"):
            gc.distributed.broadcast_variables(42)


# -- the graph: packing, one node per dtype, passes leave it alone ----------------------------
def _count(program, op="allreduce_mean"):
    return sum(1 for n in program.nodes if n.op_name == op)


def test_gradients_packed_into_one_buffer_per_dtype():
    with gc.Graph().as_default():
        a = gc.Variable(np.ones((2, 3), np.float32), name="a")
        b = gc.Variable(np.ones(3, np.float32), name="b")
        c = gc.Variable(np.ones(2, np.float64), name="c")
        loss = gc.reduce_sum(a * b) + gc.cast(gc.reduce_sum(c * c), gc.float32)
        avg = gc.distributed.allreduce_gradients(gc.gradients(loss, [a, b, c]) + [None])
        assert avg[-1] is None
        assert [tuple(t.shape) for t in avg[:3]] == [(2, 3), (3,), (2,)]
        reduces = [n for n in loss.graph.nodes if n.op_name == "allreduce_mean"]
        assert [(n.dtype.name, n.shape) for n in reduces] == [("float32", (9,)),
                                                              ("float64", (2,))]
        program = compile_program(avg[:3], {}).program
        assert _count(program) == 2
        values = compile_program(avg[:3], {}).fn(np.ones((2, 3), np.float32),
                                                 np.ones(3, np.float32), np.ones(2))[0]
        np.testing.assert_array_equal(values[0], np.ones((2, 3)) * 1.0)  # d/da = b
        np.testing.assert_array_equal(values[2], 2 * np.ones(2))


def test_passes_never_merge_fold_or_drop_a_needed_allreduce():
    """Two allreduces of one constant buffer: CSE must not merge them (each is a call every
    rank makes), folding must not evaluate them."""
    with gc.Graph().as_default():
        from graphc.ir.ops import F
        packed = gc.constant(np.arange(4, dtype=np.float32))
        r1, r2 = F.allreduce_mean(packed), F.allreduce_mean(packed)
        compiled = compile_program([r1 + r2], {})
        assert _count(compiled.program) == 2
        np.testing.assert_array_equal(compiled.fn()[0][0], 2 * np.arange(4))


def test_allreduce_is_not_differentiated_through():
    with gc.Graph().as_default():
        w = gc.Variable(np.ones(3, np.float32), name="w")
        (avg,) = gc.distributed.allreduce_gradients([w * 2.0])
        (g,) = gc.gradients(gc.reduce_sum(avg), [w], unconnected_gradients="zero")
        np.testing.assert_array_equal(compile_program([g], {}).fn(np.ones(3, np.float32))[0][0],
                                      np.zeros(3))
        from graphc.ir.ops import REGISTRY
        assert not REGISTRY["allreduce_mean"].differentiable
        assert REGISTRY["allreduce_mean"].impure


def test_bad_inputs():
    from graphc.ir.ops import F
    with gc.Graph().as_default():
        with pytest.raises(ShapeError, match="one packed 1-D buffer"):
            F.allreduce_mean(gc.constant(np.ones((2, 2), np.float32)))
        with pytest.raises(gc.errors.DTypeError, match="floating"):
            F.allreduce_mean(gc.constant(np.ones(2, np.int32)))
        with pytest.raises(GraphError, match="floating"):
            gc.distributed.allreduce_gradients([gc.constant(np.ones(2, np.int32))])
        with pytest.raises(TypeError, match="gc.train optimizer"):
            gc.distributed.DistributedOptimizer(object())
