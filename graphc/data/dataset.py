"""tf.data.Dataset for TF1 scripts: an input pipeline that runs on the host, in NumPy.

graphc compiles training steps, not input pipelines. A Dataset here is a recipe for a stream of
elements (nests of tuples and dicts whose leaves are NumPy arrays); an iterator's ``get_next()``
gives graph placeholders that ``Session.run`` feeds with the next element (see ``iterator.py``).
``map`` and ``filter`` functions are called with NumPy arrays, not graph tensors.

Each pass over a dataset (a Python ``for``, an iterator's first element, an initializer run)
builds its elements afresh from a context of its own, so passes never share state; ``shuffle``
counts how often it was started within a pass, which is how ``repeat`` reshuffles each epoch.
"""
import itertools
import types

import numpy as np

from ..errors import GraphError
from ..ir import dtypes as D
from ..ir.ops.registry import default_array
from ..ir.static import StaticValues
from .iterator import Iterator
from .structure import Spec, Structured, flatten, map_nest, new_context, pack, shape_leaves

AUTOTUNE = -1  # tf.data.experimental.AUTOTUNE: prefetch/map parallelism hint, ignored here
_tokens = itertools.count()  # one per shuffle: its key in a pass's context


def _leaf_array(value, where):
    """A component value as an array with TF's default dtypes (Python float -> float32)."""
    from ..ir.graph import Node
    if isinstance(value, Node):
        value = _static_value(value, where)
    arr = default_array(value)
    try:
        D.as_dtype(arr.dtype)
    except Exception:
        raise GraphError(f"{where}: a component of dtype {arr.dtype} is not supported",
                         hint="graphc tensors are numeric or bool") from None
    return arr


def _static_value(node, where):
    """The value of a graph tensor computable from constants, else a clear GraphError."""
    value = StaticValues().value(node)
    if isinstance(value, tuple):
        culprit, why = value
        raise GraphError(f"{where}: {node.describe()} depends on {culprit.describe()}, "
                         f"{why}", loc=node.loc,
                         hint="a Dataset runs on the host in NumPy: build it from NumPy arrays "
                              "(feeding placeholders into a dataset is not supported)")
    return value


def as_element(value, where):
    """A user's element (arrays, numbers, lists, nests, constant graph tensors) as a nest of
    arrays; lists inside tuples and dicts are tensors, a returned top-level list a tuple."""
    if isinstance(value, dict):
        return {k: as_element(v, where) for k, v in value.items()}
    if isinstance(value, tuple):
        parts = [as_element(v, where) for v in value]
        return type(value)(*parts) if hasattr(value, "_fields") else tuple(parts)
    return _leaf_array(value, where)


def _spec_of(element):
    return map_nest(lambda a: Spec(D.as_dtype(a.dtype), a.shape), element)


def _call(fn, element):
    """TF's calling convention: a tuple element is unpacked into positional arguments."""
    return fn(*element) if type(element) is tuple else fn(element)


