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

A step saved with several feed signatures loads each one's code; a call runs the signature
whose feed shapes match the values fed, and all of them share the step's variables.

This module imports only numpy, the runtime's own modules and ``graphc.errors``; llvmlite is
imported only for LLVM artifacts.
"""
import dataclasses
import re
import warnings
from collections.abc import Mapping

import numpy as np

from graphc.errors import ArtifactError, FeedError, GraphcError, NumericsError

from .aligned import aligned_copy
from .calls import may_alias, state_ids, step_lock, takes_as_is, unalias
from .artifact import (CONSTS, IR, LLVM_IR, OBJECT, RNG, SOURCE, VARIABLES, decode_structure,
                       read)
from .numerics import NumericsSite, numerics_error
from .step_errors import IndexCheck

__all__ = ["load", "LoadedStep", "Signature", "check_target", "encode_layout",
           "decode_layout"]

_SHORT = {"float32": "f32", "float64": "f64", "int8": "i8", "int16": "i16", "int32": "i32",
          "int64": "i64", "uint8": "u8", "bool": "bool"}
_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "Philox", "SFC64", "MT19937")


def load(path, recompile=False, key=None):
    """Load a step saved by ``step.save(path)``; call it as the compiled step.

    Loading a step runs its code: a NumPy artifact executes the Python module it holds, an
    LLVM artifact maps its machine code and calls it (with ``recompile=True``, compiles
    its LLVM IR first). As with pickle files and TensorFlow SavedModels, load only files
    you trust. Checksums only catch damage; to know a file comes from you, save it with a
    key and load it with the same key (``key=`` or ``$GRAPHC_ARTIFACT_KEY``): a file that
    is unsigned, signed with another key or changed after saving is then refused before
    any of its code is read. ``graphc inspect`` shows a file without running its code.

    Args:
        path: the ``.gcx`` file.
        recompile: when the object code was built for another CPU of the same kind (triple),
            compile its stored LLVM IR for this one (with a warning) instead of refusing.
        key: str or bytes the file must be signed with (HMAC-SHA256 of its manifest); None
            reads ``$GRAPHC_ARTIFACT_KEY`` (unset: no signature is required).
    Returns:
        A ``LoadedStep``.
    Raises:
        ArtifactError: truncated or corrupted file, unsigned or wrongly signed with a key,
            format from a newer graphc, object code for another CPU or target, a malformed
            manifest (every field is checked: ``runtime.manifest_check``).
    Example:
        >>> step = gc.load("step.gcx", key=os.environ["MY_KEY"])
        >>> loss, _ = step(x=xb, y=yb)
    """
    from .manifest_check import check_manifest
    artifact = read(path, key)
    try:
        check_manifest(artifact)
        step = LoadedStep(artifact, recompile)
    except GraphcError:
        raise
    except Exception as exc:  # noqa: BLE001  (checksums matched, yet the content is wrong)
        raise ArtifactError(f"'{path}' has a malformed manifest or member: "
                            f"{type(exc).__name__}: {exc}",
                            hint="save the step again with step.save(path)") from None
    step._key = key
    return step


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

    A step saved with several signatures runs each of them: a call goes to the signature
    whose feed shapes are those of the values fed (the one called last is tried first).
    Every signature reads and updates the same variables.

    Attributes:
        manifest: the artifact's manifest (a dict).
        backend: "numpy" or "llvm".
        feeds, fetches, variables_info: the manifest's descriptions (a feed dim that differs
            between signatures is None).
        signatures: the saved ``Signature``s, in the order they were compiled.
        last_signature: the ``Signature`` the latest call ran (before any call: the one
            compiled last before saving).
    """

    def __init__(self, artifact, recompile=False):
        m = artifact.manifest
        self.artifact, self.manifest, self.backend = artifact, m, m["backend"]
        self.feeds = m["feeds"]
        self.fetches = m["fetches"]
        self.variables_info = m["variables"]
        self._index = {f["name"]: k for k, f in enumerate(self.feeds)}
        self._keys = {**{n + ":0": k for n, k in self._index.items()}, **self._index}
        values = artifact.arrays(VARIABLES)
        self._vars = [_variable(values, k, v, artifact) for k, v in enumerate(m["variables"])]
        self._ids = state_ids(self._vars)
        self._rebuild = decode_structure(m["fetches"]["structure"])
        if self.backend not in ("numpy", "llvm"):
            raise ArtifactError(f"{artifact.where()}: unknown backend {self.backend!r}")
        rngs = artifact.rng_states()
        sigs = artifact.signatures()
        if len(rngs) != len(sigs):
            raise ArtifactError(f"{artifact.where(RNG)}: {len(rngs)} random states for "
                                f"{len(sigs)} signatures")
        self.signatures = [Signature(artifact, k, s, rngs[k], self._vars, recompile)
                           for k, s in enumerate(sigs)]
        self.last_signature = self.signatures[artifact.latest()]

    # -- views -------------------------------------------------------------------------------
    @property
    def variables(self):
        """{variable name: its live array} (updated in place by every call)."""
        return {v["name"]: a for v, a in zip(self.variables_info, self._vars)}

    @property
    def ir(self):
        """The final text IR of the latest signature's optimized program (see ``signatures``
        for the others)."""
        return self.last_signature.ir

    @property
    def source(self):
        """The latest signature's generated code: the NumPy module, or its LLVM IR."""
        return self.last_signature.source

    # -- calling -----------------------------------------------------------------------------
    def __call__(self, feed_dict=None, **named):
        """Run one step; returns the fetches' values in the fetches' structure.

        Raises:
            FeedError: a feed missing or unknown, of a dtype that does not convert, or of
                shapes no saved signature has (the message lists those it has).
        """
        given = self._given(feed_dict, named)
        sig = self.last_signature
        if not sig.takes(given):
            sig = self._dispatch(given)
            given = [sig.convert(k, value) for k, value in enumerate(given)]
        ids = self._ids
        for a in given:  # variables are updated in place: feeds see the old value
            if id(a) in ids or a.base is not None and may_alias(a, ids):
                unalias(given, self._vars)
                break
        runner = sig.runner
        try:
            if sig.direct:  # a native step: in place, fresh fetched values, its own lock
                self.last_signature = sig
                return self._rebuild(runner.fn.run(given, sig.var_tuple))
            with runner.lock:  # the arena and random state: one call at a time
                variables = sig.var_arrays
                fetched, updates = runner.fn(*given, *variables)
                for live, new in zip(sig.update_arrays, updates):
                    if new is not live:
                        np.copyto(live, new)
        except GraphcError:
            raise
        except Exception as exc:  # noqa: BLE001  (named after the node that failed)
            raise runner.failure(exc) from None
        self.last_signature = sig
        return self._rebuild([_as_result(x, given + variables) if has else None
                              for x, has in zip(fetched, sig.has_value)])

    def _given(self, feed_dict, named):
        """The fed values in feed order; FeedError for unknown or missing feeds."""
        if feed_dict is not None and type(feed_dict) is not dict \
                and not isinstance(feed_dict, Mapping):
            raise FeedError(f"a loaded step takes its feeds as a dict {{name: value}}, found "
                            f"{type(feed_dict).__name__}", hint="or by name: step(x=..., y=...)")
        given = [None] * len(self.feeds)
        keys = self._keys
        for items in (feed_dict.items() if feed_dict else (), named.items()):
            for key, value in items:
                k = keys.get(key) if type(key) is str else None
                given[self._feed_index(key) if k is None else k] = value
        missing = [f for f, v in zip(self.feeds, given) if v is None]
        if missing:
            raise FeedError(f"{len(missing)} placeholder(s) must be fed: "
                            + ", ".join(f["name"] for f in missing),
                            [f"'{f['name']}': {f['type']}  created at {f.get('loc', '?')}"
                             for f in missing], hint="pass them by name: step(x=..., y=...)")
        return given

    def _feed_index(self, key):
        """The feed position of ``key``: a name, ``name:0``, or an object with a ``name``."""
        name = key if isinstance(key, str) else getattr(key, "name", key)
        k = self._index.get(name[:-2] if isinstance(name, str) and name.endswith(":0")
                            else name)
        if k is None:
            raise FeedError(f"cannot feed {key!r}: not a placeholder of this step",
                            [f"feeds: {', '.join(self._index)}"])
        return k

    def _dispatch(self, given):
        """The signature whose feed shapes are those of ``given``."""
        shapes = [tuple(np.shape(v)) for v in given]
        for sig in self.signatures:
            if sig.shapes == shapes:
                return sig
        if len(self.signatures) == 1:  # its conversion names the feed that does not fit
            return self.signatures[0]
        fed = ", ".join(f"{f['name']}: {_type_str(np.asarray(v).dtype, s)}"
                        for f, v, s in zip(self.feeds, given, shapes))
        raise FeedError(f"no saved signature of this step takes these feed shapes: {fed}",
                        [f"saved with [{s.index}] {s.describe()}" for s in self.signatures],
                        hint="feed one of these shapes, or compile the step for this one "
                             "(call it once), then save it again: step.save(path) keeps "
                             "every signature compiled")

    # -- saving ------------------------------------------------------------------------------
    def state_members(self):
        """{member: bytes} of the current variables and random state."""
        return self.artifact.state_members(self._vars, [s.runner.rng_state()
                                                        for s in self.signatures])

    _key = None  # the key it was loaded with: saving again signs with it

    def save(self, path, key=None):
        """Write this step, with its current variables and random state, to ``path``.

        Args:
            key: signs the file (see ``load``); None: the key it was loaded with, else
                ``$GRAPHC_ARTIFACT_KEY``, else unsigned.
        Returns:
            The file's size in bytes.
        """
        return self.artifact.replaced(self.state_members()).write(
            path, key if key is not None else self._key)

    def export_python(self, path, signature=None):
        """Write a standalone module (imports only numpy) of a NumPy-backend step.

        The module runs ONE signature: ``signature`` (an index into ``signatures``) must be
        given when the step has several.
        """
        from .export import write_module
        return write_module(self.artifact.replaced(self.state_members()), path, signature)

    def __repr__(self):
        feeds = ", ".join(f"{f['name']}: {f['type']}" for f in self.feeds)
        many = f", {len(self.signatures)} signatures" if len(self.signatures) > 1 else ""
        return f"<LoadedStep {self.backend} ({feeds}){many}, {len(self._vars)} variables>"


