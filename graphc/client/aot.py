"""Saving a compiled step ahead of time: ``step.save(path)`` and ``step.export_python(path)``.

    step = gc.compile([loss, train_op], feeds=[x, y], backend="llvm")
    step(x=xb, y=yb)                      # train a little, or not at all
    step.save("step.gcx")                 # code + IR of every signature, current variables
    ...                                   # later, anywhere with the same CPU, no compiler:
    step = gc.load("step.gcx")            # graphc.runtime.load

This is the compiler's half of the artifact format described in ``graphc.runtime.artifact``:
it gathers what the runtime needs from a ``CompiledStep``, for every compiled signature (or
only the latest): the generated code (the NumPy module and its constants, or the object code,
its LLVM IR and the pointer-table layout), the final IR, feed/fetch descriptions and the
memory plan; once for the step: the variables and their values, and the random generators'
state. The runtime half never imports this.
"""
import dataclasses
import hashlib
import platform

import numpy as np

from ..errors import ArtifactError, CompileError, GraphError
from ..ir.shapes import format_shape
from .pipeline import step_stats
from ..runtime.artifact import (CONSTS, FORMAT, FORMAT_VERSION, IR, LIBRARY, LLVM_IR, OBJECT, RNG,
                                SOURCE, VARIABLES, Artifact, encode_structure, graphc_version,
                                pack_arrays)


def save(step, path, signatures="all", key=None):
    """Write ``step`` (its compiled signatures and the variables' values) to ``path``.

    Args:
        step: a ``CompiledStep`` that has compiled a signature (concrete feed shapes, or
            called once).
        path: the file to write (``.gcx`` by convention); replaced atomically.
        signatures: "all" (every signature compiled so far: the loaded step runs each feed
            shape it was compiled for) or "latest" (only the one compiled last).
        key: str or bytes signing the file (an HMAC-SHA256 of its manifest, which holds
            every member's sha256): ``gc.load(path, key=...)`` then refuses any file not
            signed with it. None: ``$GRAPHC_ARTIFACT_KEY`` when set, else unsigned.
    Returns:
        The file's size in bytes.
    Raises:
        GraphError: the step has None dims and was never called.
        CompileError: ``signatures`` is neither "all" nor "latest".
        ArtifactError: the step calls Python (tf.Print, tf.Assert, tf.py_func).
    Example:
        >>> step = gc.compile([loss, train_op], feeds=[x, y])   # x: f32[None,64]
        >>> step(x=x128, y=y128); step(x=x40, y=y40)
        >>> step.save("step.gcx")                                # both shapes
    """
    return artifact_of(step, signatures).write(path, key)


def export_python(step, path):
    """Write a NumPy-backend ``step`` as one standalone module that imports only numpy.

    Importing the module and calling its ``step(x=..., y=...)`` trains exactly as ``step``
    would from its current state (same code, constants, variables and random state). The
    module holds ONE signature: the latest compiled one (its feeds have that signature's
    exact shapes); to export another, call the step with that shape first.

    Raises:
        CompileError: the step was compiled for the LLVM backend.
    Example:
        >>> step.export_python("mlp_step.py")
        >>> import mlp_step; loss, _ = mlp_step.step(x=xb, y=yb)
    """
    if step.backend != "numpy":
        raise CompileError(f"export_python needs a NumPy-backend step, this one is "
                           f"{step.backend!r}", hint="gc.compile(..., backend='numpy')")
    from ..runtime.export import write_module
    return write_module(artifact_of(step, "latest"), path)


def artifact_of(step, signatures="all"):
    """The ``runtime.artifact.Artifact`` of a CompiledStep, in memory (see ``save``)."""
    latest = step.compiled  # GraphError when nothing was compiled
    if signatures == "latest":
        chosen = [latest]
    elif signatures == "all":
        chosen = list(step._cache.values())
    else:
        raise CompileError(f"save: signatures must be 'all' or 'latest', not {signatures!r}")
    _refuse_host_calls(chosen)
    var_nodes = _saved_variables(step, chosen)
    index = {v: k for k, v in enumerate(var_nodes)}
    members, sigs, rngs = {}, [], []
    for k, compiled in enumerate(chosen):
        sig, sig_members, rng = _signature(step, compiled, index, f"sig{k}/")
        sigs.append(sig)
        members.update(sig_members)
        rngs.append(rng)
    manifest = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "graphc_version": graphc_version(),
        "written_by": _versions(),
        "backend": latest.backend, "optimized": bool(step.optimize),
        "name": getattr(latest.program, "name", "step"),
        "target": _target() if latest.backend == "llvm" else None,
        "feeds": _merged(s["feeds"] for s in sigs),
        "fetches": {"structure": _structure(step, latest),
                    "flat": _merged(s["fetches"] for s in sigs)},
        "variables": _variables(var_nodes, chosen),
        "latest": next(k for k, c in enumerate(chosen) if c is latest),
        "signatures": sigs,
    }
    values = step.variables
    members[VARIABLES] = pack_arrays({f"v{k}": values[v.node_name]
                                      for k, v in enumerate(var_nodes)})
    members[RNG] = _json({"signatures": rngs})
    return Artifact(manifest, members)


