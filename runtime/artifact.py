"""The saved-step file (``.gcx``): one zip holding a manifest, the code, the IR and the state.

A step compiled for several feed signatures (a None batch dim run at 128 and at 40, say) saves
them all in one file: each signature has its own code, IR and buffer plan; the variables (the
step owns them, every signature updates the same arrays) are stored once.

Members of an artifact (format version 2)::

    manifest.json            what the step is (see below); written last, read first
    sig<K>/ir.txt            signature K's final text IR (for people and tools)
    sig<K>/code/step.py      NumPy backend: the generated module (``make_step(consts, arena,
                             rngs)``)
    sig<K>/code/step.o       LLVM backend: relocatable object code for the host it was built on
    sig<K>/code/step.ll      LLVM backend: the LLVM IR the object code was compiled from
    sig<K>/code/step.so      LLVM backend, where the saving system could link it: the object
                             code (and the thread pool's, when the step uses it) linked into
                             a plain shared library (``runtime.shared_object``), which
                             ``load`` opens without LLVM (the manifest's ``code.library``)
    sig<K>/code/consts.npz   constant arrays the code takes at load time (``c0``, ``c1``, ...)
    state/variables.npz      the variables' current values (``v0``, ``v1``, ..., shared)
    state/rng.json           {"signatures": [random state of each signature]}: NumPy
                             bit-generator states, or the native step's [call counter, key per
                             random op] (each signature's code owns its generators)

The manifest (JSON) records ``format`` ("graphc-step") and ``format_version``, the graphc,
Python, NumPy and llvmlite versions that wrote it, the backend, the target (triple, CPU name,
features) object code was built for, the variables, the fetch structure, the feeds and fetches
with shapes and dtypes (a dim that differs between signatures is None there), ``latest`` (the
signature compiled last) and ``signatures``: for each, its ``prefix`` (``sig<K>/``), concrete
feeds and fetches, the indices of the variables its code takes and of those it updates, the
buffer layout (arena size and every buffer's offset), a sha256 of its optimized program,
its code description and compile statistics. ``members`` holds the sha256 and size of every
member. Reading verifies the format version and every checksum before anything runs, so a
truncated or corrupted file or one from a newer graphc gives an ``ArtifactError``, never a crash.

Format version 1 (one signature, members without the ``sig<K>/`` prefix, the signature's
fields at the top of the manifest) still loads: ``Artifact.signatures`` reads both.

Loading runs code from the file (Python source or machine code): load only artifacts you
trust, as with pickles. Checksums catch damage, not intent: anyone who edits a file can
recompute them. To make trust checkable, save and load with a key (``key=`` or the
environment variable ``GRAPHC_ARTIFACT_KEY``): ``write`` then adds ``manifest.hmac``, an
HMAC-SHA256 of the manifest's exact bytes (the manifest holds every member's sha256), and
``read`` with a key refuses a file whose MAC is missing or wrong before it parses anything
else. Sizes are checked from the zip directory before any member is decompressed.

This module imports only the standard library, numpy and ``graphc.errors``.
"""
import hashlib
import hmac
import io
import json
import os
import re
import zipfile

import numpy as np

from graphc.errors import ArtifactError

from . import durable

FORMAT = "graphc-step"
FORMAT_VERSION = 2
MANIFEST = "manifest.json"
MAC = "manifest.hmac"  # HMAC-SHA256 (hex) of the manifest's bytes, when saved with a key
KEY_ENV = "GRAPHC_ARTIFACT_KEY"
MAX_MANIFEST_BYTES = 64 << 20
MAX_RATIO = 200  # uncompressed / compressed bytes of a member: text reaches ~20, bombs ~1000
IR, SOURCE, OBJECT, LLVM_IR = "ir.txt", "code/step.py", "code/step.o", "code/step.ll"
LIBRARY = "code/step.so"
CONSTS, VARIABLES, RNG = "code/consts.npz", "state/variables.npz", "state/rng.json"
_STORED = (".o", ".so", ".npz")  # already dense: compressing costs load time for little
_SIGNATURE_FIELDS = ("feeds", "variables", "updates", "buffers", "program_sha256", "code",
                     "stats")  # a version-1 manifest keeps them at its top
_TEMPORARY = re.compile(r"\.gcx-[a-z0-9_]{8}(\.tmp)?")  # Artifact.write's temporary files
_EPOCH = (1980, 1, 1, 0, 0, 0)  # fixed member times: the same step saves to the same bytes


