"""A tenant rewrites its own release record (helm storage it must be able to write), then
the release is pruned: the record is no longer proven the reconciler's, so it is held, and
nothing runs with the reconciler's own rights."""

from __future__ import annotations

import base64
import gzip
import json

import pytest
from engine_world import World
from test_in_cluster import apps_namespace
from test_tenancy import TENANT_RULES, account_can, tenant

pytestmark = pytest.mark.testbed


@pytest.mark.helm3
def test_a_record_whose_account_label_was_removed_is_not_pruned(world: World) -> None:
    testbed = world.testbed
    team = testbed.create_namespace(apps_namespace(world, "team"))
    victim = testbed.create_namespace(apps_namespace(world, "victim"))
    try:
        tenant(testbed, team, "deployer", TENANT_RULES)
        testbed.admin.call(
            "POST",
            f"/api/v1/namespaces/{victim}/configmaps",
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "precious"},
                "data": {"k": "v"},
            },
        )
        assert not account_can(
            testbed, team, "deployer", verb="delete", resource="configmaps", namespace=victim
        )
        repo = world.repo
        repo.project("app", team, service_account="deployer")
        repo.release(world.installation, "app", values={"message": "one"})
        repo.installation(
            world.installation,
            policy={"retries": 0, "timeoutSeconds": 30, "prune": True, "maxPruneShare": 1},
        )
        repo.commit("app as deployer")
        code, result, stderr = world.apply()
        assert code == 0, (stderr, result)

        # What the tenant (it may patch Secrets in its namespace: helm storage) does:
        path = f"/api/v1/namespaces/{team}/secrets"
        items = testbed.admin.call("GET", f"{path}?labelSelector=owner%3Dhelm,name%3Dapp")
        latest = max(items["items"], key=lambda s: int(s["metadata"]["labels"]["version"]))
        assert account_can(
            testbed, team, "deployer", verb="update", resource="secrets", namespace=team
        )
        record = json.loads(
            gzip.decompress(base64.b64decode(base64.b64decode(latest["data"]["release"])))
        )
        record["manifest"] += (
            "\n---\n# Source: app/templates/x.yaml\napiVersion: v1\nkind: ConfigMap\n"
            f"metadata:\n  name: precious\n  namespace: {victim}\n"
        )
        packed = base64.b64encode(gzip.compress(json.dumps(record).encode())).decode()
        latest["data"]["release"] = base64.b64encode(packed.encode()).decode()
        latest["metadata"]["labels"].pop("reconciler-service-account", None)
        testbed.admin.call("PUT", f"{path}/{latest['metadata']['name']}", latest)

        repo.remove(f"installations/{world.installation}/releases/app.yaml")
        repo.commit("app retired")
        world.reset_calls()
        code, result, stderr = world.apply()
        uninstall = [c for c in world.helm_calls() if c.startswith("uninstall app")]
        assert all("--kube-as-user" in c for c in uninstall), (
            "the project named serviceAccount deployer, but its prune ran as the reconciler "
            "(the record's label, which the tenant can rewrite, decides)",
            uninstall,
        )
        held = {h["release"]: h["reason"] for h in result["held"]}
        assert "signature" in held.get("app", ""), (result, stderr)
        status, _ = testbed.admin.request("GET", f"/api/v1/namespaces/{victim}/configmaps/precious")
        assert status == 200, (
            "the tenant's release was uninstalled with the reconciler's own rights and deleted "
            "a ConfigMap of another namespace the tenant may not touch"
        )
    finally:
        testbed.delete_namespace(team)
        testbed.delete_namespace(victim)
