"""Pod volumes on the node's disk: emptyDir, secret, configMap, downwardAPI, projected (incl. service-account
tokens) and hostPath, written as kubelet writes them so running programs see updates atomically.

Files of secret, configMap, downwardAPI and projected volumes live in a timestamped folder; `..data` points at
the current one and each key is a symlink through `..data/`. An update writes a new folder and swaps `..data`
with one rename, so a reader never sees half of an update.
"""

from __future__ import annotations

import base64
import shutil
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

JsonObject = dict[str, Any]

# A way to read an object from the API: (kind, namespace, name) -> object or None.
Fetch = Callable[[str, str, str], Awaitable[JsonObject | None]]
# A way to get a service-account token: (namespace, service account, audience, seconds, pod) -> (token, expiry).
RequestToken = Callable[[str, str, str, int, JsonObject], Awaitable[tuple[str, float]]]


class VolumeError(RuntimeError):
    """A volume cannot be set up yet (missing Secret/ConfigMap key...); the message is the pod's event."""


def write_atomically(folder: Path, files: Mapping[str, tuple[bytes, int]]) -> bool:
    """Make `folder` hold exactly `files` (relative path -> content, mode); False when nothing changed."""
    folder.mkdir(parents=True, exist_ok=True)
    current = folder / "..data"
    if current.exists():
        same = True
        for rel, (content, mode) in files.items():
            path = current / rel
            if not path.is_file() or path.read_bytes() != content or (path.stat().st_mode & 0o777) != mode:
                same = False
                break
        if same:
            existing = {str(p.relative_to(current)) for p in current.rglob("*") if p.is_file()}
            if existing == set(files):
                return False
    stamp = folder / f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{time.monotonic_ns() % 10**9}"
    stamp.mkdir()
    for rel, (content, mode) in files.items():
        path = stamp / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        path.chmod(mode)
    link = folder / "..data_tmp"
    if link.is_symlink():
        link.unlink()
    link.symlink_to(stamp.name)
    old = str(current.readlink()) if current.is_symlink() else None
    link.replace(current)
    tops = {rel.split("/", 1)[0] for rel in files}
    for entry in folder.iterdir():
        if entry.name.startswith(".."):
            continue
        if entry.name not in tops:
            entry.unlink() if entry.is_symlink() or entry.is_file() else shutil.rmtree(entry)
    for top in tops:
        target = folder / top
        if not target.is_symlink():
            target.symlink_to(f"..data/{top}")
    if old and old != stamp.name:
        shutil.rmtree(folder / old, ignore_errors=True)
    return True


def _mode(value: Any, default: int) -> int:
    return int(value) & 0o777 if isinstance(value, int) else default


def _key_files(
    data: Mapping[str, bytes], items: list[JsonObject] | None, mode: int, what: str, optional: bool
) -> dict[str, tuple[bytes, int]]:
    if not items:
        return {key: (value, mode) for key, value in data.items()}
    files = {}
    for item in items:
        key = item.get("key", "")
        if key not in data:
            if optional:
                continue
            raise VolumeError(f'{what} has no key "{key}"')
        files[item.get("path") or key] = (data[key], _mode(item.get("mode"), mode))
    return files


def _decoded(obj: JsonObject, kind: str) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    if kind == "Secret":
        for key, value in (obj.get("data") or {}).items():
            out[key] = base64.b64decode(value or "")
    else:
        for key, value in (obj.get("data") or {}).items():
            out[key] = str(value).encode()
        for key, value in (obj.get("binaryData") or {}).items():
            out[key] = base64.b64decode(value or "")
    return out


def field_value(pod: JsonObject, path: str) -> str:
    """A downward-API `fieldRef.fieldPath` of the pod: name, namespace, uid, labels, annotations, IPs..."""
    meta = pod.get("metadata", {})
    spec, status = pod.get("spec", {}), pod.get("status", {})
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.hostIP": status.get("hostIP", ""),
        "status.podIP": status.get("podIP", ""),
        "status.podIPs": ",".join(p.get("ip", "") for p in status.get("podIPs") or []),
        "status.hostIPs": ",".join(p.get("ip", "") for p in status.get("hostIPs") or []),
    }
    if path in simple:
        return str(simple[path])
    for field, source in (
        ("metadata.labels", meta.get("labels") or {}),
        ("metadata.annotations", meta.get("annotations") or {}),
    ):
        if path == field:
            return "\n".join(f'{k}="{v}"' for k, v in sorted(source.items()))
        if path.startswith(field + "['") and path.endswith("']"):
            return str(source.get(path[len(field) + 2 : -2], ""))
    raise VolumeError(f"unsupported fieldPath {path!r}")


@dataclass
class TokenFile:
    """A projected service-account token the node keeps fresh."""

    expires: float
    issued: float


