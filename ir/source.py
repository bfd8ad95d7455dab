"""User source locations: the first stack frame outside graphc, kept on every node."""
import linecache
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOTS = None


def _package_roots():
    # graphc installs its layers from sibling folders (graphc/, ir/, codegen/, runtime/):
    # frames from any of them are the library's, not the user's.
    # An installed copy nests them under graphc/; an editable one keeps them apart.
    global _ROOTS
    if _ROOTS is None or len(_ROOTS) < 4:
        roots = {_HERE + os.sep}
        for name in ("graphc", "graphc.codegen", "graphc.runtime"):
            mod = sys.modules.get(name)
            if mod is not None and getattr(mod, "__file__", None):
                roots.add(os.path.dirname(os.path.abspath(mod.__file__)) + os.sep)
        _ROOTS = tuple(sorted(roots))
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
