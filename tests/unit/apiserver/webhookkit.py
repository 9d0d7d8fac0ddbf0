"""Helpers for the admission webhook tests: the project's API server in-process on 127.0.0.1 (https, admin
token), real HTTPS webhook servers (aiohttp) with certificates from their own CA, and builders of webhook
configurations and AdmissionReview answers."""

from __future__ import annotations

import asyncio
import base64
import secrets
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from isthmus.local.apiserver.config import ApiServerConfig
from isthmus.local.apiserver.schema import SchemaCatalog
from isthmus.local.apiserver.server import ApiServer
from isthmus.local.cluster import pki

JsonObject = dict[str, Any]
HOST = "127.0.0.1"
CATALOG = SchemaCatalog.load()
ADMREG = "/apis/admissionregistration.k8s.io/v1"
# Answers a webhook gives: the `response` of an AdmissionReview (uid filled in), or a whole body (bytes).
Answer = JsonObject | bytes
Handler = Callable[[JsonObject], Answer | Awaitable[Answer]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


@dataclass(frozen=True)
class Certs:
    """A CA and a serving certificate it signed."""

    ca: Path
    cert: Path
    key: Path

    @classmethod
    def create(cls, folder: Path, dns_names: list[str], ips: list[str]) -> Certs:
        folder.mkdir(parents=True, exist_ok=True)
        ca, ca_key = pki.ensure_ca(folder, f"{folder.name}-ca")
        cert, key = pki.ensure_serving_cert(folder, ca, ca_key, dns_names[0], dns_names, ips)
        return cls(ca, cert, key)

    @property
    def ca_bundle(self) -> str:
        """The CA as a webhook configuration's `caBundle` (base64 of the PEM)."""
        return base64.b64encode(self.ca.read_bytes()).decode()


@dataclass
class Reply:
    status: int
    body: JsonObject
    warnings: list[str]

    @property
    def message(self) -> str:
        return str(self.body.get("message", ""))


class Api:
    """An in-process API server and an admin https client of it."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.certs = Certs.create(folder / "pki", ["localhost"], [HOST])
        token = secrets.token_hex(16)
        (folder / "admin.token").write_text(token + "\n")
        self.config = ApiServerConfig(
            cluster="webhooks",
            state_dir=str(folder),
            listen_host=HOST,
            listen_port=free_port(),
            advertise_host=HOST,
            service_cidr="10.96.0.0/24",
            pod_cidr="10.244.0.0/20",
            admin_token_file=str(folder / "admin.token"),
            cert_file=str(self.certs.cert),
            key_file=str(self.certs.key),
            ca_file=str(self.certs.ca),
            service_account_key_file=str(pki.ensure_service_account_key(folder)),
            namespace_cleanup_delay=0.0,
        )
        self.server = ApiServer(self.config, catalog=CATALOG)
        self.base = f"https://{HOST}:{self.config.listen_port}"
        context = ssl.create_default_context(cafile=str(self.certs.ca))
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=context), headers={"Authorization": f"Bearer {token}"}
        )

    async def start(self) -> None:
        await self.server.start()

    async def stop(self) -> None:
        await self.session.close()
        runner = self.server._runner
        if runner is not None:
            runner._shutdown_timeout = 0.1
        await self.server.stop()

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Reply:
        data = orjson.dumps(body) if body is not None else None
        headers = {"Content-Type": content_type, "Accept": "application/json"}
        async with self.session.request(
            method, self.base + path, data=data, params=params, headers=headers
        ) as response:
            raw = await response.read()
            warnings = [w.split(" ", 2)[2].strip('"') for w in response.headers.getall("Warning", [])]
            return Reply(response.status, orjson.loads(raw) if raw else {}, warnings)

    async def create(self, path: str, body: JsonObject, **params: str) -> Reply:
        return await self.request("POST", path, body, params=params or None)

    async def ok(self, method: str, path: str, body: Any = None, **kwargs: Any) -> JsonObject:
        reply = await self.request(method, path, body, **kwargs)
        assert reply.status < 300, f"{method} {path}: {reply.status} {reply.body}"
        return reply.body

    async def namespace(self, name: str, labels: dict[str, str] | None = None) -> None:
        await self.ok("POST", "/api/v1/namespaces", {"metadata": {"name": name, "labels": labels or {}}})
        for _ in range(200):  # the namespace controller adds the `default` ServiceAccount pods need
            if (
                await self.request("GET", f"/api/v1/namespaces/{name}/serviceaccounts/default")
            ).status == 200:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"namespace {name} got no default ServiceAccount")

    async def configure(self, kind: str, name: str, webhooks: list[JsonObject]) -> JsonObject:
        """Create (or replace) a Mutating/ValidatingWebhookConfiguration."""
        plural = kind.lower() + "s"
        metadata: JsonObject = {"name": name}
        body = {"metadata": metadata, "webhooks": webhooks}
        current = await self.request("GET", f"{ADMREG}/{plural}/{name}")
        if current.status == 200:
            metadata["resourceVersion"] = current.body["metadata"]["resourceVersion"]
            return await self.ok("PUT", f"{ADMREG}/{plural}/{name}", body)
        return await self.ok("POST", f"{ADMREG}/{plural}", body)

    async def unconfigure(self, kind: str, name: str) -> None:
        await self.ok("DELETE", f"{ADMREG}/{kind.lower()}s/{name}")


@dataclass
class Call:
    path: str
    review: JsonObject

    @property
    def request(self) -> JsonObject:
        value: JsonObject = self.review["request"]
        return value


@dataclass
class WebhookServer:
    """An HTTPS webhook server on 127.0.0.1; `routes[path]` answers the reviews posted to `path`."""

    certs: Certs
    port: int = field(default_factory=free_port)
    routes: dict[str, Handler] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    _runner: web.AppRunner | None = None

    def calls_to(self, path: str) -> list[Call]:
        return [c for c in self.calls if c.path == path]

    def url(self, path: str) -> str:
        return f"https://{HOST}:{self.port}{path}"

    async def _handle(self, request: web.Request) -> web.Response:
        review = orjson.loads(await request.read())
        self.calls.append(Call(request.path, review))
        handler = self.routes.get(request.path)
        if handler is None:
            return web.Response(status=404, text="no such webhook")
        answer = handler(review)
        if asyncio.iscoroutine(answer):
            answer = await answer
        if isinstance(answer, bytes):
            return web.Response(body=answer, content_type="application/json")
        assert isinstance(answer, dict)
        body = {
            "apiVersion": review["apiVersion"],
            "kind": "AdmissionReview",
            "response": {"uid": review["request"]["uid"], **answer},
        }
        return web.Response(body=orjson.dumps(body), content_type="application/json")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.certs.cert, self.certs.key)
        await web.TCPSite(self._runner, HOST, self.port, ssl_context=context).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def allow(**fields: Any) -> JsonObject:
    return {"allowed": True, **fields}


def deny(message: str = "", code: int = 403, reason: str = "") -> JsonObject:
    status: JsonObject = {"code": code}
    if message:
        status["message"] = message
    if reason:
        status["reason"] = reason
    return {"allowed": False, "status": status}


def patch(*operations: JsonObject, **fields: Any) -> JsonObject:
    encoded = base64.b64encode(orjson.dumps(list(operations))).decode()
    return {"allowed": True, "patchType": "JSONPatch", "patch": encoded, **fields}


def add_label(key: str, value: str) -> JsonObject:
    return {
        "op": "add",
        "path": "/metadata/labels/" + key.replace("~", "~0").replace("/", "~1"),
        "value": value,
    }


def rule(
    resources: list[str],
    operations: list[str] | None = None,
    groups: list[str] | None = None,
    versions: list[str] | None = None,
    scope: str | None = None,
) -> JsonObject:
    out: JsonObject = {
        "operations": operations or ["CREATE"],
        "apiGroups": groups if groups is not None else [""],
        "apiVersions": versions or ["v1"],
        "resources": resources,
    }
    if scope:
        out["scope"] = scope
    return out


def by_url(server: WebhookServer, path: str, ca: Certs | None = None) -> JsonObject:
    return {"url": server.url(path), "caBundle": (ca or server.certs).ca_bundle}


def by_service(namespace: str, name: str, path: str, ca: Certs, port: int | None = None) -> JsonObject:
    service: JsonObject = {"namespace": namespace, "name": name, "path": path}
    if port is not None:
        service["port"] = port
    return {"service": service, "caBundle": ca.ca_bundle}


def webhook(
    name: str, client: JsonObject, rules: list[JsonObject] | None = None, **fields: Any
) -> JsonObject:
    return {
        "name": name,
        "clientConfig": client,
        "rules": rules if rules is not None else [rule(["pods"])],
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
        **fields,
    }


def pod(name: str, labels: dict[str, str] | None = None) -> JsonObject:
    """A pod bound to a node that does not exist: no controller or kubelet writes it after the test does."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {
            "nodeName": "nowhere",
            "containers": [{"name": "app", "image": "isthmus.dev/host", "command": ["sleep", "60"]}],
        },
    }
