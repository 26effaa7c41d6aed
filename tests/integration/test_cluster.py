"""The testbed is a working cluster: controllers, scheduler and kwok's simulated nodes.

What a reconciler's health checks and helm's --wait rely on: Pods are scheduled and become
Ready (or, by annotation, never do, or crash-loop), namespaces really terminate, garbage
collection runs and the controllers mint ServiceAccount tokens.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from testbed import CRASH_LOOP, FAIL, FAKE_NODES, NEVER_READY, POD_BEHAVIOUR, Testbed

pytestmark = pytest.mark.testbed

ROOT = Path(__file__).resolve().parents[2]


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.2)
    return result


def _wait_args(helm: Any) -> list[str]:
    return ["--wait=watcher"] if helm.major >= 4 else ["--wait"]


def _conditions(obj: Any) -> dict[str, str]:
    return {c.type: c.status for c in obj.status.conditions or []}


def _pods(kube: Any, namespace: str, selector: str = "") -> list[Any]:
    items: list[Any] = (
        client.CoreV1Api(kube).list_namespaced_pod(namespace, label_selector=selector).items
    )
    return items


def _deployment(name: str, behaviour: str = "", replicas: int = 1) -> dict[str, Any]:
    labels = {"app": name}
    annotations = {POD_BEHAVIOUR: behaviour} if behaviour else {}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels, "annotations": annotations},
                "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}]},
            },
        },
    }


@pytest.mark.helm3
def test_helm_wait_returns_once_the_workloads_are_available(
    helm: Any, namespace: str, charts_dir: Path, kube: Any
) -> None:
    helm(
        *("install", "web", str(charts_dir / "workload"), "-n", namespace),
        *(*_wait_args(helm), "--timeout", "120s"),
    )

    # Read at once: helm returned only because both were ready, not before.
    apps = client.AppsV1Api(kube)
    deployment = apps.read_namespaced_deployment("web", namespace)
    assert _conditions(deployment)["Available"] == "True"
    assert deployment.status.available_replicas == 2
    statefulset = apps.read_namespaced_stateful_set("web-db", namespace)
    assert statefulset.status.ready_replicas == 2
    assert statefulset.status.current_revision == statefulset.status.update_revision
    pods = _pods(kube, namespace, "app.kubernetes.io/instance=web")
    assert len(pods) == 4
    for pod in pods:
        assert pod.spec.node_name in FAKE_NODES, "placed by the scheduler on a kwok node"
        assert pod.status.phase == "Running"
        assert _conditions(pod)["Ready"] == "True"
        assert pod.status.pod_ip
    # The endpoint controllers follow the Ready Pods, a moment after helm's --wait returns.
    discovery = client.DiscoveryV1Api(kube)

    def ready_endpoints() -> int:
        slices = discovery.list_namespaced_endpoint_slice(
            namespace, label_selector="kubernetes.io/service-name=web"
        )
        return len([e for s in slices.items for e in s.endpoints or [] if e.conditions.ready])

    wait_for("two ready endpoints", lambda: ready_endpoints() == 2, timeout=30)


@pytest.mark.helm3
def test_helm_wait_fails_at_the_timeout_when_a_pod_never_becomes_ready(
    helm: Any, namespace: str, charts_dir: Path, kube: Any
) -> None:
    timeout = 8
    started = time.monotonic()
    failed = helm(
        *("install", "web", str(charts_dir / "workload"), "-n", namespace),
        *("--set", f"podBehaviour={NEVER_READY}", "--set", "statefulSet=false"),
        *(*_wait_args(helm), "--timeout", f"{timeout}s"),
        check=False,
    )
    took = time.monotonic() - started

    assert failed.returncode == 1
    assert took >= timeout, f"helm gave up after {took:.1f}s, before its timeout"
    if helm.major >= 4:
        # kstatus names the resource it still waited for.
        assert "Error: INSTALLATION FAILED: resource Deployment/" in failed.stderr
        assert f"{namespace}/web not ready" in failed.stderr
        assert "context deadline exceeded" in failed.stderr
    else:
        assert "Error: INSTALLATION FAILED: context deadline exceeded" in failed.stderr
    status = json.loads(helm("status", "web", "-n", namespace, "-o", "json").stdout)
    assert status["info"]["status"] == "failed"
    pods = _pods(kube, namespace, "app.kubernetes.io/instance=web")
    assert len(pods) == 2
    for pod in pods:
        assert pod.status.phase == "Running"
        assert _conditions(pod)["Ready"] == "False"
        assert pod.status.container_statuses[0].state.running is not None


def test_an_upgrade_whose_new_pods_crash_loop_fails_and_the_old_ones_keep_serving(
    helm: Any, namespace: str, charts_dir: Path, kube: Any
) -> None:
    chart = str(charts_dir / "workload")
    common = ("-n", namespace, "--set", "statefulSet=false", *_wait_args(helm))
    helm("install", "web", chart, *common, "--timeout", "120s")

    failed = helm(
        *("upgrade", "web", chart, *common, "--timeout", "8s"),
        *("--set", f"podBehaviour={CRASH_LOOP}"),
        check=False,
    )

    assert failed.returncode == 1
    assert "Error: UPGRADE FAILED:" in failed.stderr
    history = json.loads(helm("history", "web", "-n", namespace, "-o", "json").stdout)
    assert [h["revision"] for h in history] == [1, 2]
    assert history[-1]["status"] == "failed"
    pods = _pods(kube, namespace, "app.kubernetes.io/instance=web")
    ready = [p for p in pods if _conditions(p).get("Ready") == "True"]
    crashing = [p for p in pods if (p.metadata.annotations or {}).get(POD_BEHAVIOUR) == CRASH_LOOP]
    assert ready, "the rollout keeps old Pods serving while the new ones fail"
    assert crashing
    assert all(_conditions(p).get("Ready") != "True" for p in crashing)


def test_a_crash_looping_pod_restarts_and_never_becomes_ready(
    testbed: Testbed, namespace: str, kube: Any
) -> None:
    client.AppsV1Api(kube).create_namespaced_deployment(
        namespace, _deployment("crashy", CRASH_LOOP)
    )

    def restarted_twice() -> Any:
        pods = _pods(kube, namespace, "app=crashy")
        statuses = pods[0].status.container_statuses if pods else None
        return pods[0] if statuses and statuses[0].restart_count >= 2 else None

    pod = wait_for("two restarts", restarted_twice, timeout=60)
    status = pod.status.container_statuses[0]
    assert status.state.waiting.reason == "CrashLoopBackOff"
    assert status.last_state.terminated.exit_code == 1
    assert _conditions(pod)["Ready"] == "False"
    deployment = client.AppsV1Api(kube).read_namespaced_deployment("crashy", namespace)
    assert _conditions(deployment)["Available"] == "False"


def test_a_daemonset_runs_one_ready_pod_on_every_node(namespace: str, kube: Any) -> None:
    labels = {"app": "agent"}
    daemonset = {
        "metadata": {"name": "agent"},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "agent", "image": "registry.k8s.io/pause:3.10"}]},
            },
        },
    }
    apps = client.AppsV1Api(kube)
    apps.create_namespaced_daemon_set(namespace, daemonset)

    def rolled_out() -> bool:
        status = apps.read_namespaced_daemon_set("agent", namespace).status
        return bool(status.number_ready == status.desired_number_scheduled == len(FAKE_NODES))

    wait_for("the DaemonSet rolled out", rolled_out)
    nodes = sorted(pod.spec.node_name for pod in _pods(kube, namespace, "app=agent"))
    assert nodes == sorted(FAKE_NODES)


@pytest.mark.parametrize(("behaviour", "outcome"), [("", "Complete"), (FAIL, "Failed")])
def test_a_job_runs_to_completion_or_fails_by_annotation(
    testbed: Testbed, namespace: str, kube: Any, behaviour: str, outcome: str
) -> None:
    annotations = {POD_BEHAVIOUR: behaviour} if behaviour else {}
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "once"},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"annotations": annotations},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "run", "image": "registry.k8s.io/pause:3.10"}],
                },
            },
        },
    }
    batch = client.BatchV1Api(kube)
    batch.create_namespaced_job(namespace, job)

    wait_for(
        f"Job condition {outcome}",
        lambda: _conditions(batch.read_namespaced_job("once", namespace)).get(outcome) == "True",
    )


def test_deleting_a_namespace_completes(testbed: Testbed, namespace: str, kube: Any) -> None:
    doomed = testbed.create_namespace(f"{namespace}-doomed")
    client.AppsV1Api(kube).create_namespaced_deployment(doomed, _deployment("web", replicas=2))
    wait_for("two running Pods", lambda: len(_pods(kube, doomed, "app=web")) == 2)

    started = time.monotonic()
    testbed.delete_namespace(doomed, wait=60)

    assert time.monotonic() - started < 60
    with pytest.raises(client.ApiException) as gone:
        client.CoreV1Api(kube).read_namespace(doomed)
    assert gone.value.status == 404


def test_deleting_an_owner_collects_its_dependents(
    testbed: Testbed, namespace: str, kube: Any
) -> None:
    core, apps = client.CoreV1Api(kube), client.AppsV1Api(kube)
    owner = core.create_namespaced_config_map(namespace, {"metadata": {"name": "owner"}})
    reference = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "owner",
        "uid": owner.metadata.uid,
    }
    dependent = {"metadata": {"name": "dependent", "ownerReferences": [reference]}}
    core.create_namespaced_config_map(namespace, dependent)
    apps.create_namespaced_deployment(namespace, _deployment("web"))
    wait_for("a running Pod", lambda: _pods(kube, namespace, "app=web"))

    # Background propagation, the API's default: the owner goes at once, the collector
    # deletes the dependents after.
    core.delete_namespaced_config_map("owner", namespace)
    apps.delete_namespaced_deployment("web", namespace)

    testbed.wait_gone(f"/api/v1/namespaces/{namespace}/configmaps/dependent", timeout=60)
    wait_for(
        "the ReplicaSet gone",
        lambda: not apps.list_namespaced_replica_set(namespace, label_selector="app=web").items,
    )
    wait_for("its Pods gone", lambda: not _pods(kube, namespace, "app=web"))


def test_serviceaccount_gets_a_token_from_the_controllers(
    testbed: Testbed, namespace: str, kube: Any
) -> None:
    core = client.CoreV1Api(kube)
    # The serviceaccount and root-ca publisher controllers fill every new namespace.
    wait_for(
        "the default ServiceAccount",
        lambda: any(
            account.metadata.name == "default"
            for account in core.list_namespaced_service_account(namespace).items
        ),
    )
    wait_for(
        "the root CA ConfigMap",
        lambda: core.list_namespaced_config_map(
            namespace, field_selector="metadata.name=kube-root-ca.crt"
        ).items,
    )
    ca = core.read_namespaced_config_map("kube-root-ca.crt", namespace)
    assert ca.data["ca.crt"] == testbed.ca_cert.read_text()
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "robot"}})
    secret = {
        "metadata": {
            "name": "robot-token",
            "annotations": {"kubernetes.io/service-account.name": "robot"},
        },
        "type": "kubernetes.io/service-account-token",
    }
    core.create_namespaced_secret(namespace, secret)

    filled = wait_for(
        "the token controller to fill the Secret",
        lambda: (core.read_namespaced_secret("robot-token", namespace).data or {}).get("token"),
    )

    token = base64.b64decode(filled).decode()
    request = urllib.request.Request(
        f"{testbed.api_url}/apis/authentication.k8s.io/v1/selfsubjectreviews",
        data=json.dumps(
            {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
        ).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    context = ssl.create_default_context(cafile=str(testbed.ca_cert))
    with urllib.request.urlopen(request, context=context) as response:
        review = json.load(response)
    assert review["status"]["userInfo"]["username"] == f"system:serviceaccount:{namespace}:robot"


def test_the_printed_environment_gives_helm_and_kubectl(testbed: Testbed, namespace: str) -> None:
    testbed.helm("install", "smoke", str(ROOT / "tests" / "charts" / "smoke"), "-n", namespace)
    script = (
        f'eval "$({sys.executable} -m testbed --state-dir {testbed.workdir} env)" && '
        f"command -v helm kubectl && helm ls -n {namespace} -o json && "
        "helm version --short && kubectl get nodes -o name && kubectl version -o json"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HELM", "KUBECONFIG"))}
    env["PATH"] = "/usr/bin:/bin"
    shell = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, env=env, cwd=ROOT, check=False
    )

    assert shell.returncode == 0, shell.stderr
    lines = shell.stdout.splitlines()
    assert lines[:2] == [str(testbed.bin_dir / "helm"), str(testbed.bin_dir / "kubectl")]
    assert [r["name"] for r in json.loads(lines[2])] == ["smoke"]
    assert lines[3].startswith("v4.")
    assert lines[4:7] == [f"node/{name}" for name in FAKE_NODES]
    versions = json.loads("\n".join(lines[7:]))
    assert versions["clientVersion"]["gitVersion"] == versions["serverVersion"]["gitVersion"]
