"""Calls to admission webhooks over HTTPS, as kube-apiserver makes them.

A webhook named by `clientConfig.service` is reached through the cluster network: at a ready address of the
Service's Endpoints (the API server process reaches pod IPs, see podproxy), on the target port of the Service
port the configuration names (kube-apiserver's `--enable-aggregator-routing` resolution); one named by
`clientConfig.url` at that URL. Either way the certificate must be signed by `clientConfig.caBundle` (the
system's roots when empty) and carry the server name: `<service>.<namespace>.svc`, or the URL's host.

Failures raise `CallError` with kube-apiserver's wording (`Post "https://svc.ns.svc:443/path?timeout=10s":
dial tcp 10.0.0.5:8443: connect: connection refused`), so the caller can name the webhook and apply its
failurePolicy.
"""

from __future__ import annotations

import asyncio
import os
import random
import ssl
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from isthmus.local.apiserver.store import Store
from isthmus.local.apiserver.webhook_config import ClientConfig

JsonObject = dict[str, Any]
MAX_RESPONSE_BYTES = 3 * 1024 * 1024  # larger answers are refused (a pod is far smaller)
_UNKNOWN_AUTHORITY = {2, 18, 19, 20, 21}  # OpenSSL's X509_V_ERR_* for an issuer that is not trusted


