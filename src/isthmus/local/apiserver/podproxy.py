"""Subresources that reach into running pods: `pods/log` and `pods/exec` relayed to the node process (kubelet)
through its Unix socket, and `pods/proxy` / `services/proxy` as HTTP proxies to pod and service addresses.

exec relays WebSocket messages unchanged between the client and the kubelet, so both v5.channel.k8s.io
(kubectl) and v4.channel.k8s.io (the Python clients) work; the subprotocol is the one the kubelet picks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import aiohttp
from aiohttp import WSMsgType, web

from isthmus.local.apiserver.auth import UserInfo
from isthmus.local.apiserver.config import ApiServerConfig
from isthmus.local.apiserver.errors import StatusError, bad_request, not_found
from isthmus.local.apiserver.handlers import ApiHandlers, RequestInfo
from isthmus.local.apiserver.objects import Objects

log = logging.getLogger(__name__)
JsonObject = dict[str, Any]
EXEC_PROTOCOLS = (
    "v5.channel.k8s.io",
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
)
HOP_HEADERS = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "host",
    "authorization",
    "content-length",
}


class PodProxy:
    def __init__(self, objects: Objects, config: ApiServerConfig) -> None:
        self.objects = objects
        self.config = config

    def install(self, handlers: ApiHandlers) -> None:
        handlers.subresource_handlers[("", "pods", "log")] = self.logs
        handlers.subresource_handlers[("", "pods", "exec")] = self.exec
        handlers.create_on_upgrade.add(("", "pods", "exec"))  # `get pods/exec` alone must not run commands
        handlers.subresource_handlers[("", "pods", "proxy")] = self.pod_proxy
        handlers.subresource_handlers[("", "services", "proxy")] = self.service_proxy

    def _pod(self, info: RequestInfo) -> JsonObject:
        stored = self.objects.store.get(("", "pods"), info.namespace, info.name)
        if stored is None:
            raise not_found("pods", "", info.name)
        return stored.obj

    def _container(self, pod: JsonObject, requested: str) -> str:
        spec = pod.get("spec", {})
        names = [c["name"] for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]]
        if requested:
            if requested not in names:
                raise bad_request(f"container {requested} is not valid for pod {pod['metadata']['name']}")
            return requested
        containers = [str(c["name"]) for c in spec.get("containers") or []]
        if len(containers) == 1:
            return containers[0]
        raise bad_request(
            f"a container name must be specified for pod {pod['metadata']['name']}, choose one "
            f"of: [{' '.join(containers)}]"
        )

    def _kubelet(self, pod: JsonObject) -> aiohttp.UnixConnector:
        node = pod.get("spec", {}).get("nodeName")
        if not node:
            raise bad_request(f"pod {pod['metadata']['name']} does not have a host assigned")
        if node != self.config.node_name or not self.config.kubelet_socket:
            raise StatusError(
                500,
                "InternalError",
                f'Internal error occurred: no node process serves node "{node}" '
                f"of pod {pod['metadata']['name']}",
            )
        return aiohttp.UnixConnector(path=self.config.kubelet_socket)

    async def logs(self, request: web.Request, info: RequestInfo, user: UserInfo) -> web.StreamResponse:
        pod = self._pod(info)
        container = self._container(pod, request.query.get("container", ""))
        connector = self._kubelet(pod)
        query = {k: v for k, v in request.query.items() if k != "container"}
        path = f"http://kubelet/containerLogs/{info.namespace}/{info.name}/{container}"
        async with aiohttp.ClientSession(connector=connector) as session:
            try:
                upstream = await session.get(path, params=query, timeout=aiohttp.ClientTimeout(total=None))
            except aiohttp.ClientError as exc:
                raise StatusError(
                    500,
                    "InternalError",
                    f"Internal error occurred: the node process of pod {info.name} does not answer: {exc}",
                ) from None
            async with upstream:
                if upstream.status != 200:
                    return web.Response(
                        body=await upstream.read(), status=upstream.status, content_type="application/json"
                    )
                response = web.StreamResponse(headers={"Content-Type": "text/plain"})
                await response.prepare(request)
                with contextlib.suppress(ConnectionResetError):
                    async for chunk in upstream.content.iter_any():
                        await response.write(chunk)
                    await response.write_eof()
                return response

    async def exec(self, request: web.Request, info: RequestInfo, user: UserInfo) -> web.StreamResponse:
        pod = self._pod(info)
        container = self._container(pod, request.query.get("container", ""))
        if pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
            raise bad_request(
                f"cannot exec into a container in a completed pod; current phase is {pod['status']['phase']}"
            )
        connector = self._kubelet(pod)
        offered = [
            p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()
        ]
        if request.headers.get("Upgrade", "").lower() != "websocket":
            raise StatusError(
                400,
                "BadRequest",
                "Upgrade request required: this server speaks the WebSocket "
                f"channel protocols {', '.join(EXEC_PROTOCOLS[:2])}",
            )
        path = f"http://kubelet/exec/{info.namespace}/{info.name}/{container}"
        session = aiohttp.ClientSession(connector=connector)
        try:
            upstream = await session.ws_connect(
                path,
                params=list(request.query.items()),
                protocols=offered or EXEC_PROTOCOLS,
                heartbeat=None,
                max_msg_size=0,
            )
        except aiohttp.WSServerHandshakeError as exc:
            await session.close()
            raise StatusError(
                exc.status, "BadRequest", f"the node process refused the exec: {exc.message}"
            ) from None
        except aiohttp.ClientError as exc:
            await session.close()
            raise StatusError(
                500,
                "InternalError",
                f"Internal error occurred: the node process of pod {info.name} does not answer: {exc}",
            ) from None
        client = web.WebSocketResponse(
            protocols=[upstream.protocol] if upstream.protocol else (), max_msg_size=0
        )
        await client.prepare(request)
        await _relay(client, upstream)
        await session.close()
        return client

    async def pod_proxy(self, request: web.Request, info: RequestInfo, user: UserInfo) -> web.StreamResponse:
        name, _, port = info.name.partition(":")
        stored = self.objects.store.get(("", "pods"), info.namespace, name)
        if stored is None:
            raise not_found("pods", "", name)
        ip = stored.obj.get("status", {}).get("podIP")
        if not ip:
            raise StatusError(503, "ServiceUnavailable", f"pod {name} has no IP address yet")
        return await _forward(request, f"http://{ip}:{port or 80}/{info.subpath}")

    async def service_proxy(
        self, request: web.Request, info: RequestInfo, user: UserInfo
    ) -> web.StreamResponse:
        name, _, port = info.name.partition(":")
        stored = self.objects.store.get(("", "services"), info.namespace, name)
        if stored is None:
            raise not_found("services", "", name)
        spec = stored.obj.get("spec", {})
        ports = spec.get("ports") or []
        chosen = next(
            (p for p in ports if not port or p.get("name") == port or str(p.get("port")) == port), None
        )
        if chosen is None:
            raise StatusError(
                503, "ServiceUnavailable", f'no service port "{port}" found for service "{name}"'
            )
        ip = spec.get("clusterIP")
        if not ip or ip == "None":
            raise StatusError(503, "ServiceUnavailable", f'service "{name}" has no cluster IP')
        return await _forward(request, f"http://{ip}:{chosen['port']}/{info.subpath}")


async def _relay(client: web.WebSocketResponse, upstream: aiohttp.ClientWebSocketResponse) -> None:
    async def down() -> None:
        async for message in upstream:
            if message.type == WSMsgType.BINARY:
                await client.send_bytes(message.data)
            elif message.type == WSMsgType.TEXT:
                await client.send_str(message.data)
        await client.close()

    async def up() -> None:
        async for message in client:
            if message.type == WSMsgType.BINARY:
                await upstream.send_bytes(message.data)
            elif message.type == WSMsgType.TEXT:
                await upstream.send_str(message.data)
        await upstream.close()

    tasks = [asyncio.create_task(down()), asyncio.create_task(up())]
    _, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _forward(request: web.Request, url: str) -> web.StreamResponse:
    headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
    body = await request.read()
    async with aiohttp.ClientSession() as session:
        try:
            async with session.request(
                request.method,
                url,
                params=request.query,
                headers=headers,
                data=body,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=30),
            ) as upstream:
                response = web.StreamResponse(status=upstream.status)
                for key, value in upstream.headers.items():
                    if key.lower() not in HOP_HEADERS:
                        response.headers.add(key, value)
                await response.prepare(request)
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
                return response
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise StatusError(503, "ServiceUnavailable", f"error trying to reach {url}: {exc}") from None
