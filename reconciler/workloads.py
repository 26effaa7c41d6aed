"""Reads a release's health from the cluster: its objects' live state, judged by
`reconciler.health`, once (a full resync) or until healthy (after an install or upgrade).

Every read goes through the `Kube` given, so a caller may pass one that impersonates
the release's service account.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from reconciler.errors import KubeError, ReconcilerError
from reconciler.health import (
    ObjectRef,
    ObjectResult,
    ReleaseHealth,
    object_status,
    owns_pods,
    pod_selector,
    release_health,
    workload_status,
)
from reconciler.kube import Kube, Resource, as_release_account
from reconciler.liveobjects import Discovery, LiveObject, read_live
from reconciler.manifest import ManifestObject, parse_record
from reconciler.observe import latest_record
from reconciler.plan import Action

PODS = Resource("v1", "pods")
FIRST_POLL = 0.5  # seconds; a small release is often ready within a second or two
MAX_POLL = 3.0


def judge_live(
    kube: Kube, found: Sequence[LiveObject], now: datetime | None = None
) -> ReleaseHealth:
    """The release's health from objects already read (`reconciler.liveobjects.read_live`),
    plus one Pod LIST per workload that is not ready."""

    now = now or datetime.now(UTC)
    return release_health(_judge(kube, item, now) for item in found)


def wait_healthy(
    kube: Kube,
    objects: Sequence[ManifestObject],
    timeout_seconds: float,
    cancelled: Callable[[], bool] = lambda: False,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> ReleaseHealth:
    """Poll until every object is ready or `timeout_seconds` pass (or `cancelled()`);
    the health at the end. Objects found ready are not read again."""

    deadline = clock() + timeout_seconds
    discovery = Discovery(kube)
    waiting = list(objects)
    delay = FIRST_POLL
    while True:
        results = _judge_all(kube, waiting, discovery, None)
        health = release_health(results)
        if health.healthy:
            return health
        left = deadline - clock()
        if left <= 0 or cancelled():
            return health
        unready = {(r.ref.kind, r.ref.namespace, r.ref.name) for r in health.unhealthy}
        waiting = [o for o in waiting if (o.kind, o.namespace, o.name) in unready]
        sleep(min(delay, left))
        delay = min(delay * 1.5, MAX_POLL)


def release_objects(kube: Kube, namespace: str, release: str) -> tuple[ManifestObject, ...]:
    """The objects of the release's latest revision (two GETs: its number, its record)."""

    record = latest_record(kube, namespace, release)
    if record is None:
        raise ReconcilerError(f"release {namespace}/{release} has no revision to check")
    return parse_record(record)


@dataclass
class HealthVerifier:
    """The `verify` hook of `reconciler.execute.execute`: after helm installed or upgraded
    a release, wait up to `timeout_seconds` for its objects to be ready; raise a
    ReconcilerError naming the unready ones otherwise. `records` reads the release record,
    `live` the objects; `on_health(namespace, release, health)` hears each final verdict."""

    records: Kube
    timeout_seconds: float
    live: Kube | None = None
    on_health: Callable[[str, str, ReleaseHealth], None] = lambda ns, name, health: None
    cancelled: Callable[[], bool] = lambda: False

    def __call__(self, action: Action) -> None:
        objects = release_objects(self.records, action.namespace, action.release)
        # Read as the account helm ran as: in lockdown the reconciler cannot read them itself.
        live = as_release_account(
            self.live or self.records, action.namespace, action.service_account
        )
        health = wait_healthy(live, objects, self.timeout_seconds, self.cancelled)
        self.on_health(action.namespace, action.release, health)
        if health.healthy:
            return
        if self.cancelled():
            raise ReconcilerError(f"interrupted before the release was healthy: {health.summary()}")
        raise ReconcilerError(
            f"not healthy within {self.timeout_seconds:g}s (timeoutSeconds): {health.summary()}"
        )


def _judge_all(
    kube: Kube,
    objects: Sequence[ManifestObject],
    discovery: Discovery,
    now: datetime | None,
) -> list[ObjectResult]:
    now = now or datetime.now(UTC)
    return [_judge(kube, found, now) for found in read_live(kube, objects, discovery)]


def _judge(kube: Kube, found: LiveObject, now: datetime) -> ObjectResult:
    obj = found.obj
    ref = ObjectRef(obj.api_version, obj.kind, obj.namespace, obj.name)
    if found.missing:
        return ObjectResult(ref, "NotFound", "not found")
    if found.live is None:
        return ObjectResult(ref, "InProgress", f"cannot read it: {found.error}")
    status, message = object_status(found.live, now)
    if status == "InProgress" and owns_pods(ref):
        status, message = workload_status(found.live, _pods(kube, ref, found.live), now)
    return ObjectResult(ref, status, message)


def _pods(kube: Kube, ref: ObjectRef, live: Mapping[str, Any]) -> list[Any]:
    """The workload's Pods, to tell a crash loop from a slow start; none when its
    selector cannot be said as a label selector or Pods may not be listed."""

    selector = pod_selector(live)
    if selector is None or not ref.namespace:
        return []
    try:
        return list(kube.list_items(PODS.path(ref.namespace), selector, page_size=100))
    except KubeError:
        return []
