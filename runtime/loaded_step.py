"""``gc.load(path)``: a saved step, run without the compiler.

    step = gc.load("step.gcx")                 # verifies the file; milliseconds
    loss, _ = step(x=xb, y=yb)                  # or step({"x": xb, "y": yb}); as gc.compile's
    step.variables["dense1/W"]                  # the live arrays, updated in place
    step.save("step.gcx")                       # the trained variables (and RNG state) kept

A NumPy-backend artifact executes its generated module; an LLVM-backend artifact hands its
object code to ``runtime.jit.load_object`` (no LLVM optimization runs) and binds buffers
through ``runtime.llvm_step.NativeStep``. Feeds are validated from the manifest as a Session
validates them: a ``FeedError`` names the feed with the expected and found shape and dtype.

Object code runs only on the CPU it was built for: ``load`` compares the manifest's target
with this machine (same triple, and every CPU feature the code was compiled with present;
the CPU's name alone may differ) and raises ``ArtifactError`` saying which, unless
``recompile=True``, which compiles the stored LLVM IR for this CPU with a warning.

This module imports only numpy, the runtime's own modules and ``graphc.errors``; llvmlite is
imported only for LLVM artifacts.
"""
import dataclasses
import json
import re
import warnings

import numpy as np

from graphc.errors import ArtifactError, FeedError, GraphcError, NumericsError

from .artifact import (CONSTS, IR, LLVM_IR, OBJECT, RNG, SOURCE, VARIABLES, decode_structure,
                       pack_arrays, read)

__all__ = ["load", "LoadedStep", "check_target", "encode_layout", "decode_layout"]

_SHORT = {"float32": "f32", "float64": "f64", "int8": "i8", "int16": "i16", "int32": "i32",
          "int64": "i64", "uint8": "u8", "bool": "bool"}
_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "Philox", "SFC64", "MT19937")


def load(path, recompile=False):
    """Load a step saved by ``step.save(path)``; call it as the compiled step.

    Args:
        path: the ``.gcx`` file.
        recompile: when the object code was built for another CPU of the same kind (triple),
            compile its stored LLVM IR for this one (with a warning) instead of refusing.
    Returns:
        A ``LoadedStep``.
    Raises:
        ArtifactError: truncated or corrupted file, format from a newer graphc, object code
            for another CPU or target, a malformed manifest.
    Example:
        >>> step = gc.load("step.gcx")
        >>> loss, _ = step(x=xb, y=yb)
    """
    artifact = read(path)
    try:
        return LoadedStep(artifact, recompile)
    except GraphcError:
        raise
    except Exception as exc:  # noqa: BLE001  (checksums matched, yet the content is wrong)
        raise ArtifactError(f"'{path}' has a malformed manifest or member: "
                            f"{type(exc).__name__}: {exc}",
                            hint="save the step again with step.save(path)") from None


class _Where:
    """A user location as the manifest stored it (``GraphcError`` formats ``loc``)."""

    def __init__(self, text):
        self.text = text

    def format(self):
        return self.text


def _type_str(dtype, shape):
    return f"{_SHORT.get(np.dtype(dtype).name, np.dtype(dtype).name)}[" + \
        ",".join(str(d) for d in shape) + "]"


