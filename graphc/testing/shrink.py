"""Shrinking a failing recipe to a small one that still fails the same way.

Delta debugging over the recipe's op list: first keep only the failing fetch, then cut ops
out, last op first, in chunks that halve down to single ops. Cutting op i replaces it by one of
its inputs of the same shape and dtype when it has one (the graph keeps its structure above
that input), else by a fresh placeholder of its shape (everything below i falls away). A cut is
kept when the recipe still fails on the same configuration; ops nothing live reads disappear
from the graph by themselves (``Recipe.live``). Last, a fetched op is replaced by one of its
inputs while the failure stays.
"""
from .check import Batch
from .graphs import Op


def still_fails(recipe, config, what, mutate, error=None):
    """Whether ``recipe`` alone still shows a ``what`` failure on ``config`` (for a crash,
    raising the exception class named ``error``)."""
    from .mutations import mutation
    try:
        with mutation(mutate):
            fails = Batch([recipe], (config,) if config != "reference" else ()).run()
    except Exception as exc:  # noqa: BLE001  (the reference crashing, or a cut breaking it)
        return config == "reference" and what == "crash" and type(exc).__name__ == error
    return any(f.config == config and f.what == what and
               (error is None or f.detail.startswith(error)) for f in fails)


def _cuts(recipe, i):
    """The ways of cutting op ``i``, most structure kept first."""
    op = recipe.items[i]
    same = [k for k, src in enumerate(op.inputs)
            if recipe.items[src].shape == op.shape and recipe.items[src].dtype == op.dtype]
    return same[:1] + ["leaf"]


def shrink(recipe, failure, mutate=None, budget=120):
    """A smaller recipe with the same kind of failure as ``failure`` (a ``check.Failure``).

    Args:
        recipe: the failing recipe (alone, it fails).
        failure: one of its failures; its config and kind are what must persist.
        mutate: the mutation the failure was found under (None: none).
        budget: at most this many candidate recipes are checked.
    Returns:
        (smallest failing recipe found, number of recipes checked).
    """
    config, what = failure.config, failure.what
    error = failure.detail.split(":")[0] if what == "crash" else None
    tries = 0

    def test(r):
        nonlocal tries
        tries += 1
        return still_fails(r, config, what, mutate, error)

    best = recipe
    if what in ("mismatch", "repeat") and 0 <= failure.fetch < len(recipe.fetches):
        one = recipe.keep_fetches([recipe.fetches[failure.fetch]])
        if test(one):
            best = one
    for f in list(best.fetches):  # a crash names no fetch: drop the fetches it does not need
        if len(best.fetches) > 1 and tries < budget:
            cand = best.keep_fetches([x for x in best.fetches if x != f])
            if test(cand):
                best = cand
    chunk = max(1, len(_ops(best)) // 2)
    while chunk >= 1 and tries < budget:
        changed = False
        ops = _ops(best)[::-1]
        for start in range(0, len(ops), chunk):
            if tries >= budget:
                break
            group = [i for i in ops[start:start + chunk] if i in set(best.live())]
            if not group:
                continue
            if chunk == 1:
                cands = [best.cut(group[0], how) for how in _cuts(best, group[0])]
            else:
                cand = best
                for i in group:
                    cand = cand.cut(i, "leaf")
                cands = [cand]
            for cand in cands:
                if tries < budget and test(cand):
                    best, changed = cand, True
                    break
        if not changed:
            chunk //= 2
    while tries < budget:  # fetch an input of the fetched op instead (drops the op itself)
        cands = [best.keep_fetches([k if j == pos else f for j, f in enumerate(best.fetches)])
                 for pos, f in enumerate(best.fetches) if isinstance(best.items[f], Op)
                 for k in best.items[f].inputs
                 if isinstance(best.items[k], Op) and best.items[k].dtype == best.dtype]
        best_before = best
        for cand in cands:
            if tries < budget and test(cand):
                best = cand
                break
        if best is best_before:
            break
    return best, tries


def _ops(recipe):
    live = set(recipe.live())
    return [i for i, it in enumerate(recipe.items)
            if i in live and isinstance(it, Op) and it.kind != "identity"]
