"""The CustomResourceDefinitions of a chart's `crds/` folder, per the project's `crds` policy.

helm creates the CRDs of `crds/` on install and never touches them again: a chart whose
new version adds a CRD version upgrades "successfully" while the cluster keeps the old
CRD. The project's `crds` field (Flux's names) says what the reconciler does instead:

- `skip`: helm --skip-crds (reconciler.helm), nothing here.
- `create` (default, helm's behaviour): after each install and upgrade, the chart's CRDs
  (read from the release record helm just wrote, which keeps `crds/` among the chart's
  files) are compared with the cluster's, and one that differs or is missing is reported.
- `createReplace`: before each install and upgrade, the CRDs of the pulled chart archive
  are created or replaced through the Kubernetes API (helm then runs with --skip-crds).

Chart files are untrusted: sizes and counts are bounded, YAML aliases are refused (no
alias bombs), and only `apiextensions.k8s.io/v1` CustomResourceDefinitions are read.
"""

from __future__ import annotations

import copy
import re
import tarfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from reconciler.errors import KubeError, ReconcilerError
from reconciler.jsonshape import MAX_DEPTH, mapping, too_deep
from reconciler.kube import JsonObject, Kube, Resource, as_release_account
from reconciler.model import DesiredRelease
from reconciler.observe import (
    MAX_FILE_BYTES,
    Files,
    ReleaseState,
    latest_record,
    record_files,
)
from reconciler.plan import Action, Key

CRDS = Resource("apiextensions.k8s.io/v1", "customresourcedefinitions")
API_VERSION = "apiextensions.k8s.io/v1"
MAX_TOTAL_BYTES = 32 * 1024 * 1024  # read from an archive before giving up
MAX_MEMBERS = 10_000
MAX_DOCUMENTS = 500
SHOWN = 5
CONFLICT_ATTEMPTS = 3
# `crds/` of the chart or of a subchart unpacked under charts/ (helm installs both).
_ARCHIVE_CRD = re.compile(r"^[^/]+(?:/charts/[^/]+)*/crds/.+\.(?:ya?ml|json)$")
# What makes two CRDs serve different APIs; the API server adds the rest (status,
# metadata, defaulted names and conversion).
_TOP_FIELDS = ("group", "scope")
_NAME_FIELDS = ("kind", "plural", "shortNames", "categories")
_VERSION_FIELDS = (
    "served",
    "storage",
    "deprecated",
    "schema",
    "subresources",
    "additionalPrinterColumns",
    "selectableFields",
)


class CrdError(ReconcilerError):
    """A chart's crds/ could not be read or applied."""


def archive_files(archive: Path) -> Files:
    """The `crds/` files of a chart archive (name, bytes), bounded. Raises CrdError."""

    files: Files = []
    total = 0
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for count, member in enumerate(tar, 1):
                total += max(member.size, 0)
                if count > MAX_MEMBERS or total > MAX_TOTAL_BYTES:
                    raise CrdError(f"chart archive {archive.name} is too large to read crds/ from")
                if not (member.isfile() and _ARCHIVE_CRD.match(member.name)):
                    continue
                if member.size > MAX_FILE_BYTES:
                    raise CrdError(f"chart file {member.name} is over {MAX_FILE_BYTES} bytes")
                handle = tar.extractfile(member)
                files.append((member.name, handle.read(MAX_FILE_BYTES) if handle else b""))
    except (OSError, tarfile.TarError) as error:
        raise CrdError(f"cannot read chart archive {archive.name}: {error}") from error
    return files


def definitions(files: Iterable[tuple[str, bytes]]) -> list[JsonObject]:
    """The CRDs in `files`, in order. Raises CrdError naming the file for what helm would
    refuse too (not YAML, not a v1 CRD, no name) and for YAML aliases."""

    found: list[JsonObject] = []
    for name, data in files:
        for index, document in enumerate(_documents(name, data), 1):
            if document is None:
                continue
            found.append(_definition(name, index, document))
            if len(found) > MAX_DOCUMENTS:
                raise CrdError(f"chart crds/ holds more than {MAX_DOCUMENTS} documents")
    return found