class Signature:
    """One saved signature of a ``LoadedStep``: its feeds' shapes and its loaded code.

    Attributes:
        index: its position in the artifact (``sig<index>/`` members).
        feeds, fetches: the manifest's concrete descriptions.
        shapes: [feed shape tuple] in feed order.
        runner: a ``PythonRunner`` or ``NativeRunner``.
    """

    def __init__(self, artifact, index, info, rng_state, variables, recompile=False):
        self.artifact, self.index, self.info = artifact, index, info
        self.prefix = info["prefix"]
        self.feeds, self.fetches = info["feeds"], info["fetches"]
        self.shapes = [tuple(f["shape"]) for f in self.feeds]
        self._specs = [(tuple(f["shape"]), np.dtype(f["dtype"])) for f in self.feeds]
        self.var_arrays = [variables[int(k)] for k in info["variables"]]
        self.var_tuple = tuple(self.var_arrays)
        self.update_arrays = [variables[int(k)] for k in info["updates"]]
        self.has_value = [bool(f.get("value", True)) for f in self.fetches]
        if artifact.manifest["backend"] == "numpy":
            self.runner = PythonRunner(artifact, self, rng_state)
        else:
            self.runner = NativeRunner(artifact, self, rng_state, recompile)
        # ``NativeStep.run``: the variables updated in place, fetched values fresh copies
        fn = self.runner.fn
        self.direct = getattr(fn, "updates_in_place", False) and getattr(fn, "fetches_owned",
                                                                         False)

    def member(self, name):
        """This signature's member ``name`` (``ir.txt``, ``code/step.py``, ...)."""
        return self.prefix + name

    @property
    def ir(self):
        return self.artifact.text(self.member(IR))

    @property
    def source(self):
        backend = self.artifact.manifest["backend"]
        return self.artifact.text(self.member(SOURCE if backend == "numpy" else LLVM_IR))

    def describe(self):
        """``x: f32[128,64], y: i64[128]``."""
        return ", ".join(f"{f['name']}: {f['type']}" for f in self.feeds)

    def takes(self, given):
        """Whether ``given`` are arrays exactly as this signature's code takes them."""
        return all(takes_as_is(value, dtype, shape)
                   for value, (shape, dtype) in zip(given, self._specs))

    def convert(self, k, value):
        """Feed ``k`` as the code takes it; FeedError for what a Session refuses."""
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

    def __repr__(self):
        return f"<Signature [{self.index}] {self.describe()}>"


