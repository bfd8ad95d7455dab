"""Saving a compiled step ahead of time: ``step.save(path)`` and ``step.export_python(path)``.

    step = gc.compile([loss, train_op], feeds=[x, y], backend="llvm")
    step(x=xb, y=yb)                      # train a little, or not at all
    step.save("step.gcx")                 # code + manifest + IR + current variables
    ...                                   # later, anywhere with the same CPU, no compiler:
    step = gc.load("step.gcx")            # graphc.runtime.load

This is the compiler's half of the artifact format described in ``graphc.runtime.artifact``:
it gathers what the runtime needs from a ``CompiledStep`` (the latest compiled signature):
the generated code (the NumPy module and its constants, or the object code, its LLVM IR and
the pointer-table layout), the final IR, feed/fetch/variable descriptions, the memory plan,
the variables' values and the random generators' state. The runtime half never imports this.
"""
import hashlib
import platform

import numpy as np

from .errors import CompileError, GraphError
from .ir.shapes import format_shape
from .runtime.artifact import (CONSTS, FORMAT, FORMAT_VERSION, IR, LLVM_IR, OBJECT, RNG, SOURCE,
                               VARIABLES, Artifact, encode_structure, graphc_version,
                               pack_arrays)


def save(step, path):
    """Write ``step`` (its latest compiled signature) to the artifact file ``path``.

    Args:
        step: a ``CompiledStep`` that has compiled a signature (concrete feed shapes, or
            called once).
        path: the file to write (``.gcx`` by convention); replaced atomically.
    Returns:
        The file's size in bytes.
    Raises:
        GraphError: the step has None dims and was never called.
    Example:
        >>> step = gc.compile([loss, train_op], feeds=[x, y])
        >>> step.save("step.gcx")
    """
    return artifact_of(step).write(path)


def export_python(step, path):
    """Write a NumPy-backend ``step`` as one standalone module that imports only numpy.

    Importing the module and calling its ``step(x=..., y=...)`` trains exactly as ``step``
    would from its current state (same code, constants, variables and random state).

    Raises:
        CompileError: the step was compiled for the LLVM backend.
    Example:
        >>> step.export_python("mlp_step.py")
        >>> import mlp_step; loss, _ = mlp_step.step(x=xb, y=yb)
    """
    if step.backend != "numpy":
        raise CompileError(f"export_python needs a NumPy-backend step, this one is "
                           f"{step.backend!r}", hint="gc.compile(..., backend='numpy')")
    from .runtime.export import write_module
    return write_module(artifact_of(step), path)


def artifact_of(step):
    """The ``runtime.artifact.Artifact`` of a CompiledStep's latest signature, in memory."""
    compiled = step.compiled
    program = compiled.program
    ir_text = step.ir("final") if program.stages else _plain_ir(program)
    if compiled.backend == "numpy":
        members, code, target = _numpy_code(step, compiled)
    else:
        members, code, target = _llvm_code(compiled)
    code_text = members[SOURCE if compiled.backend == "numpy" else LLVM_IR]
    manifest = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "graphc_version": graphc_version(),
        "written_by": _versions(),
        "backend": compiled.backend, "optimized": bool(step.optimize),
        "name": getattr(program, "name", "step"),
        "target": target,
        "feeds": [_tensor(p, n.shape) for p, n in zip(compiled.feed_nodes, program.feeds)],
        "fetches": _fetches(step, compiled),
        "variables": _variables(compiled),
        "updates": _updates(compiled),
        "buffers": _buffers(program),
        "program_sha256": hashlib.sha256(ir_text.encode() + b"\0" + code_text).hexdigest(),
        "code": code,
        "stats": _stats(step),
    }
    values = step.variables
    members[IR] = ir_text.encode()
    members[VARIABLES] = pack_arrays({f"v{k}": values[v.name]
                                      for k, v in enumerate(compiled.var_nodes)})
    return Artifact(manifest, members)


def _plain_ir(program):
    from .ir.printer import program_text
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
    out = {"name": node.name, "shape": list(shape), "dtype": node.dtype.np.name,
           "type": f"{node.dtype.short}{format_shape(shape)}"}
    if loc and node.loc is not None and node.loc.lineno:
        out["loc"] = node.loc.format()
    return out


