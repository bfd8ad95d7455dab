"""``gc.map_fn``, ``gc.scan``, ``gc.foldl``, ``gc.foldr``: TF1's higher-order functions,
unrolled when the graph is built.

graphc compiles a step whole, without loops at run time. The elements are therefore split
along a leading dim that must be static, ``fn`` is built once per element, and the results
are stacked (``map_fn``, ``scan``) or the last accumulator is returned (``foldl``,
``foldr``). Gradients come from the unrolled ops (``strided_slice``, ``stack``), so they are
exact; the graph grows with the number of elements (as ``gc.nn.static_rnn`` does).
"""
from ..errors import DTypeError, GraphError, ShapeError
from ..framework.nest import (assert_same_structure, flatten, flatten_up_to, map_structure,
                              pack_sequence_as)
from ..ir import dtypes as D
from ..ir import loops as Lp
from ..ir.graph import Node, get_default_graph
from ..ir.ops import apply, convert
from ..ir.source import user_location

__all__ = ["foldl", "foldr", "map_fn", "scan", "loop_over"]


def map_fn(fn, elems, dtype=None, parallel_iterations=None, back_prop=True,
           swap_memory=False, infer_shape=True, name=None):
    """``fn`` applied to each slice of ``elems`` along axis 0, the results stacked.

    Args:
        fn: callable on one element (a tensor, or the structure of ``elems``), returning a
            tensor or a nested structure of tensors.
        elems: a tensor or a (nested) list, tuple, namedtuple or dict of tensors, all with
            the same static leading dim.
        dtype: the structure of dtypes ``fn`` returns when it differs from ``elems``'s
            (checked against what ``fn`` returns).
        parallel_iterations, swap_memory, infer_shape: TF1 compatibility; no effect.
        back_prop: False stops gradients at the results.
        name: name scope of the nodes built.
    Returns:
        ``fn``'s results stacked along a new axis 0, in ``fn``'s structure.
    Raises:
        ShapeError: an element tensor has no static leading dim, or they differ.
        GraphError, DTypeError: ``fn`` returns other structures, dtypes or shapes for
            different elements, or other dtypes than ``dtype`` says.
    Example:
        >>> squares = gc.map_fn(lambda row: gc.reduce_sum(row * row), x)   # x: f32[8, 3]
    """
    with get_default_graph().name_scope(name or "map") as scope:
        looped = _loop("map_fn", scope, lambda acc, x: ((), fn(x)), elems, (), False)
        if looped is not None:
            _, results = looped
            if dtype is not None:
                _check_dtypes(results, dtype, flatten(results))
            return _stop(results, back_prop)
        elems, n = _elements("map_fn", elems)
        results = [fn(_element(elems, i)) for i in range(n)]
        first = results[0]
        flat = [_as_nodes(first)]
        for i, r in enumerate(results[1:], 1):
            flat.append(_same_as("map_fn", f"fn(elems[{i}])", r, "fn(elems[0])", first))
        if dtype is not None:
            _check_dtypes(first, dtype, flat[0])
        return pack_sequence_as(first, _stack(flat, back_prop))


def scan(fn, elems, initializer=None, parallel_iterations=10, back_prop=True,
         swap_memory=False, infer_shape=True, reverse=False, name=None):
    """The running values of ``a = fn(a, x)`` over the slices ``x`` of ``elems``, stacked.

    Args:
        fn: callable ``(accumulator, element) -> accumulator``, in the structure of
            ``initializer`` (of ``elems`` when no initializer is given).
        elems: a tensor or nested structure of tensors with one static leading dim.
        initializer: the first accumulator; None: ``elems[0]`` (which is then also the
            first output, and the scan starts from ``elems[1]``).
        reverse: scan from the last element to the first; output ``i`` still belongs to
            ``elems[i]``.
        back_prop: False stops gradients at the results.
        parallel_iterations, swap_memory, infer_shape: TF1 compatibility; no effect.
        name: name scope of the nodes built.
    Returns:
        The accumulators, stacked along a new axis 0, in the accumulator's structure.
    Raises:
        ShapeError, GraphError, DTypeError: as ``map_fn``; also when ``fn`` changes the
            accumulator's structure, dtype or shape.
    Example:
        >>> cumsum = gc.scan(lambda a, x: a + x, x)             # x: f32[5]
        >>> hs = gc.scan(lambda h, x: gc.tanh(gc.matmul(h, W) + x), xs, initializer=h0)
    """
    with get_default_graph().name_scope(name or "scan") as scope:
        looped = _scan_loop("scan", scope, fn, elems, initializer, reverse, stack=True)
        if looped is not None:
            return _stop(looped[1], back_prop)
        accs = _accumulate("scan", fn, elems, initializer, reverse)
        acc0 = accs[0][1]
        flat = [flatten(a) for _, a in sorted(accs, key=lambda p: p[0])]
        return pack_sequence_as(acc0, _stack(flat, back_prop))


