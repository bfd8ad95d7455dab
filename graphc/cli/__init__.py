"""The ``graphc`` console script: one argparse subcommand per job.

Each subcommand is a ``Command``: a name, a one-line help, a function adding its options to
its sub-parser, and a function running it with the parsed arguments (returning the exit
code). ``compile`` and ``dump`` (``cli_model``, ``cli_dump``) need the compiler; ``run``
and ``inspect`` (``cli_artifact``) only the runtime. Commands import their modules lazily so
that ``graphc --help`` stays fast.
"""
import argparse
import os
import sys

from ..errors import GraphcError


class Command:
    """A subcommand: ``configure(parser)`` adds options, ``run(args) -> int`` does the job."""

    def __init__(self, name, help, configure, run):
        self.name, self.help, self.configure, self.run = name, help, configure, run


def _demo_configure(parser):
    from . import demo
    demo.configure(parser)


def _demo_run(args):
    from . import demo
    return demo.run(args)


def _lazy(module, function):
    """``function`` of ``graphc.<module>``, imported when the command runs (``--help`` and
    ``run``/``inspect`` then never import the compiler)."""
    def call(*args):
        import importlib
        return getattr(importlib.import_module(f"graphc.cli.{module}"), function)(*args)
    return call


COMMANDS = [
    Command("demo", "train an MLP on the embedded 8x8 digits and show what the compiler did",
            _demo_configure, _demo_run),
    Command("compile", "compile MODEL.py[:FUNC] ahead of time into a step file (.gcx)",
            _lazy("model", "configure_compile"), _lazy("model", "run_compile")),
    Command("run", "run a saved step on feeds from .npy files and print the fetches",
            _lazy("artifact", "configure_run"), _lazy("artifact", "run_run")),
    Command("inspect", "show a saved step: manifest, feeds, fetches, variables, buffers, IR",
            _lazy("artifact", "configure_inspect"), _lazy("artifact", "run_inspect")),
    Command("dump", "show the IR after any pass, a pass's diff, DOT, or the generated code",
            _lazy("dump", "configure_dump"), _lazy("dump", "run_dump")),
]


def build_parser():
    """The top-level parser with one sub-parser per entry of ``COMMANDS``."""
    from .. import __version__
    parser = argparse.ArgumentParser(
        prog="graphc", description="graphc: a static-graph compiler for training steps "
                                   "with TensorFlow 1.x's API.")
    parser.add_argument("--version", action="version", version=f"graphc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="command")
    for cmd in COMMANDS:
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help)
        cmd.configure(p)
        p.set_defaults(_command=cmd)
    return parser


def main(argv=None):
    """Entry point of the ``graphc`` script; returns the process exit code.

    Example:
        $ graphc demo --epochs 5 --optimizer momentum
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    cmd = getattr(args, "_command", None)
    if cmd is None:
        parser.print_help()
        return 2
    try:
        code = cmd.run(args) or 0
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
        return code
    except GraphcError as e:  # our errors are written for users: no traceback
        print(f"graphc {cmd.name}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"graphc {cmd.name}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `graphc inspect s.gcx | head`: the reader has gone, as in cat
        # Point stdout at devnull so that the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
