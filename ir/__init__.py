"""The IR layer: graphs of typed nodes, the op registry, autodiff, passes, printers, Program.

Contract: imports only numpy, networkx and the leaf ``graphc.errors``; never codegen or runtime.
"""
