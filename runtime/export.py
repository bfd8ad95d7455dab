"""A NumPy-backend step as one standalone Python module that imports only numpy.

``write_module(artifact, path)`` writes, in this order: a docstring saying how to call it, the
generated step module exactly as the compiler emitted it (``make_step``), the state as data
(constants and variable values in a base64 ``.npz`` blob, random generators' states as
literals), and a small ``step(feed_dict=None, **feeds)`` that validates feeds, runs the
generated function and updates ``variables`` in place. Importing the module and calling
``step`` trains bit for bit as the compiled step would from the state it was exported in.

Used by ``CompiledStep.export_python`` and ``LoadedStep.export_python``; needs no compiler.
"""
import ast
import base64
import os

from graphc.errors import ArtifactError

from .artifact import CONSTS, RNG, SOURCE, VARIABLES, graphc_version, pack_arrays
from .source_text import comment_text

_WRAPPER = '''

# ---- graphc export: the step's state, and the function to call ---------------------------
import base64 as _base64
import io as _io

FEEDS = {feeds}
VARIABLE_NAMES = {variables}
_UPDATED = {updated}
_FETCHES = {structure}
_HAS_VALUE = {has_value}
_ARENA = {arena}  # (bytes, alignment) of the planned buffer arena, or None
_RNG_STATES = {rng_states}
_DATA = (
{blob})


def _load_arrays():
    with np.load(_io.BytesIO(_base64.b64decode("".join(_DATA))), allow_pickle=False) as z:
        return {{k: z[k] for k in z.files}}


def _generator(state):
    bits = getattr(np.random, state["bit_generator"])()
    bits.state = state
    return np.random.Generator(bits)


def _aligned_zeros(nbytes, alignment):
    raw = np.zeros(nbytes + alignment, np.uint8)
    shift = (-raw.ctypes.data) % alignment
    return raw[shift:shift + nbytes]


def _rebuild(code, values):
    if isinstance(code, int):
        return values[code]
    if code[0] == "dict":
        return {{k: _rebuild(v, values) for k, v in code[1]}}
    if code[0] == "namedtuple":
        import collections
        return collections.namedtuple(code[1], code[2])(*[_rebuild(v, values) for v in code[3]])
    items = [_rebuild(v, values) for v in code[1]]
    return tuple(items) if code[0] == "tuple" else items


_arrays = _load_arrays()
variables = {{name: _arrays["v%d" % k] for k, name in enumerate(VARIABLE_NAMES)}}
_variables = [variables[name] for name in VARIABLE_NAMES]
_step = make_step([_arrays["c%d" % k] for k in range({n_consts})],
                  None if _ARENA is None else _aligned_zeros(*_ARENA),
                  [_generator(s) for s in _RNG_STATES])
del _arrays


def step(feed_dict=None, **feeds):
    """Run one training step; returns the fetches in their structure.

    Feed by name (``step(x=...)`` or ``step({{"x": ...}})``); every name in ``FEEDS`` with its
    exact shape. ``variables`` are updated in place.
    """
    given = dict(feed_dict or {{}}, **feeds)
    unknown = sorted(set(given) - set(name for name, _, _ in FEEDS))
    if unknown:
        raise KeyError("not feeds of this step: %s (feeds: %s)"
                       % (", ".join(unknown), ", ".join(n for n, _, _ in FEEDS)))
    args = []
    for name, shape, dtype in FEEDS:
        if name not in given:
            raise KeyError("feed %r is missing (shape %s, %s)" % (name, shape, dtype))
        value = np.asarray(given[name])
        if value.shape != tuple(shape):
            raise ValueError("feed %r expects shape %s, got %s" % (name, shape, value.shape))
        if value.dtype.kind == "f" and np.dtype(dtype).kind != "f":
            raise TypeError("feed %r expects %s, got %s" % (name, dtype, value.dtype))
        args.append(np.ascontiguousarray(value, dtype=dtype))
    fetched, updates = _step(*args, *_variables)
    for k, new in zip(_UPDATED, updates):
        if new is not _variables[k]:
            np.copyto(_variables[k], new)
    values = []
    for x, has in zip(fetched, _HAS_VALUE):
        if has and isinstance(x, np.ndarray):
            if any(np.may_share_memory(x, a) for a in args + _variables):
                x = np.array(x)
            x = x if x.ndim else x[()]
        values.append(x if has else None)
    return _rebuild(_FETCHES, values)
'''

_DOC = '''"""{name}: a training step exported by graphc {version}; imports only numpy.

    import {module}
    result = {module}.step({call})
    {module}.variables            # {{name: array}}, updated in place by every call

Feeds:
{feeds}
Fetches: {fetches}
"""
'''


