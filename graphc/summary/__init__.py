"""tf.summary: TensorBoard summaries and event files, as TF1 scripts write them.

graphc tensors are numeric, so a summary "op" is an API-level object: the tags and the tensors
they take their values from. ``Session.run`` fetches those tensors in the same step as the
rest of the fetches and turns them into a ``Summary`` (tags -> values) on the host, which
``FileWriter.add_summary`` writes as a TensorBoard event. Histograms are bucketed on the host
with TensorFlow's default buckets, so they look the same in TensorBoard.

Example:
    >>> tf.summary.scalar("loss", loss)
    >>> tf.summary.histogram("w", w)
    >>> merged = tf.summary.merge_all()
    >>> with tf.summary.FileWriter(logdir, sess.graph) as writer:
    ...     summ, _ = sess.run([merged, train_op], feed)
    ...     writer.add_summary(summ, step)
"""
import os
import re
import socket
import time
import weakref

import numpy as np

from ..errors import DTypeError, GraphcError, GraphError, NumericsError, ShapeError
from ..framework.graph import GraphKeys, constant, get_collection
from ..ir.graph import Graph, Node, get_default_graph, get_default_session
from ..ir.source import user_location
from .media import encode_png, encode_wav, image_bytes
from .proto import HistogramProto, Summary, event, graph_def, tfrecord

__all__ = ["FileWriter", "HistogramProto", "Summary", "SummaryOp", "audio", "histogram",
           "image", "merge", "merge_all", "scalar", "text"]


class SummaryOp:
    """A fetchable summary: ``(tag, kind, tensor)`` entries; kind ``("scalar",)``,
    ``("histogram",)``, ``("image", max_outputs)``, ``("audio", max_outputs, sample_rate)``
    or ``("text",)`` (whose "tensor" is the array of strings itself).

    ``Session.run`` expands it into its tensors (the ``_fetch_nest`` protocol of
    ``session.flatten``) and returns a ``Summary``.
    """

    def __init__(self, graph, name, entries, loc):
        self.graph, self.name, self.loc = graph, name, loc
        self.entries = tuple(entries)

    @property
    def tags(self):
        return [tag for tag, _, _ in self.entries]

    def _fetch_nest(self):
        """(the tensors to fetch, a function from their values to the fetched Summary)."""
        return [node for _, _, node in self.entries if isinstance(node, Node)], self._summary

    def _summary(self, values):
        out = []
        values = iter(values)
        for tag, kind, node in self.entries:
            if kind[0] == "text":   # a string known when the graph was built
                out.append(Summary.Value(tag=tag, text=node))
                continue
            value = next(values)
            if kind[0] == "scalar":
                out.append(Summary.Value(tag=tag, simple_value=float(value)))
                continue
            if kind[0] in ("image", "audio"):
                out += _media_values(tag, kind, node, np.asarray(value), self.loc)
                continue
            value = np.asarray(value)
            if value.dtype.kind == "f" and not np.isfinite(value).all():
                raise NumericsError(
                    f"histogram summary '{tag}': {node.describe()} has NaN or Inf values",
                    loc=self.loc, hint="TensorBoard histograms need finite values; "
                    "gc.check_numerics finds the node that produced them")
            out.append(Summary.Value(tag=tag, histo=HistogramProto.from_values(value)))
        return Summary(out)

    def eval(self, feed_dict=None, session=None):
        """The Summary in ``session`` or the default session (TF1's ``Tensor.eval``)."""
        session = session or get_default_session()
        if session is None:
            raise GraphError(f"{self.describe()}: no session to evaluate in",
                             hint="pass session=..., or call inside `with gc.Session():`")
        return session.run(self, feed_dict)

    def describe(self):
        return f"summary '{self.name}'"

    def __repr__(self):
        return f"<gc.summary '{self.name}' tags={self.tags}>"


# -- building ----------------------------------------------------------------------------------
_BAD_TAG_CHARS = re.compile(r"[^-/\w.]")


