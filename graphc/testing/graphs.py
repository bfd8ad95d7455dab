"""Random graphs as data: a ``Recipe`` is a seeded list of leaves and ops that builds into a
graph, and can be rebuilt with some ops cut out (what shrinking needs).

A recipe is generated once per seed (``generate``) and is pure data: every random choice
(shapes, attributes, constant weights, feed values) is drawn while generating, so building it
twice, into any graph and under any name prefix, gives the same graph. Value ``i`` of a recipe
is its ``i``-th item; an op names its inputs by value index, so replacing an op by one of its
inputs or by a fresh leaf of its shape (``Recipe.cut``) keeps every later op buildable.

Values stay well conditioned by construction: leaves are drawn away from 0 (|x| in
[0.1, 1.5]), ``sqrt`` and ``log`` read ``x*x + c``, divisions divide by ``y*y + c``, and an op
whose rough magnitude bound (``Op.bound``) exceeds ``MAX_BOUND`` is followed by a rescale.
Indices and labels are constants drawn in range; every reduced axis is non-empty.
"""
from dataclasses import dataclass, field, replace

import numpy as np

import graphc as gc

from . import kinds

MAX_BOUND = 64.0      # rescale a value whose magnitude bound exceeds this
# an op whose value would hold more elements is not drawn (an outer product of two long
# vectors, [21353, 21353], took 24 GB with its float64 reference and was killed for memory)
MAX_ELEMENTS = 1 << 23
MIN_OPS, MAX_OPS = 3, 40


@dataclass
class Leaf:
    """A placeholder and the value fed to it."""
    shape: tuple
    dtype: str
    value: np.ndarray = field(repr=False)
    bound: float = 1.5


@dataclass
class Op:
    """An op: ``kinds.BUILDERS[kind](inputs, params)`` gives its tensor."""
    kind: str
    inputs: tuple
    params: dict = field(repr=False)
    shape: tuple = ()
    dtype: str = "float32"
    bound: float = 1.0


@dataclass
class Recipe:
    """A random graph: ``items`` (leaves and ops, inputs before users) and the fetched values.

    Attributes:
        seed: the generating seed (``generate(seed)`` gives this recipe again).
        dtype: "float32" or "float64", the dtype of every float value.
        items: [Leaf | Op]; value i is items[i].
        fetches: value indices the step returns.
        note: how the recipe was derived (shrinking).
        unknown_dims: placeholders are declared with an unknown first dim (TF1's batch
            ``None``), but those a step needs static (convolution filters); fed as drawn.
    """
    seed: int
    dtype: str
    items: list
    fetches: list
    note: str = ""
    unknown_dims: bool = False

    @property
    def n_ops(self):
        return sum(1 for it in self.items if isinstance(it, Op))

    @property
    def stateful(self):
        """Whether the graph assigns variables (its second call sees the updates)."""
        return any(isinstance(self.items[i], Op) and self.items[i].kind in kinds.STATEFUL
                   for i in self.live())

    @property
    def live_ops(self):
        """How many ops the fetches need."""
        return sum(1 for i in self.live() if isinstance(self.items[i], Op))

    def live(self):
        """Indices of the values the fetches need, ascending."""
        need, stack = set(), list(self.fetches)
        while stack:
            i = stack.pop()
            if i in need:
                continue
            need.add(i)
            if isinstance(self.items[i], Op):
                stack.extend(self.items[i].inputs)
        return sorted(need)

    def cut(self, i, how):
        """This recipe with op ``i`` replaced: ``how`` = "leaf" (a fresh placeholder of its
        shape, values seeded by (seed, i)) or an input position k (its k-th input, which must
        have the op's shape and dtype)."""
        items = list(self.items)
        op = items[i]
        if how == "leaf":
            rng = np.random.default_rng([self.seed, i, 7])
            items[i] = leaf(rng, op.shape, op.dtype)
        else:
            src = op.inputs[how]
            items[i] = Op("identity", (src,), {}, op.shape, op.dtype, items[src].bound)
        return replace(self, items=items, note=f"{self.note} cut{i}:{how}".strip())

    def keep_fetches(self, fetches):
        return replace(self, fetches=list(fetches), note=f"{self.note} fetch{list(fetches)}")


