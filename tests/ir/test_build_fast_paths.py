"""Graph building's fast paths (issue 16) against the implementations they replaced.

Shape rules format their messages only when a check fails, broadcasting answers equal shapes
and a shape with its own trailing dims without a loop, ``apply`` skips converting inputs that
are nodes, ``unique_name`` keeps the scope's joined prefix and ``user_location`` remembers
which files are the library's. None of it may change a graph: each model here is built once
as shipped and once with the previous implementations patched in, and the text IR, names,
shapes, dtypes and source lines must be the same; the rules' error messages are checked
against the messages the eager versions built.
"""
import itertools
import sys

import numpy as np
import pytest

import graphc as gc
from graphc.ir import graph as graph_module
from graphc.ir import shapes, source
from graphc.ir.ops import linalg, registry
from graphc.ir.ops import shape as shape_ops
from graphc.ir.shapes import RuleError, format_shape


# -- the previous implementations --------------------------------------------------------------
def reference_broadcast_shapes(a, b):
    n = max(len(a), len(b))
    pa = (1,) * (n - len(a)) + tuple(a)
    pb = (1,) * (n - len(b)) + tuple(b)
    out = []
    for i, (x, y) in enumerate(zip(pa, pb)):
        if x == 1:
            out.append(y)
        elif y == 1 or x == y:
            out.append(x)
        elif x is None or y is None:
            out.append(x if y is None else y)
        else:
            raise RuleError(f"cannot broadcast {format_shape(a)} with {format_shape(b)}",
                            [f"axis {i - n}: {x} vs {y}"],
                            "trailing dimensions must match or be 1")
    return tuple(out)


def reference_broadcast_all(nodes):
    shape = ()
    for i, n in enumerate(nodes):
        try:
            shape = reference_broadcast_shapes(shape, n.shape)
        except RuleError as e:
            other = next((m for m in nodes[:i] if registry._clashes(m.shape, n.shape)),
                         nodes[0])
            raise RuleError(f"cannot broadcast {other.type_str()} with {n.type_str()}",
                            e.details + (f"operands: '{other.node_name}' and '{n.node_name}'",),
                            e.hint) from None
    return shape


def reference_unique_name(self, base, mark_as_used=True):
    full = "/".join(self._scope + [base]) if self._scope else base
    i = self._names.get(full, 0)
    if mark_as_used:
        self._names[full] = i + 1
    if i == 0:
        return full
    name = full
    while name in self._names:
        name = f"{full}_{i}"
        i += 1
    if mark_as_used:
        self._names[name] = 1
    return name


def reference_user_location():
    roots = source._package_roots()
    frame = sys._getframe(1)
    while frame is not None:
        fn = frame.f_code.co_filename
        if not fn.startswith(roots) and not fn.startswith("<frozen"):
            return source.Location(fn, frame.f_lineno)
        frame = frame.f_back
    return source.UNKNOWN


def _slow_paths(monkeypatch):
    for module in (shapes, registry, linalg, shape_ops):
        monkeypatch.setattr(module, "broadcast_shapes", reference_broadcast_shapes)
    monkeypatch.setattr(registry, "broadcast_all", reference_broadcast_all)
    from graphc.ir.ops import elementwise
    monkeypatch.setattr(elementwise, "broadcast_all", reference_broadcast_all)
    monkeypatch.setattr(graph_module.Graph, "unique_name", reference_unique_name)
    monkeypatch.setattr(source, "user_location", reference_user_location)
    monkeypatch.setattr(graph_module.source, "user_location", reference_user_location)


# -- models -------------------------------------------------------------------------------------
def _mlp():
    x = gc.placeholder(gc.float32, [None, 6], name="x")
    y = gc.placeholder(gc.int64, [None], name="y")
    h = x
    for i, width in enumerate((5, 4, 3)):
        with gc.name_scope(f"dense{i}"):
            w = gc.Variable(np.full((h.shape[1], width), 0.1, np.float32), name="W")
            b = gc.Variable(np.zeros(width, np.float32), name="b")
            h = gc.nn.relu(gc.matmul(h, w) + b) if width > 3 else gc.matmul(h, w) + b
    loss = gc.reduce_mean(gc.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=h))
    return gc.train.AdamOptimizer(1e-3).minimize(loss)


def _rnn():
    xs = gc.placeholder(gc.float32, [5, 2, 3], name="xs")
    wx = gc.Variable(np.full((3, 3), 0.1, np.float32), name="Wx")
    wh = gc.Variable(np.full((3, 3), 0.1, np.float32), name="Wh")
    b = gc.Variable(np.zeros(3, np.float32), name="b")
    h = gc.zeros([2, 3])
    for t in range(5):
        h = gc.tanh(gc.matmul(xs[t], wx) + gc.matmul(h, wh) + b)
    loss = gc.reduce_mean(gc.square(h)) + 0.5 * gc.reduce_sum(wx * wx)
    return gc.train.GradientDescentOptimizer(0.01).minimize(loss)


def _broadcasting():
    """Broadcasts of every kind (scalars, trailing dims, size-1 axes, unknown dims and
    ranks), name collisions with a user's ``add_1``, control dependencies."""
    x = gc.placeholder(gc.float64, [None, 1, 4], name="x")
    u = gc.placeholder(gc.float64, name="u")  # unknown rank
    c = gc.Variable(np.ones((3, 1), np.float64), name="c")
    s = gc.add(x, 1.0, name="add_1")
    y = (x + s) * c - 2.0 + gc.reduce_mean(gc.reshape(x, [-1, 4])[:, None, :2])
    y = y + gc.where(x > 0.0, x, -x) / (c + 1.5) + u
    with gc.control_dependencies([c.assign(c * 0.5)]):
        z = gc.reduce_sum(gc.square(y), axis=[0, 2]) + gc.stack([c[0, 0], c[1, 0]])[0]
    g, = gc.gradients(gc.reduce_mean(z) + gc.reduce_sum(x), [x])
    return gc.group(g, z)


