"""The live state of a full resync's releases: each deployed release's objects, read once.

Live drift (reconciler.driftcheck) and health (reconciler.workloads) both judge a release's
objects as the cluster holds them; a full resync reads them here once and gives both the
same reads. Costs: the manifest comes from the record decoded this pass (else one GET of
it); the objects of all releases are read together, as the account helm runs each release
as (reconciler.liveobjects: one LIST per resource and namespace holding many of them, else
one GET per object, `WORKERS` at a time) plus one discovery GET per group version.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field

from reconciler import log
from reconciler.errors import ReconcilerError
from reconciler.kube import Kube
from reconciler.liveobjects import Discovery, LiveObject, read_live_as
from reconciler.manifest import ManifestObject, parse, parse_record
from reconciler.model import DesiredState
from reconciler.observe import ReleaseState, read_record

Key = tuple[str, str]
# GETs in flight at once: the API server answers them concurrently; one at a time is
# mostly waiting.
WORKERS = 8


@dataclass(frozen=True)
class LiveState:
    """`found`: each read release's objects, manifest order, with what the cluster holds.
    `problems`: releases whose manifest could not be read (why, one line each)."""

    found: Mapping[Key, tuple[LiveObject, ...]] = field(default_factory=dict)
    problems: Mapping[Key, str] = field(default_factory=dict)


def read_live_state(
    kube: Kube,
    desired: DesiredState,
    observed: Mapping[Key, ReleaseState],
    only: Collection[Key] | None = None,
    *,
    mask: Callable[[str], str],
) -> LiveState:
    """The live objects of every declared release whose latest revision is deployed (or of
    those in `only`). Never raises for one release: see `problems`. `mask` hides
    Secret-sourced values in what is logged (an error may quote the manifest)."""

    manifests: dict[Key, tuple[ManifestObject, ...]] = {}
    problems: dict[Key, str] = {}
    accounts: dict[Key, str | None] = {}
    for release in desired.releases:
        key = (release.namespace, release.name)
        state = observed.get(key)
        if (
            state is None
            or state.latest.status != "deployed"
            or (only is not None and key not in only)
        ):
            continue
        accounts[key] = release.service_account
        try:
            manifests[key] = _manifest_objects(kube, state)
        except ReconcilerError as error:
            problems[key] = str(error)
            log.warning(
                "cannot read a release's objects", release=release.name, error=mask(str(error))
            )
    batches = [(key[0], accounts[key], objects) for key, objects in manifests.items()]
    live = read_live_as(kube, batches, Discovery(kube), workers=WORKERS)
    found = {key: tuple(objects) for key, objects in zip(manifests, live, strict=True)}
    return LiveState(found, problems)


def _manifest_objects(kube: Kube, state: ReleaseState) -> tuple[ManifestObject, ...]:
    detail = state.detail
    if detail is not None and detail.manifest:
        return parse(detail.manifest, state.namespace)
    record = read_record(kube, state.namespace, state.latest.secret)
    return parse_record(record) if record is not None else ()
