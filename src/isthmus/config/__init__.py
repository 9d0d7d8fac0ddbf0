"""Mesh configuration and (later) Istio's configuration kinds, read from the primary cluster and validated."""
