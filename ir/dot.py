"""The graph as Graphviz DOT: forward and backward nodes coloured apart, fused groups as clusters.

Each node is one box labelled with its op, name, type and source line; a fused node is drawn
as a cluster holding its scalar body (one small node per operation, the inputs entering where
the body reads them). Node ids follow the schedule, so the text is identical for the same graph.
Render with ``dot -Tsvg graph.dot -o graph.svg``.
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
    parts = [kind, n.name, n.type_str()]
    if n.loc is not None and n.loc.lineno:
        parts.append(("grad/ " if n.is_grad else "") + n.loc.short)
    return "\\n".join(_escape(p) for p in parts)


def _body_cluster(k, n, ids, lines):
    """The fused body of node ``n`` (schedule index k) as a cluster; returns the root's id."""
    body = n.attrs["body"]
    lines.append(f"  subgraph cluster_{k} {{")
    red = n.attrs.get("reduce")
    title = f"fused {n.name}" + (f" -> reduce_{red[0]}" if red else "")
    lines.append(f'    label="{_escape(title)}"; style="rounded,filled"; '
                 f'fillcolor="{_colour(n)}";')
    eid = {}
    for j, e in enumerate(body.walk()):
        if e.op == "arg":
            continue
        name = f"n{k}_{j}"
        eid[id(e)] = name
        text = repr(e.value) if e.op == "const" else e.op
        shape = "plaintext" if e.op == "const" else "ellipse"
        lines.append(f'    {name} [label="{_escape(text)}", shape={shape}];')
    root = eid.get(id(body))
    if root is None:  # the body is a bare input: draw a copy node
        root = f"n{k}_copy"
        lines.append(f'    {root} [label="copy", shape=ellipse];')
    lines.append(f'    n{k} [label="{_label(n)}", shape=box];')
    lines.append(f"    {root} -> n{k};")
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


def format_dot(nodes, title="step", fetches=()):
    """DOT text of ``nodes`` (a schedule) with ``fetches`` marked by a double border.

    Example:
        >>> open("graph.dot", "w").write(format_dot(program.nodes, "step", program.fetches))
    """
    ids = {id(n): f"n{k}" for k, n in enumerate(nodes)}
    fetched = {id(f) for f in fetches if f is not None}
    lines = [f'digraph "{_escape(title)}" {{', "  rankdir=TB;",
             '  node [fontname="Helvetica", fontsize=10, style=filled];',
             f'  legend [shape=note, label="forward", fillcolor="{FORWARD}"];',
             f'  legend_b [shape=note, label="backward (gradients)", fillcolor="{BACKWARD}"];',
             f'  legend_s [shape=note, label="state updates", fillcolor="{STATE}"];']
    for k, n in enumerate(nodes):
        if n.op_name == "fused":
            _body_cluster(k, n, ids, lines)
            continue
        periph = 2 if id(n) in fetched else 1
        lines.append(f'  n{k} [label="{_label(n)}", shape=box, peripheries={periph}, '
                     f'fillcolor="{_colour(n)}"];')
        for x in n.inputs:
            if id(x) in ids:
                style = ' [style=dashed]' if n.op_name in ("assign", "group") else ""
                lines.append(f"  {ids[id(x)]} -> n{k}{style};")
    lines.append("}")
    return "\n".join(lines) + "\n"
