"""Saved steps with every compiled signature: a step with a None batch dim trained at two
batch sizes saves both, loads in a process without the compiler, dispatches on the feeds'
shapes and trains on bit for bit with the variables shared; format-1 files still load."""
import json
import pathlib
import zipfile

import numpy as np
import pytest

import graphc as gc
from graphc import cli
from graphc.errors import ArtifactError, CompileError, FeedError
from graphc.runtime import artifact as A
from tests.runtime.test_aot import rewrite, run_isolated, same_bits
from tests.support.paths import DATA, load_npz

BIG, SMALL, WIDTH = 16, 5, 12


def build_model():
    """A None batch dim, unseeded dropout (only the saved RNG states reproduce it), Adam."""
    x = gc.placeholder(gc.float32, [None, WIDTH], name="x")
    y = gc.placeholder(gc.int64, [None], name="y")
    with gc.name_scope("dense1"):
        W1 = gc.Variable(gc.initializers.he_normal(seed=0)([WIDTH, 8]), name="W")
        h = gc.nn.dropout(gc.nn.relu(gc.matmul(x, W1)), 0.8)
    with gc.name_scope("dense2"):
        W2 = gc.Variable(gc.initializers.glorot_uniform(seed=1)([8, 4]), name="W")
        b2 = gc.Variable(gc.zeros([4]), name="b")
        logits = gc.matmul(h, W2) + b2
    loss = gc.reduce_mean(gc.nn.sparse_softmax_cross_entropy_with_logits(labels=y,
                                                                         logits=logits))
    train = gc.train.AdamOptimizer(0.05).minimize(loss)
    return {"loss": loss, "train": train}, [x, y]


def batch(n, seed):
    rs = np.random.RandomState(seed)
    return {"x": rs.rand(n, WIDTH).astype(np.float32), "y": rs.randint(0, 4, n)}


# the steps after saving alternate the two saved shapes: each sees the other's updates
AFTER = [batch(BIG, 10), batch(SMALL, 11), batch(SMALL, 12), batch(BIG, 13)]


class TwoShapes:
    """A step trained at BIG then SMALL (two signatures) and saved; then the AFTER steps as
    the reference."""

    def __init__(self, backend, folder):
        graph = gc.Graph()
        with graph.as_default():
            fetches, feeds = build_model()
            step = gc.compile(fetches, feeds=feeds, backend=backend)
        step(**batch(BIG, 1))
        step(**batch(SMALL, 2))
        assert len(step.signatures()) == 2
        self.path = str(folder / f"two-{backend}.gcx")
        step.save(self.path)
        self.latest = str(folder / f"latest-{backend}.gcx")
        step.save(self.latest, signatures="latest")
        self.losses, self.variables = [], []
        for feed in AFTER:
            self.losses.append(step(**feed)["loss"])
            self.variables.append({k: v.copy() for k, v in step.variables.items()})
        self.step, self.backend = step, backend


_MADE = {}


@pytest.fixture(params=["numpy", "llvm"])
def two(request, tmp_path_factory):
    if request.param not in _MADE:
        _MADE[request.param] = TwoShapes(request.param, tmp_path_factory.mktemp("sigs"))
    return _MADE[request.param]


RUN_LOADED = """
import numpy as np
import graphc as gc
assert not hasattr(gc, "compile"), "compiler imported"
step = gc.load(sys.argv[1])
feeds = np.load(sys.argv[2])
out = {}
for k in range(%d):
    out[f"loss{k}"] = step(x=feeds[f"x{k}"], y=feeds[f"y{k}"])["loss"]
    out[f"sig{k}"] = step.last_signature.index
for name, value in step.variables.items():
    out["var:" + name] = value
np.savez(sys.argv[3], **out)
assert not [m for m in sys.modules if m.startswith(BLOCKED)]
print("ok")
"""


def test_both_shapes_run_without_the_compiler_bit_for_bit(two, tmp_path):
    feeds = tmp_path / "feeds.npz"
    np.savez(feeds, **{f"{k}{i}": f[k] for i, f in enumerate(AFTER) for k in ("x", "y")})
    blocked = ["graphc.ir", "graphc.codegen"] + (["llvmlite"] if two.backend == "numpy" else [])
    out = tmp_path / "out.npz"
    run_isolated(tmp_path, RUN_LOADED % len(AFTER), [two.path, feeds, out], blocked)
    got = load_npz(out)
    assert [int(got[f"sig{k}"]) for k in range(len(AFTER))] == [0, 1, 1, 0]
    for k, ref in enumerate(two.losses):
        assert same_bits(got[f"loss{k}"], ref), k
    for name, ref in two.variables[-1].items():
        assert same_bits(got["var:" + name], ref), name


