"""Session: TF1's run loop over compiled steps, with the variables' values.

``run(fetches, feed_dict)`` validates the feeds before anything runs, compiles one step per
(fetches, fed nodes, feed shapes and dtypes) signature (cached), runs it as one call and stores
the assigned variables. Fetches may be any nest of lists, tuples and dicts; ops give None. Any
tensor may be fed, as in TF1 (``ir.program.specialize`` makes a fed node a leaf of the step).

A training loop calls ``run`` with the same fetches and the same feed keys every time:
after one call has gone the whole way (feed targets checked, feeds converted, the needed
placeholders found, the step compiled), ``run`` remembers the result for that (fetch list,
feed keys) pair (``_FastRun``), and a later call whose arrays already have the dtypes and
shapes of that step goes straight to it. Anything else (another dtype or shape, a list fed
instead of an array, tf.data iterators in the graph) takes the whole way again.
"""
import sys
import threading

import numpy as np

from .pipeline import compile_program, default_backend
from ..runtime.threads import apply_policy
from ..errors import GraphcError, GraphError
from ..ir import dtypes as D
from ..ir.graph import Node, get_default_graph, pop_default_session, push_default_session
from ..runtime.aligned import aligned_copies, aligned_copy, aligned_zeros_each
from ..runtime.calls import may_alias, state_ids, unalias
from .failures import step_error
from .feeds import (_as_result, _missing_feed_error, check_feed_dict, constant_assigns,
                    convert_feed, expand_feeds, feed_target, flatten, variables_and_leaf_feeds)


def _iterators():
    """``graphc.data.iterator`` when it was imported, else None: no tf.data iterator can
    exist before it is, and importing it (tf.data's modules, 2 ms) is left to the programs
    that use it."""
    return sys.modules.get("graphc.data.iterator")


def _made():
    """How many tf.data iterators were made in this process (``iterator.made``)."""
    module = _iterators()
    return 0 if module is None else module.made


def has_iterators(graph):
    """Whether a tf.data iterator was made in ``graph`` (``iterator.has_iterators``)."""
    module = _iterators()
    return module is not None and module.has_iterators(graph)


