"""Structure-aware mutations of saved steps, resealed as an attacker would, and a loader that
survives the ones that crash.

``mutations(manifest, n, seed)`` edits one field of the manifest at a time (numbers to 0, -1,
+-1, x2, /2, 2**31, 2**63; strings emptied or swapped for another field's; lists shortened,
lengthened, reversed, emptied; keys dropped or added; types changed) and a few members
(variables, constants and random state of other shapes). ``reseal`` writes the file with
every checksum recomputed, so only the loader's own checks stand between the file and the
code. ``run_all`` loads each file (and calls the step on zeros) in a worker process; a
worker that dies by a signal marks that file as a crash and a new worker goes on with the
next one.

Used by tests/runtime/test_security_artifacts.py and benchmarks/fuzz_artifacts.py.
"""
import copy
import io
import json
import os
import random
import subprocess
import sys
import zipfile

import numpy as np

WORKER = r"""
import sys, os, glob, traceback
import numpy as np
from graphc.errors import GraphcError
from graphc.runtime import load
files = sorted(glob.glob(os.path.join(sys.argv[1], "*.gcx")))[int(sys.argv[2]):]
for path in files:
    name = os.path.basename(path)
    print("BEGIN", name, flush=True)
    try:
        step = load(path)
    except GraphcError as exc:
        print("END", name, "refused", type(exc).__name__, flush=True)
        continue
    except BaseException as exc:
        print("END", name, "raw", type(exc).__name__, str(exc)[:200].replace("\n", " "),
              flush=True)
        continue
    try:
        for sig in step.signatures:
            feeds = {f["name"]: np.ones(f["shape"], f["dtype"]) if f["dtype"].startswith("f")
                     else np.zeros(f["shape"], f["dtype"]) for f in sig.feeds}
            step(feeds)
        print("END", name, "ran", flush=True)
    except GraphcError as exc:
        print("END", name, "run-error", type(exc).__name__, flush=True)
    except BaseException as exc:
        print("END", name, "raw-run", type(exc).__name__, str(exc)[:200].replace("\n", " "),
              flush=True)
"""

_INTS = (0, -1, 1, 2, 63, 64, 2 ** 31, 2 ** 63, -2 ** 63)


def _paths(value, path=()):
    """Every (path, value) inside a JSON value, containers included."""
    yield path, value
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, path + (k,))
    elif isinstance(value, list):
        for k, v in enumerate(value):
            yield from _paths(v, path + (k,))


def _set(root, path, value):
    node = root
    for p in path[:-1]:
        node = node[p]
    if value is _DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value


_DELETE = object()


