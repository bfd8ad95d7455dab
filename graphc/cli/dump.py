"""``graphc dump MODEL.py[:FUNC]``: what the compiler makes of a model, stage by stage.

    graphc dump model.py                         the final IR (after every pass)
    graphc dump model.py --stage fuse --diff     what the fusion pass changed
    graphc dump model.py --stage all             the IR after every stage
    graphc dump model.py --format dot -o g.dot   the graph for Graphviz (and g.svg with `dot`)
    graphc dump model.py --format source         the generated NumPy module
    graphc dump model.py --format asm            the LLVM backend's assembly
    graphc dump model.py --stage all -o DIR      every dump file into DIR (as GRAPHC_DUMP does)
    graphc dump step.gcx --format source         a saved step's code, read as text, never run

The text IR, diffs, DOT, pass table and memory plan come from ``graphc.ir.passes.dumping``
and ``CompiledStep.ir``; the code from the compiled step itself.
"""
import os
import shutil
import subprocess
import sys

from ..errors import CompileError, GraphcError

FORMATS = {"text": "the text IR", "dot": "the graph as Graphviz DOT",
           "source": "the generated code (NumPy module, or LLVM IR as generated)",
           "llvm": "the LLVM IR as generated", "llvm-opt": "the LLVM IR after LLVM's -O2",
           "asm": "the machine code as assembly",
           "passes": "the pass table and the memory plan"}
LLVM_FORMATS = ("llvm", "llvm-opt", "asm")
CODE_FORMATS = ("source",) + LLVM_FORMATS


def configure_dump(parser):
    from .model import describe_model_argument
    describe_model_argument(parser)
    parser.epilog = "examples:\n" + "\n".join(
        line.replace("    graphc", "  graphc", 1) for line in __doc__.splitlines()
        if line.startswith("    graphc")) + "\n\n" + parser.epilog
    parser.add_argument("--stage", default="final",
                        help="'input' (before any pass), a pass name (prune, fold, simplify, "
                             "cse, dce, scale, fuse, inplace, schedule, plan), 'final' "
                             "(default) or 'all'")
    parser.add_argument("--format", choices=list(FORMATS), default="text",
                        help="; ".join(f"{k}: {v}" for k, v in FORMATS.items()))
    parser.add_argument("--diff", action="store_true",
                        help="the unified diff the pass made (text format)")
    parser.add_argument("--backend", choices=("numpy", "llvm"), default=None,
                        help="code generator (default numpy; llvm for llvm/llvm-opt/asm)")
    parser.add_argument("--shape", action="append", metavar="NAME=D0,D1,...",
                        help="a feed's shape (fixes None dims; repeat per feed)")
    parser.add_argument("--no-optimize", action="store_true", help="skip the pass pipeline")
    parser.add_argument("-o", "--output", metavar="PATH",
                        help="write there instead of printing (with --stage all: a folder "
                             "of every dump file; for DOT also PATH.svg when `dot` exists)")


def run_dump(args, out=None):
    from .model import compile_model, load_model, parse_shapes
    out = out or sys.stdout
    if args.model.endswith(".gcx"):
        return _emit(_artifact_text(args), args.output, out)
    backend = args.backend or ("llvm" if args.format in LLVM_FORMATS else "numpy")
    if args.format in LLVM_FORMATS and backend != "llvm":
        raise CompileError(f"--format {args.format} needs --backend llvm")
    if args.diff and args.format != "text":
        raise CompileError("--diff goes with --format text")
    model = load_model(args.model, parse_shapes(args.shape))
    # (compiled, not read from the compile cache: a hit holds no IR or assembly to show)
    step = compile_model(model, backend, not args.no_optimize, cache=False)
    stages = [name for name, _ in step.program.stages] or ["input"]
    if args.stage == "all" and args.output:
        return _dump_folder(step, args.output, out)
    wanted = stages if args.stage == "all" else [_stage(args.stage, stages)]
    if args.diff and wanted == ["input"] and len(stages) > 1:
        raise CompileError("--diff: 'input' is the program before any pass, there is no diff "
                           "to show", hint="ask for a pass: --stage fuse --diff")
    if args.format in CODE_FORMATS + ("passes",):
        if wanted != [stages[-1]]:
            raise CompileError(f"--format {args.format} exists for the final program only",
                               hint="drop --stage, or use --format text/dot for a stage")
        return _emit(_code(step, args.format), args.output, out)
    if args.format == "dot":
        texts = _dots(model, step, wanted, stages)
        return _emit_dot("".join(texts), args.output, out)
    texts = [_diff(step.program, stages, s) if args.diff else _titled(step, s, stages, args)
             for s in wanted]
    return _emit("".join(texts), args.output, out)


ARTIFACT_FORMATS = ("text", "source", "llvm", "passes")


