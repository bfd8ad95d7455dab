"""Session: TF1's run loop over compiled steps, with the variables' values.

``run(fetches, feed_dict)`` validates the feeds before anything runs, compiles one step per
(fetches, fed nodes, feed shapes and dtypes) signature (cached), runs it as one call and stores
the assigned variables. Fetches may be any nest of lists, tuples and dicts; ops give None. Any
tensor may be fed, as in TF1 (``ir.program.specialize`` makes a fed node a leaf of the step).
"""
import re

import threading

import numpy as np

from .pipeline import compile_program, default_backend
from ..data.iterator import has_iterators, next_elements, run_initializers
from ..errors import FeedError, GraphcError, GraphError
from ..ir import dtypes as D
from ..ir.graph import Node, get_default_graph, pop_default_session, push_default_session
from ..ir.program import needed_nodes
from ..ir.shapes import format_shape
from ..runtime.calls import unalias


# -- nests --------------------------------------------------------------------------------------
class _Composite:
    """A fetched object's place in a fetch skeleton: the nest of its tensors, and the function
    that makes the object's value from theirs."""

    def __init__(self, nest, finish):
        self.nest, self.finish = nest, finish


def flatten(structure, graph):
    """Fetch nest -> (flat list of nodes, rebuild function)."""
    flat = []

    def walk(s):
        if isinstance(s, Node):
            flat.append(s)
            return len(flat) - 1
        if isinstance(s, str):
            flat.append(graph.get_tensor_by_name(s))
            return len(flat) - 1
        if isinstance(s, dict):
            return {k: walk(v) for k, v in s.items()}
        if hasattr(s, "_fetch_nest"):  # an API object made of tensors (gc.summary ops)
            nest, finish = s._fetch_nest()
            return _Composite(walk(nest), finish)
        if isinstance(s, tuple) and hasattr(s, "_fields"):
            return type(s)(*[walk(v) for v in s])
        if isinstance(s, (list, tuple)):
            return type(s)(walk(v) for v in s)
        raise TypeError(f"cannot fetch {type(s).__name__}: fetch tensors, ops, or nests of "
                        "lists, tuples and dicts of them")

    skeleton = walk(structure)

    def rebuild(values, s=skeleton):
        if isinstance(s, int):
            return values[s]
        if isinstance(s, dict):
            return {k: rebuild(values, v) for k, v in s.items()}
        if isinstance(s, _Composite):
            return s.finish(rebuild(values, s.nest))
        if isinstance(s, tuple) and hasattr(s, "_fields"):
            return type(s)(*[rebuild(values, v) for v in s])
        return type(s)(rebuild(values, v) for v in s)

    return flat, rebuild


# -- feeds --------------------------------------------------------------------------------------
def convert_feed(node, value):
    """Convert a value fed to ``node`` (a placeholder or any other tensor) as TF1 does.

    Args:
        node: the fed node; the value must fit its static shape (None dims take any size)
            and convert to its dtype by the placeholder rules.
        value: an array, number or nested list.
    Returns:
        A C-contiguous array of the node's dtype (0-d stays 0-d).
    Raises:
        FeedError: naming the node, expected and found dtype or shape, and the node's line.
    Example:
        >>> convert_feed(x, [[1, 2, 3]])      # x: f32[?,3] -> float32 array of shape (1, 3)
    """
    arr = np.asarray(value)
    want = node.dtype
    if arr.dtype.kind == "f" and not want.is_floating:
        raise FeedError(f"cannot feed a {arr.dtype.name} value to {want.name} "
                        f"{node.describe()}", loc=node.loc,
                        hint=f"convert it yourself, e.g. np.asarray(value, np.{want.np.name})")
    if arr.dtype.kind not in "fiub":
        raise FeedError(f"cannot feed a value of dtype {arr.dtype} to {node.describe()}",
                        loc=node.loc)
    if arr.dtype != want.np:
        arr = arr.astype(want.np)
    if arr.ndim != len(node.shape) or any(d is not None and d != a
                                          for d, a in zip(node.shape, arr.shape)):
        raise FeedError(f"{node.describe()} expects {want.short}"
                        f"{format_shape(node.shape)}, fed {format_shape(arr.shape)}",
                        loc=node.loc, hint="None dims accept any size; the others must match")
    return arr if arr.flags.c_contiguous else np.ascontiguousarray(arr)  # keeps 0-d as 0-d