class LoadedStep:
    """A saved training step; call it with feeds, read ``variables``, ``save`` it again.

    Attributes:
        manifest: the artifact's manifest (a dict).
        backend: "numpy" or "llvm".
        feeds, fetches, variables_info: the manifest's descriptions.
    """

    def __init__(self, artifact, recompile=False):
        m = artifact.manifest
        self.artifact, self.manifest, self.backend = artifact, m, m["backend"]
        self.feeds = m["feeds"]
        self.fetches = m["fetches"]
        self.variables_info = m["variables"]
        self._index = {f["name"]: k for k, f in enumerate(self.feeds)}
        self._specs = [(tuple(f["shape"]), np.dtype(f["dtype"])) for f in self.feeds]
        values = artifact.arrays(VARIABLES)
        self._vars = [_variable(values, k, v, artifact) for k, v in enumerate(m["variables"])]
        self._updated = [int(k) for k in m["updates"]]
        self._rebuild = decode_structure(m["fetches"]["structure"])
        self._has_value = [bool(f.get("value", True)) for f in m["fetches"]["flat"]]
        if self.backend == "numpy":
            self._runner = PythonRunner(artifact)
        elif self.backend == "llvm":
            self._runner = NativeRunner(artifact, recompile)
        else:
            raise ArtifactError(f"{artifact.where()}: unknown backend {self.backend!r}")

    # -- views -------------------------------------------------------------------------------
    @property
    def variables(self):
        """{variable name: its live array} (updated in place by every call)."""
        return {v["name"]: a for v, a in zip(self.variables_info, self._vars)}

    @property
    def ir(self):
        """The final text IR of the optimized program the code was generated from."""
        return self.artifact.text(IR)

    @property
    def source(self):
        """The generated code: the NumPy module, or the LLVM IR of the object code."""
        return self.artifact.text(SOURCE if self.backend == "numpy" else LLVM_IR)

    # -- calling -----------------------------------------------------------------------------
    def __call__(self, feed_dict=None, **named):
        """Run one step; returns the fetches' values in the fetches' structure."""
        args = self._arguments(feed_dict, named)
        variables = self._vars
        try:
            fetched, updates = self._runner.fn(*args, *variables)
        except GraphcError:
            raise
        except Exception as exc:  # noqa: BLE001  (named after the node that failed)
            raise self._runner.failure(exc) from None
        for k, new in zip(self._updated, updates):
            if new is not variables[k]:
                np.copyto(variables[k], new)
        return self._rebuild([_as_result(x, args + variables) if has else None
                              for x, has in zip(fetched, self._has_value)])

    def _arguments(self, feed_dict, named):
        given = [None] * len(self.feeds)
        for key, value in list((feed_dict or {}).items()) + list(named.items()):
            name = key if isinstance(key, str) else getattr(key, "name", key)
            k = self._index.get(name[:-2] if isinstance(name, str) and name.endswith(":0")
                                else name)
            if k is None:
                raise FeedError(f"cannot feed {key!r}: not a placeholder of this step",
                                [f"feeds: {', '.join(self._index)}"])
            given[k] = value
        missing = [f for f, v in zip(self.feeds, given) if v is None]
        if missing:
            raise FeedError(f"{len(missing)} placeholder(s) must be fed: "
                            + ", ".join(f["name"] for f in missing),
                            [f"'{f['name']}': {f['type']}  created at {f.get('loc', '?')}"
                             for f in missing], hint="pass them by name: step(x=..., y=...)")
        for k, (value, (shape, dtype)) in enumerate(zip(given, self._specs)):
            if not (type(value) is np.ndarray and value.shape == shape and  # noqa: E721
                    value.dtype == dtype and value.flags.c_contiguous):
                given[k] = self._convert(k, value)
        return given

    def _convert(self, k, value):
        """A fed value as the step takes it; FeedError for what a Session refuses."""
        feed, (shape, dtype) = self.feeds[k], self._specs[k]
        arr = np.asarray(value)
        where = _Where(feed["loc"]) if feed.get("loc") else None
        if arr.dtype.kind not in "fiub" or (arr.dtype.kind == "f" and dtype.kind != "f"):
            raise FeedError(f"cannot feed a {arr.dtype.name} value to {dtype.name} placeholder "
                            f"'{feed['name']}'", loc=where,
                            hint=f"convert it yourself, e.g. np.asarray(value, np.{dtype.name})")
        if arr.shape != shape:
            raise FeedError(f"placeholder '{feed['name']}' expects {feed['type']}, fed "
                            f"{_type_str(arr.dtype, arr.shape)}",
                            ["a saved step runs the shapes it was compiled for"], where,
                            hint="feed arrays of that shape, or compile the step for others")
        return np.ascontiguousarray(arr, dtype=dtype)

    # -- saving ------------------------------------------------------------------------------
    def state_members(self):
        """{member: bytes} of the current variables and random state."""
        return {VARIABLES: pack_arrays({f"v{k}": a for k, a in enumerate(self._vars)}),
                RNG: json.dumps(self._runner.rng_state()).encode()}

    def save(self, path):
        """Write this step, with its current variables and random state, to ``path``.

        Returns:
            The file's size in bytes.
        """
        return self.artifact.replaced(self.state_members()).write(path)

    def export_python(self, path):
        """Write a standalone module (imports only numpy) of a NumPy-backend step."""
        from .export import write_module
        return write_module(self.artifact.replaced(self.state_members()), path)

    def __repr__(self):
        feeds = ", ".join(f"{f['name']}: {f['type']}" for f in self.feeds)
        return f"<LoadedStep {self.backend} ({feeds}), {len(self._vars)} variables>"


def _variable(values, k, info, artifact):
    arr = values.get(f"v{k}")
    shape, dtype = tuple(info["shape"]), np.dtype(info["dtype"])
    if arr is None or arr.shape != shape or arr.dtype != dtype:
        found = "nothing" if arr is None else _type_str(arr.dtype, arr.shape)
        raise ArtifactError(f"{artifact.where(VARIABLES)}: variable '{info['name']}' should be "
                            f"{_type_str(dtype, shape)}, found {found}")
    return np.array(arr, dtype=dtype, order="C")  # owned, writable, aligned