MODELS = {"mlp": _mlp, "rnn": _rnn, "broadcasting": _broadcasting}


def _built(model):
    graph = gc.Graph()
    with graph.as_default():
        model()
    rows = [(n.id, n.op_name, n.node_name, n.dtype, n.shape, type(n.shape).__name__,
             n.loc.filename, n.loc.lineno, n.is_grad, repr(sorted(n.attrs, key=str)),
             [i.id for i in n.inputs]) for n in graph.nodes]
    return str(graph), rows, dict(graph._names)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_built_ir_is_the_same_as_with_the_previous_implementations(name, monkeypatch):
    text, rows, names = _built(MODELS[name])
    with monkeypatch.context() as m:
        _slow_paths(m)
        assert registry.broadcast_all is reference_broadcast_all
        slow_text, slow_rows, slow_names = _built(MODELS[name])
    assert len(rows) > 20
    assert text == slow_text
    assert rows == slow_rows
    assert names == slow_names


def test_broadcast_shapes_agrees_with_the_loop_on_every_small_pair():
    dims = (None, 1, 2, 3)
    shapes_ = [s for r in range(4) for s in itertools.product(dims, repeat=r)]
    failures = 0
    for a, b in itertools.product(shapes_, repeat=2):
        try:
            want = reference_broadcast_shapes(a, b)
        except RuleError as e:
            with pytest.raises(RuleError) as got:
                shapes.broadcast_shapes(a, b)
            assert (got.value.message, got.value.details, got.value.hint) == \
                (e.message, e.details, e.hint)
            failures += 1
            continue
        got = shapes.broadcast_shapes(a, b)
        assert got == want and type(got) is tuple, (a, b)
        assert [type(d) for d in got] == [type(d) for d in want], (a, b)
    assert failures > 100


def test_broadcast_shapes_of_an_unknown_rank_still_fails():
    for a, b in (((2,), None), (None, (2,)), (None, None), ((), None)):
        with pytest.raises(TypeError):
            shapes.broadcast_shapes(a, b)


@pytest.mark.parametrize("build, message", [
    (lambda: gc.matmul(gc.zeros([2, 3]), gc.zeros([4, 5])),
     r"matmul 'MatMul': inner dimensions differ: f32\[2,3\] @ f32\[4,5\]"),
    (lambda: gc.matmul(gc.zeros([3]), gc.zeros([3, 5])),
     r"matmul 'MatMul': operand a must have rank >= 2, found f32\[3\]"),
    (lambda: gc.matmul(gc.zeros([2, 2, 3]), gc.zeros([3, 3, 5])),
     r"batch dims \[2\] and \[3\] do not broadcast"),
    (lambda: gc.assign(gc.Variable(np.zeros(3, np.float32), name="v"), gc.zeros([4])),
     r"value shape \[4\] differs from variable 'v' \[3\]"),
    (lambda: gc.assign(gc.Variable(np.zeros(3, np.float32), name="v"),
                       gc.zeros([3], gc.float64)),
     r"value dtype float64 differs from variable 'v' \(float32\)"),
    (lambda: gc.where(gc.zeros([2]), gc.zeros([2]), gc.zeros([2])),
     r"condition must be bool, found float32"),
    (lambda: gc.zeros([2, 3])[0, 0, 0], r"too many indices \(3\) for f32\[2,3\]"),
    (lambda: gc.zeros([2, 3])[:, 3], r"index 3 is out of bounds for axis 1 of size 3"),
    (lambda: gc.reshape(gc.zeros([2, 3]), [4, -1]),
     r"cannot reshape f32\[2,3\] \(6 elements\) to \[4, -1\]"),
    (lambda: gc.reshape(gc.zeros([2, 3]), [5]),
     r"cannot reshape f32\[2,3\] \(6 elements\) to \[5\] \(5 elements\)"),
    (lambda: gc.reshape(gc.zeros([2, 3]), [-1, -1]), r"at most one -1 allowed in shape"),
    (lambda: gc.squeeze(gc.zeros([2, 3]), axis=[1]),
     r"cannot squeeze axis 1 of f32\[2,3\]: its size is 3, not 1"),
    (lambda: gc.broadcast_to(gc.zeros([2, 3]), [4, 3]), r"cannot broadcast f32\[2,3\] to"),
    (lambda: gc.stack([gc.zeros([2]), gc.zeros([3])]),
     r"stack needs equal shapes and dtypes: f32\[2\] vs f32\[3\]"),
    (lambda: gc.reduce_sum(gc.zeros([2], gc.bool)),
     r"expected a floating or integer tensor, found bool"),
    (lambda: gc.zeros([2, 3]) + gc.zeros([4]),
     r"add 'add': cannot broadcast f32\[2,3\] with f32\[4\]"),
])
def test_rule_messages_are_built_when_a_check_fails(build, message):
    with gc.Graph().as_default():
        with pytest.raises((gc.errors.ShapeError, gc.errors.DTypeError)) as e:
            build()
    assert e.match(message)
