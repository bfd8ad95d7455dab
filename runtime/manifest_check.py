"""Every field of a saved step's manifest checked before any of it is used.

A manifest whose checksums match may still be wrong: written by a buggy tool, edited by hand
or by someone who then recomputed the checksums. ``check_manifest`` makes sure that nothing
the runtime does with the fields (allocating the arena, binding table slots, reading a value
at an offset, indexing variables and fetches) can step outside what it allocated, so that
such a file gives an ``ArtifactError`` naming the field, never a crash. It cannot tell
whether the *code* in the file is what the manifest says (code can do anything): that is
what the artifact key is for (``runtime.artifact``).

This module imports only numpy, ``graphc.errors`` and the runtime's leaf modules.
"""
import re

import numpy as np

from graphc.errors import ArtifactError

__all__ = ["check_manifest", "check_layout", "DTYPES", "MAX_ARENA_BYTES"]

DTYPES = ("float32", "float64", "int8", "int16", "int32", "int64", "uint8", "bool")
MAX_ARENA_BYTES = 1 << 40
MAX_ELEMENTS = 1 << 40
MAX_SLOTS = 1 << 20
_PREFIX = re.compile(r"sig[0-9]{1,6}/")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,200}")
_SHA256 = re.compile(r"[0-9a-f]{64}")


class _Checker:
    """Raises ArtifactError at the first field that is not what the runtime expects."""

    def __init__(self, where):
        self.where = where

    def fail(self, field, what, found):
        raise ArtifactError(f"{self.where}: manifest field {field} {what}, found "
                            f"{_short(found)}", hint="the file was not written by graphc, or "
                                                     "was edited: save the step again")

    def dict(self, v, field, keys=()):
        if not isinstance(v, dict):
            self.fail(field, "must be an object", v)
        for k in keys:
            if k not in v:
                self.fail(f"{field}.{k}", "is missing", None)
        return v

    def list(self, v, field, length=None):
        if not isinstance(v, list) or (length is not None and len(v) != length):
            self.fail(field, "must be a list" + ("" if length is None else
                                                f" of {length} items"), v)
        return v

    def int(self, v, field, lo=0, hi=None):
        if type(v) is not int or v < lo or (hi is not None and v >= hi):
            self.fail(field, f"must be an integer in [{lo}, {'inf' if hi is None else hi})", v)
        return v

    def str(self, v, field, pattern=None):
        if not isinstance(v, str) or (pattern is not None and not pattern.fullmatch(v)):
            self.fail(field, "must be a string" + (f" matching {pattern.pattern}"
                                                   if pattern is not None else ""), v)
        return v

    def dtype(self, v, field):
        if v not in DTYPES:
            self.fail(field, f"must be one of {', '.join(DTYPES)}", v)
        return np.dtype(v)

    def shape(self, v, field, concrete=True):
        if isinstance(v, tuple):
            v = list(v)
        self.list(v, field)
        if len(v) > 32:
            self.fail(field, "has more than 32 dims", v)
        for k, d in enumerate(v):
            if d is None and not concrete:
                continue
            self.int(d, f"{field}[{k}]", 0, MAX_ELEMENTS)
        if concrete and int(np.prod(v, dtype=object)) > MAX_ELEMENTS:
            self.fail(field, f"has more than {MAX_ELEMENTS} elements", v)
        return tuple(v)

    def tensor(self, v, field, concrete=True):
        self.dict(v, field, ("name", "shape", "dtype"))
        self.str(v["name"], f"{field}.name")
        for k in ("type", "loc", "op"):  # shown in messages and by graphc inspect
            if k in v and not isinstance(v[k], str):
                self.fail(f"{field}.{k}", "must be a string", v[k])
        return self.shape(v["shape"], f"{field}.shape", concrete), \
            self.dtype(v["dtype"], f"{field}.dtype")


def _short(v):
    text = repr(v)
    return text if len(text) <= 80 else text[:77] + "..."


