"""Observed state: Helm release history read from the release Secrets.

One paginated metadata-only LIST gives every revision's labels (status,
revision number, our digest): cluster-wide, or one per namespace in namespaced
mode. Only releases whose labels do not already prove them in sync are fetched
whole and decoded. Helm 3 and Helm 4 records share the fields read here; Helm 4's
extra `apply_method` is ignored.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import json
import re
import zlib
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from reconciler.errors import KubeError
from reconciler.jsonshape import mapping, too_deep
from reconciler.kube import SECRETS, JsonObject, Kube
from reconciler.model import LABEL_DIGEST, LABEL_INSTALLATION, LABEL_MANAGED_BY, MANAGED_BY, Values
from reconciler.repo import helmyaml
from reconciler.trust import LABEL_REVISION, LABEL_ROLLBACK_OF, Signer

# Superseded revisions never change a decision; leaving them out of the LIST
# cuts the transfer by the length of the history.
SELECTOR = "owner=helm,status!=superseded"
# A record's values (written by a tenant in lockdown) are walked recursively later on.
RECORD_DEPTH = 200
MAX_FILE_BYTES = 4 * 1024 * 1024  # the largest CRDs in the wild are a few hundred KB
# A chart's crds/ files as helm keeps them in a record's `chart.files`.
_RECORD_CRD = re.compile(r"^crds/.+\.(?:ya?ml|json)$")
Files = list[tuple[str, bytes]]
PENDING = frozenset({"pending-install", "pending-upgrade", "pending-rollback", "uninstalling"})


@dataclass(frozen=True)
class Revision:
    """One stored revision, from the Secret's labels and metadata alone."""

    number: int
    status: str
    secret: str
    digest: str | None = None
    created: datetime | None = None
    # Written by this installation's reconciler for this very number (see reconciler.trust).
    proven: bool = False
    # Its labels come from this installation's reconciler, maybe copied by helm from an
    # earlier revision (a rollback, or a `helm upgrade` by hand keeps the labels).
    signed: bool = False
    # The revision it restores, when the reconciler wrote it by rolling back.
    rollback_of: int | None = None


@dataclass(frozen=True)
class ReleaseDetail:
    """What only the decoded release record tells."""

    chart_name: str
    chart_version: str
    app_version: str
    values: Values
    description: str
    # The rendered manifest of this revision (reconciler.manifest parses it); not compared,
    # so two details that differ only in it are equal.
    manifest: str = field(default="", compare=False, repr=False)
    # How helm 4 applied it: "ssa" (server-side) or "csa"; "" in helm 3's records (csa).
    apply_method: str = field(default="", compare=False)
    # The chart's crds/ files helm kept in the record (name, bytes; reconciler.crds compares
    # them with the cluster's), so a full resync needs no second GET of the record.
    crd_files: tuple[tuple[str, bytes], ...] = field(default=(), compare=False, repr=False)


@dataclass(frozen=True)
class ReleaseState:
    """One release as the cluster has it: its latest revision and the visible history."""

    name: str
    namespace: str
    revisions: tuple[Revision, ...]
    labels: Mapping[str, str] = field(default_factory=dict)
    detail: ReleaseDetail | None = None

    @property
    def latest(self) -> Revision:
        return self.revisions[-1]

    @property
    def managed_by_us(self) -> bool:
        return self.labels.get(LABEL_MANAGED_BY) == MANAGED_BY

    @property
    def installation(self) -> str | None:
        return self.labels.get(LABEL_INSTALLATION)

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)


@dataclass(frozen=True)
class Index:
    """The releases helm holds, keyed by (namespace, name), and the namespaces whose
    history could not be read (namespace -> why)."""

    releases: Mapping[tuple[str, str], ReleaseState]
    unreadable: Mapping[str, str] = field(default_factory=dict)


