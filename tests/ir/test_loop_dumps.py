"""Loops in the dumps: bodies nested under their loop in the text IR, the DOT graph and the
dump directory, and checked by the verifier.

The nested body must be the body the backends run: after the same passes as the step
(``codegen.loops.body_for_backend`` for the default pipeline), its lines identical to that
program's text; the lazily rendered stages must equal the eager text after each pass.
"""
import re

import numpy as np
import pytest

import graphc as gc
from graphc.codegen.loops import body_for_backend
from graphc.ir import loops as Lp
from graphc.ir.dot import format_dot
from graphc.ir.passes import DEFAULT_PIPELINE, run_pipeline
from graphc.ir.printer import program_text
from graphc.ir.program import build_program
from graphc.ir.verifier import verify


@pytest.fixture(autouse=True)
def loops_stay_loops(monkeypatch):
    """These tests check the loop machinery: short loops are not unrolled (ir.passes.unroll)."""
    monkeypatch.setenv("GRAPHC_UNROLL", "0")

T, B, D, H = 6, 3, 4, 5


def _rnn_step():
    """A small RNN h = tanh(x_t W + h U) as a loop, its loss and the gradients of W, U."""
    g = gc.Graph()
    with g.as_default():
        x, h0, W, U = (gc.placeholder(gc.float64, shape, name=name) for name, shape in
                       (("x", [T, B, D]), ("h0", [B, H]), ("W", [D, H]), ("U", [H, H])))
        h, xt = Lp.loop_var(g, gc.float64, (B, H), "h"), Lp.loop_var(g, gc.float64, (B, D),
                                                                      "x_t")
        hn = gc.tanh(gc.matmul(xt, W) + gc.matmul(h, U))
        loop = Lp.make_loop([h], [h0], [xt], [x], None, [hn], [hn], name="rnn")
        hs = Lp.outputs(loop, "stacked", 0)
        loss = gc.reduce_sum(hs * hs)
        grads = gc.gradients(loss, [W, U])
    return [loss] + grads, [x, h0, W, U]


def _values(feeds):
    r = np.random.default_rng(0)
    return {f: r.normal(size=tuple(f.shape)) * 0.5 for f in feeds}


def _block(text, head):
    """The lines of the body printed under the loop line starting with ``head``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.lstrip().startswith(head))
    indent = len(lines[start]) - len(lines[start].lstrip()) + 2
    out = []
    for line in lines[start + 1:]:
        if len(line) - len(line.lstrip()) < indent:
            break
        out.append(line[indent:])
    return out


def _value_lines(lines):
    return [line.strip() for line in lines if line.lstrip().startswith("%") and " = " in line]


def _head(text, name):
    """The line of loop ``name`` in ``text`` (stripped)."""
    return next(line.strip() for line in text.splitlines() if f"= loop '{name}' " in line)


def _loop(text, name):
    """(inputs by role, lines under the loop, {parameter: role}, [result roles]) of the
    loop ``name`` in ``text``, checking the roles agree with the loop's inputs."""
    head = _head(text, name)
    by_role = {role: args.split(", ") for role, args in
               re.findall(r"(count|cond0|init|seq|captured)\(([^)]*)\)", head)}
    block = _block(text, head)
    start = block.index(f"graph body_{name.replace('/', '_')}(") + 1
    end = block.index(") {", start)
    params = dict(line.strip().rsplit(None, 1) for line in block[start:end])
    ret = next(line.strip() for line in block if line.strip().startswith("return "))
    results = re.findall(r"(\w+(?:\[\d+\])?)=%", ret)
    for role in params.values():  # every parameter's role names an input the loop has
        kind, k = re.fullmatch(r"(carried|sliced|captured)\[(\d+)\]|counter", role).groups() \
            if role != "counter" else ("counter", None)
        if kind != "counter":
            outer = {"carried": "init", "sliced": "seq", "captured": "captured"}[kind]
            assert int(k) < len(by_role[outer]), (role, head)
    return by_role, block, params, results


