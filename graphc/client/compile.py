"""``gc.compile``: a training step compiled once, called many times, owning its variables.

    step = gc.compile([loss, train_op], feeds=[x, y])
    for xb, yb in batches:
        loss_value, _ = step(x=xb, y=yb)          # or step({x: xb, y: yb})
    step.variables["dense/W"]                     # the live array the step updates in place
    print(step.stats["fused_groups"], step.ir("fuse"), step.source)

A ``CompiledStep`` compiles one executable per feed signature (placeholders with None dims
specialize on the shapes of the first call, as ``jax.jit`` does) through the same pipeline as
``Session.run`` (``graphc.client.pipeline.compile_program``). Calls with the signature of the
previous call take a fast path that checks only shapes and dtypes.
"""
import threading
from itertools import compress, repeat
from operator import is_not, itemgetter

import numpy as np

from .pipeline import compile_program, default_backend, step_stats
from ..runtime.aligned import aligned_copies
from ..runtime.threads import apply_policy
from ..errors import CompileError, FeedError, GraphError, GraphcError
from ..ir.graph import Node, get_default_graph
from ..runtime.calls import may_alias, state_ids, takes_as_is, unalias
from .failures import step_error
from .feeds import (check_feed_dict, constant_for, convert_feed, expand_feeds, feed_target,
                    flatten, variables_and_leaf_feeds)


def compile(fetches, feeds=None, backend=None, optimize=True, dump_dir=None,  # noqa: A001
            passes=None, check_numerics=False, check_writes=False, graph=None, cache=None):
    """Compile the step computing ``fetches`` (any nest of tensors and ops).

    Args:
        fetches: what each call returns (tensors, train ops, nests of lists/tuples/dicts).
        feeds: the tensors the step takes (default: every placeholder the fetches need). Any
            tensor may be listed, as TF1's feed_dict allows: an intermediate value (the fed
            value replaces it; placeholders only it reads need not be fed) or a Variable
            (its reads see the fed value; the stored value and its assigns are unchanged).
        backend: "numpy" or "llvm" (default: ``$GRAPHC_BACKEND``, else "llvm" when it works
            on this host, else "numpy" with a one-line notice).
        optimize: run the pass pipeline; False gives the unoptimized reference.
        dump_dir: write IR dumps for every compiled signature there (also ``GRAPHC_DUMP``).
        passes: the pass names to run (default ``graphc.ir.passes.DEFAULT_PIPELINE``).
        check_numerics: stop at the first node producing NaN or Inf (NumericsError).
        check_writes: fail if a kernel writes into a buffer it was not given (debugging).
        graph: the graph (default: the fetches' graph).
        cache: look each signature up in the compile cache and store it there
            (``graphc.client.step_cache``); None: ``$GRAPHC_STEP_CACHE``. A hit carries no
            LLVM IR or assembly to read: ``graphc dump`` compiles with ``cache=False``.
    Returns:
        A ``CompiledStep``.
    Raises:
        FeedError: a placeholder the fetches need (through no fed tensor) is not among
            ``feeds``; a feed of another graph, without a value, or an assign.
        CompileError: an unknown backend or pass.
    Example:
        >>> step = gc.compile([loss, train_op], feeds=[x, y])
        >>> loss_value, _ = step(x=xb, y=yb)
    """
    return CompiledStep(fetches, feeds, backend, optimize, dump_dir, passes, check_numerics,
                        check_writes, graph, cache)