def _variable(values, k, info, artifact):
    arr = values.get(f"v{k}")
    shape, dtype = tuple(info["shape"]), np.dtype(info["dtype"])
    if arr is None or arr.shape != shape or arr.dtype != dtype:
        found = "nothing" if arr is None else _type_str(arr.dtype, arr.shape)
        raise ArtifactError(f"{artifact.where(VARIABLES)}: variable '{info['name']}' should be "
                            f"{_type_str(dtype, shape)}, found {found}")
    return aligned_copy(arr, dtype)  # writable, on a cache line (runtime.aligned)


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
    """A signature's generated NumPy module, executed; ``fn(*feeds, *variables)``."""

    MODULE = "graphc_loaded_step"

    def __init__(self, artifact, sig, rng_state):
        from .pystep import load_python_step
        code = sig.info["code"]
        arrays = artifact.arrays(sig.member(CONSTS))
        consts = [arrays[f"c{i}"] for i in range(int(code["consts"]))]
        self.generators = [generator(s) for s in rng_state["states"]]
        buffers = sig.info["buffers"]
        arena = aligned_zeros(int(buffers["arena_bytes"]), int(buffers["alignment"])) \
            if buffers.get("planned") else None
        self.source = artifact.text(sig.member(SOURCE))
        self.sites = code.get("sites", [])
        # one module name per signature: tracebacks name the module that failed
        self.module_name = self.MODULE + (f"_{sig.index}" if sig.index else "")
        # make_step uses a Generator passed as its seed as is (np.random.default_rng does), so
        # the step draws from these very objects and their state can be saved again.
        self.fn, self.module = load_python_step(self.source, consts, self.generators, arena,
                                                module_name=self.module_name)
        self.lock = step_lock()

    def rng_state(self):
        return {"kind": "numpy", "states": [g.bit_generator.state for g in self.generators]}

    def failure(self, exc):
        """The graphc error for an exception raised inside the generated code."""
        if type(exc).__name__ == "StepFault" and exc.args and exc.args[0] == "index":
            site = self.sites[exc.args[1]] if exc.args[1] < len(self.sites) else {}
            if site.get("check"):  # the message of runtime.step_errors, as when compiled
                return IndexCheck.from_json(site["check"]).error(exc.args[2], exc.args[3])
        if type(exc).__name__ == "StepFault" and exc.args and exc.args[0] == "numerics":
            site = self.sites[exc.args[1]] if exc.args[1] < len(self.sites) else {}
            if site.get("numerics"):  # runtime.numerics: the message, as when compiled
                fields = dict(site["numerics"], shape=tuple(site["numerics"]["shape"]))
                return numerics_error(NumericsSite(**fields),
                                      exc.args[2] if len(exc.args) > 2 else None)
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
            if tb.tb_frame.f_code.co_filename == f"<{self.module_name}>":
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
    """A signature's object code, loaded and bound; ``fn`` is a ``NativeStep``."""

    def __init__(self, artifact, sig, rng_state, recompile=False):
        from . import jit, objcache  # noqa: F401  (objcache: host_target's answer kept per boot)
        from .llvm_step import NativeStep
        problem = check_target(artifact.manifest.get("target") or {}, jit.host_target())
        code = artifact.members[sig.member(OBJECT)]
        loaded = None
        if problem is not None:
            code = _rebuild_or_refuse(artifact, sig, problem, recompile)
        elif sig.info["code"].get("library"):
            loaded = _opened_library(artifact, sig.info["code"]["library"], code)
        layout = decode_layout(sig.info["code"]["layout"], artifact.arrays(sig.member(CONSTS)))
        self.fn = NativeStep(layout, loaded if loaded is not None else jit.load_object(code))
        self.lock = step_lock()  # (NativeStep locks too; this also covers the update copies)
        state = np.array(rng_state["state"], np.uint64)
        if state.shape != self.fn.rng_state.shape:
            raise ArtifactError(f"{artifact.where(RNG)}: {state.size} random state words, the "
                                f"code has {self.fn.rng_state.size}")
        self.fn.rng_state[:] = state

    def rng_state(self):
        return {"kind": "native", "state": [int(v) for v in self.fn.rng_state]}

    @staticmethod
    def failure(exc):
        return GraphcError(f"the saved step failed at run time: {type(exc).__name__}: {exc}")