def differences(kube: Kube, wanted: Iterable[JsonObject]) -> list[str]:
    """For each CRD of the chart that the cluster serves differently: `<name>: <what>`
    (one GET each). Only the fields that change the API count: group, scope, names and,
    per version, served, storage, schema, subresources and printer columns."""

    found = []
    for crd in wanted:
        name = crd["metadata"]["name"]
        live = kube.get(CRDS.path(name=name))
        what = "not in the cluster" if live is None else _compare(crd, live)
        if what:
            found.append(f"{name}: {what}")
    return found


def apply(kube: Kube, wanted: Iterable[JsonObject]) -> list[str]:
    """Create or replace each CRD unless the cluster already serves it the same way;
    returns `created <name>` / `replaced <name>` for what it changed. Raises CrdError
    with the API server's reason (e.g. a stored version the chart dropped)."""

    changed = []
    for crd in wanted:
        name = crd["metadata"]["name"]
        for attempt in range(1, CONFLICT_ATTEMPTS + 1):
            try:
                done = _apply_one(kube, crd)
                break
            except KubeError as error:
                # 409: written by someone else between our read and write; read it again.
                if error.status == 409 and attempt < CONFLICT_ATTEMPTS:
                    continue
                raise CrdError(f"CRD {name} from the chart's crds/ not applied: {error}") from error
        if done:
            changed.append(f"{done} {name}")
    return changed


def _apply_one(kube: Kube, crd: JsonObject) -> str:
    """`created`, `replaced`, or "" when the cluster already serves it as the chart says."""

    name = crd["metadata"]["name"]
    live = kube.get(CRDS.path(name=name))
    body = _body(crd)
    if live is None:
        kube.request("POST", CRDS.path(), body=body)
        return "created"
    if not _compare(crd, live):
        return ""
    body["metadata"]["resourceVersion"] = (live.get("metadata") or {}).get("resourceVersion")
    kube.request("PUT", CRDS.path(name=name), body=body)
    return "replaced"


def crd_steps(
    kube: Kube | None,
) -> tuple[Callable[[Action, Path | None], str], Callable[[Action, Path | None], str]]:
    """`execute`'s `prepare` and `check` hooks for the releases' `crds` policies.

    `prepare(action, archive)` applies the pulled chart's CRDs of a `createReplace`
    release before helm runs (raising CrdError fails the attempt before helm writes
    anything); `check(action, archive)` returns, for a `create` release helm just installed
    or upgraded, what the cluster's CRDs lack of the chart's (empty when nothing)."""

    # Releases of one chart upgrade in parallel: one applies its CRDs, the next finds them so.
    applying = threading.Lock()

    def prepare(action: Action, archive: Path | None) -> str:
        release = action.desired
        if kube is None or release is None or release.crds != "createReplace":
            return ""
        if archive is None:
            raise CrdError(f"chart {release.chart.name} {release.chart.version} was not pulled")
        wanted = definitions(archive_files(archive))
        # As the release's ServiceAccount: a team's chart changes only the CRDs the
        # platform let that account change, never any CRD with the reconciler's rights.
        acting = as_release_account(kube, release.namespace, release.service_account)
        with applying:
            changed = apply(acting, wanted)
        return f"CRDs {_listing(changed)}" if changed else ""

    def check(action: Action, archive: Path | None) -> str:
        release = action.desired
        if kube is None or release is None or release.crds != "create":
            return ""
        try:
            # The pulled archive when there is one (no API call for a chart without crds/),
            # else the record helm just wrote (one LIST and one GET).
            files = (
                archive_files(archive)
                if archive
                else record_files(latest_record(kube, release.namespace, release.name) or {})
            )
            # As the release's ServiceAccount: in lockdown the reconciler reads no CRD.
            acting = as_release_account(kube, release.namespace, release.service_account)
            found = differences(acting, definitions(files))
        except ReconcilerError as error:
            return f"the chart's CRDs could not be compared with the cluster's: {error}"
        return report(found)

    return prepare, check


def report(found: list[str]) -> str:
    """What a `create` release's message says of the CRDs `found` differing ("" for none)."""

    if not found:
        return ""
    return (
        f"CRDs in the chart's crds/ differ from the cluster's, left as they are "
        f"(crds: create; createReplace applies them): {_listing(found)}"
    )


