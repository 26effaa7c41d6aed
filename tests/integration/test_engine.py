"""The reconcile engine on the real testbed: git server, kube-apiserver, helm, OCI registry."""

from __future__ import annotations

import base64
import time
from typing import Any

import pytest
from engine_world import (
    World,
    apply_killed_mid_upgrade,
    daemon,
    daemon_log,
    wait_for,
    wait_for_log,
    written_release,
)

FAST_RETRY = {"retries": 0, "retryBackoffSeconds": 1, "timeoutSeconds": 60}


def three_releases(world: World, policy: dict[str, Any] | None = None) -> str:
    repo = world.repo
    for name in ("alpha", "beta", "gamma"):
        repo.project(name, world.namespace, values={"message": f"{name} default"})
        repo.release(world.installation, name, version="0.1.0")
    repo.installation(world.installation, policy=policy or FAST_RETRY)
    return repo.commit("three releases")


def upgrades(calls: list[str]) -> list[str]:
    """Releases that helm installed or upgraded, in call order."""

    return [name for call in calls if (name := written_release(call))]


@pytest.mark.helm3
def test_install_from_scratch_then_a_second_pass_runs_no_helm(world: World) -> None:
    three_releases(world)
    code, result, stderr = world.apply()
    assert code == 0, stderr
    calls = world.helm_calls()
    assert sorted(upgrades(calls)) == ["alpha", "beta", "gamma"]
    pulls = [call for call in calls if call.startswith("pull ")]
    assert len(pulls) == 1, "the chart the three releases share is downloaded once"
    assert all(call.split()[2].endswith(".tgz") for call in calls if upgrades([call]))
    assert world.releases() == {"alpha": "deployed", "beta": "deployed", "gamma": "deployed"}
    assert world.values("beta") == {"message": "beta default"}
    history = world.latest("alpha")
    assert history["description"].startswith("reconciler "), (
        "the description names the environments commit"
    )

    world.reset_calls()
    code, result, stderr = world.apply()
    assert code == 0, stderr
    assert world.helm_calls() == [], "a no-op pass starts no helm process, not even `helm version`"
    assert result["actions"] == []
    assert len(result["in_sync"]) == 3
    assert world.plan()[0] == 0


@pytest.mark.helm3
def test_bumping_one_ref_upgrades_exactly_that_release(world: World, publish_chart: Any) -> None:
    repo = world.repo
    three_releases(world)
    assert world.apply()[0] == 0
    before = {name: world.latest(name)["revision"] for name in ("alpha", "beta", "gamma")}

    commit = repo.commit("an empty commit whose SHA names a build")
    publish_chart("app", f"1.0.0-g{commit[:7]}")
    repo.project(
        "beta",
        world.namespace,
        values={"message": "beta default"},
        version_template="1.0.0-g{ref:7}",
    )
    repo.release(world.installation, "beta", ref=commit)
    repo.commit("promote beta")
    code, planned = world.plan()
    assert code == 2, "plan exits 2 when changes are pending"
    assert [(a["release"], a["action"], a["reason"]) for a in planned["actions"]] == [
        ("beta", "upgrade", f"chart 0.1.0 -> 1.0.0-g{commit[:7]}")
    ]

    world.reset_calls()
    code, _, stderr = world.apply()
    assert code == 0, stderr
    assert upgrades(world.helm_calls()) == ["beta"]
    assert world.latest("beta")["chart"] == f"app-1.0.0-g{commit[:7]}"
    assert world.latest("alpha")["revision"] == before["alpha"]
    assert world.latest("gamma")["revision"] == before["gamma"]


def test_values_changed_in_git_and_in_cluster_are_converged(world: World) -> None:
    repo = world.repo
    for name in ("alpha", "beta"):
        repo.project(name, world.namespace, values={"message": "default", "replicas": 1})
        repo.release(world.installation, name, version="0.1.0")
    # Both created later: optional, so that until then they hold no release.
    values_from = {
        "namespace": world.namespace,
        "configMap": {"name": "site-values", "optional": True},
        "secret": {"name": "site-secrets", "optional": True},
    }
    repo.installation(
        world.installation, policy=FAST_RETRY, values={"region": "eu"}, values_from=values_from
    )
    repo.commit("two releases")
    assert world.apply()[0] == 0
    assert world.values("alpha") == {"message": "default", "replicas": 1, "region": "eu"}

    repo.release(world.installation, "alpha", version="0.1.0", values={"replicas": 3})
    repo.commit("alpha scales")
    world.reset_calls()
    code, result, _ = world.apply()
    assert code == 0
    assert [(a["release"], a["reason"]) for a in result["actions"]] == [
        ("alpha", "values changed: replicas")
    ]
    assert upgrades(world.helm_calls()) == ["alpha"]

    admin = world.testbed.admin
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "site-values", "namespace": world.namespace},
        "data": {"values.yaml": "region: eu-west-1\n", "beta.yaml": "message: from the cluster\n"},
    }
    admin.call("POST", f"/api/v1/namespaces/{world.namespace}/configmaps", config_map)
    world.reset_calls()
    code, result, _ = world.apply()
    assert code == 0
    assert sorted(upgrades(world.helm_calls())) == ["alpha", "beta"]
    assert world.values("beta") == {
        "message": "from the cluster",
        "replicas": 1,
        "region": "eu-west-1",
    }

    password = "s3cret-Value-42"
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "site-secrets", "namespace": world.namespace},
        "data": {
            "alpha.yaml": base64.b64encode(f"db:\n  password: {password}\n".encode()).decode()
        },
    }
    admin.call("POST", f"/api/v1/namespaces/{world.namespace}/secrets", secret)
    world.reset_calls()
    done = world.cli("apply")
    assert done.returncode == 0, done.stderr
    assert upgrades(world.helm_calls()) == ["alpha"]
    assert world.values("alpha")["db"] == {"password": password}
    assert password not in done.stdout + done.stderr
    plan_text = world.cli("plan", "--full")
    assert password not in plan_text.stdout + plan_text.stderr


