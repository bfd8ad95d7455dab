"""Saved steps: save, load in a process without the compiler, train on bit for bit; the
standalone NumPy module; feeds checked from the manifest; damaged, future and foreign
artifacts refused with ArtifactError."""
import collections
import importlib.util
import io
import json
import pathlib
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest

import graphc as gc
from graphc.errors import ArtifactError, CompileError, FeedError
from graphc.runtime import artifact as A
from tests.support.paths import load_npz

BATCH, STEPS = 16, 4
Pair = collections.namedtuple("Pair", "accuracy logits_mean")


def build_model():
    """An MLP with unseeded dropout (OS entropy: only a saved RNG state reproduces it), Adam,
    and a nested fetch structure."""
    x = gc.placeholder(gc.float32, [BATCH, 64], name="x")
    y = gc.placeholder(gc.int64, [BATCH], name="y")
    with gc.name_scope("dense1"):
        W1 = gc.Variable(gc.initializers.he_normal(seed=0)([64, 32]), name="W")
        b1 = gc.Variable(gc.zeros([32]), name="b")
        h = gc.nn.dropout(gc.nn.relu(gc.matmul(x, W1) + b1), 0.8)
    with gc.name_scope("dense2"):
        W2 = gc.Variable(gc.initializers.glorot_uniform(seed=1)([32, 10]), name="W")
        b2 = gc.Variable(gc.zeros([10]), name="b")
        logits = gc.matmul(h, W2) + b2
    loss = gc.reduce_mean(gc.nn.sparse_softmax_cross_entropy_with_logits(labels=y,
                                                                         logits=logits))
    acc = gc.reduce_mean(gc.cast(gc.equal(gc.argmax(logits, 1), y), gc.float32))
    train = gc.train.AdamOptimizer(0.01).minimize(loss)
    fetches = {"loss": loss, "parts": (Pair(acc, gc.reduce_mean(logits)), [gc.reduce_sum(h)]),
               "train": train}
    return fetches, [x, y]


def batches(n, seed=0):
    rs = np.random.RandomState(seed)
    return [{"x": rs.rand(BATCH, 64).astype(np.float32), "y": rs.randint(0, 10, BATCH)}
            for _ in range(n)]


def flat(result):
    """The leaves of the test's fetch structure, by name."""
    pair, (h_sum,) = result["parts"]
    return {"loss": result["loss"], "accuracy": pair.accuracy,
            "logits_mean": pair.logits_mean, "h_sum": h_sum}


