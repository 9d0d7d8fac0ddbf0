"""Isthmus: a multicluster service mesh with one shared control plane on one flat network."""

__version__ = "0.1.0"
