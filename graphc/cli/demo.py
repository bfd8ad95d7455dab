"""``graphc demo``: train an MLP on the embedded 8x8 digits and show what the compiler did.

The run builds a TF1-style graph (two dense layers, softmax cross-entropy, an optimizer),
picks the fastest backend that compiles it (LLVM, else NumPy), trains with a plain-text
progress bar, prints loss and accuracy per epoch, the step time, and where the IR dumps and
the generated code were written. No download, no dependency beyond graphc's.
"""
import os
import sys
import tempfile
import time

import numpy as np

from ..errors import CompileError

BACKENDS = ("llvm", "numpy")  # fastest first
OPTIMIZERS = {  # name -> (factory, default learning rate)
    "sgd": (lambda gc, lr: gc.train.GradientDescentOptimizer(lr), 0.3),
    "momentum": (lambda gc, lr: gc.train.MomentumOptimizer(lr, 0.9), 0.05),
    "adam": (lambda gc, lr: gc.train.AdamOptimizer(lr), 0.003),
    "rmsprop": (lambda gc, lr: gc.train.RMSPropOptimizer(lr), 0.003),
}


def configure(parser):
    """Add the demo's options to its sub-parser."""
    parser.add_argument("--backend", choices=("auto",) + BACKENDS, default="auto",
                        help="code generator (auto: the fastest one that compiles the step)")
    parser.add_argument("--epochs", type=int, default=10, help="passes over the training set")
    parser.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default="adam")
    parser.add_argument("--learning-rate", type=float, default=None,
                        help="default: a rate that suits the optimizer")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=128, help="units of the hidden layer")
    parser.add_argument("--dump-dir", default=None,
                        help="where to write IR dumps and generated code (default: a new "
                             "temporary folder)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the split, init, batches")


class ProgressBar:
    """A plain-text bar: redrawn in place on a terminal, printed once when finished otherwise.

    Example:
        >>> bar = ProgressBar(45, "epoch 1/10")
        >>> bar.update(10, "loss 0.93")
        >>> bar.finish("loss 0.41")
    """

    def __init__(self, total, label, width=24, stream=None):
        self.total, self.label, self.width = total, label, width
        self.stream = stream or sys.stdout
        self.live = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.done = 0

    def render(self, suffix=""):
        filled = int(self.width * self.done / max(self.total, 1))
        bar = "#" * filled + "." * (self.width - filled)
        return f"{self.label} [{bar}] {self.done:>{len(str(self.total))}}/{self.total} {suffix}"

    def update(self, done, suffix=""):
        self.done = done
        if self.live:
            self.stream.write("\r" + self.render(suffix))
            self.stream.flush()

    def finish(self, suffix=""):
        self.done = self.total
        self.stream.write(("\r" if self.live else "") + self.render(suffix) + "\n")
        self.stream.flush()


def build_model(gc, hidden, optimizer, learning_rate, seed):
    """The MLP 64 -> hidden (ReLU) -> 10 and its train op; returns a dict of tensors."""
    x = gc.placeholder(gc.float32, [None, 64], name="x")
    y = gc.placeholder(gc.int64, [None], name="y")
    with gc.name_scope("dense1"):
        W1 = gc.Variable(gc.initializers.he_normal(seed=seed)([64, hidden]), name="W")
        b1 = gc.Variable(gc.zeros([hidden]), name="b")
        h = gc.nn.relu(gc.matmul(x, W1) + b1)
    with gc.name_scope("dense2"):
        W2 = gc.Variable(gc.initializers.glorot_uniform(seed=seed + 1)([hidden, 10]), name="W")
        b2 = gc.Variable(gc.zeros([10]), name="b")
        logits = gc.matmul(h, W2) + b2
    loss = gc.reduce_mean(gc.nn.sparse_softmax_cross_entropy_with_logits(labels=y,
                                                                         logits=logits))
    accuracy = gc.reduce_mean(gc.cast(gc.equal(gc.argmax(logits, 1), y), gc.float32))
    factory, default_lr = OPTIMIZERS[optimizer]
    lr = default_lr if learning_rate is None else learning_rate
    train = factory(gc, lr).minimize(loss, global_step=gc.train.get_or_create_global_step())
    return dict(x=x, y=y, loss=loss, accuracy=accuracy, train=train, lr=lr,
                init=gc.global_variables_initializer())


def open_session(gc, model, backend, feed, out):
    """A Session on the first backend that compiles the training step (runs that step)."""
    candidates = BACKENDS if backend == "auto" else (backend,)
    for name in candidates:
        sess = gc.Session(backend=name)
        try:
            sess.run(model["init"])
            t0 = time.perf_counter()
            first = sess.run([model["loss"], model["accuracy"], model["train"]], feed)
            return sess, name, time.perf_counter() - t0, first
        except CompileError as e:
            if backend != "auto":
                raise
            reason = str(e).splitlines()[0]
            out.write(f"backend {name}: not available ({reason}); trying the next one\n")
    raise CompileError("no backend could compile the demo's training step")


STEP_DIR = "train_step"
KNOWN_DUMPS = {"passes.txt": "what each pass changed (nodes before/after, counts)",
               "plan.txt": "the memory plan: buffers, offsets, in-place decisions",
               "graph.dot": "the optimized graph for Graphviz (fused groups as clusters)"}


