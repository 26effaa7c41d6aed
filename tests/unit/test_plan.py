"""The planner as a table: observed state -> expected action, with its reason."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from reconciler.drift import LiveDrift, ObjectDrift
from reconciler.errors import ReconcilerError
from reconciler.model import (
    LABEL_INSTALLATION,
    LABEL_MANAGED_BY,
    MANAGED_BY,
    ChartRef,
    DesiredRelease,
    DesiredState,
    DriftIgnore,
    Policy,
)
from reconciler.observe import ReleaseDetail, ReleaseState, Revision
from reconciler.plan import Failure, Options, changed_paths, plan, topological

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
CHART = ChartRef("oci://registry.local/charts", "web", "1.0.0-gbbbbbbb")
OLD_CHART = ChartRef("oci://registry.local/charts", "web", "1.0.0-gaaaaaaa")
OURS = {LABEL_MANAGED_BY: MANAGED_BY, LABEL_INSTALLATION: "prod"}


def desired(*releases: DesiredRelease, policy: Policy | None = None) -> DesiredState:
    return DesiredState("prod", "c0ffee" * 6 + "beef", policy or Policy(), releases)


def release(
    name: str = "api",
    values: dict | None = None,
    deps: tuple[str, ...] = (),
    chart: ChartRef = CHART,
) -> DesiredRelease:
    return DesiredRelease(
        name, "apps", "api", chart, values if values is not None else {"replicas": 2}, deps
    )


def state(
    name: str = "api",
    revisions: tuple[tuple[int, str, str | None, datetime], ...] = (),
    detail: ReleaseDetail | None = None,
    labels: dict[str, str] | None = None,
    proven: bool | None = None,
) -> ReleaseState:
    """Revisions are signed and proven ours unless `labels` say otherwise or `proven` is False."""

    ours = labels is None if proven is None else proven
    revs = tuple(
        Revision(n, status, f"sh.helm.release.v1.{name}.v{n}", digest, at, ours, ours)
        for n, status, digest, at in revisions
    )
    return ReleaseState(name, "apps", revs, labels if labels is not None else OURS, detail)


def deployed(rel: DesiredRelease, number: int = 3) -> ReleaseState:
    return state(rel.name, ((number, "deployed", rel.digest, NOW - timedelta(hours=1)),))


def test_missing_release_is_installed() -> None:
    result = plan(desired(release()), {}, NOW)
    assert [(a.kind, a.release, a.reason) for a in result.actions] == [
        ("install", "api", "not installed")
    ]
    assert result.changes_pending


def test_release_in_sync_needs_nothing() -> None:
    rel = release()
    result = plan(desired(rel), {("apps", "api"): deployed(rel)}, NOW)
    assert result.actions == ()
    assert result.in_sync == (("apps", "api"),)
    assert not result.changes_pending


def test_version_change_names_both_versions() -> None:
    rel = release()
    old = release(chart=OLD_CHART)
    detail = ReleaseDetail("web", OLD_CHART.version, "", {"replicas": 2}, "")
    observed = {
        ("apps", "api"): state(revisions=((3, "deployed", old.digest, NOW),), detail=detail)
    }
    (action,) = plan(desired(rel), observed, NOW).actions
    assert action.kind == "upgrade"
    assert action.reason == "chart 1.0.0-gaaaaaaa -> 1.0.0-gbbbbbbb"


def test_values_change_lists_changed_keys() -> None:
    rel = release(values={"replicas": 3, "image": {"tag": "v2"}})
    old = release(values={"replicas": 2, "image": {"tag": "v1"}})
    detail = ReleaseDetail("web", CHART.version, "", old.values, "")
    observed = {
        ("apps", "api"): state(revisions=((3, "deployed", old.digest, NOW),), detail=detail)
    }
    (action,) = plan(desired(rel), observed, NOW).actions
    assert action.reason == "values changed: image.tag, replicas"


def test_drift_found_only_when_the_record_was_decoded() -> None:
    rel = release()
    by_hand = ReleaseDetail("web", CHART.version, "", {"replicas": 9}, "")
    labels_only = deployed(rel)
    decoded = state(revisions=((3, "deployed", rel.digest, NOW),), detail=by_hand)
    assert plan(desired(rel), {("apps", "api"): labels_only}, NOW).actions == ()
    (action,) = plan(desired(rel), {("apps", "api"): decoded}, NOW).actions
    assert action.reason == "drifted in the cluster: values differ: replicas"


def test_failed_release_is_upgraded_when_the_desired_state_is_new() -> None:
    rel = release()
    observed = {("apps", "api"): state(revisions=((4, "failed", "other-digest", NOW),))}
    (action,) = plan(desired(rel), observed, NOW).actions
    assert (action.kind, action.reason) == ("upgrade", "release failed at revision 4")


def test_failure_at_the_same_digest_waits_for_backoff_then_retries_then_gives_up() -> None:
    rel = release()
    policy = Policy(retries=2, retry_backoff_seconds=60)
    one_failure = state(revisions=((4, "failed", rel.digest, NOW - timedelta(seconds=30)),))
    (hold,) = plan(desired(rel, policy=policy), {("apps", "api"): one_failure}, NOW).held
    assert "retry 1/2 in 31s" in hold.reason
    assert not hold.gave_up, "a retry is still to come"

    later = NOW + timedelta(seconds=31)
    (action,) = plan(desired(rel, policy=policy), {("apps", "api"): one_failure}, later).actions
    assert action.reason.endswith("(retry 1/2)")

    three = state(
        revisions=tuple((n, "failed", rel.digest, NOW - timedelta(hours=2)) for n in (4, 5, 6)),
    )
    kept = dataclasses.replace(policy, remediation="none")  # else its uninstall is planned
    result = plan(desired(rel, policy=kept), {("apps", "api"): three}, NOW)
    assert result.actions == ()
    assert "waiting for a change to this release or --force-retry" in result.held[0].reason
    assert result.held[0].gave_up
    forced = plan(
        desired(rel, policy=policy),
        {("apps", "api"): three},
        NOW,
        options=Options(force_retry=True),
    )
    assert [a.kind for a in forced.actions] == ["upgrade"]


def test_a_release_waiting_on_one_that_gave_up_has_given_up_too() -> None:
    api = release()
    web = release("web", deps=("api",))
    policy = Policy(retries=1, retry_backoff_seconds=60, remediation="none")

    def held_after(*failed_at: datetime) -> dict[str, bool]:
        revisions = tuple((n, "failed", api.digest, at) for n, at in enumerate(failed_at, 4))
        observed = {("apps", "api"): state(revisions=revisions)}
        result = plan(desired(api, web, policy=policy), observed, NOW)
        return {h.release: h.gave_up for h in result.held}

    assert held_after(NOW - timedelta(seconds=30)) == {"api": False, "web": False}
    two_hours_ago = NOW - timedelta(hours=2)
    assert held_after(two_hours_ago, two_hours_ago) == {"api": True, "web": True}


def test_remembered_failure_holds_after_helm_history_is_gone() -> None:
    rel = release()
    memory = {("apps", "api"): Failure(rel.digest, 3, NOW - timedelta(minutes=1))}
    result = plan(desired(rel, policy=Policy(retries=2)), {}, NOW, memory)
    assert result.actions == ()
    assert "failed 3 time(s)" in result.held[0].reason


def test_rolled_back_release_is_not_retried_at_the_failed_digest() -> None:
    rel = release()
    old = release(values={"replicas": 1})
    history = (
        (3, "failed", rel.digest, NOW - timedelta(hours=2)),
        (4, "deployed", old.digest, NOW - timedelta(hours=2)),
    )
    observed = state(revisions=history)
    # Revision 4 is the reconciler's rollback of the failure to revision 2.
    rolled = dataclasses.replace(observed.revisions[1], rollback_of=2)
    observed = dataclasses.replace(observed, revisions=(observed.revisions[0], rolled))
    result = plan(desired(rel, policy=Policy(retries=0)), {("apps", "api"): observed}, NOW)
    assert result.actions == ()
    assert result.held[0].release == "api"


def test_recent_pending_is_left_alone() -> None:
    rel = release()
    observed = {
        ("apps", "api"): state(
            revisions=(
                (2, "deployed", rel.digest, NOW),
                (3, "pending-upgrade", rel.digest, NOW - timedelta(seconds=40)),
            )
        )
    }
    result = plan(desired(rel), observed, NOW)
    assert result.actions == ()
    assert (
        result.held[0].reason
        == "pending-upgrade for 40s at revision 3; another operation may be running"
    )


def test_stale_pending_upgrade_is_unlocked_by_rollback_then_upgraded() -> None:
    rel = release()
    observed = {
        ("apps", "api"): state(
            revisions=(
                (2, "deployed", "x", NOW),
                (3, "pending-upgrade", rel.digest, NOW - timedelta(minutes=12)),
            )
        )
    }
    actions = plan(desired(rel, policy=Policy(pending_timeout_seconds=300)), observed, NOW).actions
    assert [(a.kind, a.revision, a.rollback_to) for a in actions] == [
        ("unlock", 2, None),
        ("upgrade", 4, 2),
    ], "the upgrade follows the unlock's rollback (revision 4) and falls back to revision 2"
    assert actions[0].reason == "pending-upgrade for 12m at revision 3"


def test_stale_pending_install_is_unlocked_by_uninstall() -> None:
    rel = release()
    observed = {
        ("apps", "api"): state(
            revisions=((1, "pending-install", rel.digest, NOW - timedelta(hours=1)),)
        )
    }
    actions = plan(desired(rel), observed, NOW).actions
    assert [(a.kind, a.revision) for a in actions] == [("unlock", None), ("upgrade", None)]


NC_DETAIL = ReleaseDetail("nc", "9.9.9", "", {}, "Install complete")


@pytest.mark.parametrize(
    ("labels", "owner"),
    [
        ({}, "installed outside reconciler"),
        ({**OURS, LABEL_INSTALLATION: "dev"}, "managed by installation dev"),
        (OURS, "does not carry the reconciler's signature"),
    ],
)
def test_release_that_is_not_ours_is_held_naming_chart_and_owner(
    labels: dict[str, str], owner: str
) -> None:
    rel = release()
    foreign = state(revisions=((1, "deployed", None, NOW),), labels=labels, proven=False)
    observed = {("apps", "api"): dataclasses.replace(foreign, detail=NC_DETAIL)}
    result = plan(desired(rel), observed, NOW)
    assert result.actions == ()
    (hold,) = result.held
    assert "not ours" in hold.reason
    assert "chart nc 9.9.9" in hold.reason
    assert owner in hold.reason
    assert "adopt: true" in hold.reason
    assert "--adopt apps/api" in hold.reason
    assert hold.gave_up, "only a person lifts it: final for GitHub deployment statuses"


@pytest.mark.parametrize("how", ["field", "flag"])
def test_adoption_is_explicit_and_shows_the_chart_change(how: str) -> None:
    rel = dataclasses.replace(release(), adopt=how == "field")
    options = Options(adopt=frozenset({"apps/api"})) if how == "flag" else Options()
    foreign = state(revisions=((1, "deployed", None, NOW),), labels={}, proven=False)
    observed = {("apps", "api"): dataclasses.replace(foreign, detail=NC_DETAIL)}
    (action,) = plan(desired(rel), observed, NOW, options=options).actions
    assert action.kind == "upgrade"
    assert action.reason == (
        "adopt: chart nc 9.9.9 -> web 1.0.0-gbbbbbbb (was installed outside reconciler)"
    )


def ours(name: str) -> ReleaseState:
    return state(name, ((1, "deployed", "d", NOW),))


def test_prune_only_ours_and_only_when_policy_allows() -> None:
    keep = release("keep")
    observed = {
        ("apps", "keep"): deployed(keep),
        ("apps", "gone"): ours("gone"),
        ("apps", "foreign"): state("foreign", ((1, "deployed", None, NOW),), labels={}),
        ("apps", "other-inst"): state(
            "other-inst", ((1, "deployed", "d", NOW),), labels={**OURS, LABEL_INSTALLATION: "dev"}
        ),
    }
    off = plan(desired(keep), observed, NOW)
    assert off.actions == ()
    assert [h.release for h in off.held] == ["gone"]
    on = plan(desired(keep, policy=Policy(prune=True, max_prune_share=0.5)), observed, NOW)
    assert [(a.kind, a.release) for a in on.actions] == [("uninstall", "gone")]


def test_pruning_most_releases_at_once_is_refused_unless_forced() -> None:
    keep = release("keep")
    observed = {("apps", "keep"): deployed(keep)} | {
        ("apps", f"r{i}"): ours(f"r{i}") for i in range(4)
    }
    policy = Policy(prune=True, max_prune_share=0.25)
    refused = plan(desired(keep, policy=policy), observed, NOW)
    assert refused.actions == ()
    assert (
        "prune refused: would remove 4 of 5 managed releases (80% > policy.maxPruneShare 25%)"
        in refused.held[0].reason
    )
    forced = plan(desired(keep, policy=policy), observed, NOW, options=Options(force_prune=True))
    assert sorted(a.release for a in forced.actions) == ["r0", "r1", "r2", "r3"]


def test_dependencies_come_first_and_are_waited_for() -> None:
    db = release("db")
    api = release("api", deps=("db",))
    web = release("web", deps=("api",))
    result = plan(desired(web, api, db), {}, NOW)
    assert [a.release for a in result.actions] == ["db", "api", "web"]
    assert [a.depends_on for a in result.actions] == [(), ("db",), ("api",)]


def test_dependency_in_sync_is_not_waited_for() -> None:
    db = release("db")
    api = release("api", deps=("db",))
    result = plan(desired(api, db), {("apps", "db"): deployed(db)}, NOW)
    assert [(a.release, a.depends_on) for a in result.actions] == [("api", ())]


def test_dependents_of_a_held_release_are_held() -> None:
    db = release("db")
    api = release("api", deps=("db",))
    stuck = state("db", ((1, "pending-install", db.digest, NOW),))
    result = plan(desired(api, db), {("apps", "db"): stuck}, NOW)
    assert result.actions == ()
    assert [(h.release, h.reason) for h in result.held][1] == (
        "api",
        "waiting for db (held this pass)",
    )


def test_cycle_is_refused() -> None:
    with pytest.raises(ReconcilerError, match="dependsOn cycle: a -> b -> a"):
        topological([release("a", deps=("b",)), release("b", deps=("a",))])


@pytest.mark.parametrize(
    ("old", "new", "paths"),
    [
        ({"a": 1}, {"a": 1}, []),
        ({"a": 1}, {"a": 2}, ["a"]),
        ({"a": {"b": 1, "c": 2}}, {"a": {"b": 1, "c": 3}}, ["a.c"]),
        ({"a": [1, 2]}, {"a": [1]}, ["a"]),
        ({}, {"x": None}, ["x"]),
        ({"x": 1}, {}, ["x"]),
    ],
)
def test_changed_paths(old: dict, new: dict, paths: list[str]) -> None:
    assert changed_paths(old, new) == paths


# ----- namespaced mode (--namespaces) -------------------------------------------------------


def in_namespace(namespace: str, item: DesiredRelease | ReleaseState) -> Any:
    return dataclasses.replace(item, namespace=namespace)


def test_namespaced_mode_holds_a_release_declared_outside_its_namespaces() -> None:
    web = release("web")
    api = in_namespace("team-b", release("api"))
    worker = release("worker", deps=("api",))
    result = plan(
        desired(web, api, worker), {}, NOW, options=Options(namespaces=frozenset({"apps"}))
    )
    assert [(a.kind, a.release) for a in result.actions] == [("install", "web")]
    assert [(h.release, h.reason) for h in result.held] == [
        (
            "api",
            "namespace team-b is not in --namespaces (RECONCILER_NAMESPACES); "
            "add it there and to the deploy chart's rbac.namespaces",
        ),
        ("worker", "waiting for api (held this pass)"),
    ]
    assert [h.gave_up for h in result.held] == [True, True], (
        "only a change of --namespaces lifts the first, and so the second that waits on it"
    )


def test_namespaced_mode_holds_releases_whose_namespace_history_is_unreadable() -> None:
    web = release("web")
    api = in_namespace("gone", release("api"))
    options = Options(namespaces=frozenset({"apps", "gone"}))
    result = plan(desired(web, api), {}, NOW, options=options, unreadable={"gone": "forbidden"})
    assert [a.release for a in result.actions] == ["web"]
    (hold,) = result.held
    assert (hold.release, hold.namespace) == ("api", "gone")
    assert hold.reason == (
        "cannot read the Helm release history of namespace gone (forbidden): it does not exist "
        "or the reconciler has no Role there; create it and add it to the deploy chart's "
        "rbac.namespaces"
    )


def test_namespaced_mode_prunes_only_inside_its_namespaces() -> None:
    keep = release("keep")
    outside = in_namespace("elsewhere", ours("outside"))
    observed = {
        ("apps", "keep"): deployed(keep),
        ("apps", "gone"): ours("gone"),
        ("elsewhere", "outside"): outside,
    }
    policy = Policy(prune=True, max_prune_share=0.7)
    scoped = Options(namespaces=frozenset({"apps"}))
    result = plan(desired(keep, policy=policy), observed, NOW, options=scoped)
    assert [(a.kind, a.key) for a in result.actions] == [("uninstall", ("apps", "gone"))]
    assert result.held == ()
    everywhere = plan(desired(keep, policy=policy), observed, NOW)
    assert sorted(a.release for a in everywhere.actions) == ["gone", "outside"], (
        "cluster-wide mode is unchanged"
    )


def test_a_held_release_keeps_its_last_error() -> None:
    rel = release()
    cause = (
        "`helm install api` exited 1: values don't meet the schema:\n- at '/replicas': want integer"
    )
    memory = {("apps", "api"): Failure(rel.digest, 3, NOW - timedelta(minutes=1), cause)}
    (hold,) = plan(desired(rel), {}, NOW, memory).held
    assert hold.gave_up
    assert hold.reason.endswith(f"; last error: {cause}")
    waiting = {("apps", "api"): Failure(rel.digest, 1, NOW - timedelta(seconds=1), cause)}
    (hold,) = plan(desired(rel), {}, NOW, waiting).held
    assert "retry 1/2" in hold.reason
    assert hold.reason.endswith(f"; last error: {cause}")
    moved = {("apps", "api"): Failure("another-digest", 3, NOW, cause)}
    assert "last error" not in str(plan(desired(rel), {}, NOW, moved))


def history_of(*rows: tuple[int, str, str | None, bool]) -> ReleaseState:
    """Revisions as (number, status, digest, proven), two hours old."""

    at = NOW - timedelta(hours=2)
    revs = tuple(
        Revision(n, status, f"sh.helm.release.v1.api.v{n}", digest, at, ok, ok)
        for n, status, digest, ok in rows
    )
    return ReleaseState("api", "apps", revs, OURS)


def test_retry_over_a_failed_latest_falls_back_to_the_last_deployed_revision() -> None:
    rel = release()
    observed = history_of((2, "deployed", "old", True), (3, "failed", rel.digest, True))
    (action,) = plan(
        desired(rel, policy=Policy(retries=2)), {("apps", "api"): observed}, NOW
    ).actions
    assert (action.kind, action.revision, action.rollback_to) == ("upgrade", 3, 2), (
        "remediation targets revision 2 (deployed), never the failed revision 3"
    )


def test_retry_with_no_deployed_revision_has_no_rollback_target() -> None:
    rel = release()
    observed = history_of((1, "failed", rel.digest, True))
    (action,) = plan(desired(rel), {("apps", "api"): observed}, NOW).actions
    assert action.rollback_to is None


def test_stale_pending_is_never_rolled_back_to_a_failed_revision() -> None:
    rel = release()
    observed = history_of(
        (2, "deployed", "old", True),
        (3, "failed", "bad", True),
        (4, "pending-upgrade", rel.digest, True),
    )
    actions = plan(desired(rel), {("apps", "api"): observed}, NOW).actions
    assert next((a.kind, a.revision) for a in actions) == ("unlock", 2)


def test_retries_spent_on_a_failed_latest_plan_its_rollback() -> None:
    rel = release()
    observed = history_of(
        (2, "deployed", "old", True),
        (3, "failed", rel.digest, True),
        (4, "failed", rel.digest, True),
    )
    result = plan(desired(rel, policy=Policy(retries=1)), {("apps", "api"): observed}, NOW)
    (action,) = result.actions
    assert (action.kind, action.revision) == ("rollback", 2)
    assert "retries spent at failed revision 4" in action.reason
    none = plan(
        desired(rel, policy=Policy(retries=1, remediation="none")), {("apps", "api"): observed}, NOW
    )
    assert none.actions == ()
    assert none.held[0].gave_up


def test_failure_count_restarts_when_the_desired_state_moved_on_in_between() -> None:
    rel = release()
    observed = history_of(
        (2, "failed", rel.digest, True),
        (3, "failed", rel.digest, True),
        (4, "deployed", "another", True),
    )
    (action,) = plan(
        desired(rel, policy=Policy(retries=1)), {("apps", "api"): observed}, NOW
    ).actions
    assert action.kind == "upgrade"
    assert "retry" not in action.reason, "the failures before revision 4 were another attempt"


def test_failed_upgrade_by_a_person_is_not_our_attempt() -> None:
    rel = release()
    # Revision 3: `helm upgrade` by hand, which copied our labels from revision 2.
    observed = history_of((2, "deployed", rel.digest, True), (3, "failed", rel.digest, False))
    observed = dataclasses.replace(
        observed,
        revisions=(
            observed.revisions[0],
            dataclasses.replace(observed.revisions[1], signed=True),
        ),
    )
    (action,) = plan(
        desired(rel, policy=Policy(retries=0)), {("apps", "api"): observed}, NOW
    ).actions
    assert action.kind == "upgrade"
    assert "retry" not in action.reason


def test_pending_younger_than_the_helm_timeout_is_never_stale() -> None:
    rel = release()
    observed = history_of((2, "deployed", "old", True), (3, "pending-upgrade", rel.digest, True))
    young = dataclasses.replace(observed.revisions[1], created=NOW - timedelta(seconds=200))
    observed = dataclasses.replace(observed, revisions=(observed.revisions[0], young))
    policy = Policy(timeout_seconds=300, pending_timeout_seconds=60)
    result = plan(desired(rel, policy=policy), {("apps", "api"): observed}, NOW)
    assert result.actions == ()
    assert "another operation may be running" in result.held[0].reason


@pytest.mark.parametrize("forged", ["pending", "deployed"])
def test_unproven_records_are_never_unlocked_or_rolled_back_to(forged: str) -> None:
    rel = release()
    observed = history_of(
        (2, "deployed", "old", forged != "deployed"),
        (3, "pending-upgrade", rel.digest, forged != "pending"),
    )
    if forged == "pending":  # labels copied from a real revision: signed, not proven
        observed = dataclasses.replace(
            observed,
            revisions=(
                observed.revisions[0],
                dataclasses.replace(observed.revisions[1], signed=True),
            ),
        )
    result = plan(desired(rel), {("apps", "api"): observed}, NOW)
    assert result.actions == ()
    assert "by hand" in result.held[0].reason


def test_unproven_release_is_not_pruned() -> None:
    keep = release("keep")
    gone = dataclasses.replace(history_of((1, "deployed", "d", True)), name="gone")
    forged = dataclasses.replace(
        history_of((1, "deployed", "d", False)), name="forged", labels=OURS
    )
    observed = {
        ("apps", "keep"): deployed(keep),
        ("apps", "gone"): gone,
        ("apps", "forged"): forged,
    }
    result = plan(desired(keep, policy=Policy(prune=True, max_prune_share=1)), observed, NOW)
    assert [(a.kind, a.release) for a in result.actions] == [("uninstall", "gone")]
    (hold,) = result.held
    assert hold.release == "forged"
    assert "signature" in hold.reason


def test_retries_spent_on_a_failed_first_install_plan_its_uninstall() -> None:
    rel = release()
    observed = history_of((1, "failed", rel.digest, True), (2, "failed", rel.digest, True))
    result = plan(desired(rel, policy=Policy(retries=1)), {("apps", "api"): observed}, NOW)
    (action,) = result.actions
    assert action.kind == "uninstall"
    assert "retries spent at failed revision 2: uninstall" in action.reason


def test_a_success_at_the_desired_state_ends_the_count() -> None:
    rel = release()
    observed = history_of(
        (2, "failed", rel.digest, True),
        (3, "deployed", rel.digest, True),
        (4, "failed", rel.digest, True),
    )
    (action,) = plan(
        desired(rel, policy=Policy(retries=1)), {("apps", "api"): observed}, NOW
    ).actions
    assert action.reason.endswith("(retry 1/1)")


def test_a_deployed_revision_that_never_worked_is_a_failed_attempt_not_in_sync() -> None:
    """helm deployed revision 3 with the desired digest, but its workloads never became
    healthy and remediation `none` left it: it is retried with backoff, then held."""

    rel = release()
    policy = Policy(retries=1, retry_backoff_seconds=60, remediation="none")
    observed = {("apps", "api"): deployed(rel, number=3)}
    cause = "not healthy within 5s (timeoutSeconds): Progressing: Deployment apps/web: Ready: 0/2"
    once = {("apps", "api"): Failure(rel.digest, 1, NOW - timedelta(seconds=10), cause, 3)}

    waiting = plan(desired(rel, policy=policy), observed, NOW, once)
    assert waiting.in_sync == ()
    (hold,) = waiting.held
    assert "retry 1/1 in 51s" in hold.reason
    assert cause in hold.reason
    assert not hold.gave_up

    (retry,) = plan(desired(rel, policy=policy), observed, NOW + timedelta(minutes=1), once).actions
    assert retry.kind == "upgrade"
    assert retry.reason == "revision 3 was deployed but did not work (retry 1/1)"

    twice = {("apps", "api"): Failure(rel.digest, 2, NOW - timedelta(hours=1), cause, 3)}
    spent = plan(desired(rel, policy=policy), observed, NOW, twice)
    assert spent.actions == ()
    assert spent.in_sync == ()
    assert spent.held[0].gave_up
    assert spent.held[0].last_error == cause


def test_a_failure_of_another_revision_leaves_a_deployed_release_in_sync() -> None:
    rel = release()
    observed = {("apps", "api"): deployed(rel, number=4)}
    # Revision 3 failed its health check; revision 4 (a retry) worked.
    memory = {("apps", "api"): Failure(rel.digest, 1, NOW - timedelta(hours=1), "x", 3)}
    result = plan(desired(rel), observed, NOW, memory)
    assert result.in_sync == (("apps", "api"),)
    helm_failure = {("apps", "api"): Failure(rel.digest, 1, NOW - timedelta(hours=1), "x")}
    assert plan(desired(rel), observed, NOW, helm_failure).in_sync == (("apps", "api"),)


LIVE_DRIFT = LiveDrift(
    objects=(
        ObjectDrift("ConfigMap apps/api-config", missing=True),
        ObjectDrift("Deployment apps/api", paths=("/spec/replicas",)),
    )
)


@pytest.mark.parametrize("policy", ["correct", "warn", "off"])
def test_live_drift_per_policy(policy: str) -> None:
    rel = release()
    result = plan(
        desired(rel, policy=Policy(drift=policy)),  # type: ignore[arg-type]
        {("apps", "api"): deployed(rel)},
        NOW,
        live_drift={("apps", "api"): LIVE_DRIFT},
    )
    if policy == "correct":
        [action] = result.actions
        assert (action.kind, action.reason) == (
            "upgrade",
            "live drift: ConfigMap apps/api-config missing; Deployment apps/api /spec/replicas",
        )
        assert action.rollback_to == 3
    else:
        assert result.actions == ()
        assert result.in_sync == (("apps", "api"),)
    assert [d.policy for d in result.drifted] == ([] if policy == "off" else [policy])
    assert result.changes_pending == (policy != "off")


def test_a_correction_warns_it_resets_fields_a_drift_ignore_rule_keeps() -> None:
    rules = (
        DriftIgnore("Deployment", ("/spec/replicas",)),
        DriftIgnore("*", ("/metadata/annotations/x",), name="api"),
    )
    rel = dataclasses.replace(release(), drift_ignore=rules)
    [action] = plan(
        desired(rel),
        {("apps", "api"): deployed(rel)},
        NOW,
        live_drift={("apps", "api"): LIVE_DRIFT},
    ).actions
    assert action.reason.endswith(
        " (driftIgnore'd fields helm resets are set back after it: Deployment /spec/replicas,"
        " */api /metadata/annotations/x)"
    )


def test_a_failed_correction_backs_off_like_any_attempt() -> None:
    rel = release()
    failure = Failure(rel.digest, 1, NOW - timedelta(seconds=5), "conflict")
    result = plan(
        desired(rel),
        {("apps", "api"): deployed(rel)},
        NOW,
        {("apps", "api"): failure},
        live_drift={("apps", "api"): LIVE_DRIFT},
    )
    assert result.actions == ()
    [hold] = result.held
    assert "retry 1/2" in hold.reason


def test_no_drift_and_a_release_being_upgraded_anyway_add_no_drift_report() -> None:
    rel = release()
    moved = release(chart=OLD_CHART)
    result = plan(
        desired(rel, dataclasses.replace(moved, name="web")),
        {("apps", "api"): deployed(rel)},
        NOW,
        live_drift={("apps", "api"): LiveDrift(), ("apps", "web"): LIVE_DRIFT},
    )
    assert result.drifted == ()
    assert [a.reason for a in result.actions] == ["not installed"]
