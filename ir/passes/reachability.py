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
    """A DAG and a topological order of it, kept through ``add_edge``.

    Args:
        dag: a ``networkx.DiGraph`` (edges added here are added to it too), or None with
            ``of_inputs``.
        order: its nodes in a topological order (the schedule).
    Example:
        >>> od = OrderedDag.of_inputs(program.nodes)   # the data edges of a schedule
        >>> od.has_path(writer, reader) or od.add_edge(reader, writer)
    """

    def __init__(self, dag, order):
        self.dag = dag
        self.rank = {n: i for i, n in enumerate(order)}
        # plain dicts (ordered sets) for the searches: networkx's views cost several times more
        self.succ = {n: dict.fromkeys(dag.succ[n]) for n in order} if dag is not None else {}
        self.pred = {n: dict.fromkeys(dag.pred[n]) for n in order} if dag is not None else {}

    @classmethod
    def of_inputs(cls, nodes):
        """The data edges (input -> reader) of ``nodes``, a schedule, ordered by depth.

        Any topological order gives the same answers; the order only decides how far the
        searches go. The schedule puts each weight update at the end, after every other
        gradient, so that the ordering edge from an update (a reader of a gradient) to the
        node overwriting that gradient went against the order and reordered the whole
        backward pass, once per layer: quadratic in the depth of the model. By depth (the
        longest path from a leaf; ties in schedule order) an update sits right after its
        inputs, and readers of one value sit near each other.
        """
        depth = {}
        for n in nodes:  # (a schedule: inputs first)
            depth[n] = 1 + max((depth.get(x, 0) for x in n.inputs), default=-1)
        pos = {n: i for i, n in enumerate(nodes)}
        od = cls(None, sorted(nodes, key=lambda n: (depth[n], pos[n])))
        succ, pred = od.succ, od.pred
        for n in nodes:
            succ.setdefault(n, {})
            pred[n] = dict.fromkeys(n.inputs)
            for x in n.inputs:
                succ.setdefault(x, {})[n] = None
        return od

    def has_edge(self, u, v):
        return v in self.succ[u]

    def has_path(self, a, b):
        """Whether a path leads from ``a`` to ``b`` (True when they are one node)."""
        if a is b:
            return True
        rank = self.rank
        limit = rank[b]
        if rank[a] > limit:
            return False
        seen, stack, succ = {a}, [a], self.succ
        while stack:
            for m in succ[stack.pop()]:
                if m not in seen and rank[m] <= limit:
                    if m is b:
                        return True
                    seen.add(m)
                    stack.append(m)
        return False

    def add_edge(self, u, v):
        """Add ``u -> v`` (the caller knows no path leads from ``v`` to ``u``)."""
        if v in self.succ[u]:
            return
        self.succ[u][v] = None
        self.pred[v][u] = None
        if self.dag is not None:
            self.dag.add_edge(u, v)
        rank = self.rank
        lower, upper = rank[v], rank[u]
        if lower > upper:
            return  # the order already puts u first
        after = self._reach(v, self.succ, lambda r: r < upper)
        before = self._reach(u, self.pred, lambda r: r > lower)
        moved = sorted(before, key=rank.__getitem__) + sorted(after, key=rank.__getitem__)
        for n, k in zip(moved, sorted(rank[n] for n in moved)):
            rank[n] = k

    def _reach(self, start, adjacency, inside):
        """``start`` and the nodes reachable from it through nodes whose rank ``inside``
        accepts."""
        rank = self.rank
        seen, stack = {start}, [start]
        while stack:
            for m in adjacency[stack.pop()]:
                if m not in seen and inside(rank[m]):
                    seen.add(m)
                    stack.append(m)
        return seen
