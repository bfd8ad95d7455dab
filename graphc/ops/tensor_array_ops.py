"""``gc.TensorArray``: TF1's array of tensors for ``while_loop`` bodies, as a Python object.

graphc unrolls ``while_loop`` when the graph is built, so a TensorArray need not exist at run
time: it is a list of tensors, and each ``write`` returns a new TensorArray holding one more
(TF1's functional style: ``ta = ta.write(t, y)``). Write indices must be known when the graph
is built (Python ints, constants, the counter of an unrolled loop, which ``StaticValues``
evaluates), except inside a ``while_loop`` run as a loop node: there ``LoopTensorArray``
records a write at the loop's counter, which the loop stacks (``filled``: the array then
holds one tensor of every element). ``read`` also takes an index known only at run time: a
row of ``stack()`` (out of range: InvalidArgumentError when the step runs).

"""
import numpy as np

from ..errors import DTypeError, GraphError, ShapeError
from ..framework.graph import no_op
from ..ir import dtypes as D
from ..ir.graph import Node
from ..ir.ops import apply, const_node, convert
from ..ir.shapes import TensorShape
from ..ir.source import user_location
from ..ir.static import evaluator as _evaluator
from ..ir.static import static_value
from .math_ops import concat, identity, stack, stop_gradient, zeros

__all__ = ["TensorArray", "LoopTensorArray"]




def static_index(index, what):
    """``index`` as a Python int, known when the graph is built.

    Args:
        index: a Python or NumPy int, or a scalar integer tensor StaticValues can evaluate.
        what: the caller, for messages (``"TensorArray.read"``).
    Returns:
        The int.
    Raises:
        GraphError: a tensor whose value is known only at run time (naming the node it
            depends on), or something that is not a scalar integer.
    Example:
        >>> static_index(i + 1, "TensorArray.write")   # i: an unrolled loop's counter
        3
    """
    value = _build_time(index, what, "index")
    if value.ndim != 0:
        raise GraphError(f"{what}: an index must be a scalar integer, found "
                         f"{_show(index)}", loc=user_location())
    return int(value)


def static_indices(indices, what):
    """A list of Python ints from a list, array or int tensor known when the graph is built
    (see ``static_index``)."""
    if isinstance(indices, (list, tuple)):
        return [static_index(i, what) for i in indices]
    value = _build_time(indices, what, "indices")
    if value.ndim != 1:
        raise GraphError(f"{what}: indices must be an integer vector, found "
                         f"{_show(indices)}", loc=user_location())
    return [int(i) for i in value]


def _build_time(value, what, kind):
    """``value`` (a number, array or tensor) as an integer ndarray known now, or a GraphError
    naming the run-time node it depends on."""
    if not isinstance(value, Node):
        array = np.asarray(value)
        if array.dtype.kind not in "iu":
            raise GraphError(f"{what}: the {kind} must be integers, found {value!r}",
                             loc=user_location())
        return array
    if not value.dtype.is_integer:
        raise GraphError(f"{what}: the {kind} must be integers, found {_show(value)}",
                         loc=user_location())
    array = _evaluator(value.graph).value(value)
    if isinstance(array, np.ndarray):
        return array
    dep, why = array
    here = user_location()
    details = [f"it depends on {dep.describe()}, {why}"]
    if value.loc.format() != here.format():
        details.append(f"the {kind} was created at {value.loc.format()}")
    raise GraphError(
        f"{what}: the {kind} {value.describe()} is known only when the step runs", details,
        loc=here,
        hint="graphc unrolls while_loop when the graph is built, so TensorArray indices must "
             "be Python ints, constants or a loop counter; for a run-time index, stack() the "
             "array and gc.gather from it")


def _show(value):
    return f"{value.describe()} : {value.type_str()}" if isinstance(value, Node) else repr(value)