def test_manifest_lists_every_signature_and_stores_variables_once(two):
    art = A.read(two.path)
    m = art.manifest
    assert m["format_version"] == A.FORMAT_VERSION == 2 and m["latest"] == 1
    assert [f["type"] for f in m["feeds"]] == [f"f32[?,{WIDTH}]", "i64[?]"]
    sigs = art.signatures()
    assert [[f["type"] for f in s["feeds"]] for s in sigs] == [
        [f"f32[{BIG},{WIDTH}]", f"i64[{BIG}]"], [f"f32[{SMALL},{WIDTH}]", f"i64[{SMALL}]"]]
    assert [s["prefix"] for s in sigs] == ["sig0/", "sig1/"]
    assert sigs[0]["program_sha256"] != sigs[1]["program_sha256"]
    code = [A.SOURCE] if two.backend == "numpy" else [A.OBJECT, A.LLVM_IR]
    code += [A.LIBRARY] if "library" in sigs[0]["code"] else []  # (where this system links)
    per_sig = {p + c for p in ("sig0/", "sig1/") for c in [A.IR, A.CONSTS] + code}
    assert set(m["members"]) == per_sig | {A.VARIABLES, A.RNG}
    assert len(art.arrays(A.VARIABLES)) == len(m["variables"]) == len(two.step.variables)
    assert sigs[0]["variables"] == sigs[1]["variables"]  # both take the same stored arrays
    assert len(art.rng_states()) == 2
    for k, s in enumerate(sigs):  # each signature's own IR, as the compiler printed it
        assert f"%x: f32[{(BIG, SMALL)[k]},{WIDTH}]" in art.text(s["prefix"] + A.IR)


def test_latest_saves_one_signature(two):
    m = A.read(two.latest).manifest
    assert len(m["signatures"]) == 1 and m["latest"] == 0
    assert [f["type"] for f in m["feeds"]] == [f"f32[{SMALL},{WIDTH}]", f"i64[{SMALL}]"]
    assert not [n for n in m["members"] if n.startswith("sig1/")]
    step = gc.load(two.latest)
    assert same_bits(step(**AFTER[1])["loss"], gc.load(two.path)(**AFTER[1])["loss"])
    with pytest.raises(FeedError, match=rf"placeholder 'x' expects f32\[{SMALL},{WIDTH}\], "
                                        rf"fed f32\[{BIG},{WIDTH}\]"):
        step(**AFTER[0])
    with pytest.raises(CompileError, match="signatures must be 'all' or 'latest'"):
        two.step.save(two.latest, signatures="first")


def test_shape_no_signature_has_is_a_clear_feed_error(two):
    step = gc.load(two.path)
    with pytest.raises(FeedError, match=rf"no saved signature of this step takes these feed "
                                        rf"shapes: x: f32\[7,{WIDTH}\], y: i64\[7\](.|\n)*"
                                        rf"saved with \[0\] x: f32\[{BIG},{WIDTH}\], "
                                        rf"y: i64\[{BIG}\](.|\n)*\[1\] x: f32\[{SMALL},"
                                        rf"{WIDTH}\](.|\n)*save it again"):
        step(**batch(7, 3))
    with pytest.raises(FeedError, match=r"cannot feed a float64 value to int64 placeholder"):
        step(x=AFTER[1]["x"], y=AFTER[1]["y"].astype(np.float64))
    # nothing ran: the next call still gives the reference's first loss
    assert same_bits(step(**AFTER[0])["loss"], two.losses[0])
    # lists and int32 labels convert, once the shapes pick the signature
    r = step(x=AFTER[1]["x"].tolist(), y=AFTER[1]["y"].astype(np.int32))
    assert same_bits(r["loss"], two.losses[1]) and step.last_signature.index == 1
    assert "2 signatures" in repr(step)


def test_saving_a_loaded_step_keeps_every_signature_and_the_state(two, tmp_path):
    step = gc.load(two.path)
    step(**AFTER[0])
    step(**AFTER[1])
    again = str(tmp_path / "again.gcx")
    step.save(again)
    step = gc.load(again)
    assert len(step.signatures) == 2
    for k in (2, 3):
        assert same_bits(step(**AFTER[k])["loss"], two.losses[k]), k


def test_corrupted_member_of_the_second_signature_is_refused_at_load(two, tmp_path):
    name = "sig1/" + (A.SOURCE if two.backend == "numpy" else A.OBJECT)
    with zipfile.ZipFile(two.path) as z:
        data = z.read(name)
    patched = data[:200] + bytes([data[200] ^ 1]) + data[201:]
    path = rewrite(two.path, tmp_path / "bad.gcx", members={name: patched})
    with pytest.raises(ArtifactError, match=f"corrupted: member '{name}' does not match"):
        gc.load(path)