def check_manifest(artifact):
    """Check the manifest of ``artifact`` (a ``runtime.artifact.Artifact``) field by field.

    Covers the backend, target, feeds, fetches and their structure, variables, the latest
    signature and, per signature: member names, feeds/fetches against the top level,
    variable and update indices, the buffer plan (every buffer inside the arena) and the
    code description (for LLVM steps the whole pointer-table layout: ``check_layout``).

    Raises:
        ArtifactError: the first field that is wrong, by its path (``signatures[0].buffers.
            arena_bytes``), with what was expected and found.
    """
    c = _Checker(artifact.where())
    m = artifact.manifest
    backend = m.get("backend")
    if backend not in ("numpy", "llvm"):
        c.fail("backend", "must be 'numpy' or 'llvm'", backend)
    if backend == "llvm":
        t = c.dict(m.get("target"), "target", ("triple", "cpu", "features"))
        for k in ("triple", "cpu", "features"):
            c.str(t[k], f"target.{k}")
    feeds = [c.tensor(f, f"feeds[{k}]", False)
             for k, f in enumerate(c.list(m.get("feeds"), "feeds"))]
    names = [f["name"] for f in m["feeds"]]
    if len(set(names)) != len(names):
        c.fail("feeds", "must have distinct names", names)
    fetches = c.dict(m.get("fetches"), "fetches", ("structure", "flat"))
    flat = c.list(fetches["flat"], "fetches.flat")
    for k, f in enumerate(flat):
        _fetch(c, f, f"fetches.flat[{k}]", False)
    _structure(c, fetches["structure"], len(flat), "fetches.structure")
    variables = [c.tensor(v, f"variables[{k}]")
                 for k, v in enumerate(c.list(m.get("variables"), "variables"))]
    sigs = artifact.signatures()
    c.list(sigs, "signatures")
    if not sigs:
        c.fail("signatures", "must not be empty", sigs)
    c.int(artifact.manifest.get("latest", 0), "latest", 0, len(sigs))
    for k, s in enumerate(sigs):
        _signature(c, artifact, s, f"signatures[{k}]", backend, feeds, len(flat), variables)
    flagged = {k for k, v in enumerate(m["variables"]) if v.get("updated")}
    if all("updated" in v for v in m["variables"]):
        written = {u for s in sigs for u in s["updates"]}
        if written != flagged:
            c.fail("signatures[*].updates", f"must write the variables flagged updated "
                                            f"{sorted(flagged)}", sorted(written))


def _fetch(c, f, field, concrete):
    c.dict(f, field, ("name",))
    c.str(f["name"], f"{field}.name")
    if not isinstance(f.get("op", ""), str):
        c.fail(f"{field}.op", "must be a string", f["op"])
    if f.get("value", True):
        return c.tensor(f, field, concrete)
    return None


def _structure(c, code, n, field, depth=0):
    """The fetch nest: every leaf an index into the flat fetches, known kinds only."""
    if depth > 64:
        c.fail(field, "nests deeper than 64", "...")
    if type(code) is int:
        c.int(code, field, 0, n)
        return
    c.list(code, field)
    kind = code[0] if code else None
    if kind in ("list", "tuple"):
        for k, v in enumerate(c.list(code[1:2] and code[1], f"{field}[1]")):
            _structure(c, v, n, f"{field}[1][{k}]", depth + 1)
    elif kind == "dict":
        c.list(code, field, 2)
        for k, item in enumerate(c.list(code[1], f"{field}[1]")):
            c.list(item, f"{field}[1][{k}]", 2)
            if not isinstance(item[0], (str, int, float, bool, type(None))):
                c.fail(f"{field}[1][{k}][0]", "must be a JSON scalar key", item[0])
            _structure(c, item[1], n, f"{field}[1][{k}][1]", depth + 1)
    elif kind == "namedtuple":
        c.list(code, field, 4)
        c.str(code[1], f"{field}[1]", _IDENTIFIER)
        fields = c.list(code[2], f"{field}[2]")
        for k, name in enumerate(fields):
            c.str(name, f"{field}[2][{k}]", _IDENTIFIER)
        items = c.list(code[3], f"{field}[3]", len(fields))
        for k, v in enumerate(items):
            _structure(c, v, n, f"{field}[3][{k}]", depth + 1)
    else:
        c.fail(f"{field}[0]", "must be 'list', 'tuple', 'dict' or 'namedtuple'", kind)