@pytest.mark.parametrize(
    ("remediation", "status_after"),
    [("rollback", "deployed"), ("none", "failed"), ("uninstall", None)],
)
def test_failed_upgrade_is_remediated_isolated_and_not_retried(
    world: World, remediation: str, status_after: str | None
) -> None:
    repo = world.repo
    three_releases(world, policy={**FAST_RETRY, "remediation": remediation})
    assert world.apply()[0] == 0

    repo.release(world.installation, "alpha", version="0.1.0", values={"broken": True})
    repo.release(world.installation, "beta", version="0.2.0")
    repo.commit("alpha breaks, beta moves on")
    code, result, _ = world.apply()
    assert code == 1
    outcomes = {o["release"]: o for o in result["outcomes"]}
    assert outcomes["alpha"]["result"] == "failed"
    assert (
        "not a valid key" in outcomes["alpha"]["message"]
        or "invalid" in outcomes["alpha"]["message"]
    )
    assert outcomes["beta"]["result"] == "succeeded", "a failure stays with its release"
    assert world.latest("beta")["chart"] == "app-0.2.0"

    if status_after is None:
        assert "alpha" not in world.releases()
    else:
        history = world.history("alpha")
        assert [h["status"] for h in history][-2:] == (
            ["failed", "deployed"] if remediation == "rollback" else ["deployed", "failed"]
        )
        assert history[-1]["status"] == status_after

    world.reset_calls()
    code, result, _ = world.apply()
    assert world.helm_calls() == [], "the same failing state is not retried"
    held = {h["release"]: h["reason"] for h in result["held"]}
    assert "waiting for a change to this release or --force-retry" in held["alpha"]
    assert code == 0 or remediation != "rollback"

    repo.release(world.installation, "alpha", version="0.2.0")
    repo.commit("alpha fixed")
    world.reset_calls()
    code, _, stderr = world.apply()
    assert code == 0, stderr
    assert upgrades(world.helm_calls()) == ["alpha"]
    assert world.latest("alpha")["status"] == "deployed"


@pytest.mark.helm3
def test_release_left_pending_by_sigkill_is_recovered(world: World) -> None:
    repo = world.repo
    # wait: a release with `hang: true` (a Deployment no kubelet runs) stays pending-upgrade.
    policy = {**FAST_RETRY, "timeoutSeconds": 6, "pendingTimeoutSeconds": 7, "wait": True}
    three_releases(world, policy=policy)
    assert world.apply()[0] == 0
    repo.release(world.installation, "alpha", version="0.1.0", values={"hang": True})
    repo.commit("alpha hangs")
    apply_killed_mid_upgrade(world)  # the reconciler and its helm
    repo.release(world.installation, "alpha", version="0.1.0")
    repo.commit("alpha no longer hangs")
    time.sleep(policy["pendingTimeoutSeconds"] + 1)
    assert world.latest("alpha")["status"] == "pending-upgrade"

    world.reset_calls()
    code, result, stderr = world.apply()
    assert code == 0, stderr
    kinds = [(a["release"], a["action"]) for a in result["actions"]]
    assert kinds == [("alpha", "unlock"), ("alpha", "upgrade")]
    assert world.latest("alpha")["status"] == "deployed"
    assert world.values("alpha") == {"message": "alpha default"}


