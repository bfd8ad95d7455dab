"""The compile cache: a compiled signature found by its specialized program, before any pass.

``compile_program`` specializes the fetches for the feed shapes (``build_program``: cheap,
linear), hashes the result (``step_key``) and looks the key up here; a hit loads the saved code
and returns a step without running a pass or the code generator. The LLVM object cache
(``runtime.objcache``), keyed on the generated IR, still needs every pass to produce that IR;
this one does not.

The key is a canonical structural hash of the specialized program: every node's op, attributes
(arrays by dtype, shape and content), dtype, shape and inputs (as schedule positions), the
feed, variable, fetch and update order, the backend, the pass list, the debugging checks, the
graphc version, ``FORMAT_VERSION``, the host target (``objcache.cache_key``) and every
``GRAPHC_*`` setting that can change generated code. Anything that changes behaviour changes
the key; names and source lines do not, except where the code carries them:

- NumPy backend: names and lines are not in the key. A hit's code runs as the first compile
  wrote it; when it fails, or when ``program``, ``source``, ``sites`` or ``code`` are read
  (``step.ir()``, ``step.stats``, ``step.save``, error messages), the signature is compiled
  again from the current graph (deterministic: the same code), so messages name the current
  graph's nodes and lines.
- LLVM backend: the object code's tables hold node names and lines (index, label and
  NaN/Inf messages are raised from inside the step), so they are part of the key there.

Not cached: a program with a random op without a seed (each compile draws fresh entropy), a
host call (``tf.py_func``, ``tf.Print``: Python functions), or an attribute the hash cannot read.

The cache is off unless ``GRAPHC_STEP_CACHE=1`` (or ``compile_program(cache=True)``); entries
live in the object cache's directory with its trust rules (``runtime.objcache``) and
``GRAPHC_NO_CACHE=1`` turns them off too.

Entry layout (the object cache's payload)::

    magic b"GCSTEP1\\0" | header length u64 | header JSON | code bytes | constants (.npz)

The header holds the backend, the sizes of the two blobs and what a step needs besides its
code: the order of the feeds and variables it takes (positions in the specialized program's
lists), which variables it reads and updates, which fetches have values, the arena, and the
random state at compile time.
"""
import hashlib
import json
import os
import struct
import time

import numpy as np

from ..ir.dtypes import DType
from ..runtime.artifact import graphc_version, pack_arrays, unpack_arrays
from ..runtime.calls import step_lock
from ..runtime.objcache import ObjectCache, cache_key

FORMAT_VERSION = 1  # bump when the entry layout or the key's contents change
ENV = "GRAPHC_STEP_CACHE"
_MAGIC = b"GCSTEP1\0"
# Settings that never change generated code (where caches and dumps go, what is printed).
_NOT_CODE = {"GRAPHC_CACHE_DIR", "GRAPHC_NO_CACHE", ENV, "GRAPHC_DUMP", "GRAPHC_DEBUG",
             "GRAPHC_ARTIFACT_KEY", "GRAPHC_VERIFY", "GRAPHC_BACKEND"}


class _Uncacheable(Exception):
    """The program holds something the key cannot describe."""


def store(cache=None):
    """The ``ObjectCache`` entries go to, or None when the compile cache is off.

    Args:
        cache: True or False to decide; None: ``$GRAPHC_STEP_CACHE`` ("1" turns it on).
    """
    if cache is None:
        cache = os.environ.get(ENV, "") not in ("", "0")
    if not cache:
        return None
    objects = ObjectCache()
    return objects if objects.enabled else None