def _as_result(x, args):
    """A fetched value the caller owns: never a fed array or variable storage (or a view)."""
    if isinstance(x, np.ndarray):
        if any(np.may_share_memory(x, a) for a in args):
            x = np.array(x)
        return x if x.ndim else x[()]
    return x


# -- NumPy backend ---------------------------------------------------------------------------------
def aligned_zeros(nbytes, alignment=64):
    """A zeroed uint8 array of ``nbytes`` whose data starts on an ``alignment`` boundary."""
    raw = np.zeros(nbytes + alignment, np.uint8)
    shift = (-raw.ctypes.data) % alignment
    return raw[shift:shift + nbytes]


def generator(state):
    """A NumPy Generator in exactly the saved ``bit_generator.state``."""
    name = state.get("bit_generator")
    if name not in _BIT_GENERATORS:
        raise ArtifactError(f"unknown random bit generator {name!r} in the artifact")
    bits = getattr(np.random, name)()
    bits.state = state
    return np.random.Generator(bits)


class PythonRunner:
    """The generated NumPy module of an artifact, executed; ``fn(*feeds, *variables)``."""

    MODULE = "graphc_loaded_step"

    def __init__(self, artifact):
        from .pystep import load_python_step
        m = artifact.manifest
        code = m["code"]
        arrays = artifact.arrays(CONSTS)
        consts = [arrays[f"c{i}"] for i in range(int(code["consts"]))]
        self.generators = [generator(s) for s in artifact.json(RNG)["states"]]
        buffers = m["buffers"]
        arena = aligned_zeros(int(buffers["arena_bytes"]), int(buffers["alignment"])) \
            if buffers.get("planned") else None
        self.source = artifact.text(SOURCE)
        self.sites = code.get("sites", [])
        # make_step uses a Generator passed as its seed as is (np.random.default_rng does), so
        # the step draws from these very objects and their state can be saved again.
        self.fn, self.module = load_python_step(self.source, consts, self.generators, arena,
                                                module_name=self.MODULE)

    def rng_state(self):
        return {"kind": "numpy", "states": [g.bit_generator.state for g in self.generators]}

    def failure(self, exc):
        """The graphc error for an exception raised inside the generated code."""
        if type(exc).__name__ == "StepFault" and exc.args and exc.args[0] == "numerics":
            site = self.sites[exc.args[1]] if exc.args[1] < len(self.sites) else {}
            details = []
            if len(exc.args) > 2:
                a = np.asarray(exc.args[2])
                details.append(f"{int(np.isnan(a).sum())} NaN and {int(np.isinf(a).sum())} Inf "
                               f"among {a.size} values")
            return NumericsError(f"check_numerics: {site.get('node', 'a node')} produced NaN "
                                 "or Inf", details,
                                 loc=_Where(site["loc"]) if site.get("loc") else None)
        lines, note, tb = self.source.splitlines(), None, exc.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code.co_filename == f"<{self.MODULE}>":
                note = _note_above(lines, tb.tb_lineno) or note
            tb = tb.tb_next
        return GraphcError(f"{note or 'the saved step'}: failed at run time: "
                           f"{type(exc).__name__}: {exc}",
                           hint="an index or label out of range for the fed or stored values?")


def _note_above(lines, lineno):
    """``op 'name'`` from the ``# op 'name'`` note on or above a generated line."""
    for i in range(min(lineno, len(lines)) - 1, -1, -1):
        m = re.search(r"# (\w+ '[^']+')", lines[i])
        if m:
            return m.group(1)
        if lines[i].lstrip().startswith(("def ", "with ")):
            return None
    return None


# -- LLVM backend ----------------------------------------------------------------------------------
class NativeRunner:
    """The object code of an artifact, loaded and bound; ``fn`` is a ``NativeStep``."""

    def __init__(self, artifact, recompile=False):
        from . import jit
        from .llvm_step import NativeStep
        m = artifact.manifest
        problem = check_target(m.get("target") or {}, jit.host_target())
        code = artifact.members[OBJECT]
        if problem is not None:
            code = _rebuild_or_refuse(artifact, problem, recompile)
        layout = decode_layout(m["code"]["layout"], artifact.arrays(CONSTS))
        self.fn = NativeStep(layout, jit.load_object(code))
        state = np.array(artifact.json(RNG)["state"], np.uint64)
        if state.shape != self.fn.rng_state.shape:
            raise ArtifactError(f"{artifact.where(RNG)}: {state.size} random state words, the "
                                f"code has {self.fn.rng_state.size}")
        self.fn.rng_state[:] = state

    def rng_state(self):
        return {"kind": "native", "state": [int(v) for v in self.fn.rng_state]}

    @staticmethod
    def failure(exc):
        return GraphcError(f"the saved step failed at run time: {type(exc).__name__}: {exc}")


