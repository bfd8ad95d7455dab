"""A native step: object code from the LLVM backend, bound to its buffers, run as one call.

The object code exports one function, ``void step(void **table)``. ``StepLayout`` (plain data,
written by the code generator) says what each table slot holds: feeds, variables, fetch
outputs, constants, the arena, a status block, the RNG state and BLAS entry points. ``NativeStep``
allocates what the step owns, fills the table once, and per call only rebinds the slots of
arrays whose identity changed (reading an array's address costs ~1 us; an identity check
~30 ns), makes one ctypes call and checks the status word.

Variables are updated in place: the step writes new values into the very arrays it was given,
so a caller that keeps passing the same arrays never copies parameters in or out.

This module imports only numpy and the runtime's own modules: a saved step runs without the
compiler.
"""
from __future__ import annotations

import ctypes
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from operator import attrgetter

import numpy as np

from graphc.errors import ArtifactError, FeedError, InvalidArgumentError, NumericsError

from . import collectives, host_calls, jit, parallel, threads
from .aligned import aligned_empty
from .blas import gemm_entry
from .jit import data_address
from .numerics import NumericsSite, numerics_error
from .step_errors import IndexCheck, Snapshot
from .threads import BlasTuner


def _callback_address(name):
    """The runtime entry point a step's table slot ``name`` holds."""
    if name == "host_call":
        return host_calls.callback_address()
    if name in ("parallel_for", "parallel_rest"):
        return parallel.callback_address(name)
    return collectives.callback_address(name)

__all__ = ["Slot", "StepLayout", "NativeStep", "NumericsSite", "STATUS_MESSAGES"]

# Status codes written by kernels into status[0]; status[1] is the kernel's node index in the
# layout's ``node_names``, status[2] the offending value (an index or a flat position),
# status[3] an offending index's flat position (messages: ``runtime.step_errors``).
STATUS_MESSAGES = {
    1: (InvalidArgumentError, "index {value} is out of range for {node}"),
    2: (InvalidArgumentError, "label {value} is out of range for {node}"),
    3: (NumericsError, "{node}: NaN or Inf at flat index {value}"),
}


@dataclass
class Slot:
    """One array-valued table slot: its index, shape and NumPy dtype name."""
    index: int
    shape: tuple
    dtype: str

    def __reduce__(self):  # (pickled as its fields: 1,112 slots unpickle in 0.34 ms, not 0.8)
        return Slot, (self.index, self.shape, self.dtype)


class SlotColumns(Sequence):
    """Slots as columns: their table indices, and each one's kind (shape, dtype name) as a
    position in a short list of kinds. A layout's variables are pickled this way: a deep
    model's 1,110 variables are two kinds, read back as three lists (as Slot objects they
    took 0.9 ms to unpickle in a fresh process). Reading an item gives a Slot.

    Args:
        indices: the table slot of each.
        kinds: the distinct (shape tuple, dtype name) pairs.
        kind_of: per slot, its position in ``kinds``.
    """

    __slots__ = ("indices", "kinds", "kind_of")

    def __init__(self, indices, kinds, kind_of):
        self.indices, self.kinds, self.kind_of = list(indices), list(kinds), list(kind_of)
        if len(self.kind_of) != len(self.indices):
            raise ValueError("SlotColumns: one kind per index")

    @classmethod
    def of(cls, slots):
        """The columns of ``slots`` (Slots, or SlotColumns as they are)."""
        if type(slots) is cls:
            return slots
        position, kind_of = {}, []
        for s in slots:
            kind_of.append(position.setdefault((tuple(s.shape), s.dtype), len(position)))
        return cls([s.index for s in slots], list(position), kind_of)

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, k):
        if isinstance(k, slice):
            return [self[j] for j in range(*k.indices(len(self)))]
        shape, dtype = self.kinds[self.kind_of[k]]
        return Slot(self.indices[k], shape, dtype)

    def __eq__(self, other):
        return isinstance(other, Sequence) and list(self) == list(other)

    def __reduce__(self):
        return SlotColumns, (self.indices, self.kinds, self.kind_of)