def clean_tag(name):
    """A tag TensorBoard accepts: characters other than letters, digits, ``_-/.`` become
    ``_`` and leading slashes go (TF1's rule)."""
    return _BAD_TAG_CHARS.sub("_", name).lstrip("/") if name else name


def _scoped_tag(name, family):
    """The tag TF1 gives ``name``: the enclosing name scopes as a prefix, a ``_1`` suffix when
    the scope name is taken, and ``family/`` in front when given."""
    name, family = clean_tag(name), clean_tag(family)
    base = name if not family else f"{family}/{name}"
    scoped = get_default_graph().unique_name(base)
    return scoped if not family else f"{family}/{scoped}"


def _as_tensor(kind, tag, value, loc):
    if not isinstance(value, Node):
        value = constant(value)
    if value.dtype is None:
        raise GraphError(f"{kind} summary '{tag}': {value.describe()} is an op without a "
                         "value", loc=loc, hint="summarize a tensor, e.g. the loss")
    if value.dtype.name == "bool":
        raise DTypeError(f"{kind} summary '{tag}': {value.describe()} is a bool tensor",
                         loc=loc, hint="cast it first: gc.cast(x, gc.float32)")
    if value.graph is not get_default_graph():
        raise GraphError(f"{kind} summary '{tag}': {value.describe()} belongs to another "
                         "graph", loc=loc, hint="build the summary in its tensor's graph")
    return value


def _register(op, collections, default):
    for key in default if collections is None else collections:
        op.graph.add_to_collection(key, op)
    return op


def scalar(name, tensor, collections=None, family=None):
    """A summary of one scalar (TensorBoard's Scalars tab).

    Args:
        name: the tag, prefixed by the enclosing name scopes (and ``family``).
        tensor: a scalar tensor of a numeric dtype (or a Python number).
        collections: the collections to add it to (default ``[GraphKeys.SUMMARIES]``).
        family: an optional tag prefix (TensorBoard groups tags by it).
    Returns:
        a SummaryOp; ``Session.run`` gives a ``Summary`` with one ``simple_value``.
    Raises:
        ShapeError: the tensor is not a scalar. DTypeError: it is a bool.
    Example:
        >>> with gc.name_scope("train"):
        ...     s = gc.summary.scalar("loss", loss)          # tag 'train/loss'
    """
    loc = user_location()
    tag = _scoped_tag(name, family)
    node = _as_tensor("scalar", tag, tensor, loc)
    if len(node.shape):
        raise ShapeError(f"scalar summary '{tag}': expects a scalar tensor, found "
                         f"{node.describe()} of type {node.type_str()}", loc=loc,
                         hint="reduce it first (gc.reduce_mean) or use gc.summary.histogram")
    op = SummaryOp(node.graph, tag, [(tag, ("scalar",), node)], loc)
    return _register(op, collections, [GraphKeys.SUMMARIES])


def histogram(name, values, collections=None, family=None):
    """A histogram of a tensor's values (TensorBoard's Histograms and Distributions tabs).

    Args:
        name: the tag, prefixed by the enclosing name scopes (and ``family``).
        values: a tensor of any shape and numeric dtype; its values must be finite.
        collections: the collections to add it to (default ``[GraphKeys.SUMMARIES]``).
    Returns:
        a SummaryOp; ``Session.run`` gives a ``Summary`` with a ``HistogramProto``.
    Raises:
        DTypeError: a bool tensor. NumericsError (at run time): NaN or Inf values.
    Example:
        >>> gc.summary.histogram("weights", W1)
    """
    loc = user_location()
    tag = _scoped_tag(name, family)
    node = _as_tensor("histogram", tag, values, loc)
    op = SummaryOp(node.graph, tag, [(tag, ("histogram",), node)], loc)
    return _register(op, collections, [GraphKeys.SUMMARIES])


