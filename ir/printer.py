"""The text IR: one SSA line per node, stable numbering, aligned types, source notes.

A program's values keep one number through every stage (``stable_numbers``): the input
stage numbers them in order, and a node a pass creates takes the next free number, so a pass's
diff shows only the lines it changed, and dumps of the same graph are byte-identical across
runs. A bare graph is numbered in print order. Feeds and variables print by name (``%x``,
``%W1``). Passes annotate nodes through ``node.meta``: ``body`` (fused scalar expression),
``buffer``, ``inplace`` and ``note`` appear after the ``#``; what a pass wants said about the
whole stage (CSE's merges) it adds to ``program.stage_notes``, printed as ``;;`` lines.
"""
import numpy as np

from .scalar import format_expr

def _fmt_attr(v):
    if isinstance(v, np.ndarray):
        return "..."
    if hasattr(v, "short") and hasattr(v, "np"):
        return v.short
    if isinstance(v, tuple):
        return "(" + ",".join(_fmt_attr(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    if isinstance(v, float):
        return repr(v)
    return str(v)


def _short_ops(ops):
    """Op names of a fused group, consecutive repeats collapsed (``mul*2``)."""
    out = []
    for op in ops:
        if out and out[-1][0] == op:
            out[-1][1] += 1
        else:
            out.append([op, 1])
    return [op if k == 1 else f"{op}*{k}" for op, k in out]


def _const_text(node):
    v = node.attrs["value"]
    if v.size > 1 and all(s == 0 for s in v.strides):
        return f"const splat {v.reshape(-1)[0].item()!r}"
    if v.size <= 4:
        flat = ", ".join(repr(x.item()) for x in v.reshape(-1))
        return f"const [{flat}]" if v.ndim else f"const {flat}"
    return f"const <{v.size} values>"


def stable_numbers(program):
    """{node: value number} of ``program``, numbering nodes not seen before in schedule
    order after the highest number given so far (kept as ``program.value_numbers``)."""
    numbers = getattr(program, "value_numbers", None)
    if numbers is None:
        numbers = program.value_numbers = {}
    for n in program.nodes:
        if n not in numbers and not n.opdef.external:
            numbers[n] = len(numbers)
    return numbers


def format_nodes(nodes, title="graph", fetches=(), numbers=None, notes=()):
    """Text of ``nodes`` (a topologically ordered list), numbered by ``numbers`` ({node:
    int}; None: in print order), followed by ``notes`` as ``;;`` lines."""
    names = {}
    feeds = [n for n in nodes if n.op_name == "placeholder"]
    variables = [n for n in nodes if n.op_name == "variable"]
    for n in feeds + variables:
        names[n] = "%" + n.name
    head_f = ", ".join(f"{names[n]}: {n.type_str()}" for n in feeds)
    head_v = ", ".join(f"{names[n]}: {n.type_str()}" for n in variables)
    header = f"graph {title}({head_f}" + (f"; vars {head_v}" if head_v else "") + ") {"
    rows = []
    counter = 0
    grad_started = False
    for n in nodes:
        if n.opdef.external:  # named in the header
            continue
        names[n] = f"%{counter if numbers is None else numbers[n]}"
        counter += 1
        if n.is_grad and not grad_started:
            rows.append((";; gradients", "", ""))
            grad_started = True
        rows.append(_row(n, names))
    width = max((len(r[0]) for r in rows if r[1]), default=0) + 2
    twidth = max((len(r[1]) for r in rows), default=0) + 2
    lines = [header]
    for lhs, ty, note in rows:
        if not ty:
            lines.append("  " + lhs)
            continue
        line = "  " + lhs.ljust(width) + ": " + ty.ljust(twidth)
        lines.append((line + "# " + note) if note else line.rstrip())
    if fetches:
        lines.append("  return " + ", ".join(names.get(f, "?") for f in fetches))
    lines.append("}")
    lines += [f";; {note}" for note in notes]
    return "\n".join(lines)


def _row(n, names):
    args = ", ".join(names.get(i, f"%{i.name}") for i in n.inputs)
    if n.op_name == "const":
        text = _const_text(n)
    elif n.op_name == "fused":
        red = n.attrs.get("reduce")
        tail = f" -> reduce_{red[0]}{{axis={_fmt_attr(tuple(red[1]))}, keepdims={red[2]}}}" \
            if red else ""
        text = f"fused{{{','.join(_short_ops(n.attrs.get('ops', ())))}}}{tail} {args}".rstrip()
    else:
        attrs = {k: v for k, v in n.attrs.items() if k not in ("body", "value")}
        attr_text = ("{" + ", ".join(f"{k}={_fmt_attr(v)}" for k, v in sorted(attrs.items()))
                     + "}") if attrs else ""
        text = f"{n.op_name}{attr_text} {args}".rstrip()
    lhs = f"{names[n]} = {text}"
    notes = []
    if n.loc is not None and n.loc.lineno:
        notes.append(("grad/ " if n.is_grad else "") + n.loc.short)
    meta = n.meta
    if n.op_name == "fused":
        arg_names = {i: names.get(x, f"%{x.name}") for i, x in enumerate(n.inputs)}
        notes.append("body: " + format_expr(n.attrs["body"], arg_names))
    elif "body" in meta:
        notes.append("body: " + format_expr(meta["body"]))
    if "buffer" in meta:
        notes.append(f"buf={meta['buffer']}")
    if "inplace_of" in meta:
        notes.append(f"in place over {names.get(meta['inplace_of'], '?')}")
    for key in ("inplace", "note"):
        if key in meta:
            notes.append(str(meta[key]))
    return lhs, n.type_str(), "  ".join(notes)


def program_text(program):
    """Text IR of a Program (its schedule), with the memory plan's summary when planned."""
    numbers = getattr(program, "numbers", None)  # a snapshot carries its own
    text = format_nodes(program.nodes, program.name,
                        [f for f in program.fetches if f is not None],
                        numbers if numbers is not None else stable_numbers(program),
                        getattr(program, "stage_notes", ()))
    plan = program.plan
    if plan is not None and getattr(plan, "planned", False):
        text += (f"\n;; arena {plan.arena_bytes} bytes in {len(plan.offsets)} buffers, "
                 f"naive {plan.naive_bytes} bytes, in place {len(plan.inplace)}, "
                 f"views {len(plan.views)}")
    return text + "\n"


def format_graph(graph, title="graph"):
    return format_nodes(graph.nodes, title)
