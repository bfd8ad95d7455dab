"""``MODEL.py[:FUNC]`` for the command line, and ``graphc compile``.

The contract of a model file: ``FUNC`` (default ``build``) takes no arguments, builds the
training step in the default graph (the command line gives it a fresh one) and returns either

    (fetches, feeds)                                  or
    {"fetches": fetches, "feeds": feeds, "shapes": {"x": (32, 64)}}   ("shapes" optional)

``fetches``: any nest of lists, tuples and dicts of tensors and ops (what each step returns);
``feeds``: the placeholders the step takes. A saved step has fixed shapes: placeholders with
None dims get theirs from ``shapes`` or from ``--shape x=32,64`` (which wins).
See ``examples/model_mlp.py``.
"""
import importlib.util
import os
import sys

from ..errors import CompileError, FeedError, GraphcError

CONTRACT = ("MODEL.py[:FUNC]: FUNC (default 'build') takes no arguments, builds the step in a "
            "fresh graph and returns (fetches, feeds) or a dict")
EPILOG = """the model file:
  FUNC (default 'build') takes no arguments, builds the training step in a fresh
  default graph and returns
      (fetches, feeds)
  or  {"fetches": fetches, "feeds": feeds, "shapes": {"x": (32, 64)}}
  fetches: any nest of lists, tuples and dicts of tensors and ops (what each step
  returns); feeds: the placeholders the step takes. The step is compiled for fixed
  shapes: None dims come from "shapes" or --shape NAME=D0,D1 (which wins).

example (examples/model_mlp.py):
  def build():
      x = gc.placeholder(gc.float32, [32, 64], name="x")
      y = gc.placeholder(gc.int64, [32], name="y")
      ...
      return {"loss": loss, "train": train_op}, [x, y]
"""


class Model:
    """What FUNC returned: ``fetches`` (a nest), ``feeds`` (placeholders), ``shapes``."""

    def __init__(self, spec, fetches, feeds, shapes, graph):
        self.spec, self.fetches, self.feeds, self.shapes, self.graph = \
            spec, fetches, feeds, shapes, graph


def parse_spec(spec):
    """``path.py[:func]`` -> (path, func name)."""
    path, sep, func = spec.rpartition(":")
    if not sep or not func.isidentifier() or not path.endswith(".py"):
        path, func = spec, "build"
    return path, func


def parse_shapes(items):
    """["x=32,64", "y=32"] -> {"x": (32, 64), "y": (32,)} (a scalar: "lr=")."""
    shapes = {}
    for item in items or ():
        name, sep, dims = item.partition("=")
        try:
            if not sep or not name:
                raise ValueError
            shapes[name] = tuple(int(d) for d in dims.split(",") if d.strip())
        except ValueError:
            raise FeedError(f"--shape {item!r}: expected NAME=D0,D1,... (integers)") from None
    return shapes


def load_model(spec, shapes=None):
    """Import the model file and call its function in a fresh graph.

    Args:
        spec: ``MODEL.py[:FUNC]``.
        shapes: {placeholder name: shape} overriding the function's ``shapes``.
    Returns:
        A ``Model``.
    Raises:
        GraphcError: no such file or function, or a result that is not the contract's.
    Example:
        >>> m = load_model("examples/model_mlp.py:build")
        >>> [p.name for p in m.feeds]
        ['x', 'y']
    """
    import graphc as gc
    path, func = parse_spec(spec)
    if not os.path.isfile(path):
        raise GraphcError(f"no model file {path!r}", hint=CONTRACT)
    graph = gc.Graph()
    with graph.as_default():
        module = _import(path)
        fn = getattr(module, func, None)
        if not callable(fn):
            raise GraphcError(f"{path} defines no function {func!r}", hint=CONTRACT)
        result = fn()
    fetches, feeds, given = _unpack(result, spec)
    given = dict(given or {})
    given.update(shapes or {})
    return Model(spec, fetches, list(feeds), given, graph)


def _import(path):
    name = "graphc_model_" + "".join(c if c.isalnum() else "_" for c in
                                     os.path.splitext(os.path.basename(path))[0])
    folder = os.path.dirname(os.path.abspath(path))
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, folder)  # a model may import its neighbours
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(folder)
    return module


def _unpack(result, spec):
    if isinstance(result, dict) and "fetches" in result:
        unknown = sorted(set(result) - {"fetches", "feeds", "shapes"})
        if unknown:
            raise GraphcError(f"{spec} returned a dict with unknown key(s) {unknown}",
                              hint=CONTRACT)
        return result["fetches"], result.get("feeds") or [], result.get("shapes")
    if isinstance(result, tuple) and len(result) == 2:
        return result[0], result[1] or [], None
    raise GraphcError(f"{spec} returned a {type(result).__name__}, not (fetches, feeds)",
                      hint=CONTRACT)


