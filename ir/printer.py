"""The text IR: one SSA line per node, stable numbering, aligned types, source notes.

A program's values keep one number through every stage (``stable_numbers``): the input
stage numbers them in order, and a node a pass creates takes the next free number, so a pass's
diff shows only the lines it changed, and dumps of the same graph are byte-identical across
runs. A bare graph is numbered in print order. Feeds and variables print by name (``%x``,
``%W1``). Passes annotate nodes through ``node.meta``: ``body`` (fused scalar expression),
``buffer``, ``inplace`` and ``note`` appear after the ``#``; what a pass wants said about the
whole stage (CSE's merges) it adds to ``program.stage_notes``, printed as ``;;`` lines.

A ``loop`` node's line is followed by its trip count, which of its inputs are captured
(computed once, before the loop: hoisted) and its body, printed as a program of its own
(its own numbering) and indented under the loop; the body's header gives each parameter's
role (``carried[k]``, ``sliced[k]``, ``counter``, ``captured[k]``) and its ``return`` each
result's (``next[k]``, ``stacked[k]``, ``cond``). The body shown has been through the same
passes as the program around it (``ir.passes.stages.LoopBodySource``)::

  %0 = loop 'rnn' init(%h0) seq(%x) captured(%W, %U)  : ()  # rnn.py:12
    ;; 'rnn': one iteration per row of %x (6), t = 0 up to 5; results: exit values, stacked rows
    ;; captured (computed once, before the loop): %W, %U
    graph body_rnn(
        %W: f64[4,5]    captured[0]
        %U: f64[5,5]    captured[1]
        %h: f64[3,5]    carried[0]
        %x_t: f64[3,4]  sliced[0]
    ) {
      %0 = matmul %x_t, %W                   : f64[3,5]   # rnn.py:11
      ...
      return next[0]=%3, stacked[0]=%3
    }
"""
import textwrap

import numpy as np

from .graph import Graph
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


def format_nodes(nodes, title="graph", fetches=(), numbers=None, notes=(), loops=None,
                 feed_labels=None, fetch_labels=None):
    """Text of ``nodes`` (a topologically ordered list), numbered by ``numbers`` ({node:
    int}; None: in print order), followed by ``notes`` as ``;;`` lines.

    Args:
        loops: ``f(loop node) -> body text`` (a program's text): a loop's body is printed
            indented under its line, with its trip count and captured values (None: loops
            print their line only, as in a user graph whose bodies are not specialized).
        feed_labels: {placeholder: role} printed after its type in the header.
        fetch_labels: one role per fetch, printed before it in the ``return`` line.
    Returns:
        The text (no trailing newline).
    """
    names = {}
    feeds = [n for n in nodes if n.op_name == "placeholder"]
    variables = [n for n in nodes if n.op_name == "variable"]
    for n in feeds + variables:
        names[n] = "%" + n.node_name
    head_v = ", ".join(f"{names[n]}: {n.type_str()}" for n in variables)
    if feed_labels:  # a loop body: one parameter a line, with its role
        params = [(f"{names[n]}: {n.type_str()}", feed_labels.get(n, "")) for n in feeds]
        pw = max(len(p) for p, _ in params) + 2
        header = "\n".join([f"graph {title}("] + [f"    {p.ljust(pw)}{lab}".rstrip()
                                                   for p, lab in params])
        header += (f"\n    vars {head_v}" if head_v else "") + "\n) {"
    else:
        head_f = ", ".join(f"{names[n]}: {n.type_str()}" for n in feeds)
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
        if n.op_name == "loop" and loops is not None:
            rows.append((loop_lines(n, names, loops(n)), "", ""))
    width = max((len(r[0]) for r in rows if r[1]), default=0) + 2
    twidth = max((len(r[1]) for r in rows), default=0) + 2
    lines = [header]
    for lhs, ty, note in rows:
        if not ty:
            lines.append(textwrap.indent(lhs, "  "))
            continue
        line = "  " + lhs.ljust(width) + ": " + ty.ljust(twidth)
        lines.append((line + "# " + note) if note else line.rstrip())
    if fetches:
        labels = list(fetch_labels) if fetch_labels else [None] * len(fetches)
        lines.append("  return " + ", ".join(
            (f"{label}=" if label else "") + names.get(f, "?")
            for f, label in zip(fetches, labels)))
    lines.append("}")
    lines += [f";; {note}" for note in notes]
    return "\n".join(lines)


def _row(n, names):
    args = ", ".join(names.get(i, f"%{i.node_name}") for i in n.inputs)
    if n.op_name == "const":
        text = _const_text(n)
    elif n.op_name == "loop":
        text = _loop_head(n, names)
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
        arg_names = {i: names.get(x, f"%{x.node_name}") for i, x in enumerate(n.inputs)}
        notes.append("body: " + format_expr(n.attrs["body"], arg_names))
    elif n.op_name == "fused_matmul":  # (arg 0: the product; arg k: input k + 1)
        arg_names = {0: "product"}
        arg_names.update((i, names.get(x, f"%{x.node_name}"))
                         for i, x in enumerate(n.inputs[2:], 1))
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


