"""Optimization passes over a Program: one module per pass, each returning what it changed."""
