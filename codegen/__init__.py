"""The code generators: Program -> NumPy source, Program -> LLVM IR -> object code.

Contract: imports ir (and llvmlite); never the public API. Output is consumed by runtime/.
"""