def same_bits(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def assert_same(got, ref):
    """Every fetched value of one step, bit for bit."""
    assert got.keys() == ref.keys()
    for name, value in ref.items():
        assert same_bits(got[name], value), (name, got[name], value)


class Trained:
    """A step trained 2 steps and saved, then STEPS more steps as the reference."""

    def __init__(self, backend, folder):
        graph = gc.Graph()
        with graph.as_default():
            fetches, feeds = build_model()
            step = gc.compile(fetches, feeds=feeds, backend=backend)
        for feed in batches(2, seed=1):
            step(**feed)
        self.path = str(folder / f"trained-{backend}.gcx")
        self.size = step.save(self.path)
        self.feeds = batches(STEPS)
        self.refs, self.variables = [], []
        for feed in self.feeds:
            result = step(**feed)
            self.refs.append(flat(result))
            self.variables.append({k: v.copy() for k, v in step.variables.items()})
        assert result["train"] is None and type(result["parts"][0]) is Pair
        self.step, self.backend = step, backend


_TRAINED = {}


def trained_step(backend, tmp_path_factory):
    """One Trained per backend for the whole module (compiling is the slow part)."""
    if backend not in _TRAINED:
        _TRAINED[backend] = Trained(backend, tmp_path_factory.mktemp(backend))
    return _TRAINED[backend]


@pytest.fixture(params=["numpy", "llvm"])
def trained(request, tmp_path_factory):
    return trained_step(request.param, tmp_path_factory)


@pytest.fixture
def trained_numpy(tmp_path_factory):
    return trained_step("numpy", tmp_path_factory)


@pytest.fixture
def trained_llvm(tmp_path_factory):
    return trained_step("llvm", tmp_path_factory)


# -- a process without the compiler -----------------------------------------------------------
BLOCKER = """
import sys
BLOCKED = {blocked!r}
class NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in BLOCKED):
            raise ImportError(f"{{name}} is not installed here")
        return None
sys.meta_path.insert(0, NotInstalled())
"""

RUN_LOADED = """
import numpy as np
import graphc as gc
assert not hasattr(gc, "compile") and not hasattr(gc, "placeholder"), "compiler imported"
step = gc.load(sys.argv[1])
feeds = np.load(sys.argv[2])
out = {{}}
for k in range({steps}):
    r = step(x=feeds[f"x{{k}}"], y=feeds[f"y{{k}}"])
    pair, (h_sum,) = r["parts"]
    assert type(pair).__name__ == "Pair" and pair._fields == ("accuracy", "logits_mean")
    assert isinstance(r["parts"], tuple) and isinstance(r["parts"][1], list)
    assert r["train"] is None
    for name, v in (("loss", r["loss"]), ("accuracy", pair.accuracy),
                    ("logits_mean", pair.logits_mean), ("h_sum", h_sum)):
        out[f"{{name}}{{k}}"] = v
step.save(sys.argv[4])
np.savez(sys.argv[3], **out)
bad = [m for m in sys.modules if m.startswith(BLOCKED)]
assert not bad, bad
print("ok")
"""


def run_isolated(tmp_path, script, args, blocked):
    path = tmp_path / "isolated.py"
    path.write_text(BLOCKER.format(blocked=tuple(blocked)) + textwrap.dedent(script))
    proc = subprocess.run([sys.executable, str(path), *map(str, args)], capture_output=True,
                          text=True, timeout=120, cwd=str(tmp_path))
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr
    return proc


def save_feeds(tmp_path, feeds):
    path = tmp_path / "feeds.npz"
    np.savez(path, **{f"{k}{i}": f[k] for i, f in enumerate(feeds) for k in ("x", "y")})
    return path


def test_loaded_without_the_compiler_trains_bit_for_bit(trained, tmp_path):
    blocked = ["graphc.ir", "graphc.codegen"] + (["llvmlite"] if trained.backend == "numpy"
                                                 else [])
    n = STEPS - 1
    out, again = tmp_path / "out.npz", tmp_path / "again.gcx"
    run_isolated(tmp_path, RUN_LOADED.format(steps=n),
                 [trained.path, save_feeds(tmp_path, trained.feeds[:n]), out, again], blocked)
    got = load_npz(out)
    for k in range(n):
        for name, ref in trained.refs[k].items():
            assert same_bits(got[f"{name}{k}"], ref), (k, name)
    # saved again in that process: the trained variables and the random state carry on
    step = gc.load(str(again))
    for name, ref in trained.variables[n - 1].items():
        assert same_bits(step.variables[name], ref), name
    assert_same(flat(step(**trained.feeds[n])), trained.refs[n])


def test_exported_module_trains_identically_importing_only_numpy(trained_numpy, tmp_path):
    module = tmp_path / "mlp_step.py"
    gc.load(trained_numpy.path).export_python(str(module))
    script = """
    import numpy as np, importlib.util
    spec = importlib.util.spec_from_file_location("mlp_step", sys.argv[1])
    m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
    feeds = np.load(sys.argv[2])
    out = {}
    for k in range(%d):
        r = m.step({"x": feeds[f"x{k}"]}, y=feeds[f"y{k}"])
        out[f"loss{k}"], out[f"h_sum{k}"] = r["loss"], r["parts"][1][0]
    for i, name in enumerate(m.VARIABLE_NAMES):
        out[f"var{i}"] = m.variables[name]
    np.savez(sys.argv[3], **out)
    assert not [n for n in sys.modules if n.startswith("graphc")]
    print("ok")
    """ % STEPS
    out = tmp_path / "out.npz"
    run_isolated(tmp_path, script, [module, save_feeds(tmp_path, trained_numpy.feeds), out],
                 ["graphc", "llvmlite", "scipy", "networkx"])
    got = load_npz(out)
    for k in range(STEPS):
        assert same_bits(got[f"loss{k}"], trained_numpy.refs[k]["loss"])
        assert same_bits(got[f"h_sum{k}"], trained_numpy.refs[k]["h_sum"])
    names = list(trained_numpy.step.variables)
    assert all(same_bits(got[f"var{i}"], trained_numpy.variables[-1][n])
               for i, n in enumerate(names))


def import_file(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_compiled_step_exports_its_current_state(tmp_path, trained_llvm):
    graph = gc.Graph()
    with graph.as_default():
        fetches, feeds = build_model()
        step = gc.compile(fetches, feeds=feeds, backend="numpy")
    step(**batches(1, seed=5)[0])
    size = step.export_python(str(tmp_path / "exported_step.py"))
    module = import_file(tmp_path / "exported_step.py", "exported_step")
    assert size > 1000 and module.FEEDS == (("x", (BATCH, 64), "float32"),
                                            ("y", (BATCH,), "int64"))
    for feed in batches(3):
        assert_same(flat(module.step(**feed)), flat(step(**feed)))
    with pytest.raises(ValueError, match=r"feed 'x' expects shape \(16, 64\), got \(3, 64\)"):
        module.step(x=np.zeros((3, 64), np.float32), y=np.zeros(BATCH, np.int64))
    with pytest.raises(CompileError, match="export_python needs a NumPy-backend step"):
        trained_llvm.step.export_python(str(tmp_path / "no.py"))
    with pytest.raises(ArtifactError, match="only NumPy-backend steps export as Python"):
        gc.load(trained_llvm.path).export_python(str(tmp_path / "no.py"))


# -- the manifest and the call contract -------------------------------------------------------
def test_manifest_describes_the_step(trained):
    m = A.read(trained.path).manifest
    assert m["format"] == "graphc-step" and m["format_version"] == A.FORMAT_VERSION
    assert m["backend"] == trained.backend and m["graphc_version"] == gc.__version__
    assert [(f["name"], f["type"]) for f in m["feeds"]] == [("x", "f32[16,64]"),
                                                            ("y", "i64[16]")]
    assert [(v["name"], v["type"]) for v in m["variables"][:4]] == [
        ("dense1/W", "f32[64,32]"), ("dense1/b", "f32[32]"), ("dense2/W", "f32[32,10]"),
        ("dense2/b", "f32[10]")]
    assert len(m["variables"]) == 4 + 2 + 8  # Adam: two powers, m and v per variable
    plan = trained.step.program.plan
    (sig,) = m["signatures"]  # one feed shape compiled: one signature
    assert m["latest"] == 0 and sig["prefix"] == "sig0/" and sig["feeds"] == m["feeds"]
    assert sig["buffers"]["arena_bytes"] == plan.arena_bytes and \
        len(sig["buffers"]["offsets"]) == len(plan.offsets)
    assert sig["variables"] == list(range(14)) and len(sig["updates"]) == 14
    members = set(m["members"])
    code = {A.SOURCE} if trained.backend == "numpy" else {A.OBJECT, A.LLVM_IR}
    if "library" in sig["code"]:  # (where this system links: tests/runtime/test_aot_library.py)
        code.add(A.LIBRARY)
    assert members == {"sig0/" + c for c in {A.IR, A.CONSTS} | code} | {A.VARIABLES, A.RNG}
    if trained.backend == "llvm":
        from graphc.runtime import jit
        assert m["target"] == dict(jit.host_target()._asdict())
    assert A.read(trained.path).text("sig0/" + A.IR) == trained.step.ir("final")


def test_same_step_saves_to_the_same_bytes_and_program_hash(trained, tmp_path):
    a, b = tmp_path / "a.gcx", tmp_path / "b.gcx"
    trained.step.save(str(a))
    trained.step.save(str(b))
    assert a.read_bytes() == b.read_bytes()
    assert A.read(str(a)).manifest["signatures"][0]["program_sha256"] == \
        A.read(trained.path).manifest["signatures"][0]["program_sha256"]


def test_llvm_load_runs_no_llvm_optimizer(trained, monkeypatch):
    from graphc.runtime import jit

    def refuse(*args, **kwargs):
        raise AssertionError("compile_ir called while loading")
    monkeypatch.setattr(jit, "compile_ir", refuse)
    step = gc.load(trained.path)
    assert_same(flat(step(**trained.feeds[0])), trained.refs[0])


def test_feeds_checked_from_the_manifest(trained_numpy):
    step = gc.load(trained_numpy.path)
    x, y = trained_numpy.feeds[0]["x"], trained_numpy.feeds[0]["y"]
    with pytest.raises(FeedError, match=r"placeholder 'x' expects f32\[16,64\], fed "
                                        r"f32\[8,64\](.|\n)*test_aot.py:\d+"):
        step(x=x[:8], y=y)
    with pytest.raises(FeedError, match=r"cannot feed a float64 value to int64 placeholder 'y'"):
        step(x=x, y=y.astype(np.float64))
    with pytest.raises(FeedError, match=r"1 placeholder\(s\) must be fed: y(.|\n)*'y': "
                                        r"i64\[16\]"):
        step(x=x)
    with pytest.raises(FeedError, match=r"cannot feed 'z': not a placeholder(.|\n)*x, y"):
        step(x=x, y=y, z=y)
    # the call forms of a CompiledStep: a dict by name, 'x:0', keywords; lists are converted
    r1 = step({"x:0": x.tolist(), "y": y.astype(np.int32)})
    assert same_bits(r1["loss"], trained_numpy.refs[0]["loss"])
    assert isinstance(r1["loss"], np.float32) and "LoadedStep numpy" in repr(step)


def test_unoptimized_step_round_trips(tmp_path):
    graph = gc.Graph()
    with graph.as_default():
        fetches, feeds = build_model()
        step = gc.compile(fetches, feeds=feeds, optimize=False)
    path = str(tmp_path / "ref.gcx")
    step.save(path)
    loaded = gc.load(path)
    assert loaded.manifest["signatures"][0]["buffers"]["planned"] is False and \
        not loaded.manifest["optimized"]
    for feed in batches(2):
        assert_same(flat(loaded(**feed)), flat(step(**feed)))


def test_failures_in_a_loaded_step_name_the_node(tmp_path):
    x = gc.placeholder(gc.float32, [4], name="x")
    i = gc.placeholder(gc.int64, [3], name="i")
    y = gc.gather(gc.log(x), i)
    step = gc.compile([y], [x, i], check_numerics=True)
    step.save(str(tmp_path / "checked.gcx"))
    loaded = gc.load(str(tmp_path / "checked.gcx"))
    ones = np.ones(4, np.float32)
    assert same_bits(loaded(x=ones, i=np.arange(3))[0], np.zeros(3, np.float32))
    with pytest.raises(gc.errors.NumericsError,
                       match=r"check_numerics: log 'Log' produced NaN or Inf(.|\n)*4 NaN and 0 "
                             r"Inf among 4 values(.|\n)*test_aot.py:\d+"):
        loaded(x=-ones, i=np.arange(3))
    with pytest.raises(gc.errors.InvalidArgumentError,
                       match=r"gather 'GatherV2': index 9 at \[2\] is outside \[0, 4\)"
                             r"(.|\n)*test_aot.py:\d+"):
        loaded(x=ones, i=np.array([0, 1, 9]))


def test_a_step_never_compiled_cannot_be_saved(tmp_path):
    x = gc.placeholder(gc.float32, [None, 3], name="x")
    step = gc.compile([gc.reduce_sum(x)], [x])
    with pytest.raises(gc.errors.GraphError, match="call it once"):
        step.save(str(tmp_path / "never.gcx"))


# -- what can go wrong -------------------------------------------------------------------------
def rewrite(path, out, manifest=None, members=None, drop=()):
    """Copy an artifact zip changing raw members or the manifest, checksums left as they were."""
    with zipfile.ZipFile(path) as z:
        entries = {n: z.read(n) for n in z.namelist()}
    if manifest is not None:
        m = json.loads(entries[A.MANIFEST])
        manifest(m)
        entries[A.MANIFEST] = json.dumps(m).encode()
    entries.update(members or {})
    with zipfile.ZipFile(out, "w") as z:
        for name, data in entries.items():
            if name not in drop:
                z.writestr(name, data)
    return str(out)


def test_truncated_and_corrupted_files_are_refused(trained_numpy, tmp_path):
    data = pathlib.Path(trained_numpy.path).read_bytes()
    bad = tmp_path / "bad.gcx"
    for cut in (0, 10, len(data) // 3, len(data) // 2, len(data) - 30, len(data) - 1):
        bad.write_bytes(data[:cut])
        with pytest.raises(ArtifactError, match="truncated"):
            gc.load(str(bad))
    # a flipped byte anywhere: refused, or (a byte nothing reads) the very same step
    loaded = 0
    for pos in range(7, len(data), len(data) // 23):
        bad.write_bytes(data[:pos] + bytes([data[pos] ^ 0x5A]) + data[pos + 1:])
        try:
            step = gc.load(str(bad))
        except ArtifactError:
            continue
        loaded += 1
        assert same_bits(flat(step(**trained_numpy.feeds[0]))["loss"],
                         trained_numpy.refs[0]["loss"])
    assert loaded < 5


def test_member_not_matching_its_checksum_is_refused(trained, tmp_path):
    code = "sig0/" + (A.SOURCE if trained.backend == "numpy" else A.OBJECT)
    with zipfile.ZipFile(trained.path) as z:
        original = z.read(code)
    patched = original[:100] + bytes([original[100] ^ 1]) + original[101:]
    path = rewrite(trained.path, tmp_path / "patched.gcx", members={code: patched})
    with pytest.raises(ArtifactError, match=f"corrupted: member '{code}' does not match its "
                                            "checksum"):
        gc.load(path)
    path = rewrite(trained.path, tmp_path / "missing.gcx", drop=(A.VARIABLES,))
    with pytest.raises(ArtifactError,
                       match=r"incomplete: member\(s\) 'state/variables.npz' missing"):
        gc.load(path)


def test_not_an_artifact(tmp_path):
    (tmp_path / "text.gcx").write_text("hello")
    with pytest.raises(ArtifactError, match="not a readable graphc artifact.*BadZipFile"):
        gc.load(str(tmp_path / "text.gcx"))
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as z:
        z.writestr("readme.txt", "hi")
    with pytest.raises(ArtifactError, match="has no manifest.json: not a graphc artifact"):
        gc.load(str(tmp_path / "other.zip"))
    with pytest.raises(ArtifactError, match="no artifact at"):
        gc.load(str(tmp_path / "nowhere.gcx"))


def test_format_from_the_future_is_refused(trained_numpy, tmp_path):
    path = rewrite(trained_numpy.path, tmp_path / "future.gcx",
                   manifest=lambda m: m.update(format_version=A.FORMAT_VERSION + 1,
                                               graphc_version="9.0"))
    with pytest.raises(ArtifactError, match=r"format version 3, newer than this graphc reads"
                                            r"(.|\n)*written by graphc 9.0(.|\n)*up to 2"):
        gc.load(path)


def test_malformed_manifest_is_an_artifact_error(trained, tmp_path):
    path = rewrite(trained.path, tmp_path / "m.gcx",
                   manifest=lambda m: m["signatures"][0]["feeds"][0].pop("dtype"))
    with pytest.raises(ArtifactError, match=r"manifest field signatures\[0\]\.feeds\[0\]\.dtype "
                                            r"is missing"):
        gc.load(path)
    path = rewrite(trained.path, tmp_path / "v.gcx",
                   manifest=lambda m: m["variables"][0].update(shape=[3]))
    with pytest.raises(ArtifactError, match=r"variable 'dense1/W' should be f32\[3\], found "
                                            r"f32\[64,32\]|layout\.variables\[0\] must be "
                                            r"float32\[3\], found .float32\[64, 32\]"):
        gc.load(path)


def set_target(**changes):
    def edit(m):
        m["target"].update({k: (v(m["target"][k]) if callable(v) else v)
                            for k, v in changes.items()})
    return edit


def test_object_code_for_another_cpu_is_refused_or_recompiled(trained_llvm, tmp_path):
    path = rewrite(trained_llvm.path, tmp_path / "cpu.gcx",
                   manifest=set_target(cpu="futurecpu",
                                       features=lambda f: f + ",+quantum-fma,+avx1024"))
    with pytest.raises(ArtifactError, match=r"object code for another CPU: built for CPU "
                                            r"'futurecpu'(.|\n)*lacks: \+avx1024, \+quantum-fma"
                                            r"(.|\n)*recompile=True"):
        gc.load(path)
    with pytest.warns(RuntimeWarning, match="compiling its stored LLVM IR for this CPU"):
        step = gc.load(path, recompile=True)
    assert_same(flat(step(**trained_llvm.feeds[0])), trained_llvm.refs[0])
    # the same features under another CPU name run: the features decide what the code needs
    path = rewrite(trained_llvm.path, tmp_path / "name.gcx", manifest=set_target(cpu="other"))
    gc.load(path)


def test_object_code_for_another_target_is_refused(trained_llvm, tmp_path):
    path = rewrite(trained_llvm.path, tmp_path / "arm.gcx",
                   manifest=set_target(triple="aarch64-apple-darwin", cpu="apple-m1"))
    for recompile in (False, True):
        with pytest.raises(ArtifactError, match=r"object code for another target: built for "
                                                r"CPU 'apple-m1' \(aarch64-apple-darwin\)"):
            gc.load(path, recompile=recompile)


def test_unknown_layout_field_is_refused(trained_llvm, tmp_path):
    path = rewrite(trained_llvm.path, tmp_path / "layout.gcx",
                   manifest=lambda m: m["signatures"][0]["code"]["layout"].update(warp_drive=1))
    with pytest.raises(ArtifactError, match="layout has field.* warp_drive that this runtime"):
        gc.load(path)


def test_npz_helpers_keep_scalars_and_refuse_garbage():
    back = A.unpack_arrays(A.pack_arrays({"s": np.float32(2.5), "m": np.ones((2, 3))}))
    assert back["s"].shape == () and back["m"].shape == (2, 3)
    with pytest.raises(ArtifactError, match="not a readable array archive"):
        A.unpack_arrays(io.BytesIO(b"junk").getvalue())