def deployed_differences(
    kube: Kube, releases: Iterable[DesiredRelease], observed: Mapping[Key, ReleaseState]
) -> list[tuple[DesiredRelease, list[str]]]:
    """For each `create` release whose deployed record was decoded (a full resync), the CRDs
    of its chart that the cluster serves differently (`plan --full` lists them). The chart's
    `crds/` files come from the decoded record; one GET per CRD, as the release's
    ServiceAccount when it names one. What cannot be compared says so in the list."""

    found = []
    for release in releases:
        state = observed.get((release.namespace, release.name))
        if release.crds != "create" or state is None or state.detail is None:
            continue
        if state.latest.status != "deployed" or not state.detail.crd_files:
            continue
        acting = as_release_account(kube, release.namespace, release.service_account)
        try:
            differ = differences(acting, definitions(state.detail.crd_files))
        except ReconcilerError as error:
            differ = [f"not compared: {error}"]
        if differ:
            found.append((release, differ))
    return found


def _body(crd: JsonObject) -> JsonObject:
    """What is sent of a chart's CRD: its spec, and of its metadata only the name, labels and
    annotations (no uid, finalizers or owner references a chart could slip in)."""

    metadata = crd["metadata"]
    kept = {k: metadata[k] for k in ("name", "labels", "annotations") if k in metadata}
    return {
        "apiVersion": API_VERSION,
        "kind": "CustomResourceDefinition",
        "metadata": copy.deepcopy(kept),
        "spec": copy.deepcopy(crd["spec"]),
    }


def _compare(chart: JsonObject, live: JsonObject) -> str:
    """What the live CRD serves differently from the chart's: empty when nothing. Either
    side may hold any JSON (the chart's files are untrusted): a field of the wrong type
    differs, and a spec nested too deeply to compare safely says so."""

    want, have = mapping(mapping(chart).get("spec")), mapping(mapping(live).get("spec"))
    if too_deep(want) or too_deep(have):
        return f"nested more than {MAX_DEPTH} levels, not compared"
    problems = [f"{field} differs" for field in _TOP_FIELDS if want.get(field) != have.get(field)]
    names = want.get("names")
    if names is not None and not isinstance(names, Mapping):
        problems.append("names is not a mapping")
    want_names, have_names = mapping(names), mapping(have.get("names"))
    problems += [
        f"names.{field} differs"
        for field in _NAME_FIELDS
        if field in want_names and want_names[field] != have_names.get(field)
    ]
    want_versions = _by_name(want.get("versions"))
    have_versions = _by_name(have.get("versions"))
    missing = [name for name in want_versions if name not in have_versions]
    if missing:
        problems.append(f"version(s) {', '.join(missing)} not in the cluster")
    for name, version in want_versions.items():
        live_version = have_versions.get(name)
        if live_version is None:
            continue
        fields = [f for f in _VERSION_FIELDS if version.get(f) != live_version.get(f)]
        if fields:
            problems.append(f"version {name}: {', '.join(fields)} differ")
    return "; ".join(problems)


def _by_name(versions: Any) -> dict[str, Mapping[str, Any]]:
    if not isinstance(versions, list):
        return {}
    return {str(v.get("name")): v for v in versions if isinstance(v, Mapping) and v.get("name")}


def _definition(name: str, index: int, document: Any) -> JsonObject:
    where = f"chart file {name} (document {index})"
    if not isinstance(document, dict):
        raise CrdError(f"{where} is not a mapping")
    if (
        document.get("kind") != "CustomResourceDefinition"
        or document.get("apiVersion") != API_VERSION
    ):
        raise CrdError(f"{where} is not an {API_VERSION} CustomResourceDefinition")
    metadata = document.get("metadata")
    crd_name = metadata.get("name") if isinstance(metadata, dict) else None
    if not isinstance(crd_name, str) or not crd_name or not isinstance(document.get("spec"), dict):
        raise CrdError(f"{where} has no metadata.name or no spec")
    return document


def _documents(name: str, data: bytes) -> Iterator[Any]:
    try:
        text = data.decode("utf-8")
        yield from yaml.load_all(text, Loader=_NoAliasLoader)
    except (UnicodeDecodeError, yaml.YAMLError) as error:
        raise CrdError(f"chart file {name} is not YAML: {_first_line(error)}") from error


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def _listing(items: list[str]) -> str:
    more = f" and {len(items) - SHOWN} more" if len(items) > SHOWN else ""
    return ", ".join(items[:SHOWN]) + more


class _NoAliasLoader(yaml.SafeLoader):
    """Refuses aliases: a few hundred bytes of them expand into gigabytes when compared."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(
                None, None, "YAML aliases are not accepted in crds/", mark
            )
        return super().compose_node(parent, index)