def _signature(c, artifact, s, field, backend, feeds, n_fetches, variables):
    c.dict(s, field, ("prefix", "feeds", "fetches", "variables", "updates", "buffers", "code"))
    prefix = s["prefix"]
    if not (prefix == "" and artifact.version == 1):
        c.str(prefix, f"{field}.prefix", _PREFIX)
    sig_feeds = c.list(s["feeds"], f"{field}.feeds", len(feeds))
    for k, (f, top) in enumerate(zip(sig_feeds, artifact.manifest["feeds"])):
        shape, dtype = c.tensor(f, f"{field}.feeds[{k}]")
        if f["name"] != top["name"] or dtype != np.dtype(top["dtype"]) or len(shape) != len(
                top["shape"]) or any(t is not None and t != d for t, d in zip(top["shape"],
                                                                               shape)):
            c.fail(f"{field}.feeds[{k}]", f"must be feed '{top['name']}' {top['shape']} "
                                          f"{top['dtype']}", f)
    sig_fetches = c.list(s["fetches"], f"{field}.fetches", n_fetches)
    fetch_types = [_fetch(c, f, f"{field}.fetches[{k}]", True)
                   for k, f in enumerate(sig_fetches)]
    taken = c.list(s["variables"], f"{field}.variables")
    for k, v in enumerate(taken):
        c.int(v, f"{field}.variables[{k}]", 0, len(variables))
    if len(set(taken)) != len(taken):
        c.fail(f"{field}.variables", "must not repeat a variable", taken)
    updates = c.list(s["updates"], f"{field}.updates")
    for k, v in enumerate(updates):
        c.int(v, f"{field}.updates[{k}]", 0, len(variables))
        if v not in taken:
            c.fail(f"{field}.updates[{k}]", "must be a variable the code takes", v)
    if len(set(updates)) != len(updates):
        c.fail(f"{field}.updates", "must not repeat a variable", updates)
    arena = _buffers(c, s["buffers"], f"{field}.buffers")
    code = c.dict(s["code"], f"{field}.code")
    members = artifact.members
    if backend == "numpy":
        from .artifact import CONSTS, SOURCE
        for name in (SOURCE, CONSTS):
            if prefix + name not in members:
                c.fail(f"{field}.prefix", f"names no member {prefix + name}", prefix)
        c.int(code.get("consts", 0), f"{field}.code.consts", 0, 1 << 24)
        returns = _numpy_returns(artifact.members[prefix + SOURCE])
        if returns is not None and returns != (n_fetches, len(updates)):
            c.fail(f"{field}.fetches/updates", f"must match the {returns[0]} fetches and "
                                               f"{returns[1]} updates the code returns",
                   (n_fetches, len(updates)))
        sites = c.list(code.get("sites", []), f"{field}.code.sites")
        for k, site in enumerate(sites):
            c.dict(site, f"{field}.code.sites[{k}]")
    else:
        from .artifact import CONSTS, LLVM_IR, OBJECT
        for name in (OBJECT, LLVM_IR, CONSTS):
            if prefix + name not in members:
                c.fail(f"{field}.prefix", f"names no member {prefix + name}", prefix)
        c.str(code.get("entry"), f"{field}.code.entry", _IDENTIFIER)
        for k in ("opt", "codegen_opt"):
            c.int(code.get(k, 2), f"{field}.code.{k}", 0, 4)
        if code.get("library") is not None:
            _library(c, code["library"], f"{field}.code.library", prefix, code["entry"],
                     members)
        check_layout(c, code.get("layout"), f"{field}.code.layout", sig_feeds, fetch_types,
                     [variables[v] for v in taken], taken, updates, arena)


