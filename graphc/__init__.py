"""graphc: a static-graph compiler for training steps (TF1-style API)."""
