"""The HTTP side of `mirror webhook`: health probes, and signed POSTs handed to Deliveries.

The transport and its limits are in reconciler.httpserve. Deliveries run on one worker
thread, one at a time (each may clone, commit and push), off the event loop, so probes
and refusals are answered while a push is under way.
"""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from typing import Any

from aiohttp import web

from reconciler import httpserve, log
from reconciler.mirror.webhook import Deliveries


def serve_webhook(
    host: str, port: int, secret: bytes, deliveries: Deliveries, limits: httpserve.Limits
) -> httpserve.Server:
    """Start serving on a thread of its own; stop with `shutdown()`. Raises UsageError
    when the address cannot be bound."""

    worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="delivery")
    server: httpserve.Server

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        return await answer(server, secret, deliveries, worker, request)

    server = httpserve.serve(host, port, handle, limits)
    return server


async def answer(
    server: httpserve.Server,
    secret: bytes,
    deliveries: Deliveries,
    worker: ThreadPoolExecutor,
    request: web.BaseRequest,
) -> web.StreamResponse:
    """The answer to one request; every outcome is a response, never an exception."""

    if request.method in ("GET", "HEAD"):
        if request.path in ("/healthz", "/readyz"):
            return _json(HTTPStatus.OK, {"status": "ok"})
        return _json(HTTPStatus.NOT_FOUND, {"error": "POST GitHub deployment events here"})
    if request.method != "POST":
        return _json(HTTPStatus.METHOD_NOT_ALLOWED, {"error": "POST GitHub deployment events here"})
    delivery = request.headers.get("X-GitHub-Delivery", "")
    try:
        body = await server.read_signed(request, secret, keep=True)
    except httpserve.Refused as refused:
        log.debug("webhook: refused", status=refused.status, reason=refused.reason)
        return _json(HTTPStatus(refused.status), {"error": refused.reason})
    with server.answering(request):
        loop = asyncio.get_running_loop()
        status, document = await loop.run_in_executor(
            worker, deliveries.handle, request.headers, body
        )
    log.info("webhook: answered", status=int(status), delivery=delivery)
    return _json(status, document)


def _json(status: HTTPStatus, document: dict[str, Any]) -> web.Response:
    response = web.Response(
        status=status, body=json.dumps(document).encode() + b"\n", content_type="application/json"
    )
    if status >= 400 and status != HTTPStatus.UNPROCESSABLE_ENTITY:
        response.force_close()
    return response
