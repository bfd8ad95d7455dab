"""Helpers the tests share: reference runs and gradient checks, the op table, pass and layer
checks, reference windows, artifact mutations, and paths."""
