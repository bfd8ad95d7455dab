"""Watching an LLVM fold decide (``graphc.codegen.llvm.folds``)."""
from graphc.codegen.llvm import folds


def watch_fold(monkeypatch, name, seen=None):
    """Wrap fold ``name``'s matcher for the test: each decision is appended to the returned
    list (True: it fired); ``seen(L, node, hit)`` also runs on each hit."""
    plain, fired = folds.FOLDS[name], []

    def watched(L, n):
        hit = plain.match(L, n)
        fired.append(hit is not None)
        if hit is not None and seen is not None:
            seen(L, n, hit)
        return hit
    monkeypatch.setitem(folds.FOLDS, name, folds.Fold(name, plain.op, watched))
    return fired
