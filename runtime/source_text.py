"""Outside text (tensor and feed names, file names, manifest fields) made safe to paste into
generated Python source. Every emitter goes through these two functions, so a name can never
end a comment or a string early and run as code.

    note = f"# matmul '{comment_text(n.name)}'"     # a newline, quote or \\ cannot escape
    ident = "f_" + identifier(n.name)              # [A-Za-z0-9_] only

This module imports nothing: the NumPy emitter and the runtime's exporter share it.
"""

__all__ = ["comment_text", "identifier"]

_KEEP = frozenset(chr(c) for c in range(0x20, 0x7F)) - set("\\'\"")


def comment_text(text):
    """``text`` as printable ASCII without quotes or backslashes.

    Everything else becomes a Python escape (``\\n``, ``\\x22`` for ``"``, ``\\xe9``), so the
    result is safe in a ``#`` comment, in any string literal (raw or not, any quotes) and in
    a docstring, and still reads as the name it came from.

    Example:
        >>> print(comment_text("it's\\n\\u00e9"))
        it\\x27s\\n\\xe9
    """
    out = []
    for ch in str(text):
        if ch in _KEEP:
            out.append(ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x100:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    return "".join(out)


def identifier(text):
    """``text`` as the tail of a Python identifier: ASCII letters, digits and ``_`` only
    (any other character becomes ``_``; non-ASCII letters too, which Python would otherwise
    NFKC-normalize, so two names could meet in one identifier)."""
    return "".join(c if c.isascii() and (c.isalnum() or c == "_") else "_" for c in str(text))
