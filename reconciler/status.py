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
from reconciler.excerpt import bounded
from reconciler.execute import Outcome
from reconciler.health import ReleaseHealth, health_of
from reconciler.jsonshape import items, mapping
from reconciler.kube import CONFIGMAPS, Kube, ensure_namespace
from reconciler.model import DesiredState
from reconciler.observe import ReleaseState
from reconciler.plan import Drifted, Failure, Key, Plan

STATUS_KEY = "status.json"
# A ConfigMap holds at most 1 MiB; the rest of the object needs some room.
STATUS_BYTES = 1_000_000
# What a row's message is cut to, in turn, when the whole document must shrink to fit.
ROW_MESSAGES = (500, 200, 80)


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
        # Anyone who may write the ConfigMap may have written anything into it.
        text = mapping(found.get("data")).get(STATUS_KEY, "{}")
        try:
            document = json.loads(text) if isinstance(text, str) else {}
        except (ValueError, RecursionError):
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
            "data": {STATUS_KEY: serialise(document)},
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
            ensure_namespace(self.kube, self.namespace)
            self.kube.request("POST", CONFIGMAPS.path(self.namespace), body=body)


def serialise(document: Mapping[str, Any], limit: int = STATUS_BYTES) -> str:
    """The document as JSON of at most `limit` bytes where it can be: indented when that
    fits, else compact, else with each row's unhealthy objects counted rather than listed
    and its message and the failures' messages cut to the first of `ROW_MESSAGES` that fits
    (an outage across a thousand releases must not make every status write fail)."""

    text = json.dumps(document, indent=1, sort_keys=True)
    if len(text.encode()) <= limit:
        return text
    compact = json.dumps(document, sort_keys=True, separators=(",", ":"))
    if len(compact.encode()) <= limit:
        return compact
    for cut in ROW_MESSAGES:
        compact = json.dumps(_slim(document, cut), sort_keys=True, separators=(",", ":"))
        if len(compact.encode()) <= limit:
            break
    return compact  # the API server refuses what is still too large, as a failed write


def _slim(document: Mapping[str, Any], cut: int) -> dict[str, Any]:
    rows = []
    for row in items(document.get("releases")):
        listed = items(row.get("unhealthy"))
        more = row.get("more_unhealthy")
        rows.append(
            {
                **row,
                "message": bounded(str(row.get("message", "")), cut),
                "unhealthy": [],
                "more_unhealthy": len(listed) + (more if isinstance(more, int) else 0),
            }
        )
    failures = [
        {**item, "message": bounded(str(item.get("message", "")), cut)}
        for item in items(document.get("failures"))
    ]
    return {**document, "releases": rows, "failures": failures}


def status_document(
    desired: DesiredState,
    observed: Mapping[Key, ReleaseState],
    the_plan: Plan,
    outcomes: Iterable[Outcome],
    failures: Mapping[Key, Failure],
    now: datetime,
    drifted: Mapping[Key, Drifted] | None = None,
    health: Mapping[Key, ReleaseHealth] | None = None,
    crds: Mapping[Key, str] | None = None,
) -> dict[str, Any]:
    """The last pass as the status ConfigMap stores it: one row per declared or pruned release.
    `drifted`: the live drift the last full resync found; an in-sync release with drift
    (`drift: warn`) is `drifted`, its message the objects and paths. `health`: each
    release's health as last read (Healthy, Progressing, Degraded, Missing objects; ""
    when none was read yet), with the objects that are not ready. `crds`: what a `crds:
    create` release's CRDs lack of its chart's, as last found; an in-sync row says it."""

    rows = _rows(desired, observed, the_plan, {o.key: o for o in outcomes}, drifted or {})
    for row in rows:
        found = (crds or {}).get((row["namespace"], row["release"]), "")
        row["crds"] = found
        if found and row["state"] == "in-sync" and not row["message"]:
            row["message"] = found
    for row in rows:
        verdict = (health or {}).get((row["namespace"], row["release"]))
        row.update(verdict.as_json() if verdict else {"health": "", "unhealthy": []})
    return {
        "installation": the_plan.installation,
        "revision": the_plan.revision,
        "time": now.astimezone(UTC).isoformat(timespec="seconds"),
        "releases": rows,
        "failures": [
            {
                "namespace": key[0],
                "release": key[1],
                "digest": failure.digest,
                "attempts": failure.attempts,
                "last": failure.last_at.isoformat(),
                "message": failure.message,
                "revision": failure.revision,
            }
            for key, failure in sorted(failures.items())
        ],
    }


