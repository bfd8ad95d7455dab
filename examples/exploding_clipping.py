"""Exploding gradients in a deep linear network, cured by clipping by global norm.

A 10-layer linear network whose weights are orthogonal matrices scaled by 1.25 amplifies
signals by 1.25^10 ~ 9 on the way up and gradients by as much on the way down. Plain SGD
with learning rate 0.01 takes a first step so large that the next loss is around 1e11 and
the one after is NaN. The same run with the gradients rescaled to a global norm of at most 1
(``gc.clip_by_global_norm``: one factor for all tensors, so the step keeps its direction)
converges. The gradient report flags the layers whose update would exceed their weights.

    python examples/exploding_clipping.py [--steps 200] [--quick]
"""
import argparse

import numpy as np

import graphc as gc

DEPTH, WIDTH, GAIN, LR, CLIP = 10, 16, 1.25, 0.01, 1.0


def build(clip):
    """The regression network; SGD on clipped (or raw) gradients. Returns (graph, tensors)."""
    g = gc.Graph()
    with g.as_default():
        x = gc.placeholder(gc.float32, [None, WIDTH], name="x")
        y = gc.placeholder(gc.float32, [None, 1], name="y")
        h = x
        for i in range(DEPTH):
            with gc.name_scope(f"layer{i}"):
                W = gc.Variable(gc.initializers.orthogonal(gain=GAIN, seed=i)([WIDTH, WIDTH]),
                                name="W")
                h = gc.matmul(h, W)
        with gc.name_scope("output"):
            W = gc.Variable(gc.initializers.glorot_normal(seed=99)([WIDTH, 1]), name="W")
        loss = gc.reduce_mean(gc.square(gc.matmul(h, W) - y))
        opt = gc.train.GradientDescentOptimizer(LR)
        pairs = opt.compute_gradients(loss)
        grads, variables = zip(*pairs)
        if clip:
            grads, norm = gc.clip_by_global_norm(list(grads), CLIP)
        else:
            norm = gc.global_norm(list(grads))
        train = opt.apply_gradients(list(zip(grads, variables)))
        health = gc.diagnostics.gradient_norms(pairs, learning_rate=LR)
        init = gc.global_variables_initializer()
    return g, dict(x=x, y=y, loss=loss, norm=norm, train=train, health=health, init=init)


def run(clip, data, steps):
    name = f"clipped to global norm {CLIP:g}" if clip else "no clipping"
    g, m = build(clip)
    feed = {m["x"]: data[0], m["y"]: data[1]}
    history = []
    with gc.Session(graph=g) as sess:
        sess.run(m["init"])
        report = gc.diagnostics.gradient_report(sess.run(m["health"], feed))
        for t in range(steps):
            loss, norm, _ = sess.run([m["loss"], m["norm"], m["train"]], feed)
            history.append(loss)
            if t < 3 or (t + 1) % max(1, steps // 4) == 0 or not np.isfinite(loss):
                print(f"  [{name}] step {t:4d}  loss {loss:11.4e}  gradient global norm "
                      f"{norm:10.4e}")
            if not np.isfinite(loss):
                break
    return name, history, report


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="a short run (40 steps)")
    args = parser.parse_args(argv)
    steps = 40 if args.quick else args.steps
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, WIDTH)).astype(np.float32)
    y = (x @ rng.normal(size=(WIDTH, 1))).astype(np.float32)
    results = {}
    for clip in (False, True):
        name, history, report = run(clip, (x, y), steps)
        if not clip:
            print(report)
        last = history[-1]
        print(f"{name}: loss {history[0]:.4e} at step 0, {last:.4e} at step "
              f"{len(history) - 1}" + ("  (diverged)" if not np.isfinite(last) else ""))
        results[clip] = (history[0], last, report)
    return results


if __name__ == "__main__":
    main()
