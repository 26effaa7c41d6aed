"""Namespaced mode (--namespaces) with credentials that could reach further: the reconciler
still reads, installs and prunes in the listed namespaces only, and creates none.
(tests/integration/test_in_cluster.py runs it with the deploy chart's confined account.)"""

from __future__ import annotations

import json

from engine_world import World

POLICY = {"retries": 0, "timeoutSeconds": 60}


def releases_in(world: World, namespace: str) -> dict[str, str]:
    out = world.testbed.helm("list", "-n", namespace, "-o", "json").stdout
    return {r["name"]: r["status"] for r in json.loads(out)}


def test_a_listed_namespace_that_is_missing_is_not_created_and_the_failure_says_so(
    world: World,
) -> None:
    missing = f"{world.namespace}-gone"
    world.repo.project("alpha", missing)
    world.repo.release(world.installation, "alpha", version="0.1.0")
    world.repo.installation(world.installation, policy=POLICY)
    world.repo.commit("a release in a namespace nobody created")

    code, result, stderr = world.apply("--namespaces", missing)
    assert code == 1, stderr
    (outcome,) = result["outcomes"]
    assert outcome["result"] == "failed"
    assert (
        f"namespace {missing} does not exist: create it "
        "(with --namespaces the reconciler creates no namespaces)"
    ) in outcome["message"]
    status, _ = world.testbed.admin.request("GET", f"/api/v1/namespaces/{missing}")
    assert status == 404


def test_namespaced_mode_prunes_only_in_its_namespaces(world: World) -> None:
    other = world.testbed.create_namespace(f"{world.namespace}-b")
    world.repo.project("alpha", world.namespace)
    world.repo.project("beta", other)
    for name in ("alpha", "beta"):
        world.repo.release(world.installation, name, version="0.1.0")
    world.repo.installation(
        world.installation, policy={**POLICY, "prune": True, "maxPruneShare": 1.0}
    )
    world.repo.commit("two releases in two namespaces")
    assert world.apply()[0] == 0
    for name in ("alpha", "beta"):
        world.repo.remove(f"installations/{world.installation}/releases/{name}.yaml")
    world.repo.commit("both leave")
    everywhere = world.plan()[1]
    assert sorted(a["release"] for a in everywhere["actions"]) == ["alpha", "beta"]

    code, result, stderr = world.apply("--namespaces", world.namespace)
    assert code == 0, stderr
    assert [(a["release"], a["action"]) for a in result["actions"]] == [("alpha", "uninstall")]
    assert world.releases() == {}
    assert releases_in(world, other) == {"beta": "deployed"}, "outside the list: untouched"
