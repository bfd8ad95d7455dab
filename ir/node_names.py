"""Node names as TF1 writes them (``scope/Mean:0``) and close matches for a name that is not in
a graph.

A node's *op name* is the IR's (``reduce_mean``: the registry, the dump's op column, every
error's op); its *node name* is the user's handle on it (``sess.run("Mean:0")``,
``get_tensor_by_name``, the ``%name`` of feeds and variables in dumps). A node built without a
name takes its op's ``tf_name`` (``OpDef``), the name TF1 gives the node its tf.* function
builds, so TF1 programs that fetch by name find it: ``MatMul``, ``Mean``, ``Placeholder``; the
operators ``+ - * /`` give TF1's ``add``, ``sub``, ``mul``, ``truediv``.
"""
import difflib


def split_tensor_name(name):
    """``"scope/Mean:0"`` -> ``("scope/Mean", 0)``; a name without ``:k`` has index None.

    Raises:
        ValueError: the part after the last ``:`` is not a non-negative integer.
    """
    base, colon, index = name.rpartition(":")
    if not colon:
        return name, None
    if not index.isdigit():
        raise ValueError(f"{name!r}: a tensor name is '<op name>:<output index>', "
                         f"and {index!r} is not an index")
    return base, int(index)


def close_names(name, names, n=5):
    """The names of ``names`` most like ``name`` (difflib's ratio), best first: for an error
    that says what the user may have meant. A name that differs only in case, or that ends with
    ``name`` after a scope, always comes first."""
    names = list(names)
    lower = name.lower()
    exact = [m for m in names if m.lower() == lower or m.endswith("/" + name)]
    close = difflib.get_close_matches(name, names, n=n, cutoff=0.6)
    return list(dict.fromkeys(exact + close))[:n]