def compile_model(model, backend="numpy", optimize=True, passes=None, cache=None):
    """Compile a Model for its concrete feed shapes; returns a ``CompiledStep``
    (``cache``: as ``gc.compile``'s).

    Raises:
        FeedError: a placeholder keeps a None dim, or a shape given for no feed.
    """
    import graphc as gc
    by_name = {p.node_name: p for p in model.feeds}
    unknown = sorted(set(model.shapes) - set(by_name))
    if unknown:
        raise FeedError(f"shapes given for {', '.join(unknown)}, which the step does not feed",
                        [f"feeds: {', '.join(by_name)}"])
    step = gc.compile(model.fetches, feeds=model.feeds, backend=backend, optimize=optimize,
                      passes=passes, graph=model.graph, cache=cache)
    if step._last is None:  # None dims: compile the signature the shapes give
        step._signature(concrete_shapes(step._feeds, model.shapes))
    return step


def concrete_shapes(feeds, given):
    """{placeholder: concrete shape} from the declared shapes and ``given`` {name: shape}.

    Raises:
        FeedError: a given shape that does not fit, or None dims left (all listed at once).
    """
    from ..ir.shapes import format_shape
    shapes, open_dims = {}, []
    for p in feeds:
        declared = None if p.shape is None else tuple(p.shape)  # None: any rank
        shape = given.get(p.node_name, declared)
        shape = None if shape is None else tuple(shape)
        if shape is None:
            open_dims.append(p)
            continue
        if declared is not None and (len(shape) != len(declared) or any(
                d is not None and d != s for d, s in zip(declared, shape))):
            raise FeedError(f"--shape {p.node_name}={','.join(map(str, shape))} does not fit "
                            f"placeholder '{p.node_name}' {p.dtype.short}{format_shape(declared)}",
                            loc=p.loc)
        if None in shape:
            open_dims.append(p)
        shapes[p] = shape
    if open_dims:
        raise FeedError(f"{len(open_dims)} placeholder(s) keep None dims: "
                        + ", ".join(p.node_name for p in open_dims),
                        [f"'{p.node_name}': {p.type_str()}  created at {p.loc.short}"
                         for p in open_dims],
                        hint="the command line compiles fixed shapes: " + " ".join(
                            f"--shape {p.node_name}=" + ",".join("32" if d is None else str(d)
                                                            for d in p.shape or (None,))
                            for p in open_dims))
    return shapes


# -- graphc compile --------------------------------------------------------------------------
def describe_model_argument(parser):
    """The MODEL.py[:FUNC] argument, with the model file's contract under the options."""
    import argparse
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("model", metavar="MODEL.py[:FUNC]",
                        help="the model file and its function (see below)")


def configure_compile(parser):
    describe_model_argument(parser)
    parser.add_argument("-o", "--output", required=True, metavar="STEP.gcx",
                        help="the artifact to write (a zip: manifest, code, IR, variables)")
    parser.add_argument("--backend", choices=("llvm", "numpy"), default="llvm",
                        help="llvm: object code for this CPU (default); numpy: a Python module "
                             "that runs anywhere NumPy does")
    parser.add_argument("--shape", action="append", metavar="NAME=D0,D1,...",
                        help="a feed's shape (fixes None dims; repeat per feed)")
    parser.add_argument("--no-optimize", action="store_true",
                        help="skip the pass pipeline (the unoptimized reference)")
    parser.add_argument("--export-python", metavar="STEP.py",
                        help="also write a standalone module importing only numpy "
                             "(--backend numpy)")


def run_compile(args, out=None):
    out = out or sys.stdout
    if args.export_python and args.backend != "numpy":
        raise CompileError("--export-python needs --backend numpy")
    model = load_model(args.model, parse_shapes(args.shape))
    step = compile_model(model, args.backend, not args.no_optimize)
    size = step.save(args.output)
    from ..runtime.artifact import read
    m = read(args.output).manifest
    feeds = ", ".join(f"{f['name']} {f['type']}" for f in m["feeds"])
    nbytes = sum(int(v.nbytes) for v in step.variables.values())
    out.write(f"wrote {args.output} ({size} bytes): {m['backend']} step '{m['name']}'"
              + (f" for {m['target']['cpu']} ({m['target']['triple']})" if m["target"] else "")
              + "\n")
    out.write(f"  feeds: {feeds}\n  fetches: "
              + ", ".join(f["name"] for f in m["fetches"]["flat"])
              + f"\n  variables: {len(m['variables'])} ({nbytes} bytes)\n")
    if args.export_python:
        step.export_python(args.export_python)
        out.write(f"wrote {args.export_python} (standalone, imports only numpy)\n")
    return 0
