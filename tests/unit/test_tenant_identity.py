"""Least privilege per project, the pure parts: which identity each planned step runs as,
the lockdown hold, helm's impersonation flags and the one-line refusal."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from reconciler.helm import _refusal, impersonation
from reconciler.model import (
    LABEL_INSTALLATION,
    LABEL_MANAGED_BY,
    LABEL_SERVICE_ACCOUNT,
    MANAGED_BY,
    ChartRef,
    DesiredRelease,
    DesiredState,
    Policy,
)
from reconciler.observe import ReleaseState, Revision
from reconciler.plan import Options, plan

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
CHART = ChartRef("oci://registry.local/charts", "web", "1.0.0")
OURS = {LABEL_MANAGED_BY: MANAGED_BY, LABEL_INSTALLATION: "prod"}


def release(name: str = "api", account: str | None = "deployer") -> DesiredRelease:
    return DesiredRelease(name, "team", "api", CHART, {}, service_account=account)


def desired(
    *releases: DesiredRelease, lockdown: bool = False, default: str | None = None
) -> DesiredState:
    policy = Policy(lockdown=lockdown, prune=True, max_prune_share=1.0)
    return DesiredState("prod", "c0ffee" * 6 + "beef", policy, releases, service_account=default)


def installed(name: str, labels: dict[str, str], status: str = "deployed") -> ReleaseState:
    at = NOW - timedelta(hours=1)
    revision = Revision(3, status, f"sh.helm.release.v1.{name}.v3", "d", at, True, True)
    return ReleaseState(name, "team", (revision,), {**OURS, **labels})


def test_every_step_of_a_release_runs_as_its_service_account() -> None:
    rel = release()
    failed = installed("api", {}, status="failed")
    result = plan(desired(rel), {("team", "api"): failed}, NOW)
    assert [(a.kind, a.service_account) for a in result.actions] == [("upgrade", "deployer")]
    assert plan(desired(rel), {}, NOW).actions[0].service_account == "deployer"


def test_lockdown_holds_a_release_without_service_account_with_the_fix() -> None:
    for switch in ({"lockdown": True}, {}):
        options = Options(lockdown=not switch)
        result = plan(desired(release(account=None), **switch), {}, NOW, options=options)
        assert result.actions == ()
        (hold,) = result.held
        assert hold.gave_up
        assert "lockdown" in hold.reason
        assert "serviceAccount" in hold.reason
        assert "project api" in hold.reason
        assert "installation prod" in hold.reason


def test_without_lockdown_a_release_without_account_runs_as_the_reconciler() -> None:
    (action,) = plan(desired(release(account=None)), {}, NOW).actions
    assert action.kind == "install"
    assert action.service_account is None


def test_prune_runs_as_the_recorded_account_else_the_installation_default() -> None:
    observed = {
        ("team", "old"): installed("old", {LABEL_SERVICE_ACCOUNT: "old-deployer"}),
        ("team", "bare"): installed("bare", {}),
        ("team", "forged"): installed("forged", {LABEL_SERVICE_ACCOUNT: "x:y/../z"}),
    }
    result = plan(desired(default="fallback"), observed, NOW)
    assert sorted((a.release, a.service_account) for a in result.actions) == [
        ("bare", "fallback"),
        ("forged", "fallback"),
        ("old", "old-deployer"),
    ]


def test_lockdown_holds_a_prune_that_knows_no_account() -> None:
    observed = {
        ("team", "old"): installed("old", {LABEL_SERVICE_ACCOUNT: "old-deployer"}),
        ("team", "bare"): installed("bare", {}),
    }
    result = plan(desired(lockdown=True), observed, NOW)
    assert [(a.release, a.service_account) for a in result.actions] == [("old", "old-deployer")]
    (hold,) = result.held
    assert hold.release == "bare"
    assert "records no ServiceAccount" in hold.reason


def test_unlock_and_remediation_run_as_the_release_account() -> None:
    rel = dataclasses.replace(release(), values={"v": 2})
    at = NOW - timedelta(hours=2)
    revisions = (
        Revision(1, "deployed", "sh.helm.release.v1.api.v1", "old", at, True, True),
        Revision(2, "pending-upgrade", "sh.helm.release.v1.api.v2", "x", at, True, True),
    )
    stuck = ReleaseState("api", "team", revisions, OURS)
    result = plan(desired(rel), {("team", "api"): stuck}, NOW)
    assert [(a.kind, a.service_account) for a in result.actions] == [
        ("unlock", "deployer"),
        ("upgrade", "deployer"),
    ]


def test_impersonation_flags_carry_the_user_and_both_groups() -> None:
    assert impersonation("team", None) == []
    assert impersonation("team", "deployer") == [
        "--kube-as-user",
        "system:serviceaccount:team:deployer",
        "--kube-as-group",
        "system:serviceaccounts",
        "--kube-as-group",
        "system:serviceaccounts:team",
    ]


def test_a_refusal_becomes_one_line_naming_verb_resource_and_account() -> None:
    helm_text = (
        "`helm upgrade --install web` exited 1: INSTALLATION FAILED: failed to create resource:"
        ' deployments.apps "web" is forbidden: User "system:serviceaccount:team:deployer"'
        ' cannot create resource "deployments" in API group "apps" in the namespace "team"'
    )
    assert _refusal(helm_text, "team", "deployer") == (
        "ServiceAccount team/deployer may not create deployments.apps in namespace team: grant"
        " it in a Role bound to that ServiceAccount (or create the ServiceAccount if it does not"
        " exist)"
    )
    storage = (
        'secrets is forbidden: User "system:serviceaccount:team:deployer" cannot list resource'
        ' "secrets" in API group "" in the namespace "team"'
    )
    assert "may not list secrets in namespace team" in (_refusal(storage, "team", "deployer") or "")


def test_the_reconciler_refused_to_impersonate_names_the_chart_setting() -> None:
    text = (
        'users "system:serviceaccount:team:deployer" is forbidden: User'
        ' "system:serviceaccount:reconciler:rc" cannot impersonate resource "serviceaccounts"'
        ' in API group "" in the namespace "team"'
    )
    message = _refusal(text, "team", "deployer") or ""
    assert "may not impersonate ServiceAccount team/deployer" in message
    assert "rbac.lockdown.serviceAccounts" in message


def test_refusal_keeps_nothing_of_helm_text_outside_its_narrow_words() -> None:
    sneaky = (
        'User "system:serviceaccount:team:deployer" cannot create resource "configmaps"'
        ' in API group "" in the namespace "team" token=hunter2 "\\n evil'
    )
    message = _refusal(sneaky, "team", "deployer") or ""
    assert "hunter2" not in message
    assert "evil" not in message
    assert "\n" not in message
    other_user = 'User "system:serviceaccount:x:y" cannot get resource "pods"'
    assert _refusal(other_user, "team", "deployer") is None
    assert _refusal("chart not found", "team", "deployer") is None


def test_an_unreachable_cluster_as_the_account_names_the_chart_setting() -> None:
    text = (
        "`helm install web` exited 1: INSTALLATION FAILED: Kubernetes cluster unreachable: unknown"
    )
    message = _refusal(text, "team", "deployer") or ""
    assert message.startswith("the reconciler cannot act as ServiceAccount team/deployer")
    assert "rbac.lockdown.serviceAccounts" in message