def _opened_library(artifact, library, object_code):
    """The signature's shared library (``code.library``) opened by the dynamic loader, or
    None where it cannot be (``GRAPHC_SHARED_STEPS=0``, not a plain library, a loader that
    refuses it): the object code then goes into MCJIT. The thread pool comes from the
    library when it has the pool this process would build and none is built yet, so a
    step that runs on the pool needs no LLVM either."""
    from . import parallel, shared_object
    if not shared_object.enabled():
        return None
    exports = library["exports"]
    try:
        loaded = shared_object.load(artifact.members[library["member"]], object_code, exports)
    except ArtifactError:
        return None
    if library.get("pool") and set(parallel.ENTRY_POINTS) <= set(exports) \
            and not parallel.built() and library["pool"] == parallel.code_digest():
        parallel.adopt(loaded, None)  # (its object code, if ever wanted, as parallel finds it)
    return loaded


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
    if not _features(built.get("features")) and host.features:  # nothing listed proves nothing
        return f"object code for another CPU: {what}", [
            "the artifact lists no CPU features, so they cannot be compared"]
    if not host.features:  # the host cannot list its features: trust only the same CPU
        if built.get("cpu") == host.cpu:
            return None
        return f"object code for another CPU: {what}", [
            "this machine does not report its CPU features, so they cannot be compared"]
    missing = sorted(_features(built.get("features")) - _features(host.features))
    if missing:
        return f"object code for another CPU: {what}", [
            "CPU features the code was compiled with that this machine lacks: "
            + ", ".join("+" + f for f in missing)]
    return None


