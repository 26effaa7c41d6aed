"""The daemon's HTTP endpoints: /healthz, /readyz, /metrics, and an optional git push webhook.

The webhook only wakes the loop (the loop then asks git for the head itself),
so a forged request can at worst cause one extra cheap poll; it is still
refused without a valid HMAC-SHA256 signature.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BODY = 1 << 20


@dataclass
class Endpoints:
    healthy: Callable[[], bool]
    ready: Callable[[], bool]
    metrics: Callable[[], bytes]
    wake: threading.Event
    webhook_secret: bytes | None = None


def parse_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host or "0.0.0.0", int(port)  # noqa: S104 - a Pod listens on all its addresses


def serve(listen: str, endpoints: Endpoints) -> ThreadingHTTPServer:
    """Start serving in a daemon thread; the caller stops it with `shutdown()`."""

    handler = type("Handler", (_Handler,), {"endpoints": endpoints})
    server = ThreadingHTTPServer(parse_listen(listen), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return server


def signature_ok(secret: bytes, body: bytes, header: str | None) -> bool:
    if not header or not header.startswith("sha256="):
        return False
    expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header)


class _Handler(BaseHTTPRequestHandler):
    endpoints: Endpoints
    server_version = "reconciler"

    def do_GET(self) -> None:
        if self.path == "/healthz":
            self._probe(self.endpoints.healthy())
        elif self.path == "/readyz":
            self._probe(self.endpoints.ready())
        elif self.path == "/metrics":
            self._send(200, self.endpoints.metrics(), "text/plain; version=0.0.4; charset=utf-8")
        else:
            self._send(404, b"not found\n")

    def do_POST(self) -> None:
        if self.path != "/hooks/git" or self.endpoints.webhook_secret is None:
            self._send(404, b"not found\n")
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._send(413, b"too large\n")
            return
        body = self.rfile.read(length)
        if not signature_ok(
            self.endpoints.webhook_secret, body, self.headers.get("X-Hub-Signature-256")
        ):
            self._send(401, b"bad or missing X-Hub-Signature-256\n")
            return
        self.endpoints.wake.set()
        self._send(202, b"poll scheduled\n")

    def _probe(self, ok: bool) -> None:
        self._send(200 if ok else 503, b"ok\n" if ok else b"not ready\n")

    def _send(
        self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8"
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return  # probes every few seconds would drown the useful lines