def leaf(rng, shape, dtype):
    """A Leaf of ``shape``: floats with |x| in [0.1, 1.5] (no kinks at 0), bools at random."""
    shape = tuple(int(d) for d in shape)
    if dtype == "bool":
        return Leaf(shape, dtype, rng.random(shape) < 0.5, 1.0)
    mag = rng.uniform(0.1, 1.5, shape)
    return Leaf(shape, dtype, (mag * rng.choice([-1.0, 1.0], shape)).astype(dtype))


# Ops whose input at this position needs static dims (a filter; a cell's input depth): the
# leaves it is computed from stay declared as drawn.
STATIC_INPUTS = {"conv2d": 1, "depthwise": 1, "conv_block": 1, "rnn": 0, "loop": 0}


def declared_shape(recipe, i, static=None):
    """The shape leaf ``i`` of ``recipe`` is declared with (``Recipe.unknown_dims``);
    ``static``: ``_static_leaves(recipe)``, when the caller asks for every leaf."""
    shape = list(recipe.items[i].shape)
    if not (recipe.unknown_dims and shape):
        return shape
    if i in (_static_leaves(recipe) if static is None else static):
        return shape
    return [None] + shape[1:]


def _static_leaves(recipe):
    """Indices of the values ``STATIC_INPUTS`` are computed from."""
    stack = [it.inputs[STATIC_INPUTS[it.kind]] for it in recipe.items
             if isinstance(it, Op) and it.kind in STATIC_INPUTS]
    seen = set()
    while stack:
        k = stack.pop()
        if k not in seen:
            seen.add(k)
            if isinstance(recipe.items[k], Op):
                stack.extend(recipe.items[k].inputs)
    return seen


def build(recipe, prefix="g"):
    """Build ``recipe`` into the default graph.

    Args:
        recipe: a Recipe.
        prefix: name prefix of its placeholders and variable scopes (unique per graph in a
            batch).
    Returns:
        (fetch tensors, {placeholder: value}).
    """
    live = set(recipe.live())
    tensors, feeds = {}, {}
    static = _static_leaves(recipe) if recipe.unknown_dims else ()
    for i, it in enumerate(recipe.items):
        if i not in live:
            continue
        if isinstance(it, Leaf):
            p = gc.placeholder(gc.as_dtype(it.dtype), declared_shape(recipe, i, static),
                               name=f"{prefix}_p{i}")
            tensors[i] = p
            feeds[p] = it.value
        else:
            with gc.name_scope(f"{prefix}_{i}"):
                tensors[i] = kinds.BUILDERS[it.kind]([tensors[k] for k in it.inputs],
                                                        it.params, f"{prefix}_{i}")
    return [tensors[i] for i in recipe.fetches], feeds


class Generator:
    """Draws one recipe: a pool of values and a seeded RNG that the op families consult."""

    def __init__(self, seed, known_bugs=False, large=False):
        self.seed, self.known_bugs, self.large = seed, known_bugs, large
        self.rng = np.random.default_rng(seed)
        self.dtype = "float32" if self.rng.random() < 0.5 else "float64"
        self.items = []
        self.graph = gc.Graph()  # scratch: building each op checks it and gives its shape
        self.tensors = []

    # -- the pool -------------------------------------------------------------------------------
    def floats(self, pred=None):
        return [i for i, it in enumerate(self.items)
                if it.dtype == self.dtype and (pred is None or pred(it.shape))]

    def pick(self, pred=None, make=None):
        """A float value whose shape satisfies ``pred``, recent ones likelier (deep chains);
        else (or sometimes) a new leaf of shape ``make()``."""
        cands = self.floats(pred)
        if make is not None and (not cands or self.rng.random() < 0.25):
            return self.new_leaf(make())
        if not cands:
            return None
        w = np.arange(1, len(cands) + 1, dtype=float) ** 2
        return cands[int(self.rng.choice(len(cands), p=w / w.sum()))]

    def new_leaf(self, shape, dtype=None):
        lf = leaf(self.rng, shape, dtype or self.dtype)
        return self._add(lf, lambda: gc.placeholder(gc.as_dtype(lf.dtype), list(lf.shape)))

    def shape(self, i):
        return self.items[i].shape

    def bound(self, i):
        return self.items[i].bound

    def add_op(self, kind, inputs, params, bound):
        """Append op ``kind``; returns its value index, or None when graphc refuses it."""
        op = Op(kind, tuple(inputs), params, dtype=self.dtype, bound=float(bound))
        try:
            i = self._add(op, lambda: kinds.BUILDERS[kind](
                [self.tensors[k] for k in inputs], params, f"s{len(self.items)}"))
        except gc.errors.GraphcError:
            return None
        if self.tensors[i] is None:  # no value (an unconnected gradient): not an op here
            self.items.pop()
            self.tensors.pop()
            return None
        op.shape = tuple(int(d) for d in self.tensors[i].shape)
        if int(np.prod(op.shape, dtype=np.int64)) > MAX_ELEMENTS:
            self.items.pop()
            self.tensors.pop()
            return None
        if op.bound > MAX_BOUND:
            return self.add_op("scale", (i,), {"c": 1.0 / op.bound}, 1.0)
        return i

    def _add(self, item, make):
        with self.graph.as_default():
            t = make()
        self.items.append(item)
        self.tensors.append(t)
        return len(self.items) - 1

    def ops(self):
        return sum(1 for it in self.items if isinstance(it, Op))