def _library(c, library, field, prefix, entry, members):
    """``code.library``: {"member": the signature's ``code/step.so``, "exports": the entry
    and, with "pool" (the pool code's SHA-256), the pool's entry points}. The pool's names
    are not compared with this graphc's (``parallel.ENTRY_POINTS``): a file from a graphc
    whose pool differs still loads, taking the pool only when its digest and names match
    this process's (``loaded_step._opened_library``)."""
    from .artifact import LIBRARY
    c.dict(library, field, ("member", "exports"))
    if library["member"] != prefix + LIBRARY or library["member"] not in members:
        c.fail(f"{field}.member", f"must be the member {prefix + LIBRARY}", library["member"])
    exports = c.list(library["exports"], f"{field}.exports")
    for k, name in enumerate(exports):
        c.str(name, f"{field}.exports[{k}]", _IDENTIFIER)
    pool = library.get("pool")
    if pool is not None:
        c.str(pool, f"{field}.pool", _SHA256)
    if entry not in exports or len(set(exports)) != len(exports) or (
            pool is None and len(exports) != 1):
        c.fail(f"{field}.exports", f"must be the entry '{entry}' once, and the thread "
                                   f"pool's names only with a pool", exports)


def _numpy_returns(source):
    """(fetches, updates) the generated NumPy step returns, read from its source text with
    ``ast`` (nothing runs); None when the source is not laid out as the emitter writes it."""
    import ast
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "make_step":
            inner = [f for f in node.body if isinstance(f, ast.FunctionDef)]
            returns = [r for r in ast.walk(inner[0]) if isinstance(r, ast.Return)] \
                if len(inner) == 1 else []
            if len(returns) == 1 and isinstance(returns[0].value, ast.Tuple) and \
                    len(returns[0].value.elts) == 2 and \
                    all(isinstance(e, ast.Tuple) for e in returns[0].value.elts):
                fetched, updates = returns[0].value.elts
                return len(fetched.elts), len(updates.elts)
    return None


def _buffers(c, b, field):
    """The NumPy/LLVM buffer plan: every buffer inside the arena. Returns the arena size."""
    c.dict(b, field, ("arena_bytes",))
    arena = c.int(b["arena_bytes"], f"{field}.arena_bytes", 0, MAX_ARENA_BYTES)
    align = c.int(b.get("alignment", 64), f"{field}.alignment", 1, 1 << 13)
    if align & (align - 1):
        c.fail(f"{field}.alignment", "must be a power of two", align)
    if not b.get("planned"):
        return 0
    for k, r in enumerate(c.list(b.get("offsets", []), f"{field}.offsets")):
        c.dict(r, f"{field}.offsets[{k}]", ("offset", "bytes"))
        off = c.int(r["offset"], f"{field}.offsets[{k}].offset", 0, MAX_ARENA_BYTES)
        nbytes = c.int(r["bytes"], f"{field}.offsets[{k}].bytes", 0, MAX_ARENA_BYTES)
        if off + nbytes > arena:
            c.fail(f"{field}.offsets[{k}]", f"must lie inside the {arena}-byte arena",
                   f"[{off}, {off + nbytes})")
    return arena