class TensorArray:
    """TF1's ``tf.TensorArray``, for ``while_loop`` bodies: a list of tensors, rebuilt by each
    write (``ta = ta.write(t, y)``), and a ``while_loop`` variable like any tensor.

    Args:
        dtype: the elements' dtype.
        size: the number of elements (an int, or a tensor known when the graph is built).
        dynamic_size: True lets writes past ``size`` grow the array.
        clear_after_read: accepted for TF1; elements are values, so reading frees nothing and
            an element may be read twice.
        tensor_array_name, handle, flow, colocate_with_first_write_call: accepted for TF1.
        infer_shape: True (TF1's default): every element must have the same shape (the first
            write fixes the dims ``element_shape`` leaves open).
        element_shape: the elements' shape (None dims: any size), needed by ``stack`` of an
            empty array and for reading an element never written (zeros).
        name: a name for messages.
    Example:
        >>> ta = gc.TensorArray(gc.float32, size=T)
        >>> _, ta = gc.while_loop(lambda t, ta: t < T,
        ...                       lambda t, ta: (t + 1, ta.write(t, x[t] * 2.0)), (0, ta))
        >>> y = ta.stack()                                             # [T, ...]
    """

    def __init__(self, dtype, size=None, dynamic_size=None, clear_after_read=None,
                 tensor_array_name=None, handle=None, flow=None, infer_shape=True,
                 element_shape=None, colocate_with_first_write_call=True, name=None):
        self._dtype = D.as_dtype(dtype)
        self._name = name or tensor_array_name or "TensorArray"
        n = 0 if size is None else static_index(size, "TensorArray(size=...)")
        if n < 0:
            raise GraphError(f"TensorArray: size must be >= 0, found {n}", loc=user_location())
        self._elements = (None,) * n
        self._dynamic_size = bool(dynamic_size)
        self._infer_shape = bool(infer_shape)
        self._element_shape = None if element_shape is None or \
            TensorShape(element_shape).dims is None else tuple(TensorShape(element_shape))
        self._clear_after_read = True if clear_after_read is None else bool(clear_after_read)
        self._stacked = None  # [size, ...]: every element, as a loop stacked them (``filled``)

    # -- properties --------------------------------------------------------------------------
    @property
    def dtype(self):
        return self._dtype

    @property
    def dynamic_size(self):
        return self._dynamic_size

    @property
    def element_shape(self):
        return TensorShape(self._element_shape)

    def __repr__(self):
        shape = "?" if self._element_shape is None else list(self._element_shape)
        return (f"<gc.TensorArray '{self._name}' {self._dtype.name} size={len(self._elements)}"
                f" element_shape={shape}>")

    def size(self, name=None):
        """The number of elements, as an int32 tensor (a constant: sizes are static)."""
        return const_node(np.int32(len(self._elements)), name=name or "size")

    # -- reading -----------------------------------------------------------------------------
    def read(self, index, name=None):
        """Element ``index`` (zeros when never written and ``element_shape`` is full).

        Raises:
            GraphError: an index out of range or known only at run time, or an unwritten
                element of a partly known shape.
        """
        if isinstance(index, Node) and index.dtype is not None and index.dtype.is_integer \
                and static_value(index) is None:
            return self._gather_at(index, name)  # an index known only at run time
        i = self._index(index, "read")
        if self._stacked is not None:
            return apply("strided_slice", [self._stacked], {"spec": (("i", i),)},
                         name=name or "read")
        value = self._elements[i]
        if value is None:
            shape = self._element_shape
            if shape is None or None in shape:
                raise GraphError(f"TensorArray.read: element {i} of '{self._name}' was never "
                                 "written and its shape is not fully known",
                                 [f"element_shape: {list(shape) if shape else 'unknown'}"],
                                 loc=user_location(),
                                 hint="write it first, or pass a full element_shape to read "
                                      "zeros")
            value = zeros(shape, self._dtype)
        return identity(value, name=name) if name else value

    def _gather_at(self, index, name):
        """Element ``index`` (a run-time int tensor; out of range: InvalidArgumentError when
        the step runs): a row of ``stack()``."""
        if index.shape is not None and index.shape != ():
            raise ShapeError(f"TensorArray.read: the index must be a scalar, found "
                             f"{index.describe()} {index.type_str()}", loc=user_location())
        if index.dtype != D.int32:
            index = apply("cast", [index], {"dtype": D.int32})
        return apply("gather", [self.stack(), index], {"axis": 0}, name=name or "read")

    def gather(self, indices, element_shape=None, name=None):
        """The elements at ``indices`` (build-time ints), stacked along a new axis 0."""
        picked = [self.read(i) for i in static_indices(indices, "TensorArray.gather")]
        if not picked:
            return self._empty(0, name)
        return stack(picked, 0, name=name or "stack")

    def stack(self, name=None):
        """All elements, stacked along a new axis 0: ``[size, *element_shape]``."""
        if self._stacked is not None:
            return self._stacked if name is None else identity(self._stacked, name=name)
        return self.gather(list(range(len(self._elements))), name=name)

    def concat(self, name=None):
        """All elements, concatenated along their axis 0 (their leading dims may differ when
        ``infer_shape=False``)."""
        if not self._elements:
            return self._empty(1, name)
        parts = [self.read(i) for i in range(len(self._elements))]
        if any(p.rank == 0 for p in parts):
            raise ShapeError(f"TensorArray.concat: the elements of '{self._name}' are "
                             "scalars, which have no axis to concatenate", loc=user_location(),
                             hint="use stack()")
        return concat(parts, 0, name=name or "concat")

    def _empty(self, drop, name):
        """``stack``/``concat`` of no elements: zeros of shape [0, *element_shape[drop:]]."""
        shape = self._element_shape
        if shape is None or None in shape[drop:]:
            raise GraphError(f"TensorArray: '{self._name}' has no elements and its "
                             "element_shape is not fully known", loc=user_location(),
                             hint="pass element_shape= to TensorArray")
        return zeros((0,) + tuple(shape[drop:]), self._dtype, name=name)

    # -- writing: each returns a new TensorArray ---------------------------------------------
    def write(self, index, value, name=None):
        """A TensorArray with ``value`` at ``index``.

        Raises:
            GraphError: the index is out of range (without ``dynamic_size``), already
                written, or known only at run time.
            DTypeError, ShapeError: ``value`` has another dtype, or a shape that does not
                fit ``element_shape`` (with ``infer_shape``).
        """
        return self._written({self._index(index, "write", grow=True): value})

    def scatter(self, indices, value, name=None):
        """A TensorArray with row ``k`` of ``value`` written at ``indices[k]``."""
        idx = static_indices(indices, "TensorArray.scatter")
        value = self._convert(value, "scatter")
        if value.rank == 0 or value.shape[0] != len(idx):
            raise ShapeError(f"TensorArray.scatter: {len(idx)} indices but value is "
                             f"{value.type_str()}", loc=user_location(),
                             hint="value's leading dim must have one row per index")
        return self._written({self._index(i, "scatter", grow=True): value[k]
                              for k, i in enumerate(idx)}, len(set(idx)) != len(idx))

    def unstack(self, value, name=None):
        """A TensorArray whose element ``k`` is ``value[k]`` (a static leading dim)."""
        value = self._convert(value, "unstack")
        if value.rank == 0 or value.shape[0] is None:
            raise ShapeError(f"TensorArray.unstack: value must have a static leading dim, "
                             f"found {value.type_str()}", loc=user_location())
        return self.scatter(list(range(value.shape[0])), value, name=name)

    def split(self, value, lengths, name=None):
        """A TensorArray whose element ``k`` is the ``k``-th piece of ``value`` along axis 0,
        ``lengths[k]`` rows long (build-time ints summing to the leading dim)."""
        value = self._convert(value, "split")
        sizes = static_indices(lengths, "TensorArray.split")
        if value.rank == 0 or sum(sizes) != value.shape[0]:
            raise ShapeError(f"TensorArray.split: lengths {sizes} do not add up to the "
                             f"leading dim of {value.type_str()}", loc=user_location())
        starts = np.cumsum([0] + sizes)
        return self._written({self._index(k, "split", grow=True): value[starts[k]:starts[k + 1]]
                              for k in range(len(sizes))})

    def identity(self):
        """The same elements in a new TensorArray (TF1 uses it to order reads)."""
        return self._copy(self._elements)

    def close(self, name=None):
        return no_op(name=name)

    def _written(self, updates, repeated=False):
        if self._stacked is not None:  # written by a loop: each element is written already
            raise GraphError(f"TensorArray.write: '{self._name}' was filled by a while_loop; "
                             "its elements are written already", loc=user_location(),
                             hint="TF1 TensorArrays are written once per element")
        elements = list(self._elements)
        elements += [None] * (max(updates, default=-1) + 1 - len(elements))
        out = self._copy(elements)
        for i, value in updates.items():
            if repeated or elements[i] is not None:
                raise GraphError(f"TensorArray.write: element {i} of '{self._name}' is "
                                 "already written", loc=user_location(),
                                 hint="TF1 TensorArrays are written once per element; write "
                                      "each index once")
            value = self._convert(value, "write")
            elements[i] = value
            out._merge_shape(value)
        out._elements = tuple(elements)
        return out

    # -- helpers -----------------------------------------------------------------------------
    def _copy(self, elements):
        out = object.__new__(TensorArray)
        out.__dict__.update(self.__dict__)
        out._elements = tuple(elements)
        return out

    def _index(self, index, method, grow=False):
        i = static_index(index, f"TensorArray.{method}")
        n = len(self._elements)
        if i < 0 or (i >= n and not (grow and self._dynamic_size)):
            raise GraphError(f"TensorArray.{method}: index {i} is out of range for "
                             f"'{self._name}' of size {n}", loc=user_location(),
                             hint="pass dynamic_size=True to grow on writes" if grow else None)
        return i

    def _convert(self, value, method):
        if not isinstance(value, Node):
            value = convert(value) if isinstance(value, (list, tuple)) and \
                any(isinstance(v, Node) for v in value) else const_node(value, self._dtype)
        if value.dtype != self._dtype:
            raise DTypeError(f"TensorArray.{method}: '{self._name}' holds "
                             f"{self._dtype.name}, found {value.describe()} : "
                             f"{value.type_str()}", loc=user_location(),
                             hint="cast with gc.cast")
        return value

    def _merge_shape(self, value):
        if not self._infer_shape:
            return
        old, new = self._element_shape, tuple(value.shape)
        if old is None:
            self._element_shape = new
            return
        if len(old) != len(new) or any(a is not None and b is not None and a != b
                                       for a, b in zip(old, new)):
            raise ShapeError(f"TensorArray.write: '{self._name}' holds elements of shape "
                             f"{list(old)}, found {value.describe()} : {value.type_str()}",
                             loc=user_location(), hint="pass infer_shape=False for elements "
                                                       "of different shapes (concat)")
        self._element_shape = tuple(a if a is not None else b for a, b in zip(old, new))

    # -- as a while_loop variable (graphc.ops.control_flow_ops) ----------------------------------
    def in_loop(self):
        """What a while_loop's body sees for this loop variable (``LoopTensorArray``)."""
        return LoopTensorArray(self)

    def filled(self, stacked):
        """This TensorArray holding the rows of ``stacked`` ([size, ...]: what a loop wrote
        at indices 0, 1, ...) as its elements."""
        out = self._copy((None,) * int(stacked.shape[0]))
        out._stacked = stacked
        out._element_shape = tuple(stacked.shape[1:])
        return out

    def _loop_match(self, new, where):
        """The body's value for this loop variable, checked: a TensorArray of our dtype."""
        if not isinstance(new, TensorArray) or new.dtype != self._dtype:
            found = f"TensorArray of {new.dtype.name}" if isinstance(new, TensorArray) else \
                _show(new)
            raise GraphError(f"while_loop: loop variable {where} is a TensorArray of "
                             f"{self._dtype.name} but the body returns {found}",
                             loc=user_location(), hint="return ta.write(...) (a new "
                                                       "TensorArray) for it")
        return new

    def _loop_stop_gradient(self):
        if self._stacked is not None:
            return self.filled(stop_gradient(self._stacked))
        return self._copy([None if v is None else stop_gradient(v) for v in self._elements])


