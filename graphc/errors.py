"""Errors raised by graphc: one base class and a few precise ones.

This module is a leaf: it imports nothing from the project, so every layer (ir, codegen,
runtime and the public API) can raise the same classes. Every message names the node (its op
and name), what was expected, what was found, and where the user created the node.
"""


class GraphcError(Exception):
    """Base class of every error graphc raises on purpose.

    Args:
        message: the first line: ``op: what is wrong``.
        details: further lines (expected against found, per axis or per argument).
        loc: the user's source location, an object with ``format()`` (``ir.source.Location``).
        hint: how to fix it, when there is a usual fix.
    """

    def __init__(self, message, details=(), loc=None, hint=None):
        self.message = message
        self.details = tuple(details)
        self.loc = loc
        self.hint = hint
        super().__init__(self._render())

    def _render(self):
        lines = [self.message]
        lines += ["  " + d for d in self.details]
        if self.loc is not None:
            lines.append("  at " + self.loc.format())
        if self.hint:
            lines.append("  hint: " + self.hint)
        return "\n".join(lines)


class ShapeError(GraphcError, ValueError):
    """Shapes that do not fit an op (raised when the graph is built, or specialized)."""


class DTypeError(GraphcError, TypeError):
    """A dtype an op does not accept, or a gradient asked of an integer tensor."""


class FeedError(GraphcError, ValueError):
    """Missing, unknown or ill-shaped feeds, detected before anything runs."""


class GraphError(GraphcError):
    """A malformed graph: tensors of two graphs mixed, cycles, uninitialized variables."""


class GradientError(GraphcError):
    """A gradient that cannot be formed (unconnected with ``"raise"``, non-differentiable op)."""


class CompileError(GraphcError):
    """A program the backends cannot compile (for instance a variable assigned twice)."""


class ArtifactError(GraphcError):
    """A saved step that cannot be loaded: corrupted, truncated, from the future, or built for
    another CPU."""


class NumericsError(GraphcError, FloatingPointError):
    """A NaN or Inf produced by a node while numerics checking is on."""


class OutOfRangeError(GraphcError):
    """An iterator's dataset is exhausted (TF1's tf.errors.OutOfRangeError ends input loops)."""


class InvalidArgumentError(GraphcError, ValueError):
    """A run-time check on values failed: ``tf.Assert`` with a False condition, or a
    ``tf.py_func`` result of the wrong dtype or shape (TF1's tf.errors.InvalidArgumentError)."""


class UnknownError(GraphcError):
    """A Python function called inside a step (``tf.py_func``) raised; the exception it raised
    is the ``__cause__`` (TF1's tf.errors.UnknownError)."""


class UnknownNameError(GraphError, KeyError):
    """A name that names no tensor or op of the graph (a ``KeyError`` too, as TF1's
    ``get_tensor_by_name`` raises); the message lists the graph's closest names."""

    __str__ = Exception.__str__  # KeyError's would quote the whole message