class CompiledStep:
    """A compiled training step; see ``compile``. Call it with feeds; read ``variables``."""

    def __init__(self, fetches, feeds=None, backend=None, optimize=True, dump_dir=None,
                 passes=None, check_numerics=False, check_writes=False, graph=None,
                 cache=None):
        graph = graph or _graph_of(fetches)
        apply_policy()  # BLAS threads: never more than the process's cores (runtime.threads)
        backend = backend or default_backend()
        self.graph, self.backend, self.optimize = graph, backend, optimize
        self.dump_dir, self.passes, self.cache = dump_dir, passes, cache
        self.checks = tuple(c for c, on in (("numerics", check_numerics),
                                            ("writes", check_writes)) if on)
        self._flat, self._rebuild = flatten(fetches, graph)
        self._rebuild = _plain_rebuild(fetches) or self._rebuild
        self._listed = self._rebuild is list  # a call's values come as a new list: as they are
        self._var_nodes, self._feeds = _feed_list(feeds, self._flat, graph, cache)
        self._names = [p.node_name for p in self._feeds]  # step(x=..., y=...) in feed order
        self._by_name = {p.node_name: p for p in self._feeds}
        self._values = _initial_values(self._var_nodes, graph)
        self._state = list(self._values.values())  # updated in place: stable arrays
        self._state_ids = state_ids(self._state)
        self._cache = {}
        self._compiling = threading.Lock()  # threads meeting a new signature compile it once
        self._fast = None  # the _FastCall of the latest signature
        self._last = None
        if all(p.shape is not None and None not in p.shape for p in self._feeds):
            self._signature({p: tuple(p.shape) for p in self._feeds})

    # -- public views --------------------------------------------------------------------------
    @property
    def variables(self):
        """{variable name: its live array} (updated in place by every call)."""
        return {v.node_name: self._values[v] for v in self._var_nodes}

    @property
    def compiled(self):
        """The ``graphc.client.pipeline.Compiled`` of the latest signature (compiled on first call)."""
        if self._last is None:
            raise GraphError("this step has None dims: call it once to compile a signature")
        return self._last

    @property
    def program(self):
        return self.compiled.program

    @property
    def source(self):
        """The generated code of the latest signature."""
        return self.compiled.source

    @property
    def stats(self):
        """What the compiler did for the latest signature (see ``step_stats``)."""
        return step_stats(self.compiled)

    def ir(self, stage="final"):
        """The text IR after pass ``stage`` ("input" before any pass, "final" after all).

        Raises:
            CompileError: no stage of that name ran (lists the stages).
        """
        stages = self.program.stages
        if stage == "final":
            return stages[-1][1]
        for name, text in reversed(stages):
            if name == stage:
                return text
        raise CompileError(f"no IR stage {stage!r}",
                           [f"stages: {', '.join(n for n, _ in stages)}, final"])

    def signatures(self):
        """The feed signatures compiled so far."""
        return list(self._cache)

    def save(self, path, signatures="all", key=None):
        """Write every compiled signature ("all") or only the latest ("latest"), with the
        variables' current values, to the artifact ``path`` (a ``.gcx`` zip; ``gc.load`` gives
        a step that runs each saved feed shape; ``key`` signs it; see ``graphc.client.aot.save``)."""
        from . import aot  # (saving only: not a compile's import)
        return aot.save(self, path, signatures, key)

    def export_python(self, path):
        """Write a NumPy-backend step as one module importing only numpy (``graphc.client.aot``)."""
        from . import aot
        return aot.export_python(self, path)

    # -- calling -------------------------------------------------------------------------------
    def __call__(self, feed_dict=None, **named):
        """Run one step; returns the fetches' values in the fetches' structure."""
        fast = self._fast
        if fast is None or named or type(feed_dict) is not dict:
            return self._call(feed_dict, named)
        args = fast.arguments(feed_dict)
        if args is None:
            return self._call(feed_dict, named)
        try:  # (_execute, inline: this is every call of a training loop)
            values = fast.run(args, fast.variables)
        except GraphcError:
            raise
        except Exception as exc:  # noqa: BLE001  (named after the node that failed)
            raise step_error(fast.compiled, exc) from None
        return values if self._listed else self._rebuild(values)

    def _call(self, feed_dict, named):
        """``__call__`` for any feeds: by name, of other types, shapes or dtypes, views of
        the variables; a new signature is compiled."""
        args = self._arguments(feed_dict, named)
        if any(type(a) is np.ndarray and may_alias(a, self._state_ids) for a in args):
            unalias(args, self._state)  # variables are updated in place: feeds see the old value
        fast = self._fast
        if fast is None or not all(map(_takes, args, fast.specs)):
            fast = self._slow_path(args)
        values = _execute(fast, args)
        return values if self._listed else self._rebuild(values)

    def _arguments(self, feed_dict, named):
        check_feed_dict(feed_dict, "step()")
        if not named and feed_dict is not None and len(feed_dict) == len(self._feeds):
            try:
                return [feed_dict[p] for p in self._feeds]
            except KeyError:
                pass
        elif named and not feed_dict and len(named) == len(self._names):
            try:
                return [named[name] for name in self._names]
            except KeyError:
                pass
        given = {}
        for key, value in expand_feeds(list((feed_dict or {}).items()) + list(named.items())):
            node = key if isinstance(key, Node) else self._by_name.get(
                key[:-2] if isinstance(key, str) and key.endswith(":0") else key)
            if node is None or not any(node is p for p in self._feeds):
                raise FeedError(f"cannot feed {key!r}: not a feed of this step",
                                [f"feeds: {', '.join(p.node_name for p in self._feeds)}"])
            given[node] = value
        missing = [p for p in self._feeds if p not in given]
        if missing:
            raise FeedError(f"{len(missing)} tensor(s) must be fed: "
                            + ", ".join(p.node_name for p in missing),
                            [f"'{p.node_name}': {p.type_str()}  created at {p.loc.short}"
                             for p in missing], hint="pass them by name: step(x=..., y=...)")
        return [given[p] for p in self._feeds]

    def _slow_path(self, args):
        args[:] = [convert_feed(p, a) for p, a in zip(self._feeds, args)]
        unalias(args, self._state)  # (a converted feed may be a view again)
        with self._compiling:
            compiled = self._signature({p: a.shape for p, a in zip(self._feeds, args)})
        self._fast = _FastCall(self, compiled, args)
        return self._fast

    def _signature(self, shapes):
        key = tuple(tuple(shapes[p]) for p in self._feeds)
        compiled = self._cache.get(key)
        if compiled is None:
            from . import dumps
            sig_dir = dumps.signature_dir(self.dump_dir, self._flat, shapes, self.backend,
                                          self.optimize)
            compiled = compile_program(self._flat, shapes, backend=self.backend,
                                       optimize=self.optimize, passes=self.passes,
                                       dump_dir=sig_dir, checks=self.checks,
                                       cache=self.cache)
            self._cache[key] = compiled
        self._last = compiled
        return compiled