# Feeding these would drop their effect from the step (the fed value replaces the node).
UNFEEDABLE = ("assign", "group")


def feed_target(graph, key):
    """The node a feed key names (a tensor, or a name such as 'x' or 'x:0'), checked feedable.

    Any tensor of ``graph`` may be fed, as in TF1: a placeholder, an intermediate value, a
    Variable (its reads in the step see the fed value; its stored value is unchanged).

    Raises:
        FeedError: an unknown name, a node of another graph, a value-less op or an assign.
    """
    if isinstance(key, str):
        try:
            key = graph.get_tensor_by_name(key)
        except KeyError:
            raise FeedError(f"cannot feed {key!r}: no tensor of that name in the graph",
                            hint="feed tensors by object or by name ('x' or 'x:0')") from None
    if not isinstance(key, Node):
        raise FeedError(f"cannot feed {key!r}: feed keys are tensors or tensor names")
    if key.graph is not graph:
        raise FeedError(f"cannot feed {key.describe()}: it belongs to another graph",
                        loc=key.loc, hint="feed tensors of the graph the step runs")
    if key.dtype is None or key.op_name in UNFEEDABLE:
        why = "it has no value" if key.dtype is None else "feeding it would skip the update"
        raise FeedError(f"cannot feed {key.describe()}: {why}", loc=key.loc,
                        hint="feed the tensors it reads instead")
    return key


def expand_feeds(items):
    """(key, value) pairs with tuple keys zipped with their values, recursively: TF1 feeds an
    RNN's nested state (``{cell.zero_state(...): last_state}``, LSTMStateTuple, MultiRNNCell
    tuples) as one key.

    Raises:
        FeedError: a tuple key whose value is not a sequence of the same length.
    """
    for key, value in items:
        if not isinstance(key, tuple):
            yield key, value
            continue
        if not isinstance(value, (tuple, list, np.ndarray)) or len(value) != len(key):
            found = f"{len(value)} values" if isinstance(value, (tuple, list, np.ndarray)) \
                else type(value).__name__
            raise FeedError(f"a feed key of {len(key)} tensors needs as many values, "
                            f"found {found}", hint="feed the structure the tensors came in, "
                            "e.g. the state a previous run returned")
        yield from expand_feeds(zip(key, value))


def leaf_feeds(flat, fed):
    """What a step computing ``flat`` takes when ``fed`` nodes are given: the fed nodes it
    needs and every placeholder it needs through no fed node, in creation order."""
    cut = [n for n in fed if n.op_name != "placeholder"]
    chosen = set(cut)
    return [n for n in needed_nodes(flat, cut) if n.op_name == "placeholder" or n in chosen]


def failed_node(compiled, exc):
    """The node whose generated line (its ``# op 'name'`` note) raised ``exc`` inside a
    compiled NumPy step, or None."""
    lines = compiled.source.splitlines() if isinstance(compiled.source, str) else []
    node, tb = None, exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.startswith("<graphc"):
            noted = _noted_node(compiled.program, lines, tb.tb_lineno)
            node = node if noted is None else noted
        tb = tb.tb_next
    return node


def step_failure(compiled, exc):
    """A GraphcError for an exception raised inside a compiled NumPy step, naming the node
    whose generated line failed (its ``# op 'name'`` note) and the user's line."""
    node = failed_node(compiled, exc)
    what = node.describe() if node is not None else "the compiled step"
    return GraphcError(f"{what}: failed at run time: {type(exc).__name__}: {exc}",
                       loc=None if node is None else node.loc,
                       hint="an index or label out of range for the fed or stored values?")


