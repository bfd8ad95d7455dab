"""The compile cache: a compiled signature found from the user's graph, before anything runs.

``compile_program`` hashes what the fetches need of the user's graph and the feed shapes
(``step_key``) and looks the key up here; a hit loads the saved code and returns a step
without specializing the graph, running a pass or the code generator. The LLVM object cache
(``runtime.objcache``), keyed on the generated IR, still needs every pass to produce that IR;
this one does not.

The key is a canonical structural hash of everything specialization (``ir.program.
build_program``) reads: the nodes the fetches need (every ancestor, stopping at fed nodes), in
creation order, each with its op, attributes (arrays by dtype, shape and content), dtype,
declared shape and inputs (as positions in that order), and for a fed node its concrete shape;
then the fetches, the backend, the pass list, the debugging checks, the graphc version,
``FORMAT_VERSION``, for the LLVM backend the host target (``objcache.cache_key``: a NumPy
step is Python and NumPy, which any host runs, and leaving the host out spares a NumPy hit
LLVM's set-up and the CPU's description, ~0.9 ms a process) and every ``GRAPHC_*`` setting
that can change generated code. Specialization is a function of exactly these (the op
registry's rules are the graphc version's), so the same key means the same specialized
program, hence the same compiled step (``graph_key`` reads the graph's part, keeping each
node's description on the node for the next key). Anything that changes behaviour changes the
key; names and source lines do not, except where the code carries them:

- NumPy backend: names and lines are not in the key. A hit's code runs as the first compile
  wrote it; when it fails, or when ``program``, ``source``, ``sites`` or ``code`` are read
  (``step.ir()``, ``step.stats``, ``step.save``, error messages), the signature is compiled
  again from the current graph (deterministic: the same code), so messages name the current
  graph's nodes and lines.
- LLVM backend: the object code's tables hold node names and lines (index, label and
  NaN/Inf messages are raised from inside the step), so they are part of the key there.

Not cached: a program with a random op without a seed (each compile draws fresh entropy), a
host call (``tf.py_func``, ``tf.Print``: Python functions), an attribute the hash cannot read,
or a placeholder it needs without a feed shape (compiling says which).

A graph made while the cache is on keeps a running hash of the nodes it builds
(``node_digest``): a key made of that hash, the graph's length and the fetches' and fed
nodes' positions names the step before the graph is read. Under it the cache remembers the
key above and the positions of the nodes it read (``remember``), and under a like key what
``gc.compile`` needs (its feeds and variables): a warm hit in a new process then reads no
node but those. A graph that grew, or was changed, misses that memory and is read.

The cache is off unless ``GRAPHC_STEP_CACHE=1`` (or ``compile_program(cache=True)``); entries
live in the object cache's directory with its trust rules (``runtime.objcache``) and
``GRAPHC_NO_CACHE=1`` turns them off too.

Entry layout (the object cache's payload)::

    magic b"GCSTEP1\\0" | header length u64 | header JSON | code | constants | prepared | pool
    | shared

The code is the object code (LLVM) or the module's source (NumPy); the constants are the
NumPy module's arrays, their bytes one after another (the header's table says where);
"prepared" is what a hit would otherwise derive from the code, in the form this Python
loads fastest: the NumPy module compiled to bytecode (``marshal``: compiling the source was
most of loading it; run only by a Python of the same bytecode version, which compiles the
source otherwise), or the native step's ``StepLayout`` (``pickle``: decoding it from JSON
took longer than loading the object code's relocations). Both run code as the object code
does, under the same trust rules. "pool" is the thread pool's object code (``runtime.
parallel``) for a native step that runs kernels in chunks, with the digest of the pool's IR
it was compiled from: a process whose pool is not loaded yet loads it with the step's code
into one engine (no second engine, no read of the runtime cache: ~0.7 ms of a first hit),
when the digest matches its own pool's. "shared" is the native step's code (and the pool's,
when the entry has it) linked into a shared library (``runtime.shared_object``), which a hit
opens with the dynamic loader instead of starting LLVM (~2 ms of a fresh process), empty
where ``ld`` is missing; a process that cannot open it loads the object code into MCJIT.
The header holds the backend, the sizes of the five blobs, the names the library exports
and what a step needs besides its code: its feeds and variables in call order
(positions among the nodes the key hashed), which variables it reads and updates, which
fetches have values, the arena, and the random state at compile time.
"""
import hashlib
import importlib.util
import json
import marshal
import operator
import os
import pickle
import struct
import time
from collections.abc import Sequence
from operator import add, itemgetter, lt

