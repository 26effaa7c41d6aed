"""The reconciler as it runs in a Pod: the deploy chart's service account, the in-cluster
configuration path, and exactly the rights the chart grants."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from engine_world import World

from tests.support.chartrights import wait_for_chart_rights

CHART = Path(__file__).resolve().parents[2] / "deploy" / "chart"


def install_reconciler_chart(world: World, tmp_path: Path, **values: Any) -> Path:
    """Install deploy/chart and return a folder laid out like a Pod's service-account mount."""

    settings = {"installation": world.installation, "git": {"repo": world.repo.url}, **values}
    values_file = tmp_path / "chart-values.yaml"
    values_file.write_text(yaml.safe_dump(settings))
    world.helm("upgrade", "--install", "rc", str(CHART), "-f", str(values_file))
    kubeconfig = world.testbed.mint_serviceaccount_kubeconfig(world.namespace, "rc-reconciler")
    wait_for_chart_rights(world.testbed, world.namespace, "rc-reconciler")
    user = yaml.safe_load(kubeconfig.read_text())["users"][0]["user"]
    mount = tmp_path / "serviceaccount"
    mount.mkdir()
    (mount / "token").write_text(user["token"])
    (mount / "ca.crt").write_bytes(world.testbed.ca_cert.read_bytes())
    (mount / "namespace").write_text(world.namespace)
    return mount


def in_pod(world: World, mount: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI with the environment a Pod has: no kubeconfig, the service host and port."""

    env = {k: v for k, v in world.env().items() if k != "KUBECONFIG"}
    api = world.testbed.api_url.removeprefix("https://")
    host, port = api.rsplit(":", 1)
    env |= {
        "KUBERNETES_SERVICE_HOST": host,
        "KUBERNETES_SERVICE_PORT": port,
        "RECONCILER_SERVICEACCOUNT_DIR": str(mount),
        "HOME": str(world.workdir),
    }
    return subprocess.run(
        [sys.executable, "-m", "reconciler", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def releases_in(world: World, namespace: str) -> dict[str, str]:
    out = world.testbed.helm("list", "-n", namespace, "-o", "json").stdout
    return {r["name"]: r["status"] for r in json.loads(out)}


def apps_namespace(world: World) -> str:
    """A namespace beside the test's own, keeping its random suffix (re-runs never clash)."""
    head, _, suffix = world.namespace.rpartition("-")
    tag = f"-apps-{suffix}"
    return f"{head[: 63 - len(tag)].rstrip('-')}{tag}"


def declare(world: World, target: str) -> None:
    for name in ("alpha", "beta"):
        world.repo.project(name, target, depends_on=("alpha",) if name == "beta" else ())
        world.repo.release(world.installation, name, version="0.1.0")
    world.repo.installation(world.installation, policy={"retries": 0, "timeoutSeconds": 60})
    world.repo.commit("two releases in their own namespace")


def test_converges_with_the_charts_service_account_through_the_in_cluster_path(
    world: World, tmp_path: Path
) -> None:
    target = apps_namespace(world)
    declare(world, target)
    mount = install_reconciler_chart(world, tmp_path)
    done = in_pod(world, mount, "apply")
    assert done.returncode == 0, done.stderr
    assert releases_in(world, target) == {"alpha": "deployed", "beta": "deployed"}
    again = in_pod(world, mount, "apply", "-o", "json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["actions"] == []
    status = in_pod(world, mount, "status", "--namespace", world.namespace)
    assert status.returncode == 0, status.stderr
    assert "in-sync" in status.stdout


def test_a_missing_right_is_named_not_a_traceback(world: World, tmp_path: Path) -> None:
    target = apps_namespace(world)
    declare(world, target)
    rules = [
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"],
        },
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "create", "patch"]},
    ]  # no configmaps: the charts' ConfigMaps cannot be created
    mount = install_reconciler_chart(
        world, tmp_path, rbac={"managedResources": {"mode": "custom", "rules": rules}}
    )
    done = in_pod(world, mount, "apply")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr + done.stdout
    assert 'cannot get resource "configmaps"' in done.stdout
    assert "remediation failed" not in done.stdout
    assert "beta: skipped: dependency alpha did not converge" in done.stdout

    no_lease_rights = in_pod(world, mount, "status", "--namespace", "kube-system")
    assert no_lease_rights.returncode == 1
    assert "Traceback" not in no_lease_rights.stderr
    assert "forbidden" in no_lease_rights.stderr
    assert "grant the 'get' verb" in no_lease_rights.stderr


@pytest.fixture(autouse=True)
def _no_kubeconfig_leaks() -> None:
    assert "KUBERNETES_SERVICE_HOST" not in os.environ
