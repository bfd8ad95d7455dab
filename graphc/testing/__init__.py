"""Testing tools shipped with graphc: a seeded random-graph differential fuzzer.

``python -m graphc.testing.fuzz --n 20000`` builds random graphs (``graphs``), runs each on the
unoptimized NumPy reference, the optimized NumPy pipeline and the LLVM backend with and without
native GEMMs, and reports (and shrinks) any disagreement (``check``, ``shrink``). Nothing here
is imported by the compiler or the runtime.
"""
