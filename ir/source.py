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
    seen = ("graphc" in modules) + ("graphc.codegen" in modules) + ("graphc.runtime" in modules)
    # (_LAYERS, spelled out: this runs for every node built)
    if seen != _SEEN:
        roots = {_HERE + os.sep}
        for name in _LAYERS:
            mod = modules.get(name)
            if mod is not None and getattr(mod, "__file__", None):
                roots.add(os.path.dirname(os.path.abspath(mod.__file__)) + os.sep)
        _ROOTS, _SEEN = tuple(sorted(roots)), seen
        _LIBRARY.clear()
    return _ROOTS


# file name -> whether its frames are the library's (for the current roots): every node built
# asks, from the same few files
_LIBRARY = {}


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
    library = _LIBRARY
    frame = sys._getframe(1)
    while frame is not None:
        fn = frame.f_code.co_filename
        mine = library.get(fn)
        if mine is None:
            mine = library[fn] = fn.startswith(roots) or fn.startswith("<frozen")
        if not mine:
            return Location(fn, frame.f_lineno)
        frame = frame.f_back
    return UNKNOWN