class PodVolumes:
    """The volumes of one pod, in `root/<volume name>`."""

    def __init__(self, root: Path, pod: JsonObject, fetch: Fetch, request_token: RequestToken) -> None:
        self.root = root
        self.pod = pod
        self.fetch = fetch
        self.request_token = request_token
        self.tokens: dict[tuple[str, str], TokenFile] = {}  # (volume, path) -> when to refresh
        self.references: set[tuple[str, str]] = set()  # (kind, name) of Secrets/ConfigMaps read

    def path(self, volume: str) -> Path:
        return self.root / volume

    def host_path(self, volume: JsonObject) -> str | None:
        source = volume.get("hostPath")
        return str(source.get("path")) if isinstance(source, dict) else None

    async def sync(self) -> None:
        """Write every volume as its sources say now (first time, on a source's change, and for token refresh)."""
        namespace = self.pod["metadata"]["namespace"]
        for volume in self.pod.get("spec", {}).get("volumes") or []:
            name = volume["name"]
            target = self.path(name)
            if "emptyDir" in volume:
                target.mkdir(parents=True, exist_ok=True)
                target.chmod(0o777)
            elif "hostPath" in volume:
                continue
            elif "secret" in volume or "configMap" in volume:
                kind = "Secret" if "secret" in volume else "ConfigMap"
                source = volume["secret" if kind == "Secret" else "configMap"]
                object_name = source.get("secretName") if kind == "Secret" else source.get("name")
                files = await self._object_files(
                    kind,
                    namespace,
                    str(object_name),
                    source.get("items"),
                    _mode(source.get("defaultMode"), 0o644),
                    bool(source.get("optional")),
                )
                write_atomically(target, files)
            elif "downwardAPI" in volume:
                source = volume["downwardAPI"]
                write_atomically(
                    target, self._downward(source.get("items") or [], _mode(source.get("defaultMode"), 0o644))
                )
            elif "projected" in volume:
                write_atomically(target, await self._projected(name, volume["projected"]))
            else:
                raise VolumeError(
                    f'volume "{name}" uses a type the local cluster does not support: '
                    f"{sorted(k for k in volume if k != 'name')}"
                )

    async def _object_files(
        self, kind: str, namespace: str, name: str, items: list[JsonObject] | None, mode: int, optional: bool
    ) -> dict[str, tuple[bytes, int]]:
        self.references.add((kind, name))
        obj = await self.fetch(kind, namespace, name)
        if obj is None:
            if optional:
                return {}
            raise VolumeError(f'{kind.lower()} "{name}" not found')
        return _key_files(_decoded(obj, kind), items, mode, f'{kind.lower()} "{name}"', optional)

    def _downward(self, items: list[JsonObject], mode: int) -> dict[str, tuple[bytes, int]]:
        files = {}
        for item in items:
            # resourceFieldRef gives 0: the local cluster sets no limits.
            value = (
                field_value(self.pod, item["fieldRef"].get("fieldPath", "")) if "fieldRef" in item else "0"
            )
            files[item["path"]] = (value.encode(), _mode(item.get("mode"), mode))
        return files

    async def _projected(self, volume: str, source: JsonObject) -> dict[str, tuple[bytes, int]]:
        namespace = self.pod["metadata"]["namespace"]
        mode = _mode(source.get("defaultMode"), 0o644)
        files: dict[str, tuple[bytes, int]] = {}
        for part in source.get("sources") or []:
            if "secret" in part or "configMap" in part:
                kind = "Secret" if "secret" in part else "ConfigMap"
                spec = part["secret" if kind == "Secret" else "configMap"]
                files.update(
                    await self._object_files(
                        kind,
                        namespace,
                        str(spec.get("name")),
                        spec.get("items"),
                        mode,
                        bool(spec.get("optional")),
                    )
                )
            elif "downwardAPI" in part:
                files.update(self._downward(part["downwardAPI"].get("items") or [], mode))
            elif "serviceAccountToken" in part:
                spec = part["serviceAccountToken"]
                path = spec.get("path", "token")
                seconds = int(spec.get("expirationSeconds") or 3607)
                account = self.pod.get("spec", {}).get("serviceAccountName") or "default"
                token, expires = await self.request_token(
                    namespace, account, spec.get("audience") or "", seconds, self.pod
                )
                self.tokens[(volume, path)] = TokenFile(expires, time.time())
                files[path] = (token.encode(), mode)
        return files

    def token_refresh_due(self) -> bool:
        """Kubelet refreshes a projected token once 80% of its life has passed (or after 24 hours)."""
        now = time.time()
        return any(now >= t.issued + min(0.8 * (t.expires - t.issued), 86400) for t in self.tokens.values())

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
