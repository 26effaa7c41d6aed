"""Live drift on the working cluster: objects of a release deleted, edited or scaled by hand
are found on a full resync and, per policy, restored through helm (helm 4 and helm 3)."""

from __future__ import annotations

import base64
import json
import subprocess
from typing import Any

import pytest
from engine_world import (
    World,
    daemon,
    daemon_log,
    kube_json,
    wait_for,
    wait_for_log,
    written_release,
)

pytestmark = pytest.mark.testbed

SECRET_VALUE = "s3cr3t-by-hand"
POLICY = {"timeoutSeconds": 60, "retries": 0, "retryBackoffSeconds": 1}


@pytest.fixture(scope="session")
def drifty_chart(publish_chart: Any) -> str:
    return str(publish_chart("drifty", "0.1.0"))


def one_release(
    world: World,
    drift: str | None = None,
    ignore: list[dict[str, Any]] | None = None,
    values: dict[str, Any] | None = None,
) -> None:
    repo = world.repo
    repo.project("web", world.namespace, chart="drifty", values=values)
    if ignore:
        path = repo.root / "projects/web.yaml"
        path.write_text(path.read_text() + json.dumps({"driftIgnore": ignore})[1:-1] + "\n")
    repo.release(world.installation, "web", version="0.1.0")
    repo.installation(world.installation, policy={**POLICY, **({"drift": drift} if drift else {})})
    repo.commit("web")
    code, _, stderr = world.apply()
    assert code == 0, stderr
    world.reset_calls()


def drift_by_hand(world: World) -> None:
    """The three kinds of drift: an object deleted, a field the chart sets changed, a scale."""

    kubectl = world.testbed.kubectl
    ns = world.namespace
    kubectl("delete", "configmap", "web-config", "-n", ns)
    hidden = base64.b64encode(SECRET_VALUE.encode()).decode()
    kubectl(
        "patch", "secret", "web-secret", "-n", ns, "-p", json.dumps({"data": {"password": hidden}})
    )
    kubectl("scale", "deployment", "web", "-n", ns, "--replicas=3")
    kubectl("set", "image", "deployment/web", "app=registry.k8s.io/pause:3.9", "-n", ns)


def live(world: World, path: str) -> Any:
    return kube_json(world.testbed, "GET", f"/api/v1/namespaces/{world.namespace}/{path}")


def replicas(world: World) -> int:
    path = f"/apis/apps/v1/namespaces/{world.namespace}/deployments/web"
    return int(kube_json(world.testbed, "GET", path)["spec"]["replicas"])


def image(world: World) -> str:
    path = f"/apis/apps/v1/namespaces/{world.namespace}/deployments/web"
    return str(
        kube_json(world.testbed, "GET", path)["spec"]["template"]["spec"]["containers"][0]["image"]
    )


def password(world: World) -> bytes:
    return base64.b64decode(live(world, "secrets/web-secret")["data"]["password"])


def exists(world: World, path: str) -> bool:
    status, _ = world.testbed.admin.request("GET", f"/api/v1/namespaces/{world.namespace}/{path}")
    return status == 200


def writes(world: World) -> list[str]:
    return [name for call in world.helm_calls() if (name := written_release(call))]


@pytest.mark.helm3
def test_correct_restores_a_deleted_object_a_changed_field_and_a_scale(
    world: World, drifty_chart: str
) -> None:
    one_release(world)
    code, document = world.plan("--full")
    assert (code, document["drifted"]) == (0, []), "a fresh install shows no drift"
    drift_by_hand(world)

    code, _, stderr = world.apply()
    assert code == 0, stderr
    assert writes(world) == [], "a normal pass does not look at live objects"

    code, document = world.plan("--full")
    assert code == 2
    [drifted] = document["drifted"]
    assert drifted["policy"] == "correct"
    assert {(o["object"], o["missing"], tuple(o["paths"])) for o in drifted["objects"]} == {
        (f"ConfigMap {world.namespace}/web-config", True, ()),
        (f"Secret {world.namespace}/web-secret", False, ("/data/password",)),
        (
            f"Deployment {world.namespace}/web",
            False,
            ("/spec/replicas", "/spec/template/spec/containers/0/image"),
        ),
    }
    assert SECRET_VALUE not in json.dumps(document)
    assert base64.b64encode(SECRET_VALUE.encode()).decode() not in json.dumps(document)
    text = world.cli("plan", "--full")
    assert text.returncode == 2
    assert f"Secret {world.namespace}/web-secret: /data/password" in text.stdout
    assert SECRET_VALUE not in text.stdout + text.stderr

    code, result, stderr = world.apply("--full")
    assert code == 0, (stderr, json.dumps(result.get("outcomes")))
    assert writes(world) == ["web"]
    assert exists(world, "configmaps/web-config")
    assert password(world) == b"not-a-real-secret"
    assert replicas(world) == 1
    assert image(world) == "registry.k8s.io/pause:3.10"
    description = world.latest("web")["description"]
    assert "live drift" in description
    assert "/data/password" in description
    assert "web-config missing" in description
    assert SECRET_VALUE not in description

    world.reset_calls()
    code, document = world.plan("--full")
    assert (code, document["drifted"]) == (0, []), "restored: no drift left"
    assert world.apply("--full")[0] == 0
    assert writes(world) == []