def test_text_nests_the_body_with_roles_trip_count_and_captured_values():
    fetches, feeds = _rnn_step()
    step = gc.compile(fetches, feeds=feeds, backend="numpy", optimize=False)
    text = step.ir("final")
    by_role, block, params, results = _loop(text, "rnn")
    assert by_role["init"] == ["%h0"] and by_role["seq"][0] == "%x"
    assert block[0].startswith(f";; 'rnn': one iteration per row of {', '.join(by_role['seq'])}"
                               " (6), t = 0 up to 5; results: 1 exit value, ")
    # what the body reads but does not compute is captured: computed once, before the loop
    assert "%U" in by_role["captured"]
    assert block[1] == (";; captured (computed once, before the loop): "
                        + ", ".join(by_role["captured"]))
    assert params["%h: f64[3,5]"] == "carried[0]" and "%U: f64[5,5]" in params
    assert results[:2] == ["next[0]", "stacked[0]"]
    # the body has its own numbering, from %0; the step's input stage shows it as built
    assert _value_lines(block)[0].startswith("%0 = ")
    assert not any("fused" in line for line in block)
    # h is saved for the backward loop, which runs in reverse
    assert "stacked[1]" in results
    _, grad, grad_params, _ = _loop(text, "rnn_grad")
    assert "t = 5 down to 0" in grad[0] and "carried[0]" in grad_params.values()


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_optimized_step_shows_the_optimized_body_the_backend_runs(backend):
    fetches, feeds = _rnn_step()
    step = gc.compile(fetches, feeds=feeds, backend=backend, optimize=True)
    values = _values(feeds)
    ref = gc.compile(fetches, feeds=feeds, backend="numpy", optimize=False)
    for a, b in zip(step(values), ref(values)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    text = step.ir("final")
    program = step.program
    loops = [n for n in program.nodes if n.op_name == "loop"]
    assert [n.attrs["body"].name for n in loops] == ["rnn", "rnn_grad"]
    for loop in loops:
        block = _block(text, _head(text, loop.attrs["body"].name))
        ran = program_text(body_for_backend(loop, program))
        assert _value_lines(block) == _value_lines(ran.splitlines())
        assert block[-1].startswith(";; arena ")  # the body is planned apart
    assert "fused{" in "\n".join(_block(text, _head(text, "rnn")))
    first = step.ir("input")
    assert "fused" not in "\n".join(_block(first, _head(first, "rnn")))


def test_every_lazy_stage_equals_the_eager_text_with_bodies():
    fetches, feeds = _rnn_step()
    shapes = {f: tuple(f.shape) for f in feeds}
    program = build_program(fetches, shapes)
    run_pipeline(program, verify=True)
    names = [name for name, _ in program.stages]
    assert names == ["input", *DEFAULT_PIPELINE]
    for k in (0, 1, DEFAULT_PIPELINE.index("fuse") + 1, len(names) - 1):
        eager = build_program(fetches, shapes)
        run_pipeline(eager, passes=list(DEFAULT_PIPELINE[:k]))
        assert program.stages[k] == (names[k], program_text(eager)), names[k]
        assert "graph body_rnn_grad(" in program.stages[k][1]


def test_while_loop_text_names_counter_condition_and_count():
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float64, [3], name="x")
        limit = gc.placeholder(gc.float64, [], name="limit")
        n = gc.placeholder(gc.int32, [], name="n")
        s = Lp.loop_var(g, gc.float64, (), "s")
        t = Lp.loop_var(g, gc.int32, (), "t")
        s2 = s * 2.0 + gc.cast(t, gc.float64)
        loop = Lp.make_loop([s], [gc.reduce_sum(x)], [], [], t, [s2], [], cond=s2 < limit,
                            cond0=gc.reduce_sum(x) < limit, count=n, length=10,
                            name="doubling")
        out, count = Lp.outputs(loop, "carried", 0), Lp.outputs(loop, "count")
    step = gc.compile([out, count], feeds=[x, limit, n], backend="numpy", optimize=False)
    got = step({x: np.array([0.25, 0.25, 0.5]), limit: np.float64(20.0), n: np.int32(10)})
    # s: 1 -> 2 (t=0) -> 5 -> 12 -> 27 (stops: 27 >= 20)
    assert float(got[0]) == 27.0 and int(got[1]) == 4
    text = step.ir("final")
    head = next(line.strip() for line in text.splitlines() if "loop 'doubling'" in line)
    assert head.startswith("%") and "count(%n) cond0(%" in head and "init(%" in head
    block = _block(text, head)
    assert block[0].startswith(";; 'doubling': at most %n of 10 iterations, while cond "
                               "holds (%") and "t = 0 up to n-1" in block[0]
    # the limit and the constant 2.0 are inputs of the loop; the constant is copied into
    # the body (where folding sees it), the limit is a parameter
    assert block[1] == ";; captured (computed once, before the loop): %limit, %0"
    start = block.index("graph body_doubling(") + 1
    params = [line.split()[-1] for line in block[start:start + 3]]
    assert sorted(params) == ["captured[0]", "carried[0]", "counter"]
    assert any(line.strip().startswith("return next[0]=%") and "cond=%" in line for line in block)