class Artifact:
    """A saved step in memory: the manifest (a JSON-able dict) and its members (name -> bytes).

    Args:
        manifest: the manifest without ``members`` (``write`` adds the checksums).
        members: {member name: bytes}.
        path: the file it was read from, if any (for messages).
    Example:
        >>> art = read("step.gcx")
        >>> art.manifest["backend"], art.text(IR)[:5]
        ('llvm', 'graph')
    """

    signed = False  # True when ``read`` verified the manifest's MAC with a key

    def __init__(self, manifest, members, path=None):
        self.manifest, self.members, self.path = manifest, dict(members), path

    def text(self, name):
        """A text member (UTF-8)."""
        return self.members[name].decode("utf-8")

    def arrays(self, name):
        """The arrays of an ``.npz`` member as {key: array} (no pickles)."""
        return unpack_arrays(self.members[name], self.where(name))

    def json(self, name):
        return json.loads(self.members[name].decode("utf-8"))

    def where(self, member=None):
        where = f"'{self.path}'" if self.path else "the artifact"
        return f"{where} member '{member}'" if member else where

    def replaced(self, members):
        """A copy with the given members ({name: bytes}) replaced or added."""
        return Artifact(dict(self.manifest), {**self.members, **members}, self.path)

    @property
    def version(self):
        return int(self.manifest.get("format_version", FORMAT_VERSION))

    def signatures(self):
        """Every saved signature as a dict of the same form, whatever the format version.

        Returns:
            [{"prefix", "feeds", "fetches" (flat, concrete), "variables" (indices of the
            variables the code takes, in call order), "updates" (indices of the variables
            its update results go to), "buffers", "program_sha256", "code", "stats"}], in
            the order they were compiled.
        Example:
            >>> [s["feeds"][0]["type"] for s in read("step.gcx").signatures()]
            ['f32[128,64]', 'f32[40,64]']
        """
        m = self.manifest
        if self.version >= 2:
            return m["signatures"]
        one = {k: m.get(k) for k in _SIGNATURE_FIELDS}  # version 1: the top holds its fields
        one.update(prefix="", fetches=m["fetches"]["flat"],
                   variables=list(range(len(m["variables"]))))
        return [one]

    def latest(self):
        """The index of the signature compiled last (the one a version-1 file holds)."""
        return int(self.manifest.get("latest", 0))

    def rng_states(self):
        """[the random state of each signature] from ``state/rng.json``."""
        state = self.json(RNG)
        return state["signatures"] if self.version >= 2 else [state]

    def state_members(self, variables, rng_states):
        """{member: bytes} holding ``variables`` (arrays in manifest order) and the random
        states of the signatures, in this artifact's own format version."""
        rng = {"signatures": list(rng_states)} if self.version >= 2 else rng_states[0]
        return {VARIABLES: pack_arrays({f"v{k}": a for k, a in enumerate(variables)}),
                RNG: json.dumps(rng).encode()}

    def write(self, path, key=None):
        """Write the artifact to ``path`` atomically and durably (``runtime.durable``: a
        temporary file fsynced and renamed over it, the folder fsynced, the umask's mode;
        temporaries of saves that died, older than an hour, removed first).

        Args:
            path: the file to write.
            key: str or bytes; signs the manifest (``manifest.hmac``). None: the
                environment's ``GRAPHC_ARTIFACT_KEY``, if set; else the file is unsigned.
        Returns:
            The number of bytes written.
        Raises:
            ArtifactError: the OS refused (full disk, read-only folder), naming ``path``.
        """
        key = artifact_key(key)
        manifest = dict(self.manifest)
        manifest["members"] = {name: {"sha256": _sha256(data), "bytes": len(data)}
                               for name, data in sorted(self.members.items())}
        raw = json.dumps(manifest, indent=1, sort_keys=True).encode()
        folder = os.path.dirname(os.path.abspath(path))
        durable.remove_stale_temporaries(folder, _TEMPORARY)

        def write(f):
            with zipfile.ZipFile(f, "w") as z:
                for name, data in sorted(self.members.items()):
                    _add(z, name, data)
                _add(z, MANIFEST, raw)
                if key is not None:
                    _add(z, MAC, mac_of(raw, key).encode())
        durable.replace_file(path, write, "saved step", prefix=".gcx-")
        return os.path.getsize(path)


def artifact_key(key=None):
    """The signing key as bytes: ``key`` (str or bytes), else ``$GRAPHC_ARTIFACT_KEY``, else
    None (no signing, no verification)."""
    if key is None:
        key = os.environ.get(KEY_ENV) or None
    if key is None:
        return None
    if isinstance(key, str):
        key = key.encode("utf-8")
    if not isinstance(key, (bytes, bytearray)) or not key:
        raise ArtifactError("an artifact key must be a non-empty str or bytes",
                            hint=f"pass key='...' or set {KEY_ENV}")
    return bytes(key)


def mac_of(raw_manifest, key):
    """HMAC-SHA256 (hex) of a manifest's bytes under ``key`` (bytes)."""
    return hmac.new(key, raw_manifest, hashlib.sha256).hexdigest()


