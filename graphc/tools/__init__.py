"""Tools over users' models: gradient checks and gradient-health diagnostics."""
