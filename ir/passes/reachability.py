"""Reachability in a DAG that grows: a topological order kept under edge insertions.

In-place analysis asks, for each candidate ordering edge ``reader -> writer``, whether a path
already leads from the writer to the reader (the edge would close a cycle), then adds the
edge. A search of the whole graph per question makes the pass quadratic. ``OrderedDag``
keeps a topological order of the graph as edges are added (Pearce and Kelly's dynamic
topological sort: an edge against the order reorders only the nodes between its ends), so a
question is answered at once when the writer comes after the reader in the order, and
otherwise by a search that never leaves the stretch of the order between them.
"""


class OrderedDag:
    """A ``networkx.DiGraph`` and a topological order of it, kept through ``add_edge``.

    Args:
        dag: the DAG (edges are added to it in place).
        order: its nodes in a topological order (the schedule).
    Example:
        >>> od = OrderedDag(dag, program.nodes)
        >>> od.has_path(writer, reader) or od.add_edge(reader, writer)
    """

    def __init__(self, dag, order):
        self.dag = dag
        self.rank = {n: i for i, n in enumerate(order)}

    def has_path(self, a, b):
        """Whether a path leads from ``a`` to ``b`` (True when they are one node)."""
        if a is b:
            return True
        limit = self.rank[b]
        if self.rank[a] > limit:
            return False
        return b in self._reach(a, self.dag.succ, lambda n: self.rank[n] <= limit)

    def add_edge(self, u, v):
        """Add ``u -> v`` (the caller knows no path leads from ``v`` to ``u``)."""
        if self.dag.has_edge(u, v):
            return
        self.dag.add_edge(u, v)
        lower, upper = self.rank[v], self.rank[u]
        if lower > upper:
            return  # the order already puts u first
        after = self._reach(v, self.dag.succ, lambda n: self.rank[n] < upper)
        before = self._reach(u, self.dag.pred, lambda n: self.rank[n] > lower)
        moved = sorted(before, key=self.rank.__getitem__) + \
            sorted(after, key=self.rank.__getitem__)
        for n, k in zip(moved, sorted(self.rank[n] for n in moved)):
            self.rank[n] = k

    @staticmethod
    def _reach(start, adjacency, inside):
        """``start`` and the nodes reachable from it through nodes where ``inside`` holds."""
        seen, stack = {start}, [start]
        while stack:
            n = stack.pop()
            for m in adjacency[n]:
                if m not in seen and inside(m):
                    seen.add(m)
                    stack.append(m)
        return seen
