"""Converged means healthy: after helm's install or upgrade the release's workloads must
become ready within timeoutSeconds, or the attempt failed (with helm not waiting, too);
a full resync reads health again and `status` shows it."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from engine_world import World, daemon, kube_json, wait_for, written_release
from test_daemon import fake_github, get, listening_url, posted, promote_for_deployment

from testbed import CRASH_LOOP, NEVER_READY, POD_BEHAVIOUR

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 6  # seconds: the health check's wait for a never-ready Deployment


def policy(**extra: Any) -> dict[str, Any]:
    # wait: false, helm's default here: helm returns at once and only the health check waits.
    return {"retries": 0, "retryBackoffSeconds": 1, "timeoutSeconds": TIMEOUT, **extra}


def web(world: World, publish_chart: Any, behaviour: str = "", **extra: Any) -> None:
    publish_chart("workload", "0.1.0", helm=world.helm_name)
    world.repo.project("web", world.namespace, chart="workload")
    values = {"statefulSet": False, "replicas": 1, "podBehaviour": behaviour}
    world.repo.release(world.installation, "web", version="0.1.0", values=values)
    world.repo.installation(world.installation, policy=policy(**extra))
    world.repo.commit(f"web {behaviour or 'ready'}")


def status_rows(world: World) -> dict[str, dict[str, Any]]:
    done = world.cli("status", "-o", "json")
    assert done.stdout.strip(), done.stderr
    return {row["release"]: row for row in json.loads(done.stdout)["releases"]}


def upgrades(world: World) -> list[str]:
    return [name for call in world.helm_calls() if (name := written_release(call))]


def ready_replicas(world: World, name: str) -> int:
    path = f"/apis/apps/v1/namespaces/{world.namespace}/deployments/{name}"
    return int(kube_json(world.testbed, "GET", path)["status"].get("readyReplicas") or 0)


@pytest.mark.helm3
def test_a_never_ready_upgrade_fails_at_the_timeout_and_is_rolled_back(
    world: World, publish_chart: Any
) -> None:
    web(world, publish_chart)
    code, first, _ = world.apply()
    assert code == 0, first
    assert status_rows(world)["web"]["health"] == "Healthy"
    assert ready_replicas(world, "web") == 1, "succeeded only once its Pod was Ready"

    web(world, publish_chart, NEVER_READY)
    started = time.monotonic()
    code, document, _ = world.apply()
    took = time.monotonic() - started

    assert code == 1
    (outcome,) = document["outcomes"]
    assert outcome["result"] == "failed"
    assert took >= TIMEOUT, "the health check waited for the timeout"
    message = outcome["message"]
    assert f"not healthy within {TIMEOUT}s (timeoutSeconds): Progressing: " in message
    assert f"Deployment {world.namespace}/web: " in message
    assert "rolled back to revision 1" in message
    history = world.history("web")
    assert [h["status"] for h in history] == ["superseded", "superseded", "deployed"]
    assert history[-1]["description"].startswith("Rollback to 1")
    row = status_rows(world)["web"]
    assert row["state"] == "failed"
    assert f"Deployment {world.namespace}/web: " in row["message"]
    # The verdict was on revision 2; the rollback's revision is not read until a resync.
    assert row["health"] == ""

    world.reset_calls()
    code, again = world.plan()
    assert code == 0, "retries 0: held, not planned again"
    assert "failed 1 time(s)" in again["held"][0]["reason"]
    assert world.helm_calls() == []
    assert world.apply("--full")[0] == 0
    assert status_rows(world)["web"]["health"] in ("Healthy", "Progressing")


@pytest.mark.helm3
def test_with_remediation_none_a_deployed_never_ready_release_is_failed_not_in_sync(
    world: World, publish_chart: Any
) -> None:
    web(world, publish_chart, NEVER_READY, remediation="none", retries=1)

    code, document, _ = world.apply()

    assert code == 1
    assert document["outcomes"][0]["result"] == "failed"
    row = status_rows(world)["web"]
    assert row["health"] == "Progressing", "the verdict is on the revision still deployed"
    assert row["unhealthy"][0]["message"] in ("Available: 0/1", "Ready: 0/1")
    # helm calls it deployed, with the reconciler's digest: only the reconciler knows better.
    assert world.latest("web")["status"] == "deployed"
    assert status_rows(world)["web"]["state"] == "failed"

    # A new process (state from the status ConfigMap) retries once after the backoff...
    time.sleep(1.5)
    world.reset_calls()
    code, retried, _ = world.apply()
    assert code == 1
    assert retried["actions"][0]["reason"] == "revision 1 was deployed but did not work (retry 1/1)"
    assert upgrades(world) == ["web"]
    # ...then holds it, never calling it in sync or succeeded.
    world.reset_calls()
    code, held = world.plan()
    assert code == 0
    assert held["in_sync"] == []
    assert "upgrade of 0.1.0 failed 2 time(s)" in held["held"][0]["reason"]
    assert "not healthy within" in held["held"][0]["reason"]
    assert world.helm_calls() == []
    done = world.cli("status")
    assert done.returncode == 1
    assert "HEALTH" in done.stdout.splitlines()[1]


def test_a_held_never_ready_release_that_becomes_healthy_is_in_sync_again(
    world: World, publish_chart: Any
) -> None:
    web(world, publish_chart, NEVER_READY, remediation="none", drift="off")
    assert world.apply()[0] == 1
    assert world.plan()[1]["held"][0]["release"] == "web"

    # Whatever made it unready is gone (here: no replica left to wait for; drift is off).
    path = f"/apis/apps/v1/namespaces/{world.namespace}/deployments/web"
    scaled = kube_json(world.testbed, "GET", path)
    scaled["spec"]["replicas"] = 0
    kube_json(world.testbed, "PUT", path, scaled)

    def healthy() -> bool:
        assert world.apply("--full")[0] == 0
        return bool(status_rows(world)["web"]["health"] == "Healthy")

    wait_for(healthy, timeout=60)
    world.reset_calls()
    code, planned = world.plan()
    assert code == 0
    assert planned["in_sync"] == [{"namespace": world.namespace, "release": "web"}]
    assert planned["held"] == []
    assert world.helm_calls() == []


def crash_loop_the_pod(world: World, release: str) -> None:
    """Make the release's one Pod crash-loop: the Pod itself, not the chart's template, so
    the release's manifest is unchanged (no drift, nothing for helm to re-apply)."""

    pods = f"/api/v1/namespaces/{world.namespace}/pods"
    selector = f"?labelSelector=app.kubernetes.io/instance={release}"
    (pod,) = kube_json(world.testbed, "GET", pods + selector)["items"]

    def crash(name: str = pod["metadata"]["name"]) -> bool:
        live = kube_json(world.testbed, "GET", f"{pods}/{name}")
        live["metadata"].setdefault("annotations", {})[POD_BEHAVIOUR] = CRASH_LOOP
        kube_json(world.testbed, "PUT", f"{pods}/{name}", live)
        return True

    wait_for(crash)
    wait_for(lambda: ready_replicas(world, release) == 0, timeout=60)