def merge(inputs, collections=None, name=None):
    """One summary with the values of all of ``inputs`` (TF1's ``tf.summary.merge``).

    Args:
        inputs: a list of summaries (from scalar, histogram or merge).
        collections: collections to add the merged summary to (default: none).
    Returns:
        a SummaryOp fetching every input's tensors in one step.
    Raises:
        TypeError: an input is not a summary. GraphError: two inputs share a tag.
    Example:
        >>> merged = gc.summary.merge([loss_summary, acc_summary])
    """
    loc = user_location()
    entries, seen = [], {}
    for s in inputs:
        if not isinstance(s, SummaryOp):
            raise TypeError(f"gc.summary.merge: expects summaries (gc.summary.scalar, "
                            f"histogram, merge), got {type(s).__name__} {s!r}")
        for entry in s.entries:
            if entry[0] in seen:
                raise GraphError(f"gc.summary.merge: duplicate tag '{entry[0]}' (from "
                                 f"{seen[entry[0]].describe()} and {s.describe()})", loc=loc)
            seen[entry[0]] = s
            entries.append(entry)
    graph = inputs[0].graph if inputs else get_default_graph()
    op = SummaryOp(graph, graph.unique_name(name or "Merge/MergeSummary"), entries, loc)
    return _register(op, collections, [])


def merge_all(key=GraphKeys.SUMMARIES, scope=None, name=None):
    """Merge every summary in collection ``key`` (default graph); None when there is none,
    as in TF1.

    Example:
        >>> merged = gc.summary.merge_all()
    """
    summaries = get_collection(key, scope)
    return merge(summaries, name=name) if summaries else None


def _unsupported(kind, advice):
    def refuse(name, *args, **kwargs):
        raise GraphcError(f"gc.summary.{kind} ('{name}'): graphc writes scalar, histogram, "
                          f"image, audio and text summaries", loc=user_location(), hint=advice)
    refuse.__name__ = kind
    refuse.__doc__ = f"Not in graphc: raises GraphcError ({advice})."
    return refuse


def image(name, tensor, max_outputs=3, collections=None, family=None):
    """Images for TensorBoard's Images tab, PNG-encoded on the host (TF1's summary.image).

    Args:
        name: the tag's base: the values are tagged ``name/image/0``, ``/1``... (``name/image``
            when ``max_outputs`` is 1), after the enclosing name scopes.
        tensor: [batch, height, width, channels] with 1 (grayscale), 3 (RGB) or 4 (RGBA)
            channels; uint8 as it is, floats mapped per image as TF1 maps them (all >= 0:
            the largest is 255; with negatives, 0 is 128 and the largest magnitude 127).
        max_outputs: how many of the batch's images to write (the first ones).
    Returns:
        a SummaryOp; ``Session.run`` gives a Summary of ``Summary.Image`` values.
    Raises:
        ShapeError: not 4-D with 1, 3 or 4 channels. DTypeError: a bool tensor.
    Example:
        >>> gc.summary.image("inputs", gc.reshape(x, [-1, 28, 28, 1]), max_outputs=4)
    """
    loc = user_location()
    tag = _scoped_tag(name, family)
    node = _as_tensor("image", tag, tensor, loc)
    if len(node.shape) != 4 or node.shape[-1] not in (1, 3, 4):
        raise ShapeError(f"image summary '{tag}': expects [batch, height, width, channels] "
                         f"with 1, 3 or 4 channels, found {node.describe()} of type "
                         f"{node.type_str()}", loc=loc)
    op = SummaryOp(node.graph, tag, [(tag, ("image", int(max_outputs)), node)], loc)
    return _register(op, collections, [GraphKeys.SUMMARIES])


