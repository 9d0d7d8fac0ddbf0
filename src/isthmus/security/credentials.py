"""gRPC server credentials whose certificate (and trusted roots) can be replaced while the server runs.

Contract: `update` may be called from the event loop at any time; gRPC's handshake threads read the newest
pair through `_fetch` (new connections get it, open ones keep theirs). Thread-safe.
"""

from __future__ import annotations

import threading
from typing import Any

import grpc


class RotatingServerCredentials:
    def __init__(
        self, key_pem: bytes, chain_pem: bytes, roots_pem: bytes | None, *, require_client_auth: bool
    ) -> None:
        self._lock = threading.Lock()
        self._current = (key_pem, chain_pem, roots_pem)
        self._served: tuple[bytes, bytes, bytes | None] | None = None
        self.require_client_auth = require_client_auth

    def update(self, key_pem: bytes, chain_pem: bytes, roots_pem: bytes | None) -> None:
        with self._lock:
            self._current = (key_pem, chain_pem, roots_pem)

    def _configuration(self) -> Any:
        with self._lock:
            self._served = self._current
            key, chain, roots = self._current
        return grpc.ssl_server_certificate_configuration([(key, chain)], root_certificates=roots)

    def _fetch(self) -> Any:
        with self._lock:
            if self._served == self._current:
                return None
        return self._configuration()

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(
            self._configuration(), self._fetch, require_client_authentication=self.require_client_auth
        )
