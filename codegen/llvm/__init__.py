"""The LLVM backend: Program -> LLVM IR (one module, one exported ``step``) -> object code.

Contract: imports ir, llvmlite and the runtime's descriptors; never the public API.
"""
