"""The graph as Graphviz DOT: forward and backward nodes coloured apart, fused groups as clusters.

Each node is one box labelled with its op, name, type and source line; a fused node is drawn
as a cluster holding its scalar body (one small node per operation, the inputs entering where
the body reads them). A loop node is drawn with its body program as a cluster below it (its
parameters labelled with their roles: carried, sliced, counter, captured; its results with
theirs: next, stacked, cond), nested loops as nested clusters. Node ids follow the schedule,
so the text is identical for the same graph. Render with ``dot -Tsvg graph.dot -o graph.svg``.
"""
FORWARD, BACKWARD, STATE, LEAF = "#dbe9f6", "#f8d9c4", "#d5ecd4", "#eeeeee"


def _escape(text):
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _colour(n):
    if n.opdef.leaf:
        return LEAF
    if n.op_name in ("assign", "group"):
        return STATE
    return BACKWARD if n.is_grad else FORWARD


def _label(n):
    kind = n.op_name if n.op_name != "fused" else "fused{" + ",".join(n.attrs["ops"]) + "}"
    parts = [kind, n.node_name, n.type_str()]
    if n.loc is not None and n.loc.lineno:
        parts.append(("grad/ " if n.is_grad else "") + n.loc.short)
    return "\\n".join(_escape(p) for p in parts)


def _body_cluster(k, n, ids, lines, role=""):
    """The fused body of node ``n`` (drawn as ``k``, e.g. "n3") as a cluster (``role``: what
    a loop body returns it as)."""
    body = n.attrs["body"]
    lines.append(f"  subgraph cluster_{k} {{")
    red = n.attrs.get("reduce")
    title = f"fused {n.node_name}" + (f" -> reduce_{red[0]}" if red else "")
    lines.append(f'    label="{_escape(title)}"; style="rounded,filled"; '
                 f'fillcolor="{_colour(n)}";')
    eid = {}
    for j, e in enumerate(body.walk()):
        if e.op == "arg":
            continue
        name = f"{k}_{j}"
        eid[id(e)] = name
        text = repr(e.value) if e.op == "const" else e.op
        shape = "plaintext" if e.op == "const" else "ellipse"
        lines.append(f'    {name} [label="{_escape(text)}", shape={shape}];')
    root = eid.get(id(body))
    if root is None:  # the body is a bare input: draw a copy node
        root = f"{k}_copy"
        lines.append(f'    {root} [label="copy", shape=ellipse];')
    label = _label(n) + ("\\n" + _escape(role) if role else "")
    lines.append(f'    {k} [label="{label}", shape=box];')
    lines.append(f"    {root} -> {k};")
    lines.append("  }")
    for e in body.walk():
        for a in e.args:
            if a.op == "arg" and id(e) in eid:
                src = ids.get(id(n.inputs[a.value]))
                if src is not None:
                    lines.append(f"  {src} -> {eid[id(e)]};")
            elif id(a) in eid and id(e) in eid:
                lines.append(f"  {eid[id(a)]} -> {eid[id(e)]};")
    if body.op == "arg":
        src = ids.get(id(n.inputs[body.value]))
        if src is not None:
            lines.append(f"  {src} -> {root};")


def _default_body(loop):
    """The unoptimized body program of a specialized loop (None before specialization)."""
    if any(x.shape is None or None in x.shape for x in loop.inputs):
        return None
    from .loops import body_program
    return body_program(loop)


def _draw(nodes, prefix, fetched, bodies, lines):
    """Lines for ``nodes`` (a schedule), their ids prefixed by ``prefix``."""
    ids = {id(n): f"{prefix}n{k}" for k, n in enumerate(nodes)}
    for n in nodes:
        k = ids[id(n)]
        if n.op_name == "fused":
            _body_cluster(k, n, ids, lines, fetched.get(id(n)))
            continue
        label = _label(n) + ("\\n" + _escape(fetched[id(n)]) if fetched.get(id(n)) else "")
        periph = 2 if id(n) in fetched else 1
        lines.append(f'  {k} [label="{label}", shape=box, peripheries={periph}, '
                     f'fillcolor="{_colour(n)}"];')
        for x in n.inputs:
            if id(x) in ids:
                style = ' [style=dashed]' if n.op_name in ("assign", "group") else ""
                lines.append(f"  {ids[id(x)]} -> {k}{style};")
        if n.op_name == "loop":
            _loop_cluster(k, n, bodies, lines)
    return ids


def _loop_cluster(k, loop, bodies, lines):
    """The body program of ``loop`` (drawn as ``k``) as a cluster, its parameters reached
    from the loop node by dashed edges labelled with their roles."""
    prog = bodies(loop)
    if prog is None:
        return
    from .loops import feed_roles
    body = loop.attrs["body"]
    out_roles = [f"next[{j}]" for j in range(len(body.next))] + \
        [f"stacked[{j}]" for j in range(len(body.stacked))] + \
        (["cond"] if body.cond is not None else [])
    fetched = {}
    for f, role in zip(prog.fetches, out_roles):
        if f is not None:
            fetched[id(f)] = (fetched[id(f)] + ", " if id(f) in fetched else "") + role
    inner = []
    ids = _draw(prog.nodes, f"{k}_", fetched, bodies, inner)
    lines.append(f"  subgraph cluster_{k} {{")
    lines.append(f'    label="{_escape("loop " + body.name + ": body " + prog.name)}"; '
                 'style="rounded,dashed";')
    lines += ["  " + line for line in inner]
    lines.append("  }")
    for f, (role, j) in zip(prog.feeds, feed_roles(prog, loop)):
        text = role if role == "counter" else f"{role}[{j}]"
        lines.append(f'  {k} -> {ids[id(f)]} [style=dashed, label="{text}"];')


def format_dot(nodes, title="step", fetches=(), bodies=None):
    """DOT text of ``nodes`` (a schedule) with ``fetches`` marked by a double border.

    Args:
        bodies: ``f(loop node) -> body Program`` to draw under each loop (None: the
            unoptimized body, ``ir.loops.body_program``).
    Example:
        >>> open("graph.dot", "w").write(format_dot(program.nodes, "step", program.fetches))
    """
    fetched = {id(f): "" for f in fetches if f is not None}
    lines = [f'digraph "{_escape(title)}" {{', "  rankdir=TB;",
             '  node [fontname="Helvetica", fontsize=10, style=filled];',
             f'  legend [shape=note, label="forward", fillcolor="{FORWARD}"];',
             f'  legend_b [shape=note, label="backward (gradients)", fillcolor="{BACKWARD}"];',
             f'  legend_s [shape=note, label="state updates", fillcolor="{STATE}"];']
    _draw(nodes, "", fetched, bodies or _default_body, lines)
    lines.append("}")
    return "\n".join(lines) + "\n"
