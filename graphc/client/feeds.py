"""Binding values to a step: the structure of what is fetched (``flatten`` -> a flat list
and a function rebuilding the user's structure), feed keys and values converted as TF1's
``Session.run`` does, which placeholders a set of fetches needs, and results the caller owns."""
from collections.abc import Mapping

import numpy as np

from ..errors import FeedError
from ..ir.graph import Node, Operation
from ..ir.ops.state import PLACEHOLDER, VARIABLE, constant_for
from ..ir.program import user_needed_nodes
from ..ir.shapes import format_shape


# -- fetches --------------------------------------------------------------------------------------
class _Composite:
    """A fetched object's place in a fetch skeleton: the nest of its tensors, and the function
    that makes the object's value from theirs."""

    def __init__(self, nest, finish):
        self.nest, self.finish = nest, finish


def _none(value):
    return None


def flatten(structure, graph):
    """Fetch nest -> (flat list of nodes, rebuild function)."""
    flat = []

    def walk(s):
        if isinstance(s, Node):
            flat.append(s)
            return len(flat) - 1
        if isinstance(s, str):
            flat.append(graph.get_tensor_by_name(s))
            return len(flat) - 1
        if type(s) is Operation:  # TF1: an op is run, and its value is None
            flat.append(s.node)
            return _Composite(len(flat) - 1, _none)
        if isinstance(s, dict):
            return {k: walk(v) for k, v in s.items()}
        if hasattr(s, "_fetch_nest"):  # an API object made of tensors (gc.summary ops)
            nest, finish = s._fetch_nest()
            return _Composite(walk(nest), finish)
        if isinstance(s, tuple) and hasattr(s, "_fields"):
            return type(s)(*[walk(v) for v in s])
        if isinstance(s, (list, tuple)):
            return type(s)(walk(v) for v in s)
        raise TypeError(f"cannot fetch {type(s).__name__}: fetch tensors, ops, or nests of "
                        "lists, tuples and dicts of them")

    skeleton = walk(structure)
    if type(skeleton) in (list, tuple) and skeleton == type(skeleton)(range(len(skeleton))):
        return flat, type(skeleton)  # a plain list or tuple of tensors (the common fetch)
    if type(skeleton) is int:
        return flat, lambda values: values[0]

    def rebuild(values, s=skeleton):
        if isinstance(s, int):
            return values[s]
        if isinstance(s, dict):
            return {k: rebuild(values, v) for k, v in s.items()}
        if isinstance(s, _Composite):
            return s.finish(rebuild(values, s.nest))
        if isinstance(s, tuple) and hasattr(s, "_fields"):
            return type(s)(*[rebuild(values, v) for v in s])
        return type(s)(rebuild(values, v) for v in s)

    return flat, rebuild