def _artifact_text(args):
    """What a saved step holds, as text: its final IR, its code (the NumPy module or LLVM IR)
    or its pass table. Read from the file, checked as ``gc.load`` checks it; nothing in it
    runs, is compiled or mapped."""
    from ..runtime.artifact import IR, LLVM_IR, SOURCE, read
    from ..runtime.manifest_check import check_manifest
    if args.format not in ARTIFACT_FORMATS or args.stage not in ("final", "all") or args.diff:
        raise CompileError(f"a saved step keeps only its final program: graphc dump "
                           f"{args.model} shows --format {', '.join(ARTIFACT_FORMATS)}",
                           hint="dump the model file for stages, diffs, DOT or assembly")
    art = read(args.model, key=False)
    check_manifest(art)
    sigs = art.signatures()
    sig = sigs[art.latest()]
    if args.format == "text":
        return art.text(sig["prefix"] + IR)
    if args.format == "passes":
        stats = sig.get("stats") or {}
        return "".join(f"{p.get('name')!s:<10} {p.get('nodes_before')!s:>5} -> "
                       f"{p.get('nodes_after')!s:<5} {p.get('changes')}\n"
                       for p in stats.get("passes", []) if isinstance(p, dict))
    code = SOURCE if art.manifest["backend"] == "numpy" else LLVM_IR
    if args.format == "llvm" and code != LLVM_IR:
        raise CompileError(f"{args.model} is a NumPy-backend step: it has no LLVM IR")
    return art.text(sig["prefix"] + code)


def _stage(name, stages):
    if name == "final":
        return stages[-1]
    if name not in stages:
        raise CompileError(f"no stage {name!r} in this compilation",
                           [f"stages: {', '.join(stages)}, final, all"],
                           hint="pass names as in graphc.ir.passes.DEFAULT_PIPELINE")
    return name


def _titled(step, stage, stages, args):
    text = step.ir(stage)
    if args.stage != "all":
        return text
    return f";; ---- {stages.index(stage):02d} {stage} ----\n{text}"


def _diff(program, stages, stage):
    from ..ir.passes.dumping import stage_files
    k = stages.index(stage)
    if k == 0:
        if len(stages) > 1:
            return ""  # with --stage all: the diffs start at the first pass
        raise CompileError(f"--diff: '{stage}' is the program before any pass, there is no "
                           "diff to show", hint="ask for a pass: --stage fuse --diff")
    files = dict(stage_files(program))
    return files[f"{k:02d}-{stage}.diff"]


def _code(step, fmt):
    from ..ir.passes.dumping import pass_table, plan_text
    if fmt == "passes":
        return pass_table(step.program) + "\n" + plan_text(step.program)
    if fmt in ("source", "llvm"):
        return str(step.source)
    artifacts = getattr(step.compiled.fn, "artifacts", None)
    if artifacts is None:
        raise CompileError(f"--format {fmt}: the step has no LLVM code")
    return artifacts.optimized_ir() if fmt == "llvm-opt" else artifacts.assembly()


def _dots(model, step, wanted, stages):
    """DOT of the program after each wanted stage (the pipeline run again pass by pass: the
    compiled step keeps only the final program)."""
    from ..ir.dot import format_dot
    from ..ir.passes import run_pipeline
    from ..ir.program import build_program
    from ..client.feeds import flatten
    if wanted == [stages[-1]]:
        p = step.program
        return [format_dot(p.nodes, p.name, p.fetches)]
    flat, _ = flatten(model.fetches, model.graph)
    compiled = step.compiled
    shapes = {p: n.shape for p, n in zip(compiled.feed_nodes, compiled.program.feeds)}
    program = build_program(flat, shapes)
    texts = []
    for k, name in enumerate(stages):
        if k:
            run_pipeline(program, passes=[name])
        if name in wanted:
            texts.append(format_dot(program.nodes, f"{program.name} after {name}",
                                    program.fetches))
        if name == wanted[-1]:
            break
    return texts


def _emit(text, path, out):
    if path is None:
        out.write(text if text.endswith("\n") else text + "\n")
    else:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        out.write(f"wrote {path}\n")
    return 0


def _emit_dot(text, path, out):
    if path is None or not path.endswith(".svg"):
        _emit(text, path, out)
        if path is not None and shutil.which("dot"):
            svg = os.path.splitext(path)[0] + ".svg"
            render_svg(text, svg)
            out.write(f"wrote {svg}\n")
        return 0
    render_svg(text, path)
    out.write(f"wrote {path}\n")
    return 0


def render_svg(dot_text, path):
    """Render DOT text to an SVG file with Graphviz's ``dot``.

    Raises:
        GraphcError: ``dot`` is not installed or fails.
    """
    exe = shutil.which("dot")
    if exe is None:
        raise GraphcError("the Graphviz `dot` program is not installed: cannot write SVG",
                          hint="write the DOT text instead (-o graph.dot), or install graphviz")
    proc = subprocess.run([exe, "-Tsvg", "-o", path], input=dot_text, text=True,
                          capture_output=True)
    if proc.returncode:
        raise GraphcError(f"dot failed: {proc.stderr.strip()}")


def _dump_folder(step, folder, out):
    from ..client import dumps
    compiled = step.compiled
    names = dumps.write(compiled.program, folder, compiled.source, compiled.backend)
    artifacts = getattr(compiled.fn, "artifacts", None)
    if artifacts is not None:
        artifacts.write(folder)
        names += ["step.opt.ll", "step.s"]
    if shutil.which("dot"):
        with open(os.path.join(folder, "graph.dot"), encoding="utf-8") as f:
            render_svg(f.read(), os.path.join(folder, "graph.svg"))
        names.append("graph.svg")
    out.write(f"wrote {len(names)} files to {folder}: {', '.join(names)}\n")
    return 0