def audio(name, tensor, sample_rate, max_outputs=3, collections=None, family=None):
    """Sounds for TensorBoard's Audio tab, 16-bit PCM WAV encoded on the host (TF1's
    summary.audio).

    Args:
        name: the tag's base: ``name/audio/0``, ``/1``... (``name/audio`` when
            ``max_outputs`` is 1).
        tensor: float [batch, frames] or [batch, frames, channels], samples in [-1, 1]
            (clipped).
        sample_rate: samples per second, a Python number.
        max_outputs: how many of the batch's clips to write.
    Returns:
        a SummaryOp; ``Session.run`` gives a Summary of ``Summary.Audio`` values.
    Raises:
        ShapeError: not 2-D or 3-D. DTypeError: not floating. GraphError: a tensor
            sample_rate.
    Example:
        >>> gc.summary.audio("generated", waves, sample_rate=16000)
    """
    loc = user_location()
    tag = _scoped_tag(name, family)
    node = _as_tensor("audio", tag, tensor, loc)
    if not node.dtype.is_floating:
        raise DTypeError(f"audio summary '{tag}': expects float samples in [-1, 1], found "
                         f"{node.describe()} of type {node.type_str()}", loc=loc,
                         hint="cast it: gc.cast(x, gc.float32) / 32768.0 for int16 samples")
    if len(node.shape) not in (2, 3):
        raise ShapeError(f"audio summary '{tag}': expects [batch, frames] or [batch, frames, "
                         f"channels], found {node.describe()} of type {node.type_str()}",
                         loc=loc)
    if isinstance(sample_rate, Node):
        raise GraphError(f"audio summary '{tag}': sample_rate must be a Python number, found "
                         f"{sample_rate.describe()}", loc=loc)
    entry = (tag, ("audio", int(max_outputs), float(sample_rate)), node)
    return _register(SummaryOp(node.graph, tag, [entry], loc), collections,
                     [GraphKeys.SUMMARIES])


def text(name, tensor, collections=None):
    """Text for TensorBoard's Text tab (TF1's summary.text; Markdown is rendered there).

    graphc tensors are numeric, so the text is a Python string (or a list or array of
    strings), known when the graph is built; ``Session.run`` returns it with the other values.

    Raises:
        DTypeError: a graph tensor (graphc has no string tensors).
    Example:
        >>> gc.summary.text("config", f"lr = {lr}, batch = {batch}")
    """
    loc = user_location()
    tag = _scoped_tag(name, None)
    if isinstance(tensor, Node):
        raise DTypeError(f"text summary '{tag}': graphc tensors are numeric, found "
                         f"{tensor.describe()}", loc=loc,
                         hint="pass the text as a Python string (format numbers into it, or "
                              "log them with gc.summary.scalar)")
    strings = np.asarray(tensor, dtype=object)
    op = SummaryOp(get_default_graph(), tag, [(tag, ("text",), strings)], loc)
    return _register(op, collections, [GraphKeys.SUMMARIES])


def _media_values(tag, kind, node, value, loc):
    """The Summary.Values of one image or audio entry's fetched batch."""
    count = min(kind[1], value.shape[0])
    base = f"{tag}/{kind[0]}"
    tags = [base] if kind[1] == 1 else [f"{base}/{i}" for i in range(count)]
    out = []
    for t, item in zip(tags, value[:count]):
        if kind[0] == "image":
            pixels = image_bytes(item)
            out.append(Summary.Value(tag=t, image=Summary.Image(
                pixels.shape[0], pixels.shape[1], pixels.shape[2], encode_png(pixels))))
        else:
            samples = item[:, None] if item.ndim == 1 else item
            if not np.isfinite(samples).all():
                raise NumericsError(f"audio summary '{tag}': {node.describe()} has NaN or Inf "
                                    f"samples", loc=loc)
            out.append(Summary.Value(tag=t, audio=Summary.Audio(
                kind[2], samples.shape[1], samples.shape[0], encode_wav(samples, kind[2]))))
    return out


tensor_summary = _unsupported("tensor_summary", "use gc.summary.histogram for whole tensors")