def _refuse_host_calls(chosen):
    """A step calling Python (tf.Print, tf.Assert, tf.py_func) cannot run in another process:
    the functions are not saved, only the keys they had in this one."""
    for compiled in chosen:
        for n in compiled.program.nodes:
            if n.opdef.family == "host":
                raise ArtifactError(f"{n.describe()}: the step calls a Python function "
                                    "(tf.Print, tf.print, tf.Assert or tf.py_func), which a "
                                    "saved step cannot carry", loc=n.loc,
                                    hint="compile a step without it for saving (the ops are "
                                         "for debugging in the process that built the graph)")


def _signature(step, compiled, index, prefix):
    """(manifest entry, {member: bytes}, random state) of one compiled signature."""
    program = compiled.program
    ir_text = program.stages[-1][1] if program.stages else _plain_ir(program)
    if compiled.backend == "numpy":
        members, code, rng = _numpy_code(step, compiled, prefix)
    else:
        members, code, rng = _llvm_code(compiled, prefix)
    code_text = members[prefix + (SOURCE if compiled.backend == "numpy" else LLVM_IR)]
    members[prefix + IR] = ir_text.encode()
    sig = {
        "prefix": prefix,
        "feeds": [_tensor(p, n.shape) for p, n in zip(compiled.feed_nodes, program.feeds)],
        "fetches": _fetches(step, compiled),
        "variables": [index[v] for v in compiled.var_nodes],
        "updates": [index[v] for v in compiled.update_nodes],
        "buffers": _buffers(program),
        "program_sha256": hashlib.sha256(ir_text.encode() + b"\0" + code_text).hexdigest(),
        "code": code,
        "stats": _stats(compiled),
    }
    return sig, members, rng


def _merged(described):
    """One description per feed (or fetch) over all signatures: a dim that differs between
    them becomes None (``?`` in the type)."""
    rows = None
    for items in described:
        rows = [dict(item) for item in items] if rows is None else [
            _merge(row, item) for row, item in zip(rows, items)]
    return rows


def _merge(row, item):
    if "shape" not in row or row["shape"] == item["shape"]:
        return row
    shape = [a if a == b else None for a, b in zip(row["shape"], item["shape"])]
    return dict(row, shape=shape, type=row["type"].split("[")[0] + format_shape(shape))


def _plain_ir(program):
    from ..ir.printer import program_text
    return program_text(program)


def _versions():
    out = {"python": platform.python_version(), "numpy": np.__version__}
    try:
        import llvmlite
        out["llvmlite"] = llvmlite.__version__
    except ImportError:
        pass
    return out


def _tensor(node, shape=None, loc=True):
    shape = tuple(node.shape if shape is None else shape)
    out = {"name": node.node_name, "shape": list(shape), "dtype": node.dtype.np.name,
           "type": f"{node.dtype.short}{format_shape(shape)}"}
    if loc and node.loc is not None and node.loc.lineno:
        out["loc"] = node.loc.format()
    return out


def _fetches(step, compiled):
    flat = []
    for user, f in zip(step._flat, compiled.program.fetches):
        if f is None or f.dtype is None:
            flat.append({"name": user.node_name, "op": user.op_name, "value": False})
        else:
            flat.append(dict(_tensor(f, loc=False), name=user.node_name, op=user.op_name))
    return flat


def _structure(step, compiled):
    return encode_structure(step._rebuild(list(range(len(compiled.program.fetches)))))


def _saved_variables(step, chosen):
    """The variables any chosen signature reads, in the step's order: stored once, shared."""
    used = {v for compiled in chosen for v in compiled.var_nodes}
    var_nodes = [v for v in step._var_nodes if v in used]
    names = [v.node_name for v in var_nodes]
    if len(set(names)) != len(names):
        raise GraphError("cannot save a step whose variables share a name",
                         [f"names: {', '.join(sorted(names))}"],
                         hint="give each variable its own name (name scopes)")
    return var_nodes