def test_a_workload_that_crash_loops_later_is_degraded_on_the_next_full_resync(
    world: World, publish_chart: Any
) -> None:
    web(world, publish_chart)
    assert world.apply()[0] == 0
    crash_loop_the_pod(world, "web")

    world.reset_calls()
    assert world.apply()[0] == 0, "a quiet pass"
    assert status_rows(world)["web"]["health"] == "Healthy", "a quiet pass reads no health"

    def degraded() -> dict[str, Any] | None:
        assert world.apply("--full")[0] == 0
        row = status_rows(world)["web"]
        return row if row["health"] == "Degraded" else None

    row = wait_for(degraded, timeout=60)
    (unhealthy,) = row["unhealthy"]
    assert (unhealthy["kind"], unhealthy["name"], unhealthy["status"]) == (
        "Deployment",
        "web",
        "Failed",
    )
    assert "CrashLoopBackOff" in unhealthy["message"]
    assert world.helm_calls() == [], "reading health starts no helm process"
    table = world.cli("status")
    assert table.returncode == 1
    assert "Degraded" in table.stdout
    plan_code, planned = world.plan("--full")
    assert plan_code == 0
    assert planned["health"][0]["health"] == "Degraded"


def test_github_hears_success_only_once_healthy_and_failure_for_a_never_ready_ref(
    world: World, publish_chart: Any, tmp_path: Path
) -> None:
    good, bad = "a1" * 20, "b2" * 20
    publish_chart("workload", f"1.0.0-g{good[:7]}")
    # The bad ref's chart runs Pods that never become Ready.
    never = tmp_path / "never-ready"
    shutil.copytree(ROOT / "tests" / "charts" / "workload", never)
    values = never / "values.yaml"
    values.write_text(
        values.read_text().replace('podBehaviour: ""', f"podBehaviour: {NEVER_READY}")
    )
    publish_chart(never, f"1.0.0-g{bad[:7]}")
    world.repo.project(
        "alpha", world.namespace, chart="workload", version_template="1.0.0-g{ref:7}"
    )
    world.repo.release(world.installation, "alpha", ref=good, values={"statefulSet": False})
    world.repo.installation(world.installation, policy=policy())
    world.repo.commit("alpha")
    with (
        fake_github(world) as (github, github_env),
        # The rollback leaves good's revision in sync with no health reading: `success` waits
        # for a full resync to read it Healthy.
        daemon(world, "--resync-interval", "3", name="h", extra_env=github_env),
    ):
        wait_for(lambda: world.releases() == {"alpha": "deployed"}, timeout=60)
        deployment_id = promote_for_deployment(world, github, bad)
        wait_for(lambda: posted(github, deployment_id) == ["in_progress", "failure"], timeout=60)
        failure = github.statuses[deployment_id][-1]["description"]
        # GitHub keeps 140 characters: the cause's head and the unready object's tail.
        assert failure.startswith(f"alpha failed in {world.installation}: not he")
        assert failure.endswith(
            ("/alpha: Updated: 1/2", "/alpha: Available: 0/1", "/alpha: Ready: 0/1")
        )

        deployment_id = promote_for_deployment(world, github, good)
        wait_for(lambda: posted(github, deployment_id) == ["in_progress", "success"], timeout=60)
        success_at = github.statuses[deployment_id][-1]["created_at"]
    assert world.latest("alpha")["chart"] == f"workload-1.0.0-g{good[:7]}"
    pods = kube_json(
        world.testbed,
        "GET",
        f"/api/v1/namespaces/{world.namespace}/pods?labelSelector=app.kubernetes.io/instance=alpha",
    )["items"]
    ready_at = max(
        c["lastTransitionTime"]
        for p in pods
        if (p["metadata"].get("annotations") or {}).get(POD_BEHAVIOUR) != NEVER_READY
        for c in p["status"]["conditions"]
        if c["type"] == "Ready" and c["status"] == "True"
    )
    assert success_at >= ready_at, "success was posted once the new Pods were Ready"


