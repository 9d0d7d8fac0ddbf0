"""A Kubernetes-API-compatible server for one local cluster: generic storage, watch, patch, apply, CRDs."""