def plan_full_reads(world: World) -> tuple[dict[str, Any], list[str]]:
    """`plan --full -o json` and the paths it read (RECONCILER_API_LOG), one per request."""

    log = world.workdir / "api.log"
    log.unlink(missing_ok=True)
    done = subprocess.run(
        world.cli_argv("plan", "--full", "-o", "json"),
        env={**world.env(), "RECONCILER_API_LOG": str(log)},
        cwd=world.workdir, capture_output=True, text=True,
    )  # fmt: skip
    assert done.stdout, done.stderr
    paths = [json.loads(line)["path"] for line in log.read_text().splitlines()]
    return json.loads(done.stdout), paths


@pytest.mark.helm3
def test_warn_only_reports_and_off_neither_reports_nor_corrects(
    world: World, drifty_chart: str
) -> None:
    one_release(world, drift="warn")
    drift_by_hand(world)

    code, result, stderr = world.apply("--full")
    assert code == 0, stderr
    assert writes(world) == []
    [drifted] = result["drifted"]
    assert drifted["policy"] == "warn"
    assert len(drifted["objects"]) == 3
    assert not exists(world, "configmaps/web-config")
    assert replicas(world) == 3
    status = kube_json(
        world.testbed,
        "GET",
        f"/api/v1/namespaces/{world.namespace}/configmaps/reconciler-status-{world.installation}",
    )
    assert "drifted" in json.dumps(status)
    document, paths = plan_full_reads(world)
    assert len(document["drifted"]) == 1
    # Drift and health judge the same reads: each live object once, the record once.
    deployment = f"/apis/apps/v1/namespaces/{world.namespace}/deployments/web"
    record = f"/api/v1/namespaces/{world.namespace}/secrets/sh.helm.release.v1.web.v1"
    assert (paths.count(deployment), paths.count(record)) == (1, 1), paths

    repo = world.repo
    repo.installation(world.installation, policy={**POLICY, "drift": "off"})
    repo.commit("drift off")
    document, paths = plan_full_reads(world)
    assert document["drifted"] == []
    assert document["health"], "health still reads the live objects"
    assert paths.count(deployment) == 1, "no more than health needs"
    assert not [p for p in paths if "horizontalpodautoscalers" in p], "no autoscaler LIST"
    assert world.apply("--full")[0] == 0
    assert writes(world) == []
    assert replicas(world) == 3


@pytest.mark.helm3
def test_an_ignore_rule_keeps_a_scaled_deployment_as_it_is(world: World, drifty_chart: str) -> None:
    one_release(world, ignore=[{"kind": "Deployment", "paths": ["/spec/replicas"]}])
    world.testbed.kubectl("scale", "deployment", "web", "-n", world.namespace, "--replicas=3")
    code, document = world.plan("--full")
    assert (code, document["drifted"]) == (0, [])
    assert world.apply("--full")[0] == 0
    assert writes(world) == []
    assert replicas(world) == 3
    # The rule covers that path only: the rest of the Deployment is still compared.
    ns = world.namespace
    world.testbed.kubectl(
        "set", "image", "deployment/web", "app=registry.k8s.io/pause:3.9", "-n", ns
    )
    code, document = world.plan("--full")
    assert code == 2
    assert [o["paths"] for o in document["drifted"][0]["objects"]] == [
        ["/spec/template/spec/containers/0/image"]
    ]


@pytest.mark.helm3
def test_a_correction_of_other_drift_keeps_an_ignored_field(
    world: World, drifty_chart: str
) -> None:
    one_release(world, ignore=[{"kind": "Deployment", "paths": ["/spec/replicas"]}])
    world.testbed.kubectl("scale", "deployment", "web", "-n", world.namespace, "--replicas=3")
    world.testbed.kubectl("delete", "configmap", "web-config", "-n", world.namespace)
    code, document = world.plan("--full")
    assert code == 2
    [action] = document["actions"]
    assert "web-config missing" in action["reason"]
    assert (
        "driftIgnore'd fields helm resets are set back after it: Deployment /spec/replicas"
        in (action["reason"])
    )
    code, _, stderr = world.apply("--full")
    assert code == 0, stderr
    assert exists(world, "configmaps/web-config")
    assert replicas(world) == 3, "the correction set the ignored replicas back"
    assert world.plan("--full")[0] == 0