@pytest.mark.parametrize("optimized", [False, True])
def test_dot_draws_each_body_as_a_cluster_under_its_loop(optimized):
    from graphc.ir.passes.stages import body_programs
    fetches, feeds = _rnn_step()
    step = gc.compile(fetches, feeds=feeds, backend="numpy", optimize=True)
    program = step.program
    k = next(i for i, n in enumerate(program.nodes) if n.op_name == "loop")
    loop = program.nodes[k]
    if optimized:  # the bodies after the step's passes, as the dumps draw them
        chosen = dict(body_programs(program))
        body = chosen[loop]
        dot = format_dot(program.nodes, program.name, program.fetches, bodies=chosen.get)
    else:  # by default, the body as built
        body = Lp.body_program(loop)
        dot = format_dot(program.nodes, program.name, program.fetches)
    assert f"subgraph cluster_n{k} {{" in dot
    assert 'label="loop rnn: body body_rnn"' in dot
    # every body node is drawn inside the cluster, and the loop reaches its parameters
    drawn = [line for line in dot.splitlines()
             if re.match(r"n%d_n\d+ \[label=.*shape=box" % k, line.strip())]
    assert len(drawn) == len(body.nodes)
    roles = Lp.feed_roles(body, loop)
    assert {r for r, _ in roles} == {"carried", "sliced", "captured"}
    for f, (role, j) in zip(body.feeds, roles):
        p = body.nodes.index(f)
        assert f'n{k} -> n{k}_n{p} [style=dashed, label="{role}[{j}]"];' in dot
    # results are marked with their roles (the optimized body fuses tanh into next[0])
    op = r'fused\{[^"]*' if optimized else "tanh"
    assert re.search(r'n%d_n\d+ \[label="%s\\n[^"]*\\nnext\[0\], stacked\[0\]"' % (k, op), dot)
    assert "stacked[1]" in dot  # h, saved for the backward loop
    assert dot.count("{") == dot.count("}")


def test_dump_directory_holds_each_body_pipeline(tmp_path):
    fetches, feeds = _rnn_step()
    texts = []
    for run in ("a", "b"):
        gc.compile(fetches, feeds=feeds, backend="numpy", optimize=True,
                   dump_dir=str(tmp_path / run))
        (root,) = (tmp_path / run).iterdir()  # one directory per signature
        texts.append({str(p.relative_to(root)): p.read_text() for p in root.rglob("*")
                      if p.is_file()})
    files = texts[0]
    assert texts[0] == texts[1]  # byte-identical across compiles
    for body in ("body_rnn", "body_rnn_grad"):
        assert f"{body}/00-input.ir" in files and f"{body}/08-fuse.diff" in files
        assert f"{body}/passes.txt" in files and f"{body}/plan.txt" in files
        final = files[f"{body}/11-plan.ir"]
        # the step's final stage shows the same body, indented under its loop
        assert final.rstrip("\n").replace("\n", "\n    ") in files["11-plan.ir"]
    assert "fused" in files["body_rnn/11-plan.ir"]
    assert "fused" not in files["body_rnn/00-input.ir"]
    assert "subgraph cluster_" in files["graph.dot"] and "body body_rnn_grad" in files["graph.dot"]


def test_a_body_growing_its_state_is_refused_when_specialized():
    """A loop variable of unknown shape lets a body grow its state: with static inputs the
    loop is refused when built, else once specialized (next[0] is f64[6,2] for a carried
    f64[3,2]): a ShapeError at the loop's line."""
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float64, [4, 3, 2], name="x")
        h0 = gc.placeholder(gc.float64, [3, 2], name="h0")
        h = Lp.loop_var(g, gc.float64, None, "h")
        xt = Lp.loop_var(g, gc.float64, (3, 2), "x_t")
        grown = gc.concat([h, xt], axis=0)
        with pytest.raises(gc.errors.ShapeError) as info:  # static inputs: when built
            Lp.make_loop([h], [h0], [xt], [x], None, [grown], name="grow")
        msg = str(info.value)
        h1 = gc.placeholder(gc.float64, [None, 2], name="h1")  # known when fed
        loop = Lp.make_loop([h], [h1], [xt], [x], None, [grown], name="grow")
        out = Lp.outputs(loop, "carried", 0)
    with pytest.raises(gc.errors.ShapeError, match=r"f64\[6,2\] for loop variable 'h' of "
                       r"f64\[3,2\] \(with the fed shapes\)"):
        build_program([out], {x: (4, 3, 2), h1: (3, 2)})
    assert "the body returns f64[6,2] for loop variable 'h' of f64[3,2]" in msg
    assert "test_loop_dumps.py" in msg  # the user's line of the loop