def check_layout(c, fields, field, feeds, fetch_types, variables, taken, updates, arena):
    """The LLVM step's pointer-table layout (JSON, as ``encode_layout`` wrote it), against
    the signature: slots distinct and inside the table, feed/variable/output slots of the
    signature's shapes and dtypes, an arena at least as large as the plan, every index
    (fetch outputs, updates, snapshots, checks, numerics sites) inside what it indexes."""
    c.dict(fields, field, ("entry", "n_slots", "feeds", "variables", "outputs",
                           "fetch_outputs", "updated", "arena"))
    n_slots = c.int(fields["n_slots"], f"{field}.n_slots", 1, MAX_SLOTS)
    used = {}
    sizes = {}

    def slot(v, where, nbytes=None):
        c.int(v, where, 0, n_slots)
        if v in used:
            c.fail(where, f"repeats table slot {v} (also {used[v]})", v)
        used[v] = where
        sizes[v] = nbytes
        return v

    def array_slot(v, where, shape=None, dtype=None):
        body = c.dict(_unwrap(c, v, "Slot", where), where, ("index", "shape", "dtype"))
        got_shape = c.shape(_untuple(c, body["shape"], f"{where}.shape"), f"{where}.shape")
        got_dtype = c.dtype(body["dtype"], f"{where}.dtype")
        if shape is not None and (got_shape != tuple(shape) or got_dtype != dtype):
            c.fail(where, f"must be {dtype.name}{list(shape)}",
                   f"{got_dtype.name}{list(got_shape)}")
        slot(body["index"], f"{where}.index",
             int(np.prod(got_shape, dtype=np.int64)) * got_dtype.itemsize)
        return got_shape, got_dtype

    for k, f in enumerate(c.list(fields["feeds"], f"{field}.feeds", len(feeds))):
        array_slot(f, f"{field}.feeds[{k}]", tuple(feeds[k]["shape"]),
                   np.dtype(feeds[k]["dtype"]))
    for k, v in enumerate(c.list(fields["variables"], f"{field}.variables", len(variables))):
        array_slot(v, f"{field}.variables[{k}]", *variables[k])
    outputs = [array_slot(o, f"{field}.outputs[{k}]")
               for k, o in enumerate(c.list(fields["outputs"], f"{field}.outputs"))]
    fetch_outputs = c.list(fields["fetch_outputs"], f"{field}.fetch_outputs",
                           len(fetch_types))
    for k, (o, want) in enumerate(zip(fetch_outputs, fetch_types)):
        if o is None:
            continue
        c.int(o, f"{field}.fetch_outputs[{k}]", 0, len(outputs))
        if want is not None and outputs[o] != (want[0], want[1]):
            c.fail(f"{field}.fetch_outputs[{k}]", f"must name an output of "
                                                  f"{want[1].name}{list(want[0])}", o)
    updated = c.list(fields["updated"], f"{field}.updated", len(updates))
    for k, u in enumerate(updated):
        c.int(u, f"{field}.updated[{k}]", 0, len(variables))
        if taken[u] != updates[k]:
            c.fail(f"{field}.updated[{k}]", f"must be the position of variable {updates[k]}",
                   u)
    for k, u in enumerate(c.list(fields.get("snapshot", []), f"{field}.snapshot")):
        c.int(u, f"{field}.snapshot[{k}]", 0, len(variables))
    for k, item in enumerate(c.list(fields.get("consts", []), f"{field}.consts")):
        pair = c.list(_untuple(c, item, f"{field}.consts[{k}]"), f"{field}.consts[{k}]", 2)
        slot(pair[0], f"{field}.consts[{k}][0]")
        c.dict(pair[1], f"{field}.consts[{k}][1]", ("array",))
        c.str(pair[1]["array"], f"{field}.consts[{k}][1].array")
    a_slot, a_bytes = c.list(_untuple(c, fields["arena"], f"{field}.arena"),
                             f"{field}.arena", 2)
    c.int(a_bytes, f"{field}.arena[1]", 0, MAX_ARENA_BYTES)
    if a_bytes < arena:
        c.fail(f"{field}.arena[1]", f"must hold the planned {arena}-byte arena", a_bytes)
    if a_slot is not None:
        slot(a_slot, f"{field}.arena[0]", max(a_bytes, 64))
    if fields.get("status") is not None:
        slot(fields["status"], f"{field}.status", 32)
    names = c.list(fields.get("node_names", []), f"{field}.node_names")
    for k, n in enumerate(names):
        c.str(n, f"{field}.node_names[{k}]")
    for k, item in enumerate(c.list(fields.get("index_checks", []), f"{field}.index_checks")):
        pair = c.list(item, f"{field}.index_checks[{k}]", 2)
        c.int(pair[0], f"{field}.index_checks[{k}][0]", 0, max(len(names), 1))
        _index_check(c, pair[1], f"{field}.index_checks[{k}][1]")
    r_slot, seeds = c.list(_untuple(c, fields.get("rng", {"tuple": [None, {"tuple": []}]}),
                                    f"{field}.rng"), f"{field}.rng", 2)
    seeds = c.list(_untuple(c, seeds, f"{field}.rng[1]"), f"{field}.rng[1]")
    for k, s in enumerate(seeds):
        if s is not None:
            c.int(s, f"{field}.rng[1][{k}]", -(1 << 63), 1 << 64)
    if r_slot is not None:
        slot(r_slot, f"{field}.rng[0]", 8 * (len(seeds) + 1))
    for k, item in enumerate(c.list(fields.get("blas", []), f"{field}.blas")):
        b_slot, dtype, bits = c.list(_untuple(c, item, f"{field}.blas[{k}]"),
                                     f"{field}.blas[{k}]", 3)
        slot(b_slot, f"{field}.blas[{k}][0]")
        if dtype not in ("float32", "float64") or bits not in (32, 64):
            c.fail(f"{field}.blas[{k}]", "must be (slot, float32|float64, 32|64)", item)
    p_slot, labels = c.list(_untuple(c, fields.get("profile", {"tuple": [None, {"tuple": []}]}),
                                     f"{field}.profile"), f"{field}.profile", 2)
    labels = c.list(_untuple(c, labels, f"{field}.profile[1]"), f"{field}.profile[1]")
    if p_slot is not None:
        slot(p_slot, f"{field}.profile[0]", 8 * max(len(labels), 1))
    for k, item in enumerate(c.list(fields.get("callbacks", []), f"{field}.callbacks")):
        cb_slot, name = c.list(_untuple(c, item, f"{field}.callbacks[{k}]"),
                               f"{field}.callbacks[{k}]", 2)
        slot(cb_slot, f"{field}.callbacks[{k}][0]")
        c.str(name, f"{field}.callbacks[{k}][1]", _IDENTIFIER)
    for k, site in enumerate(c.list(fields.get("numerics", []), f"{field}.numerics")):
        _numerics_site(c, site, f"{field}.numerics[{k}]", sizes)
    if len(used) != n_slots:
        c.fail(f"{field}.n_slots", f"must equal the {len(used)} slots the layout fills",
               n_slots)


