"""Kubernetes Events for what the reconciler did, attached to its status ConfigMap."""

from __future__ import annotations

from datetime import UTC, datetime

from reconciler import log
from reconciler.errors import KubeError
from reconciler.excerpt import bounded
from reconciler.execute import Outcome
from reconciler.kube import EVENTS, Kube
from reconciler.plan import Drifted, Hold
from reconciler.status import status_name

EVENT_MESSAGE_LIMIT = 1000  # `kubectl describe` shows Events in a table; keep them readable

REASONS = {
    ("install", "succeeded"): "Installed",
    ("upgrade", "succeeded"): "Upgraded",
    ("unlock", "succeeded"): "Unlocked",
    ("uninstall", "succeeded"): "Pruned",
}


class EventRecorder:
    def __init__(self, kube: Kube, namespace: str, installation: str) -> None:
        self.kube = kube
        self.namespace = namespace
        self.installation = installation

    def outcome(self, outcome: Outcome) -> None:
        reason = (
            REASONS.get((outcome.kind, outcome.result))
            or f"{outcome.kind.capitalize()}{outcome.result.capitalize()}"
        )
        kind = "Normal" if outcome.result == "succeeded" else "Warning"
        self.emit(kind, reason, f"{outcome.namespace}/{outcome.release}: {outcome.message}")

    def gave_up(self, hold: Hold) -> None:
        """A release the reconciler will not act on again by itself, with why (its last error)."""

        self.emit("Warning", "Held", f"{hold.namespace}/{hold.release}: {hold.reason}")

    def drifted(self, drifted: Drifted) -> None:
        """A release whose live objects differ from its manifest: which objects and paths
        (never values), and what the `drift` policy does about it."""

        what = "re-applied through helm" if drifted.policy == "correct" else "reported only"
        self.emit(
            "Warning",
            "Drifted",
            f"{drifted.namespace}/{drifted.release}: live drift ({what}): {drifted.drift.summary(10)}",
        )

    def emit(self, kind: str, reason: str, message: str) -> None:
        """Best effort: a missing Events permission must not stop a reconcile."""

        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": "reconciler-", "namespace": self.namespace},
            "involvedObject": {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "name": status_name(self.installation),
                "namespace": self.namespace,
            },
            "reason": reason,
            "message": bounded(message, EVENT_MESSAGE_LIMIT),
            "type": kind,
            "source": {"component": "reconciler"},
            "reportingComponent": "reconciler",
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        try:
            self.kube.request("POST", EVENTS.path(self.namespace), body=body)
        except KubeError as error:
            log.warning("could not record an event", reason=reason, error=str(error))
