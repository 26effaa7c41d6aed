"""The status ConfigMap: the last pass per installation, and the failures to remember.

One ConfigMap `reconciler-status-<installation>` holds JSON under `status.json`.
It is what `reconciler status` prints, and what lets a new process (or the new
leader) know that a release already failed at the same desired state.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from reconciler.errors import KubeError
from reconciler.execute import Outcome
from reconciler.kube import CONFIGMAPS, NAMESPACES, Kube
from reconciler.plan import Failure, Key, Plan

STATUS_KEY = "status.json"


def status_name(installation: str) -> str:
    return f"reconciler-status-{installation}"


@dataclass(frozen=True)
class StatusStore:
    kube: Kube
    namespace: str
    installation: str

    def read(self) -> dict[str, Any]:
        found = self.kube.get(CONFIGMAPS.path(self.namespace, status_name(self.installation)))
        if not found:
            return {}
        try:
            document = json.loads((found.get("data") or {}).get(STATUS_KEY, "{}"))
        except ValueError:
            return {}
        return document if isinstance(document, dict) else {}

    def failures(self) -> dict[Key, Failure]:
        return failures_from(self.read())

    def write(self, document: Mapping[str, Any]) -> None:
        name = status_name(self.installation)
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": name,
                "namespace": self.namespace,
                "labels": {"app.kubernetes.io/managed-by": "reconciler"},
            },
            "data": {STATUS_KEY: json.dumps(document, indent=1, sort_keys=True)},
        }
        path = CONFIGMAPS.path(self.namespace, name)
        try:
            self.kube.request("PUT", path, body=body)
        except KubeError as error:
            if error.status != 404:
                raise
            self._create(body)

    def _create(self, body: dict[str, Any]) -> None:
        try:
            self.kube.request("POST", CONFIGMAPS.path(self.namespace), body=body)
        except KubeError as error:
            if error.status != 404:
                raise
            namespace = {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": self.namespace},
            }
            self.kube.request("POST", NAMESPACES.path(), body=namespace)
            self.kube.request("POST", CONFIGMAPS.path(self.namespace), body=body)


def status_document(
    the_plan: Plan,
    outcomes: Iterable[Outcome],
    failures: Mapping[Key, Failure],
    now: datetime,
    error: str = "",
) -> dict[str, Any]:
    """The last pass as the status ConfigMap stores it."""

    by_key = {o.key: o for o in outcomes}
    releases: list[dict[str, Any]] = []
    for action in the_plan.actions:
        outcome = by_key.get(action.key)
        releases.append(
            {
                "release": action.release,
                "namespace": action.namespace,
                "desired": action.desired.chart.version if action.desired else "",
                "action": action.kind,
                "state": outcome.result if outcome else "planned",
                "message": outcome.message if outcome else action.reason,
            }
        )
    releases += [
        {
            "release": h.release,
            "namespace": h.namespace,
            "action": "hold",
            "state": "held",
            "message": h.reason,
        }
        for h in the_plan.held
    ]
    releases += [
        {"release": name, "action": "none", "state": "in-sync", "message": ""}
        for name in the_plan.in_sync
    ]
    return {
        "installation": the_plan.installation,
        "revision": the_plan.revision,
        "time": now.astimezone(UTC).isoformat(timespec="seconds"),
        "error": error,
        "releases": releases,
        "failures": [
            {
                "namespace": k[0],
                "release": k[1],
                "digest": f.digest,
                "attempts": f.attempts,
                "last": f.last_at.isoformat(),
            }
            for k, f in sorted(failures.items())
        ],
    }


def failures_from(document: Mapping[str, Any]) -> dict[Key, Failure]:
    found: dict[Key, Failure] = {}
    for item in document.get("failures") or []:
        try:
            key = (str(item["namespace"]), str(item["release"]))
            found[key] = Failure(
                str(item["digest"]), int(item["attempts"]), datetime.fromisoformat(item["last"])
            )
        except (KeyError, TypeError, ValueError):
            continue
    return found
