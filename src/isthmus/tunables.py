"""Every tunable of the mesh in one table: its default, what it does, and the environment variable that
overrides it (`ISTHMUS_<NAME>`). `isthmus tunables` prints the table.

Components read a tunable when they start (`TUNABLE.get()`); a bad override is reported with its name and
the default is used.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Tunable(Generic[T]):
    name: str
    default: T
    doc: str
    parse: Callable[[str], T]

    @property
    def env(self) -> str:
        return "ISTHMUS_" + self.name.upper()

    def get(self) -> T:
        raw = os.environ.get(self.env)
        if raw is None or raw == "":
            return self.default
        try:
            return self.parse(raw)
        except ValueError:
            log.error(
                "%s=%r is not a valid %s: using the default %r",
                self.env,
                raw,
                type(self.default).__name__,
                self.default,
            )
            return self.default


def _seconds(name: str, default: float, doc: str) -> Tunable[float]:
    return _register(Tunable(name, default, doc, float))


def _integer(name: str, default: int, doc: str) -> Tunable[int]:
    return _register(Tunable(name, default, doc, int))


ALL: list[Tunable[object]] = []


def _register(tunable: Tunable[T]) -> Tunable[T]:
    ALL.append(tunable)  # type: ignore[arg-type]
    return tunable


# -- Kubernetes access ------------------------------------------------------------------------------------
KUBE_REQUEST_TIMEOUT = _seconds(
    "kube_request_timeout",
    10.0,
    "seconds a request to a cluster's API server may take (a list page, a write)",
)
KUBE_LIST_PAGE = _integer("kube_list_page", 500, "objects per page when an informer lists a resource")
KUBE_WATCH_TIMEOUT = _integer(
    "kube_watch_timeout", 300, "seconds a watch runs before it is renewed from its last resourceVersion"
)
KUBE_BACKOFF_INITIAL = _seconds(
    "kube_backoff_initial", 0.5, "first delay before retrying a failed list or watch (doubles, with jitter)"
)
KUBE_BACKOFF_MAX = _seconds(
    "kube_backoff_max",
    5.0,
    "longest delay between retries of a failed list or watch (a cluster that comes back resyncs this soon)",
)

# -- Multicluster -----------------------------------------------------------------------------------------
REMOTE_CLUSTER_TIMEOUT = _seconds(
    "remote_cluster_timeout",
    10.0,
    "seconds the control plane waits for remote clusters to sync before it reports ready anyway (the others "
    "keep syncing in the background)",
)
CLUSTER_STALE_AFTER = _seconds(
    "cluster_stale_after",
    15.0,
    "seconds a cluster's watches may fail before it is marked stale (its last-known endpoints are kept)",
)

CLUSTER_STATE_CHECK = _seconds(
    "cluster_state_check",
    1.0,
    "seconds between checks of each cluster's state (syncing, synced, stale, failed)",
)

# -- Discovery --------------------------------------------------------------------------------------------
DEBOUNCE_AFTER = _seconds(
    "debounce_after",
    0.01,
    "seconds the push queue waits for more changes before pushing (quiet period; the events of one API write "
    "arrive within it)",
)
DEBOUNCE_MAX = _seconds(
    "debounce_max", 0.1, "longest a change may wait in the push queue while more keep arriving"
)

# -- xDS --------------------------------------------------------------------------------------------------
XDS_INITIAL_SYNC_CONCURRENCY = _integer(
    "xds_initial_sync_concurrency",
    32,
    "proxies whose first full configuration is built and sent at once (a reconnect storm after a restart "
    "waits its turn instead of starving pushes to proxies already in sync)",
)
XDS_KEEPALIVE = _seconds(
    "xds_keepalive", 30.0, "seconds between HTTP/2 keepalive pings on an idle xDS stream"
)
XDS_KEEPALIVE_TIMEOUT = _seconds(
    "xds_keepalive_timeout",
    10.0,
    "seconds a proxy may take to answer a keepalive ping before its stream is closed",
)
XDS_MAX_RECEIVE_BYTES = _integer(
    "xds_max_receive_bytes",
    4 * 1024 * 1024,
    "largest request a proxy may send (a NACK carries its error text)",
)
XDS_MAX_SEND_BYTES = _integer(
    "xds_max_send_bytes", 64 * 1024 * 1024, "largest response sent to a proxy (all clusters of a large mesh)"
)

# -- Certificate authority --------------------------------------------------------------------------------
CA_WORKLOAD_CERT_TTL = _seconds(
    "ca_workload_cert_ttl",
    24 * 3600.0,
    "seconds a workload certificate lives when the CSR asks for no validity",
)
CA_MAX_WORKLOAD_CERT_TTL = _seconds(
    "ca_max_workload_cert_ttl",
    90 * 24 * 3600.0,
    "longest validity, in seconds, a CSR may ask for (a longer one is refused, not shortened)",
)
CA_SELF_SIGNED_ROOT_TTL = _seconds(
    "ca_self_signed_root_ttl", 10 * 365 * 24 * 3600.0, "seconds a self-signed root lives (no `cacerts`)"
)
CA_ROOT_ROTATE_REMAINING = _register(
    Tunable(
        "ca_root_rotate_remaining",
        0.2,
        "a self-signed root is replaced when less than this fraction of its life remains (the old root stays "
        "trusted until it expires)",
        float,
    )
)
CA_CHECK_INTERVAL = _seconds(
    "ca_check_interval", 60.0, "seconds between the CA's checks of its root's age and of the published roots"
)
AGENT_CERT_ROTATE_AT = _register(
    Tunable(
        "agent_cert_rotate_at",
        0.5,
        "fraction of a workload certificate's life after which the agent renews it (with up to 10 % jitter)",
        float,
    )
)

# -- Process ----------------------------------------------------------------------------------------------
GC_THRESHOLDS = _register(
    Tunable(
        "gc_thresholds",
        "20000,50,100",
        "Python's garbage-collector thresholds for generations 0, 1, 2 in the discovery process (fewer "
        "collections during pushes)",
        str,
    )
)
GC_MAINTENANCE = _seconds(
    "gc_maintenance",
    300.0,
    "seconds between full collections of the discovery process (in between, long-lived objects are frozen)",
)


def table() -> list[tuple[str, str, str]]:
    """(environment variable, current value, doc) of every tunable."""
    return [(t.env, repr(t.get()), t.doc) for t in ALL]