@pytest.mark.helm3
def test_manual_rollback_and_uninstall_are_undone(world: World) -> None:
    repo = world.repo
    three_releases(world)
    assert world.apply()[0] == 0
    repo.release(world.installation, "alpha", version="0.2.0")
    repo.commit("alpha to 0.2.0")
    assert world.apply()[0] == 0

    world.helm("rollback", "alpha", "1")
    world.helm("uninstall", "beta")
    world.helm("upgrade", "gamma", f"{repo.chart_repository}/app", "--version", "0.1.0", "--plain-http",
               "--reuse-values", "--set", "message=changed by hand")  # fmt: skip
    world.reset_calls()
    code, result, _ = world.apply()
    assert code == 0
    assert sorted(upgrades(world.helm_calls())) == ["alpha", "beta"], (
        "labels tell rollback and uninstall"
    )
    assert world.latest("alpha")["chart"] == "app-0.2.0"
    assert world.releases()["beta"] == "deployed"

    world.reset_calls()
    code, result, _ = world.apply("--full")
    assert code == 0
    assert [(a["release"], a["reason"]) for a in result["actions"]] == [
        ("gamma", "drifted in the cluster: values differ: message")
    ]
    assert world.values("gamma") == {"message": "gamma default"}


def test_prune_follows_policy_and_refuses_mass_removal(world: World) -> None:
    repo = world.repo
    names = ["r1", "r2", "r3", "r4"]
    for name in names:
        repo.project(name, world.namespace)
        repo.release(world.installation, name, version="0.1.0")
    repo.installation(
        world.installation, policy={**FAST_RETRY, "prune": True, "maxPruneShare": 0.5}
    )
    repo.commit("four")
    assert world.apply()[0] == 0
    world.helm(
        "upgrade",
        "--install",
        "by-hand",
        f"{repo.chart_repository}/app",
        "--version",
        "0.1.0",
        "--plain-http",
    )

    repo.remove(f"installations/{world.installation}/releases/r4.yaml")
    repo.commit("r4 leaves")
    code, result, _ = world.apply()
    assert code == 0
    assert [(a["release"], a["action"]) for a in result["actions"]] == [("r4", "uninstall")]
    assert set(world.releases()) == {"r1", "r2", "r3", "by-hand"}, (
        "a release we did not install is never pruned"
    )

    for name in ("r1", "r2"):
        repo.remove(f"installations/{world.installation}/releases/{name}.yaml")
    repo.commit("most leave")
    world.reset_calls()
    code, result, _ = world.apply()
    assert world.helm_calls() == []
    assert "prune refused: would remove 2 of 3 managed releases" in result["held"][0]["reason"]
    code, result, _ = world.apply("--force-prune")
    assert code == 0
    assert set(world.releases()) == {"r3", "by-hand"}


def test_invalid_commit_is_never_acted_on(world: World) -> None:
    repo = world.repo
    three_releases(world)
    assert world.apply()[0] == 0
    repo.release(world.installation, "alpha", version="0.2.0")
    repo.release(world.installation, "beta", project="no-such-project", version="0.2.0")
    repo.commit("a valid change next to an invalid one")
    world.reset_calls()
    code, _, stderr = world.apply()
    assert code == 1
    assert "no-such-project" in stderr
    assert "releases/beta.yaml" in stderr
    assert world.helm_calls() == [], "nothing of an invalid revision is applied"
    assert world.latest("alpha")["chart"] == "app-0.1.0"


def test_daemon_keeps_the_last_good_revision_and_converges_the_next(world: World) -> None:
    repo = world.repo
    three_releases(world)
    with daemon(world, name="engine") as process:
        wait_for(lambda: world.releases() == dict.fromkeys(("alpha", "beta", "gamma"), "deployed"))
        repo.release(world.installation, "alpha", project="missing", version="0.2.0")
        invalid = repo.commit("invalid")
        refused = "not acting on an invalid revision; keeping the last good one"
        wait_for_log(daemon_log(world, "engine"), refused, revision=invalid)
        assert world.latest("alpha")["chart"] == "app-0.1.0"
        repo.release(world.installation, "alpha", version="0.2.0")
        repo.commit("fixed")
        wait_for(lambda: world.latest("alpha")["chart"] == "app-0.2.0", timeout=60)
    logs = daemon_log(world, "engine").read_text()
    assert process.returncode == 0
    assert "not acting on an invalid revision" in logs
    assert "missing" in logs


def test_depends_on_orders_helm_calls(world: World) -> None:
    repo = world.repo
    repo.project("db", world.namespace)
    repo.project("cache", world.namespace)
    repo.project("api", world.namespace, depends_on=("db", "cache"))
    repo.project("web", world.namespace, depends_on=("api",))
    for name in ("web", "api", "cache", "db"):
        repo.release(world.installation, name, version="0.1.0")
    repo.installation(world.installation, policy={**FAST_RETRY, "concurrency": 4})
    repo.commit("a chain")
    assert world.apply()[0] == 0
    events = [
        (kind, stamp, name)
        for kind, stamp, args in world.helm_events()
        if (name := written_release(args))
    ]
    started = {name: stamp for kind, stamp, name in events if kind == "start"}
    ended = {name: stamp for kind, stamp, name in events if kind == "end"}
    assert started["api"] >= max(ended["db"], ended["cache"])
    assert started["web"] >= ended["api"]
