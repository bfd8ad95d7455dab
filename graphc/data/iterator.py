"""Iterators over Datasets: graph placeholders that Session.run feeds from the pipeline.

``get_next()`` returns one placeholder per component (nested as the dataset's elements) and
marks each with its iterator (``meta["iterator"]``, ``meta["iterator_index"]``). Before a run
checks its feeds, ``next_elements`` pulls ONE element from every iterator whose placeholders
the step needs and the user did not feed, and ``run_initializers`` restarts the iterators whose
``initializer`` is fetched. The iterator holds its position (not the Session): a pass over
its dataset runs on the host in NumPy, so a compiled step only ever sees fed arrays.
"""
import weakref

from ..client.feeds import convert_feed
from ..errors import GraphError, OutOfRangeError
from ..ir import dtypes as D
from .structure import Spec, Structured, flatten, map_nest, new_context, pack, shape_leaves


class Iterator(Structured):
    """TF1's tf.data.Iterator: made by ``Dataset.make_one_shot_iterator()``,
    ``make_initializable_iterator()`` or ``Iterator.from_structure(types, shapes)``.

    Example:
        >>> it = ds.make_initializable_iterator()
        >>> xb, yb = it.get_next()
        >>> sess.run(it.initializer)
        >>> while True:
        ...     try: sess.run(train_op)
        ...     except gc.errors.OutOfRangeError: break
    """

    def __init__(self, dataset, initializable, spec=None):
        self._dataset = dataset
        self._spec = spec if spec is not None else dataset.element_spec
        self._initializable = initializable
        self._elements = None  # the current pass; None before the first pull or initializer
        self._next_value = None
        self._initializer = None
        from ..ir.graph import get_default_graph
        self.graph = get_default_graph()
        _GRAPHS_WITH_ITERATORS.add(self.graph)
        global made
        made += 1

    @staticmethod
    def from_structure(output_types, output_shapes=None, shared_name=None,
                       output_classes=None):
        """A reinitializable iterator: ``make_initializer(ds)`` gives an op starting it on
        ``ds`` (any dataset of this structure). Shapes default to scalars."""
        types_ = map_nest(D.as_dtype, output_types)
        shapes = flatten(map_nest(lambda t: (), types_)) if output_shapes is None else \
            shape_leaves(output_shapes, types_)
        spec = pack(types_, [Spec(t, s) for t, s in zip(flatten(types_), shapes)])
        return Iterator(None, initializable=True, spec=spec)

    # -- structure -------------------------------------------------------------------------
    @property
    def element_spec(self):
        return self._spec

    # -- graph side ------------------------------------------------------------------------
    def get_next(self, name=None):
        """The next element as placeholders, fed by ``Session.run`` with one element per run
        (the same placeholders on every call: fetching them in one run takes one element).

        Returns:
            a nest of placeholders shaped like the dataset's elements.
        """
        if self._next_value is None:
            from ..framework.graph import placeholder
            with self.graph.as_default():
                leaves = []
                for i, s in enumerate(flatten(self._spec)):
                    p = placeholder(s.dtype, s.shape, name=name or "IteratorGetNext")
                    p.meta["iterator"], p.meta["iterator_index"] = self, i
                    leaves.append(p)
            self._next_value = pack(self._spec, leaves)
        return self._next_value

    @property
    def initializer(self):
        """An op that (re)starts the iterator at its dataset's first element when run."""
        if not self._initializable:
            raise GraphError("a one-shot iterator has no initializer",
                             hint="use dataset.make_initializable_iterator()")
        if self._dataset is None:
            raise GraphError("an iterator from Iterator.from_structure has no dataset yet",
                             hint="run iterator.make_initializer(dataset)")
        if self._initializer is None:
            self._initializer = self.make_initializer(self._dataset)
        return self._initializer

    def make_initializer(self, dataset, name=None):
        """An op that starts the iterator on ``dataset`` when run.

        Raises:
            GraphError: ``dataset``'s element structure or dtypes differ from the iterator's.
        """
        mine, theirs = flatten(self._spec), flatten(dataset.element_spec)
        if [s.dtype for s in mine] != [s.dtype for s in theirs] or any(
                len(a.shape) != len(b.shape) for a, b in zip(mine, theirs)):
            raise GraphError(f"make_initializer: the dataset's elements {dataset.element_spec}"
                             f" do not match the iterator's {self._spec}")
        from ..framework.graph import group
        with self.graph.as_default():
            op = group(name=name or "MakeIterator")
        op.meta["iterator_init"] = (self, dataset)
        return op

    # -- host side -------------------------------------------------------------------------
    def restart(self, dataset=None):
        """Start a new pass (what running the initializer does)."""
        self._dataset = dataset or self._dataset
        self._elements = self._dataset._make(new_context())

    def next_flat(self):
        """The next element's components, in ``get_next()``'s order.

        Raises:
            OutOfRangeError: the pass is over.
            GraphError: an initializable iterator whose initializer has not run.
        """
        first = self.get_next()
        if self._elements is None:
            if self._initializable:
                raise GraphError("the iterator has not been initialized",
                                 loc=flatten(first)[0].loc,
                                 hint="run sess.run(iterator.initializer) first")
            self.restart()
        element = next(self._elements, None)
        if element is None:
            raise OutOfRangeError("IteratorGetNext: end of sequence (the dataset is "
                                  "exhausted)", loc=flatten(first)[0].loc,
                                  hint="catch gc.errors.OutOfRangeError to end the loop; "
                                       "an initializable iterator restarts when its "
                                       "initializer runs")
        return flatten(element)


def make_one_shot_iterator(dataset):
    """``tf.compat.v1.data.make_one_shot_iterator(ds)``: ``ds.make_one_shot_iterator()``."""
    return dataset.make_one_shot_iterator()


def make_initializable_iterator(dataset, shared_name=None):
    """``tf.compat.v1.data.make_initializable_iterator(ds)``."""
    return dataset.make_initializable_iterator()


# -- Session hooks -----------------------------------------------------------------------------
_GRAPHS_WITH_ITERATORS = weakref.WeakSet()
made = 0  # iterators made in this process: while unchanged, no graph has gained one


def has_iterators(graph):
    """Whether any iterator was made in ``graph``: Session.run skips the hooks below when not
    (they cost ~12 us per run, a third of a small step's Session overhead)."""
    return graph in _GRAPHS_WITH_ITERATORS


def next_elements(need, given):
    """Feeds for the iterator placeholders among ``need`` that ``given`` lacks: one element
    per iterator, however many of its components the step reads.

    Args:
        need: the placeholders a step takes; given: the user's feeds (node -> array).
    Returns:
        dict placeholder -> array, checked against the placeholder's dtype and shape.
    Raises:
        OutOfRangeError: an iterator is exhausted. FeedError: an element does not fit.
    """
    wanted = {}
    for p in need:
        it = p.meta.get("iterator")
        if it is not None and p not in given:
            wanted.setdefault(it, []).append(p)
    feeds = {}
    for it, placeholders in wanted.items():
        element = it.next_flat()
        for p in placeholders:
            feeds[p] = convert_feed(p, element[p.meta["iterator_index"]])
    return feeds


def run_initializers(flat):
    """Restart the iterators whose initializer ops are among ``flat`` (or grouped in them)."""
    stack, seen = list(flat), set()
    while stack:
        node = stack.pop()
        if node in seen or node.op_name != "group":
            continue
        seen.add(node)
        init = node.meta.get("iterator_init")
        if init is not None:
            init[0].restart(init[1])
        stack.extend(node.inputs)


__all__ = ["Iterator", "make_one_shot_iterator", "make_initializable_iterator"]
