"""The discovery process's Prometheus metrics (served on the monitoring address, Istio's 15014)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

REGISTRY = CollectorRegistry()

REMOTE_CLUSTERS = Gauge(
    "isthmus_remote_clusters",
    "Remote clusters by state (synced, syncing, stale, failed, refused)",
    ["state"],
    registry=REGISTRY,
)
CLUSTER_STALE = Gauge(
    "isthmus_cluster_stale",
    "1 while a cluster's API server cannot be reached and its last-known endpoints are kept",
    ["cluster"],
    registry=REGISTRY,
)
SERVICES = Gauge("isthmus_services", "Services merged across clusters", registry=REGISTRY)
ENDPOINTS = Gauge("isthmus_endpoints", "Endpoints per cluster", ["cluster"], registry=REGISTRY)
REGISTRY_EVENTS = Counter(
    "isthmus_registry_events", "Change events of the aggregate registry", ["type"], registry=REGISTRY
)
MESH_CONFIG_ERRORS = Counter(
    "isthmus_mesh_config_errors", "Mesh configs refused (the last good one is kept)", registry=REGISTRY
)