def _numerics_site(c, site, where, sizes):
    body = c.dict(_unwrap(c, site, "NumericsSite", where), where, ("slot", "offset", "shape",
                                                                   "dtype"))
    s = c.int(body["slot"], f"{where}.slot", 0, MAX_SLOTS)
    off = c.int(body["offset"], f"{where}.offset", 0, MAX_ARENA_BYTES)
    shape = c.shape(_untuple(c, body["shape"], f"{where}.shape"), f"{where}.shape")
    dtype = c.dtype(body["dtype"], f"{where}.dtype")
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if sizes.get(s) is None or off + nbytes > sizes[s]:
        c.fail(where, f"must read inside slot {s} ({sizes.get(s)} bytes)",
               f"[{off}, {off + nbytes})")


def _index_check(c, v, where):
    from .step_errors import IndexCheck
    try:
        IndexCheck.from_json(v)
    except Exception:  # noqa: BLE001  (whatever a malformed record raises)
        c.fail(where, "must be an index check record", v)


def _unwrap(c, v, kind, where):
    if not isinstance(v, dict) or set(v) != {kind}:
        c.fail(where, f"must be a {kind} record", v)
    return v[kind]


def _untuple(c, v, where):
    if isinstance(v, dict):
        if set(v) != {"tuple"} or not isinstance(v["tuple"], list):
            c.fail(where, "must be a tuple record", v)
        return v["tuple"]
    return v