def test_the_daemon_reports_a_later_crash_loop_in_metrics_and_an_event(
    world: World, publish_chart: Any
) -> None:
    web(world, publish_chart)
    args = ("--listen", "127.0.0.1:0", "--resync-interval", "1")
    with daemon(world, *args, name="m"):
        base = listening_url(world, "m")
        labels = f'namespace="{world.namespace}",release="web"'
        healthy = f'reconciler_release_health{{health="healthy",{labels}}}'
        wait_for(lambda: f"{healthy} 1.0" in get(f"{base}/metrics")[1], timeout=60)
        crash_loop_the_pod(world, "web")
        degraded = f'reconciler_release_health{{health="degraded",{labels}}}'
        wait_for(lambda: f"{degraded} 1.0" in get(f"{base}/metrics")[1], timeout=60)
        metrics = get(f"{base}/metrics")[1]
    assert f"{healthy} 0.0" in metrics
    events = kube_json(world.testbed, "GET", f"/api/v1/namespaces/{world.namespace}/events")
    unhealthy = [e["message"] for e in events["items"] if e["reason"] == "Unhealthy"]
    assert unhealthy, "a Warning Event when a resync finds the release Degraded"
    assert unhealthy[0].startswith(f"{world.namespace}/web: Healthy -> Degraded: Deployment ")
    assert "CrashLoopBackOff" in unhealthy[0]


ON_DELETE = """\
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: {{ .Release.Name }}-db
spec:
  serviceName: {{ .Release.Name }}-db
  replicas: 1
  updateStrategy: {type: OnDelete}
  selector:
    matchLabels: {app: {{ .Release.Name }}-db}
  template:
    metadata:
      labels: {app: {{ .Release.Name }}-db}
      annotations: {%s: {{ .Values.podBehaviour | quote }}}
    spec:
      containers:
        - {name: db, image: registry.k8s.io/pause:3.10}
"""


def test_an_on_delete_statefulset_is_healthy_only_once_its_pods_are_ready(
    world: World, publish_chart: Any, tmp_path: Path
) -> None:
    root = tmp_path / "ondelete"
    (root / "templates").mkdir(parents=True)
    (root / "Chart.yaml").write_text("apiVersion: v2\nname: ondelete\nversion: 0.1.0\n")
    (root / "values.yaml").write_text('podBehaviour: ""\n')
    (root / "templates" / "sts.yaml").write_text(ON_DELETE % POD_BEHAVIOUR)
    publish_chart(root, "0.1.0", helm=world.helm_name)
    world.repo.project("web", world.namespace, chart="ondelete")
    world.repo.release(world.installation, "web", version="0.1.0", values={
        "podBehaviour": NEVER_READY})  # fmt: skip
    world.repo.installation(world.installation, policy=policy(remediation="none"))
    world.repo.commit("never ready")
    code, document, _ = world.apply()
    assert code == 1
    assert document["outcomes"][0]["result"] == "failed"
    assert "Ready: 0/1" in document["outcomes"][0]["message"]
    row = status_rows(world)["web"]
    assert row["health"] == "Progressing"
    assert row["unhealthy"][0]["message"] == "Ready: 0/1"