# -- event files -------------------------------------------------------------------------------
class FileWriter:
    """Writes TensorBoard event files into ``logdir`` (TF1's ``tf.summary.FileWriter``).

    The file is ``events.out.tfevents.<seconds>.<host>[suffix]``; records are TFRecords of
    ``Event`` messages, the first one ``file_version: "brain.Event:2"``. Records are buffered
    and reach the disk every ``flush_secs`` seconds (checked when one is added), after
    ``max_queue`` records, on ``flush()``, ``close()`` and at interpreter exit.

    Args:
        logdir: the directory (created if missing).
        graph: a graph to write for TensorBoard's graph view (``sess.graph``).
        max_queue, flush_secs: when buffered records are flushed.
        filename_suffix: appended to the file name.
    Example:
        >>> with gc.summary.FileWriter("logs/run1", sess.graph) as writer:
        ...     writer.add_summary(sess.run(merged, feed), step)
    """

    def __init__(self, logdir, graph=None, max_queue=10, flush_secs=120, graph_def=None,
                 filename_suffix=None, session=None):
        self._logdir = str(logdir)
        self._max_queue, self._flush_secs = max_queue, flush_secs
        self._suffix = filename_suffix or ""
        self._file = None
        self.reopen()
        if graph is not None or graph_def is not None:
            self.add_graph(graph, graph_def=graph_def)

    def get_logdir(self):
        return self._logdir

    def reopen(self):
        """Start a new event file after ``close()`` (no-op while open)."""
        if self._file is not None:
            return
        os.makedirs(self._logdir, exist_ok=True)
        base = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}"
        for n in range(1000):  # two writers in one second: never append to another's file
            name = base + (f".{n}" if n else "") + self._suffix
            try:
                self._file = open(os.path.join(self._logdir, name), "xb")  # noqa: SIM115
                break
            except FileExistsError:
                continue
        else:
            raise GraphcError(f"FileWriter: cannot create an event file in {self._logdir}")
        self.path = self._file.name
        self._finalizer = weakref.finalize(self, self._file.close)  # flushes at exit too
        self._pending, self._last_flush = 0, time.time()
        self._write(event(time.time(), file_version="brain.Event:2"))
        self.flush()

    def add_summary(self, summary, global_step=None):
        """Write ``summary`` (a Summary from ``Session.run``, or its serialized bytes) as an
        event at step ``global_step``.

        Raises:
            TypeError: ``summary`` is neither. GraphcError: the writer is closed.
        """
        if not isinstance(summary, (Summary, bytes, bytearray)):
            raise TypeError(f"FileWriter.add_summary: expects the value Session.run returns "
                            f"for a summary (a gc.Summary), got {type(summary).__name__}")
        self._write(event(time.time(), _step(global_step), summary=summary))

    def add_graph(self, graph, global_step=None, graph_def=None):
        """Write ``graph``'s nodes and edges (names, ops, inputs) for TensorBoard's graph
        view; ``graph_def`` may instead give an encoded GraphDef (bytes)."""
        if graph_def is None:
            if not isinstance(graph, Graph):
                raise TypeError(f"FileWriter.add_graph: expects a gc.Graph (sess.graph), got "
                                f"{type(graph).__name__}")
            graph_def = graph_def_of(graph)
        self._write(event(time.time(), _step(global_step), graph_def=graph_def))

    def _write(self, record):
        if self._file is None:
            raise GraphcError(f"FileWriter({self._logdir!r}) is closed",
                              hint="call reopen() to write to a new event file")
        self._file.write(tfrecord(record))
        self._pending += 1
        if (self._pending >= self._max_queue
                or time.time() - self._last_flush >= self._flush_secs):
            self.flush()

    def flush(self):
        """Write the buffered records to disk."""
        if self._file is not None:
            self._file.flush()
            self._pending, self._last_flush = 0, time.time()

    def close(self):
        """Flush and close the event file (``reopen()`` starts a new one)."""
        if self._file is not None:
            self._finalizer()  # closes (and so flushes) the file, once
            self._file = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _step(global_step):
    if global_step is None:
        return 0
    return int(np.asarray(global_step))  # a fetched global step is a 0-d array or a number


def graph_def_of(graph):
    """An encoded GraphDef of ``graph``: each node's name, op and input names."""
    return graph_def((n.node_name, n.op_name, [i.node_name for i in n.inputs]) for n in graph.nodes)
