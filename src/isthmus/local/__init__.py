"""The embedded local cluster: Kubernetes-API-compatible servers and the node processes that run pods.

Nothing of the mesh imports this package; only the CLI's `local` command group does.
"""