def _rebuild_or_refuse(artifact, sig, problem, recompile):
    headline, details = problem
    same_kind = headline.startswith("object code for another CPU")
    if not (recompile and same_kind):
        hint = ("compile the step again on this machine (graphc compile MODEL.py -o ...)"
                + (", or gc.load(path, recompile=True) to rebuild the object code from the "
                   "LLVM IR stored in the artifact" if same_kind else ""))
        raise ArtifactError(f"{artifact.where()}: {headline}", details, hint=hint)
    from . import jit
    code = sig.info["code"]
    warnings.warn(f"{artifact.where()}: {headline}; compiling its stored LLVM IR for this CPU "
                  f"(signature [{sig.index}]: {sig.describe()})", RuntimeWarning, stacklevel=7)
    return jit.compile_ir(artifact.text(sig.member(LLVM_IR)), int(code.get("opt", 2)),
                          int(code.get("codegen_opt", 2))).object_code


# -- the native step's layout, as JSON -------------------------------------------------------------
def encode_layout(layout):
    """A ``StepLayout`` -> (JSON-able dict, {key: constant array}).

    Field by field, so that fields the code generator adds travel without changes here:
    a Slot becomes {"Slot": {...}}, a tuple {"tuple": [...]}, an array {"array": key}.
    """
    from .llvm_step import SlotColumns
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
        if isinstance(v, (list, SlotColumns)):
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
    from .llvm_step import NumericsSite, Slot, StepLayout
    records = {"Slot": Slot, "NumericsSite": NumericsSite}

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