def _rows(
    desired: DesiredState,
    observed: Mapping[Key, ReleaseState],
    the_plan: Plan,
    outcomes: Mapping[Key, Outcome],
    drifted: Mapping[Key, Drifted],
) -> list[dict[str, Any]]:
    actions = {a.key: a for a in the_plan.actions}
    holds = {(h.namespace, h.release): h for h in the_plan.held}
    in_sync = set(the_plan.in_sync)
    keys = [(r.namespace, r.name) for r in desired.releases]
    keys += sorted(k for k in (*actions, *holds) if k not in set(keys))
    versions = {(r.namespace, r.name): r.chart.version for r in desired.releases}
    rows = []
    for key in keys:
        action, hold, outcome = actions.get(key), holds.get(key), outcomes.get(key)
        state = observed.get(key)
        want = versions.get(key, "")
        if key in in_sync and key in drifted:
            live = drifted[key].drift
            row = ("drifted", _deployed(state), "", f"live drift: {live.summary(10)}")
        elif key in in_sync:
            # What helm recorded when the record was read (a full resync), else what the
            # digest label proves was asked for, which helm installs exactly.
            row = (
                "in-sync",
                state.detail.chart_version if state and state.detail else want,
                "",
                "",
            )
        elif outcome:
            done = outcome.result == "succeeded"
            deployed = want if done and outcome.kind != "uninstall" else _deployed(state)
            row = (outcome.result, deployed, outcome.kind, outcome.message)
        elif hold:
            row = ("held", _deployed(state), "hold", hold.reason)
        else:
            row = (
                "planned",
                _deployed(state),
                action.kind if action else "",
                action.reason if action else "",
            )
        rows.append(
            {
                "namespace": key[0],
                "release": key[1],
                "desired": want,
                "deployed": row[1],
                "state": row[0],
                "helm_status": state.latest.status if state else "absent",
                "last_action": row[2],
                "message": row[3],
            }
        )
    return rows


def _deployed(state: ReleaseState | None) -> str:
    if state is None:
        return ""
    return state.detail.chart_version if state.detail else f"revision {state.latest.number}"


def health_from(document: Mapping[str, Any]) -> dict[Key, ReleaseHealth]:
    """Each release's health as the last pass recorded it."""

    found: dict[Key, ReleaseHealth] = {}
    for row in items(mapping(document).get("releases")):
        if not isinstance(row, dict):
            continue
        verdict = health_of(row)
        if verdict is not None:
            found[(str(row.get("namespace", "")), str(row.get("release", "")))] = verdict
    return found


def crds_from(document: Mapping[str, Any]) -> dict[Key, str]:
    """Each `crds: create` release's CRD finding as the last pass recorded it (`crds`)."""

    found: dict[Key, str] = {}
    for row in items(mapping(document).get("releases")):
        text = row.get("crds") if isinstance(row, dict) else None
        if isinstance(text, str) and text:
            found[(str(row.get("namespace", "")), str(row.get("release", "")))] = text
    return found


def _revision(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def failures_from(document: Mapping[str, Any]) -> dict[Key, Failure]:
    found: dict[Key, Failure] = {}
    for item in items(mapping(document).get("failures")):
        try:
            key = (str(item["namespace"]), str(item["release"]))
            found[key] = Failure(
                str(item["digest"]),
                int(item["attempts"]),
                datetime.fromisoformat(item["last"]),
                bounded(str(item.get("message") or "")),
                _revision(item.get("revision")),
            )
        except (KeyError, TypeError, ValueError, OverflowError):
            continue
    return found
