"""``graphc run`` and ``graphc inspect``: saved steps from the shell, without the compiler.

Both use only ``graphc.runtime`` (and numpy): they work where only the runtime is installed.
"""
import statistics
import sys
import time

import numpy as np

from ..errors import FeedError


# -- graphc run ----------------------------------------------------------------------------------
def configure_run(parser):
    parser.add_argument("artifact", metavar="STEP.gcx", help="a step saved by graphc compile "
                                                             "or step.save(path)")
    parser.add_argument("--feed", action="append", default=[], metavar="NAME=FILE.npy",
                        help="one feed from a .npy file (repeat per feed)")
    parser.add_argument("--feeds", metavar="FILE.npz",
                        help="every feed from one .npz, by array name (--feed wins)")
    parser.add_argument("--steps", type=int, default=1,
                        help="how many steps to run on these feeds (default 1)")
    parser.add_argument("--save", metavar="OUT.gcx",
                        help="save the step afterwards (its trained variables included)")
    parser.add_argument("--recompile", action="store_true",
                        help="object code built for another CPU of this kind: compile its "
                             "stored LLVM IR for this one instead of refusing")


def read_feeds(items, npz=None):
    """{name: array} from ``NAME=FILE.npy`` items and an optional ``.npz`` of named arrays.

    Raises:
        FeedError: a malformed item or a file NumPy cannot read.
    """
    feeds = {}
    try:
        if npz:
            with np.load(npz, allow_pickle=False) as z:
                feeds.update({k: z[k] for k in z.files})
        for item in items:
            name, sep, path = item.partition("=")
            if not sep or not name or not path:
                raise FeedError(f"--feed {item!r}: expected NAME=FILE.npy")
            feeds[name] = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise FeedError(f"cannot read a feed: {exc}") from None
    return feeds


def run_run(args, out=None):
    from ..runtime import load
    out = out or sys.stdout
    if args.steps < 1:
        raise SystemExit("graphc run: --steps must be >= 1")
    step = load(args.artifact, recompile=args.recompile)
    feeds = read_feeds(args.feed, args.feeds)
    times = []
    for k in range(args.steps):
        t0 = time.perf_counter()
        result = step(feeds)
        times.append(time.perf_counter() - t0)
        out.write(f"step {k + 1}: " + "  ".join(f"{name}={format_value(v)}"
                                                for name, v in flat_items(result)) + "\n")
    sig = step.last_signature  # picked by the feeds' shapes
    which = f", signature [{sig.index}] {sig.describe()}" if len(step.signatures) > 1 else ""
    out.write(f"ran {args.steps} step(s) of {args.artifact} ({step.backend}{which}): median "
              f"{statistics.median(times) * 1e3:.3f} ms per step\n")
    if args.save:
        size = step.save(args.save)
        out.write(f"saved to {args.save} ({size} bytes)\n")
    return 0


def flat_items(value, prefix=""):
    """[(path, leaf)] of a fetch nest: dict keys and list positions joined by dots."""
    if isinstance(value, dict):
        return [item for k, v in value.items()
                for item in flat_items(v, f"{prefix}.{k}" if prefix else str(k))]
    if isinstance(value, (list, tuple)):
        return [item for i, v in enumerate(value)
                for item in flat_items(v, f"{prefix}[{i}]" if prefix else f"[{i}]")]
    return [(prefix or "value", value)]


def format_value(v):
    """A fetched value in a few characters: numbers in full, big arrays summarized."""
    if v is None:
        return "None"
    a = np.asarray(v)
    if a.ndim == 0:
        return f"{a.item():.6g}" if a.dtype.kind == "f" else str(a.item())
    if a.size <= 8:
        return np.array2string(a, separator=",", precision=6).replace("\n", "")
    kind = f"{a.dtype.name}{list(a.shape)}".replace(" ", "")
    if a.dtype.kind in "fiu":
        return f"{kind}(mean {a.mean():.6g}, min {a.min():.6g}, max {a.max():.6g})"
    return kind


