"""The code generators: Program -> NumPy source, Program -> LLVM IR -> object code.

Contract: imports ir (and llvmlite); never the public API. Output is consumed by runtime/.

``BACKENDS`` maps a backend's name to its object, each with one protocol::

    code = BACKENDS["llvm"].compile(program, checks=(), dump_dir=None)   # a CompiledCode
    code.step(*feeds, *variables)    # -> (fetches, new variable values)
    code.source, code.rng_state(), code.object_code, code.layout ...     # what saving needs

Each backend is imported when first looked up (the LLVM one needs llvmlite, an optional
heavy dependency; neither needs the other); ``checks`` on a backend names the debugging
checks it can emit.
"""
from collections.abc import Mapping

from .compiled import CompiledCode


def _numpy():
    from .numpy.backend import BACKEND  # (not imported by a program compiled by LLVM)
    return BACKEND


def _llvm():
    from .llvm.backend import BACKEND  # llvmlite: an optional heavy dependency
    return BACKEND


class _Backends(Mapping):
    """name -> backend, imported on first use (ImportError when it cannot be)."""

    _loaders = {"numpy": _numpy, "llvm": _llvm}

    def __getitem__(self, name):
        return self._loaders[name]()

    def __iter__(self):
        return iter(self._loaders)

    def __len__(self):
        return len(self._loaders)


BACKENDS = _Backends()
__all__ = ["BACKENDS", "CompiledCode"]