class Session:
    """Runs steps of one graph and holds its variables' values (TF1's tf.Session).

    Args:
        graph: the graph (default: the default graph).
        backend: "numpy" or "llvm" (default: ``$GRAPHC_BACKEND``, else "llvm" when it works
            on this host, else "numpy" with a one-line notice).
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
        self.threads = apply_policy(getattr(config, "intra_op_parallelism_threads", None))
        backend = backend or default_backend()
        self.backend, self.optimize, self.dump_dir = backend, optimize, dump_dir
        self.check_numerics = check_numerics
        self.values = _Values()  # user variable node -> np.ndarray
        self._prepared = {}  # compiled step -> _Prepared (its variable arrays, ...)
        self._cache = {}
        self._needs = {}
        self._flats = {}  # fetch key -> (flat fetches, rebuild): see _flatten
        self._targets = {}  # fed tensor -> itself, once checked feedable
        self._fast = {}  # (fetch key, feed keys) -> _FastRun: see the module docstring
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
        key = _run_key(fetches, feed_dict)
        fast = self._fast.get(key) if key is not None else None
        if fast is not None and (fast.made == _made() or not has_iterators(self.graph)):
            args = fast.arguments(feed_dict)
            if args is not None:
                fast.made = _made()
                return fast.rebuild(self._run_step(fast.compiled, args))
        check_feed_dict(feed_dict, "Session.run")
        flat, rebuild = self._flatten(fetches)
        if not flat:  # sess.run([]) and sess.run({}) return the empty structure, as in TF1
            return rebuild([])
        pull = has_iterators(self.graph)
        if pull:
            _iterators().run_initializers(flat)  # (tf.data iterators' initializers restart them)
        elif self.dump_dir is None and not self.check_numerics:
            assigns = constant_assigns(flat)
            if assigns is not None:  # an initializer of constants: copied, not compiled
                copies = aligned_copies(list(assigns.values()))  # (a constant's dtype is its
                # variable's: NumPy's own dtype object, ``ir.dtypes``)
                self.values.update(zip(assigns, copies))
                return rebuild([None] * len(flat))
        feeds = self._feeds(flat, feed_dict or {}, pull=pull)
        compiled = self._compiled(flat, feeds)
        values = self._run_step(compiled, [feeds[p] for p in compiled.feed_nodes])
        if key is not None and not pull:
            self._fast[key] = _FastRun(feed_dict or {}, feeds, compiled, rebuild,
                                       self._target)
        return rebuild(values)

    def _run_step(self, compiled, args):
        """Run ``compiled`` on the feeds ``args`` (in its feed order); the fetched values."""
        try:
            values = self.values
            p = self._prepared.get(compiled)
            if p is None or p.version != values.version:
                p = self._prepared[compiled] = _Prepared(compiled, values)
            if p.direct:  # a native step: it updates the stored arrays in place, under its lock
                stored = p.stored
                for a in args:
                    if id(a) in stored or a.base is not None and may_alias(a, stored):
                        args = list(args)  # a feed that is (a view of) a variable is copied
                        unalias(args, list(values.values()))
                        break
                return compiled.fn.run(args, p.variables)
            with compiled.lock:  # the step's arena, and the variables it reads and replaces
                return self._execute_locked(compiled, list(args), p)
        except GraphcError:
            raise
        except Exception as exc:  # a kernel refused a value: name its node, not the NumPy line
            raise step_error(compiled, exc) from None

    def _flatten(self, fetches):
        """(flat fetches, rebuild), checked once per fetch list of tensors (``run`` in a
        loop passes the same list every time)."""
        key = _fetch_key(fetches)
        known = self._flats.get(key) if key is not None else None
        if known is not None:
            return known
        flat, rebuild = flatten(fetches, self.graph)
        for f in flat:
            if f.graph is not self.graph:
                raise GraphError(f"Session.run: fetch {f.describe()} belongs to another graph",
                                 loc=f.loc)
        if key is not None:
            self._flats[key] = (flat, rebuild)
        return flat, rebuild

    def _feeds(self, flat, feed_dict, pull=False):
        given = {}
        targets = self._targets
        for key, value in expand_feeds(feed_dict.items()):
            node = targets.get(key) if type(key) is Node else None
            if node is None:
                node = feed_target(self.graph, key)
                if type(key) is Node:
                    targets[key] = node  # (checked feedable once)
            given[node] = convert_feed(node, value)
        key = (tuple(f.id for f in flat),
               tuple(sorted(n.id for n in given if n.op_name != "placeholder")))
        need = self._needs.get(key)
        if need is None:
            need = variables_and_leaf_feeds(flat, given)[1]
            self._needs[key] = need
        missing = [p for p in need if p not in given and "default" not in p.meta
                   and not (pull and "iterator" in p.meta)]
        if missing:
            raise _missing_feed_error(missing)
        if pull:  # one element from each tf.data iterator the step reads and was not fed
            given.update(_iterators().next_elements(need, given))
        return {p: given[p] if p in given else p.meta["default"] for p in need}

    def _target(self, key):
        """The node fed by feed key ``key`` (a tensor, checked feedable once, or a name)."""
        node = self._targets.get(key) if type(key) is Node else None
        return feed_target(self.graph, key) if node is None else node

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

    def _execute_locked(self, compiled, args, p):
        values = self.values
        variables, stored = p.variables, p.stored
        for a in args:  # steps update variables in place: a feed that is (a view of) a
            if may_alias(a, stored):  # variable is copied, under the lock
                unalias(args, list(values.values()))
                break
        args += variables
        fetched, updates = compiled.fn(*args)
        if p.in_place:
            # A native step writes new values into the arrays it was given: keep them as they
            # are (same objects, so the step's bound addresses stay valid and nothing is
            # copied); when every one came from ``values``, there is nothing to store.
            if not p.complete:
                for v, new in zip(compiled.update_nodes, updates):
                    if values.get(v) is not new:
                        values[v] = new
        elif updates:
            p.store(values, compiled.update_nodes, updates)
        if p.owned:  # fresh copies, 0-d ones as scalars
            return [x if has else None for has, x in zip(compiled.fetch_values, fetched)]
        # A fetched array that owns its memory and is none of the arguments is the step's own
        # (fresh each call): only views and arguments are checked for overlap with storage.
        given = {id(a) for a in args}
        return [None if not has else (x if x.ndim else x[()])
                if type(x) is np.ndarray and x.base is None and id(x) not in given
                else _as_result(x, args) for has, x in zip(compiled.fetch_values, fetched)]

    # -- introspection --------------------------------------------------------------------------
    def source(self, fetches, feed_dict=None):
        """The generated source for the step computing ``fetches`` with these feeds."""
        flat, _ = flatten(fetches, self.graph)
        return self._compiled(flat, self._feeds(flat, feed_dict or {})).source

    def load_variable(self, var, value):
        self.values[var] = aligned_copy(np.reshape(value, var.shape), var.dtype.np)


class _Prepared:
    """What ``Session.run`` passes a compiled step besides the feeds, built from
    ``Session.values`` and reused while ``values.version`` is unchanged: the variable arrays in
    the step's order, the ids of every stored array (a feed that is one is copied first), and
    the step's call flags.

    Raises:
        GraphError: a variable the step reads has no value.
    """

    __slots__ = ("version", "variables", "stored", "complete", "in_place", "owned",
                 "updated_at", "direct")

    def __init__(self, compiled, values):
        self.version, self.complete = values.version, True
        self.variables = [values.get(v) for v in compiled.var_nodes]
        unset = [k for k, value in enumerate(self.variables) if value is None]
        for k in unset:
            if compiled.var_read[k]:
                v = compiled.var_nodes[k]
                raise GraphError(
                    f"attempting to use uninitialized variable '{v.node_name}'", loc=v.loc,
                    hint="run gc.global_variables_initializer() first")
        if unset:  # (written, not read: an initializer's; zeros, one buffer for the small)
            self.complete = False
            nodes = [compiled.var_nodes[k] for k in unset]
            zeros = aligned_zeros_each([v.shape for v in nodes], [v.dtype.np for v in nodes])
            for k, value in zip(unset, zeros):
                self.variables[k] = value
        self.stored = set(state_ids(list(values.values())))
        self.in_place = getattr(compiled.fn, "updates_in_place", False)
        self.owned = getattr(compiled.fn, "fetches_owned", False)
        # Nothing to store after a call, nothing to convert: ``fn.run(feeds, variables)``.
        self.direct = self.in_place and self.owned and self.complete
        if self.direct:
            self.variables = tuple(self.variables)
        where = {id(v): k for k, v in enumerate(compiled.var_nodes)}
        self.updated_at = [where.get(id(v)) for v in compiled.update_nodes]

    def store(self, values, nodes, updates):
        """Store the new arrays of a step that returns new ones (the NumPy backend): one
        version step for all, and this list follows them (it stays valid for this step; the
        other steps' lists are built again)."""
        variables, stored, put = self.variables, self.stored, dict.__setitem__
        for v, k, new in zip(nodes, self.updated_at, updates):
            new = np.array(new, dtype=v.dtype.np)
            put(values, v, new)
            if k is not None:
                stored.discard(id(variables[k]))
                variables[k] = new
                stored.add(id(new))
        values.version += 1
        if self.complete and None not in self.updated_at:
            self.version = values.version


class _Values(dict):
    """``Session.values``: a dict that counts what is stored in it, so that a step's list of
    variable arrays is built once and reused until a value is stored (an initializer, a
    restore, ``load``, a step of the NumPy backend); arrays changed in place keep it valid."""

    __slots__ = ("version",)

    def __init__(self):
        super().__init__()
        self.version = 0

    def __setitem__(self, key, value):
        self.version += 1
        super().__setitem__(key, value)

    def __delitem__(self, key):
        self.version += 1
        super().__delitem__(key)

    def pop(self, *args):
        self.version += 1
        return super().pop(*args)

    def popitem(self):
        self.version += 1
        return super().popitem()

    def clear(self):
        self.version += 1
        super().clear()

    def update(self, *args, **kwargs):
        self.version += 1
        super().update(*args, **kwargs)

    def setdefault(self, key, default=None):
        self.version += 1
        return super().setdefault(key, default)


class _FastRun:
    """What one ``run`` found for its fetches and feed keys (see the module docstring): the
    step, and per feed key the dtype and shape its array must have to reach the step as it is.

    Args:
        feed_dict: the call's feeds (keys are tensors).
        feeds: {needed placeholder: converted array} as that call ran the step.
        compiled: its step; rebuild: the fetches' structure.
        target: the fed node of a feed key (a tensor or its name).
    """

    __slots__ = ("compiled", "rebuild", "plan", "made")

    def __init__(self, feed_dict, feeds, compiled, rebuild, target):
        self.compiled, self.rebuild = compiled, rebuild
        self.made = _made()  # (no iterator made since: none in this graph either)
        nodes = [target(k) for k in feed_dict]
        position = {id(n): i for i, n in enumerate(nodes)}
        # Per feed of the step, in its order: the position of its value among the call's
        # feed values and what that array must be (C-order strides: see
        # graphc.client.compile._takes), or a default value. None: a key is not fed to the
        # step, the whole way then checks and explains.
        self.plan = []
        for p in compiled.feed_nodes:
            i = position.get(id(p))
            a = feeds[p]
            self.plan.append((i, a, None, None, None) if i is None else
                             (i, None, a.dtype, a.shape, a.strides))
        if any(n not in feeds for n in nodes):
            self.plan = None

    def arguments(self, feed_dict):
        """The step's feed arguments from ``feed_dict``, or None when a value is not already
        an array of the dtype, shape and layout the step was compiled for."""
        if self.plan is None:
            return None
        values = list(feed_dict.values()) if feed_dict else []
        args = []
        for i, default, dtype, shape, strides in self.plan:
            if i is None:
                args.append(default)
                continue
            a = values[i]
            if type(a) is not np.ndarray or a.shape != shape or a.dtype is not dtype \
                    or a.strides != strides:
                return None  # (built-in dtypes are singletons: `is`)
            args.append(a)
        return args


def _run_key(fetches, feed_dict):
    """The ``_FastRun`` key of a call: its fetch key and its feed keys' (``_key_of``), when
    the fetches have a key and every feed key is a tensor or a name; else None."""
    fetch = _fetch_key(fetches)
    if fetch is None or (feed_dict is not None and type(feed_dict) is not dict):
        return None
    if not feed_dict:
        return fetch, ()
    keys = _keys(feed_dict, [])
    return None if keys is None else (fetch, keys)


def _key_of(t):
    """A tensor's id (stable: nodes live as long as their graph; ints never compare as
    tensors do), a name as itself (a name always means the same node of the graph), else
    None."""
    kind = type(t)
    if kind is Node or (kind is not str and isinstance(t, Node)):  # (Variable: a subclass)
        return id(t)
    return t if kind is str else None


def _keys(items, keys):
    """``keys`` and the key of each of ``items`` (``_key_of``; a tensor's id inline), as a
    tuple, or None when an item has no key."""
    for t in items:
        if type(t) is Node:
            keys.append(id(t))
        else:
            k = _key_of(t)
            if k is None:
                return None
            keys.append(k)
    return tuple(keys)


def _fetch_key(fetches):
    """A key for fetches that are one tensor or name, or a list or plain tuple of them (see
    ``_key_of``), else None."""
    kind = type(fetches)
    if kind is list or kind is tuple:
        return _keys(fetches, [kind])
    return _key_of(fetches)


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
