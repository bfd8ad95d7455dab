"""``gc.distributed``: data-parallel training over MPI, with Horovod's idioms.

Run the same script on N processes (``mpiexec -n 4 python train.py``); each rank trains on
its shard of every batch, and the compiled step averages the gradients of all ranks with ONE
``Allreduce`` between the backward pass and the update::

    import graphc as gc
    dist = gc.distributed
    opt = dist.DistributedOptimizer(gc.train.AdamOptimizer(1e-3))
    grads, variables = zip(*opt.compute_gradients(loss))     # averaged over ranks
    clipped, _ = gc.clip_by_global_norm(grads, 1.0)          # sees the averaged gradients
    train_op = opt.apply_gradients(zip(clipped, variables))
    step = gc.compile([loss, train_op], feeds=[x, y])
    dist.broadcast_variables(step, root=0)                   # every rank starts equal
    for xb, yb in gc.data.batches(X, Y, 64, seed=0, rank=dist.rank(), size=dist.size()):
        step(x=xb, y=yb)

How the step does it: the gradients (one group per dtype) are flattened and concatenated
into one packed buffer, an ``allreduce_mean`` node (``ir/ops/collective.py``) averages it in
place, and slices of it, reshaped, are the gradients the update reads. The node is impure, so
no pass merges, folds or moves it out of the step; both backends run it (NumPy through the
runtime's kernel, LLVM through a C callback in the step's pointer table), and a saved step
keeps it. In a single process (no MPI launcher) everything here is a no-op: ``size()`` is 1,
mpi4py is never imported and the allreduce is the identity.

With several ranks, the first use of MPI pins each rank's BLAS threads to its share of the
machine's cores (2 ranks on 2 cores: 1 thread each); see ``graphc.runtime.collectives``.
"""
import numpy as np

from .errors import GraphcError, GraphError
from .ir.graph import Node
from .ir.ops import apply
from .runtime import collectives

__all__ = ["init", "rank", "size", "local_rank", "local_size", "DistributedOptimizer",
           "allreduce_gradients", "broadcast_variables"]


def init():
    """Join MPI's COMM_WORLD when launched by mpiexec (Horovod's ``hvd.init()``).

    Optional: every function here initializes on first use. Idempotent; in a single process
    it does nothing.

    Returns:
        The number of ranks.
    Example:
        >>> gc.distributed.init()
        1
    """
    collectives.init()
    return collectives.size()


def rank():
    """This process's rank, 0..size()-1 (0 without MPI).

    Example:
        >>> if gc.distributed.rank() == 0: print("loss", loss_value)
    """
    return collectives.rank()


def size():
    """The number of processes training together (1 without MPI)."""
    return collectives.size()


def local_rank():
    """This process's index among the ranks on its machine (0 without MPI)."""
    return collectives.local_rank()


def local_size():
    """The number of ranks on this machine (1 without MPI)."""
    return collectives.local_size()


def allreduce_gradients(tensors, name="allreduce"):
    """The mean over all ranks of each tensor, as graph nodes, with ONE allreduce per dtype.

    The tensors are flattened and concatenated into one packed buffer per dtype, averaged by
    one ``allreduce_mean`` node, and sliced back into tensors of the original shapes.

    Args:
        tensors: floating tensors (None entries pass through as None).
        name: name scope of the packing nodes.
    Returns:
        A list like ``tensors``.
    Raises:
        GraphError: a non-floating tensor, or a tensor with an unknown dimension.
    Example:
        >>> g1_avg, g2_avg = gc.distributed.allreduce_gradients([g1, g2])
    """
    tensors = list(tensors)
    live = [t for t in tensors if t is not None]
    if not live:
        return tensors
    for t in live:
        if not isinstance(t, Node) or t.dtype is None or not t.dtype.is_floating:
            raise GraphError(f"allreduce_gradients: expected floating tensors, found "
                             f"{t.describe() if isinstance(t, Node) else repr(t)}")
        if t.shape is None or None in t.shape:
            raise GraphError(f"allreduce_gradients: {t.describe()} has an unknown dimension "
                             f"{t.type_str()}", loc=t.loc,
                             hint="gradients of variables have static shapes")
    averaged = {}
    graph = live[0].graph
    with graph.as_default(), graph.name_scope(name):
        for dtype in dict.fromkeys(t.dtype for t in live):  # first-appearance order
            group = [t for t in live if t.dtype == dtype]
            for t, avg in zip(group, _average_group(group)):
                averaged[id(t)] = avg
    return [None if t is None else averaged[id(t)] for t in tensors]


def _average_group(group):
    """Pack ``group`` (one dtype) into one buffer, average it, slice it back."""
    sizes = [int(np.prod(t.shape, dtype=np.int64)) for t in group]
    flat = [apply("reshape", [t], {"shape": (n,)}) for t, n in zip(group, sizes)]
    # Always a concat, even of one tensor: the allreduce averages a buffer nothing else reads.
    packed = apply("concat", flat, {"axis": 0}, name="pack")
    mean = apply("allreduce_mean", [packed], name="allreduce_mean")
    out, at = [], 0
    for t, n in zip(group, sizes):
        piece = apply("strided_slice", [mean], {"spec": (("s", at, at + n, None),)})
        out.append(apply("reshape", [piece], {"shape": tuple(t.shape)}))
        at += n
    return out


