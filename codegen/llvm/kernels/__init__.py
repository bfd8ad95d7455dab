"""The LLVM kernels, one module per op family; each registers its lowerings in ``registry``.

Importing this package imports every kernel module, so whichever of the driver or a kernel
module is imported first, every lowering is registered. Kernel modules import the registry
and the helper modules (``ir``, ``loops``, ``scalar``, ``math``...), never the driver.
"""
from . import (collective, conv, conv_gemm, depthwise, elementwise, gemm,  # noqa: F401
               gemm_acc, host, loop, movement, nn, numerics, pool, random, transpose, windows)
