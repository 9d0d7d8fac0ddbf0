"""Admission: the plug-in point between decoding a write and storing it (webhooks, defaulting controllers).

Contract: plug-ins run on the server's event loop, mutating ones first, in registration order. `mutate` may
change `request.obj` (a private copy) in place: the object and its `metadata` dict keep their identity, since
the caller holds both. It returns warnings. A plug-in whose change should be seen by the plug-ins before it
sets `request.reinvoke`; the chain then runs every `mutate` once more with `request.reinvoking` set (as
Kubernetes reinvokes its admission chain), so `mutate` must be idempotent. `validate` must not change anything
and raises a StatusError to refuse the write. Both may await (webhooks call out), so the object they see may
be stale by the time it is stored: storage re-checks preconditions afterwards.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from isthmus.local.apiserver.auth import UserInfo
from isthmus.local.apiserver.resources import ResourceType

JsonObject = dict[str, Any]

# Subresources reached with CONNECT (streams and proxies) and the kind of the options object they admit.
CONNECT_KINDS: dict[tuple[str, str], str] = {
    ("pods", "exec"): "PodExecOptions",
    ("pods", "attach"): "PodAttachOptions",
    ("pods", "portforward"): "PodPortForwardOptions",
    ("pods", "proxy"): "PodProxyOptions",
    ("services", "proxy"): "ServiceProxyOptions",
    ("nodes", "proxy"): "NodeProxyOptions",
}


@dataclass
class AdmissionRequest:
    operation: str  # CREATE, UPDATE, DELETE, CONNECT
    rt: ResourceType
    version: str
    subresource: str
    namespace: str
    name: str
    obj: JsonObject | None  # for CONNECT: the options object (PodExecOptions...)
    old: JsonObject | None
    user: UserInfo
    dry_run: bool
    options: JsonObject | None = None  # DeleteOptions of a DELETE
    reinvoking: bool = False  # set by the chain for the second round of `mutate`
    reinvoke: bool = False  # set by a mutating plug-in that asks for that second round
    state: dict[str, Any] = field(default_factory=dict)  # what plug-ins keep between rounds, by plug-in


class AdmissionPlugin(Protocol):
    async def mutate(self, request: AdmissionRequest) -> list[str]: ...

    async def validate(self, request: AdmissionRequest) -> list[str]: ...


class AdmissionChain:
    def __init__(self) -> None:
        self.plugins: list[AdmissionPlugin] = []

    async def run(self, request: AdmissionRequest) -> list[str]:
        warnings: list[str] = []
        for plugin in self.plugins:
            warnings += await plugin.mutate(request)
        if request.reinvoke:
            request.reinvoking = True
            for plugin in self.plugins:
                warnings += await plugin.mutate(request)
        for plugin in self.plugins:
            warnings += await plugin.validate(request)
        return list(dict.fromkeys(warnings)) if len(warnings) > 1 else warnings


def connect_options(plural: str, subresource: str, query: Iterable[tuple[str, str]]) -> JsonObject:
    """The options object a CONNECT request admits, built from its query parameters as kube-apiserver does."""
    params: dict[str, list[str]] = {}
    for key, value in query:
        params.setdefault(key, []).append(value)

    def first(key: str) -> str:
        return params.get(key, [""])[0]

    options: JsonObject = {"kind": CONNECT_KINDS[(plural, subresource)], "apiVersion": "v1"}
    if subresource in ("exec", "attach"):
        for flag in ("stdin", "stdout", "stderr", "tty"):
            if first(flag) in ("1", "t", "T", "true", "TRUE", "True"):
                options[flag] = True
        if first("container"):
            options["container"] = first("container")
        if subresource == "exec":
            options["command"] = params.get("command", [])
    elif subresource == "portforward":
        ports = [int(p) for value in params.get("ports", []) for p in value.split(",") if p.strip().isdigit()]
        if ports:
            options["ports"] = ports
    elif first("path"):
        options["path"] = first("path")
    return options