import numpy as np

from ..runtime import parallel
from ..runtime.artifact import graphc_version
from ..runtime.blas import kernel_vector_bytes
from ..runtime.calls import step_lock
from ..runtime.jit import HostTarget
from ..runtime.objcache import ObjectCache, cache_key
from .graph_key import Uncacheable, fed_shapes, graph_rows
from .node_digest import fast_rows

FORMAT_VERSION = 9  # bump when the entry layout or the key's contents change
ENV = "GRAPHC_STEP_CACHE"
_MAGIC = b"GCSTEP1\0"
# Settings that never change generated code (where caches and dumps go, what is printed).
_NOT_CODE = {"GRAPHC_CACHE_DIR", "GRAPHC_NO_CACHE", ENV, "GRAPHC_DUMP", "GRAPHC_DEBUG",
             "GRAPHC_ARTIFACT_KEY", "GRAPHC_VERIFY", "GRAPHC_BACKEND",
             "GRAPHC_SHARED_STEPS"}  # (how the code is loaded, not what it is)
_BYTECODE = importlib.util.MAGIC_NUMBER.hex()  # this Python's bytecode version
_ANY_HOST = HostTarget("any host", "", "")  # what a NumPy step's key names as its target
# The key's rows are serialized by ``marshal`` at this version: one C call (``repr`` took most
# of the key's time), injective on the plain values rows hold, and without the back
# references of versions 3 and up, which depend on objects' identity, not their values.
_MARSHAL = 2
_PICKLE = 5  # (Python 3.8 and up)


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


def step_key(fetches, feed_shapes, backend, passes, checks, objects=None):
    """The cache key of the step ``compile_program(fetches, feed_shapes, ...)`` compiles.

    One pass over the nodes the step needs, one hash (no specialization: see the module
    docstring for what the key holds and why that is enough, ``graph_key`` for how it is
    read from the graph). Where the graph keeps a running hash of its nodes
    (``node_digest``), that hash names the step first: ``objects`` remembers under it the
    key and the needed nodes' positions in the graph, so that a warm hit reads neither.

    Args:
        fetches: list of user nodes.
        feed_shapes: {user node fed: concrete shape}, as ``compile_program`` takes them.
        backend, passes, checks: as ``compile_program`` resolves them.
        objects: the ``ObjectCache`` of entries, to remember keys in (None: no memory).
    Returns:
        (key, nodes): 64 hex digits (``objcache.cache_key``) and the user nodes the key
        describes (what an entry's positions refer to); (None, None) for a step that is not
        cached (see the module docstring).
    Example:
        >>> key, nodes = step_key([loss], {x: (32, 64)}, "numpy", ["fuse"], ())
        >>> key
        '3f1c...'
    """
    fed = fed_shapes(feed_shapes)
    if fed is None:
        return None, None
    environ = os.environ  # (its keys only: decoding every value cost more than the rest)
    blas_width = kernel_vector_bytes() if backend == "llvm" else None  # (native GEMM sizes)
    tail = [(backend, tuple(passes), tuple(checks), graphc_version(), FORMAT_VERSION,
             blas_width),
            tuple(sorted((k, environ[k]) for k in environ
                         if k.startswith("GRAPHC_") and k not in _NOT_CODE))]
    target = None if backend == "llvm" else _ANY_HOST  # (None: this host)
    fast = fast_rows(fetches, fed) if objects is not None else None
    if fast is not None:
        fast = _hashed(fast + tail, "compiled step's key", target)
        found = recall(objects, fast)
        read = None if found is None else nodes_at(fetches[0].graph, found[64:])
        if read and read[1]:
            return found[:64].decode(), read[1]
    try:
        rows, nodes = graph_rows(fetches, fed, backend == "llvm")
    except (Uncacheable, KeyError):  # (KeyError: an input not needed)
        return None, None
    if rows is None:
        return None, None
    key = _hashed(rows + tail, "compiled step", target)
    if key is not None and fast is not None:
        remember(objects, fast, key.encode() + node_ids(nodes))
    return key, nodes