def loop_summary(loop):
    """What a loop's lines show besides its body (a dict; ``stages`` freezes it).

    Returns:
        {"name", "bound" (int, None before specialization), "length" (the static bound
        or None: the sequences' rows), "reverse", "cond" (a data-dependent condition),
        "roles" (per input of the node: "count", "cond0", "init", "seq" or "captured"),
        "n_carried", "n_stacked"}.
    """
    from .ops.loop import trip_bound
    a, body = loop.attrs, loop.attrs["body"]
    roles = (["count"] if a["has_count"] else []) + (["cond0"] if body.cond is not None
                                                     else [])
    roles += ["init"] * a["n_carried"] + ["seq"] * a["n_sequences"]
    roles += ["captured"] * (len(loop.inputs) - len(roles))
    return {"name": body.name, "bound": trip_bound(loop), "length": a["length"],
            "reverse": a["reverse"], "cond": body.cond is not None, "roles": roles,
            "n_carried": a["n_carried"], "n_stacked": len(body.stacked)}


def _summary(n):
    frozen = getattr(n, "loop", None)  # a stage snapshot froze it
    return frozen.summary if frozen is not None else loop_summary(n)


def _by_role(n, names):
    out = {}
    for role, x in zip(_summary(n)["roles"], n.inputs):
        out.setdefault(role, []).append(names.get(x, f"%{x.node_name}"))
    return out


def _loop_head(n, names):
    """``loop 'rnn' init(%h0) seq(%x) captured(%W, %U)``."""
    s, by_role = _summary(n), _by_role(n, names)
    parts = [f"{role}({', '.join(by_role[role])})"
             for role in ("count", "cond0", "init", "seq", "captured") if role in by_role]
    return f"loop '{s['name']}' " + " ".join(parts)


def _trip_text(s, by_role):
    bound = s["bound"]
    if s["length"] is None:
        rows = ", ".join(by_role.get("seq", ()))
        trips = f"one iteration per row of {rows}" + (f" ({bound})" if bound is not None
                                                       else "")
    else:
        trips = f"{bound} iterations"
    if "count" in by_role:
        trips = f"at most {by_role['count'][0]} of {trips}"
    if s["cond"]:
        trips += f", while cond holds ({by_role['cond0'][0]} before the first)"
    last = "n-1" if bound is None or "count" in by_role or s["cond"] else bound - 1
    order = f"t = {last} down to 0" if s["reverse"] else f"t = 0 up to {last}"
    results = [f"{s['n_carried']} exit value{'s' * (s['n_carried'] != 1)}"]
    if s["n_stacked"]:
        results.append(f"{s['n_stacked']} stacked (a row per iteration)")
    return f"'{s['name']}': {trips}, {order}; results: {', '.join(results)}"


def loop_lines(n, names, body_text):
    """The lines under loop node ``n``'s row (indented two spaces): its trip count, its
    captured values and ``body_text``, the text of its body program."""
    s, by_role = _summary(n), _by_role(n, names)
    lines = [";; " + _trip_text(s, by_role)]
    if "captured" in by_role:
        lines.append(";; captured (computed once, before the loop): "
                     + ", ".join(by_role["captured"]))
    lines += body_text.rstrip("\n").split("\n")
    return textwrap.indent("\n".join(lines), "  ")


# How a live loop's body is rendered after some passes: ``ir.passes.stages`` sets it when
# imported (it runs the body through the passes, which build on this module); until then a
# loop shows its summary lines only.
body_renderer = None


def body_text(loop, passes=()):
    """The text of ``loop``'s body program after ``passes`` (what ``program_text`` shows
    under a live loop node; stage snapshots render theirs through ``ir.passes.stages``)."""
    if body_renderer is None:
        return ";; (the body is shown once graphc.ir.passes is imported)"
    return body_renderer(loop, tuple(passes))


def program_text(program):
    """Text IR of a Program (its schedule), with the memory plan's summary when planned.

    Loops show their body after the passes this program went through (``program.records``).
    """
    numbers = getattr(program, "numbers", None)  # a snapshot carries its own
    passes = tuple(r["name"] for r in getattr(program, "records", ()))
    fetches = [f for f in program.fetches if f is not None]
    labels = getattr(program, "fetch_labels", None)
    if labels is not None:
        labels = [lab for f, lab in zip(program.fetches, labels) if f is not None]
    text = format_nodes(program.nodes, program.name, fetches,
                        numbers if numbers is not None else stable_numbers(program),
                        getattr(program, "stage_notes", ()),
                        loops=lambda n: n.loop.text() if getattr(n, "loop", None)
                        else body_text(n, passes),
                        feed_labels=getattr(program, "feed_labels", None),
                        fetch_labels=labels)
    plan = program.plan
    if plan is not None and getattr(plan, "planned", False):
        text += (f"\n;; arena {plan.arena_bytes} bytes in {len(plan.offsets)} buffers, "
                 f"naive {plan.naive_bytes} bytes, in place {len(plan.inplace)}, "
                 f"views {len(plan.views)}")
    return text + "\n"


def format_graph(graph, title="graph"):
    return format_nodes(graph.nodes, title)


def _graph_text(graph):
    return format_graph(graph)


Graph.__str__ = _graph_text  # ``str(graph)``: the text IR (see ``ir.graph.Graph``)
