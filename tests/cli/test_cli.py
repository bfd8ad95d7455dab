"""The command line end to end on examples/model_mlp.py: compile, run, inspect, dump, their
--help, and their errors (exit code 1 and a one-paragraph message, no traceback)."""
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from graphc import cli
from tests.support.paths import ROOT

MODEL = os.path.join(ROOT, "examples", "model_mlp.py")


def graphc(capsys, *argv):
    """Run ``graphc argv`` in this process: (exit code, stdout, stderr)."""
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A folder with a batch of digits (batch_x.npy, batch_y.npy) written by the example."""
    folder = tmp_path_factory.mktemp("cli")
    spec = importlib.util.spec_from_file_location("model_mlp", MODEL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.write_batch(str(folder))
    return folder


def test_example_writes_a_batch_of_digits(tmp_path):
    proc = subprocess.run([sys.executable, MODEL, "--write-batch", str(tmp_path), "--index", "2"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    from graphc.data import load_digits
    x, y = load_digits()
    np.testing.assert_array_equal(np.load(tmp_path / "batch_x.npy"), x[64:96])
    np.testing.assert_array_equal(np.load(tmp_path / "batch_y.npy"), y[64:96])


def losses(out):
    return [float(v) for v in re.findall(r"^step \d+: loss=(\S+)", out, re.M)]


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_compile_run_save_inspect(capsys, work, backend):
    art = work / f"step-{backend}.gcx"
    code, out, err = graphc(capsys, "compile", MODEL, "-o", art, "--backend", backend)
    assert code == 0, err
    assert re.match(rf"wrote {re.escape(str(art))} \(\d+ bytes\): {backend} step", out)
    assert "feeds: x f32[32,64], y i64[32]" in out and "variables: 14" in out
    feeds = ["--feed", f"x={work / 'batch_x.npy'}", "--feed", f"y={work / 'batch_y.npy'}"]
    code, out, err = graphc(capsys, "run", art, *feeds, "--steps", 4)
    assert code == 0, err
    four = losses(out)
    assert len(four) == 4 and four[3] < four[0]  # Adam on one batch: the loss goes down
    assert re.search(r"^step 1: loss=\S+  accuracy=\S+  train=None$", out, re.M)
    assert re.search(r"^ran 4 step\(s\) of .* median \d+\.\d+ ms per step$", out, re.M)
    # three steps and save; the saved step's next step is the fourth step above
    trained = work / f"trained-{backend}.gcx"
    code, out, err = graphc(capsys, "run", art, *feeds, "--steps", 3, "--save", trained)
    assert code == 0 and losses(out) == four[:3] and f"saved to {trained}" in out
    code, out, err = graphc(capsys, "run", trained, *feeds)
    assert code == 0 and losses(out) == four[3:]
    code, out, err = graphc(capsys, "inspect", trained)
    assert code == 0, err
    for expected in (f"graphc artifact, format 2", f"backend   {backend}", "program   sha256",
                     "x                f32[32,64]", "[2] Adam", "variables (14, 57728 bytes)",
                     "dense1/W                 f32[64,64]       updated",
                     "buffer layout: arena", "passes: nodes", "IR of signature [0] (final, after the passes):",
                     "signatures (1;", "[0] x: f32[32,64], y: i64[32]",
                     "graph step(%x: f32[32,64]", "state/variables.npz"):
        assert expected in out, expected
    if backend == "llvm":
        assert "runs on this machine" in out and "sig0/code/step.o" in out
    else:
        assert "runs wherever NumPy does" in out and "sig0/code/step.py" in out
    code, out, _ = graphc(capsys, "inspect", trained, "--json")
    manifest = json.loads(out)
    assert manifest["backend"] == backend and manifest["feeds"][1]["name"] == "y"
    code, out, _ = graphc(capsys, "inspect", trained, "--no-ir")
    assert code == 0 and "graph step(" not in out and "feeds (" in out


def test_run_and_inspect_without_the_compiler(capsys, work):
    art = work / "plain.gcx"
    assert graphc(capsys, "compile", MODEL, "-o", art, "--backend", "numpy")[0] == 0
    script = (
        "import sys\n"
        "class NotInstalled:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.startswith(('graphc.ir', 'graphc.codegen', 'llvmlite')):\n"
        "            raise ImportError(name + ' is not installed here')\n"
        "sys.meta_path.insert(0, NotInstalled())\n"
        "from graphc.cli import main\n"
        "assert main(sys.argv[1:]) == 0\n"
        "assert not [m for m in sys.modules if m.startswith(('graphc.ir', 'graphc.codegen'))]\n")
    run = ["run", art, "--feed", f"x={work / 'batch_x.npy'}", "--feed",
           f"y={work / 'batch_y.npy'}", "--steps", "2"]
    for argv, expected in ((run, "step 2: loss="), (["inspect", art], "runs wherever NumPy")):
        proc = subprocess.run([sys.executable, "-c", script, *map(str, argv)],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert expected in proc.stdout


def test_compile_a_named_function_with_shapes_and_export(capsys, work):
    art, module = work / "dropout.gcx", work / "dropout_step.py"
    code, out, err = graphc(capsys, "compile", f"{MODEL}:build_with_dropout", "-o", art,
                            "--backend", "numpy", "--shape", "x=32,64", "--shape", "y=32",
                            "--export-python", module)
    assert code == 0, err
    assert "fetches: loss, accuracy, Momentum" in out and f"wrote {module} (standalone" in out
    spec = importlib.util.spec_from_file_location("dropout_step", module)
    exported = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(exported)
    x, y = np.load(work / "batch_x.npy"), np.load(work / "batch_y.npy")
    first = [exported.step(x=x, y=y)[0] for _ in range(3)]
    code, out, _ = graphc(capsys, "run", art, "--feed", f"x={work / 'batch_x.npy'}", "--feed",
                          f"y={work / 'batch_y.npy'}", "--steps", 3)
    assert [float(f"{v:.6g}") for v in first] == [float(v) for v in
                                                  re.findall(r"\[0\]=(\S+)", out)]


def test_dump_stages_diffs_dot_and_code(capsys, work):
    code, out, _ = graphc(capsys, "dump", MODEL)
    assert code == 0 and out.startswith("graph step(%x: f32[32,64]") and "fused{" in out
    code, out, _ = graphc(capsys, "dump", MODEL, "--stage", "fuse", "--diff")
    assert code == 0 and "--- 07-scale.ir\n+++ 08-fuse.ir" in out and "+  %" in out
    code, out, _ = graphc(capsys, "dump", MODEL, "--stage", "all")
    assert re.findall(r"^;; ---- (\d\d) (\w+) ----$", out, re.M)[:2] == [("00", "input"),
                                                                        ("01", "unroll")]
    code, out, _ = graphc(capsys, "dump", MODEL, "--stage", "input")
    assert "fused{" not in out and "matmul" in out  # before fusion
    code, out, _ = graphc(capsys, "dump", MODEL, "--format", "dot")
    assert out.startswith('digraph "step"') and "cluster_" in out
    dot = work / "cse.dot"
    code, out, _ = graphc(capsys, "dump", MODEL, "--format", "dot", "--stage", "cse", "-o", dot)
    assert code == 0 and dot.read_text().startswith('digraph "step after cse"')
    assert "cluster_" not in dot.read_text()  # nothing is fused yet after CSE
    code, out, _ = graphc(capsys, "dump", MODEL, "--format", "source")
    assert "def make_step(consts" in out and "import numpy as np" in out
    code, out, _ = graphc(capsys, "dump", MODEL, "--format", "passes")
    assert re.search(r"^fuse +\d+ -> \d+ .*groups=\d+", out, re.M) and "arena" in out
    folder = work / "dumps"
    code, out, _ = graphc(capsys, "dump", MODEL, "--stage", "all", "-o", folder)
    assert code == 0 and {"00-input.ir", "08-fuse.diff", "graph.dot", "passes.txt",
                          "plan.txt", "step.py"} <= set(os.listdir(folder))


@pytest.mark.parametrize("step_cache", ["0", "1"])
def test_dump_llvm_ir_and_assembly(capsys, monkeypatch, tmp_path, step_cache):
    # with the compile cache on (and an entry already there), dump still compiles: a cache
    # hit holds no optimized IR or assembly
    monkeypatch.setenv("GRAPHC_STEP_CACHE", step_cache)
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    from graphc.cli.model import compile_model, load_model
    for _ in range(2):  # (the second one a hit when the cache is on)
        hit = type(compile_model(load_model(MODEL), "llvm").compiled).__name__
    assert (hit == "CachedCompiled") == (step_cache == "1")
    code, out, _ = graphc(capsys, "dump", MODEL, "--format", "llvm")
    assert code == 0 and "define void @step(ptr" in out
    code, out, _ = graphc(capsys, "dump", MODEL, "--format", "llvm-opt")
    assert code == 0 and "target datalayout" in out
    code, out, _ = graphc(capsys, "dump", MODEL, "--format", "asm")
    assert code == 0 and re.search(r"^step:", out, re.M)


def test_dump_svg_needs_graphviz(capsys, work):
    svg = work / "graph.svg"
    code, out, err = graphc(capsys, "dump", MODEL, "--format", "dot", "-o", svg)
    if shutil.which("dot"):
        assert code == 0 and svg.read_text().lstrip().startswith("<?xml")
    else:
        assert code == 1 and "the Graphviz `dot` program is not installed" in err


@pytest.mark.parametrize("argv, message", [
    (["dump", MODEL, "--stage", "bogus"], r"no stage 'bogus'(.|\n)*stages: input, unroll, prune"),
    (["dump", MODEL, "--stage", "input", "--diff"], "before any pass, there is no diff"),
    (["dump", MODEL, "--stage", "fuse", "--format", "source"], "final program only"),
    (["dump", MODEL, "--format", "asm", "--backend", "numpy"], "needs --backend llvm"),
    (["dump", f"{MODEL}:nothing"], "defines no function 'nothing'"),
    (["dump", "no_such_model.py"], "no model file 'no_such_model.py'"),
    (["dump", f"{MODEL}:build_with_dropout"],
     r"2 placeholder\(s\) keep None dims: x, y(.|\n)*--shape x=32,64 --shape y=32"),
    (["dump", f"{MODEL}:build_with_dropout", "--shape", "x=32,63", "--shape", "y=32"],
     r"--shape x=32,63 does not fit placeholder 'x' f32\[\?,64\]"),
    (["compile", MODEL, "-o", "x.gcx", "--shape", "z=3"], "shapes given for z"),
    (["compile", MODEL, "-o", "x.gcx", "--export-python", "x.py"], "needs --backend numpy"),
    (["run", "missing.gcx"], "ArtifactError: no artifact at 'missing.gcx'"),
])
def test_errors_are_one_message_and_exit_1(capsys, argv, message):
    code, out, err = graphc(capsys, *argv)
    assert code == 1 and re.search(message, err), err
    assert "Traceback" not in err


def test_run_refuses_bad_feeds_and_damaged_files(capsys, work):
    art = work / "feeds.gcx"
    assert graphc(capsys, "compile", MODEL, "-o", art, "--backend", "numpy")[0] == 0
    x = f"x={work / 'batch_x.npy'}"
    code, _, err = graphc(capsys, "run", art, "--feed", x)
    assert code == 1 and "FeedError: 1 placeholder(s) must be fed: y" in err
    code, _, err = graphc(capsys, "run", art, "--feed", f"x={work / 'batch_y.npy'}",
                          "--feed", f"y={work / 'batch_y.npy'}")
    assert code == 1 and "placeholder 'x' expects f32[32,64], fed i64[32]" in err
    code, _, err = graphc(capsys, "run", art, "--feed", "x")
    assert code == 1 and "--feed 'x': expected NAME=FILE.npy" in err
    damaged = work / "damaged.gcx"
    damaged.write_bytes(art.read_bytes()[:-200])
    code, _, err = graphc(capsys, "run", damaged, "--feed", x)
    assert code == 1 and "ArtifactError" in err and "truncated" in err


@pytest.mark.parametrize("command, expected", [
    ("compile", "FUNC (default 'build') takes no arguments"), ("run", "--feed NAME=FILE.npy"),
    ("inspect", "--no-ir"), ("dump", "--stage STAGE")])
def test_every_command_has_help(capsys, command, expected):
    with pytest.raises(SystemExit) as info:
        cli.main([command, "--help"])
    out = capsys.readouterr().out
    assert info.value.code == 0 and f"usage: graphc {command}" in out and expected in out


def test_console_script_lists_the_commands():
    exe = shutil.which("graphc")
    if exe is None:
        pytest.skip("the graphc console script is not on PATH")
    proc = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    assert all(c in proc.stdout for c in ("demo", "compile", "run", "inspect", "dump"))


def test_output_into_a_closed_pipe_is_not_a_traceback(capsys, work):
    # `graphc inspect step.gcx | head`: the reader goes away before graphc writes.
    art = str(work / "pipe.gcx")
    assert graphc(capsys, "compile", MODEL, "-o", art, "--backend", "numpy")[0] == 0
    read_end, write_end = os.pipe()
    os.close(read_end)
    proc = subprocess.run([sys.executable, "-c", "import sys; from graphc.cli import main; "
                           "sys.exit(main(sys.argv[1:]))", "inspect", art],
                          stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=120)
    os.close(write_end)
    assert proc.returncode == 141 and proc.stderr == "", proc.stderr