def _features(text):
    return {f[1:] for f in (text or "").split(",") if f.startswith("+")}


def check_target(built, host):
    """Why object code built for ``built`` cannot run on ``host`` (None when it can).

    Args:
        built: the manifest's {"triple", "cpu", "features"}.
        host: ``runtime.jit.HostTarget`` of this machine.
    Returns:
        None, or (headline, detail lines).
    """
    what = f"built for CPU '{built.get('cpu')}' ({built.get('triple')}), this machine is " \
           f"'{host.cpu}' ({host.triple})"
    if built.get("triple") != host.triple:
        return f"object code for another target: {what}", []
    if not host.features:  # the host cannot list its features: trust only the same CPU
        if built.get("cpu") == host.cpu:
            return None
        return f"object code for another CPU: {what}", [
            "this machine does not report its CPU features, so they cannot be compared"]
    missing = sorted(_features(built.get("features")) - _features(host.features))
    if missing:
        return f"object code for another CPU: {what}", [
            f"CPU features the code was compiled with that this machine lacks: "
            + ", ".join("+" + f for f in missing)]
    return None


def _rebuild_or_refuse(artifact, problem, recompile):
    headline, details = problem
    same_kind = headline.startswith("object code for another CPU")
    if not (recompile and same_kind):
        hint = ("compile the step again on this machine (graphc compile MODEL.py -o ...)"
                + (", or gc.load(path, recompile=True) to rebuild the object code from the "
                   "LLVM IR stored in the artifact" if same_kind else ""))
        raise ArtifactError(f"{artifact.where()}: {headline}", details, hint=hint)
    from . import jit
    code = artifact.manifest["code"]
    warnings.warn(f"{artifact.where()}: {headline}; compiling its stored LLVM IR for this CPU",
                  RuntimeWarning, stacklevel=4)
    return jit.compile_ir(artifact.text(LLVM_IR), int(code.get("opt", 2)),
                          int(code.get("codegen_opt", 2))).object_code


# -- the native step's layout, as JSON -------------------------------------------------------------
def encode_layout(layout):
    """A ``StepLayout`` -> (JSON-able dict, {key: constant array}).

    Field by field, so that fields the code generator adds travel without changes here:
    a Slot becomes {"Slot": {...}}, a tuple {"tuple": [...]}, an array {"array": key}.
    """
    arrays = {}

    def enc(v):
        if dataclasses.is_dataclass(v):
            return {type(v).__name__: {f.name: enc(getattr(v, f.name))
                                       for f in dataclasses.fields(v)}}
        if isinstance(v, np.ndarray):
            key = f"c{len(arrays)}"
            arrays[key] = v
            return {"array": key}
        if isinstance(v, tuple):
            return {"tuple": [enc(x) for x in v]}
        if isinstance(v, list):
            return [enc(x) for x in v]
        if isinstance(v, np.generic):
            return v.item()
        if v is None or isinstance(v, (str, int, float, bool)):
            return v
        raise ArtifactError(f"cannot save a {type(v).__name__} of the native step's layout")

    return {f.name: enc(getattr(layout, f.name)) for f in dataclasses.fields(layout)}, arrays


def decode_layout(fields, arrays):
    """JSON from ``encode_layout`` (and its arrays) -> a ``StepLayout``.

    Raises:
        ArtifactError: a field or record this runtime's StepLayout does not have.
    """
    from .llvm_step import Slot, StepLayout
    records = {"Slot": Slot}

    def dec(v):
        if isinstance(v, list):
            return [dec(x) for x in v]
        if not isinstance(v, dict):
            return v
        (kind, body), = v.items()
        if kind == "tuple":
            return tuple(dec(x) for x in body)
        if kind == "array":
            return arrays[body]
        if kind in records:
            return records[kind](**{k: dec(x) for k, x in body.items()})
        raise ArtifactError(f"the artifact's step layout holds a {kind!r} this runtime does "
                            "not know", hint="load it with the graphc version that saved it")

    known = {f.name for f in dataclasses.fields(StepLayout)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ArtifactError(f"the artifact's step layout has field(s) {', '.join(unknown)} "
                            "that this runtime does not know",
                            hint="load it with the graphc version that saved it")
    return StepLayout(**{k: dec(v) for k, v in fields.items()})