class Dataset(Structured):
    """A stream of elements, built on the host with NumPy (TF1's tf.data.Dataset).

    Build one with ``from_tensor_slices``, ``from_tensors``, ``range``, ``zip`` or
    ``from_generator``, transform it with ``map``, ``filter``, ``batch``, ``shuffle``,
    ``repeat``, ``take``, ``skip``, then read it with ``make_one_shot_iterator()`` (graph
    placeholders that ``Session.run`` feeds) or a Python ``for`` loop (NumPy elements).

    Example:
        >>> ds = gc.data.Dataset.from_tensor_slices((x, y)).shuffle(1000, seed=1).batch(32)
        >>> xb, yb = ds.make_one_shot_iterator().get_next()
    """

    def __init__(self, make, spec, name):
        self._make = make      # context -> iterator of elements
        self._spec_or_fn = spec  # a nest of Spec, or a function computing it on demand
        self._name = name

    # -- sources ---------------------------------------------------------------------------
    @staticmethod
    def from_tensor_slices(tensors):
        """One element per row of ``tensors`` (an array or a nest of arrays of equal length).

        Raises:
            GraphError: scalars, unequal lengths, or a placeholder among the tensors.
        """
        where = "Dataset.from_tensor_slices"
        arrays = as_element(tensors, where)
        leaves = flatten(arrays)
        if any(a.ndim == 0 for a in leaves):
            raise GraphError(f"{where}: every component needs a leading dimension to slice, "
                             f"found shapes {[list(a.shape) for a in leaves]}",
                             hint="use Dataset.from_tensors for a single element")
        lengths = {a.shape[0] for a in leaves}
        if len(lengths) > 1:
            raise GraphError(f"{where}: components differ in length: "
                             f"{[a.shape[0] for a in leaves]}",
                             hint="all components must have the same first dimension")
        n = lengths.pop()
        spec = map_nest(lambda a: Spec(D.as_dtype(a.dtype), a.shape[1:]), arrays)
        return Dataset(lambda ctx: (pack(arrays, [a[i] for a in leaves]) for i in range(n)),
                       spec, "from_tensor_slices")

    @staticmethod
    def from_tensors(tensors):
        """A dataset of one element: ``tensors`` itself."""
        element = as_element(tensors, "Dataset.from_tensors")
        return Dataset(lambda ctx: iter([element]), _spec_of(element), "from_tensors")

    @staticmethod
    def range(*args, output_type=D.int64):  # noqa: A003  (TF's name)
        """Integers as Python's ``range(start, stop, step)``, int64 scalars by default."""
        dtype = D.as_dtype(output_type)
        r = range(*(int(a) for a in args))
        return Dataset(lambda ctx: (np.array(i, dtype.np) for i in r), Spec(dtype, ()),
                       "range")

    @staticmethod
    def zip(datasets):  # noqa: A003  (TF's name)
        """Elements of several datasets side by side (a nest of datasets), shortest first.

        Example:
            >>> Dataset.zip((Dataset.range(3), Dataset.range(10, 13)))   # (0, 10), (1, 11), ...
        """
        parts = flatten(datasets)
        if not parts or not all(isinstance(d, Dataset) for d in parts):
            raise GraphError("Dataset.zip: expects a tuple or dict of Datasets")

        def make(ctx):
            return (pack(datasets, els) for els in zip(*(d._make(ctx) for d in parts)))
        return Dataset(make, lambda: pack(datasets, [d.element_spec for d in parts]), "zip")

    @staticmethod
    def from_generator(generator, output_types, output_shapes=None):
        """Elements from ``generator()`` (called once per pass) cast to ``output_types``;
        without ``output_shapes`` the shapes are those of the first element."""
        types_ = map_nest(D.as_dtype, output_types)

        def make(ctx):
            for value in generator():
                leaves = flatten(as_element(value, "Dataset.from_generator"))
                yield pack(types_, [np.asarray(v, t.np) for v, t in zip(leaves,
                                                                        flatten(types_))])
        ds = Dataset(make, None, "from_generator")
        if output_shapes is None:
            ds._spec_or_fn = lambda: _spec_of(_first(ds, "Dataset.from_generator"))
        else:
            ds._spec_or_fn = pack(types_, [Spec(t, s) for t, s in zip(
                flatten(types_), shape_leaves(output_shapes, types_))])
        return ds

    # -- element structure -----------------------------------------------------------------
    @property
    def element_spec(self):
        """The nest of ``Spec`` (dtype, shape) of one element."""
        if callable(self._spec_or_fn):
            self._spec_or_fn = self._spec_or_fn()
        return self._spec_or_fn

    def __iter__(self):
        """NumPy elements of one pass (TF2's eager iteration)."""
        return self._make(new_context())

    def as_numpy_iterator(self):
        return iter(self)

    def __repr__(self):
        return f"<gc.data.Dataset {self._name} element_spec={self.element_spec}>"

    # -- transformations -------------------------------------------------------------------
    def batch(self, batch_size, drop_remainder=False):
        """Stack ``batch_size`` consecutive elements; the last batch may be smaller unless
        ``drop_remainder`` (then the batch dim is static, else None).

        Raises:
            GraphError: batch_size < 1, or elements of one batch differ in shape.
        """
        n = int(batch_size)
        if n < 1:
            raise GraphError(f"Dataset.batch: batch_size must be >= 1, got {batch_size}")
        dim = n if drop_remainder else None

        def make(ctx):
            it = self._make(ctx)
            while True:
                chunk = list(itertools.islice(it, n))
                if not chunk or (drop_remainder and len(chunk) < n):
                    return
                yield _stack(chunk)
        return Dataset(make, lambda: map_nest(lambda s: Spec(s.dtype, (dim,) + s.shape),
                                              self.element_spec), "batch")

    def shuffle(self, buffer_size, seed=None, reshuffle_each_iteration=True):
        """Shuffle through a buffer of ``buffer_size`` elements, as TF does: each element
        out is drawn uniformly from the buffer and its place taken by the next one in.

        A buffer at least as large as the dataset gives a uniform permutation. With a
        ``seed`` a pass is reproducible; ``reshuffle_each_iteration`` draws another order
        each time the shuffle restarts within a pass (each epoch of a ``repeat``).
        Without a seed every pass draws fresh entropy.
        """
        size = int(buffer_size)
        if size < 1:
            raise GraphError(f"Dataset.shuffle: buffer_size must be >= 1, got {buffer_size}")
        token = next(_tokens)

        def make(ctx):
            epoch = ctx["starts"][token] = ctx["starts"].get(token, -1) + 1
            base = [seed] if seed is not None else [ctx["entropy"], token]
            rng = np.random.default_rng(base + [epoch if reshuffle_each_iteration else 0])
            return _buffer_shuffle(self._make(ctx), size, rng)
        return Dataset(make, lambda: self.element_spec, "shuffle")

    def repeat(self, count=None):
        """Repeat the dataset ``count`` times (None or -1: forever)."""
        count = -1 if count is None else int(count)

        def make(ctx):
            for _ in (itertools.count() if count < 0 else range(count)):
                empty = True
                for element in self._make(ctx):
                    empty = False
                    yield element
                if empty:  # repeating nothing forever would never return
                    return
        return Dataset(make, lambda: self.element_spec, "repeat")

    def map(self, map_func, num_parallel_calls=None):  # noqa: A003  (TF's name)
        """Apply ``map_func`` to every element. It is called with NumPy arrays (a tuple
        element unpacked into arguments), not graph tensors; gc ops on constants are allowed
        (evaluated at once), anything needing a placeholder or Variable is refused.

        Raises:
            GraphError: map_func raised on NumPy arrays (the message says so), or the
                dataset is empty when its output structure is needed.
        """
        def make(ctx):
            return (_apply_map(map_func, el) for el in self._make(ctx))
        return Dataset(make, lambda: self._mapped_spec(map_func), "map")

    def _mapped_spec(self, map_func):
        first = _first(self, "Dataset.map")
        out = _apply_map(map_func, first)
        unknown = {s.shape[0] for s in flatten(self.element_spec) if s.shape[:1] == (None,)}
        rows = {a.shape[0] for a in flatten(first) if a.ndim}

        def spec(a):  # a batch dim unknown upstream stays unknown when map keeps it
            lead = (None,) if unknown and a.ndim and a.shape[0] in rows else a.shape[:1]
            return Spec(D.as_dtype(a.dtype), lead + a.shape[1:])
        return map_nest(spec, out)

    def filter(self, predicate):  # noqa: A003  (TF's name)
        """Keep the elements for which ``predicate`` (called like ``map``'s function)
        returns a true scalar."""
        def keep(element):
            arr = _leaf_array(_numpy_call(predicate, element, "Dataset.filter"),
                              "Dataset.filter")
            if arr.size != 1:
                raise GraphError(f"Dataset.filter: the predicate must return a scalar bool, "
                                 f"found shape {list(arr.shape)}")
            return bool(arr.reshape(()))
        return Dataset(lambda ctx: (el for el in self._make(ctx) if keep(el)),
                       lambda: self.element_spec, "filter")

    def take(self, count):
        """The first ``count`` elements (-1: all)."""
        count = int(count)
        return Dataset(lambda ctx: itertools.islice(self._make(ctx), None if count < 0
                                                    else count),
                       lambda: self.element_spec, "take")

    def skip(self, count):
        """All but the first ``count`` elements (-1: none left)."""
        count = int(count)

        def make(ctx):
            it = self._make(ctx)
            return iter(()) if count < 0 else itertools.islice(it, count, None)
        return Dataset(make, lambda: self.element_spec, "skip")

    def prefetch(self, buffer_size=None):
        """No-op: elements are made when a step needs them."""
        return self

    def cache(self, filename=""):
        """No-op: the pipeline's sources are in memory already."""
        return self

    # -- iterators (defined in iterator.py) ------------------------------------------------
    def make_one_shot_iterator(self):
        """An iterator that starts at the first element and cannot be restarted."""
        return Iterator(self, initializable=False)

    def make_initializable_iterator(self, shared_name=None):
        """An iterator that starts (and restarts) when ``Session.run(it.initializer)``."""
        return Iterator(self, initializable=True)