def test_export_python_holds_one_chosen_signature(two, tmp_path):
    if two.backend != "numpy":
        pytest.skip("Python export is for NumPy-backend steps")
    step = gc.load(two.path)
    with pytest.raises(ArtifactError, match=r"has 2 signatures and an exported module runs one"
                                            r"(.|\n)*\[1\] x: f32\[5,12\](.|\n)*signature=K"):
        step.export_python(str(tmp_path / "none.py"))
    path = tmp_path / "small_step.py"
    step.export_python(str(path), signature=1)
    from tests.runtime.test_aot import import_file
    module = import_file(path, "small_step")
    assert module.FEEDS[0] == ("x", (SMALL, WIDTH), "float32")
    for k in (1, 2):  # the module and the loaded step, from the same state
        assert same_bits(module.step(**AFTER[k])["loss"], step(**AFTER[k])["loss"])
    for name, value in module.variables.items():
        assert same_bits(value, step.variables[name]), name


def test_cli_inspect_lists_signatures_and_run_picks_by_shape(two, tmp_path, capsys):
    assert cli.main(["inspect", two.path, "--no-ir"]) == 0
    out = capsys.readouterr().out
    assert f"signatures (2;" in out and f"x                f32[?,{WIDTH}]" in out
    assert f"[0] x: f32[{BIG},{WIDTH}], y: i64[{BIG}]" in out
    assert f"[1] x: f32[{SMALL},{WIDTH}], y: i64[{SMALL}]" in out and "(latest, shown below)" \
        in out
    assert cli.main(["inspect", two.path, "--signature", "0"]) == 0
    out = capsys.readouterr().out
    assert f"IR of signature [0]" in out and f"graph step(%x: f32[{BIG},{WIDTH}]" in out
    for k in (1, 0):
        np.save(tmp_path / "x.npy", AFTER[k]["x"])
        np.save(tmp_path / "y.npy", AFTER[k]["y"])
        assert cli.main(["run", two.path, "--feed", f"x={tmp_path / 'x.npy'}",
                         "--feed", f"y={tmp_path / 'y.npy'}"]) == 0
        out = capsys.readouterr().out
        rows = AFTER[k]["y"].shape[0]
        assert f"signature [{k}] x: f32[{rows},{WIDTH}]" in out
        loss = float(out.split("loss=")[1].split()[0])
        assert abs(loss - float(gc.load(two.path)(**AFTER[k])["loss"])) < 1e-5


# -- format version 1 --------------------------------------------------------------------------
def test_format_1_file_written_by_the_old_code_loads_and_trains_on(tmp_path, capsys):
    """tests/data/aot_v1_numpy.gcx was written by the format-1 writer (graphc before
    multi-signature artifacts); the .npz holds the losses and variables it gave next."""
    ref = load_npz(DATA / "aot_v1_numpy_expected.npz")
    step = gc.load(str(DATA / "aot_v1_numpy.gcx"))
    assert step.manifest["format_version"] == 1 and len(step.signatures) == 1
    assert same_bits(step(x=ref["x0"], y=ref["y0"])[0], ref["loss0"])
    again = str(tmp_path / "again.gcx")
    step.save(again)  # in its own format: a format-1 file still
    step = gc.load(again)
    assert step.manifest["format_version"] == 1
    for k in (1, 2):
        assert same_bits(step(x=ref[f"x{k}"], y=ref[f"y{k}"])[0], ref[f"loss{k}"]), k
    for name in ("W", "b"):
        assert same_bits(step.variables[name], ref["var:" + name])
    assert cli.main(["inspect", again]) == 0
    out = capsys.readouterr().out
    assert "format 1" in out and "signatures (1;" in out and "IR of signature [0]" in out


def as_format_1(path, out):
    """A one-signature artifact rewritten as the format-1 writer laid it out."""
    art = A.read(path)
    m = dict(art.manifest)
    (sig,) = m.pop("signatures")
    m.pop("latest")
    m.update({k: sig[k] for k in ("feeds", "updates", "buffers", "program_sha256", "stats")})
    m["code"] = {k: v[len("sig0/"):] if k in ("module", "object", "llvm_ir") else v
                 for k, v in sig["code"].items() if k != "library"}  # (not in format 1)
    m["fetches"] = dict(m["fetches"], flat=sig["fetches"])
    m["format_version"] = 1
    members = {n[len("sig0/"):] if n.startswith("sig0/") else n: d
               for n, d in art.members.items() if n != "sig0/" + A.LIBRARY}
    members[A.RNG] = json.dumps(art.rng_states()[0]).encode()
    A.Artifact(m, members).write(str(out))
    return str(out)


def test_format_1_layout_loads_on_both_backends(two, tmp_path):
    path = as_format_1(two.latest, tmp_path / "v1.gcx")
    with zipfile.ZipFile(path) as z:
        assert A.IR in z.namelist() and not [n for n in z.namelist() if n.startswith("sig")]
    step = gc.load(path)
    assert step.manifest["format_version"] == 1
    assert same_bits(step(**AFTER[1])["loss"], gc.load(two.latest)(**AFTER[1])["loss"])
