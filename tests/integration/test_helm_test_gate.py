"""Converged means tested: `helm test` as a gate of each install and upgrade, on the working
cluster (test Pods run on kwok nodes: Succeeded, or Failed with `testBehaviour: fail`)."""

from __future__ import annotations

from typing import Any

import pytest
from engine_world import World
from envrepo import project_document

FAST = {"retries": 0, "retryBackoffSeconds": 1, "timeoutSeconds": 30}


@pytest.fixture(scope="session")
def tested_chart(publish_chart: Any) -> str:
    """Chart `tested` (a ConfigMap and a test hook Pod) at 0.1.0 and 0.2.0."""

    for version in ("0.1.0", "0.2.0"):
        ref = publish_chart("tested", version)
    return str(ref)


def chart_project(world: World, name: str, **extra: Any) -> None:
    document = project_document(name, world.namespace, world.repo.chart_repository, "tested")
    world.repo.write(f"projects/{name}.yaml", {**document, **extra})


def helm_test_calls(world: World) -> list[str]:
    return [call.split()[1] for call in world.helm_calls() if call.startswith("test ")]


@pytest.mark.helm3
def test_a_failing_helm_test_fails_the_upgrade_and_rolls_back(
    world: World, tested_chart: str
) -> None:
    repo = world.repo
    chart_project(world, "web")
    repo.release(world.installation, "web", version="0.1.0")
    repo.installation(world.installation, policy={**FAST, "test": True})
    repo.commit("web, tested")
    code, result, stderr = world.apply()
    assert code == 0, stderr
    assert helm_test_calls(world) == ["web"], "a passing test leaves the release deployed"
    assert [o["result"] for o in result["outcomes"]] == ["succeeded"]
    assert world.latest("web")["status"] == "deployed"

    repo.release(world.installation, "web", version="0.2.0", values={"testBehaviour": "fail"})
    repo.commit("web 0.2.0, whose test fails")
    world.reset_calls()
    code, result, _ = world.apply()
    assert code == 1
    (outcome,) = result["outcomes"]
    assert outcome["result"] == "failed"
    message = outcome["message"]
    assert f"test Pod {world.namespace}/web-test Failed" in message, message
    assert "rolled back to revision 1" in message, message
    history = world.history("web")
    assert [h["status"] for h in history] == ["superseded", "superseded", "deployed"]
    assert history[-1]["chart"] == "tested-0.1.0", "back on the revision that passed"
    assert world.values("web") == {}

    world.reset_calls()
    code, result, _ = world.apply()
    assert world.helm_calls() == [], "retries spent: the failing state is not tried again"
    (held,) = result["held"]
    assert "web-test Failed" in held["reason"], "the hold keeps the test's failure"


def test_tests_are_off_by_default_and_a_project_turns_them_on(
    world: World, tested_chart: str
) -> None:
    repo = world.repo
    chart_project(world, "gated", test=True)
    chart_project(world, "plain")
    chart_project(world, "optout", test=False)
    for name in ("gated", "plain", "optout"):
        repo.release(world.installation, name, values={"testBehaviour": "fail"})
    repo.installation(world.installation, policy={**FAST, "remediation": "uninstall"})
    repo.commit("three releases whose tests fail")
    code, result, _ = world.apply()
    assert code == 1
    assert helm_test_calls(world) == ["gated"], "policy.test is off by default"
    results = {o["release"]: o["result"] for o in result["outcomes"]}
    assert results == {"gated": "failed", "optout": "succeeded", "plain": "succeeded"}
    assert world.releases() == {"optout": "deployed", "plain": "deployed"}, (
        "a first install whose test fails is uninstalled (nothing to roll back to)"
    )

    repo.installation(world.installation, policy={**FAST, "test": True})
    repo.release(world.installation, "plain", values={"testBehaviour": "fail", "message": "b"})
    repo.release(world.installation, "optout", values={"testBehaviour": "fail", "message": "b"})
    repo.commit("tests on for the installation; optout keeps them off")
    world.reset_calls()
    code, result, _ = world.apply()
    results = {o["release"]: o["result"] for o in result["outcomes"]}
    assert results == {"optout": "succeeded", "plain": "failed"}
    assert sorted(helm_test_calls(world)) == ["plain"]


def test_a_test_that_never_completes_fails_at_the_timeout_naming_its_running_pod(
    world: World, tested_chart: str
) -> None:
    repo = world.repo
    chart_project(world, "slow", test=True)
    repo.release(world.installation, "slow", values={"testBehaviour": "never-ready"})
    repo.installation(world.installation, policy={**FAST, "timeoutSeconds": 3})
    repo.commit("slow, whose test Pod runs forever")
    code, result, _ = world.apply()
    assert code == 1
    (outcome,) = result["outcomes"]
    assert outcome["result"] == "failed"
    assert f"test Pod {world.namespace}/slow-test Running" in outcome["message"], (
        "the phase the cluster reports, not helm's Failed for a Pod it stopped waiting for"
    )
    assert "uninstalled" in outcome["message"], "no revision to roll back to: uninstalled"
