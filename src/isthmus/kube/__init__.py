"""Kubernetes access for the mesh: clients from kubeconfigs (file, Secret data) or in-cluster, and informers
that list, watch, resume and relist, keeping only the slim projections the mesh needs."""
