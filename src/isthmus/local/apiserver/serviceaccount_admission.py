"""The ServiceAccount admission plugin, as kube-apiserver's: a new pod must name an existing ServiceAccount
(`default` unless set), and unless automounting is switched off it gets the `kube-api-access-*` projected
volume (a bound token refreshed by the kubelet, the cluster CA and the namespace) mounted at
/var/run/secrets/kubernetes.io/serviceaccount in every container: what in-cluster clients read."""

from __future__ import annotations

import secrets
from typing import Any

from isthmus.local.apiserver.admission import AdmissionRequest
from isthmus.local.apiserver.errors import StatusError
from isthmus.local.apiserver.store import Store

JsonObject = dict[str, Any]
MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
TOKEN_SECONDS = 3607  # as kube-apiserver asks: an hour, plus a little to spot clients that do not refresh


def api_access_volume(name: str) -> JsonObject:
    return {
        "name": name,
        "projected": {
            "defaultMode": 420,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": TOKEN_SECONDS, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {
                    "downwardAPI": {
                        "items": [
                            {
                                "path": "namespace",
                                "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                            }
                        ]
                    }
                },
            ],
        },
    }


class ServiceAccountAdmission:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def mutate(self, request: AdmissionRequest) -> list[str]:
        if request.operation != "CREATE" or request.rt.key != ("", "pods") or request.subresource:
            return []
        pod = request.obj
        assert pod is not None
        spec = pod.setdefault("spec", {})
        account_name = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
        spec["serviceAccountName"] = spec["serviceAccount"] = account_name
        account = self.store.get(("", "serviceaccounts"), request.namespace, account_name)
        if account is None:
            raise StatusError(
                403,
                "Forbidden",
                f'pods "{request.name}" is forbidden: error looking up service account '
                f'{request.namespace}/{account_name}: serviceaccount "{account_name}" not found',
                name=request.name,
                kind="pods",
            )
        automount = spec.get("automountServiceAccountToken")
        if automount is None:
            automount = account.obj.get("automountServiceAccountToken", True)
        if not automount:
            return []
        containers = [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
        if all(
            any(m.get("mountPath") == MOUNT_PATH for m in c.get("volumeMounts") or []) for c in containers
        ):
            return []
        # A second admission round (after webhooks added containers) mounts the volume the first one added.
        volume_name = next(
            (
                v["name"]
                for v in spec.get("volumes") or []
                if str(v.get("name", "")).startswith("kube-api-access-")
            ),
            "",
        )
        if not volume_name:
            volume_name = "kube-api-access-" + "".join(
                secrets.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(5)
            )
            spec.setdefault("volumes", []).append(api_access_volume(volume_name))
        for container in containers:
            mounts = container.setdefault("volumeMounts", [])
            if not any(m.get("mountPath") == MOUNT_PATH for m in mounts):
                mounts.append({"name": volume_name, "mountPath": MOUNT_PATH, "readOnly": True})
        return []

    async def validate(self, request: AdmissionRequest) -> list[str]:
        return []
