"""``gc.dump_ir``: the text IR of what the fetches need, in the user's graph."""
from ..ir.printer import format_nodes
from ..ir.program import needed_nodes
from .feeds import flatten
from ..framework.graph import get_default_graph


def dump_ir(fetches, title="graph"):
    """Text IR (one SSA line per node) of everything ``fetches`` depend on."""
    flat, _ = flatten(fetches, get_default_graph() if not hasattr(fetches, "graph")
                      else fetches.graph)
    return format_nodes(needed_nodes(flat), title, flat)
