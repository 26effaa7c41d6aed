"""The reconciler as it runs in a Pod: the deploy chart's service account, the in-cluster
configuration path, and exactly the rights the chart grants."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from engine_world import World

from reconciler.errors import KubeError
from reconciler.kube import SECRETS, Kube
from tests.support.chartrights import wait_for_chart_rights

CHART = Path(__file__).resolve().parents[2] / "deploy" / "chart"


def install_reconciler_chart(world: World, tmp_path: Path, **values: Any) -> Path:
    """Install deploy/chart and return a folder laid out like a Pod's service-account mount."""

    settings = {"installation": world.installation, "git": {"repo": world.repo.url}, **values}
    values_file = tmp_path / "chart-values.yaml"
    values_file.write_text(yaml.safe_dump(settings))
    world.helm("upgrade", "--install", "rc", str(CHART), "-f", str(values_file))
    kubeconfig = world.testbed.mint_serviceaccount_kubeconfig(world.namespace, "rc-reconciler")
    targets = values.get("rbac", {}).get("namespaces", ())
    wait_for_chart_rights(world.testbed, world.namespace, "rc-reconciler", targets)
    user = yaml.safe_load(kubeconfig.read_text())["users"][0]["user"]
    mount = tmp_path / "serviceaccount"
    mount.mkdir()
    (mount / "token").write_text(user["token"])
    (mount / "ca.crt").write_bytes(world.testbed.ca_cert.read_bytes())
    (mount / "namespace").write_text(world.namespace)
    return mount


def in_pod(
    world: World, mount: Path, *args: str, extra_env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the CLI with the environment a Pod has: no kubeconfig, the service host and port."""

    env = {k: v for k, v in world.env().items() if k != "KUBECONFIG"}
    api = world.testbed.api_url.removeprefix("https://")
    host, port = api.rsplit(":", 1)
    env |= {
        "KUBERNETES_SERVICE_HOST": host,
        "KUBERNETES_SERVICE_PORT": port,
        "RECONCILER_SERVICEACCOUNT_DIR": str(mount),
        "HOME": str(world.workdir),
        **(extra_env or {}),
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


def apps_namespace(world: World, word: str = "apps") -> str:
    """A namespace beside the test's own, keeping its random suffix (re-runs never clash)."""
    head, _, suffix = world.namespace.rpartition("-")
    tag = f"-{word}-{suffix}"
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


def chart_env(world: World) -> dict[str, str]:
    """The environment the chart gives the reconciler's container (plain values only)."""

    deployment = world.testbed.admin.call(
        "GET", f"/apis/apps/v1/namespaces/{world.namespace}/deployments/rc-reconciler"
    )
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


def declare_one_each(world: World, namespaces: Mapping[str, str]) -> None:
    """One release per namespace, named as given (release -> namespace)."""

    for name, target in namespaces.items():
        world.repo.project(name, target)
        world.repo.release(world.installation, name, version="0.1.0")
    world.repo.installation(world.installation, policy={"retries": 0, "timeoutSeconds": 60})
    world.repo.commit("one release per namespace")


def test_namespaced_mode_converges_its_namespaces_and_holds_the_rest(
    world: World, tmp_path: Path
) -> None:
    listed = [world.testbed.create_namespace(apps_namespace(world, w)) for w in ("a", "b")]
    other = world.testbed.create_namespace(apps_namespace(world, "c"))
    missing = apps_namespace(world, "gone")
    targets = {"alpha": listed[0], "beta": listed[1], "gamma": other, "delta": missing}
    declare_one_each(world, targets)
    mount = install_reconciler_chart(world, tmp_path, rbac={"namespaces": listed})
    scope = {"RECONCILER_NAMESPACES": chart_env(world)["RECONCILER_NAMESPACES"]}
    assert scope["RECONCILER_NAMESPACES"] == ",".join(listed)

    done = in_pod(world, mount, "apply", "-o", "json", extra_env=scope)
    assert done.returncode == 0, done.stderr  # held releases are not failures, as ever
    result = json.loads(done.stdout)
    assert sorted(a["release"] for a in result["actions"]) == ["alpha", "beta"]
    assert {o["release"]: o["result"] for o in result["outcomes"]} == {
        "alpha": "succeeded",
        "beta": "succeeded",
    }
    held = {h["release"]: h["reason"] for h in result["held"]}
    assert held == {
        name: f"namespace {targets[name]} is not in --namespaces (RECONCILER_NAMESPACES); "
        "add it there and to the deploy chart's rbac.namespaces"
        for name in ("gamma", "delta")
    }
    assert releases_in(world, listed[0]) == {"alpha": "deployed"}
    assert releases_in(world, listed[1]) == {"beta": "deployed"}
    assert releases_in(world, other) == {}

    world.reset_calls()
    again = in_pod(world, mount, "apply", "-o", "json", extra_env=scope)
    assert again.returncode == 0, again.stderr
    assert world.helm_calls() == [], "a pass with nothing to do starts no helm process"
    assert json.loads(again.stdout)["actions"] == []
    status = in_pod(world, mount, "status", "--namespace", world.namespace)
    assert status.returncode == 1, "status reports held releases, as for any hold"
    assert "held" in status.stdout

    # A listed namespace that does not exist: its release is held, the others stay in sync.
    wider = {"RECONCILER_NAMESPACES": ",".join([*listed, missing])}
    planned = in_pod(world, mount, "plan", "-o", "json", extra_env=wider)
    assert planned.returncode == 0, planned.stderr
    held = {h["release"]: h["reason"] for h in json.loads(planned.stdout)["held"]}
    assert held["delta"].startswith(
        f"cannot read the Helm release history of namespace {missing} (forbidden): "
        "it does not exist or the reconciler has no Role there"
    )

    account = Kube.connect(
        str(world.testbed.mint_serviceaccount_kubeconfig(world.namespace, "rc-reconciler"))
    )
    assert [
        item["metadata"]["name"]
        for item in account.list_items(SECRETS.path(listed[0]), "owner=helm", metadata_only=True)
    ] == ["sh.helm.release.v1.alpha.v1"]
    for where in (None, other):
        with pytest.raises(KubeError) as denied:
            list(account.list_items(SECRETS.path(where), "owner=helm", metadata_only=True))
        assert denied.value.status == 403, where


@pytest.fixture(autouse=True)
def _no_kubeconfig_leaks() -> None:
    assert "KUBERNETES_SERVICE_HOST" not in os.environ