def _add(z, name, data):
    info = zipfile.ZipInfo(name, _EPOCH)
    info.compress_type = zipfile.ZIP_STORED if name.endswith(_STORED) \
        else zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    z.writestr(info, data, compresslevel=1)


def _sha256(data):
    return hashlib.sha256(data).hexdigest()


def pack_arrays(arrays):
    """{key: array} -> the bytes of an uncompressed ``.npz``."""
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})  # keeps 0-d as 0-d
    return buf.getvalue()


def unpack_arrays(data, where="an artifact member"):
    """The bytes of an ``.npz`` -> {key: array}; ArtifactError when they do not parse."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as exc:  # noqa: BLE001  (a checksum-valid member that is not an npz)
        raise ArtifactError(f"{where} is not a readable array archive: {exc}") from None


def read(path, key=None):
    """Read and verify an artifact file.

    Args:
        path: a ``.gcx`` file written by ``step.save``.
        key: str or bytes: the file must carry a valid ``manifest.hmac`` made with it. None:
            ``$GRAPHC_ARTIFACT_KEY`` when set, else no MAC is required (one present is not
            checked). False: no MAC is checked, whatever the environment (``graphc
            inspect``, which runs no code, then reports ``signature_status``).
    Returns:
        An ``Artifact`` whose members all match the manifest's checksums (``signed``: True
        when a MAC was verified).
    Raises:
        ArtifactError: not a zip or truncated, no manifest, a missing or wrong MAC (with a
            key), another format, a format version newer than this graphc reads, a member
            missing, larger than declared or failing its checksum.
    Example:
        >>> read("step.gcx").manifest["feeds"][0]["name"]
        'x'
    """
    key = None if key is False else artifact_key(key)
    try:
        with zipfile.ZipFile(path) as z:
            raw = _read_manifest(z, path, key)
            manifest = _manifest(raw, path)
            present = set(z.namelist())
            missing = sorted(set(manifest["members"]) - present)
            if missing:
                raise ArtifactError(f"'{path}' is incomplete: member(s) "
                                    + ", ".join(f"'{m}'" for m in missing) + " missing",
                                    hint="the file is damaged: save the step again")
            for name, info in manifest["members"].items():
                _check_size(z.getinfo(name), info, path)
            members = {name: z.read(name) for name in manifest["members"]}
    except ArtifactError:
        raise
    except FileNotFoundError:
        raise ArtifactError(f"no artifact at '{path}'") from None
    except Exception as exc:  # noqa: BLE001  (zip, zlib, JSON and OS errors alike)
        raise ArtifactError(f"'{path}' is not a readable graphc artifact (truncated or "
                            f"corrupted?): {type(exc).__name__}: {exc}",
                            hint="save the step again with step.save(path)") from None
    for name, info in manifest["members"].items():
        data = members[name]
        if len(data) != info.get("bytes") or _sha256(data) != info.get("sha256"):
            raise ArtifactError(f"'{path}' is corrupted: member '{name}' does not match its "
                                "checksum in the manifest",
                                [f"expected {info.get('bytes')} bytes, sha256 "
                                 f"{str(info.get('sha256'))[:16]}...; found {len(data)} bytes, "
                                 f"sha256 {_sha256(data)[:16]}..."],
                                hint="the file is damaged: save the step again")
    art = Artifact(manifest, members, path)
    art.signed = key is not None
    return art


def signature_status(path, key=None):
    """How ``path`` is signed: "valid", "INVALID" (another key, or changed since),
    "unsigned", or "signed (no key given to check it)"."""
    key = artifact_key(key)
    with zipfile.ZipFile(path) as z:
        if MAC not in z.namelist():
            return "unsigned"
        if key is None:
            return "signed (no key given to check it)"
        try:
            _read_manifest(z, path, key)
        except ArtifactError:
            return "INVALID (changed after saving, or signed with another key)"
    return "valid (HMAC-SHA256, key matches)"


def _read_manifest(z, path, key):
    """The manifest's bytes (size-checked), after its MAC when there is a key."""
    try:
        info = z.getinfo(MANIFEST)
    except KeyError:
        raise ArtifactError(f"'{path}' has no {MANIFEST}: not a graphc artifact, or "
                            "truncated", hint="artifacts are written by step.save(path)") from None
    _check_size(info, None, path, MAX_MANIFEST_BYTES)
    raw = z.read(MANIFEST)
    if key is None:
        return raw
    try:
        _check_size(z.getinfo(MAC), None, path, 1024)
        stored = z.read(MAC).decode("ascii").strip()
    except (KeyError, UnicodeDecodeError):
        raise ArtifactError(f"'{path}' is not signed, and a key was given (key= or "
                            f"{KEY_ENV}): refusing to load it",
                            hint="load only artifacts you trust; re-save this one with "
                                 "step.save(path, key=...) where it was made") from None
    if not hmac.compare_digest(stored.encode("ascii"), mac_of(raw, key).encode("ascii")):
        raise ArtifactError(f"'{path}': its signature (manifest.hmac) does not match the key:"
                            " the file was changed after it was saved, or saved with "
                            "another key", hint="load only artifacts you trust")
    return raw


