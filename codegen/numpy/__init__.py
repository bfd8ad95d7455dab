"""The NumPy backend: Program -> one readable Python function over numpy.

Contract: imports ir and numpy only; the emitted source imports numpy alone.
"""