@dataclass
class StepLayout:
    """What the object code's table holds, slot by slot (written by the code generator).

    Attributes:
        entry: the exported function's name.
        n_slots: the table's length.
        feeds, variables: one Slot per step argument, in call order.
        outputs: fetch output buffers the step owns (filled by the step).
        fetch_outputs: per fetch, an index into ``outputs`` (None: the fetch has no value).
        updated: indices into ``variables`` of the variables the step assigns, in the order of
            the program's updates (returned as the new values).
        consts: (slot, array) pairs: constants too large to inline in the code.
        arena: (slot, bytes): scratch memory for intermediate values (64-byte aligned).
        status: the slot of the status block (int64[4]), or None.
        index_checks: [entry, ``IndexCheck`` as JSON] of the kernels that check indices
            (entry: their index in ``node_names``), for InvalidArgumentError messages.
        snapshot: indices into ``variables`` of those the step may write before it fails:
            saved before each call, restored when it raises (``ir.rollback``).
        rng: (slot, seeds): the state is [call counter, one 64-bit key per random op]; a
            seed of None draws the key from the OS at load. The step increments the counter.
        blas: (slot, dtype name, integer bits) of the sgemm/dgemm entry points the code calls.
        node_names: names of kernels that may report a status (for error messages).
        profile: (slot, labels) in profiling builds: one cycle counter per kernel call.
        callbacks: (slot, name) of runtime entry points the code calls
            (``runtime.collectives.callback_address``: the MPI allreduce;
            ``runtime.host_calls``: Python functions, tf.Print/Assert/py_func).
        numerics: one ``NumericsSite`` per NaN/Inf check (status 3): the node it names and
            where its value lives, read to raise the NumPy backend's NumericsError.
    """
    entry: str
    n_slots: int
    feeds: list = field(default_factory=list)
    variables: list = field(default_factory=list)
    outputs: list = field(default_factory=list)
    fetch_outputs: list = field(default_factory=list)
    updated: list = field(default_factory=list)
    consts: list = field(default_factory=list)
    arena: tuple = (None, 0)
    status: int | None = None
    index_checks: list = field(default_factory=list)
    snapshot: list = field(default_factory=list)
    rng: tuple = (None, ())
    blas: list = field(default_factory=list)
    node_names: list = field(default_factory=list)
    profile: tuple = (None, ())
    callbacks: list = field(default_factory=list)
    numerics: list = field(default_factory=list)

    def __getstate__(self):  # (the variables pickled as columns: ``SlotColumns``)
        return dict(self.__dict__, variables=SlotColumns.of(self.variables))


def _c_strides(shape, dtype):
    """The strides of a C-ordered array of ``shape`` and ``dtype``."""
    strides, step = [], np.dtype(dtype).itemsize
    for n in reversed(shape):
        strides.append(step)
        step *= n
    return tuple(reversed(strides))


_NDARRAY = {np.ndarray}
_shape, _dtype, _strides = attrgetter("shape"), attrgetter("dtype"), attrgetter("strides")


