"""Service discovery across clusters: a registry per cluster, the aggregate that merges them, and the
controller that adds and removes remote clusters from their Secrets."""