class _FastCall:
    """A call of one compiled signature, set up once (``CompiledStep._slow_path``): the
    checks a call's feeds must pass to reach the step as they are, and the call itself.

    Args:
        step: the CompiledStep; compiled: its signature's ``Compiled``.
        args: feeds of that signature, converted (their dtypes, shapes and strides are the
            signature's).
    """

    __slots__ = ("feeds", "specs", "checks", "ids", "compiled", "variables", "updates", "run")

    def __init__(self, step, compiled, args):
        self.feeds = step._feeds
        self.specs = [(a.dtype, a.shape, a.strides) for a in args]  # (C order: see _takes)
        self.checks = [(p, *spec) for p, spec in zip(self.feeds, self.specs)]
        self.ids = step._state_ids
        self.compiled = compiled
        self.variables = tuple(step._values[v] for v in compiled.var_nodes)
        self.updates = [step._values[v] for v in compiled.update_nodes]
        fn = compiled.fn
        native = getattr(fn, "updates_in_place", False) and getattr(fn, "fetches_owned", False)
        self.run = fn.run if native else self._general  # run(feeds, variables): fetched values

    def arguments(self, feed_dict, ndarray=np.ndarray, id=id):  # noqa: A002 (fast locals)
        """The step's arguments from ``feed_dict`` (keys: the feed tensors), or None when one
        is missing or not an array the step takes as it is (dtype, shape, C order, apart from
        the variables)."""
        if len(feed_dict) != len(self.feeds):
            return None
        args, ids = [], self.ids
        for p, dtype, shape, strides in self.checks:
            a = feed_dict.get(p)
            # (one check after another, inline: this runs for every feed of every call; the
            # dtype, a singleton, first)
            if type(a) is not ndarray or a.dtype is not dtype or a.shape != shape \
                    or a.strides != strides or id(a) in ids:
                return None
            b = a.base  # a view of an array that owns its memory: see runtime.calls.may_alias
            if b is not None and (type(b) is not ndarray or b.base is not None
                                  or id(b) in ids):
                return None
            args.append(a)
        return args

    def _general(self, args, variables):
        """Any step: new variable values are copied into the live arrays."""
        compiled = self.compiled
        with compiled.lock:
            fetched, updates = compiled.fn(*args, *variables)
            for live, new in zip(self.updates, updates):
                if new is not live:
                    np.copyto(live, new)
        # (fetched arrays are the step's own copies: only 0-d ones become scalars)
        return [(x if type(x) is not np.ndarray or x.ndim else x[()]) if has else None
                for has, x in zip(compiled.fetch_values, fetched)]


def _execute(fast, args):
    """Run ``fast``'s step on the feeds ``args``: the fetched values (0-d ones as scalars)."""
    try:
        return fast.run(args, fast.variables)
    except GraphcError:
        raise
    except Exception as exc:  # noqa: BLE001  (named after the node that failed)
        raise step_error(fast.compiled, exc) from None


def _takes(a, spec):
    """Whether ``a`` is an array a step compiled for ``spec`` (dtype, shape, strides of C
    order) takes as it is. ``_FastCall.arguments`` checks the same, faster and stricter:
    strides equal to C order's are C order (another array in C order, with a dimension of
    1, takes this way)."""
    return takes_as_is(a, spec[0], spec[1])


