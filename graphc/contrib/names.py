"""What ``tf.contrib`` names graphc has: the error for one it does not."""
COVERED = "graphc's contrib covers only contrib.layers and contrib.rnn"


def unsupported(module, name, names):
    """The AttributeError for ``module.name``: what is missing and what the module has.

    Args:
        module: the module's dotted name (``graphc.contrib.layers``).
        name: the attribute asked for.
        names: the public names the module provides.
    Returns:
        an AttributeError (raise it).
    Example:
        >>> raise unsupported(__name__, name, __all__)
    """
    tf_name = "tf." + module.split(".", 1)[1]
    return AttributeError(f"module {module!r} has no attribute {name!r}: graphc does not have "
                          f"{tf_name}.{name}; {COVERED}, and {tf_name} has only: "
                          f"{', '.join(sorted(names))}")