def foldl(fn, elems, initializer=None, parallel_iterations=10, back_prop=True,
          swap_memory=False, name=None):
    """``a = fn(a, x)`` over the slices ``x`` of ``elems`` from first to last; the last ``a``.

    Args:
        fn, elems, initializer, back_prop, name: as in ``scan``
            (``parallel_iterations`` and ``swap_memory`` have no effect).
    Returns:
        The final accumulator, in ``initializer``'s structure.
    Raises:
        As ``scan``.
    Example:
        >>> total = gc.foldl(lambda a, x: a + x, x, initializer=gc.constant(0.0))
    """
    return _fold("foldl", fn, elems, initializer, back_prop, name, reverse=False)


def foldr(fn, elems, initializer=None, parallel_iterations=10, back_prop=True,
          swap_memory=False, name=None):
    """``a = fn(a, x)`` over the slices ``x`` of ``elems`` from last to first; the last ``a``.

    Args, Returns, Raises: as ``foldl``.
    Example:
        >>> digits = gc.foldr(lambda a, d: a * 10 + d, gc.constant([1, 2, 3]))   # 321
    """
    return _fold("foldr", fn, elems, initializer, back_prop, name, reverse=True)


def _fold(op, fn, elems, initializer, back_prop, name, reverse):
    with get_default_graph().name_scope(name or op) as scope:
        looped = _scan_loop(op, scope, fn, elems, initializer, reverse, stack=False)
        if looped is not None:
            return _stop(looped[0], back_prop)
        acc = _accumulate(op, fn, elems, initializer, reverse)[-1][1]
        if back_prop:
            return acc
        return map_structure(lambda v: apply("stop_gradient", [v]), acc)


def _stop(struct, back_prop):
    return struct if back_prop else map_structure(lambda v: apply("stop_gradient", [v]),
                                                  struct)


def _scan_loop(op, scope, fn, elems, initializer, reverse, stack):
    """``scan``/``foldl``/``foldr`` as a loop node: (final accumulator, stacked accumulators
    or None), or None when ``fn`` has effects (then the caller unrolls)."""
    elems = map_structure(convert, elems)
    if initializer is not None:
        looped = _loop(op, scope, lambda acc, x: (fn(acc, x),) * 2, elems,
                       map_structure(convert, initializer), reverse, stack)
        return looped
    leaves = flatten(elems)
    _check_sequences(op, leaves)
    for x in leaves:
        if x.shape is not None and x.shape[0] == 0:
            raise ShapeError(f"{op}: elems has no elements (leading dim 0) and no "
                             "initializer", loc=user_location())
    first = _element(elems, -1 if reverse else 0)
    spec = (("s", None, -1, None),) if reverse else (("s", 1, None, None),)
    rest = map_structure(lambda x: apply("strided_slice", [x], {"spec": spec}, name="rest"),
                         elems)
    looped = _loop(op, scope, lambda acc, x: (fn(acc, x),) * 2, rest, first, reverse, stack)
    if looped is None or not stack:
        return looped
    final, stacks = looped

    def join(head, st):
        head = apply("expand_dims", [head], {"axis": 0})
        return apply("concat", [st, head] if reverse else [head, st], {"axis": 0})
    return final, pack_sequence_as(first, [join(h, s) for h, s in
                                           zip(flatten(first), flatten(stacks))])


def _check_sequences(op, leaves):
    if not leaves:
        raise GraphError(f"{op}: elems is empty", loc=user_location())
    for x in leaves:
        if x.shape is not None and x.rank == 0:
            raise ShapeError(f"{op}: elems {x.describe()} is a scalar: loops slice axis 0",
                             loc=user_location())
    sizes = {x.shape[0] for x in leaves if x.shape is not None and x.shape[0] is not None}
    if len(sizes) > 1:
        raise ShapeError(f"{op}: the tensors of elems have different leading dims "
                         f"{sorted(sizes)}", [f"{x.describe()}: {x.type_str()}" for x in leaves],
                         loc=user_location(), hint="they are sliced together along axis 0")


def _loop(op, scope, step, elems, acc0, reverse, stack=True, counter=False):
    """A loop node over the slices of ``elems`` with accumulator ``acc0`` (a structure,
    maybe empty): ``step(acc, x) -> (new acc, per-element result)``. Returns (final
    accumulator, stacked results) in their structures, or None when the body has effects
    (random draws, assigns feeding its results: they run once per element, so the caller
    unrolls)."""
    g = get_default_graph()
    elems = map_structure(convert, elems)
    leaves = flatten(elems)
    _check_sequences(op, leaves)
    init = _as_nodes(acc0) if flatten(acc0) else []
    cvars = [Lp.loop_var(g, a.dtype, a.shape, "acc") for a in init]
    svars = [Lp.loop_var(g, x.dtype, None if x.shape is None else x.shape[1:], "elem")
             for x in leaves]
    tvar = Lp.loop_var(g, D.int32, (), "t") if counter else None
    first = len(g.nodes)
    acc = pack_sequence_as(acc0, cvars) if init else acc0
    xs = pack_sequence_as(elems, svars)
    new, result = step(acc, xs, tvar) if counter else step(acc, xs)
    new_flat = _same_as(op, "fn(accumulator, element)", new, "the accumulator", acc) \
        if init else []
    res_flat = _as_nodes(result) if stack else []
    made = set(g.nodes[first:])
    if any(n.opdef.impure for n in Lp.body_nodes_from(made, new_flat + res_flat)):
        return None
    node = Lp.make_loop(cvars, init, svars, leaves, tvar, new_flat, res_flat, reverse=reverse,
                        name=scope.rstrip("/").split("/")[-1] or op)
    final = pack_sequence_as(acc0, [Lp.outputs(node, "carried", k)
                                    for k in range(len(init))]) if init else acc0
    stacks = pack_sequence_as(result, [Lp.outputs(node, "stacked", k)
                                       for k in range(len(res_flat))]) if stack else None
    return final, stacks