def _noted_node(program, lines, lineno):
    """The node named by the ``# op 'name'`` note on a generated line or the lines above it
    (within its statement block)."""
    for i in range(min(lineno, len(lines)) - 1, -1, -1):
        m = re.search(r"# (\w+) '([^']+)'", lines[i])
        if m:
            return next((n for n in program.nodes if n.name == m.group(2)), None)
        if lines[i].lstrip().startswith(("def ", "with ")):
            return None
    return None


def _missing_feed_error(missing):
    lines = [f"'{p.name}': {p.dtype.short}{format_shape(p.shape)}  created at {p.loc.short}"
             for p in missing]
    return FeedError(f"{len(missing)} placeholder(s) must be fed: "
                     + ", ".join(p.name for p in missing), lines,
                     hint="add them to feed_dict")


class Session:
    """Runs steps of one graph and holds its variables' values (TF1's tf.Session).

    Args:
        graph: the graph (default: the default graph).
        backend: "numpy" or "llvm" (default: ``$GRAPHC_BACKEND``, else "numpy").
        optimize: run the pass pipeline (False: the unoptimized reference).
        dump_dir: write IR dumps and generated code for every compiled signature.
    Example:
        >>> with gc.Session() as sess:
        ...     sess.run(gc.global_variables_initializer())
        ...     loss_value, _ = sess.run([loss, train_op], {x: xb, y: yb})
    """

    def __init__(self, target="", graph=None, config=None, backend=None, optimize=True,
                 dump_dir=None, check_numerics=False):
        self.graph = graph or get_default_graph()
        backend = backend or default_backend()
        self.backend, self.optimize, self.dump_dir = backend, optimize, dump_dir
        self.check_numerics = check_numerics
        self.values = {}  # user variable node -> np.ndarray
        self._cache = {}
        self._needs = {}
        self._closed = False
        self._compiling = threading.Lock()  # threads meeting a new signature compile it once

    # -- context management (the default session, as in TF1) -----------------------------------
    def __enter__(self):
        push_default_session(self)
        self._graph_ctx = self.graph.as_default()
        self._graph_ctx.__enter__()
        return self

    def __exit__(self, *exc):
        self._graph_ctx.__exit__(*exc)
        pop_default_session(self)
        self.close()

    def as_default(self):
        return self

    def close(self):
        self._closed = True

    # -- running --------------------------------------------------------------------------------
    def run(self, fetches, feed_dict=None, options=None, run_metadata=None):
        """Run the step that computes ``fetches``; returns values in the same structure."""
        if self._closed:
            raise GraphError("Session.run: the session is closed")
        flat, rebuild = flatten(fetches, self.graph)
        if not flat:  # sess.run([]) and sess.run({}) return the empty structure, as in TF1
            return rebuild([])
        for f in flat:
            if f.graph is not self.graph:
                raise GraphError(f"Session.run: fetch {f.describe()} belongs to another graph",
                                 loc=f.loc)
        pull = has_iterators(self.graph)
        if pull:
            run_initializers(flat)  # tf.data iterators' initializer ops restart them
        feeds = self._feeds(flat, feed_dict or {}, pull=pull)
        compiled = self._compiled(flat, feeds)
        try:
            values = self._execute(compiled, feeds)
        except GraphcError:
            raise
        except Exception as exc:  # a kernel refused a value: name its node, not the NumPy line
            from .compile import step_error
            raise step_error(compiled, exc) from None
        return rebuild(values)

    def _feeds(self, flat, feed_dict, pull=False):
        given = {}
        for key, value in expand_feeds(feed_dict.items()):
            node = feed_target(self.graph, key)
            given[node] = convert_feed(node, value)
        if given:  # steps update variables in place: a feed sharing their memory is copied
            fed = list(given.values())
            unalias(fed, list(self.values.values()))
            given = dict(zip(given, fed))
        key = (tuple(f.id for f in flat),
               tuple(sorted(n.id for n in given if n.op_name != "placeholder")))
        need = self._needs.get(key)
        if need is None:
            need = leaf_feeds(flat, given)
            self._needs[key] = need
        missing = [p for p in need if p not in given and "default" not in p.meta
                   and not (pull and "iterator" in p.meta)]
        if missing:
            raise _missing_feed_error(missing)
        if pull:  # one element from each tf.data iterator the step reads and was not fed
            given.update(next_elements(need, given))
        return {p: given[p] if p in given else p.meta["default"] for p in need}

    def _compiled(self, flat, feeds):
        sig = (tuple(f.id for f in flat),
               tuple((p.id, a.shape, a.dtype.str) for p, a in feeds.items()))
        compiled = self._cache.get(sig)
        if compiled is None:
            with self._compiling:
                compiled = self._cache.get(sig) or self._compile(sig, flat, feeds)
        return compiled

    def _compile(self, sig, flat, feeds):
        shapes = {p: a.shape for p, a in feeds.items()}
        from .dumps import signature_dir
        compiled = compile_program(flat, shapes, backend=self.backend, optimize=self.optimize,
                                   dump_dir=signature_dir(self.dump_dir, flat, shapes,
                                                          self.backend, self.optimize),
                                   checks=("numerics",) if self.check_numerics else ())
        self._cache[sig] = compiled
        return compiled

    def _execute(self, compiled, feeds):
        with compiled.lock:  # the step's arena, and the variables it reads and replaces
            return self._execute_locked(compiled, feeds)

    def _execute_locked(self, compiled, feeds):
        args = [feeds[p] for p in compiled.feed_nodes]
        for v, read in zip(compiled.var_nodes, compiled.var_read):
            value = self.values.get(v)
            if value is None:
                if read:
                    raise GraphError(
                        f"attempting to use uninitialized variable '{v.name}'", loc=v.loc,
                        hint="run gc.global_variables_initializer() first")
                value = np.zeros(v.shape, v.dtype.np)
            args.append(value)
        fetched, updates = compiled.fn(*args)
        # A native step writes new values into the arrays it was given: keep them as they are
        # (same objects, so the step's bound addresses stay valid and nothing is copied).
        in_place = getattr(compiled.fn, "updates_in_place", False)
        for v, new in zip(compiled.update_nodes, updates):
            self.values[v] = new if in_place else np.array(new, dtype=v.dtype.np)
        return [None if f.dtype is None else _as_result(x, args)
                for f, x in zip(compiled.program.fetches, fetched)]

    # -- introspection --------------------------------------------------------------------------
    def source(self, fetches, feed_dict=None):
        """The generated source for the step computing ``fetches`` with these feeds."""
        flat, _ = flatten(fetches, self.graph)
        return self._compiled(flat, self._feeds(flat, feed_dict or {})).source

    def load_variable(self, var, value):
        self.values[var] = np.array(value, dtype=var.dtype.np).reshape(var.shape)


def _as_result(x, args=()):
    """A fetched value the caller owns: never the session's variable storage or a fed array
    (or a view of them), which later steps may update in place."""
    if isinstance(x, np.ndarray):
        if any(np.may_share_memory(x, a) for a in args):
            x = np.array(x)
        return x if x.ndim else x[()]
    return x


class InteractiveSession(Session):
    """TF1's InteractiveSession: the default session from construction until ``close()``, so
    ``t.eval()`` and ``op.run()`` work without a ``with`` block (notebooks, shells).

    Example:
        >>> sess = gc.InteractiveSession()
        >>> sess.run(gc.global_variables_initializer()); loss.eval({x: xb}); sess.close()
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        push_default_session(self)

    def close(self):
        pop_default_session(self)
        super().close()
__all__ = ["Session", "InteractiveSession", "D"]
