"""Runs compiled artifacts (JIT engine, BLAS entry points, object cache, saved steps) using only
numpy, llvmlite, scipy and graphc.errors, never graphc.ir or graphc.codegen, so a saved step
loads without the compiler: ``load(path)`` (also ``gc.load``) runs a step saved by
``step.save(path)``, importing llvmlite only when the step holds object code.
"""
from .loaded_step import load  # noqa: F401