loop_over = _loop  # dynamic_rnn's loop (``ops.rnn``)


def _accumulate(op, fn, elems, initializer, reverse):
    """[(index, accumulator after elems[index])] in the order visited."""
    elems, n = _elements(op, elems)
    order = list(range(n))[::-1] if reverse else list(range(n))
    if initializer is None:  # elems[first] is the first accumulator (and output)
        acc = _element(elems, order[0])
        out, order = [(order[0], acc)], order[1:]
    else:
        acc, out = map_structure(convert, initializer), []
    ref = acc
    for i in order:
        new = fn(acc, _element(elems, i))
        acc = pack_sequence_as(ref, _same_as(op, f"fn(accumulator, elems[{i}])", new,
                                      "the accumulator", ref))
        out.append((i, acc))
    return out


def _elements(op, elems):
    """``elems`` as nodes, and their common static leading dim."""
    elems = map_structure(convert, elems)
    leaves = flatten(elems)
    if not leaves:
        raise GraphError(f"{op}: elems is empty", loc=user_location())
    for x in leaves:
        if x.shape is None or x.rank == 0 or x.shape[0] is None:
            raise ShapeError(f"{op}: elems {x.describe()} {x.type_str()} needs a static "
                             "leading dim: graphc unrolls the loop when the graph is built",
                             [f"created at {x.loc.format()}"], loc=user_location(),
                             hint="give the placeholder a fixed leading dim (e.g. the "
                                  "sequence length), or loop in Python")
    sizes = {x.shape[0] for x in leaves}
    if len(sizes) > 1:
        raise ShapeError(f"{op}: the tensors of elems have different leading dims "
                         f"{sorted(sizes)}", [f"{x.describe()}: {x.type_str()}" for x in leaves],
                         loc=user_location(), hint="they are sliced together along axis 0")
    n = sizes.pop()
    if n == 0:
        raise ShapeError(f"{op}: elems has no elements (leading dim 0)", loc=user_location())
    return elems, n


def _element(elems, i):
    """Slice ``i`` along axis 0 of every tensor of ``elems``, in its structure."""
    return map_structure(lambda x: apply("strided_slice", [x], {"spec": (("i", i),)},
                                      name="element"), elems)


def _as_nodes(struct):
    flat = flatten(struct)
    like = next((v for v in flat if isinstance(v, Node)), None)
    return [convert(v, like) for v in flat]


def _same_as(op, what, new, ref_name, ref):
    """``new`` flattened, checked to match ``ref`` in structure, dtypes and shapes."""
    assert_same_structure(ref, new, op=op, names=(ref_name, what))
    out = []
    for r, v in zip(flatten(ref), flatten_up_to(ref, new)):
        r = convert(r)
        v = convert(v, r)
        if v.dtype != r.dtype or v.shape != r.shape:
            cls = DTypeError if v.dtype != r.dtype else ShapeError
            raise cls(f"{op}: {what} returns {v.type_str()} where {ref_name} has "
                      f"{r.type_str()}", [f"{what}: {v.describe()}"], loc=user_location(),
                      hint="every iteration must give the same dtypes and shapes")
        out.append(v)
    return out


def _check_dtypes(result, dtype, flat):
    """``map_fn``'s results have the structure and dtypes that ``dtype`` declares."""
    if isinstance(dtype, (list, tuple, dict)):
        assert_same_structure(dtype, result, op="map_fn", names=("dtype", "fn"))
        expected = flatten_up_to(result, dtype)
    else:
        assert_same_structure(None, result, op="map_fn", names=("dtype", "fn"))
        expected = [dtype]
    for v, d in zip(flat, expected):
        if v.dtype != D.as_dtype(d):
            raise DTypeError(f"map_fn: fn returns {v.dtype.name} where dtype says "
                             f"{D.as_dtype(d).name}", [f"fn returned {v.describe()}"],
                             loc=user_location(), hint="cast in fn, or fix dtype")


def _stack(flat_results, back_prop):
    """Stack the i-th leaf of every result; stop gradients there when not ``back_prop``."""
    out = []
    for leaves in zip(*flat_results):
        s = apply("stack", list(leaves), {"axis": 0})
        out.append(s if back_prop else apply("stop_gradient", [s]))
    return out