# -- feeds --------------------------------------------------------------------------------------
def convert_feed(node, value):
    """Convert a value fed to ``node`` (a placeholder or any other tensor) as TF1's
    ``Session.run`` does: ``np.asarray(value, dtype=node's dtype)``.

    So float labels ``[[1.], [2.]]`` fed to an int32 placeholder become ``[[1], [2]]``
    (fractions truncate toward zero, as NumPy casts).

    Args:
        node: the fed node; the value must fit its static shape (None dims take any size).
        value: an array, number or nested list.
    Returns:
        A C-contiguous array of the node's dtype (0-d stays 0-d).
    Raises:
        FeedError: naming the node, expected and found dtype or shape, and the node's line,
            for what has no such conversion: strings and other non-numbers, ragged lists,
            NaN or Inf fed to an integer tensor, a shape that does not fit.
    Example:
        >>> convert_feed(x, [[1, 2, 3]])      # x: f32[?,3] -> float32 array of shape (1, 3)
    """
    want = node.dtype
    if type(value) is np.ndarray and value.dtype == want.np and value.flags.c_contiguous \
            and node.shape is not None and value.ndim == len(node.shape) \
            and all(d is None or d == a for d, a in zip(node.shape, value.shape)):
        return value  # already what the checks below would return (the per-call case)
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as exc:  # ragged nested lists
        raise FeedError(f"cannot convert the value fed to {node.describe()} to an array: "
                        f"{exc}", loc=node.loc, hint="feed a rectangular array") from None
    if arr.dtype.kind not in "fiub":
        raise FeedError(f"cannot feed a value of dtype {arr.dtype} to {node.describe()}",
                        loc=node.loc)
    if arr.dtype.kind == "f" and not want.is_floating and not np.isfinite(arr).all():
        raise FeedError(f"cannot feed a {arr.dtype.name} value holding NaN or Inf to "
                        f"{want.name} {node.describe()}", loc=node.loc,
                        hint="an integer tensor has no value for NaN or Inf")
    if arr.dtype != want.np:
        arr = arr.astype(want.np)
    if node.shape is not None and (arr.ndim != len(node.shape) or any(
            d is not None and d != a for d, a in zip(node.shape, arr.shape))):
        raise FeedError(f"{node.describe()} expects {want.short}"
                        f"{format_shape(node.shape)}, fed {format_shape(arr.shape)}",
                        loc=node.loc, hint="None dims accept any size; the others must match")
    return arr if arr.flags.c_contiguous else np.ascontiguousarray(arr)  # keeps 0-d as 0-d


# Feeding these would drop their effect from the step (the fed value replaces the node).
UNFEEDABLE = ("assign", "group")


def feed_target(graph, key):
    """The node a feed key names (a tensor, or a name such as 'x' or 'x:0'), checked feedable.

    Any tensor of ``graph`` may be fed, as in TF1: a placeholder, an intermediate value, a
    Variable (its reads in the step see the fed value; its stored value is unchanged).

    Raises:
        FeedError: an unknown name, a node of another graph, a value-less op or an assign.
    """
    if isinstance(key, str):
        try:
            key = graph.get_tensor_by_name(key)
        except KeyError as e:
            raise FeedError(f"cannot feed {key!r}: no tensor of that name in the graph",
                            getattr(e, "details", ()),
                            hint="feed tensors by object or by name ('x' or 'x:0')") from None
    if not isinstance(key, Node):
        raise FeedError(f"cannot feed {key!r}: feed keys are tensors or tensor names")
    if key.graph is not graph:
        raise FeedError(f"cannot feed {key.describe()}: it belongs to another graph",
                        loc=key.loc, hint="feed tensors of the graph the step runs")
    if key.dtype is None or key.op_name in UNFEEDABLE:
        why = "it has no value" if key.dtype is None else "feeding it would skip the update"
        raise FeedError(f"cannot feed {key.describe()}: {why}", loc=key.loc,
                        hint="feed the tensors it reads instead")
    return key


def check_feed_dict(feed_dict, call):
    """Raise a FeedError unless ``feed_dict`` is None or a mapping (the common slip: an array
    or a list of arrays passed where TF1 takes ``{placeholder: value}``)."""
    if feed_dict is None or isinstance(feed_dict, Mapping):
        return
    raise FeedError(f"{call} takes its feeds as a dict {{placeholder or name: value}}, found "
                    f"{type(feed_dict).__name__}",
                    ["e.g. {x: batch_x, y: batch_y}"
                     + (", or by the placeholders' names: step(x=batch_x)" if call == "step()"
                        else "")])


def expand_feeds(items):
    """(key, value) pairs with tuple keys zipped with their values, recursively: TF1 feeds an
    RNN's nested state (``{cell.zero_state(...): last_state}``, LSTMStateTuple, MultiRNNCell
    tuples) as one key.

    Raises:
        FeedError: a tuple key whose value is not a sequence of the same length.
    """
    for key, value in items:
        if not isinstance(key, tuple):
            yield key, value
            continue
        if not isinstance(value, (tuple, list, np.ndarray)) or len(value) != len(key):
            found = f"{len(value)} values" if isinstance(value, (tuple, list, np.ndarray)) \
                else type(value).__name__
            raise FeedError(f"a feed key of {len(key)} tensors needs as many values, "
                            f"found {found}", hint="feed the structure the tensors came in, "
                            "e.g. the state a previous run returned")
        yield from expand_feeds(zip(key, value))