def write_module(artifact, path, signature=None):
    """Write the standalone module of a NumPy-backend artifact to ``path``.

    A module runs one feed signature (its feeds have that signature's exact shapes).

    Args:
        artifact: a ``runtime.artifact.Artifact`` (in memory or read from a file).
        path: the ``.py`` file to write.
        signature: the index of the signature to export; may be left out when the artifact
            has only one.
    Returns:
        The module's size in bytes.
    Raises:
        ArtifactError: the artifact holds object code (LLVM backend), has several signatures
            and ``signature`` is None or out of range, or its generated code defines a name
            the wrapper needs.
    Example:
        >>> write_module(read("step.gcx"), "mlp_step.py", signature=0)
    """
    m = artifact.manifest
    if m["backend"] != "numpy":
        raise ArtifactError(f"only NumPy-backend steps export as Python; this one is "
                            f"{m['backend']!r}", hint="compile with backend='numpy'")
    sig = _chosen(artifact, signature)
    source = artifact.text(sig["prefix"] + SOURCE)
    _check_names(source)
    module = os.path.splitext(os.path.basename(path))[0]
    text = _doc(m, sig, module) + source.rstrip() + "\n" + _wrapper(artifact, sig, signature)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return len(text.encode())


def _chosen(artifact, signature):
    sigs = artifact.signatures()
    if signature is None and len(sigs) == 1:
        return sigs[0]
    if signature is None or not 0 <= signature < len(sigs):
        shapes = [f"[{k}] " + ", ".join(f"{f['name']}: {f['type']}" for f in s["feeds"])
                  for k, s in enumerate(sigs)]
        what = "has" if signature is None else f"has no signature {signature}; it has"
        raise ArtifactError(f"{artifact.where()} {what} {len(sigs)} signatures and an exported "
                            "module runs one", shapes,
                            hint="choose one: export_python(path, signature=K)")
    return sigs[signature]


def _doc(m, sig, module):
    """The module docstring. Names come from the user or the manifest: each goes through
    ``comment_text``, so none can end the docstring (three quotes) or hold an escape."""
    t = comment_text
    call = ", ".join(f"{t(f['name'])}=..." for f in sig["feeds"])
    feeds = "\n".join(f"    {t(f['name']):<12} {t(f['type'])}" for f in sig["feeds"])
    fetches = ", ".join(f"{t(f['name'])} ({t(f.get('type', 'no value'))})"
                        for f in sig["fetches"])
    return _DOC.format(name=t(m.get("name", "step")), version=t(graphc_version()),
                       module=t(module), call=call, feeds=feeds, fetches=fetches)


def _wrapper(artifact, sig, signature):
    m = artifact.manifest
    consts = artifact.arrays(sig["prefix"] + CONSTS)
    values = artifact.arrays(VARIABLES)
    taken = [int(k) for k in sig["variables"]]  # the module holds only the ones its code takes
    position = {k: j for j, k in enumerate(taken)}
    blob = base64.b64encode(pack_arrays(
        {**consts, **{f"v{j}": values[f"v{k}"] for j, k in enumerate(taken)}})).decode()
    lines = "\n".join(f'    "{blob[i:i + 96]}"' for i in range(0, len(blob), 96)) or '    ""'
    buffers = sig["buffers"]
    arena = (int(buffers["arena_bytes"]), int(buffers["alignment"])) \
        if buffers.get("planned") else None
    return _WRAPPER.format(
        feeds=repr(tuple((f["name"], tuple(f["shape"]), f["dtype"]) for f in sig["feeds"])),
        variables=repr(tuple(m["variables"][k]["name"] for k in taken)),
        updated=repr(tuple(position[int(k)] for k in sig["updates"])),
        structure=repr(m["fetches"]["structure"]),
        has_value=repr(tuple(bool(f.get("value", True)) for f in sig["fetches"])),
        arena=repr(arena),
        rng_states=repr(artifact.rng_states()[signature or 0]["states"]),
        blob=lines, n_consts=int(sig["code"]["consts"]))


_WRAPPER_NAMES = {"FEEDS", "VARIABLE_NAMES", "variables", "step", "_base64", "_io", "_UPDATED",
                  "_FETCHES", "_HAS_VALUE", "_ARENA", "_RNG_STATES", "_DATA", "_load_arrays",
                  "_generator", "_aligned_zeros", "_rebuild", "_arrays", "_variables", "_step"}


def _check_names(source):
    """The generated code's top-level names must not collide with the wrapper's."""
    defined = set()
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, ast.Assign):
            defined |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    clash = sorted(defined & _WRAPPER_NAMES)
    if clash:
        raise ArtifactError(f"cannot export: the generated code defines {', '.join(clash)}, "
                            "which the exported module needs for itself")
