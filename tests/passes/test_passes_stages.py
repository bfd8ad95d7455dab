"""The per-pass IR text is rendered lazily from snapshots: it must be byte-identical to the
text printed right after each pass, and ``step.ir(stage)`` must work after compiling."""
import numpy as np
import pytest

import graphc as gc
from graphc.ir.passes import DEFAULT_PIPELINE, run_pipeline
from graphc.ir.passes.stages import Stages
from graphc.ir.printer import program_text
from graphc.ir.program import build_program


def _model(kind):
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, [None, 6], name="x")
        y = gc.placeholder(gc.int64, [None], name="y")
        w = gc.Variable(np.linspace(-1, 1, 18, dtype=np.float32).reshape(6, 3), name="w")
        b = gc.Variable(np.zeros(3, np.float32), name="b")
        logits = gc.matmul(gc.tanh(x) * 1.0, w) + b
        loss = gc.reduce_mean(gc.nn.sparse_softmax_cross_entropy_with_logits(
            labels=y, logits=logits))
        if kind == "adam":
            opt = gc.train.AdamOptimizer(1e-2)
            grads, variables = zip(*opt.compute_gradients(loss))
            clipped, _ = gc.clip_by_global_norm(list(grads), 1.0)
            train = opt.apply_gradients(list(zip(clipped, variables)))
        else:
            train = gc.train.GradientDescentOptimizer(0.1).minimize(loss)
    return g, x, y, loss, train


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_every_lazy_stage_equals_the_eager_text_after_that_pass(kind):
    g, x, y, loss, train = _model(kind)
    shapes = {x: (4, 6), y: (4,)}
    program = build_program([loss, train], shapes)
    run_pipeline(program)
    assert isinstance(program.stages, Stages)
    names = [name for name, _ in program.stages]
    assert names == ["input", *DEFAULT_PIPELINE]
    for k, name in enumerate(names):
        eager = build_program([loss, train], shapes)
        run_pipeline(eager, passes=list(DEFAULT_PIPELINE[:k]))
        assert program.stages[k] == (name, program_text(eager)), name
    # the final stage is the program as it is now
    assert program.stages[-1][1] == program_text(program)


def test_stage_text_is_stable_across_compiles_and_ir_works_after_compile():
    g, x, y, loss, train = _model("sgd")
    with g.as_default():
        step = gc.compile([loss, train], feeds=[x, y])
    feed = {x: np.ones((4, 6), np.float32), y: np.arange(4) % 3}
    step(feed)
    first = [step.ir(name) for name in ("input", "fuse", "final")]
    assert "fused" not in first[0] and "fused" in first[1]
    program = build_program([loss, train], {x: (4, 6), y: (4,)})
    run_pipeline(program)
    assert [program.stages[0][1], program.stages[DEFAULT_PIPELINE.index("fuse") + 1][1],
            program.stages[-1][1]] == first
    with pytest.raises(gc.errors.CompileError, match="no IR stage 'bogus'"):
        step.ir("bogus")