def _variables(var_nodes, chosen):
    updated = {v for compiled in chosen for v in compiled.update_nodes}
    return [dict(_tensor(v), updated=v in updated) for v in var_nodes]


def _buffers(program):
    plan = program.plan
    if plan is None or not plan.planned:
        return {"planned": False, "arena_bytes": 0, "alignment": 64}
    return {"planned": True, "arena_bytes": int(plan.arena_bytes),
            "alignment": int(plan.alignment), "peak_bytes": int(plan.peak_bytes),
            "naive_bytes": int(plan.naive_bytes),
            "offsets": [{"node": n.node_name, "op": n.op_name, "type": n.type_str(),
                         "offset": int(off), "bytes": int(plan.nbytes[n])}
                        for n, off in plan.offsets.items()]}


def _stats(compiled):
    s = step_stats(compiled)
    keep = ("nodes_before", "nodes_after", "fused_groups", "inplace_ops", "peak_bytes",
            "naive_bytes", "scratch_bytes")
    out = {k: s.get(k) for k in keep}
    out["passes"] = [{"name": r["name"], "nodes_before": r["nodes_before"],
                      "nodes_after": r["nodes_after"], "changes": r["changes"]}
                     for r in s.get("passes", [])]
    return out


# -- code --------------------------------------------------------------------------------------
def _numpy_code(step, compiled, prefix):
    """The NumPy module, its constants and its generators' state, as the backend compiled
    them (``compiled.code``: the code that runs, never emitted again)."""
    built = compiled.code
    source, consts = built.source, built.consts
    sites = [{"kind": kind, "node": node.describe(),
              "loc": node.loc.format() if node.loc is not None and node.loc.lineno else None}
             for kind, node, _ in built.sites]
    for site, (kind, node, detail) in zip(sites, built.sites):
        if kind == "index":  # what runtime.step_errors needs to name a bad index
            site["check"] = detail.to_json()
        if kind in ("numerics", "check"):  # runtime.numerics: the message, as when compiled
            site["numerics"] = _numerics_site(node, detail if kind == "check" else None)
    members = {prefix + SOURCE: source.encode(),
               prefix + CONSTS: pack_arrays({f"c{k}": c for k, c in enumerate(consts)})}
    code = {"module": prefix + SOURCE, "consts": len(consts), "sites": sites,
            "checks": list(step.checks)}
    rng = {"kind": "numpy", "states": built.rng_state()}
    return members, code, rng


def _numerics_site(node, message):
    from ..runtime.numerics import NumericsSite
    site = dataclasses.asdict(NumericsSite.of(node, message))
    site["shape"] = list(site["shape"])
    return site


def _llvm_code(compiled, prefix):
    from ..codegen.llvm.backend import CODEGEN_LEVEL, OPT_LEVEL
    from ..runtime import jit
    from ..runtime.loaded_step import encode_layout
    built = compiled.code
    layout, arrays = encode_layout(built.layout)
    members = {prefix + OBJECT: built.object_code,
               prefix + LLVM_IR: str(built.source).encode(),
               prefix + CONSTS: pack_arrays(arrays)}
    code = {"object": prefix + OBJECT, "llvm_ir": prefix + LLVM_IR, "entry": built.layout.entry,
            "layout": layout, "opt": OPT_LEVEL, "codegen_opt": CODEGEN_LEVEL,
            "llvm": jit.llvmlite_version()}
    library = _library(built)
    if library is not None:
        members[prefix + LIBRARY], code["library"] = library[0], dict(library[1],
                                                                      member=prefix + LIBRARY)
    rng = {"kind": "native", "state": built.rng_state()}
    return members, code, rng


def _library(built):
    """(the step's code linked into a plain shared library, {"exports", "pool"}), or None
    where this system cannot link it: the step's object code, and the thread pool's when
    the step calls it (``pool``: the pool code's digest, which a loading process compares
    with its own before it takes the pool from the library), as the compile cache links them
    (``runtime.shared_object``)."""
    from ..runtime import parallel, shared_object
    pooled = parallel.uses_pool(built.layout)
    linked = shared_object.link_step(built.object_code, built.layout.entry,
                                     parallel.object_code() if pooled else b"")
    if linked is None:
        return None
    library, exports = linked
    return library, {"exports": exports, "pool": parallel.code_digest() if pooled else None}


def _target():
    from ..runtime import jit
    host = jit.host_target()
    return {"triple": host.triple, "cpu": host.cpu, "features": host.features}


def _json(value):
    import json
    return json.dumps(value).encode()