def read_index(kube: Kube, namespaces: Sequence[str] = (), signer: Signer | None = None) -> Index:
    """Every Helm release without decoding any: one cluster-wide metadata-only LIST, or
    one LIST per namespace when `namespaces` are given (no cluster-wide right needed).
    With `signer`, each revision's proof labels are checked (pure CPU)."""

    if not namespaces:
        everywhere = kube.list_items(SECRETS.path(), SELECTOR, metadata_only=True)
        return Index(_releases_of(everywhere, signer))
    items: list[JsonObject] = []
    unreadable: dict[str, str] = {}
    for namespace in namespaces:
        try:
            found = list(kube.list_items(SECRETS.path(namespace), SELECTOR, metadata_only=True))
        except KubeError as error:
            # 403 is also what a missing namespace answers: no RoleBinding can exist in it.
            # Only this namespace's releases wait; any other failure stops the pass.
            if error.status not in (403, 404):
                raise
            unreadable[namespace] = "forbidden" if error.status == 403 else "not found"
        else:
            items.extend(found)
    return Index(_releases_of(items, signer), unreadable)


def _releases_of(
    items: Iterable[JsonObject], signer: Signer | None = None
) -> dict[tuple[str, str], ReleaseState]:
    by_release: dict[tuple[str, str], list[tuple[Revision, Mapping[str, str]]]] = defaultdict(list)
    for item in items:
        parsed = _revision_of(item.get("metadata") or {}, signer)
        if parsed:
            key, revision, labels = parsed
            by_release[key].append((revision, labels))
    return {key: _state_of(key, revisions) for key, revisions in by_release.items()}


def latest_revision(kube: Kube, namespace: str, name: str) -> int | None:
    """The highest revision helm holds for one release, or None when it holds none."""

    numbers = [
        int(labels["version"])
        for item in kube.list_items(
            SECRETS.path(namespace), f"owner=helm,name={name}", metadata_only=True
        )
        if (labels := (item.get("metadata") or {}).get("labels") or {}).get("version", "").isdigit()
    ]
    return max(numbers, default=None)


def latest_record(kube: Kube, namespace: str, name: str) -> dict[str, Any] | None:
    """The decoded record of the release's latest revision (a LIST of revision numbers, then
    one GET), or None when helm holds no revision of it or the Secret just went."""

    number = latest_revision(kube, namespace, name)
    if number is None:
        return None
    return read_record(kube, namespace, f"sh.helm.release.v1.{name}.v{number}")


def with_detail(kube: Kube, state: ReleaseState) -> ReleaseState:
    """The same state with its latest revision decoded (one GET)."""

    record = read_record(kube, state.namespace, state.latest.secret)
    return state if record is None else replace(state, detail=detail_of(record))


def read_record(kube: Kube, namespace: str, secret_name: str) -> dict[str, Any] | None:
    """One decoded release record (one GET), or None when its Secret is gone."""

    secret = kube.get(SECRETS.path(namespace, secret_name))
    if secret is None:
        return None
    encoded = mapping(secret.get("data")).get("release")
    try:
        return decode_release(encoded)
    except ValueError as error:
        raise KubeError(
            f"release Secret {namespace}/{secret_name} is not a readable Helm record: {error}"
        ) from error


def with_proven_copy(kube: Kube, state: ReleaseState) -> ReleaseState:
    """A latest revision that carries the labels of an earlier proven one (helm copied them:
    a rollback, e.g. the reconciler's own, stopped before the reconciler signed its result)
    is proven too when its record is that revision's: the same chart, values and manifest.
    Two GETs; the state unchanged otherwise."""

    latest = state.latest
    claimed = state.labels.get(LABEL_REVISION, "")
    originals = [r for r in state.revisions if r.proven and str(r.number) == claimed]
    if not latest.signed or latest.proven or not originals:
        return state
    copy = read_record(kube, state.namespace, latest.secret)
    original = read_record(kube, state.namespace, originals[0].secret)
    if copy is None or original is None or _content(copy) != _content(original):
        return state
    proven = replace(latest, proven=True, rollback_of=originals[0].number)
    return replace(state, revisions=(*state.revisions[:-1], proven))


def _content(record: Mapping[str, Any]) -> tuple[Any, ...]:
    metadata = mapping(mapping(record.get("chart")).get("metadata"))
    return (
        metadata.get("name"),
        metadata.get("version"),
        record.get("config"),
        record.get("manifest"),
    )