def _fetches(step, compiled):
    n = len(compiled.program.fetches)
    flat = []
    for user, f in zip(step._flat, compiled.program.fetches):
        if f is None or f.dtype is None:
            flat.append({"name": user.name, "op": user.op_name, "value": False})
        else:
            flat.append(dict(_tensor(f, loc=False), name=user.name, op=user.op_name))
    return {"structure": encode_structure(step._rebuild(list(range(n)))), "flat": flat}


def _variables(compiled):
    names = [v.name for v in compiled.var_nodes]
    if len(set(names)) != len(names):
        raise GraphError("cannot save a step whose variables share a name",
                         [f"names: {', '.join(sorted(names))}"],
                         hint="give each variable its own name (name scopes)")
    updated = set(compiled.update_nodes)
    return [dict(_tensor(v), updated=v in updated) for v in compiled.var_nodes]


def _updates(compiled):
    """Indices into the variables of the step's update results, in the order returned."""
    index = {v: k for k, v in enumerate(compiled.var_nodes)}
    return [index[v] for v in compiled.update_nodes]


def _buffers(program):
    plan = program.plan
    if plan is None or not plan.planned:
        return {"planned": False, "arena_bytes": 0, "alignment": 64}
    return {"planned": True, "arena_bytes": int(plan.arena_bytes),
            "alignment": int(plan.alignment), "peak_bytes": int(plan.peak_bytes),
            "naive_bytes": int(plan.naive_bytes),
            "offsets": [{"node": n.name, "op": n.op_name, "type": n.type_str(),
                         "offset": int(off), "bytes": int(plan.nbytes[n])}
                        for n, off in plan.offsets.items()]}


def _stats(step):
    s = step.stats
    keep = ("nodes_before", "nodes_after", "fused_groups", "inplace_ops", "peak_bytes",
            "naive_bytes", "scratch_bytes")
    out = {k: s.get(k) for k in keep}
    out["passes"] = [{"name": r["name"], "nodes_before": r["nodes_before"],
                      "nodes_after": r["nodes_after"], "changes": r["changes"]}
                     for r in s.get("passes", [])]
    return out


# -- code --------------------------------------------------------------------------------------
def _numpy_code(step, compiled):
    """The NumPy module, its constants and its generators' state.

    The constants are not kept by the compiled step: the program is emitted again, which is
    deterministic, and checked to give the very source that runs.
    """
    from .codegen.numpy_emitter import emit_numpy
    source, consts, seeds, info = emit_numpy(compiled.program, step.checks, details=True)
    if source != compiled.source:
        raise CompileError("emitting the step again gave different code: cannot save it",
                           hint="the NumPy emitter must be deterministic: please report this")
    generators = _generators(compiled.fn)
    if len(generators) != len(seeds):
        raise CompileError(f"the step has {len(seeds)} random ops but {len(generators)} "
                           "generators were found: cannot save its random state")
    sites = [{"kind": kind, "node": node.describe(),
              "loc": node.loc.format() if node.loc is not None and node.loc.lineno else None}
             for kind, node, _ in info.get("sites", [])]
    members = {SOURCE: source.encode(),
               CONSTS: pack_arrays({f"c{k}": c for k, c in enumerate(consts)}),
               RNG: _json({"kind": "numpy",
                           "states": [g.bit_generator.state for g in generators]})}
    code = {"module": SOURCE, "consts": len(consts), "sites": sites,
            "checks": list(step.checks)}
    return members, code, None


def _generators(fn):
    """The random generators a generated NumPy step draws from (``rngs`` in its closure)."""
    names = fn.__code__.co_freevars
    if "rngs" not in names:
        return []
    return list(fn.__closure__[names.index("rngs")].cell_contents)


def _llvm_code(compiled):
    from .codegen.llvm_backend import CODEGEN_LEVEL, OPT_LEVEL
    from .runtime import jit
    from .runtime.loaded_step import encode_layout
    native = compiled.fn
    layout, arrays = encode_layout(native.layout)
    host = jit.host_target()
    members = {OBJECT: bytes(native.loaded.object_code), LLVM_IR: str(compiled.source).encode(),
               CONSTS: pack_arrays(arrays),
               RNG: _json({"kind": "native", "state": [int(v) for v in native.rng_state]})}
    code = {"object": OBJECT, "llvm_ir": LLVM_IR, "entry": native.layout.entry,
            "layout": layout, "opt": OPT_LEVEL, "codegen_opt": CODEGEN_LEVEL,
            "llvm": jit.llvmlite_version()}
    target = {"triple": host.triple, "cpu": host.cpu, "features": host.features}
    return members, code, target


def _json(value):
    import json
    return json.dumps(value).encode()
