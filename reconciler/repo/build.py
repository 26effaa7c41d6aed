"""Validated documents -> the frozen model of reconciler.model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from reconciler.model import (
    ChartSource,
    DriftIgnore,
    Environments,
    Installation,
    Policy,
    Project,
    Release,
    ValuesFrom,
)
from reconciler.repo.semantics import DEFAULT_VERSION_TEMPLATE, Document

# File field -> Policy attribute; the schema guarantees the types.
_POLICY_FIELDS = {
    "prune": "prune",
    "maxPruneShare": "max_prune_share",
    "remediation": "remediation",
    "retries": "retries",
    "retryBackoffSeconds": "retry_backoff_seconds",
    "timeoutSeconds": "timeout_seconds",
    "concurrency": "concurrency",
    "historyMax": "history_max",
    "wait": "wait",
    "pendingTimeoutSeconds": "pending_timeout_seconds",
    "drift": "drift",
}


def environments(documents: Sequence[Document], revision: str = "") -> Environments:
    projects = {}
    releases: dict[str, list[Release]] = {}
    installations = []
    for document in documents:
        kind = document.source.kind
        if kind == "Project":
            project = _project(document)
            projects[project.name] = project
        elif kind == "Release":
            releases.setdefault(document.source.installation, []).append(_release(document))
        else:
            installations.append(document)
    built = {}
    for document in installations:
        own = sorted(releases.get(document.source.installation, []), key=lambda r: r.name)
        installation = _installation(document, tuple(own))
        built[installation.name] = installation
    return Environments(
        projects=dict(sorted(projects.items())),
        installations=dict(sorted(built.items())),
        revision=revision,
    )


def _project(document: Document) -> Project:
    data = document.data
    chart = data["chart"]
    return Project(
        name=data["name"],
        chart=ChartSource(
            repository=chart["repository"],
            name=chart["name"],
            version_template=chart.get("versionTemplate", DEFAULT_VERSION_TEMPLATE),
        ),
        namespace=data["namespace"],
        values=data.get("values", {}),
        depends_on=tuple(data.get("dependsOn", ())),
        path=document.source.path,
        drift_ignore=tuple(
            DriftIgnore(rule["kind"], tuple(rule["paths"]), rule.get("name", ""))
            for rule in data.get("driftIgnore", ())
        ),
    )


def _release(document: Document) -> Release:
    data = document.data
    return Release(
        name=data["name"],
        project=data["project"],
        ref=data.get("ref"),
        version=data.get("version"),
        namespace=data.get("namespace"),
        values=data.get("values", {}),
        path=document.source.path,
        pinned=data.get("pinned") is True,
        adopt=bool(data.get("adopt", False)),
    )


def _installation(document: Document, releases: tuple[Release, ...]) -> Installation:
    data = document.data
    return Installation(
        name=data["name"],
        labels=dict(data.get("labels", {})),
        values=data.get("values", {}),
        policy=_policy(data.get("policy", {})),
        chart_repository=data.get("chartRepository"),
        values_from=_values_from(data.get("valuesFrom", {})),
        releases=releases,
        path=document.source.path,
    )


def _policy(data: dict[str, Any]) -> Policy:
    fields = {_POLICY_FIELDS[key]: value for key, value in data.items()}
    for name in (
        "timeout_seconds",
        "concurrency",
        "history_max",
        "retries",
        "pending_timeout_seconds",
    ):
        if name in fields:
            fields[name] = int(fields[name])  # the schema allows 3.0 for an integer
    for name in ("max_prune_share", "retry_backoff_seconds"):
        if name in fields:
            fields[name] = float(fields[name])
    if "pending_timeout_seconds" not in fields:
        # Unset: never at or below the helm timeout (validation refuses that when set).
        timeout = fields.get("timeout_seconds", Policy.timeout_seconds)
        fields["pending_timeout_seconds"] = max(Policy.pending_timeout_seconds, 2 * timeout)
    return Policy(**fields)


def _values_from(data: dict[str, Any]) -> ValuesFrom:
    config_map, config_map_optional = _source_ref(data.get("configMap"))
    secret, secret_optional = _source_ref(data.get("secret"))
    return ValuesFrom(
        namespace=data.get("namespace", "reconciler"),
        config_map=config_map,
        secret=secret,
        config_map_optional=config_map_optional,
        secret_optional=secret_optional,
    )


def _source_ref(ref: str | dict[str, Any] | None) -> tuple[str | None, bool]:
    """`name` or `{name, optional}` (the schema allows both) as (name, optional)."""

    if isinstance(ref, dict):
        return ref["name"], bool(ref.get("optional", False))
    return ref, False
