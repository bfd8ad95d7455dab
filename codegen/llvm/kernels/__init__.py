"""The LLVM kernels, one module per op family; each registers its lowerings with ``@lowers``."""
