"""kstatus's rules on live object JSON, as a table: object -> Current / InProgress / Failed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from reconciler.health import (
    ObjectRef,
    ObjectResult,
    object_status,
    pod_selector,
    pod_status,
    release_health,
    workload_status,
)

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def deployment(**status: Any) -> dict[str, Any]:
    base = {
        "observedGeneration": 2,
        "replicas": 2,
        "updatedReplicas": 2,
        "readyReplicas": 2,
        "availableReplicas": 2,
        "conditions": [
            {"type": "Available", "status": "True"},
            {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"},
        ],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "generation": 2},
        "spec": {"replicas": 2, "progressDeadlineSeconds": 600},
        "status": {**base, **status},
    }


def statefulset(**status: Any) -> dict[str, Any]:
    base = {
        "observedGeneration": 1,
        "replicas": 2,
        "readyReplicas": 2,
        "currentReplicas": 2,
        "updatedReplicas": 2,
        "currentRevision": "db-1",
        "updateRevision": "db-1",
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "db", "generation": 1},
        "spec": {"replicas": 2},
        "status": {**base, **status},
    }


def daemonset(**status: Any) -> dict[str, Any]:
    base = {
        "observedGeneration": 1,
        "desiredNumberScheduled": 3,
        "currentNumberScheduled": 3,
        "updatedNumberScheduled": 3,
        "numberAvailable": 3,
        "numberReady": 3,
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "agent", "generation": 1},
        "status": {**base, **status},
    }


def on_delete(obj: dict[str, Any]) -> dict[str, Any]:
    obj.setdefault("spec", {})["updateStrategy"] = {"type": "OnDelete"}
    return obj


def with_conditions(obj: dict[str, Any], *conditions: dict[str, Any]) -> dict[str, Any]:
    obj["status"]["conditions"] = list(conditions)
    return obj


def pod(phase: str, ready: bool = False, waiting: str = "", **metadata: Any) -> dict[str, Any]:
    statuses = []
    if waiting:
        statuses = [{"name": "app", "restartCount": 4, "state": {"waiting": {"reason": waiting}}}]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web-1", "creationTimestamp": "2026-01-01T11:00:00Z", **metadata},
        "status": {
            "phase": phase,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "containerStatuses": statuses,
        },
    }


CASES: list[tuple[str, dict[str, Any], str, str]] = [
    ("deployment rolled out", deployment(), "Current", ""),
    (
        "deployment generation not yet observed",
        deployment(observedGeneration=1),
        "InProgress",
        "generation 2 not yet observed",
    ),
    (
        "deployment with too few ready",
        deployment(readyReplicas=1, availableReplicas=1),
        "InProgress",
        "Available: 1/2",
    ),
    ("deployment creating", deployment(replicas=1, updatedReplicas=1), "InProgress", "1/2"),
    ("deployment old pods left", deployment(replicas=3), "InProgress", "Pending termination: 1"),
    (
        "deployment past its progress deadline",
        with_conditions(
            deployment(),
            {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"},
        ),
        "Failed",
        "progress deadline exceeded",
    ),
    (
        "deployment whose new ReplicaSet is not yet available",
        with_conditions(
            deployment(),
            {"type": "Available", "status": "True"},
            {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated"},
        ),
        "InProgress",
        "new ReplicaSet",
    ),
    ("statefulset ready", statefulset(), "Current", ""),
    ("statefulset one not ready", statefulset(readyReplicas=1), "InProgress", "Ready: 1/2"),
    (
        "statefulset mid-update",
        statefulset(updateRevision="db-2"),
        "InProgress",
        "update revision",
    ),
    (
        "statefulset on-delete not ready",
        on_delete(statefulset(readyReplicas=0, currentReplicas=0)),
        "InProgress",
        "Ready: 0/2",
    ),
    (
        "statefulset on-delete short of replicas",
        on_delete(statefulset(replicas=1, readyReplicas=1)),
        "InProgress",
        "Replicas: 1/2",
    ),
    (
        "statefulset on-delete old revision, all ready",
        on_delete(statefulset(updateRevision="db-2", updatedReplicas=0)),
        "Current",
        "",
    ),
    ("daemonset ready", daemonset(), "Current", ""),
    (
        "daemonset on-delete not available",
        on_delete(daemonset(numberAvailable=1, numberReady=1)),
        "InProgress",
        "Available: 1/3",
    ),
    (
        "daemonset on-delete old Pods ready",
        on_delete(daemonset(updatedNumberScheduled=0)),
        "Current",
        "",
    ),
    ("daemonset not ready", daemonset(numberReady=2), "InProgress", "Ready: 2/3"),
    (
        "daemonset never observed",
        {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"generation": 1}},
        "InProgress",
        "not yet observed",
    ),
    (
        "job complete",
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "status": {"conditions": [{"type": "Complete", "status": "True"}]},
        },
        "Current",
        "",
    ),
    (
        "job failed",
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "status": {
                "failed": 1,
                "conditions": [
                    {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}
                ],
            },
        },
        "Failed",
        "BackoffLimitExceeded",
    ),
    ("job not started", {"apiVersion": "batch/v1", "kind": "Job"}, "InProgress", "not started"),
    (
        "pvc pending",
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "status": {"phase": "Pending"}},
        "InProgress",
        "not Bound (phase Pending)",
    ),
    (
        "pvc bound",
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "status": {"phase": "Bound"}},
        "Current",
        "",
    ),
    (
        "service clusterip",
        {"apiVersion": "v1", "kind": "Service", "spec": {"clusterIP": "10.0.0.1"}},
        "Current",
        "",
    ),
    (
        "load balancer without address",
        {
            "apiVersion": "v1",
            "kind": "Service",
            "spec": {"type": "LoadBalancer", "clusterIP": "10.0.0.1"},
            "status": {"loadBalancer": {}},
        },
        "InProgress",
        "no ingress address",
    ),
    (
        "load balancer with address",
        {
            "apiVersion": "v1",
            "kind": "Service",
            "spec": {"type": "LoadBalancer", "clusterIP": "10.0.0.1"},
            "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}},
        },
        "Current",
        "",
    ),
    (
        "custom resource not ready",
        {
            "apiVersion": "example.com/v1",
            "kind": "Database",
            "metadata": {"generation": 3},
            "status": {
                "observedGeneration": 3,
                "conditions": [{"type": "Ready", "status": "False", "message": "waiting for disk"}],
            },
        },
        "InProgress",
        "not Ready: waiting for disk",
    ),
    (
        "custom resource ready",
        {
            "apiVersion": "example.com/v1",
            "kind": "Database",
            "status": {"conditions": [{"type": "Ready", "status": "True"}]},
        },
        "Current",
        "",
    ),
    (
        "custom resource stalled",
        {
            "apiVersion": "example.com/v1",
            "kind": "Database",
            "status": {"conditions": [{"type": "Stalled", "status": "True", "message": "quota"}]},
        },
        "Failed",
        "quota",
    ),
    (
        "custom resource with a stale status",
        {
            "apiVersion": "example.com/v1",
            "kind": "Database",
            "metadata": {"generation": 4},
            "status": {
                "observedGeneration": 3,
                "conditions": [{"type": "Ready", "status": "True"}],
            },
        },
        "InProgress",
        "generation 4",
    ),
    ("configmap", {"apiVersion": "v1", "kind": "ConfigMap", "data": {}}, "Current", ""),
    (
        "being deleted",
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"deletionTimestamp": "x"}},
        "InProgress",
        "being deleted",
    ),
    (
        "crd established",
        {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "status": {"conditions": [{"type": "Established", "status": "True"}]},
        },
        "Current",
        "",
    ),
]


@pytest.mark.parametrize(
    ("obj", "status", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_object_status(obj: dict[str, Any], status: str, message: str) -> None:
    got_status, got_message = object_status(obj, NOW)

    assert got_status == status
    assert message in got_message
    if status == "Current":
        assert got_message == "" or "completed" in got_message


def test_pods() -> None:
    assert pod_status(pod("Running", ready=True), NOW)[0] == "Current"
    assert pod_status(pod("Running"), NOW) == ("InProgress", "Pod is running but not Ready")
    crashing = pod_status(pod("Running", waiting="CrashLoopBackOff"), NOW)
    assert crashing == ("Failed", "containers app CrashLoopBackOff (4 restarts)")
    assert pod_status(pod("Pending", waiting="ImagePullBackOff"), NOW)[0] == "Failed"
    assert pod_status(pod("Succeeded"), NOW)[0] == "Current"
    unschedulable = pod("Pending")
    unschedulable["status"]["conditions"] = [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/3"}
    ]
    assert pod_status(unschedulable, NOW) == ("Failed", "Pod cannot be scheduled: 0/3")
    # kstatus's window: a Pod only just created may still find a node.
    unschedulable["metadata"]["creationTimestamp"] = (NOW - timedelta(seconds=5)).isoformat()
    assert pod_status(unschedulable, NOW)[0] == "InProgress"


def test_a_workload_with_a_crash_looping_pod_is_failed_and_names_it() -> None:
    slow = deployment(readyReplicas=1, availableReplicas=1)
    pods = [pod("Running", ready=True), pod("Running", waiting="CrashLoopBackOff", name="web-2")]

    status, message = workload_status(slow, pods, NOW)

    assert status == "Failed"
    assert message == "Available: 1/2; Pod web-2: containers app CrashLoopBackOff (4 restarts)"
    assert workload_status(slow, [pod("Running")], NOW)[0] == "InProgress"
    assert workload_status(deployment(), pods, NOW)[0] == "Current", "a ready workload stays so"


def test_pod_selector() -> None:
    obj = {
        "spec": {
            "selector": {
                "matchLabels": {"app": "web", "tier": "front"},
                "matchExpressions": [
                    {"key": "track", "operator": "In", "values": ["stable", "canary"]},
                    {"key": "legacy", "operator": "DoesNotExist"},
                ],
            }
        }
    }
    assert pod_selector(obj) == "app=web,tier=front,track in (stable,canary),!legacy"
    assert pod_selector({"spec": {}}) is None


def _result(kind: str, name: str, status: str) -> ObjectResult:
    return ObjectResult(ObjectRef("apps/v1", kind, "apps", name), status, f"{name} says")  # type: ignore[arg-type]


def test_release_health_is_the_worst_object_and_names_the_unhealthy() -> None:
    ok = _result("Deployment", "a", "Current")
    slow = _result("Deployment", "b", "InProgress")
    gone = _result("ConfigMap", "c", "NotFound")
    broken = _result("StatefulSet", "d", "Failed")

    assert release_health([ok]).health == "Healthy"
    assert release_health([]).health == "Healthy"
    assert release_health([ok, slow]).health == "Progressing"
    assert release_health([ok, slow, gone]).health == "Missing objects"
    worst = release_health([ok, slow, gone, broken])
    assert worst.health == "Degraded"
    assert worst.summary() == (
        "Degraded: StatefulSet apps/d: d says; ConfigMap apps/c: c says; Deployment apps/b: b says"
    )
    assert worst.as_json()["unhealthy"][0] == {
        "kind": "StatefulSet",
        "namespace": "apps",
        "name": "d",
        "status": "Failed",
        "message": "d says",
    }


def test_long_condition_messages_are_bounded_to_one_line() -> None:
    obj = {
        "apiVersion": "example.com/v1",
        "kind": "Thing",
        "status": {"conditions": [{"type": "Ready", "status": "False", "message": "x\n" * 500}]},
    }
    _, message = object_status(obj)
    assert "\n" not in message
    assert len(message) <= 200