def _hashed(rows, kind, target):
    """An object-cache key of ``rows`` (plain values), or None when ``marshal`` refuses
    them."""
    try:
        digest = hashlib.sha256(marshal.dumps(rows, _MARSHAL)).hexdigest()
    except ValueError:  # (a value of a subclass of str, int...)
        return None
    return cache_key(digest, kind, target=target)


def recall(objects, key):
    """What ``remember`` kept under ``key`` (bytes), or None."""
    return None if key is None else objects.get(key)


def remember(objects, key, payload):
    """Keep ``payload`` (bytes) under ``key`` in ``objects``: what a key made of a graph's
    running hash stands for (the key read from the graph and the needed nodes' positions,
    the nodes a ``CompiledStep`` needs...)."""
    if key is not None:
        objects.put(key, payload)


def node_ids(nodes, head=()):
    """``head`` (ints) and ``nodes``' positions in their graph, as bytes ``nodes_at`` reads:
    runs of consecutive positions as (first, count) pairs (a step's needed nodes are mostly
    such runs), or, for positions in increasing order that runs would take more room for, a
    bitmap over the graph's nodes (a deep model's 12k needed nodes are 9.5k runs, 152 KB as
    pairs: 1.5 KB as bits), tagged ``_BITMAP`` in front."""
    ids = [n.id for n in nodes]
    runs = []
    for i in ids:
        if runs and runs[-2] + runs[-1] == i:
            runs[-1] += 1
        else:
            runs += [i, 1]
    if len(runs) > 16 and all(map(lt, ids, ids[1:])) and (ids[-1] + 8) // 8 < 4 * len(runs):
        bits = np.zeros(ids[-1] + 1, np.uint8)
        bits[ids] = 1
        return np.array([_BITMAP, len(head), *head, len(bits)], np.int64).tobytes() \
            + np.packbits(bits).tobytes()
    return np.array(list(head) + runs, np.int64).tobytes()


_BITMAP = -2  # (no run starts below 0, and the head's counts are not negative)


def nodes_at(graph, data, head=0):
    """What ``node_ids`` wrote: (its ``head`` ints, the nodes of ``graph`` at the positions
    after them, as ``Positions``), or None when ``data`` cannot be that (a damaged memory)."""
    nodes = graph.nodes
    try:
        if len(data) >= 16 and np.frombuffer(data, np.int64, 1)[0] == _BITMAP:
            return _bitmap_at(nodes, data, head)
        values = np.frombuffer(data, np.int64).tolist()
    except ValueError:
        return None
    runs = values[head:]
    if len(values) < head or len(runs) % 2:
        return None
    firsts, counts = runs[::2], runs[1::2]
    if firsts and (min(firsts) < 0 or min(counts) <= 0  # (checked at C speed)
                   or max(map(add, firsts, counts)) > len(nodes)):
        return None
    counts = np.array(counts, np.int64)
    # (each run's positions: its first, plus how far into the run each one is)
    starts = np.cumsum(counts) - counts
    at = np.arange(int(counts.sum()), dtype=np.int64) \
        + np.repeat(np.array(firsts, np.int64) - starts, counts)
    return values[:head], Positions(nodes, at)


