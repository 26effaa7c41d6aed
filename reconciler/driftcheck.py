"""Reads live drift for a full resync: the adapter between the cluster and `reconciler.drift`.

Only releases that are otherwise in sync are checked (deployed, the reconciler's, at the
desired digest, their record decoded): any other release is re-applied anyway. Costs per
pass: one GET per object of those releases, or one LIST per resource and namespace that
holds many of them (reconciler.liveobjects), one discovery GET per group version, and one
LIST of HorizontalPodAutoscalers (one per namespace in namespaced mode).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from reconciler import log
from reconciler.drift import LiveDrift, hpa_targets, release_drift
from reconciler.errors import KubeError
from reconciler.kube import Kube, Resource
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
    objects = [obj for _, found in manifests.values() for obj in found]
    autoscaled = _autoscaled(kube, objects, namespaces)
    batches = [(r.namespace, r.service_account, found) for r, found in manifests.values()]
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
    kube: Kube, objects: list[ManifestObject], namespaces: Collection[str]
) -> Collection[tuple[str, str, str]]:
    """Workloads an HPA scales. When the HPAs cannot be listed, every workload counts as
    autoscaled: missing a manual scale is better than fighting an autoscaler."""

    workloads = [o for o in objects if o.kind in SCALABLE]
    if not workloads:
        return set()
    try:
        if namespaces:
            wanted = sorted({o.namespace for o in workloads} & set(namespaces))
            items = [item for ns in wanted for item in kube.list_items(HPAS.path(ns))]
        else:
            items = list(kube.list_items(HPAS.path()))
    except KubeError as error:
        log.warning("cannot list HorizontalPodAutoscalers; replicas not checked", error=str(error))
        return {(o.namespace, o.kind, o.name) for o in workloads}
    return hpa_targets(items)
