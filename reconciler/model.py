"""The frozen model of an environments repo at one commit.

`desired` builds these from validated files; `plan` and `execute` only read them.
Values are plain JSON-like dicts that no code mutates after loading.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

API_VERSION = "reconciler/v1"

# The labels helm stores on every revision we write (`helm --labels`). They mark
# a release as ours, so pruning never touches what someone else installed.
LABEL_MANAGED_BY = "managed-by"
MANAGED_BY = "reconciler"
LABEL_INSTALLATION = "reconciler-installation"
LABEL_DIGEST = "reconciler-digest"

Values = dict[str, Any]
Remediation = Literal["rollback", "uninstall", "none"]
DriftPolicy = Literal["correct", "warn", "off"]

REF_PLACEHOLDER = re.compile(r"\{ref(?::(\d+))?\}")


def render_version(template: str, ref: str) -> str:
    """Chart version for a commit ref: `{ref}` is the full SHA, `{ref:N}` its first N characters."""

    return REF_PLACEHOLDER.sub(lambda m: ref[: int(m.group(1))] if m.group(1) else ref, template)


@dataclass(frozen=True)
class ChartSource:
    """Where a project's chart comes from.

    `repository` is `oci://host/path` (the chart is `<repository>/<name>`) or an
    `http(s)://` classic Helm repository (`helm --repo`).
    """

    repository: str
    name: str
    version_template: str = "1.0.0-g{ref}"


@dataclass(frozen=True)
class DriftIgnore:
    """Paths (JSON pointers, RFC 6901) never compared for live drift in objects of `kind`
    (every kind when "*"), only the object named `name` when set. A path covers all below it."""

    kind: str
    paths: tuple[str, ...]
    name: str = ""

    def applies(self, kind: str, name: str) -> bool:
        return self.kind in ("*", kind) and self.name in ("", name)


@dataclass(frozen=True)
class Project:
    name: str
    chart: ChartSource
    namespace: str
    values: Values = field(default_factory=dict)
    depends_on: tuple[str, ...] = ()
    path: str = ""
    drift_ignore: tuple[DriftIgnore, ...] = ()


@dataclass(frozen=True)
class Policy:
    """What the reconciler may do in one installation, and how carefully."""

    prune: bool = False
    max_prune_share: float = 0.25
    remediation: Remediation = "rollback"
    retries: int = 2
    retry_backoff_seconds: float = 30.0
    timeout_seconds: int = 300
    concurrency: int = 4
    history_max: int = 10
    wait: bool = False
    pending_timeout_seconds: int = 600
    # Live drift found on a full resync: re-apply the release, only report it, or not look.
    drift: DriftPolicy = "correct"


@dataclass(frozen=True)
class ValuesFrom:
    """In-cluster values that must not live in git: a ConfigMap and a Secret.

    In each, the key `values.yaml` applies to every release and `<release>.yaml`
    to one release.
    """

    namespace: str = "reconciler"
    config_map: str | None = None
    secret: str | None = None
    # A missing object is an error holding every release unless marked optional.
    config_map_optional: bool = False
    secret_optional: bool = False


@dataclass(frozen=True)
class Release:
    name: str
    project: str
    ref: str | None = None
    version: str | None = None
    namespace: str | None = None
    values: Values = field(default_factory=dict)
    path: str = ""
    pinned: bool = False  # promote leaves it where it is
    adopt: bool = False


@dataclass(frozen=True)
class Installation:
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    values: Values = field(default_factory=dict)
    policy: Policy = field(default_factory=Policy)
    chart_repository: str | None = None
    values_from: ValuesFrom = field(default_factory=ValuesFrom)
    releases: tuple[Release, ...] = ()
    path: str = ""


@dataclass(frozen=True)
class Environments:
    """Every project and installation of the repo at one commit."""

    projects: Mapping[str, Project]
    installations: Mapping[str, Installation]
    revision: str = ""


@dataclass(frozen=True)
class ChartRef:
    """A resolved chart: what helm is asked to install."""

    repository: str
    name: str
    version: str

    @property
    def is_oci(self) -> bool:
        return self.repository.startswith("oci://")


@dataclass(frozen=True)
class DesiredRelease:
    """One release as the installation should have it, values fully layered.

    `values_problem` says why its values cannot be computed (an in-cluster layer helm
    would read differently); such a release is held, never installed.
    """

    name: str
    namespace: str
    project: str
    chart: ChartRef
    values: Values
    depends_on: tuple[str, ...] = ()
    ref: str | None = None
    values_problem: str | None = None
    # Take over a release of the same name that is not ours (`adopt: true`, or --adopt).
    adopt: bool = False
    # The project's live-drift ignore rules (not part of what helm is given, so not digested).
    drift_ignore: tuple[DriftIgnore, ...] = field(default=(), compare=False)
    # The digest keyed with the installation's key (see reconciler.trust); set by the
    # engine before planning, so that no label reveals the values it covers.
    keyed_digest: str | None = field(default=None, compare=False)

    @property
    def digest(self) -> str:
        return self.keyed_digest or digest_of(self.chart, self.values)


def digest_of(chart: ChartRef, values: Values) -> str:
    """A short stable fingerprint of what helm would be given, unkeyed: never written to the
    cluster (labels and the status ConfigMap carry `reconciler.trust.Signer.digest`, keyed,
    so Secret-sourced values cannot be guessed back from them)."""

    return hashlib.sha256(digest_payload(chart, values)).hexdigest()[:20]


def digest_payload(chart: ChartRef, values: Values) -> bytes:
    """The canonical bytes both digests hash: chart coordinates and values, keys sorted."""

    payload = json.dumps(
        {"chart": [chart.repository, chart.name, chart.version], "values": values},
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return payload.encode()


@dataclass(frozen=True)
class DesiredState:
    """What one installation should run, at one environments commit."""

    installation: str
    revision: str
    policy: Policy
    releases: tuple[DesiredRelease, ...]