def _bitmap_at(nodes, data, head):
    size = 8 * (3 + head)
    values = np.frombuffer(data, np.int64, size // 8 if len(data) >= size else 0).tolist()
    if len(values) != 3 + head or values[1] != head or not 0 <= values[-1] <= len(nodes) \
            or len(data) - size != (values[-1] + 7) // 8:
        return None
    bits = np.unpackbits(np.frombuffer(data, np.uint8, offset=size), count=values[-1])
    return values[2:2 + head], Positions(nodes, np.flatnonzero(bits))


class Positions(Sequence):
    """The nodes at positions ``at`` (an int64 array) of ``nodes``, read as they are asked
    for: a warm hit asks for its feeds, variables and updates (the 10k-node RNN's: 7 of
    10k), not for all of them (0.22 ms). A slice or iteration makes the whole list once,
    in one C call."""

    def __init__(self, nodes, at):
        self._nodes, self._at = nodes, at
        self._whole = None

    def __len__(self):
        return len(self._at)

    def _list(self):
        if self._whole is None:
            self._whole = self.take(range(len(self._at)))
        return self._whole

    def __getitem__(self, k):
        whole = self._whole
        if whole is not None:
            return whole[k]
        if isinstance(k, slice):
            return self._list()[k]
        k = operator.index(k)
        if not -len(self._at) <= k < len(self._at):
            raise IndexError(f"position {k} of {len(self._at)}")
        return self._nodes[int(self._at[k])]

    def __iter__(self):
        return iter(self._list())

    def take(self, ks):
        """``[self[k] for k in ks]`` (positions in range, as ``CachedCompiled`` reads them
        from its entry), without building the whole list: the graph's positions picked in
        one NumPy pass, then read in one C call (a deep model's 2,220 variables and updates
        of 12k needed nodes: 0.9 -> 0.1 ms in a fresh process)."""
        if self._whole is not None or len(ks) < 2:
            return [self[k] for k in ks]
        ks = np.asarray(ks, np.int64)
        if ks.min() < 0 or ks.max() >= len(self._at):
            raise IndexError(f"positions outside 0..{len(self._at) - 1}")
        return list(itemgetter(*self._at[ks].tolist())(self._nodes))


def _taken(nodes, ks):
    """``[nodes[k] for k in ks]`` for a list or ``Positions``."""
    if type(nodes) is Positions:
        return nodes.take(ks)
    return list(itemgetter(*ks)(nodes)) if len(ks) > 1 else [nodes[k] for k in ks]


def needs_key(fetches, fed):
    """The key under which what ``fetches`` need when ``fed`` nodes are given is remembered
    (``gc.compile``'s feeds and variables), or None when the graph keeps no running hash."""
    rows = fast_rows(fetches, dict.fromkeys(fed, ()))
    if rows is None:
        return None
    return _hashed(rows + [graphc_version(), FORMAT_VERSION], "needed nodes", _ANY_HOST)


def save(objects, key, compiled, nodes):
    """Write ``compiled`` (just compiled: its random state is the initial one) under ``key``.

    Args:
        nodes: the user nodes ``step_key`` returned with ``key``.
    Returns:
        True when the entry was written (not for constants or a layout that hold Python
        objects ``pickle`` or the constants' table cannot store).
    """
    at = {id(n): k for k, n in enumerate(nodes)}
    code = compiled.code
    header = {"backend": compiled.backend,
              "feeds": [at[id(n)] for n in compiled.feed_nodes],
              "variables": [at[id(n)] for n in compiled.var_nodes],
              "read": [bool(r) for r in compiled.var_read],
              "updates": [at[id(n)] for n in compiled.update_nodes],
              "values": list(compiled.fetch_values),
              "scratch_bytes": int(compiled.scratch_bytes),
              "rng": code.rng_state()}
    try:
        blob, arrays, prepared = _blobs(compiled, header)
        header["arrays"], consts = _pack_arrays(arrays)
    except (ValueError, TypeError, AttributeError, pickle.PicklingError):
        return False  # (not stored: a constant or layout field of Python objects)
    pool = _pool_code(compiled)
    if pool:
        header["pool"] = parallel.code_digest()
    shared = _shared_library(compiled, blob, pool, header)
    header["sizes"] = [len(blob), len(consts), len(prepared), len(pool), len(shared)]
    raw = json.dumps(header).encode()
    return objects.put(key, b"".join([_MAGIC, struct.pack("<Q", len(raw)), raw, blob, consts,
                                      prepared, pool, shared]))


def _shared_library(compiled, blob, pool, header):
    """A native step's object code (and the pool's, when it has it) linked into one shared
    library (``runtime.shared_object``), b"" where that cannot be done; adds the names it
    exports to ``header``."""
    if compiled.backend == "numpy":
        return b""
    from ..runtime import shared_object
    linked = shared_object.link_step(blob, compiled.code.layout.entry, pool)
    if linked is None or not _opens(*linked):
        return b""
    library, header["exports"] = linked
    return library


def _opens(library, exports):
    """Whether this process can open ``library`` and find its exports (a system that
    refuses it would otherwise try it on every hit)."""
    from ..errors import ArtifactError
    from ..runtime import shared_object
    try:
        opened = shared_object.load(library, b"", exports)
        for name in exports:
            opened.address(name)
    except ArtifactError:
        return False
    opened.close()
    return True


def _pool_code(compiled):
    """The thread pool's object code when ``compiled`` is a native step that uses the pool
    (b"" otherwise)."""
    layout = getattr(compiled.code, "layout", None) if compiled.backend != "numpy" else None
    if layout is None or not parallel.uses_pool(layout):
        return b""
    return bytes(parallel.object_code())


def _blobs(compiled, header):
    """(code, constant arrays, prepared) of an entry (module docstring); adds to ``header``
    what the backend's step needs besides them."""
    code = compiled.code
    if compiled.backend != "numpy":
        return bytes(code.object_code), {}, pickle.dumps(code.layout, _PICKLE)
    from ..runtime.pystep import compile_step
    plan = compiled.program.plan
    header["arena"] = [int(plan.arena_bytes), int(plan.alignment)] \
        if plan is not None and plan.planned else None
    header["python"] = _BYTECODE  # who can read the bytecode
    return (code.source.encode(), {f"c{k}": c for k, c in enumerate(code.consts)},
            marshal.dumps(compile_step(code.source)))


def _pack_arrays(arrays):
    """{name: array} -> (a table of [name, dtype, shape, offset, bytes], their bytes): read
    back with one slice and copy per array (an ``.npz`` took ~0.2 ms to open even empty)."""
    table, parts, offset = [], [], 0
    for name, value in arrays.items():
        arr = np.asarray(value)
        if arr.dtype.hasobject:
            raise ValueError(f"cannot store an array of Python objects ({name})")
        data = arr.tobytes()  # (C order)
        table.append([name, arr.dtype.str, list(arr.shape), offset, len(data)])
        parts.append(data)
        offset += len(data)
    return table, b"".join(parts)


def _unpack_arrays(table, data):
    """``_pack_arrays``'s table and bytes -> {name: a fresh, writable, aligned array}."""
    arrays = {}
    for name, dtype, shape, offset, size in table:
        dtype = np.dtype(dtype)
        arrays[name] = np.frombuffer(data, dtype, size // dtype.itemsize,
                                     offset).reshape(shape).copy()
    return arrays


def load(objects, key, nodes, rebuild, timings=None):
    """The ``CachedCompiled`` saved under ``key``, or None (a miss, or an entry this graphc
    cannot use: it is then compiled and written again).

    Args:
        nodes: the user nodes ``step_key`` returned with ``key``.
        rebuild: ``() -> Compiled``: the same signature compiled without the cache (for
            what a hit does not carry: the optimized program, sites, dumps).
        timings: {phase: seconds} so far; a hit's ``timings`` adds "read" (the entry read,
            checked and parsed), "load" (its code made callable) and "bind" (the step built
            around the code).
    """
    timings = dict(timings or {})
    t0 = time.perf_counter()
    payload = objects.get(key, view=True)  # (parsed in place: the code is copied once, to LLVM)
    if payload is None:
        return None
    try:
        entry = _unpack(payload)
        timings["read"] = time.perf_counter() - t0
        return CachedCompiled(entry, nodes, rebuild, timings)
    except Exception:  # noqa: BLE001  (a stale or foreign entry: compile instead)
        return None


def _unpack(payload):
    if payload[:len(_MAGIC)] != _MAGIC:
        raise ValueError("not a compiled-step entry")
    (n,) = struct.unpack_from("<Q", payload, len(_MAGIC))
    start = len(_MAGIC) + 8
    header = json.loads(bytes(payload[start:start + n]))
    a, b, c, d, e = header["sizes"]
    start += n
    header["blob"] = payload[start:start + a]
    header["arrays"] = _unpack_arrays(header["arrays"], payload[start + a:start + a + b])
    start += a + b
    header["prepared"] = payload[start:start + c]
    header["pool_code"] = payload[start + c:start + c + d]
    header["shared"] = payload[start + c + d:start + c + d + e]
    return header


class CachedCompiled:
    """A compiled signature loaded from the compile cache: what ``Compiled`` offers, with the
    optimized program, code description and sites compiled again on first use (see the
    module docstring); ``fn`` is the cached code, loaded."""

    cache_hit = True

    name = "step"

    def __init__(self, entry, nodes, rebuild, timings=None):
        self.backend = entry["backend"]
        self.feed_nodes = _taken(nodes, entry["feeds"])
        self.var_nodes = _taken(nodes, entry["variables"])
        self.var_read = list(entry["read"])
        self.update_nodes = _taken(nodes, entry["updates"])
        self.fetch_values = list(entry["values"])
        self.scratch_bytes = entry["scratch_bytes"]
        self.timings = {} if timings is None else timings
        self.lock = step_lock()
        self._rebuild, self._full = rebuild, None
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
    code = None  # another Python's bytecode: compile the source
    if entry.get("python") == _BYTECODE:
        code = marshal.loads(entry["prepared"])
    fn, _ = load_python_step(str(entry["blob"], "utf-8"), consts, rngs, arena=arena, code=code)
    timings["load"] = time.perf_counter() - t0
    return fn, lambda: [g.bit_generator.state for g in rngs]


def _native_step(entry, timings):
    from ..runtime import jit
    from ..runtime.llvm_step import NativeStep, StepLayout
    t0 = time.perf_counter()
    pool = entry["pool_code"]
    adopt = bool(pool) and not parallel.built() and entry.get("pool") == parallel.code_digest()
    loaded = _shared_step(entry)  # (the dynamic loader: no LLVM, ~2 ms less in a new process)
    if loaded is not None:
        if adopt and set(parallel.ENTRY_POINTS) <= set(entry["exports"]):
            parallel.adopt(loaded, bytes(pool))
    elif adopt:
        loaded = jit.load_object(entry["blob"], also=[pool])  # (one engine for both)
        parallel.adopt(loaded, bytes(pool))
    else:
        loaded = jit.load_object(entry["blob"])
    t1 = time.perf_counter()
    layout = pickle.loads(entry["prepared"])
    if type(layout) is not StepLayout:
        raise TypeError(f"a compiled-step entry holds a {type(layout).__name__}, not a layout")
    fn = NativeStep(layout, loaded)
    fn.rng_state[:] = np.array(entry["rng"], np.uint64)
    timings["load"], timings["bind"] = t1 - t0, time.perf_counter() - t1
    return fn, lambda: [int(v) for v in fn.rng_state]


def _shared_step(entry):
    """The entry's shared library opened (``runtime.shared_object``), or None: it has none,
    or this process cannot open it (the object code is then loaded into MCJIT)."""
    from ..errors import ArtifactError
    from ..runtime import shared_object
    if not entry["shared"] or not shared_object.enabled():
        return None
    try:
        return shared_object.load(entry["shared"], entry["blob"], entry.get("exports", ()))
    except ArtifactError:
        return None