# -- graphc inspect ------------------------------------------------------------------------------
def configure_inspect(parser):
    parser.add_argument("artifact", metavar="STEP.gcx", help="a saved step")
    parser.add_argument("--no-ir", action="store_true", help="leave out the IR")
    parser.add_argument("--json", action="store_true", help="print the manifest as JSON only")
    parser.add_argument("--key-env", metavar="VAR", default="GRAPHC_ARTIFACT_KEY",
                        help="check the file's signature with the key in this environment "
                             "variable (default GRAPHC_ARTIFACT_KEY); an unsigned or "
                             "wrongly signed file is still shown, never run")
    parser.add_argument("--signature", type=int, metavar="K",
                        help="the signature whose buffers, passes and IR are shown (default: "
                             "the one compiled last)")


def run_inspect(args, out=None):
    """Show a saved step. Runs and maps none of its code: the manifest, the IR text and the
    variables (``.npz``, no pickles) are read as data; the manifest is checked field by field
    first (``runtime.manifest_check``), as ``gc.load`` checks it."""
    import json
    import os
    from ..errors import ArtifactError
    from ..runtime.artifact import IR, VARIABLES, read, signature_status
    from ..runtime.manifest_check import check_manifest
    out = out or sys.stdout
    art = read(args.artifact, key=False)  # shown, never run: a signature is reported below
    m = art.manifest
    if args.json:
        out.write(json.dumps(m, indent=1, sort_keys=True) + "\n")
        return 0
    check_manifest(art)
    signed = signature_status(args.artifact,
                              os.environ.get(getattr(args, "key_env", None) or "") or None)
    try:
        return _show(args, art, m, signed, out)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise ArtifactError(f"'{args.artifact}': cannot show a manifest field: "
                            f"{type(exc).__name__}: {exc}") from None


def _show(args, art, m, signed, out):
    from ..runtime.artifact import IR, VARIABLES
    values = art.arrays(VARIABLES)
    sigs = art.signatures()
    k = art.latest() if args.signature is None else args.signature
    if not 0 <= k < len(sigs):
        raise SystemExit(f"graphc inspect: --signature {k}: {args.artifact} has signatures "
                         f"0..{len(sigs) - 1}")
    sig = sigs[k]
    sections = [_header(args.artifact, m, sig) + _library(art, sig) + f"  signature {signed}\n",
                _members(m), _feeds(m),
                _signatures(sigs, art.latest(), k), _fetches(m), _variables(m, values),
                _buffers(sig), _passes(sig)]
    out.write("\n".join(s for s in sections if s))
    if not args.no_ir:
        out.write(f"\nIR of signature [{k}] (final, after the passes):\n"
                  + art.text(sig["prefix"] + IR))
    return 0


def _signatures(sigs, latest, shown):
    """One line per saved signature: its feeds' shapes and program hash."""
    rows = []
    for k, s in enumerate(sigs):
        feeds = ", ".join(f"{f['name']}: {f['type']}" for f in s["feeds"])
        notes = [n for n, on in (("latest", k == latest), ("shown below", k == shown)) if on]
        rows.append(f"  [{k}] {feeds:<40} sha256 {s.get('program_sha256', '?')[:16]}"
                    + (f"  ({', '.join(notes)})" if notes else "") + "\n")
    return (f"signatures ({len(sigs)}; a call runs the one whose feed shapes match, sharing "
            f"the variables):\n" + "".join(rows))


def _header(path, m, sig):
    who = m.get("written_by", {})
    lines = [f"{path}: graphc artifact, format {m['format_version']}, written by graphc "
             f"{m.get('graphc_version', '?')} (" + ", ".join(f"{k} {v}" for k, v in
                                                              sorted(who.items())) + ")",
             f"  backend   {m['backend']}{'' if m.get('optimized', True) else ' (unoptimized)'}"
             f", step '{m.get('name', 'step')}'",
             f"  program   sha256 {sig.get('program_sha256', '?')}"]
    t = m.get("target")
    if t:
        lines.append(f"  target    {t['triple']}, CPU '{t['cpu']}', "
                     f"{len([f for f in t['features'].split(',') if f.startswith('+')])} "
                     f"features on; {_runs_here(t)}")
    else:
        lines.append("  target    any (Python source: runs wherever NumPy does)")
    return "\n".join(lines) + "\n"