class CallError(Exception):
    """The webhook could not be called or answered nonsense (`ErrCallingWebhook`): failurePolicy decides."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    connect_url: str  # where the request goes (an endpoint's IP for a Service)
    display_url: str  # what errors name (the Service's DNS name, as kube-apiserver prints it)
    server_name: str  # the name the certificate is checked against
    host_header: str


class WebhookClient:
    """One connection pool for every webhook; TLS contexts cached per CA bundle."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._session: aiohttp.ClientSession | None = None
        self._contexts: dict[str, ssl.SSLContext] = {}

    def _context(self, ca_bundle: str) -> ssl.SSLContext:
        context = self._contexts.get(ca_bundle)
        if context is None:
            try:
                context = ssl.create_default_context(cadata=ca_bundle or None)
            except (ssl.SSLError, ValueError) as exc:
                raise CallError(
                    f"could not get REST client: unable to load root certificates: caBundle is not a valid "
                    f"PEM certificate bundle ({exc})"
                ) from None
            context.set_alpn_protocols(["http/1.1"])
            if len(self._contexts) >= 64:
                self._contexts.clear()
            self._contexts[ca_bundle] = context
        return context

    def endpoint(self, client: ClientConfig, timeout: float) -> Endpoint:
        """Where to send the review; a Service without a ready endpoint raises CallError."""
        query = f"?timeout={int(timeout)}s"
        if client.url:
            url = client.url + query
            return Endpoint(url, url, client.server_name, "")
        path = client.service_path or "/"
        host = f"{client.server_name}:{client.service_port}"
        display = f"https://{host}{path}{query}"
        ip, port = self._resolve(client, display)
        address = f"[{ip}]" if ":" in ip else ip
        return Endpoint(f"https://{address}:{port}{path}{query}", display, client.server_name, host)

    def _resolve(self, client: ClientConfig, display: str) -> tuple[str, int]:
        """`ResolveEndpoint` of kube-apiserver: a random ready address of the Service's port."""
        namespace, name = client.service_namespace, client.service_name
        failed = f'failed to call webhook: Post "{display}": '
        service = self.store.get(("", "services"), namespace, name)
        if service is None:
            raise CallError(failed + f'services "{name}" not found')
        spec = service.obj.get("spec") or {}
        kind = spec.get("type") or "ClusterIP"
        if kind not in ("ClusterIP", "NodePort", "LoadBalancer"):
            raise CallError(failed + f'unsupported service type "{kind}"')
        port = next((p for p in spec.get("ports") or [] if p.get("port") == client.service_port), None)
        if port is None:
            raise CallError(failed + f'no service port {client.service_port} found for service "{name}"')
        endpoints = self.store.get(("", "endpoints"), namespace, name)
        for subset in (endpoints.obj.get("subsets") or []) if endpoints else []:
            addresses = subset.get("addresses") or []
            if not addresses:
                continue
            for subset_port in subset.get("ports") or []:
                if (subset_port.get("name") or "") == (port.get("name") or ""):
                    return str(random.choice(addresses)["ip"]), int(subset_port["port"])
        raise CallError(failed + f'no endpoints available for service "{name}"')

    async def post(self, client: ClientConfig, timeout: float, body: bytes) -> JsonObject:
        """POST an AdmissionReview and return the decoded answer."""
        endpoint = self.endpoint(client, timeout)
        context = self._context(client.ca_bundle)
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, enable_cleanup_closed=True),
                skip_auto_headers=("User-Agent",),
            )
        headers = {"Content-Type": "application/json", "Accept": "application/json, */*"}
        if endpoint.host_header:
            headers["Host"] = endpoint.host_header
        failed = f'failed to call webhook: Post "{endpoint.display_url}": '
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        for attempt in (1, 2):
            try:
                async with asyncio.timeout_at(deadline):
                    async with self._session.post(
                        endpoint.connect_url,
                        data=body,
                        headers=headers,
                        ssl=context,
                        server_hostname=endpoint.server_name,
                        allow_redirects=False,
                    ) as response:
                        data = await response.content.read(MAX_RESPONSE_BYTES + 1)
                        status = response.status
                break
            except aiohttp.ServerDisconnectedError:
                if attempt == 2:  # the first may have met a kept-alive connection the server had just closed
                    raise CallError(failed + "EOF") from None
            except TimeoutError:
                raise CallError(failed + "context deadline exceeded") from None
            except aiohttp.ClientConnectorCertificateError as exc:
                raise CallError(failed + _certificate_error(exc.certificate_error)) from None
            except aiohttp.ClientConnectorSSLError as exc:
                raise CallError(failed + f"tls: {exc.os_error}") from None
            except aiohttp.ClientConnectorError as exc:
                raise CallError(failed + _dial_error(exc)) from None
            except aiohttp.ClientOSError as exc:
                reason = os.strerror(exc.errno).lower() if exc.errno else "EOF"
                raise CallError(failed + reason) from None
            except aiohttp.ClientError as exc:
                raise CallError(failed + (str(exc) or type(exc).__name__)) from None
        if len(data) > MAX_RESPONSE_BYTES:
            raise CallError(f"failed to call webhook: the response is larger than {MAX_RESPONSE_BYTES} bytes")
        if not 200 <= status < 300:
            raise CallError("failed to call webhook: " + _status_error(status, data))
        try:
            decoded = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise CallError(f"failed to call webhook: the response is not JSON: {exc}") from None
        if not isinstance(decoded, dict):
            raise CallError("failed to call webhook: the response is not a JSON object")
        return decoded

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _certificate_error(error: Exception) -> str:
    code = getattr(error, "verify_code", None)
    message = str(getattr(error, "verify_message", "") or error)
    if code in _UNKNOWN_AUTHORITY:
        detail = f"certificate signed by unknown authority ({message})"
    elif code == 10:
        detail = "certificate has expired or is not yet valid"
    elif code == 62:
        detail = f"certificate is not valid for the webhook's server name ({message})"
    else:
        detail = message
    return f"tls: failed to verify certificate: x509: {detail}"


def _dial_error(exc: aiohttp.ClientConnectorError) -> str:
    os_error = exc.os_error
    reason = os.strerror(os_error.errno).lower() if os_error.errno else str(os_error)
    return f"dial tcp {exc.host}:{exc.port}: connect: {reason}"


def _status_error(status: int, data: bytes) -> str:
    """What client-go says about a non-2xx answer: the Status's message when it is one."""
    try:
        decoded = orjson.loads(data)
    except orjson.JSONDecodeError:
        decoded = None
    if isinstance(decoded, dict) and decoded.get("kind") == "Status" and decoded.get("message"):
        return str(decoded["message"])
    if not data.strip():
        return f"the server responded with the status code {status} but did not return more information"
    text = data[:256].decode(errors="replace").strip()
    return f'an error on the server ("{text}") has prevented the request from succeeding'
