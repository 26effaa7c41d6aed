"""The HTTP transport of the daemon's endpoints and of `mirror webhook`: aiohttp's server
(llhttp parser, asyncio) on its own event loop thread, with limits against hostile clients.

What it guarantees, whatever a client sends:
- request line and headers: at most MAX_LINE bytes a line, MAX_FIELD a header and
  MAX_HEADERS headers (so at most about 140 KiB parsed per request); anything malformed
  (a negative or non-digit Content-Length, a bad header line, both Content-Length and
  chunked) is answered 400 by the parser, logged at debug level, never with a traceback;
- `header_timeout`: a connection that has not completed its request headers this many
  seconds after it opened or after its previous response is closed (slow senders, idle
  keep-alive connections);
- `body_timeout`: a body not received whole within this many seconds is answered 408;
- `max_connections` open connections: beyond it, the oldest connections waiting for their
  client (headers or body) are dropped for new ones, so slow or idle clients cannot lock
  out a probe; a connection gets GRACE_SECONDS to send its request before it may be
  dropped (at twice `max_connections`: MIN_AGE_SECONDS, and none if it has sent nothing);
  a new one is refused (503) only when twice `max_connections` are open and all are
  younger, have sent something, or are being answered;
- signed bodies (`read_signed`): the X-Hub-Signature-256 header is checked for form and
  Content-Length against `max_body` before any body byte is read; bodies are hashed as
  they arrive, and kept only when the caller needs them, within `body_budget` bytes
  over all connections, twice its length a body (the oldest body still arriving is
  dropped to make room).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import hmac
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import _ErrInfo

from reconciler.errors import UsageError

MAX_LINE = 4096
MAX_FIELD = 4096
MAX_HEADERS = 32
# After an early answer (401, 413) the rest of a body is read and dropped for this long,
# so the client sees the answer instead of a reset; nothing of it is kept.
LINGER_SECONDS = 2.0
# A new connection gets this long to send its request before it may be dropped for another;
# MIN_AGE_SECONDS when twice max_connections are open.
GRACE_SECONDS = 1.0
MIN_AGE_SECONDS = 0.2
_SIGNATURE = re.compile(r"\s*sha256=[0-9a-f]{64}\s*")
_REFUSED = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
    b"Content-Length: 21\r\nConnection: close\r\n\r\ntoo many connections\n"
)

Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Limits:
    """Limits of one server; sizes in bytes, times in seconds (module docstring: what each
    does). `body_budget` bounds the bodies kept in memory at once, over all connections."""

    max_body: int
    max_connections: int = 64
    header_timeout: float = 10.0
    body_timeout: float = 10.0
    body_budget: int = 16 << 20


class Refused(Exception):
    """A request answered early with `status`; `reason` is safe to send back."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class _Pool:
    """Open connections, oldest first; which are being answered; bytes kept for bodies."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.open: OrderedDict[asyncio.BaseTransport, float] = OrderedDict()
        self.answering: set[asyncio.BaseTransport] = set()
        self.heard: set[asyncio.BaseTransport] = set()  # sent at least one byte
        self.kept: OrderedDict[asyncio.BaseTransport, int] = OrderedDict()

    def admit(self, transport: asyncio.BaseTransport) -> bool:
        """Take a new connection (False: refuse it), first dropping the oldest connections
        waiting for their client: while `max_connections` are open, those older than
        GRACE_SECONDS; while twice that many are, also those older than MIN_AGE_SECONDS
        and those that have sent nothing yet, whatever their age.

        A connection that sends its request at once (a probe) is answered before it is
        that old, so in a storm of new, idle or slow connections it still gets through.
        """
        cap = self.limits.max_connections
        now = time.monotonic()
        for victim, opened in list(self.open.items()):  # oldest first
            count = len(self.open)
            if count < cap:
                break
            if victim in self.answering:
                continue
            age = now - opened
            full = count >= 2 * cap
            if age >= GRACE_SECONDS or (
                full and (age >= MIN_AGE_SECONDS or victim not in self.heard)
            ):
                self.drop(victim)
        if len(self.open) >= 2 * cap:
            return False
        self.open[transport] = now
        return True

    def drop(self, transport: asyncio.BaseTransport) -> None:
        self.release(transport)
        self.kept.pop(transport, None)
        transport.abort()  # type: ignore[attr-defined]

    def release(self, transport: asyncio.BaseTransport) -> None:
        self.open.pop(transport, None)
        self.answering.discard(transport)
        self.heard.discard(transport)

    def reserve(self, transport: asyncio.BaseTransport, size: int) -> None:
        """Count `size` bytes kept for this connection's body, dropping the oldest bodies
        still arriving to stay within the budget; Refused (503) if it cannot fit at all."""
        # Room for one body of max_body whatever the budget, so a raised limit still works.
        budget = max(self.limits.body_budget, 2 * self.limits.max_body)
        while sum(self.kept.values()) + size > budget:
            victim = next((t for t in self.kept if t is not transport), None)
            if victim is None:
                raise Refused(503, "too many bodies arriving at once; retry later")
            self.drop(victim)
        self.kept[transport] = size

    @contextmanager
    def answer(self, transport: asyncio.BaseTransport | None) -> Iterator[None]:
        """While the body is in hand and the answer is being made: never dropped."""
        if transport is None:
            yield
            return
        self.answering.add(transport)
        try:
            yield
        finally:
            self.answering.discard(transport)


class _Connection(asyncio.Protocol):
    """Admits a connection into the pool, then hands every event to aiohttp's protocol."""

    def __init__(self, inner: asyncio.Protocol, pool: _Pool) -> None:
        self.inner = inner
        self.pool = pool
        self.admitted = False
        self.refused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.admitted = self.pool.admit(transport)
        if not self.admitted:
            transport.write(_REFUSED)  # type: ignore[attr-defined]
            transport.close()
            return
        self.transport = transport
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.admitted and not self.refused:
            self.pool.heard.add(self.transport)
            self.inner.data_received(data)
            self.refused = _refused(self.inner)
            if self.refused:
                self.transport.pause_reading()  # type: ignore[attr-defined]

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.admitted else None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.admitted:
            self.pool.release(self.transport)
            self.pool.kept.pop(self.transport, None)
            self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.admitted:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.admitted:
            self.inner.resume_writing()


