"""Istio's helloworld sample: `GET /hello` answers `Hello version: vN, instance: <pod name>` on port 5000."""

from __future__ import annotations

import argparse
import os
import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--version", default=os.environ.get("SERVICE_VERSION", "v1"))
    parser.add_argument("--port", type=int, default=5000)
    options = parser.parse_args()
    answer = f"Hello version: {options.version}, instance: {socket.gethostname()}\n".encode()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] == "/hello":
                body, status = answer, 200
            elif self.path == "/health":
                body, status = b'{"status": "UP"}\n', 200
            else:
                body, status = b"Not Found\n", 404
            self.send_response(status)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            print(f"{self.client_address[0]} - {format % args}", flush=True)

    ThreadingHTTPServer.address_family = socket.AF_INET
    ThreadingHTTPServer.daemon_threads = True
    server = ThreadingHTTPServer(("0.0.0.0", options.port), Handler)
    print(f"helloworld {options.version} listening on {options.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