def generate(seed, n_ops=None, known_bugs=False, large=False, unknown_dims=False):
    """The recipe of ``seed``: ``n_ops`` ops (default: 3 to 40, drawn) and its fetches.

    Small graphs are likelier (n = 3 + 37 u^2, u uniform: median 12, one in seven above 30):
    a bug usually needs a few ops, and compiling is paid per op. ``known_bugs`` also draws
    the patterns left out because they fail today (``nn_families.KNOWN_BAD_ASSIGNS``);
    ``large`` also draws large matrix dims and channel counts (``families.LARGE_GEMM_DIMS``,
    ``nn_families.LARGE_CHANNELS``), and products and convolutions twice as often.
    ``unknown_dims`` draws the same graph, built with placeholders of an unknown first dim
    (``Recipe.unknown_dims``).

    Fetches are every op value nothing reads (so every op is live) and up to two more
    intermediates (fetched values cannot be fused away or overwritten in place).
    """
    g = Generator(seed, known_bugs, large)
    target = int(n_ops or MIN_OPS + int((MAX_OPS - MIN_OPS + 1) * g.rng.random() ** 2))
    g.new_leaf(kinds.F.random_shape(g.rng))
    names, weights = zip(*(kinds.LARGE_WEIGHTS if large else kinds.WEIGHTS).items())
    p = np.array(weights, float) / sum(weights)
    tries = 0
    while g.ops() < target and tries < 20 * target:
        tries += 1
        kind = names[int(g.rng.choice(len(names), p=p))]
        kinds.DRAWERS[kind](g)
    used = {k for it in g.items if isinstance(it, Op) for k in it.inputs}
    ops = [i for i, it in enumerate(g.items) if isinstance(it, Op)]
    fetches = [i for i in ops if i not in used]
    inner = [i for i in ops if i in used]
    for _ in range(int(g.rng.integers(0, 3))):
        if inner:
            fetches.append(inner[int(g.rng.integers(len(inner)))])
    fetches = sorted(set(fetches)) or [len(g.items) - 1]
    return Recipe(seed, g.dtype, g.items, fetches, unknown_dims=unknown_dims)


def describe(recipe):
    """A short Python-like listing of the recipe (value = kind(inputs) : shape)."""
    lines = [f"# seed {recipe.seed}, {recipe.dtype}, {recipe.n_ops} ops"
             + (f" ({recipe.note})" if recipe.note else "")]
    live = set(recipe.live())
    static = _static_leaves(recipe) if recipe.unknown_dims else ()
    for i, it in enumerate(recipe.items):
        if i not in live:
            continue
        if isinstance(it, Leaf):
            shape = declared_shape(recipe, i, static)
            fed = f"  # fed {list(it.shape)}" if shape != list(it.shape) else ""
            lines.append(f"v{i} = placeholder({it.dtype}, {shape}){fed}")
        else:
            args = ", ".join(f"v{k}" for k in it.inputs)
            attrs = kinds.describe_params(it.params)
            lines.append(f"v{i} = {it.kind}({args}{', ' if attrs and args else ''}{attrs})"
                         f"  # {list(it.shape)}")
    lines.append("fetch " + ", ".join(f"v{i}" for i in recipe.fetches))
    return "\n".join(lines)
