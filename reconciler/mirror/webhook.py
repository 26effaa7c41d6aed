"""The webhook receiver for GitHub `deployment` events (stdlib HTTP server).

Answers, so that GitHub's delivery log tells what happened:
401 bad or missing signature, 400 unreadable payload, 413 too large,
415 a content type other than application/json (GitHub's form default),
422 a deployment the mapping or the environments repo cannot take (nothing committed),
502 the environments repo could not be updated (GitHub may redeliver),
201 promoted, 200 everything else (already declared, a redelivery, an ignored event).
Deliveries are handled one at a time and answered after the push.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from reconciler import log
from reconciler.errors import ReconcilerError
from reconciler.mirror.core import Deployment, DeploymentError, Mirror, Outcome
from reconciler.mirror.ledger import Ledger

MAX_BODY = 5 * 1024 * 1024
_STATUS = {
    "promoted": HTTPStatus.CREATED,
    "unchanged": HTTPStatus.OK,
    "duplicate": HTTPStatus.OK,
    "ignored": HTTPStatus.OK,
    "rejected": HTTPStatus.UNPROCESSABLE_ENTITY,
}


def signature(secret: bytes, body: bytes) -> str:
    """The `X-Hub-Signature-256` value GitHub sends for `body`."""

    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify_signature(secret: bytes, body: bytes, header: str | None) -> bool:
    if not header:
        return False
    # Constant-time: a byte-by-byte early exit would leak how much of a guess was right.
    return hmac.compare_digest(signature(secret, body).encode(), header.strip().encode())


class WebhookServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], secret: bytes, mirror: Mirror, ledger: Ledger
    ) -> None:
        super().__init__(address, WebhookHandler)
        self.secret = secret
        self.mirror = mirror
        self.ledger = ledger


class WebhookHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: WebhookServer

    def do_GET(self) -> None:
        if self.path.split("?")[0] in ("/healthz", "/readyz"):
            self._reply(HTTPStatus.OK, {"status": "ok"})
        else:
            self._reply(HTTPStatus.NOT_FOUND, {"error": "POST GitHub deployment events here"})

    def do_POST(self) -> None:
        body = self._body()
        if body is None:
            return
        if not verify_signature(self.server.secret, body, self.headers.get("X-Hub-Signature-256")):
            self._reply(
                HTTPStatus.UNAUTHORIZED, {"error": "missing or invalid X-Hub-Signature-256"}
            )
            return
        status, document = self._handle(body)
        self._reply(status, document)

    def _json_content(self) -> bool:
        content_type = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        return content_type in ("application/json", "")

    def _handle(self, body: bytes) -> tuple[HTTPStatus, dict[str, Any]]:
        event = self.headers.get("X-GitHub-Event", "")
        delivery = self.headers.get("X-GitHub-Delivery", "")
        if not self._json_content():
            # GitHub's default is application/x-www-form-urlencoded (`payload=...`).
            return HTTPStatus.UNSUPPORTED_MEDIA_TYPE, {
                "error": "set the webhook's content type to application/json "
                f"(this delivery is {self.headers.get('Content-Type')})"
            }
        if event == "ping":
            return HTTPStatus.OK, {"status": "pong"}
        if event != "deployment":
            return HTTPStatus.OK, {
                "status": "ignored",
                "message": f"event {event!r} is not mirrored",
            }
        if delivery and self.server.ledger.seen_delivery(delivery):
            return HTTPStatus.OK, {
                "status": "duplicate",
                "message": f"delivery {delivery} was handled",
            }
        try:
            payload = json.loads(body)
            if payload.get("action", "created") != "created":
                return HTTPStatus.OK, {"status": "ignored", "message": "not a created deployment"}
            deployment = Deployment.from_event(payload)
        except (ValueError, AttributeError, DeploymentError) as error:
            return HTTPStatus.BAD_REQUEST, {"error": f"unreadable deployment event: {error}"}
        return self._mirror(deployment, delivery)

    def _mirror(self, deployment: Deployment, delivery: str) -> tuple[HTTPStatus, dict[str, Any]]:
        ledger = self.server.ledger
        if ledger.mirrored(deployment.repository, deployment.id):
            outcome = Outcome("duplicate", f"deployment {deployment.id} was mirrored before")
        else:
            try:
                outcome = self.server.mirror.handle(deployment)
            except ReconcilerError as error:
                log.error("mirror: cannot update the environments repo", error=str(error))
                return HTTPStatus.BAD_GATEWAY, {"error": str(error)}
        if outcome.status != "rejected":
            ledger.record_deployment(deployment.repository, deployment.id)
            if delivery:
                ledger.record_delivery(delivery)
        key = "error" if outcome.status == "rejected" else "message"
        document: dict[str, Any] = {
            "status": outcome.status,
            "deployment": deployment.id,
            key: outcome.message,
        }
        if outcome.commit:
            document["commit"] = outcome.commit
        return _STATUS[outcome.status], document

    def _body(self) -> bytes | None:
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self._reply(HTTPStatus.LENGTH_REQUIRED, {"error": "Content-Length required"})
            return None
        if int(length) > MAX_BODY:
            self._reply(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": "payload too large"})
            return None
        return self.rfile.read(int(length))

    def _reply(self, status: HTTPStatus, document: dict[str, Any]) -> None:
        payload = json.dumps(document).encode() + b"\n"
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        if status >= 400 and status != HTTPStatus.UNPROCESSABLE_ENTITY:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        log.info(
            "webhook: " + (format % args),
            delivery=self.headers.get("X-GitHub-Delivery", "") if hasattr(self, "headers") else "",
        )