def _rng_key(seed):
    """A 64-bit key for one random op: a fixed seed mixes deterministically, None draws."""
    if seed is None:
        return int.from_bytes(os.urandom(8), "little")
    x = (int(seed) * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) & 0xFFFFFFFFFFFFFFFF
    x ^= x >> 31
    return (x * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF


class NativeStep:
    """Callable step: ``step(*feeds, *variables) -> (fetch values, updated variables)``.

    Fetch values come as a list (copies: the step's buffers are reused by the next call;
    0-d values as NumPy scalars); the updated variables are the very arrays passed in.

    Args:
        layout: the StepLayout the object code was generated for.
        loaded: a ``jit.LoadedModule`` holding the code (kept alive by this object).

    Calls from several threads take turns (a lock): the arena and outputs belong to the
    object.

    Example:
        >>> step = NativeStep(layout, jit.load_object(object_code))
        >>> (loss,), (w_new,) = step(x, y, w)      # w_new is w, updated in place
    """

    updates_in_place = True
    fetches_owned = True  # fetched arrays are fresh copies and 0-d values scalars (__call__)

    def __init__(self, layout: StepLayout, loaded):
        self.layout, self.loaded = layout, loaded
        items = [None] * layout.n_slots
        self.outputs = [np.zeros(s.shape, s.dtype) for s in layout.outputs]
        for s, arr in zip(layout.outputs, self.outputs):
            items[s.index] = arr
        for slot, arr in layout.consts:
            items[slot] = np.ascontiguousarray(arr)
        slot, nbytes = layout.arena
        self.arena = aligned_empty(max(int(nbytes), 64))
        if slot is not None:
            items[slot] = self.arena
        self.status = np.zeros(4, np.int64)
        self._status_word = ctypes.c_int64.from_buffer(self.status)  # cheaper than status[0]
        if layout.status is not None:
            items[layout.status] = self.status
        slot, seeds = layout.rng
        self.rng_state = np.array([0] + [_rng_key(s) for s in seeds], np.uint64)
        if slot is not None:
            items[slot] = self.rng_state
        self._callbacks = bool(layout.callbacks)  # a Python exception inside is re-raised
        slot, labels = layout.profile
        self.cycles = np.zeros(max(len(labels), 1), np.int64)
        if slot is not None:
            items[slot] = self.cycles
        for slot, dtype, bits in layout.blas:
            address, have = gemm_entry(dtype)
            if have != bits:
                raise ArtifactError(f"the step was compiled for a BLAS with {bits}-bit "
                                    f"integers; this process has {have}-bit {dtype} gemm",
                                    hint="compile the step again in this environment")
            items[slot] = address
        for slot, name in layout.callbacks:
            items[slot] = _callback_address(name)
        self.table, self._keep = jit.pointer_table(items)
        self._table_addr = jit.address_of(self.table)
        self._fn = loaded.function(layout.entry)
        feeds, variables = SlotColumns.of(layout.feeds), SlotColumns.of(layout.variables)
        self._bound = [None] * (len(feeds) + len(variables))
        specs = []  # per argument (feeds, then variables): (np.dtype, shape, C strides)
        for columns in (feeds, variables):  # (per kind: a deep model's variables are a few)
            kinds = [(np.dtype(d), tuple(shape), _c_strides(shape, d))
                     for shape, d in columns.kinds]
            specs += map(kinds.__getitem__, columns.kind_of)
        self._specs = specs  # what _bind checks
        self._indices = feeds.indices + variables.indices  # their table slots
        self._var_specs = tuple(map(list, zip(*specs[len(feeds):]))) or ([], [], [])
        lo = variables.indices[0] if len(variables) else 0  # (a run of slots: bound at once)
        self._var_run = (lo, lo + len(variables)) \
            if variables.indices == list(range(lo, lo + len(variables))) else None
        self._table_words = np.frombuffer(self.table, np.uintp)
        self._n_feeds = len(layout.feeds)
        self._fetch = [None if k is None else self.outputs[k] for k in layout.fetch_outputs]
        self._variables = None  # the tuple of variables bound by the latest call (run)
        self._updates = None
        self._lock = threading.Lock()
        self._index_checks = {int(e): IndexCheck.from_json(c) for e, c in layout.index_checks}
        self._snapshot = Snapshot(len(layout.feeds) + int(k) for k in layout.snapshot)
        self._numerics = {site.entry: site for site in layout.numerics}
        pooled = parallel.uses_pool(layout)
        if pooled:  # kernels that run in chunks: the pool's workers, as many as the policy
            parallel.ensure_workers(threads.policy_threads())
        self.blas_tuner = BlasTuner(pool_and_blas=bool(layout.blas) and pooled) \
            if (layout.blas or pooled) and BlasTuner.wanted() else None

    def _bind(self, k, arr):
        """Point slot k at ``arr`` (converted when it is not exactly what the code expects)."""
        dtype, shape, strides = self._specs[k]
        index = self._indices[k]
        # (the usual array first: a built-in dtype (a singleton), C order's strides)
        if (type(arr) is not np.ndarray or arr.shape != shape or arr.dtype is not dtype
                or arr.strides != strides) and not (  # (subclasses too: a memmap variable
                isinstance(arr, np.ndarray) and arr.shape == shape  # is written in place)
                and arr.dtype == dtype and arr.flags.c_contiguous):
            arr = self._convert(k, arr)
        self.table[index] = data_address(arr)
        self._keep[index] = arr
        self._bound[k] = arr
        if k >= self._n_feeds:
            self._variables = None
        return arr

    def _convert(self, k, arr):
        dtype, shape, _ = self._specs[k]
        what = "feed" if k < self._n_feeds else "variable"
        a = np.asarray(arr)
        if a.shape != shape:
            raise FeedError(f"native step: {what} {k} has shape {a.shape}, the compiled step "
                            f"expects {shape}")
        if k >= self._n_feeds:
            # A variable is written in place; a converted copy is what the caller gets back.
            return np.array(a, dtype=dtype, order="C", copy=True)
        return np.ascontiguousarray(a, dtype=dtype)

    def _bind_variables(self, variables):
        n = self._n_feeds
        if len(variables) != len(self._bound) - n:
            raise FeedError(f"native step takes {len(self._bound) - n} variables, got "
                            f"{len(variables)}")
        if self._var_run is not None and self._as_they_are(variables):
            lo, hi = self._var_run  # (all at once, at C speed: a deep model's 1,110 on its
            self._table_words[lo:hi] = list(map(data_address, variables))  # first call)
            self._keep[lo:hi] = variables
            self._bound[n:] = variables
        else:
            for k, a in enumerate(variables, n):
                if a is not self._bound[k]:
                    self._bind(k, a)
        bound = self._bound[n:]
        self._updates = tuple(bound[k] for k in self.layout.updated)
        self._variables = variables

    def _as_they_are(self, variables):
        """Whether every one of ``variables`` is an ndarray of its slot's dtype and shape in
        C order (what ``_bind`` checks one by one), checked a column at a time."""
        dtypes, shapes, strides = self._var_specs
        return set(map(type, variables)) <= _NDARRAY and list(map(_shape, variables)) == shapes \
            and list(map(_dtype, variables)) == dtypes \
            and list(map(_strides, variables)) == strides

    def __call__(self, *args):
        n = self._n_feeds
        if len(args) != len(self._bound):
            raise FeedError(f"native step takes {len(self._bound)} arrays (feeds, then "
                            f"variables), got {len(args)}")
        with self._lock:
            return self._run(args[:n], args[n:]), self._updates

    def run(self, feeds, variables):
        """One call, as ``__call__`` without the list of updated variables: the fetched values.

        Args:
            feeds: the fed arrays, in the step's feed order.
            variables: a tuple of the variable arrays, updated in place; a caller that passes
                the same tuple every call has its arrays checked once.
        """
        if len(feeds) != self._n_feeds:
            raise FeedError(f"native step takes {self._n_feeds} feeds, got {len(feeds)}")
        lock = self._lock  # one arena and one table: calls from several threads take turns
        lock.acquire()  # (a third of `with lock:`'s cost)
        try:
            return self._run(feeds, variables)
        finally:
            lock.release()

    def _run(self, feeds, variables):
        # (every line here runs on every call: attributes are read once, nothing is built
        # that a call of the same arrays as the previous one does not need)
        bound = self._bound
        if variables is not self._variables:
            self._bind_variables(variables)
        k = 0
        for a in feeds:
            if a is not bound[k]:
                self._bind(k, a)
            k += 1
        saved = self._snapshot.save(bound) if self._snapshot.positions else None
        tuner = self.blas_tuner
        if tuner is None:
            self._fn(self._table_addr)
        else:  # BLAS's thread count chosen by timing this step (runtime.threads)
            n, t0 = tuner.before(), time.perf_counter()
            self._fn(self._table_addr)
            tuner.after(n, time.perf_counter() - t0)
        if self._status_word.value or self._callbacks and collectives.last_error:
            self._failed(saved)
        # Arrays are copied out (the next call reuses the buffers); 0-d become scalars. (A loop,
        # not a comprehension: before Python 3.12 that is a function call, ~0.25 us of W2's.)
        out = []
        for o in self._fetch:
            out.append(o if o is None else o.copy() if o.ndim else o[()])
        return out

    def run_bound(self):
        """Run the entry point once on the arrays the latest call bound, checking nothing
        (no status word, no copies): the kernels' own time, for benchmarks."""
        self._fn(self._table_addr)

    def _failed(self, saved):
        """Raise the step's error, having put back the variables it wrote
        (``layout.snapshot``); the error reads a checked value before the restore."""
        try:
            if self._status_word.value:
                self._raise_status()
            self._raise_callback_error()
        finally:
            if saved is not None:
                self._snapshot.restore(self._bound, saved)

    def _raise_status(self):
        code, node, value, position = (int(v) for v in self.status[:4])
        self.status[:] = 0
        site = self._numerics.get(node) if code == 3 else None
        if site is not None:  # the checked value is still where the step stopped
            raise numerics_error(site, self._value_at(site), value)
        if code == host_calls.STATUS_HOST:  # a Python function called by the step raised
            raise host_calls.take_error()
        check = self._index_checks.get(node) if code in (1, 2) else None
        if check is not None:  # the message the NumPy backend gives too
            raise check.error(value, position)
        names = self.layout.node_names
        name = names[node] if 0 <= node < len(names) else f"kernel {node}"
        cls, msg = STATUS_MESSAGES.get(code, (ArtifactError, "kernel error {value} in {node}"))
        raise cls(msg.format(value=value, node=name),
                  hint="the step stopped there: its outputs and variable updates of this call "
                       "are incomplete")

    def _value_at(self, site):
        """A copy of the value ``site`` checks, read from its slot's memory."""
        raw = np.asarray(self._keep[site.slot]).reshape(-1).view(np.uint8)
        dtype = np.dtype(site.dtype)
        nbytes = int(np.prod(site.shape, dtype=np.int64)) * dtype.itemsize
        return raw[site.offset:site.offset + nbytes].view(dtype).reshape(site.shape).copy()

    @staticmethod
    def _raise_callback_error():
        if collectives.last_error:
            exc = collectives.last_error.pop()
            collectives.last_error.clear()
            raise exc

    def profile(self, top=None):
        """[(share of cycles, cycles, kernel label)] summed over calls so far, largest first.

        Only profiling builds (``GRAPHC_PROFILE=1`` at compile time) count cycles.
        """
        labels = self.layout.profile[1]
        totals = {}
        for label, c in zip(labels, self.cycles.tolist()):
            totals[label] = totals.get(label, 0) + c
        whole = max(sum(totals.values()), 1)
        rows = sorted(((c / whole, c, k) for k, c in totals.items()), reverse=True)
        return rows[:top] if top else rows

    def close(self):
        """Free the machine code; the step must not be called afterwards."""
        self.loaded.close()