def variables_and_leaf_feeds(flat, fed, cache=None):
    """(the variables a step computing ``flat`` needs, what it takes when ``fed`` nodes are
    given: the fed nodes it needs and every placeholder it needs through no fed node), in
    creation order.

    With the compile cache on (``cache``: as ``step_cache.store`` takes it), a graph that
    keeps a running hash of its nodes (``node_digest``) finds both remembered from an earlier
    search, in this process or another: a warm ``gc.compile`` or ``Session.run`` searches
    nothing."""
    from . import step_cache
    cut = [n for n in fed if n.opdef is not PLACEHOLDER]  # (placeholders change nothing)
    objects = step_cache.store(cache)
    key = step_cache.needs_key(flat, cut) if objects is not None else None
    found = step_cache.recall(objects, key)
    # (remembered: how many feeds, then the feeds and the variables: placeholders are
    # usually made first, so the positions increase and are kept as a bitmap)
    read = None if found is None else step_cache.nodes_at(flat[0].graph, found, head=1)
    if read and read[0] and 0 <= read[0][0] <= len(read[1]):
        (count,), nodes = read
        return nodes[count:], nodes[:count]
    needed, need = needed_and_leaf_feeds(flat, cut)  # (nothing remembered, or damaged)
    variables = [n for n in needed if n.opdef is VARIABLE]
    if key is not None:
        step_cache.remember(objects, key, step_cache.node_ids(need + variables, [len(need)]))
    return variables, need


def constant_assigns(flat):
    """{variable: array} when every node of ``flat`` is a group of plain assigns of constants
    to variables (``gc.global_variables_initializer()`` of variables made from arrays, an
    optimizer's zero slots), in which no variable is assigned two arrays; else None. Running
    such a group copies the arrays: nothing to compile."""
    if not flat or any(n.op_name != "group" for n in flat):
        return None
    found, stack = {}, list(flat)
    known = getattr(flat[0].graph, "initial_arrays", {})  # (made from arrays: ir.graph.Graph)
    while stack:
        n = stack.pop()
        if n.op_name == "group":
            stack.extend(n.inputs)
            continue
        if n.op_name != "assign" or n.attrs.get("mode", "set") != "set" or len(n.inputs) != 2:
            return None
        target, value = n.inputs
        pair = known.get(target)
        array = pair[1] if pair is not None and pair[0] is value else constant_for(target, value)
        if array is None or found.setdefault(n.inputs[0], array) is not array:
            return None
    return found


def needed_and_leaf_feeds(flat, fed):
    """(the nodes a step computing ``flat`` needs when ``fed`` are given, what it takes:
    ``variables_and_leaf_feeds``'s second part)."""
    cut = [n for n in fed if n.opdef is not PLACEHOLDER]
    chosen = set(cut)
    needed = user_needed_nodes(flat, cut)
    return needed, [n for n in needed if n.opdef is PLACEHOLDER or n in chosen]


def _missing_feed_error(missing):
    lines = [f"'{p.node_name}': {p.dtype.short}{format_shape(p.shape)}  created at {p.loc.short}"
             for p in missing]
    return FeedError(f"{len(missing)} placeholder(s) must be fed: "
                     + ", ".join(p.node_name for p in missing), lines,
                     hint="add them to feed_dict")


def _as_result(x, args=()):
    """A fetched value the caller owns: never the session's variable storage or a fed array
    (or a view of them), which later steps may update in place."""
    if isinstance(x, np.ndarray):
        if any(np.may_share_memory(x, a) for a in args):
            x = np.array(x)
        return x if x.ndim else x[()]
    return x