def step_key(program, backend, passes, checks):
    """The cache key of a specialized (not yet optimized) ``program``, or None.

    Args:
        program: from ``build_program``, before any pass.
        backend, passes, checks: as ``compile_program`` resolves them.
    Returns:
        64 hex digits (``objcache.cache_key``), or None for a program that is not cached
        (see the module docstring).
    Example:
        >>> step_key(build_program([loss], {x: (32, 64)}), "numpy", ["fuse"], ())
        '3f1c...'
    """
    nodes = list(program.nodes)
    index = {id(n): k for k, n in enumerate(nodes)}
    for n in list(program.feeds) + list(program.variables):
        if id(n) not in index:
            index[id(n)] = len(nodes)
            nodes.append(n)
    h = hashlib.sha256()

    def put(value):
        data = repr(value).encode()
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    labels = backend == "llvm"  # its object code carries names and lines (module docstring)
    try:
        for n in nodes:
            op = n.opdef
            if op.family == "host" or (op.random and n.attrs.get("seed") is None):
                return None
            put((n.op_name, n.dtype.name if n.dtype is not None else None,
                 None if n.shape is None else tuple(n.shape),
                 tuple(index[id(x)] if id(x) in index else _refuse() for x in n.inputs),
                 _canon(n.attrs)))
            if labels:
                put((n.node_name, n.loc.format() if n.loc is not None else None, n.is_grad))
    except _Uncacheable:
        return None
    put(("feeds", tuple(index[id(n)] for n in program.feeds)))
    put(("variables", tuple(index[id(n)] for n in program.variables)))
    put(("fetches", tuple(None if f is None else index.get(id(f), -1)
                          for f in program.fetches)))
    put(("updates", tuple((index[id(v)], index.get(id(a), -1)) for v, a in program.updates)))
    put((backend, tuple(passes), tuple(checks), graphc_version(), FORMAT_VERSION))
    put(tuple(sorted((k, v) for k, v in os.environ.items()
                     if k.startswith("GRAPHC_") and k not in _NOT_CODE)))
    return cache_key(h.hexdigest(), "compiled step")


def _refuse():
    raise _Uncacheable()


def _canon(v):
    """A value that ``repr`` writes the same exactly when ``v`` means the same."""
    if v is None or isinstance(v, (bool, int, float, str, bytes)):
        return (type(v).__name__, v)
    if isinstance(v, DType):
        return ("dtype", v.name)
    if isinstance(v, np.ndarray) or isinstance(v, np.generic):
        arr = np.asarray(v)
        if arr.dtype.kind == "O":
            raise _Uncacheable()
        return ("array", arr.dtype.str, arr.shape,
                hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest())
    if isinstance(v, (tuple, list)):
        return (type(v).__name__, tuple(_canon(x) for x in v))
    if isinstance(v, dict):
        return ("dict", tuple(sorted((str(k), _canon(x)) for k, x in v.items())))
    if isinstance(v, np.dtype):
        return ("np.dtype", v.str)
    raise _Uncacheable()


def signature_of(program):
    """What an entry's positions refer to: the user's feed and variable nodes of the
    specialized program, in its order (taken before the passes rewrite it)."""
    return ([program.origin[n] for n in program.feeds],
            [program.origin[n] for n in program.variables])


def save(objects, key, compiled, signature):
    """Write ``compiled`` (just compiled: its random state is the initial one) under ``key``.

    Returns:
        True when the entry was written.
    """
    feeds, variables = signature
    feed_at = {id(n): k for k, n in enumerate(feeds)}
    var_at = {id(n): k for k, n in enumerate(variables)}
    code = compiled.code
    header = {"backend": compiled.backend,
              "feeds": [feed_at[id(n)] for n in compiled.feed_nodes],
              "variables": [var_at[id(n)] for n in compiled.var_nodes],
              "read": [bool(r) for r in compiled.var_read],
              "updates": [var_at[id(n)] for n in compiled.update_nodes],
              "values": list(compiled.fetch_values),
              "scratch_bytes": int(compiled.scratch_bytes),
              "rng": code.rng_state()}
    plan = compiled.program.plan
    if compiled.backend == "numpy":
        blob, arrays = code.source.encode(), {f"c{k}": c for k, c in enumerate(code.consts)}
        header["arena"] = [int(plan.arena_bytes), int(plan.alignment)] \
            if plan is not None and plan.planned else None
    else:
        from ..runtime.loaded_step import encode_layout
        fields, arrays = encode_layout(code.layout)
        blob, header["layout"] = bytes(code.object_code), fields
    consts = pack_arrays(arrays)
    header["sizes"] = [len(blob), len(consts)]
    raw = json.dumps(header).encode()
    return objects.put(key, _MAGIC + struct.pack("<Q", len(raw)) + raw + blob + consts)