class DistributedOptimizer:
    """Wraps a ``gc.train`` optimizer so that gradients are averaged over all ranks.

    ``compute_gradients`` returns the ranks' mean gradients (one packed allreduce, see
    ``allreduce_gradients``); ``apply_gradients`` is the wrapped optimizer's; ``minimize``
    chains them. Anything done to the pairs in between (clipping by global norm) sees the
    averaged gradients, exactly as in single-process training on the union of the shards.
    Other attributes (``get_slot``, ``variables``, ``learning_rate``...) are the wrapped
    optimizer's.

    Args:
        optimizer: any ``gc.train.Optimizer``.
        name: name scope of the packing nodes.
    Example:
        >>> opt = gc.distributed.DistributedOptimizer(gc.train.GradientDescentOptimizer(0.1))
        >>> train_op = opt.minimize(loss)
    """

    def __init__(self, optimizer, name=None):
        for method in ("compute_gradients", "apply_gradients"):
            if not callable(getattr(optimizer, method, None)):
                raise TypeError(f"DistributedOptimizer wraps a gc.train optimizer; "
                                f"{type(optimizer).__name__} has no {method}()")
        self.optimizer = optimizer
        self.name = name or f"Distributed{getattr(optimizer, 'name', 'Optimizer')}"
        collectives.init()  # pins BLAS threads now, before the first step runs

    def compute_gradients(self, loss, var_list=None, **kwargs):
        """[(mean gradient over ranks, variable)] (see ``gc.train.Optimizer``).

        Example:
            >>> grads_and_vars = opt.compute_gradients(loss)
        """
        pairs = list(self.optimizer.compute_gradients(loss, var_list=var_list, **kwargs))
        grads = allreduce_gradients([g for g, _ in pairs], name=f"{self.name}/allreduce")
        return [(g, v) for g, (_, v) in zip(grads, pairs)]

    def apply_gradients(self, grads_and_vars, global_step=None, name=None):
        """The wrapped optimizer's update (the gradients are already averaged)."""
        return self.optimizer.apply_gradients(grads_and_vars, global_step=global_step,
                                              name=name)

    def minimize(self, loss, global_step=None, var_list=None, name=None, **kwargs):
        """compute_gradients (averaged) then apply_gradients: the train op.

        Example:
            >>> train_op = opt.minimize(loss, global_step=gc.train.get_or_create_global_step())
        """
        return self.apply_gradients(self.compute_gradients(loss, var_list, **kwargs),
                                    global_step=global_step, name=name)

    def __getattr__(self, attr):
        if attr == "optimizer":  # not set yet (during unpickling): no recursion
            raise AttributeError(attr)
        return getattr(self.optimizer, attr)


def broadcast_variables(step_or_session, root=0):
    """Overwrite every variable with rank ``root``'s value, in place, so that ranks agree.

    Accepts a compiled step (``gc.compile``: its ``variables`` {name: live array}), a
    ``Session`` (its ``values`` {variable: array}; run the initializer first) or a dict
    {name: array}. Arrays are packed per dtype into one buffer and broadcast with one
    ``Bcast`` each, then copied back in place (``np.copyto``), so native steps that hold the
    arrays' addresses see the new values. A no-op in a single process.

    Args:
        step_or_session: a CompiledStep, a Session, or a {name: ndarray} dict.
        root: the rank whose values win.
    Returns:
        The number of variables broadcast.
    Raises:
        GraphcError: the ranks hold different variables (names, shapes or dtypes), or
            ``root`` is not a rank.
    Example:
        >>> step = gc.compile([loss, train_op], feeds=[x, y])
        >>> gc.distributed.broadcast_variables(step)
    """
    arrays = _named_arrays(step_or_session)
    n = collectives.size()
    if not 0 <= root < n:
        raise GraphcError(f"broadcast_variables: root {root} is not a rank (size {n})")
    if n == 1:
        return len(arrays)
    names = sorted(arrays)
    mine = [(k, arrays[k].shape, arrays[k].dtype.str) for k in names]
    theirs = collectives.bcast_object(mine, root=root)
    if theirs != mine:
        bad = sorted(set(map(str, mine)) ^ set(map(str, theirs)))[:4]
        raise GraphcError(f"broadcast_variables: rank {rank()} holds other variables than "
                          f"rank {root}", [f"differs: {b}" for b in bad],
                          hint="build the same graph on every rank")
    for dtype in dict.fromkeys(arrays[k].dtype for k in names):
        group = [arrays[k] for k in names if arrays[k].dtype == dtype]
        packed = np.concatenate([a.ravel() for a in group]) if group else None
        collectives.broadcast_(packed, root=root)
        at = 0
        for a in group:
            np.copyto(a, packed[at:at + a.size].reshape(a.shape))
            at += a.size
    return len(arrays)


def _named_arrays(obj):
    """{name: live ndarray} of a CompiledStep, a Session or a dict."""
    if isinstance(obj, dict):
        items = obj
    elif isinstance(getattr(obj, "variables", None), dict):
        items = obj.variables
    elif isinstance(getattr(obj, "values", None), dict):
        items = {v.node_name: a for v, a in obj.values.items()}
    else:
        raise TypeError("broadcast_variables takes a compiled step (gc.compile), a Session "
                        f"or a dict of arrays, not {type(obj).__name__}")
    for name, a in items.items():
        if not isinstance(a, np.ndarray) or not a.flags.writeable:
            raise GraphcError(f"broadcast_variables: variable '{name}' is not a writable "
                              "array", hint="run the variables' initializer first")
    return dict(items)
