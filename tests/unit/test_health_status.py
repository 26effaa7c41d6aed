"""Health and failed-check revisions survive the status ConfigMap (a new process, a new leader)."""

from __future__ import annotations

from datetime import UTC, datetime

from reconciler.health import ObjectRef, ObjectResult, ReleaseHealth, masked
from reconciler.model import ChartRef, DesiredRelease, DesiredState, Policy
from reconciler.plan import Failure, Plan
from reconciler.status import failures_from, health_from, status_document

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
CHART = ChartRef("oci://registry.local/charts", "web", "1.0.0")


def test_health_and_the_unverified_revision_round_trip() -> None:
    release = DesiredRelease("web", "apps", "web", CHART, {})
    desired = DesiredState("prod", "c0ffee", Policy(), (release,))
    the_plan = Plan("prod", "c0ffee", (), in_sync=(("apps", "web"),))
    slow = ObjectResult(
        ObjectRef("apps/v1", "Deployment", "apps", "web"), "InProgress", "Ready: 0/2"
    )
    health = {("apps", "web"): ReleaseHealth("Progressing", (slow,))}
    failures = {("apps", "web"): Failure(release.digest, 1, NOW, "not healthy", 3)}

    document = status_document(desired, {}, the_plan, [], failures, NOW, health=health)

    (row,) = document["releases"]
    assert row["health"] == "Progressing"
    assert row["unhealthy"] == [
        {"kind": "Deployment", "namespace": "apps", "name": "web", "status": "InProgress",
         "message": "Ready: 0/2"}
    ]  # fmt: skip
    restored = health_from(document)[("apps", "web")]
    assert restored.health == "Progressing"
    assert str(restored.unhealthy[0]) == "Deployment apps/web: Ready: 0/2"
    assert failures_from(document)[("apps", "web")].revision == 3
    unknown = status_document(desired, {}, the_plan, [], {}, NOW)
    assert unknown["releases"][0]["health"] == ""
    assert health_from(unknown) == {}


def test_a_hand_written_status_entry_is_ignored_not_fatal() -> None:
    document = {
        "releases": [{"namespace": "a", "release": "b", "health": "Fine"}, "junk"],
        "failures": [{"namespace": "a", "release": "b", "digest": "d", "attempts": 1,
                      "last": NOW.isoformat(), "revision": "3"}],
    }  # fmt: skip
    assert health_from(document) == {}
    assert failures_from(document)[("a", "b")].revision is None


def test_messages_are_masked() -> None:
    leak = ObjectResult(ObjectRef("v1", "Thing", "a", "t"), "InProgress", "token hunter2-secret")
    shown = masked(
        ReleaseHealth("Progressing", (leak,)), lambda t: t.replace("hunter2-secret", "***")
    )
    assert shown.unhealthy[0].message == "token ***"
