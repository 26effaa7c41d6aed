"""The daemon's HTTP endpoints: /healthz, /readyz, /metrics, and an optional git push webhook.

The webhook only wakes the loop (the loop then asks git for the head itself),
so a forged request can at worst cause one extra cheap poll; it is still
refused without a valid HMAC-SHA256 signature. The transport and its limits
are in reconciler.httpserve; this module only decides the answers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from reconciler import httpserve

MAX_BODY = 1 << 20
PLAIN = "text/plain"


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


def serve(
    listen: str, endpoints: Endpoints, limits: httpserve.Limits | None = None
) -> httpserve.Server:
    """Start serving on a thread of its own; the caller stops it with `shutdown()`.

    Raises UsageError when `listen` cannot be bound.
    """

    server: httpserve.Server

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        return await answer(server, endpoints, request)

    host, port = parse_listen(listen)
    server = httpserve.serve(host, port, handle, limits or httpserve.Limits(max_body=MAX_BODY))
    return server


async def answer(
    server: httpserve.Server, endpoints: Endpoints, request: web.BaseRequest
) -> web.StreamResponse:
    """The answer to one request; every outcome is a response, never an exception."""

    if request.method in ("GET", "HEAD"):
        with server.answering(request):
            return _get(endpoints, request.path)
    if request.method == "POST" and request.path == "/hooks/git" and endpoints.webhook_secret:
        try:
            await server.read_signed(request, endpoints.webhook_secret, keep=False)
        except httpserve.Refused as refused:
            return _text(refused.status, refused.reason + "\n", close=True)
        endpoints.wake.set()
        return _text(202, "poll scheduled\n")
    return _text(404, "not found\n")


def _get(endpoints: Endpoints, path: str) -> web.Response:
    if path == "/healthz":
        ok = endpoints.healthy()
    elif path == "/readyz":
        ok = endpoints.ready()
    elif path == "/metrics":
        return web.Response(
            body=endpoints.metrics(),
            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
        )
    else:
        return _text(404, "not found\n")
    return _text(200, "ok\n") if ok else _text(503, "not ready\n")


def _text(status: int, text: str, *, close: bool = False) -> web.Response:
    response = web.Response(status=status, text=text, content_type=PLAIN, charset="utf-8")
    if close:
        response.force_close()
    return response
