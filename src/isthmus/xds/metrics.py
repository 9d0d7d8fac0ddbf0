"""The xDS server's Prometheus metrics (served by the discovery process on its monitoring address)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry()

PROXIES = Gauge(
    "isthmus_xds_connected_proxies",
    "Proxies connected to this control plane",
    ["protocol"],
    registry=REGISTRY,
)
PUSHES = Counter("isthmus_xds_pushes_total", "Responses sent to proxies", ["type"], registry=REGISTRY)
REJECTS = Counter(
    "isthmus_xds_rejects_total", "Responses proxies rejected (NACKs)", ["type"], registry=REGISTRY
)
PUSH_TRIGGERS = Counter(
    "isthmus_xds_push_triggers_total", "Debounced pushes started", ["reason"], registry=REGISTRY
)
CONVERGE = Histogram(
    "isthmus_xds_convergence_seconds",
    "From a change entering the control plane to the proxy's acknowledgement of the response carrying it",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
    registry=REGISTRY,
)
BAD_NODES = Counter("isthmus_xds_bad_nodes_total", "Streams refused because of their node", registry=REGISTRY)
REFUSED_STREAMS = Counter(
    "isthmus_xds_refused_streams_total",
    "Streams on the mTLS port refused: the certificate is not the pod the proxy claims",
    registry=REGISTRY,
)
