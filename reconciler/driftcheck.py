"""Reads live drift for a full resync: the adapter between the cluster and `reconciler.drift`.

Only releases that are otherwise in sync are checked (deployed, the reconciler's, at the
desired digest, their record decoded): any other release is re-applied anyway. Costs per
pass: one GET per object of those releases, or one LIST per resource and namespace that
holds many of them (reconciler.liveobjects), one discovery GET per group version, and one
LIST of HorizontalPodAutoscalers (one per namespace in namespaced mode, and per namespace
whose releases run as a ServiceAccount, listed as that account).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from reconciler import log
from reconciler.drift import LiveDrift, hpa_targets, release_drift
from reconciler.errors import KubeError
from reconciler.kube import JsonObject, Kube, Resource, as_release_account
from reconciler.liveobjects import Discovery, read_live_as
from reconciler.manifest import ManifestError, ManifestObject, parse
from reconciler.model import DesiredRelease, DesiredState
from reconciler.observe import ReleaseState

Key = tuple[str, str]
HPAS = Resource("autoscaling/v2", "horizontalpodautoscalers")
# Kinds whose /spec/replicas an autoscaler may own (any kind with a scale subresource can
# be a target; these are the ones charts ship).
SCALABLE = frozenset({"Deployment", "StatefulSet", "ReplicaSet", "ReplicationController"})
# GETs in flight at once: the API server answers them concurrently; one at a time is
# mostly waiting.
WORKERS = 8


def check_drift(
    kube: Kube,
    desired: DesiredState,
    observed: Mapping[Key, ReleaseState],
    namespaces: Collection[str] = (),
) -> dict[Key, LiveDrift]:
    """The live drift of each in-sync release, keyed (namespace, release); releases without
    drift are included (empty `LiveDrift`). Empty when the installation's policy is
    `drift: off`. Never raises for one release: what cannot be read is in `unreadable`."""

    if desired.policy.drift == "off":
        return {}
    manifests: dict[Key, tuple[DesiredRelease, tuple[ManifestObject, ...]]] = {}
    problems: dict[Key, str] = {}
    for release in desired.releases:
        key = (release.namespace, release.name)
        state = observed.get(key)
        if state is None or not _checkable(release, state):
            continue
        try:
            assert state.detail is not None
            manifests[key] = (release, parse(state.detail.manifest, release.namespace))
        except ManifestError as error:
            problems[key] = str(error)
    batches = [(r.namespace, r.service_account, found) for r, found in manifests.values()]
    autoscaled = _autoscaled(kube, batches, namespaces)
    live = read_live_as(kube, batches, Discovery(kube), workers=WORKERS)
    results = {
        key: release_drift(found_live, release.drift_ignore, autoscaled)
        for (key, (release, _)), found_live in zip(manifests.items(), live, strict=True)
    }
    for key, problem in problems.items():
        results[key] = LiveDrift(unreadable=(problem,))
    for (namespace, name), drift in results.items():
        if drift.unreadable:
            # Not drift (nothing is re-applied for it), but not checked either: say so.
            log.warning(
                "live objects not checked",
                release=name,
                namespace=namespace,
                objects=len(drift.unreadable),
                first=drift.unreadable[0],
            )
    return results


def _checkable(release: DesiredRelease, state: ReleaseState) -> bool:
    latest = state.latest
    return (
        latest.status == "deployed"
        and latest.signed
        and latest.digest == release.digest
        and state.detail is not None
        and bool(state.detail.manifest)
    )


def _autoscaled(
    kube: Kube,
    batches: list[tuple[str, str | None, tuple[ManifestObject, ...]]],
    namespaces: Collection[str],
) -> Collection[tuple[str, str, str]]:
    """Workloads an HPA scales, from (release namespace, its ServiceAccount, its objects).

    A namespace whose releases run as a ServiceAccount is listed as that account (in
    lockdown the reconciler has no autoscaling rights of its own); the others as the
    reconciler: one cluster-wide LIST, or one per namespace in namespaced mode. When a
    namespace's HPAs cannot be listed, each of its workloads counts as autoscaled: missing
    a manual scale is better than fighting an autoscaler."""

    accounts: dict[str, str | None] = {}
    workloads: list[ManifestObject] = []
    for home, account, objects in batches:
        for obj in objects:
            if obj.kind in SCALABLE and (not namespaces or obj.namespace in namespaces):
                workloads.append(obj)
                # Objects a chart puts in another namespace are read as their release's
                # account too; the first account named for a namespace lists it.
                if account and not accounts.get(obj.namespace):
                    accounts[obj.namespace] = f"{home}/{account}"
                accounts.setdefault(obj.namespace, None)
    if not workloads:
        return set()
    items: list[JsonObject] = []
    refused: set[str] = set()
    own = sorted(ns for ns, who in accounts.items() if not who)
    if own and not namespaces:
        if not _list_hpas(kube, HPAS.path(), items):
            refused.update(own)
    else:
        refused.update(ns for ns in own if not _list_hpas(kube, HPAS.path(ns), items))
    for ns, who in sorted((ns, who) for ns, who in accounts.items() if who):
        home, _, account = who.partition("/")
        if not _list_hpas(as_release_account(kube, home, account), HPAS.path(ns), items):
            refused.add(ns)
    targets = hpa_targets(items)
    targets.update((o.namespace, o.kind, o.name) for o in workloads if o.namespace in refused)
    return targets


def _list_hpas(kube: Kube, path: str, into: list[JsonObject]) -> bool:
    """Append the HPAs at `path` to `into`; False (logged) when the LIST is refused."""

    try:
        into.extend(kube.list_items(path))
    except KubeError as error:
        log.warning("cannot list HorizontalPodAutoscalers; replicas not checked", error=str(error))
        return False
    return True
