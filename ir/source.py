"""User source locations: the first stack frame outside graphc, kept on every node."""
import linecache
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOTS = None
_SEEN = -1  # (how many of _LAYERS were imported when _ROOTS was made)
_LAYERS = ("graphc", "graphc.codegen", "graphc.runtime")


def _package_roots():
    # graphc installs its layers from sibling folders (graphc/, ir/, codegen/, runtime/):
    # frames from any of them are the library's, not the user's.
    # An installed copy nests them under graphc/; an editable one keeps them apart.
    # The layers import lazily, so the roots are made again only when one more has come.
    global _ROOTS, _SEEN
    modules = sys.modules
    seen = sum(name in modules for name in _LAYERS)
    if seen != _SEEN:
        roots = {_HERE + os.sep}
        for name in _LAYERS:
            mod = modules.get(name)
            if mod is not None and getattr(mod, "__file__", None):
                roots.add(os.path.dirname(os.path.abspath(mod.__file__)) + os.sep)
        _ROOTS, _SEEN = tuple(sorted(roots)), seen
    return _ROOTS


class Location:
    """Where the user created a node: file, line, and (lazily) the line's text."""

    __slots__ = ("filename", "lineno")

    def __init__(self, filename, lineno):
        self.filename, self.lineno = filename, lineno

    @property
    def short(self):
        return f"{os.path.basename(self.filename)}:{self.lineno}"

    @property
    def text(self):
        return linecache.getline(self.filename, self.lineno).strip()

    def format(self):
        text = self.text
        return f"{self.short}    {text}" if text else self.short

    def __repr__(self):
        return f"Location({self.short})"


UNKNOWN = Location("<unknown>", 0)


def user_location():
    """The innermost frame that is not graphc's own code (or UNKNOWN)."""
    roots = _package_roots()
    frame = sys._getframe(1)
    while frame is not None:
        fn = frame.f_code.co_filename
        if not fn.startswith(roots) and not fn.startswith("<frozen"):
            return Location(fn, frame.f_lineno)
        frame = frame.f_back
    return UNKNOWN