def test_verifier_checks_the_body_program_and_the_loop_structure():
    fetches, feeds = _rnn_step()
    program = build_program(fetches, {f: tuple(f.shape) for f in feeds})
    assert verify(program.nodes, program.graph) == len(program.nodes)  # loop_output reads loops
    loop = next(n for n in program.nodes if n.op_name == "loop")
    body = loop.attrs["body"]
    # a broken node inside the body program is reported under its loop
    prog = Lp.body_program(loop)
    bad = next(n for n in prog.nodes if n.op_name == "matmul")
    saved = bad.shape
    bad.shape = (7, 7)
    try:
        with pytest.raises(gc.errors.GraphError, match=r"loop 'rnn' body 'body_rnn': matmul"):
            verify(program.nodes, program.graph)
    finally:
        bad.shape = saved
    # a body whose roles disagree with the node's inputs
    body.next.append(body.next[0])
    try:
        with pytest.raises(gc.errors.GraphError, match="2 next values"):
            verify(program.nodes, program.graph)
    finally:
        body.next.pop()
    verify(program.nodes, program.graph)


def test_a_loop_in_a_body_nests_in_the_text_and_the_dump_directory(tmp_path):
    g = gc.Graph()
    with g.as_default():
        xs = gc.placeholder(gc.float64, [5, 3], name="xs")

        def outer(acc, x):
            _, y = gc.while_loop(lambda i, v: i < 3, lambda i, v: (i + 1, gc.tanh(v) + x),
                                 [gc.constant(0), acc])
            return y
        loss = gc.reduce_sum(gc.scan(outer, xs, initializer=gc.zeros([3], gc.float64)))
    step = gc.compile([loss], feeds=[xs], backend="numpy", dump_dir=str(tmp_path))
    xv = np.linspace(-1, 1, 15).reshape(5, 3)
    acc, total = np.zeros(3), 0.0
    for x in xv:
        for _ in range(3):
            acc = np.tanh(acc) + x
        total += acc.sum()
    np.testing.assert_allclose(step({xs: xv}), total, rtol=1e-12)
    lines = step.ir().splitlines()
    outer_at = next(i for i, line in enumerate(lines) if line.startswith("    graph body_scan("))
    inner_at = next(i for i, line in enumerate(lines)
                    if line.startswith("        graph body_scan_while("))
    assert outer_at < inner_at
    assert lines[inner_at - 2].lstrip().startswith(";; 'scan/while': at most 3") or any(
        "while cond holds" in line for line in lines[outer_at:inner_at])
    (root,) = tmp_path.iterdir()
    nested = root / "body_scan" / "body_scan_while"
    assert (nested / "00-input.ir").read_text().startswith("graph body_scan_while(")
    assert (root / "body_scan" / "graph.dot").read_text().count("subgraph cluster_") >= 1


def test_a_loop_whose_shapes_are_unknown_shows_a_note_not_a_body():
    from graphc.ir.passes.stages import LoopBodySource
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float64, [None, 3], name="x")
        h = Lp.loop_var(g, gc.float64, (3,), "h")
        xt = Lp.loop_var(g, gc.float64, (3,), "x_t")
        loop = Lp.make_loop([h], [gc.zeros([3], gc.float64)], [xt], [x], None, [h + xt],
                            name="sum")
    text = LoopBodySource(loop).text((), -1)
    assert text == ";; body of 'sum': not shown, the shapes of 'x' f64[?,3] are unknown\n"
    assert verify(g.nodes) == len(g.nodes)  # the body is checked once specialized
    assert "cluster_" not in format_dot(g.nodes, "graph")


def test_debug_report_gives_each_body_memory_plan():
    import io

    from graphc.client import dumps
    fetches, feeds = _rnn_step()
    step = gc.compile(fetches, feeds=feeds, backend="numpy", optimize=True)
    out = io.StringIO()
    dumps.report(step.program, step.source, "numpy", {"passes": 0.0}, level=3, stream=out)
    text = out.getvalue()
    for body in ("body_rnn", "body_rnn_grad"):
        plan = text.split(f"[graphc] memory plan of {body}:\n")[1]
        assert plan.startswith("arena ") and "buffers (offset, bytes" in plan
    assert "graph body_rnn(" in text  # level 2: the stages, bodies nested