def _refused(protocol: asyncio.Protocol) -> bool:
    """Whether aiohttp's parser refused what the connection sent (it will answer 400, close).

    Until it closes, aiohttp would parse every further chunk again, and queue one error
    a chunk, each error holding that chunk (up to 256 KiB): read nothing more.
    """
    queued = getattr(protocol, "_messages", ())
    return any(isinstance(message, _ErrInfo) for message, _ in queued)


class _Quiet(logging.Filter):
    """aiohttp logs a request its parser refused with the traceback: keep one line, at debug
    level, and drop the traceback. Its frames hold the last chunk read (up to 256 KiB) in a
    reference cycle that only the cyclic GC would free: a client that streams after a
    malformed header would otherwise pile up memory a chunk per request. Anything else (a
    fault in a handler) stays an error with its traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError):
            error.__traceback__ = None
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            record.fields = {"error": f"{type(error).__name__}: {error.message}"}
        return logging.getLogger("reconciler").isEnabledFor(record.levelno)


def _logger() -> logging.Logger:
    logger = logging.getLogger("reconciler.http")
    if not logger.filters:
        # Every record reaches the filter (which frees its traceback); it decides what is shown.
        logger.setLevel(logging.DEBUG)
        logger.addFilter(_Quiet())
    return logger


class Server:
    """A server running on its own event loop thread. `address` is the bound (host, port)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, pool: _Pool, limits: Limits) -> None:
        self.loop = loop
        self.pool = pool
        self.limits = limits
        self.address: tuple[str, int] = ("", 0)
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None

    def answering(self, request: web.BaseRequest) -> Any:
        """Context for the part of a handler that works on a complete request."""
        return self.pool.answer(request.transport)

    async def read_signed(self, request: web.BaseRequest, secret: bytes, *, keep: bool) -> bytes:
        """The body of a request signed with X-Hub-Signature-256 (HMAC-SHA256 of `secret`).

        Returns the body (b"" unless `keep`); answers `Expect: 100-continue` once the
        headers pass. Raises Refused: 411 no Content-Length,
        413 larger than `max_body`, 401 a missing, ill-formed or wrong signature (the
        first two before any body byte is read), 408 the body took longer than
        `body_timeout`, 400 the client sent less than it declared, 503 no room to keep it.
        """
        declared = request.content_length
        if declared is None:
            raise Refused(411, "Content-Length required")
        if declared > self.limits.max_body:
            raise Refused(413, f"payload too large (limit {self.limits.max_body} bytes)")
        header = request.headers.get("X-Hub-Signature-256", "")
        if not _SIGNATURE.fullmatch(header):
            raise Refused(401, "missing or invalid X-Hub-Signature-256")
        if request.headers.get("Expect", "").lower() == "100-continue":
            # The client waits for this before it sends the body (only now worth reading).
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        transport = request.transport
        if keep and transport is not None:
            self.pool.reserve(transport, 2 * declared)  # the chunks, then the joined body
        try:
            return await self._read(request, secret, header, declared, keep)
        finally:
            if transport is not None:
                self.pool.kept.pop(transport, None)

    async def _read(
        self, request: web.BaseRequest, secret: bytes, header: str, declared: int, keep: bool
    ) -> bytes:
        digest = hmac.new(secret, digestmod=hashlib.sha256)
        chunks: list[bytes] = []
        received = 0
        try:
            async with asyncio.timeout(self.limits.body_timeout):
                while chunk := await request.content.readany():
                    received += len(chunk)
                    if received > declared:
                        raise Refused(413, "body longer than its Content-Length")
                    digest.update(chunk)
                    if keep:
                        chunks.append(chunk)
        except TimeoutError:
            raise Refused(408, f"body not received within {self.limits.body_timeout:g}s") from None
        except (web.RequestPayloadError, ConnectionError) as error:
            raise Refused(400, f"body not received whole: {error}") from None
        if received != declared:
            raise Refused(400, "body shorter than its Content-Length")
        if not hmac.compare_digest("sha256=" + digest.hexdigest(), header.strip()):
            raise Refused(401, "missing or invalid X-Hub-Signature-256")
        return b"".join(chunks)

    def start(self, host: str, port: int, handler: Handler) -> None:
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(self._bind(host, port, handler, ready))
            if ready.exception() is None:
                self.loop.run_forever()
            self.loop.close()

        self._thread = threading.Thread(target=run, name="http", daemon=True)
        self._thread.start()
        try:
            ready.result()
        except OSError as error:
            raise UsageError(f"--listen {host}:{port}: cannot listen: {error.strerror}") from None

    async def _bind(
        self, host: str, port: int, handler: Handler, ready: concurrent.futures.Future[None]
    ) -> None:
        aiohttp_server = web.Server(
            handler,
            keepalive_timeout=self.limits.header_timeout,
            lingering_time=LINGER_SECONDS,
            max_line_size=MAX_LINE,
            max_field_size=MAX_FIELD,
            max_headers=MAX_HEADERS,
            logger=_logger(),
            access_log=None,
        )
        try:
            self._server = await self.loop.create_server(
                lambda: _Connection(aiohttp_server(), self.pool), host, port, backlog=128
            )
        except OSError as error:
            ready.set_exception(error)
            return
        self.address = self._server.sockets[0].getsockname()[:2]
        ready.set_result(None)

    def shutdown(self) -> None:
        """Stop listening, drop open connections, and end the loop thread."""

        async def stop() -> None:
            if self._server:
                self._server.close()
            for transport in list(self.pool.open):
                transport.abort()  # type: ignore[attr-defined]
            self.loop.stop()

        if self._thread and self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(stop(), self.loop)
            self._thread.join(timeout=5)


def serve(host: str, port: int, handler: Handler, limits: Limits) -> Server:
    """Listen on host:port and answer with `handler` on a new event loop thread.

    Raises UsageError when the address cannot be bound. Stop with `shutdown()`.
    """
    server = Server(asyncio.new_event_loop(), _Pool(limits), limits)
    server.start(host, port, handler)
    return server
