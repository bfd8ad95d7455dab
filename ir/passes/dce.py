"""Dead-code elimination: drop nodes that no fetch and no variable update depends on.

Rewrites leave their replaced nodes behind unused; this pass removes them. Impure nodes are
kept only through the roots that need them (an assign is a root; a random op nobody reads is
dropped, which changes nothing observable: each random op owns its generator). Feeds and
variables stay, so the step's signature does not change.
"""
from .common import live_nodes, refresh


def eliminate_dead_code(program):
    """Remove unused nodes from the schedule.

    Args:
        program: an ``ir.program.Program`` (rewritten in place).
    Returns:
        {"removed": the number of nodes dropped}.
    Example:
        >>> eliminate_dead_code(program)
        {'removed': 7}
    """
    before = len(program.nodes)
    program.nodes = live_nodes(program)
    refresh(program)
    return {"removed": before - len(program.nodes)}