def write_dumps(gc, model, feed, dump_dir, backend):
    """Compile the training step once more with dumps on, into ``dump_dir/train_step``.

    The Session's own dumps would mix every signature it compiled (initializer, training
    step, evaluation); this writes the training step alone. Returns [(path, description)].
    """
    from ..client.pipeline import compile_program
    fetches = [model["loss"], model["accuracy"], model["train"]]
    step_dir = os.path.join(dump_dir, STEP_DIR)
    os.makedirs(step_dir, exist_ok=True)
    path = os.path.join(dump_dir, "graph.ir.txt")
    with open(path, "w") as f:
        f.write(gc.dump_ir(fetches, title="train_step") + "\n")
    written = [(path, "the training graph as built (forward, gradients, update), text IR")]
    compiled = compile_program(fetches, {p: np.shape(v) for p, v in feed.items()},
                               backend=backend, dump_dir=step_dir)
    path = os.path.join(step_dir, "train_step." + ("py" if backend == "numpy" else "ll"))
    with open(path, "w") as f:
        f.write(compiled.source)
    written.append((path, f"generated {backend} code of the compiled training step"))
    return written + describe_pass_dumps(step_dir)


def describe_pass_dumps(step_dir):
    """[(path, description)] for what the pass pipeline wrote (IR stages grouped)."""
    files = sorted(os.listdir(step_dir))
    stages = [f[3:-3] for f in files if f.endswith(".ir")]
    out = []
    if stages:
        out.append((os.path.join(step_dir, "NN-<stage>.ir"),
                    f"IR at each stage ({len(stages)}): " + ", ".join(stages)))
    diffs = [f for f in files if f.endswith(".diff")]
    if diffs:
        out.append((os.path.join(step_dir, "NN-<pass>.diff"),
                    f"what each pass changed, as a diff ({len(diffs)})"))
    out += [(os.path.join(step_dir, f), KNOWN_DUMPS[f]) for f in files if f in KNOWN_DUMPS]
    return out


def run(args, out=None):
    """Run the demo; returns the exit code (0)."""
    import graphc as gc
    from graphc.data import batches, load_digits, train_test_split
    out = out or sys.stdout
    if args.epochs < 1 or args.batch_size < 1:
        raise SystemExit("graphc demo: --epochs and --batch-size must be >= 1")
    t_start = time.perf_counter()
    x, y = load_digits()
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_fraction=0.2, seed=args.seed)
    dump_dir = args.dump_dir or tempfile.mkdtemp(prefix="graphc-demo-")
    os.makedirs(dump_dir, exist_ok=True)
    graph = gc.Graph()
    with graph.as_default():
        model = build_model(gc, args.hidden, args.optimizer, args.learning_rate, args.seed)
        out.write(f"graphc demo: MLP 64-{args.hidden}-10 on the 8x8 digits ({len(x_tr)} train, "
                  f"{len(x_te)} test), {args.optimizer} lr={model['lr']:g}, "
                  f"batch {args.batch_size}\n")
        epochs = [list(batches(x_tr, y_tr, args.batch_size, seed=args.seed + e, drop_last=True))
                  for e in range(args.epochs)]
        feed0 = {model["x"]: epochs[0][0][0], model["y"]: epochs[0][0][1]}
        sess, backend, compile_time, first = open_session(gc, model, args.backend, feed0, out)
        out.write(f"backend: {backend} (first step, compiling included: "
                  f"{compile_time * 1e3:.0f} ms)\n")
        step_times, test_acc = train_epochs(sess, model, epochs, (x_te, y_te), first, out)
        written = write_dumps(gc, model, feed0, dump_dir, backend)
    total = time.perf_counter() - t_start
    out.write(f"test accuracy {test_acc:.4f} after {args.epochs} epoch(s); "
              f"total time {total:.2f} s\n")
    if step_times:
        out.write(f"step time: {np.median(step_times) * 1e3:.3f} ms median over "
                  f"{len(step_times)} training steps (backend {backend})\n")
    out.write(f"IR dumps and generated code written to {dump_dir}:\n")
    for path, what in written:
        out.write(f"  {os.path.relpath(path, dump_dir):<27} {what}\n")
    table = os.path.join(dump_dir, STEP_DIR, "passes.txt")
    if os.path.exists(table):
        out.write("what the passes did to the training step:\n")
        with open(table) as f:
            out.write("".join("  " + line if line.strip() else line for line in f))
    return 0


def train_epochs(sess, model, epochs, test, first, out):
    """The training loop; returns (step times after the first step, final test accuracy)."""
    x, y, fetches = model["x"], model["y"], [model["loss"], model["accuracy"], model["train"]]
    step_times, test_acc = [], 0.0
    for e, epoch in enumerate(epochs):
        bar = ProgressBar(len(epoch), f"epoch {e + 1:>{len(str(len(epochs)))}}/{len(epochs)}",
                          stream=out)
        losses, accs = [], []
        t_epoch = time.perf_counter()
        for i, (xb, yb) in enumerate(epoch):
            if e == 0 and i == 0:
                loss, acc, _ = first  # ran while choosing the backend
            else:
                t0 = time.perf_counter()
                loss, acc, _ = sess.run(fetches, {x: xb, y: yb})
                step_times.append(time.perf_counter() - t0)
            losses.append(loss)
            accs.append(acc)
            bar.update(i + 1, f"loss {np.mean(losses):.4f}")
        test_acc = float(sess.run(model["accuracy"], {x: test[0], y: test[1]}))
        bar.finish(f"loss {np.mean(losses):.4f}  acc {np.mean(accs):.4f}  "
                   f"test acc {test_acc:.4f}  {time.perf_counter() - t_epoch:.2f}s")
    return step_times, test_acc
