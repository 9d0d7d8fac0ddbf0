"""Admission: the plug-in point between decoding a write and storing it (webhooks, defaulting controllers).

Contract: plug-ins run on the server's event loop, mutating ones first, in registration order. `mutate` may
change `request.obj` (a private copy) and returns warnings; `validate` must not change anything and raises a
StatusError to refuse the write. Both may await (webhooks call out), so the object they see may be stale by
the time it is stored: storage re-checks preconditions afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from isthmus.local.apiserver.auth import UserInfo
from isthmus.local.apiserver.resources import ResourceType

JsonObject = dict[str, Any]


@dataclass
class AdmissionRequest:
    operation: str  # CREATE, UPDATE, DELETE, CONNECT
    rt: ResourceType
    version: str
    subresource: str
    namespace: str
    name: str
    obj: JsonObject | None
    old: JsonObject | None
    user: UserInfo
    dry_run: bool


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
        for plugin in self.plugins:
            warnings += await plugin.validate(request)
        return warnings
