"""Graph construction: the graph and its leaves, variable scopes, gradients."""