class LoopTensorArray:
    """A TensorArray as the body of a loop node sees it (``while_loop`` on ``loop`` nodes):
    ``read(i)`` and ``write(i, v)`` take indices known only at run time. Reads gather from the
    elements the array held before the loop (or from this iteration's write at that index);
    a write records ``(index, value)``: ``while_loop`` stacks the value over the iterations
    when the index is the loop's counter (a loop variable from 0 stepping by 1), and unrolls
    the loop otherwise. Anything else (stack, size of a growing array...) inside the body
    also unrolls it.
    """

    def __init__(self, outer, writes=()):
        self.outer, self.writes = outer, tuple(writes)

    dtype = property(lambda self: self.outer.dtype)
    element_shape = property(lambda self: self.outer.element_shape)
    dynamic_size = property(lambda self: self.outer.dynamic_size)

    def size(self, name=None):
        return self.outer.size(name)

    def read(self, index, name=None):
        index = convert(index)
        for i, v in reversed(self.writes):
            if i is index:
                return v
        return self.outer._gather_at(index, name)

    def write(self, index, value, name=None):
        value = self.outer._convert(value, "write")
        return LoopTensorArray(self.outer, self.writes + ((convert(index), value),))

    def _unsupported(self, *args, **kwargs):
        raise GraphError("TensorArray: inside a while_loop body known only when the step "
                         "runs, graphc reads and writes elements one at a time",
                         loc=user_location(), hint="the loop is unrolled instead")

    stack = gather = concat = scatter = unstack = split = identity = _unsupported

    def _loop_match(self, new, where):
        if not isinstance(new, LoopTensorArray) or new.outer is not self.outer:
            raise GraphError(f"while_loop: loop variable {where} is a TensorArray of "
                             f"{self.dtype.name} but the body returns {_show(new)}",
                             loc=user_location(),
                             hint="return ta.write(...) (a new TensorArray) for it")
        return new
