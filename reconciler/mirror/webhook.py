"""What the webhook does with a GitHub `deployment` delivery (reconciler.mirror.receiver
carries it over HTTP and verifies its signature first).

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
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from reconciler import log
from reconciler.errors import ReconcilerError
from reconciler.mirror.core import Deployment, DeploymentError, Mirror, Outcome
from reconciler.mirror.ledger import Ledger

# Bytes; the default of --http-max-body. A deployment event is a few KiB; a larger limit
# lets a client with a wrong signature make the receiver hold more before it is refused.
MAX_BODY = 1 << 20
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


class Deliveries:
    """What a delivery does, whatever carried it: `handle` takes the request headers and
    the body whose signature the transport has verified, and returns (status, JSON answer).
    Not thread-safe: the transport calls it for one delivery at a time."""

    def __init__(self, mirror: Mirror, ledger: Ledger) -> None:
        self.mirror = mirror
        self.ledger = ledger

    def handle(self, headers: Mapping[str, str], body: bytes) -> tuple[HTTPStatus, dict[str, Any]]:
        event = headers.get("X-GitHub-Event", "")
        delivery = headers.get("X-GitHub-Delivery", "")
        content_type = headers.get("Content-Type", "")
        if content_type.split(";")[0].strip().lower() not in ("application/json", ""):
            # GitHub's default is application/x-www-form-urlencoded (`payload=...`).
            return HTTPStatus.UNSUPPORTED_MEDIA_TYPE, {
                "error": "set the webhook's content type to application/json "
                f"(this delivery is {content_type})"
            }
        if event == "ping":
            return HTTPStatus.OK, {"status": "pong"}
        if event != "deployment":
            return HTTPStatus.OK, {
                "status": "ignored",
                "message": f"event {event!r} is not mirrored",
            }
        if delivery and self.ledger.seen_delivery(delivery):
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
        ledger = self.ledger
        if ledger.mirrored(deployment.repository, deployment.id):
            outcome = Outcome("duplicate", f"deployment {deployment.id} was mirrored before")
        else:
            try:
                outcome = self.mirror.handle(deployment)
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