def _library(art, sig):
    """How the shown signature's native code loads: its shared library when it is a plain
    one (``runtime.shared_object.why_not_plain``, read as bytes: nothing is opened), else
    its object code through MCJIT."""
    library = sig.get("code", {}).get("library") if art.manifest["backend"] == "llvm" else None
    if not library:
        return "  code      object code (loaded into LLVM's MCJIT)\n" \
            if art.manifest["backend"] == "llvm" else ""
    from ..runtime.shared_object import why_not_plain
    data = art.members.get(library.get("member"), b"")
    problem = why_not_plain(data)
    pool = " and the thread pool" if library.get("pool") else ""
    if problem is None:
        return (f"  code      {library['member']}, a plain shared library of the step{pool}:"
                f" loads without LLVM\n")
    return (f"  code      {library['member']} is NOT a plain shared library ({problem}): "
            f"the object code loads through MCJIT\n")


def _runs_here(target):
    try:
        from ..runtime import jit
        from ..runtime.loaded_step import check_target
    except ImportError:
        return "llvmlite is not installed here"
    problem = check_target(target, jit.host_target())
    return "runs on this machine" if problem is None else \
        "NOT for this machine: " + "; ".join([problem[0]] + problem[1])


def _members(m):
    rows = sorted(m["members"].items())
    total = sum(info["bytes"] for _, info in rows)
    return f"members ({total} bytes, sha256 checked):\n" + "".join(
        f"  {name:<22} {info['bytes']:>10} bytes  {info['sha256'][:16]}\n" for name, info in rows)


def _feeds(m):
    return "feeds (? marks a dim that differs between signatures):\n" + "".join(f"  {f['name']:<16} {f['type']:<16} {f.get('loc', '')}\n"
                                for f in m["feeds"])


def _fetches(m):
    rows = []
    for k, f in enumerate(m["fetches"]["flat"]):
        kind = f.get("type", "(no value)") if f.get("value", True) else "(no value)"
        rows.append(f"  [{k}] {f['name']:<20} {kind:<16} {f.get('op', '')}\n")
    return f"fetches (structure {m['fetches']['structure']}):\n" + "".join(rows)


def _variables(m, values):
    rows, total = [], 0
    for k, v in enumerate(m["variables"]):
        a = values.get(f"v{k}")
        total += 0 if a is None else a.nbytes
        summary = "" if a is None or a.dtype.kind not in "fiu" or not a.size else \
            f"mean {a.mean():+.4g}  std {a.std():.4g}"
        rows.append(f"  {v['name']:<24} {v['type']:<16} {'updated' if v.get('updated') else '':<8}"
                    f"{summary}\n")
    return f"variables ({len(rows)}, {total} bytes):\n" + "".join(rows)


def _buffers(sig):
    b = sig["buffers"]
    if not b.get("planned"):
        return "buffer layout: none (unplanned: one array per value)\n"
    head = (f"buffer layout: arena {b['arena_bytes']} bytes (alignment {b['alignment']}), "
            f"planned peak {b.get('peak_bytes')} bytes, naive {b.get('naive_bytes')} bytes, "
            f"{len(b.get('offsets', []))} buffers\n")
    return head + "".join(f"  [{r['offset']:>9}, +{r['bytes']:>8})  {r['type']:<16} "
                          f"{r['op']} '{r['node']}'\n" for r in b.get("offsets", []))


def _passes(sig):
    s = sig.get("stats") or {}
    if not s.get("passes"):
        return ""
    rows = "".join(f"  {p['name']:<10} {p['nodes_before']:>5} -> {p['nodes_after']:<5} "
                   + ", ".join(f"{k}={v}" for k, v in p["changes"].items()) + "\n"
                   for p in s["passes"])
    return (f"passes: nodes {s.get('nodes_before')} -> {s.get('nodes_after')}, "
            f"{s.get('fused_groups')} fused groups, {s.get('inplace_ops')} in place\n" + rows)