def decode_release(encoded: Any) -> dict[str, Any]:
    """Secret data (base64 by the API) of base64(gzip(JSON)), as Helm writes it. Raises
    ValueError for anything else (the Secret is writable by others)."""

    if not isinstance(encoded, str):
        raise ValueError("no release data")
    try:
        raw = base64.b64decode(base64.b64decode(encoded, validate=True), validate=True)
    except (binascii.Error, ValueError) as error:
        raise ValueError(f"bad base64: {error}") from error
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as error:
            raise ValueError(f"bad gzip: {type(error).__name__}") from None
    try:
        record = json.loads(raw)
    except RecursionError:
        raise ValueError("the release record is nested too deeply to read") from None
    if not isinstance(record, dict):
        raise ValueError("the release record is not a JSON object")
    if too_deep(record, RECORD_DEPTH):
        raise ValueError(f"the release record is nested more than {RECORD_DEPTH} levels deep")
    return record


def detail_of(record: Mapping[str, Any]) -> ReleaseDetail:
    metadata = mapping(mapping(record.get("chart")).get("metadata"))
    info = mapping(record.get("info"))
    values = record.get("config") or {}
    return ReleaseDetail(
        chart_name=str(metadata.get("name", "")),
        chart_version=str(metadata.get("version", "")),
        app_version=str(metadata.get("appVersion", "") or ""),
        values=_canonical(values) if isinstance(values, dict) else {},
        description=str(info.get("description", "")),
        manifest=manifest if isinstance(manifest := record.get("manifest"), str) else "",
        apply_method=str(record.get("apply_method") or ""),
        crd_files=tuple(record_files(record)),
    )


def _canonical(values: Values) -> Values:
    """The deployed values in the form desired values are kept in (helmyaml.canonical)."""

    try:
        canonical: Values = helmyaml.canonical(values)
    except helmyaml.ValueProblem:
        return values  # not what helm writes: it differs from any desired values, and shows
    return canonical


def _revision_of(
    metadata: JsonObject, signer: Signer | None = None
) -> tuple[tuple[str, str], Revision, Mapping[str, str]] | None:
    labels: dict[str, str] = metadata.get("labels") or {}
    name, version = labels.get("name"), labels.get("version")
    if not name or not version or not version.isdigit():
        return None
    namespace = str(metadata.get("namespace", ""))
    number = int(version)
    signed = proven = False
    if signer is not None and labels.get(LABEL_INSTALLATION) == signer.installation:
        claimed = labels.get(LABEL_REVISION, "")
        if claimed.isdigit() and int(claimed) <= number:
            signed = signer.proves(namespace, name, int(claimed), labels)
            proven = signed and int(claimed) == number
    rollback_of = labels.get(LABEL_ROLLBACK_OF, "")
    revision = Revision(
        number=number,
        status=labels.get("status", "unknown"),
        secret=str(metadata.get("name", "")),
        digest=labels.get(LABEL_DIGEST),
        created=_timestamp(metadata.get("creationTimestamp")),
        proven=proven,
        signed=signed,
        rollback_of=int(rollback_of) if proven and rollback_of.isdigit() else None,
    )
    return (namespace, name), revision, labels


def _state_of(
    key: tuple[str, str], revisions: list[tuple[Revision, Mapping[str, str]]]
) -> ReleaseState:
    revisions.sort(key=lambda pair: pair[0].number)
    namespace, name = key
    return ReleaseState(
        name=name,
        namespace=namespace,
        revisions=tuple(revision for revision, _ in revisions),
        labels=dict(revisions[-1][1]),
    )


def _timestamp(text: object) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None


def record_files(record: Mapping[str, Any]) -> Files:
    """The `crds/` files helm kept in a release record's chart (base64 in `chart.files`)."""

    chart = record.get("chart")
    found = chart.get("files") if isinstance(chart, Mapping) else None
    files: Files = []
    for item in found if isinstance(found, list) else []:
        name = item.get("name") if isinstance(item, Mapping) else None
        data = item.get("data") if isinstance(item, Mapping) else None
        if not isinstance(name, str) or not isinstance(data, str) or not _RECORD_CRD.match(name):
            continue
        if len(data) > MAX_FILE_BYTES * 4 // 3 + 4:
            continue  # not a file helm would have accepted either
        try:
            files.append((name, base64.b64decode(data, validate=True)))
        except (binascii.Error, ValueError):
            continue
    return files