def _first(dataset, where):
    """The first element of a fresh pass, to learn a structure by example."""
    first = next(iter(dataset), None)
    if first is None:
        raise GraphError(f"{where}: the dataset is empty, so the structure of its elements "
                         "cannot be found")
    return first


def _stack(chunk):
    """A batch from a list of elements, each component stacked along a new first axis."""
    columns = zip(*(flatten(el) for el in chunk))
    stacked = []
    for k, column in enumerate(columns):
        shapes = {a.shape for a in column}
        if len(shapes) > 1:
            raise GraphError(f"Dataset.batch: component {k} has different shapes within one "
                             f"batch: {sorted(list(s) for s in shapes)}",
                             hint="map the elements to one shape before batching")
        stacked.append(np.stack(column))
    return pack(chunk[0], stacked)


def _buffer_shuffle(elements, size, rng):
    buf = []
    for element in elements:
        if len(buf) < size:
            buf.append(element)
            continue
        i = rng.integers(size)
        out, buf[i] = buf[i], element
        yield out
    for i in rng.permutation(len(buf)):
        yield buf[i]


def _numpy_call(fn, element, where):
    """Call a user's function on NumPy arrays inside a scratch graph (gc ops on constants
    then leave no nodes in the user's graph); say clearly when it needs graph tensors."""
    from ..ir.graph import Graph
    try:
        with Graph().as_default():
            return _call(fn, element)
    except GraphError:
        raise
    except Exception as exc:
        raise GraphError(f"{where}: the function failed on NumPy arrays: "
                         f"{type(exc).__name__}: {exc}",
                         [f"element: {map_nest(lambda a: f'{a.dtype}{list(a.shape)}', element)}"],
                         hint="graphc runs dataset functions on the host: they receive NumPy "
                              "arrays (not graph tensors); write them with NumPy") from exc


def _apply_map(fn, element):
    out = _numpy_call(fn, element, "Dataset.map")
    return as_element(tuple(out) if isinstance(out, list) else out, "Dataset.map")


experimental = types.SimpleNamespace(AUTOTUNE=AUTOTUNE)
