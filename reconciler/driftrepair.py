"""Clears the way for a drift correction: lists edited by hand go back to the manifest's.

helm re-applies a drifted release server-side (helm 4) or with a three-way merge (helm 3);
neither removes a list entry that another field manager added or renumbered (a Service
port given another number keeps its name), so the API server refuses the merged list
(`Duplicate value`) and the correction would fail. Before helm runs, each drifted list is
set back to the manifest's own with one JSON Patch per object (RFC 6902), sent as the
release's ServiceAccount; helm then applies the rest as usual.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from reconciler.drift import LiveDrift, pointer_get, rule_paths, unescape
from reconciler.errors import ReconcilerError
from reconciler.kube import Kube, as_release_account
from reconciler.liveobjects import Discovery
from reconciler.manifest import ManifestError, ManifestObject, parse
from reconciler.model import DriftIgnore
from reconciler.plan import Action, Key

JSON_PATCH = "application/json-patch+json"
# A Secret holds no lists, and its manifest may say stringData where the cluster has data.
NOT_REPAIRED = frozenset({"Secret"})

T = TypeVar("T")

Repairs = Mapping[Key, Sequence[tuple[ManifestObject, list[dict[str, Any]]]]]


def list_patch(
    body: Mapping[str, Any], paths: Sequence[str], ignored: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """JSON Patch operations setting each outermost list that holds a drifted path to the
    manifest's value (`add` replaces an existing member). Paths outside lists: none. A list
    that holds an `ignored` path (a driftIgnore rule's) is left as it is."""

    ops: dict[str, dict[str, Any]] = {}
    for path in paths:
        found = _outermost_list(body, path)
        if found is None:
            continue
        prefix, value = found
        if any(p.startswith(prefix + "/") or prefix.startswith(p + "/") for p in ignored):
            continue
        if any(prefix == p or prefix.startswith(p + "/") for p in ops):
            continue
        ops[prefix] = {"op": "add", "path": prefix, "value": value}
    return list(ops.values())


def _outermost_list(body: Mapping[str, Any], path: str) -> tuple[str, Any] | None:
    node: Any = body
    walked = ""
    for token in path.split("/")[1:]:
        if isinstance(node, list) and walked:
            return walked, node
        key = unescape(token)
        if isinstance(node, Mapping) and key in node:
            node = node[key]
        elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        else:
            return None
        walked += "/" + token
    return (walked, node) if isinstance(node, list) and walked else None


def repairs_of(
    drifted: Mapping[Key, LiveDrift],
    manifests: Mapping[Key, str],
    rules: Mapping[Key, Sequence[DriftIgnore]] | None = None,
) -> dict[Key, list[tuple[ManifestObject, list[dict[str, Any]]]]]:
    """For each drifted release, the objects whose lists must be set back, with the ops.
    `manifests`: the deployed manifest of each release (the text helm recorded); `rules`:
    each release's driftIgnore rules (a list holding an ignored path is not set back)."""

    found: dict[Key, list[tuple[ManifestObject, list[dict[str, Any]]]]] = {}
    for key, drift in drifted.items():
        edited = {o.ref: o.paths for o in drift.objects if not o.missing and o.paths}
        if not edited or key not in manifests:
            continue
        try:
            objects = parse(manifests[key], key[0])
        except ManifestError:
            continue  # drift could not have been found in it either
        for obj in objects:
            ignored = _ignored(obj, (rules or {}).get(key, ()))
            ops = list_patch(obj.body, edited.get(obj.ref, ()), ignored)
            if ops and obj.kind not in NOT_REPAIRED:
                found.setdefault(key, []).append((obj, ops))
    return found


def repair_step(kube: Kube | None, repairs: Repairs) -> Callable[[Action, Path | None], str]:
    """An `execute` `prepare` hook: before a correction's helm upgrade, patch its drifted
    lists back. Raises ReconcilerError (failing the attempt before helm runs) when the API
    server refuses a patch."""

    planned = _with_api_paths(kube, repairs)

    def prepare(action: Action, archive: Path | None) -> str:
        if kube is None or not action.correction:
            return ""
        acting = as_release_account(kube, action.namespace, action.service_account)
        done = []
        for ref, path, ops in planned.get(action.key, ()):
            try:
                acting.request("PATCH", path, body=ops, content_type=JSON_PATCH)
            except ReconcilerError as error:
                raise ReconcilerError(f"cannot set back the lists of {ref}: {error}") from None
            done.append(ref)
        return f"lists set back to the chart's in {', '.join(done)}" if done else ""

    return prepare


def _with_api_paths(
    kube: Kube | None, found: Mapping[Key, Sequence[tuple[ManifestObject, T]]]
) -> dict[Key, list[tuple[str, str, T]]]:
    """Each object's (ref, API path, payload), per release; objects of kinds the cluster does
    not serve are left out. Resolved here, once: Discovery is not thread-safe and releases
    run in parallel."""

    planned: dict[Key, list[tuple[str, str, T]]] = {}
    if kube is None:
        return planned
    discovery = Discovery(kube)
    for key, objects in found.items():
        for obj, payload in objects:
            where = discovery.resolve(obj.api_version, obj.kind)
            if where is not None:
                planned.setdefault(key, []).append(
                    (obj.ref, where.path(obj.namespace, obj.name), payload)
                )
    return planned


def _ignored(obj: ManifestObject, rules: Sequence[DriftIgnore]) -> list[str]:
    return rule_paths(rules, obj.kind, obj.name)


def kept_of(
    drifted: Iterable[Key],
    manifests: Mapping[Key, str],
    rules: Mapping[Key, Sequence[DriftIgnore]],
) -> dict[Key, list[tuple[ManifestObject, list[str]]]]:
    """For each drifted release, the objects whose driftIgnore'd paths the chart sets (a
    correction's helm upgrade resets them), with those paths."""

    found: dict[Key, list[tuple[ManifestObject, list[str]]]] = {}
    for key in drifted:
        if not rules.get(key) or key not in manifests:
            continue
        try:
            objects = parse(manifests[key], key[0])
        except ManifestError:
            continue
        for obj in objects:
            paths = [p for p in _ignored(obj, rules[key]) if pointer_get(obj.body, p)[0]]
            if paths:
                found.setdefault(key, []).append((obj, paths))
    return found


def keep_steps(
    kube: Kube | None, kept: Mapping[Key, Sequence[tuple[ManifestObject, list[str]]]]
) -> tuple[Callable[[Action, Path | None], str], Callable[[Action], None]]:
    """(`prepare` hook, `verify` hook) keeping driftIgnore'd fields through a correction:
    before helm, their live values are read; after helm's upgrade, set back with one JSON
    Patch per object, as the release's ServiceAccount. Raises ReconcilerError (failing the
    attempt) when the API server refuses a read or patch."""

    planned = _with_api_paths(kube, kept)
    saved: dict[Key, list[tuple[str, str, list[dict[str, Any]]]]] = {}

    def before(action: Action, archive: Path | None) -> str:
        if kube is None or not action.correction:
            return ""
        acting = as_release_account(kube, action.namespace, action.service_account)
        ops = []
        for ref, path, paths in planned.get(action.key, ()):
            try:
                live = acting.get(path)
            except ReconcilerError as error:
                raise ReconcilerError(
                    f"cannot read {ref} to keep its driftIgnore'd fields: {error}"
                ) from None
            if live is not None:
                ops.append((ref, path, [_keep(live, p) for p in paths]))
        saved[action.key] = ops
        return ""

    def after(action: Action) -> None:
        if kube is None or not action.correction:
            return
        acting = as_release_account(kube, action.namespace, action.service_account)
        for ref, path, ops in saved.pop(action.key, ()):
            try:
                acting.request("PATCH", path, body=ops, content_type=JSON_PATCH)
            except ReconcilerError as error:
                raise ReconcilerError(
                    f"cannot set back the driftIgnore'd fields of {ref}: {error}"
                ) from None

    return before, after


def _keep(live: Mapping[str, Any], path: str) -> dict[str, Any]:
    """The JSON Patch operation that sets `path` back to its live value (or removes it)."""

    found, value = pointer_get(live, path)
    return {"op": "add", "path": path, "value": value} if found else {"op": "remove", "path": path}