def _candidates(value, strings, rng):
    """(label, replacement) edits of one value."""
    out = [("null", None), ("delete", _DELETE)]
    if isinstance(value, bool):
        out += [("flip", not value), ("int", int(value) + 2)]
    elif isinstance(value, int):
        out += [(f"{value}->{v}", v) for v in
                {0, -1, value + 1, value - 1, value * 2, value // 2, rng.choice(_INTS)}
                if v != value]
        out += [("str", str(value)), ("float", value + 0.5), ("list", [value])]
    elif isinstance(value, float):
        out += [("nan", float("nan")), ("int", int(value)), ("neg", -value)]
    elif isinstance(value, str):
        out += [("empty", ""), ("other", rng.choice(strings)), ("long", value * 50 + "x"),
                ("quotes", value + '"""\n\\' + "\u00e9"), ("int", 7)]
    elif isinstance(value, list):
        out += [("empty", [])]
        if value:
            out += [("drop-last", value[:-1]), ("dup-first", [value[0]] + value),
                    ("reverse", value[::-1]), ("str", "x")]
    elif isinstance(value, dict):
        out += [("list", list(value.values())), ("add-key", dict(value, zz=1))]
        if value:
            k = rng.choice(sorted(value))
            out += [(f"drop-{k}", {a: b for a, b in value.items() if a != k})]
    return out


def mutations(manifest, n, seed=0):
    """``n`` one-field edits of ``manifest`` (skipping the member table, which resealing
    recomputes): [(description, edited manifest)]."""
    rng = random.Random(seed)
    paths = [(p, v) for p, v in _paths(manifest) if p and p[0] != "members"]
    strings = sorted({v for _, v in paths if isinstance(v, str)})
    every = [(p, label, new) for p, v in paths for label, new in _candidates(v, strings, rng)]
    rng.shuffle(every)
    out = []
    for p, label, new in every[:n]:
        m = copy.deepcopy(manifest)
        try:
            _set(m, p, new)
        except (KeyError, IndexError, TypeError):
            continue
        out.append(("/".join(map(str, p)) + ": " + label, m))
    return out


def member_mutations(members):
    """Edits of members: arrays of other shapes and dtypes, missing arrays, random state."""
    out = []
    for name, data in sorted(members.items()):
        if name.endswith(".npz"):
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            for k in sorted(arrays):
                for label, new in (("shrink", arrays[k].reshape(-1)[:1]),
                                   ("float64", arrays[k].astype(np.float64)),
                                   ("drop", None)):
                    edited = {a: b for a, b in arrays.items() if a != k or new is not None}
                    if new is not None:
                        edited[k] = new
                    buf = io.BytesIO()
                    np.savez(buf, **edited)
                    out.append((f"{name}:{k}: {label}", {name: buf.getvalue()}))
        elif name.endswith("rng.json"):
            for label, new in (("empty", {}), ("signatures-empty", {"signatures": []}),
                               ("negative", {"signatures": [{"kind": "native", "state": [-1]}]}),
                               ("bad-generator", {"signatures": [
                                   {"kind": "numpy", "states": [{"bit_generator": "os"}]}]})):
                out.append((f"{name}: {label}", {name: json.dumps(new).encode()}))
    return out


def read_zip(path):
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist() if n not in ("manifest.json",
                                                                     "manifest.hmac")}
        manifest = json.loads(z.read("manifest.json"))
    return manifest, members


def reseal(path, manifest, members):
    """Write ``members`` and ``manifest`` with every checksum recomputed (no MAC)."""
    import hashlib
    m = dict(manifest)
    m["members"] = {name: {"sha256": hashlib.sha256(d).hexdigest(), "bytes": len(d)}
                    for name, d in members.items()}
    with zipfile.ZipFile(path, "w") as z:
        for name, data in sorted(members.items()):
            z.writestr(name, data)
        z.writestr("manifest.json", json.dumps(m, indent=1))


def write_mutants(source, folder, n, seed=0):
    """Write ``n`` manifest mutants and every member mutant of ``source`` into ``folder``;
    returns {file name: description}."""
    manifest, members = read_zip(source)
    os.makedirs(folder, exist_ok=True)
    described = {}
    for k, (what, m) in enumerate(mutations(manifest, n, seed)):
        name = f"m{k:05d}.gcx"
        reseal(os.path.join(folder, name), m, members)
        described[name] = what
    for k, (what, changed) in enumerate(member_mutations(members)):
        name = f"x{k:05d}.gcx"
        reseal(os.path.join(folder, name), manifest, {**members, **changed})
        described[name] = what
    return described


def run_all(folder, timeout=600, env=None):
    """Load (and run) every ``.gcx`` in ``folder`` in worker processes.

    Returns:
        {file name: (outcome, detail)}: outcome "refused" (a graphc error at load), "ran",
        "run-error" (a graphc error when called), "raw"/"raw-run" (another Python
        exception), "crash" (the worker died: detail is its exit status).
        ``env``: the workers' environment (another graphc on PYTHONPATH, say).
    """
    names = sorted(f for f in os.listdir(folder) if f.endswith(".gcx"))
    results, start = {}, 0
    while start < len(names):
        proc = subprocess.run([sys.executable, "-c", WORKER, folder, str(start)],
                              capture_output=True, text=True, timeout=timeout, env=env)
        current = None
        for line in proc.stdout.splitlines():
            parts = line.split(" ", 3)
            if parts[0] == "BEGIN":
                current = parts[1]
            elif parts[0] == "END":
                results[parts[1]] = (parts[2], " ".join(parts[3:]))
                current = None
        if current is not None:  # died inside this file
            results[current] = ("crash", f"exit status {proc.returncode}: "
                                         + proc.stderr.strip()[-200:])
        start = len(results)
        if proc.returncode == 0 and current is None:
            break
    return results


def summary(results):
    """{outcome: count}."""
    counts = {}
    for outcome, _ in results.values():
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts
