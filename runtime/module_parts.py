"""One LLVM module's text split into parts that compile apart, and the bundle of their objects.

llvmlite runs one LLVM call at a time in a process, and LLVM costs 10-30 ms per kernel
function at O2, so a step of many kernels compiles faster as several modules, some in this
process and some in the compile worker at the same time (``jit.compile_ir(..., parts=6)``).
The parts are made from the text alone, so the split is a pure function of the module:

- a function and the internal functions it calls stay together (a kernel and its thread-pool
  task); ``alwaysinline`` helpers are copied into every part that calls them (they vanish
  into their callers); what exported functions (the step) and ``optnone`` ones (a loop
  body's glue, calling its kernels) reference may go to another part;
- a function referenced from another part becomes external there, and a declaration in the
  referencing part (the step calls kernels through addresses it stores: one relocation);
- the first part holds the exported functions; the parts get whole groups, largest first,
  each to the part with the least estimated work (``plan``).

- a private constant (``@x = private unnamed_addr constant ...`` on one line, referring to
  no function: the step's call records) is copied into every part that reads it;
- a function may name the pipeline it is optimized with (``"graphc-pipeline"="vector"``
  among its attributes: a kernel graphc wrote as vector code, which LLVM's O2 has nothing to
  add to); a group follows its functions' pipeline (a kernel's thread-pool task has none of
  its own), and parts hold groups of one pipeline only: a part of a named pipeline starts
  with the line ``PIPELINE_MARK + name``, which ``llvm_compile`` reads (the others get the
  default ``O<opt>``).

Modules with anything else at top level (other globals, attribute groups, metadata) are not
split. The objects of a split module travel as one
bundle (``pack``): ``jit.load_object`` loads its members into one engine, which resolves the
references between them.
"""
import os
import re
import struct

from .llvm_compile import PIPELINE_MARK, pipeline_of

__all__ = ["split", "plan", "pipelines", "pack", "unpack", "is_bundle", "MAGIC", "MIN_WORK",
           "VERSION", "PIPELINE_MARK", "pipeline_of"]

# Estimated work, in units of ~0.1 ms on a 2020s x86 core (O2 + emission): a function costs
# KERNEL_BASE plus one unit per line; an ``optnone`` one (the step's glue) a tenth of a unit
# per line. Parts are balanced by this estimate (largest group first, to the lightest part);
# ``jit.compile_ir`` hands them out one at a time to whichever process is free, so the
# estimate's errors cost little.
KERNEL_BASE = 60
# Below this much estimated work (~150-200 ms of LLVM) a module stays whole: a worker not yet
# running takes ~0.1 s to start, and each part costs a few ms more. (W1-W5's steps have
# 3,300-8,500: they are split; their functions' machine code is the same as compiled whole,
# but for those of a named pipeline.)
MIN_WORK = 1500
# Changes with the way modules are split (part of the object cache's key).
VERSION = 4

# False (``GRAPHC_NAMED_PIPELINES=0`` when this loads): the pipelines functions name are
# ignored and every part gets ``O<opt>`` (benchmarks compare the two; the object cache's key
# says which).
NAMED_PIPELINES = os.environ.get("GRAPHC_NAMED_PIPELINES", "1") != "0"

MAGIC = b"GCOBJS\x01\x00"
_COUNT = struct.Struct("<I")
_SIZE = struct.Struct("<Q")

_DEFINE = re.compile(r"define\s+(?:(internal|private)\s+)?(.*?)@([-\w.$]+)\(")
_REF = re.compile(r"@([-\w.$]+)")
_CONSTANT = re.compile(r"@([-\w.$]+) = private unnamed_addr constant ")
_PIPELINE = re.compile(r'"graphc-pipeline"="([\w-]+)"')


class _Function:
    def __init__(self, name, lines, exported, head):
        self.name, self.lines, self.exported = name, lines, exported
        self.head = head  # the define line
        attrs = head.split(")")[-1]
        self.inline = "alwaysinline" in attrs
        self.optnone = "optnone" in attrs
        named = _PIPELINE.search(attrs) if NAMED_PIPELINES else None
        self.pipeline = named.group(1) if named else None
        self.refs = set()
        self.constants = set()  # private constants it reads

    def cost(self):
        n = len(self.lines)
        return n // 10 if self.optnone else KERNEL_BASE + n


def _parse(text):
    """(functions in order, declarations, leading comments, {constant: its line}), or None
    when not splittable."""
    functions, decls, comments, pending, constants = [], [], [], [], {}
    current = None
    for line in text.splitlines():
        if current is not None:
            current.lines.append(line)
            if line == "}":
                current = None
            continue
        if line.startswith("define"):
            m = _DEFINE.match(line)
            if m is None or "{" not in line:
                return None
            current = _Function(m.group(3), pending + [line], m.group(1) is None, line)
            pending = []
            functions.append(current)
        elif line.startswith("declare "):
            decls.append(line)
        elif line.startswith(";"):
            pending.append(line)
        elif _CONSTANT.match(line):
            constants[_CONSTANT.match(line).group(1)] = line
        elif not line.strip():
            if not functions:  # the module's own heading, apart from the first function's
                comments, pending = comments + pending, []
        else:
            return None  # globals, attributes, metadata: not ours to move
    if current is not None:
        return None
    names = {f.name for f in functions}
    if any(r in names for line in constants.values() for r in _REF.findall(line)):
        return None  # (a constant holding a function's address would tie parts together)
    for f in functions:
        body = "\n".join(f.lines[f.lines.index(f.head):])
        found = set(_REF.findall(body))
        f.refs = {r for r in found if r in names and r != f.name}
        f.constants = found & constants.keys()
    return functions, decls, comments + pending, constants


def _groups(functions):
    """Groups of non-exported, non-inline functions that call each other (union-find)."""
    by_name = {f.name: f for f in functions}
    parent = {f.name: f.name for f in functions}

    def root(n):
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n
    movable = [f for f in functions if not f.exported and not f.inline]
    for f in movable:
        if f.optnone:  # glue (a loop body calling its kernels): they may go anywhere
            continue
        for r in f.refs:
            if not by_name[r].inline and not by_name[r].exported:
                parent[root(f.name)] = root(r)
    groups = {}
    for f in movable:
        groups.setdefault(root(f.name), []).append(f)
    return list(groups.values())


def _pipeline(group):
    """The pipeline a group is optimized with: the one its functions name, when they name
    exactly one; else None (the default)."""
    named = {f.pipeline for f in group} - {None}
    return named.pop() if len(named) == 1 else None


def _kinds(groups, parts):
    """The pipeline of each part: part 0 (the exported functions) and others the default,
    each named pipeline as many parts as its share of the work gives (at least one, while
    parts are left)."""
    work = {}
    for g in groups:
        work[_pipeline(g)] = work.get(_pipeline(g), 0) + sum(f.cost() for f in g)
    total = sum(work.values()) or 1
    named = sorted((k for k in work if k is not None), key=lambda k: (-work[k], k))
    kinds = []
    for k in named:
        room = parts - 1 - len(kinds) - (len(named) - 1 - named.index(k))
        kinds += [k] * max(1, min(room, round(parts * work[k] / total)))
    kinds = kinds[:parts - 1]
    return [None] * (parts - len(kinds)) + kinds


def plan(text, parts):
    """Which part each function goes to: {name: part}, or None when ``text`` is not split
    (not splittable, or less work than ``MIN_WORK``). Fewer parts than asked when there are
    fewer groups; every part holds something, and groups of one pipeline only (``_kinds``;
    a named pipeline without a part of its own joins the default's)."""
    parsed = _parse(text) if parts >= 2 else None
    if parsed is None or sum(f.cost() for f in parsed[0]) < MIN_WORK:
        return None
    functions = parsed[0]
    groups = _groups(functions)
    parts = min(parts, len(groups))
    if parts < 2:
        return None
    kinds = _kinds(groups, parts)
    load = [sum(f.cost() for f in functions if f.exported)] + [0] * (parts - 1)
    where = {f.name: 0 for f in functions if f.exported}
    for group in sorted(groups, key=lambda g: (-sum(f.cost() for f in g), g[0].name)):
        mine = [k for k in range(parts) if kinds[k] == _pipeline(group)] or \
            [k for k in range(parts) if kinds[k] is None]
        p = min(mine, key=lambda k: (load[k], k))
        load[p] += sum(f.cost() for f in group)
        where.update((f.name, p) for f in group)
    return where if len(set(where.values())) == parts else _without_empty(where)


