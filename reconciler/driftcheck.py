"""Live drift for a full resync: judges the pass's live state (reconciler.livestate, read
once for drift and health) with `reconciler.drift`.

Only releases that are otherwise in sync are checked (deployed, the reconciler's, at the
desired digest, their record decoded): any other release is re-applied anyway. Costs per
pass beyond the live state: one LIST of HorizontalPodAutoscalers (one per namespace in
namespaced mode, and per namespace whose releases run as a ServiceAccount, listed as that
account).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping

from reconciler import log
from reconciler.drift import LiveDrift, hpa_targets, release_drift
from reconciler.errors import KubeError
from reconciler.kube import JsonObject, Kube, Resource, as_release_account
from reconciler.liveobjects import LiveObject
from reconciler.livestate import LiveState
from reconciler.manifest import ManifestObject
from reconciler.model import DesiredRelease, DesiredState
from reconciler.observe import ReleaseState

Key = tuple[str, str]
HPAS = Resource("autoscaling/v2", "horizontalpodautoscalers")
# Kinds whose /spec/replicas an autoscaler may own (any kind with a scale subresource can
# be a target; these are the ones charts ship).
SCALABLE = frozenset({"Deployment", "StatefulSet", "ReplicaSet", "ReplicationController"})


def check_drift(
    kube: Kube,
    desired: DesiredState,
    observed: Mapping[Key, ReleaseState],
    live: LiveState,
    namespaces: Collection[str] = (),
    *,
    mask: Callable[[str], str],
) -> dict[Key, LiveDrift]:
    """The live drift of each in-sync release, keyed (namespace, release), judged from the
    pass's live state (reconciler.livestate); releases without drift are included (empty
    `LiveDrift`). Empty when the installation's policy is `drift: off`. Never raises for one
    release: what cannot be read is in `unreadable`. The results are unmasked (the planner
    masks them); `mask` hides Secret-sourced values in what is logged here."""

    if desired.policy.drift == "off":
        return {}
    checked: dict[Key, tuple[DesiredRelease, tuple[LiveObject, ...]]] = {}
    results: dict[Key, LiveDrift] = {}
    for release in desired.releases:
        key = (release.namespace, release.name)
        state = observed.get(key)
        if state is None or not _checkable(release, state):
            continue
        if key in live.problems or key not in live.found:
            results[key] = LiveDrift(unreadable=(live.problems.get(key, "not read"),))
        else:
            checked[key] = (release, live.found[key])
    batches = [
        (r.namespace, r.service_account, tuple(f.obj for f in found))
        for r, found in checked.values()
    ]
    autoscaled = _autoscaled(kube, batches, namespaces)
    for key, (release, found) in checked.items():
        results[key] = release_drift(list(found), release.drift_ignore, autoscaled)
    for (namespace, name), drift in results.items():
        if drift.unreadable:
            # Not drift (nothing is re-applied for it), but not checked either: say so.
            log.warning(
                "live objects not checked",
                release=name,
                namespace=namespace,
                objects=len(drift.unreadable),
                first=mask(drift.unreadable[0]),
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