def _plain_rebuild(fetches):
    """A cheaper ``rebuild`` for the usual fetches: one tensor, or a list or plain tuple of
    tensors (None for other structures)."""
    if isinstance(fetches, Node):
        return lambda values: values[0]
    if type(fetches) in (list, tuple) and all(isinstance(f, Node) for f in fetches):
        return type(fetches)
    return None


def _graph_of(fetches):
    stack = [fetches]
    while stack:
        s = stack.pop()
        if isinstance(s, Node):
            return s.graph
        if isinstance(s, dict):
            stack.extend(s.values())
        elif isinstance(s, (list, tuple)):
            stack.extend(s)
    return get_default_graph()


def _feed_list(feeds, flat, graph, cache=None):
    """(the variables the step needs, the tensors it takes): in creation order, the fed
    tensors it needs and the placeholders it needs through no fed tensor (all of them when
    ``feeds`` is None). With the compile cache on (``cache``), a graph that keeps a running
    hash of its nodes (``node_digest``) finds them remembered from an earlier search."""
    given = [] if feeds is None else [feed_target(graph, f) for f in _flat_keys(feeds)]
    variables, need = variables_and_leaf_feeds(flat, given, cache)
    if feeds is None:
        return variables, need
    given = set(given)
    missing = [p for p in need if p not in given]
    if missing:
        raise FeedError("the fetches need placeholder(s) not in feeds: "
                        + ", ".join(p.node_name for p in missing),
                        [f"'{p.node_name}': {p.type_str()}  created at {p.loc.short}"
                         for p in missing], hint="add them to feeds=[...]")
    return variables, need


def _flat_keys(feeds):
    """Feeds with nested tuples (an RNN's state structure) flattened, in order."""
    for f in feeds:
        if isinstance(f, tuple):
            yield from _flat_keys(f)
        else:
            yield f


def _initial_values(var_nodes, graph):
    """Run the variables' initializers once (a reference step of their assigns).

    A variable initialized from a constant of its own type (``gc.Variable(array)``, the
    zeros of an optimizer's slots) takes a copy of that constant: what the step would
    compute, without compiling, hashing or caching arrays as large as the model.
    """
    # (those made from arrays are known by the graph: their nodes are not read again)
    known = getattr(graph, "initial_arrays", {})
    arrays = list(map(_second, map(known.get, var_nodes, repeat(_UNKNOWN))))
    copied = list(map(is_not, arrays, repeat(None)))  # (never `None in arrays`: == on arrays)
    if not all(copied):
        arrays = [a if c else _constant_initial_array(v)
                  for v, a, c in zip(var_nodes, arrays, copied)]
        copied = list(map(is_not, arrays, repeat(None)))
    # (the small ones in one buffer, a copy per shape; a constant's array has its dtype)
    values = aligned_copies(compress(arrays, copied))
    if len(values) < len(var_nodes):  # (each assign reads only its own inputs: computing
        rest = [v for v, c in zip(var_nodes, copied) if not c]  # them apart changes nothing)
        computed, made = _computed_initial_values(rest), iter(values)
        values = [next(made) if c else computed[v] for v, c in zip(var_nodes, copied)]
    return dict(zip(var_nodes, values))


_second, _UNKNOWN = itemgetter(1), (None, None)


def _constant_initial_array(var):
    """The array of the constant ``var``'s initializer assigns (to be copied), or None when
    it assigns anything else."""
    meta = getattr(var, "meta", {})
    init = meta.get("initializer")
    if init is None and "initial_value" in meta:  # a Variable's initializer, not built yet,
        target, value = var, meta["initial_value"]  # assigns its initial value
    else:
        init = getattr(var, "initializer", None)
        if init is None or init.op_name != "assign" or \
                init.attrs.get("mode", "set") != "set":
            return None
        target, value = init.inputs
    return constant_for(var, value) if target is var else None


def _computed_initial_values(var_nodes):
    """Compile and run the initializers of ``var_nodes`` (reading no placeholder)."""
    inits = [v.initializer for v in var_nodes]
    try:
        compiled = compile_program(inits, {}, optimize=False)
    except KeyError:
        raise GraphError("a variable's initial value depends on a placeholder",
                         hint="initialize from constants or random ops") from None
    zeros = [np.zeros(v.shape, v.dtype.np) for v in compiled.var_nodes]
    _, updates = compiled.fn(*zeros)
    return dict(zip(compiled.update_nodes,
                    aligned_copies(updates, [v.dtype.np for v in compiled.update_nodes])))