def _without_empty(where):
    """``where`` with its parts renumbered 0, 1, ... in order (a kind may have taken none)."""
    order = {p: k for k, p in enumerate(sorted(set(where.values())))}
    return {name: order[p] for name, p in where.items()}


def pipelines(text, parts):
    """The pipeline each of ``split(text, parts)``'s parts is optimized with (None: the
    default), in order."""
    return [pipeline_of(t) for t in split(text, parts)]


def split(text, parts):
    """``text`` as ``parts`` module texts (see the module docstring); ``[text]`` when it is
    not split. Part 0 holds the exported functions and the leading comments."""
    where = plan(text, parts)
    if where is None:
        return [text]
    parts = max(where.values()) + 1
    functions, decls, comments, constants = _parse(text)
    by_name = {f.name: f for f in functions}
    groups = _groups(functions)
    out = []
    for p in range(parts):
        mine = [f for f in functions if where.get(f.name) == p]
        helpers = _inline_closure(mine, by_name)
        named = {_pipeline(g) for g in groups if where[g[0].name] == p}
        if any(f.exported for f in mine):
            named.add(None)
        foreign = sorted({r for f in mine + helpers for r in f.refs
                          if not by_name[r].inline and where[r] != p})
        seen_from_outside = {r for f in functions if where.get(f.name, p) != p
                             for r in f.refs if where.get(r) == p}
        chunks = ["\n".join(comments)] if p == 0 and comments else []
        if len(named) == 1 and None not in named:
            chunks.insert(0, PIPELINE_MARK + named.pop())
        chunks += [constants[c] for c in sorted({c for f in mine + helpers
                                                 for c in f.constants})]
        for f in functions:
            if f in mine or f in helpers:
                lines = list(f.lines)
                if f.name in seen_from_outside:
                    k = lines.index(f.head)
                    lines[k] = re.sub(r"^define\s+(internal|private)\s+", "define ", f.head)
                chunks.append("\n".join(lines))
        chunks += [_declaration(by_name[r].head) for r in foreign]
        chunks += decls
        out.append("\n\n".join(chunks) + "\n")
    return out


def _inline_closure(mine, by_name):
    """The ``alwaysinline`` functions ``mine`` calls, directly or through each other."""
    found, todo = [], list(mine)
    while todo:
        f = todo.pop()
        for r in sorted(f.refs):
            g = by_name[r]
            if g.inline and g not in found:
                found.append(g)
                todo.append(g)
    return found


def _declaration(head):
    """``declare`` line for the function whose define line is ``head``."""
    m = _DEFINE.match(head)
    start = m.end()
    depth, k = 1, start
    while depth:
        depth += {"(": 1, ")": -1}.get(head[k], 0)
        k += 1
    params = [p.strip() for p in head[start:k - 1].split(",") if p.strip()]
    types = [" ".join(w for w in p.split() if not w.startswith("%")) for p in params]
    return f"declare {m.group(2).strip()} @{m.group(3)}({', '.join(types)})"


def is_bundle(data):
    """Whether ``data`` is a bundle of objects (``pack``) rather than one object file."""
    return bytes(data[:len(MAGIC)]) == MAGIC


def pack(objects):
    """One bytes value holding several object files (a split module's parts), in order."""
    head = MAGIC + _COUNT.pack(len(objects)) + b"".join(_SIZE.pack(len(o)) for o in objects)
    return head + b"".join(bytes(o) for o in objects)


def unpack(data):
    """The object files of a bundle, in order (views of ``data`` when it is a memoryview).

    Raises:
        ValueError: ``data`` is not a whole bundle (truncated, or sizes that do not add up).
    """
    if not isinstance(data, bytes | memoryview):
        data = bytes(data)
    at = len(MAGIC)
    if not is_bundle(data) or len(data) < at + _COUNT.size:
        raise ValueError("not a bundle of object files")
    (count,) = _COUNT.unpack_from(data, at)
    at += _COUNT.size
    if count == 0 or len(data) < at + count * _SIZE.size:
        raise ValueError(f"a bundle of {count} object files with a truncated header")
    sizes = [_SIZE.unpack_from(data, at + k * _SIZE.size)[0] for k in range(count)]
    at += count * _SIZE.size
    if at + sum(sizes) != len(data):
        raise ValueError(f"a bundle of {len(data)} bytes whose parts add up to "
                         f"{at + sum(sizes)}")
    out = []
    for n in sizes:
        out.append(data[at:at + n])
        at += n
    return out