def load(objects, key, program, rebuild, timings=None):
    """The ``CachedCompiled`` saved under ``key`` for ``program``, or None (a miss, or an
    entry this graphc cannot use: it is then compiled and written again).

    Args:
        program: the specialized program the key was computed from (its user nodes).
        rebuild: ``() -> Compiled``: the same signature compiled without the cache (for
            what a hit does not carry: the optimized program, sites, dumps).
        timings: {phase: seconds} so far; a hit's ``timings`` adds "read" (the entry read,
            checked and parsed), "load" (its code made callable) and "bind" (the step built
            around the code).
    """
    timings = dict(timings or {})
    t0 = time.perf_counter()
    payload = objects.get(key)
    if payload is None:
        return None
    try:
        entry = _unpack(payload)
        timings["read"] = time.perf_counter() - t0
        return CachedCompiled(entry, signature_of(program), program, rebuild, timings)
    except Exception:  # noqa: BLE001  (a stale or foreign entry: compile instead)
        return None


def _unpack(payload):
    if payload[:len(_MAGIC)] != _MAGIC:
        raise ValueError("not a compiled-step entry")
    (n,) = struct.unpack_from("<Q", payload, len(_MAGIC))
    start = len(_MAGIC) + 8
    header = json.loads(payload[start:start + n].decode())
    a, b = header["sizes"]
    header["blob"] = payload[start + n:start + n + a]
    header["arrays"] = unpack_arrays(payload[start + n + a:start + n + a + b])
    return header


class CachedCompiled:
    """A compiled signature loaded from the compile cache: what ``Compiled`` offers, with the
    optimized program, code description and sites compiled again on first use (see the
    module docstring); ``fn`` is the cached code, loaded."""

    cache_hit = True

    def __init__(self, entry, signature, program, rebuild, timings=None):
        feeds, variables = signature
        self.backend = entry["backend"]
        self.feed_nodes = [feeds[k] for k in entry["feeds"]]
        self.var_nodes = [variables[k] for k in entry["variables"]]
        self.var_read = list(entry["read"])
        self.update_nodes = [variables[k] for k in entry["updates"]]
        self.fetch_values = list(entry["values"])
        self.scratch_bytes = entry["scratch_bytes"]
        self.timings = {} if timings is None else timings
        self.lock = step_lock()
        self._rebuild, self._full = rebuild, None
        self.name = getattr(program, "name", "step")
        if self.backend == "numpy":
            self.fn, self._rng_state = _python_step(entry, self.timings)
        else:
            self.fn, self._rng_state = _native_step(entry, self.timings)

    def _compiled(self):
        """The signature compiled again (same code): program, source, sites, dumps."""
        if self._full is None:
            full = self._rebuild()
            full.code.rng_state = self._rng_state  # saving reads the running step's state
            full.code.step = self.fn
            self._full = full
        return self._full

    program = property(lambda self: self._compiled().program)
    source = property(lambda self: self._compiled().source)
    code = property(lambda self: self._compiled().code)
    sites = property(lambda self: self._compiled().sites)
    dump_dir = property(lambda self: self._compiled().dump_dir)


def _python_step(entry, timings):
    from ..runtime.loaded_step import aligned_zeros, generator
    from ..runtime.pystep import load_python_step
    t0 = time.perf_counter()
    arrays = entry["arrays"]
    consts = [arrays[f"c{k}"] for k in range(len(arrays))]
    rngs = [generator(s) for s in entry["rng"]]
    arena = aligned_zeros(*entry["arena"]) if entry["arena"] else None
    fn, _ = load_python_step(entry["blob"].decode(), consts, rngs, arena=arena)
    timings["load"] = time.perf_counter() - t0  # (compiling the source, mostly)
    return fn, lambda: [g.bit_generator.state for g in rngs]


def _native_step(entry, timings):
    from ..runtime import jit
    from ..runtime.llvm_step import NativeStep
    from ..runtime.loaded_step import decode_layout
    t0 = time.perf_counter()
    loaded = jit.load_object(entry["blob"])
    t1 = time.perf_counter()
    fn = NativeStep(decode_layout(entry["layout"], entry["arrays"]), loaded)
    fn.rng_state[:] = np.array(entry["rng"], np.uint64)
    timings["load"], timings["bind"] = t1 - t0, time.perf_counter() - t1
    return fn, lambda: [int(v) for v in fn.rng_state]
