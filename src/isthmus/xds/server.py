"""The ADS server: Envoy's aggregated discovery service over gRPC, state-of-the-world and delta, for sidecars
and proxyless gRPC clients.

It keeps the connected proxies, groups them into views (proxies that see the same get the same shared
resources), turns debounced registry and config changes into per-connection pushes of only what changed, and
answers the debug endpoints (`syncz`, `config_dump`) that `isthmus proxy-status` reads.

Contract: runs on the control plane's event loop, with grpc.aio. `on_event` may be called by any listener on
that loop; `push` runs once per debounced batch.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

import grpc
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import json_format, message

from isthmus import tunables
from isthmus.config.security import MtlsMode
from isthmus.model import Event, Locality
from isthmus.xds import cds, lds, metrics, names, rds, wire
from isthmus.xds.authn import AuthenticationError, authenticate
from isthmus.xds.connection import EMPTY, Connection, Layered, Snapshot, WriteFn, next_nonce
from isthmus.xds.eds import EndpointCache
from isthmus.xds.node import NodeError, parse
from isthmus.xds.push import PushQueue, PushRequest
from isthmus.xds.resources import Resource, TypeUrl, content_version
from isthmus.xds.view import MeshSources, View, ViewKey, inbound_ports, resolve, view_key

log = logging.getLogger(__name__)

ADS_SERVICE = "envoy.service.discovery.v3.AggregatedDiscoveryService"
MESSAGES: dict[TypeUrl, type[message.Message]] = {
    TypeUrl.CLUSTER: cluster_pb2.Cluster,
    TypeUrl.ENDPOINT: endpoint_pb2.ClusterLoadAssignment,
    TypeUrl.LISTENER: listener_pb2.Listener,
    TypeUrl.ROUTE: route_pb2.RouteConfiguration,
}


def _identity(payload: bytes) -> bytes:
    return payload


class EdsGroup:
    """Connections of one view, at one locality, subscribed to the same clusters: one shared snapshot of their
    endpoints, updated by host."""

    def __init__(self, view: View, locality: Locality, names_: frozenset[str]) -> None:
        self.view = view
        self.locality = locality
        self.names = names_
        self.by_host: dict[str, list[str]] = {}
        for name in names_:
            self.by_host.setdefault(names.host_of_cluster(name), []).append(name)
        self.members: set[Connection] = set()
        self.current: Snapshot = Snapshot({})

    def build(self, cache: EndpointCache) -> None:
        fresh = {
            n: cache.assignment(self.view, self.locality, n) for n in self.names if names.parse_cluster(n)
        }
        changed = [n for n, r in fresh.items() if self.current.get(n) is not r]
        self.current = Snapshot(fresh, self.current, changed)

    def update(self, hosts: set[str], cache: EndpointCache) -> set[str]:
        """Rebuild the assignments of these hosts; returns the names that changed."""
        data = dict(self.current)
        changed = set()
        for host in hosts:
            for name in self.by_host.get(host, ()):
                resource = cache.assignment(self.view, self.locality, name)
                if data.get(name) is not resource:
                    data[name] = resource
                    changed.add(name)
        if changed:
            self.current = Snapshot(data, self.current, changed)
        return changed


class XdsServer:
    def __init__(self, sources: MeshSources) -> None:
        self.sources = sources
        self.views: dict[ViewKey, View] = {}
        self.connections: dict[str, Connection] = {}
        self.endpoints = EndpointCache()
        self.groups: dict[tuple[ViewKey, Locality, frozenset[str]], EdsGroup] = {}
        self.groups_by_host: dict[str, set[EdsGroup]] = {}
        self.queue = PushQueue(self.push)
        self._slots: asyncio.Semaphore | None = None
        self._server: grpc.aio.Server | None = None
        self._secure_server: grpc.aio.Server | None = None
        self.secure_address = ""
        self._tasks: list[asyncio.Task[None]] = []
        self._inbound_ips: dict[str, frozenset[str]] = {}  # host -> its endpoint addresses that are proxies
        self.address = ""
        self._fanouts: set[asyncio.Future[Any]] = set()
        self.initial_syncs = 0  # connections that received their first full configuration

    # -- lifecycle ----------------------------------------------------------------------------------------

    def handler(self, secure: bool = False) -> grpc.GenericRpcHandler:
        """The ADS methods; `secure`: each stream's proxy must prove it is the pod it claims (15011)."""

        async def sotw(requests: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
            await self._stream(context, delta=False, secure=secure)

        async def delta(requests: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
            await self._stream(context, delta=True, secure=secure)

        return grpc.method_handlers_generic_handler(
            ADS_SERVICE,
            {
                "StreamAggregatedResources": grpc.stream_stream_rpc_method_handler(
                    sotw,
                    request_deserializer=discovery_pb2.DiscoveryRequest.FromString,
                    response_serializer=_identity,
                ),
                "DeltaAggregatedResources": grpc.stream_stream_rpc_method_handler(
                    delta,
                    request_deserializer=discovery_pb2.DeltaDiscoveryRequest.FromString,
                    response_serializer=_identity,
                ),
            },
        )

    @staticmethod
    def _new_server() -> grpc.aio.Server:
        keepalive = int(tunables.XDS_KEEPALIVE.get() * 1000)
        return grpc.aio.server(
            options=[
                ("grpc.keepalive_time_ms", keepalive),
                ("grpc.keepalive_timeout_ms", int(tunables.XDS_KEEPALIVE_TIMEOUT.get() * 1000)),
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_ping_interval_without_data_ms", 5000),
                ("grpc.max_receive_message_length", tunables.XDS_MAX_RECEIVE_BYTES.get()),
                ("grpc.max_send_message_length", tunables.XDS_MAX_SEND_BYTES.get()),
                ("grpc.so_reuseport", 0),
            ]
        )

    async def start(self, address: str) -> None:
        server = self._new_server()
        server.add_generic_rpc_handlers((self.handler(),))
        port = server.add_insecure_port(address)
        if port == 0:
            raise OSError(f"xDS: cannot listen on {address} (in use, or not an address of this host)")
        await server.start()
        self._server = server
        self.address = address
        self._slots = asyncio.Semaphore(tunables.XDS_INITIAL_SYNC_CONCURRENCY.get())
        self._tasks.append(asyncio.get_running_loop().create_task(self.queue.run(), name="xds push queue"))
        log.info("xDS (ADS, state of the world and delta) on %s", address)

    async def start_secure(self, address: str, credentials: grpc.ServerCredentials) -> None:
        """xDS over mutual TLS (`credentials` require a client certificate from the mesh's roots)."""
        server = self._new_server()
        server.add_generic_rpc_handlers((self.handler(secure=True),))
        if server.add_secure_port(address, credentials) == 0:
            raise OSError(
                f"xDS over mTLS: cannot listen on {address} (in use, or not an address of this host)"
            )
        await server.start()
        self._secure_server = server
        self.secure_address = address
        log.info("xDS over mutual TLS on %s (proxies must be the pods they claim)", address)

    async def stop(self, grace: float = 1.0) -> None:
        for task in self._tasks:
            task.cancel()
        for server in (self._server, self._secure_server):
            if server is not None:
                await server.stop(grace)
        self._server = self._secure_server = None

    def on_event(self, event: Event) -> None:
        self.queue.add(event)

    # -- streams ------------------------------------------------------------------------------------------

    async def _stream(self, context: grpc.aio.ServicerContext[Any, Any], delta: bool, secure: bool) -> None:
        first = await context.read()
        if first is grpc.aio.EOF:
            return
        try:
            node = parse(first.node)
        except NodeError as exc:
            metrics.BAD_NODES.inc()
            log.warning("refused an xDS stream from %s: %s", context.peer(), exc)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            return
        if secure:
            try:
                authenticate(self.sources, node, context.peer(), context.auth_context())
            except AuthenticationError as exc:
                metrics.REFUSED_STREAMS.inc()
                log.warning("refused an xDS stream from %s: %s", context.peer(), exc)
                await context.abort(grpc.StatusCode.PERMISSION_DENIED, str(exc))
                return
        proxy = resolve(node, self.sources)
        connection = Connection(self, proxy, self._view(proxy), delta, context.peer())
        connection.write = context.write
        self._add(connection)

        writer = asyncio.get_running_loop().create_task(
            self._write(connection, context.write), name=f"xds {connection.id}"
        )
        handle = connection.handle_delta if delta else connection.handle_sotw
        try:
            request = first
            while request is not grpc.aio.EOF:
                handle(request)
                request = await context.read()  # a broken stream ends this read too
        except (grpc.aio.AioRpcError, grpc.aio.AbortError, asyncio.InvalidStateError) as exc:
            log.info("%s: stream ended: %s", connection.id, type(exc).__name__)
        finally:
            writer.cancel()
            self._remove(connection)

    async def _write(self, connection: Connection, write: WriteFn) -> None:
        try:
            await connection.write_loop(write)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a stream that broke while we wrote: the reader ends it
            log.info("%s: stream ended while writing: %s", connection.id, exc)

    def _add(self, connection: Connection) -> None:
        self.connections[connection.id] = connection
        self._refresh_private(connection)
        metrics.PROXIES.labels("delta" if connection.delta else "sotw").inc()
        log.info(
            "%s connected from %s (cluster %s, %s)",
            connection.proxy.node.id,
            connection.peer,
            connection.proxy.cluster,
            "delta" if connection.delta else "state of the world",
        )

    def _remove(self, connection: Connection) -> None:
        if self.connections.pop(connection.id, None) is None:
            return
        self._leave_group(connection)
        self._release_view(connection.view)
        metrics.PROXIES.labels("delta" if connection.delta else "sotw").dec()
        log.info("%s disconnected", connection.proxy.node.id)

    def _view(self, proxy: Any) -> View:
        key = view_key(proxy, self.sources)
        view = self.views.get(key)
        if view is None:
            view = self.views[key] = View(key, self.sources, proxy.sidecar)
        view.proxies += 1
        return view

    def _release_view(self, view: View) -> None:
        view.proxies -= 1
        if view.proxies <= 0:
            self.views.pop(view.key, None)

    # -- Source (what a connection asks of the server) ---------------------------------------------------

    def synced(self, connection: Connection) -> None:
        self.initial_syncs += 1

    def initial_sync_slot(self) -> asyncio.Semaphore:
        if self._slots is None:
            self._slots = asyncio.Semaphore(tunables.XDS_INITIAL_SYNC_CONCURRENCY.get())
        return self._slots

    def subscribed(self, connection: Connection, type_url: TypeUrl, names_: frozenset[str]) -> frozenset[str]:
        if type_url is TypeUrl.ENDPOINT:
            return self._join_group(connection, names_).names
        return names_

    def desired(self, connection: Connection, type_url: TypeUrl) -> Mapping[str, Resource]:
        view = connection.view
        state = connection.states.get(type_url)
        wanted = state.names if state is not None else frozenset()
        if type_url is TypeUrl.ENDPOINT:
            group = connection.eds_group
            return group.current if isinstance(group, EdsGroup) else EMPTY
        if view.key.proxyless:
            if type_url is TypeUrl.LISTENER:
                return lds.proxyless_listeners(view, wanted)
            if type_url is TypeUrl.ROUTE:
                return rds.proxyless_routes(view, wanted)
            return cds.outbound_clusters(view, wanted)
        if type_url is TypeUrl.CLUSTER:
            return Layered(cds.view_clusters(view), connection.private.get(type_url, EMPTY))
        if type_url is TypeUrl.LISTENER:
            shared = lds.view_listeners(view)
            if state is not None and not state.wildcard:
                shared = {n: r for n, r in shared.items() if n in wanted}
            return Layered(shared, connection.private.get(type_url, EMPTY))
        routes = rds.view_routes(view)
        if state is not None and not state.wildcard and set(routes) != wanted:
            return {n: r for n, r in routes.items() if n in wanted}
        return routes

    # -- EDS groups ---------------------------------------------------------------------------------------

    def _join_group(self, connection: Connection, names_: frozenset[str]) -> EdsGroup:
        self._leave_group(connection)
        key = (connection.view.key, connection.proxy.locality, names_)
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = EdsGroup(connection.view, connection.proxy.locality, names_)
            group.build(self.endpoints)
            for host in group.by_host:
                self.groups_by_host.setdefault(host, set()).add(group)
        group.members.add(connection)
        connection.eds_group = group
        return group

    def _leave_group(self, connection: Connection) -> None:
        group = connection.eds_group
        if not isinstance(group, EdsGroup):
            return
        group.members.discard(connection)
        connection.eds_group = None
        if not group.members:
            self.groups.pop((group.view.key, group.locality, group.names), None)
            for host in group.by_host:
                members = self.groups_by_host.get(host)
                if members is not None:
                    members.discard(group)
                    if not members:
                        del self.groups_by_host[host]

    # -- pushes -------------------------------------------------------------------------------------------

    def _refresh_private(self, connection: Connection) -> None:
        """A sidecar's own resources: its inbound clusters and virtualInbound."""
        if connection.view.key.proxyless:
            return
        proxy = connection.proxy
        ports = inbound_ports(proxy, self.sources)
        config = self.sources.config
        modes = {
            p.target: config.mtls_mode(proxy.namespace, proxy.labels, p.target)
            if config
            else MtlsMode.PERMISSIVE
            for p in ports
        }
        connection.private = {
            TypeUrl.CLUSTER: cds.inbound_clusters(connection.view, ports),
            TypeUrl.LISTENER: {names.VIRTUAL_INBOUND: lds.virtual_inbound(connection.view, ports, modes)},
        }

    def push(self, request: PushRequest) -> None:
        """Turn one debounced batch of changes into pushes of what changed, to the connections it concerns."""
        started = time.monotonic()
        since = request.first_event
        for reason, present in (
            ("endpoints", request.endpoints),
            ("services", request.services),
            ("config", request.config),
            ("workloads", request.workloads),
            ("mesh", request.mesh),
        ):
            if present:
                metrics.PUSH_TRIGGERS.labels(reason).inc()
        affected_ips = self._inbound_changes(request.endpoints | request.services)
        for host in request.endpoints:  # who may answer for a service changed: its mTLS clusters too
            used = self.sources.identities_used.get(host)
            if used is not None and self.sources.identities(host) != used:
                request.services.add(host)
        if request.outbound:
            self._push_outbound(request, since)
        else:
            for host in request.endpoints:
                self.endpoints.invalidate(host)
            touched: dict[EdsGroup, set[str]] = {}
            for host in request.endpoints:
                for group in self.groups_by_host.get(host, ()):
                    touched.setdefault(group, set()).add(host)
            for group, hosts in touched.items():
                parent = group.current
                changed = group.update(hosts, self.endpoints)
                if changed:
                    self._push_group(group, parent, changed, since)
        moved = self._workloads_changed(request, since)
        for connection in self.connections.values():
            if connection.proxy.ip in affected_ips and connection not in moved:
                self._refresh_private(connection)
                connection.enqueue(TypeUrl.CLUSTER, None, since=since)
                connection.enqueue(TypeUrl.LISTENER, None, since=since)
        took = time.monotonic() - started
        if took > 0.1:
            log.info("push of %d events took %.0f ms to plan", request.events, took * 1000)

    def _push_group(
        self, group: EdsGroup, parent: Mapping[str, Resource], changed: set[str], since: float
    ) -> None:
        """Endpoints changed for a group: one response, built once, to every member that is in step (the
        others compute their own)."""
        entries = [group.current[n] for n in sorted(changed)]
        nonce = next_nonce()
        delta_payload = wire.delta_response("", TypeUrl.ENDPOINT, nonce, [r.delta_entry for r in entries], [])
        version = content_version(b"\0".join(f"{r.name}\0{r.version}".encode() for r in entries))
        sotw_payload = wire.sotw_response(version, TypeUrl.ENDPOINT, nonce, [r.sotw_entry for r in entries])
        writes = []
        for connection in group.members:
            if connection.ready_for(TypeUrl.ENDPOINT, parent):
                payload = delta_payload if connection.delta else sotw_payload
                connection.send_prepared(
                    TypeUrl.ENDPOINT, payload, nonce, group.current, entries, version, since
                )
                writes.append(connection.write_prepared())
            else:
                connection.enqueue(TypeUrl.ENDPOINT, changed, since=since)
        if writes:  # written concurrently, by one task: no wake-up of each connection's writer
            fanout = asyncio.ensure_future(asyncio.gather(*writes, return_exceptions=True))
            self._fanouts.add(fanout)
            fanout.add_done_callback(self._fanouts.discard)

    def _push_outbound(self, request: PushRequest, since: float) -> None:
        """Services, config or the mesh changed: views are rebuilt (each resource only if its inputs changed)
        and every connection compares what it has with what it should have."""
        self.endpoints.clear()
        for view in self.views.values():
            view.invalidate()
        regroup: list[Connection] = []
        for connection in list(self.connections.values()):
            proxy = resolve(connection.proxy.node, self.sources)
            if view_key(proxy, self.sources) != connection.view.key:
                self._move(connection, proxy)
                regroup.append(connection)
            elif request.config or request.mesh:
                connection.proxy = proxy
        for group in list(self.groups.values()):
            group.build(self.endpoints)
        for connection in self.connections.values():
            if connection in regroup:
                continue
            if request.config or request.mesh or request.services:
                self._refresh_private(connection)
            for type_url in (TypeUrl.CLUSTER, TypeUrl.LISTENER, TypeUrl.ROUTE, TypeUrl.ENDPOINT):
                connection.enqueue(type_url, None, since=since)

    def _move(self, connection: Connection, proxy: Any) -> None:
        """The proxy now sees the mesh differently (its Sidecar, labels or cluster changed): a new view."""
        old = connection.view
        connection.proxy = proxy
        connection.view = self._view(proxy)
        self._release_view(old)
        state = connection.states.get(TypeUrl.ENDPOINT)
        self._leave_group(connection)
        if state is not None and state.names:
            state.names = self._join_group(connection, state.names).names
        self._refresh_private(connection)
        for type_url in (TypeUrl.CLUSTER, TypeUrl.LISTENER, TypeUrl.ROUTE, TypeUrl.ENDPOINT):
            connection.enqueue(type_url, None)

    def _workloads_changed(self, request: PushRequest, since: float) -> set[Connection]:
        if not request.workloads:
            return set()
        pods = {(namespace, name) for _, namespace, name in request.workloads}
        moved: set[Connection] = set()
        for connection in list(self.connections.values()):
            node = connection.proxy.node
            if (node.namespace, node.pod_name) not in pods:
                continue
            proxy = resolve(node, self.sources)
            if (
                view_key(proxy, self.sources) != connection.view.key
                or proxy.locality != connection.proxy.locality
            ):
                self._move(connection, proxy)
            else:
                connection.proxy = proxy
                self._refresh_private(connection)
                connection.enqueue(TypeUrl.CLUSTER, None, since=since)
                connection.enqueue(TypeUrl.LISTENER, None, since=since)
            moved.add(connection)
        return moved

    def _inbound_changes(self, hosts: set[str]) -> set[str]:
        """Proxy IPs whose inbound side may have changed: they became, or stopped being, an endpoint."""
        if not hosts or not self.connections:
            return set()
        proxies = {c.proxy.ip for c in self.connections.values() if not c.view.key.proxyless}
        affected: set[str] = set()
        aggregate = self.sources.aggregate
        for host in hosts:
            current = frozenset(
                e.address
                for shard in aggregate.endpoints.get(host, {}).values()
                for e in shard
                if e.address in proxies
            )
            previous = self._inbound_ips.get(host, frozenset())
            if current != previous:
                affected |= current ^ previous
            if current:
                self._inbound_ips[host] = current
            else:
                self._inbound_ips.pop(host, None)
        return affected

    # -- debug --------------------------------------------------------------------------------------------

    def syncz(self) -> list[dict[str, Any]]:
        """Every connected proxy, with per type: SYNCED / STALE / NOT SENT, versions and the last NACK."""
        out = []
        for connection in sorted(self.connections.values(), key=lambda c: c.proxy.node.id):
            proxy = connection.proxy
            types: dict[str, dict[str, Any]] = {}
            for type_url in TypeUrl:
                state = connection.states.get(type_url)
                if state is None:
                    types[type_url.short] = {"status": "NOT SENT"}
                    continue
                types[type_url.short] = {
                    "status": state.status,
                    "sent_nonce": state.sent_nonce,
                    "acked_nonce": state.acked_nonce,
                    "version": state.version_info,
                    "resources": len(state.sent),
                    "subscribed": "*" if state.wildcard else len(state.names),
                    "nacks": state.nacks,
                    "last_error": state.last_error,
                    "rejected": dict(state.rejected),
                }
            out.append(
                {
                    "id": connection.id,
                    "node": proxy.node.id,
                    "pod": proxy.node.pod,
                    "namespace": proxy.namespace,
                    "ip": proxy.ip,
                    "cluster": proxy.cluster,
                    "claimed_cluster": proxy.node.cluster_id,
                    "locality": proxy.locality.label,
                    "proxyless": proxy.proxyless,
                    "protocol": "delta" if connection.delta else "sotw",
                    "peer": connection.peer,
                    "istio_version": proxy.node.istio_version,
                    "connected": connection.connected,
                    "types": types,
                }
            )
        return out

    def find(self, proxy: str) -> Connection | None:
        """A connection by its id, node id, `pod.namespace` or pod IP."""
        for connection in self.connections.values():
            node = connection.proxy.node
            if proxy in (connection.id, node.id, node.pod, node.ip):
                return connection
        return None

    def config_dump(self, proxy: str) -> dict[str, Any] | None:
        """What a proxy was sent, per type, as JSON."""
        connection = self.find(proxy)
        if connection is None:
            return None
        dump: dict[str, Any] = {"node": connection.proxy.node.id, "cluster": connection.proxy.cluster}
        for type_url, state in connection.states.items():
            decoded: list[dict[str, Any]] = []
            for name in sorted(state.sent):
                resource = state.sent[name]
                if not resource.body and resource.version:
                    decoded.append({"name": name, "version": resource.version})
                    continue
                message_type = MESSAGES[type_url]
                decoded.append(
                    {
                        "name": name,
                        "version": resource.version,
                        "acked": state.acked.get(name) is resource,
                        "resource": json_format.MessageToDict(message_type.FromString(resource.body)),
                    }
                )
            dump[type_url.short] = decoded
        return dump