def _check_size(info, declared, path, limit=None):
    """Refuse a member from its zip directory entry, before decompressing it: larger than
    ``limit`` or than the manifest ``declared``, or compressed suspiciously well."""
    size = info.file_size
    want = declared.get("bytes") if isinstance(declared, dict) else None
    if declared is not None and size != want:
        raise ArtifactError(f"'{path}' is corrupted: member '{info.filename}' holds {size} "
                            f"bytes, the manifest says {want!r}",
                            hint="the file is damaged: save the step again")
    if limit is not None and size > limit:
        raise ArtifactError(f"'{path}': member '{info.filename}' is {size} bytes, more than "
                            f"the {limit} a graphc artifact's {info.filename} may have")
    if size > (1 << 16) and size > MAX_RATIO * max(info.compress_size, 1):
        raise ArtifactError(f"'{path}': member '{info.filename}' would expand from "
                            f"{info.compress_size} to {size} bytes (more than {MAX_RATIO}:1): "
                            "refusing to decompress it",
                            hint="graphc stores arrays and object code uncompressed; this "
                                 "file was not written by graphc")


def _manifest(raw, path):
    """The manifest, checked for format and version before any other member is read."""
    manifest = json.loads(raw.decode("utf-8"))
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ArtifactError(f"'{path}' is not a graphc artifact: its manifest's format is "
                            f"{manifest.get('format') if isinstance(manifest, dict) else None!r}"
                            f", expected {FORMAT!r}")
    version = manifest.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ArtifactError(f"'{path}': invalid artifact format version {version!r}")
    if version > FORMAT_VERSION:
        raise ArtifactError(
            f"'{path}' has artifact format version {version}, newer than this graphc reads",
            [f"written by graphc {manifest.get('graphc_version', '?')}; this is graphc "
             f"{_version()}, which reads format versions up to {FORMAT_VERSION}"],
            hint="upgrade graphc, or save the step again with this version")
    members = manifest.get("members")
    if not isinstance(members, dict) or not all(
            isinstance(k, str) and isinstance(v, dict) and type(v.get("bytes")) is int
            and isinstance(v.get("sha256"), str) for k, v in members.items()):
        raise ArtifactError(f"'{path}': the manifest has no valid member table")
    return manifest


def _version():
    try:
        from graphc import __version__
        return __version__
    except ImportError:  # pragma: no cover  (graphc.runtime used outside graphc)
        return "?"


def graphc_version():
    """The version of graphc writing an artifact."""
    return _version()


# -- the fetch structure, as JSON ----------------------------------------------------------------
def encode_structure(skeleton):
    """A fetch nest whose leaves are fetch indices -> JSON: int, ["list"|"tuple", items],
    ["dict", [[key, item], ...]], ["namedtuple", type name, fields, items].

    Raises:
        ArtifactError: a dict key that JSON cannot hold (not str, int, float, bool or None).
    """
    s = skeleton
    if isinstance(s, int):
        return s
    if isinstance(s, dict):
        for k in s:
            if not isinstance(k, (str, int, float, bool, type(None))):
                raise ArtifactError(f"cannot save a fetch dict keyed by {type(k).__name__} "
                                    f"{k!r}", hint="key fetch dicts by strings")
        return ["dict", [[k, encode_structure(v)] for k, v in s.items()]]
    if isinstance(s, tuple) and hasattr(s, "_fields"):
        return ["namedtuple", type(s).__name__, list(s._fields),
                [encode_structure(v) for v in s]]
    kind = "tuple" if isinstance(s, tuple) else "list"
    return [kind, [encode_structure(v) for v in s]]


def decode_structure(code):
    """JSON from ``encode_structure`` -> ``rebuild(values)`` giving the fetch nest."""
    import collections
    if isinstance(code, int):
        return lambda values: values[code]
    kind = code[0]
    if kind == "dict":
        parts = [(k, decode_structure(v)) for k, v in code[1]]
        return lambda values: {k: f(values) for k, f in parts}
    if kind == "namedtuple":
        cls = collections.namedtuple(code[1], code[2])
        parts = [decode_structure(v) for v in code[3]]
        return lambda values: cls(*[f(values) for f in parts])
    if kind not in ("list", "tuple"):
        raise ArtifactError(f"unknown fetch structure {kind!r} in the manifest")
    parts = [decode_structure(v) for v in code[1]]
    make = tuple if kind == "tuple" else list
    return lambda values: make(f(values) for f in parts)