def test_a_deployment_an_autoscaler_scales_is_never_scaled_back(
    world: World, drifty_chart: str
) -> None:
    one_release(world, values={"autoscale": True})
    # What the autoscaler does when load rises (the testbed runs no metrics server).
    world.testbed.kubectl("scale", "deployment", "web", "-n", world.namespace, "--replicas=4")
    for _ in range(3):
        code, result, stderr = world.apply("--full")
        assert code == 0, stderr
        assert result["drifted"] == []
        assert writes(world) == []
        assert replicas(world) == 4
    # Other drift in the same release is corrected; the reason says the correction
    # re-applies the chart's replicas, which the autoscaler then owns again.
    world.testbed.kubectl("delete", "configmap", "web-config", "-n", world.namespace)
    code, document = world.plan("--full")
    assert code == 2
    [action] = document["actions"]
    assert "web-config missing" in action["reason"]
    assert "resets replicas an autoscaler owns" in action["reason"]
    code, _, stderr = world.apply("--full")
    assert code == 0, stderr
    assert exists(world, "configmaps/web-config")


def test_a_full_resync_of_100_releases_without_drift_starts_no_helm(
    world: World, drifty_chart: str
) -> None:
    repo = world.repo
    repo.project("web", world.namespace, chart="drifty", values={"replicas": 0, "headless": True})
    for i in range(100):
        repo.release(world.installation, f"r{i:03d}", project="web", version="0.1.0")
    repo.installation(world.installation, policy={**POLICY, "concurrency": 8})
    repo.commit("100 releases")
    code, _, stderr = world.apply()
    assert code == 0, stderr
    world.reset_calls()
    code, result, stderr = world.apply("--full")
    assert code == 0, stderr
    assert world.helm_calls() == []
    assert (len(result["in_sync"]), result["drifted"]) == (100, [])
    # One object changed among 400: found, and only its release is re-applied.
    world.testbed.kubectl("delete", "service", "r042", "-n", world.namespace)
    code, result, stderr = world.apply("--full")
    assert code == 0, stderr
    assert writes(world) == ["r042"]
    assert exists(world, "services/r042")


def test_the_daemon_checks_and_reports_drift_on_each_full_resync(
    world: World, drifty_chart: str
) -> None:
    one_release(world, drift="warn")
    with daemon(world, "--resync-interval", "1", name="d"):
        world.testbed.kubectl("delete", "configmap", "web-config", "-n", world.namespace)

        def drifted_event() -> bool:
            items = kube_json(world.testbed, "GET", f"/api/v1/namespaces/{world.namespace}/events")
            return any(
                e["reason"] == "Drifted" and "web-config missing" in e["message"]
                for e in items["items"]
            )

        wait_for(drifted_event, timeout=60)
        entry = wait_for_log(daemon_log(world, "d"), "live drift", release="web", policy="warn")
        assert "ConfigMap" in entry["drift"]
        assert not exists(world, "configmaps/web-config")

        world.repo.installation(world.installation, policy=POLICY)  # drift: correct
        world.repo.commit("correct drift")
        wait_for(lambda: exists(world, "configmaps/web-config"), timeout=60)
    assert writes(world) == ["web"]


def test_helm_4_corrects_a_release_that_helm_3_applied_client_side(
    world: World, drifty_chart: str
) -> None:
    """helm 4 refuses --force-conflicts for a client-side applied release: the correction
    must not pass it there (a reconciler moved from helm 3 to helm 4 keeps its releases)."""

    repo = world.repo
    repo.project("web", world.namespace, chart="drifty")
    repo.release(world.installation, "web", version="0.1.0")
    repo.installation(world.installation, policy=POLICY)
    repo.commit("web")
    helm3 = {**world.env(), "RECONCILER_HELM": str(world.testbed.helm_binaries["helm3"])}
    done = subprocess.run(
        world.cli_argv("apply"), env=helm3, cwd=world.workdir, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    world.testbed.kubectl("scale", "deployment", "web", "-n", world.namespace, "--replicas=3")
    code, result, stderr = world.apply("--full")
    assert code == 0, (stderr, json.dumps(result.get("outcomes")))
    assert writes(world) == ["web"]
    assert replicas(world) == 1


@pytest.mark.helm3
def test_a_renumbered_named_port_is_set_back(world: World, drifty_chart: str) -> None:
    """A person renumbers a named Service port: helm alone keeps that list entry (another
    field manager owns it) next to the chart's, and the API server refuses the duplicate
    name. The correction sets the drifted list back first, so helm's upgrade succeeds."""

    one_release(world)
    ports = {"spec": {"ports": [{"name": "http", "port": 9999, "targetPort": "http"}]}}
    world.testbed.kubectl(
        "patch", "service", "web", "-n", world.namespace, "--type=merge", "-p", json.dumps(ports)
    )

    code, document, stderr = world.apply("--full")

    assert code == 0, (stderr, json.dumps(document.get("outcomes")))
    [outcome] = document["outcomes"]
    assert outcome["result"] == "succeeded"
    assert "lists set back to the chart's in Service" in outcome["message"]
    assert [p["port"] for p in live(world, "services/web")["spec"]["ports"]] == [80]
    code, document = world.plan("--full")
    assert (code, document["drifted"]) == (0, []), "restored: no drift left"
